"""Linode (Akamai) API v4: GPU offerings, list, create, boot, shutdown and delete.

A powered-off Linode is still billed; only Delete stops billing (stop_keeps_billing).
GPU types may show a $0 base price with the real one in `region_prices`, so the price is
resolved as region_prices[region] first, then price.hourly, and 0 means unknown.

The generated root password is never logged, returned or kept: access is by SSH key only.
"""

from __future__ import annotations

import base64
import datetime
import ipaddress
import logging
import re
import secrets
import string
import time
from typing import Any, Dict, List, Optional, Tuple

from .base import (
    MANAGED_TAG,
    Check,
    CreateRequest,
    Offering,
    Provider,
    ProviderError,
    Report,
    SshTarget,
    Vm,
    no_check,
    no_report,
    unsupported,
)
from .http import HttpClient, field, shape_error

log = logging.getLogger("gpu_workbench.vms.linode")

DEFAULT_API_URL = "https://api.linode.com/v4"
DEFAULT_IMAGE = "linode/ubuntu22.04"
DISPLAY = "Linode (Akamai)"
PAGE_SIZE = 500
TYPES_TTL = 3600.0
STATUS = {
    "running": "running",
    "offline": "stopped",
    "stopped": "stopped",
    "booting": "pending",
    "rebooting": "pending",
    "provisioning": "pending",
    "migrating": "pending",
    "rebuilding": "pending",
    "cloning": "pending",
    "restoring": "pending",
    "resizing": "pending",
    "shutting_down": "stopping",
    # Billing stops when Delete is accepted and the Linode is going away: count it as gone.
    "deleting": "terminated",
}
GPU_REGION_CAPABILITY = "GPU Linodes"
PUNCTUATION = "!#$%&()*+,-./:;<=>?@[]^_{}~"


def sanitize_label(name: str) -> str:
    """A valid Linode label (3-64 chars of [A-Za-z0-9-_.], alphanumeric at both ends, no
    repeated separators) made from a free-form name."""
    label = re.sub(r"[^A-Za-z0-9_.-]+", "-", name)
    label = re.sub(r"([-_.])[-_.]+", r"\1", label)
    label = label.strip("-_.")[:64].strip("-_.")
    if len(label) < 3:
        label = ("gpu-workbench-" + label).strip("-_.") if label else "gpu-workbench"
    return label


def root_password() -> str:
    """A strong random root password with every character class (never shown to anyone)."""
    alphabet = string.ascii_letters + string.digits + PUNCTUATION
    while True:
        value = "".join(secrets.choice(alphabet) for _ in range(40))
        if (
            any(c.islower() for c in value)
            and any(c.isupper() for c in value)
            and any(c.isdigit() for c in value)
            and any(c in PUNCTUATION for c in value)
        ):
            return value


def encode_tags(tags: Dict[str, str]) -> List[str]:
    """Linode tags are plain strings: "key" for a flag ("1"/""), "key=value" otherwise; the
    managed tag always comes first."""
    out: List[str] = [MANAGED_TAG]
    for key, value in tags.items():
        tag = key if value in ("", "1") else "%s=%s" % (key, value)
        if tag not in out:
            out.append(tag)
    return out


def decode_tags(tags: Any) -> Dict[str, str]:
    out: Dict[str, str] = {}
    if isinstance(tags, list):
        for tag in tags:
            if isinstance(tag, str):
                key, sep, value = tag.partition("=")
                out[key] = value if sep else "1"
    return out


def parse_time(value: Any) -> Optional[float]:
    """Unix seconds from Linode's "2018-01-01T00:01:01" (UTC, no zone)."""
    if not isinstance(value, str):
        return None
    try:
        when = datetime.datetime.strptime(value[:19], "%Y-%m-%dT%H:%M:%S")
    except ValueError:
        return None
    return when.replace(tzinfo=datetime.timezone.utc).timestamp()


def public_address(addresses: List[Any]) -> Optional[str]:
    fallback = None
    for item in addresses:
        if not isinstance(item, str):
            continue
        try:
            if ipaddress.ip_address(item).is_private:
                fallback = fallback or item
                continue
        except ValueError:
            continue
        return item
    return fallback


def gpu_model(label: str) -> Optional[str]:
    """ "Dedicated 32GB + RTX6000 GPU x1" -> RTX6000; "RTX4000 Ada x1 Small" -> RTX4000 Ada."""
    match = re.search(r"\+\s*(.+?)\s+GPU\b", label)
    if match:
        return match.group(1)
    match = re.search(r"((?:RTX|A|H|L)\s?\d{2,4}[A-Za-z]*(?:\s+Ada)?)", label)
    return match.group(1) if match else None


def hourly_price(entry: Dict[str, Any], region: Optional[str]) -> Optional[float]:
    """region_prices[region].hourly first, then price.hourly; 0 or missing -> None."""
    if region:
        for item in entry.get("region_prices") or []:
            if isinstance(item, dict) and item.get("id") == region:
                value = item.get("hourly")
                if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
                    return float(value)
    price = entry.get("price")
    if isinstance(price, dict):
        value = price.get("hourly")
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
            return float(value)
    return None


class LinodeProvider(Provider):
    name = "linode"
    display_name = DISPLAY
    capabilities = ["offerings", "create", "start", "stop", "terminate"]
    credential_fields = ["apiToken"]
    stop_keeps_billing = True
    notes = ["A powered-off Linode is still billed; only Delete stops billing"]

    def __init__(self, settings: Optional[Dict[str, Any]] = None) -> None:
        super().__init__(settings)
        self.http_options: Dict[str, Any] = {}  # test hook: timeouts, sleep, backoff
        self._types_cache: Optional[Tuple[float, List[Dict[str, Any]]]] = None

    def _client(self, credentials: Dict[str, str]) -> HttpClient:
        url = str(self.settings.get("apiUrl") or DEFAULT_API_URL)
        return HttpClient(url, credentials.get("apiToken"), provider=DISPLAY, **self.http_options)

    def availability(self, credentials: Dict[str, str]) -> Optional[str]:
        if not credentials.get("apiToken"):
            return 'Set the Linode API token with "GPU Workbench: Set Provider Credentials…".'
        return None

    def _pages(
        self, client: HttpClient, path: str, check: Check, auth: bool = True
    ) -> List[Dict[str, Any]]:
        items: List[Dict[str, Any]] = []
        page = 1
        while True:
            body = client.get(path, {"page": page, "page_size": PAGE_SIZE}, auth=auth, check=check)
            data = field(body, "data", list, DISPLAY, path)
            for item in data:
                if not isinstance(item, dict):
                    raise shape_error(DISPLAY, "%s has a non-object entry" % path)
                items.append(item)
            pages = field(body, "pages", int, DISPLAY, path, optional=True) or 1
            if page >= pages or page >= 1000:
                return items
            page += 1

    def _types(self, client: HttpClient, check: Check) -> List[Dict[str, Any]]:
        now = time.monotonic()
        if self._types_cache is not None and now - self._types_cache[0] < TYPES_TTL:
            return self._types_cache[1]
        types = self._pages(client, "/linode/types", check, auth=False)
        self._types_cache = (now, types)
        return types

    def _vm(self, item: Any, types: List[Dict[str, Any]]) -> Vm:
        what = "linode"
        raw_id = field(item, "id", int, DISPLAY, what)
        status = field(item, "status", str, DISPLAY, what)
        label = field(item, "label", str, DISPLAY, what, optional=True) or str(raw_id)
        type_id = field(item, "type", str, DISPLAY, what, optional=True)
        region = field(item, "region", str, DISPLAY, what, optional=True)
        ipv4 = field(item, "ipv4", list, DISPLAY, what, optional=True) or []
        specs = field(item, "specs", dict, DISPLAY, what, optional=True) or {}
        entry = next((t for t in types if t.get("id") == type_id), None)
        gpus = specs.get("gpus")
        if not isinstance(gpus, int) and entry is not None:
            gpus = entry.get("gpus")
        state = STATUS.get(status, "unknown")
        address = public_address(ipv4)
        caps = {
            "running": ["stop", "terminate"],
            "stopped": ["start", "terminate"],
            "pending": ["stop", "terminate"],
            "stopping": ["terminate"],
            "unknown": ["start", "stop", "terminate"],
        }.get(state, [])
        return Vm(
            self.name,
            str(raw_id),
            label,
            state,
            instance_type=type_id,
            gpu_model=gpu_model(str(entry.get("label") or "")) if entry else None,
            gpu_count=gpus if isinstance(gpus, int) and not isinstance(gpus, bool) else 0,
            region=region,
            price_per_hour=hourly_price(entry, region) if entry else None,
            launched_at=parse_time(item.get("created")),
            address=address,
            ssh=SshTarget(address, 22, "root") if address else None,
            tags=decode_tags(item.get("tags")),
            capabilities=caps,
            stop_keeps_billing=True,
            detail=None if status in STATUS else "unknown Linode status %r" % status,
        )

    # ---- operations ----

    def offerings(
        self, credentials: Dict[str, str], region: Optional[str], check: Check = no_check
    ) -> List[Offering]:
        client = self._client(credentials)
        types = self._types(client, check)
        regions = self._pages(client, "/regions", check, auth=False)
        gpu_regions: List[str] = []
        for item in regions:
            rid = field(item, "id", str, DISPLAY, "region")
            caps = item.get("capabilities")
            if isinstance(caps, list) and GPU_REGION_CAPABILITY not in caps:
                continue
            if region and rid != region:
                continue
            gpu_regions.append(rid)
        result: List[Offering] = []
        for entry in types:
            if entry.get("class") != "gpu":
                continue
            type_id = field(entry, "id", str, DISPLAY, "type")
            label = str(entry.get("label") or type_id)
            price = hourly_price(entry, region)
            gpus = entry.get("gpus")
            vcpus = entry.get("vcpus")
            memory = entry.get("memory")
            result.append(
                Offering(
                    self.name,
                    type_id,
                    description=label,
                    gpu_model=gpu_model(label),
                    gpu_count=gpus if isinstance(gpus, int) else 0,
                    vcpus=vcpus if isinstance(vcpus, int) else None,
                    ram_gib=memory / 1024.0 if isinstance(memory, (int, float)) else None,
                    price_per_hour=price,
                    price_source="api" if price is not None else "unknown",
                    # Linode does not report GPU capacity per region.
                    regions=[{"name": r, "available": None} for r in gpu_regions],
                )
            )
        result.sort(key=lambda o: (o.price_per_hour is None, o.price_per_hour or 0.0))
        return result

    def list(self, credentials: Dict[str, str], check: Check = no_check) -> List[Vm]:
        client = self._client(credentials)
        items = self._pages(client, "/linode/instances", check)
        types = self._prices(client, check)
        return [self._vm(item, types) for item in items]

    def refresh(self, credentials: Dict[str, str], vm_id: str, check: Check = no_check) -> Vm:
        client = self._client(credentials)
        return self._get(client, vm_id, check)

    def _get(self, client: HttpClient, vm_id: str, check: Check) -> Vm:
        item = client.get("/linode/instances/%s" % _id(vm_id), check=check)
        return self._vm(item, self._prices(client, check))

    def _prices(self, client: HttpClient, check: Check) -> List[Dict[str, Any]]:
        """Types for pricing machines; when they cannot be read the machines are still
        listed, with an unknown price."""
        try:
            return self._types(client, check)
        except ProviderError as error:
            log.warning("Linode types unavailable, prices unknown: %s", error.message)
            return []

    def _authorized_keys(
        self, client: HttpClient, request: CreateRequest, check: Check
    ) -> List[str]:
        if request.ssh_public_key:
            return [request.ssh_public_key.strip()]
        if request.ssh_key_name:
            for key in self._pages(client, "/profile/sshkeys", check):
                if key.get("label") == request.ssh_key_name and isinstance(key.get("ssh_key"), str):
                    return [key["ssh_key"].strip()]
            raise ProviderError(
                "ProviderRequest",
                "No SSH key labelled %s in the Linode profile" % request.ssh_key_name,
                hint="Give the SSH public key itself, or add it in Cloud Manager.",
            )
        raise ProviderError(
            "ProviderRequest",
            "Linode needs an SSH key: the root password is random and never shown",
            hint="Give an SSH public key.",
        )

    def create(
        self,
        credentials: Dict[str, str],
        request: CreateRequest,
        check: Check = no_check,
        report: Report = no_report,
    ) -> Vm:
        if request.spot:
            raise unsupported(DISPLAY, "create spot instances", "Linode has no spot market.")
        client = self._client(credentials)
        keys = self._authorized_keys(client, request, check)
        if request.disk_gib:
            report("Linode sizes the disk by plan; diskGiB is ignored")
        password = root_password()
        body: Dict[str, Any] = {
            "type": request.instance_type,
            "region": request.region,
            "image": request.image or DEFAULT_IMAGE,
            "label": sanitize_label(request.name),
            "root_pass": password,
            "authorized_keys": keys,
            "tags": encode_tags(request.tags),
            "booted": True,
        }
        if request.startup_script:
            encoded = base64.b64encode(request.startup_script.encode("utf-8")).decode("ascii")
            body["metadata"] = {"user_data": encoded}
        report("Creating %s in %s" % (request.instance_type, request.region))
        created = client.post("/linode/instances", body, check=check, secrets=[password])
        del body, password
        # From here on a Linode may exist (and bills): a failure deletes it.
        raw_id = created.get("id") if isinstance(created, dict) else None
        if not isinstance(raw_id, int) or isinstance(raw_id, bool):
            raise shape_error(DISPLAY, "create returned no Linode id")
        try:
            vm = self._vm(created, self._prices(client, no_check))
        except BaseException:
            report("Create failed after the Linode was made; deleting %d" % raw_id)
            try:
                client.delete("/linode/instances/%d" % raw_id)
            except ProviderError:
                log.warning("could not delete Linode %d after a failed create", raw_id)
            raise
        return vm

    def start(self, credentials: Dict[str, str], vm_id: str, check: Check = no_check) -> Vm:
        client = self._client(credentials)
        client.post("/linode/instances/%s/boot" % _id(vm_id), check=check)
        return self._get(client, vm_id, check)

    def stop(self, credentials: Dict[str, str], vm_id: str, check: Check = no_check) -> Vm:
        client = self._client(credentials)
        client.post("/linode/instances/%s/shutdown" % _id(vm_id), check=check)
        vm = self._get(client, vm_id, check)
        vm.detail = vm.detail or "Still billed while powered off; Delete stops billing"
        return vm

    def terminate(self, credentials: Dict[str, str], vm_id: str, check: Check = no_check) -> Vm:
        client = self._client(credentials)
        vm = self._get(client, vm_id, check)
        client.delete("/linode/instances/%s" % _id(vm_id), check=check)
        vm.state = "terminated"
        vm.capabilities = []
        return vm


def _id(vm_id: str) -> str:
    if not vm_id.isdigit():
        raise ProviderError("NotFound", "No Linode with id %r" % vm_id)
    return vm_id
