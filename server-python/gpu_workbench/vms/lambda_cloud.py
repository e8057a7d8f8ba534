"""Lambda Cloud (REST API v1): offerings, list, create (launch) and terminate.

Lambda has no stop: an instance bills from launch until it is terminated, and only attached
file systems keep data. Capacity is checked before launching (launch is rate limited to
about one call per 10 s; a 429 is backed off from `launchBackoff` seconds, default 10).

Lambda has no instance tags, so a listed instance's tags are empty; whether GPU Workbench
created it is known from the ledger (create() returns the request's tags).
"""

from __future__ import annotations

import hashlib
import logging
import re
import urllib.parse
from typing import Any, Dict, List, Optional, Tuple

from .base import (
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

log = logging.getLogger("gpu_workbench.vms.lambda")

DEFAULT_API_URL = "https://cloud.lambdalabs.com/api/v1"
DISPLAY = "Lambda Cloud"
STATUS = {
    "active": "running",
    "booting": "pending",
    "unhealthy": "unknown",
    "terminated": "terminated",
    "terminating": "stopping",
}
SSH_USER = "ubuntu"
NAME_MAX = 64


def gpu_from(name: str, description: str, gpu_description: Optional[str]) -> Tuple[str, int]:
    """(model, count) from e.g. gpu_8x_a100_80gb_sxm4 / "8x A100 (80 GB SXM4)"."""
    count = 0
    model = ""
    match = re.match(r"gpu_(\d+)x_([a-z0-9]+)", name)
    if match:
        count = int(match.group(1))
        model = match.group(2).upper()
    match = re.match(r"\s*(\d+)\s*x\s+(\S+)", description)
    if match:
        count = count or int(match.group(1))
        model = match.group(2)
    if gpu_description:
        model = gpu_description.split("(")[0].strip() or model
    return model, count


def gpu_memory(text: str) -> Optional[float]:
    match = re.search(r"\((\d+(?:\.\d+)?)\s*GB", text)
    return float(match.group(1)) if match else None


def key_body(public_key: str) -> str:
    """A public key without its comment: "type base64"."""
    return " ".join(public_key.strip().split()[:2])


class LambdaProvider(Provider):
    name = "lambda"
    display_name = DISPLAY
    capabilities = ["offerings", "create", "terminate"]
    credential_fields = ["apiKey"]
    stop_keeps_billing = False
    notes = [
        "Lambda Cloud instances cannot be stopped, only terminated; billing runs from launch "
        "until terminate. Only attached file systems keep data."
    ]

    def __init__(self, settings: Optional[Dict[str, Any]] = None) -> None:
        super().__init__(settings)
        # Test hooks (not user settings): timeouts and backoff are shortened by tests.
        self.http_options: Dict[str, Any] = {}
        self.launch_backoff = float(self.settings.get("launchBackoff", 10.0))

    # ---- helpers ----

    def _client(self, credentials: Dict[str, str]) -> HttpClient:
        url = str(self.settings.get("apiUrl") or DEFAULT_API_URL)
        return HttpClient(url, credentials.get("apiKey"), provider=DISPLAY, **self.http_options)

    def availability(self, credentials: Dict[str, str]) -> Optional[str]:
        if not credentials.get("apiKey"):
            return 'Set the Lambda Cloud API key with "GPU Workbench: Set Provider Credentials…".'
        return None

    def _types(self, client: HttpClient, check: Check) -> Dict[str, Any]:
        data = field(client.get("/instance-types", check=check), "data", dict, DISPLAY, "types")
        return data

    def _vm(self, item: Any) -> Vm:
        what = "instance"
        vm_id = field(item, "id", str, DISPLAY, what)
        status = field(item, "status", str, DISPLAY, what)
        name = field(item, "name", str, DISPLAY, what, optional=True) or vm_id
        ip = field(item, "ip", str, DISPLAY, what, optional=True)
        region = field(item, "region", dict, DISPLAY, what, optional=True) or {}
        itype = field(item, "instance_type", dict, DISPLAY, what, optional=True) or {}
        type_name = field(itype, "name", str, DISPLAY, "instance_type", optional=True)
        cents = field(itype, "price_cents_per_hour", (int, float), DISPLAY, what, optional=True)
        model, count = gpu_from(
            type_name or "",
            str(itype.get("description") or ""),
            itype.get("gpu_description") if isinstance(itype.get("gpu_description"), str) else None,
        )
        state = STATUS.get(status, "unknown")
        detail = None
        if status == "unhealthy":
            detail = "Lambda reports the instance as unhealthy"
        elif status not in STATUS:
            detail = "unknown Lambda status %r" % status
        return Vm(
            self.name,
            vm_id,
            name,
            state,
            instance_type=type_name,
            gpu_model=model or None,
            gpu_count=count,
            region=region.get("name") if isinstance(region.get("name"), str) else None,
            price_per_hour=cents / 100.0 if cents else None,
            address=ip,
            ssh=SshTarget(ip, 22, SSH_USER) if ip else None,
            capabilities=[] if state == "terminated" else ["terminate"],
            detail=detail,
        )

    # ---- operations ----

    def offerings(
        self, credentials: Dict[str, str], region: Optional[str], check: Check = no_check
    ) -> List[Offering]:
        types = self._types(self._client(credentials), check)
        known: List[str] = []
        parsed: List[Tuple[str, Dict[str, Any], List[str]]] = []
        for key, entry in types.items():
            itype = field(entry, "instance_type", dict, DISPLAY, "type %s" % key)
            regions = field(entry, "regions_with_capacity_available", list, DISPLAY, key)
            names = [field(r, "name", str, DISPLAY, "region") for r in regions]
            for n in names:
                if n not in known:
                    known.append(n)
            parsed.append((key, itype, names))
        result: List[Offering] = []
        for key, itype, names in parsed:
            raw_name = itype.get("name")
            type_name = raw_name if isinstance(raw_name, str) else key
            cents = field(itype, "price_cents_per_hour", (int, float), DISPLAY, key, optional=True)
            raw_specs = itype.get("specs")
            specs: Dict[str, Any] = raw_specs if isinstance(raw_specs, dict) else {}
            description = str(itype.get("description") or type_name)
            gpu_desc = itype.get("gpu_description")
            gpu_desc = gpu_desc if isinstance(gpu_desc, str) else None
            model, count = gpu_from(type_name, description, gpu_desc)
            gpus = specs.get("gpus")
            if isinstance(gpus, int) and not isinstance(gpus, bool) and gpus > 0:
                count = gpus
            vcpus = specs.get("vcpus")
            ram = specs.get("memory_gib")
            regions = [{"name": n, "available": n in names} for n in sorted(known)]
            if region:
                regions = [r for r in regions if r["name"] == region] or [
                    {"name": region, "available": False}
                ]
            result.append(
                Offering(
                    self.name,
                    type_name,
                    description=description,
                    gpu_model=model or None,
                    gpu_count=count,
                    gpu_memory_gib=gpu_memory(gpu_desc or description),
                    vcpus=vcpus if isinstance(vcpus, int) else None,
                    ram_gib=float(ram) if isinstance(ram, (int, float)) else None,
                    price_per_hour=cents / 100.0 if cents else None,
                    price_source="api" if cents else "unknown",
                    regions=regions,
                )
            )
        result.sort(key=lambda o: (o.price_per_hour is None, o.price_per_hour or 0.0))
        return result

    def list(self, credentials: Dict[str, str], check: Check = no_check) -> List[Vm]:
        body = self._client(credentials).get("/instances", check=check)
        items = field(body, "data", list, DISPLAY, "instances")
        return [self._vm(item) for item in items]

    def refresh(self, credentials: Dict[str, str], vm_id: str, check: Check = no_check) -> Vm:
        body = self._client(credentials).get("/instances/%s" % _quote(vm_id), check=check)
        return self._vm(field(body, "data", dict, DISPLAY, "instance"))

    def _ssh_key_name(
        self, client: HttpClient, request: CreateRequest, check: Check, report: Report
    ) -> str:
        if not request.ssh_public_key:
            if request.ssh_key_name:
                return request.ssh_key_name
            raise ProviderError(
                "ProviderRequest",
                "Lambda Cloud needs an SSH key to launch an instance",
                hint="Give an SSH public key (or the name of a key already on Lambda Cloud).",
            )
        wanted = key_body(request.ssh_public_key)
        if len(wanted.split()) != 2:
            raise ProviderError("ProviderRequest", "The SSH public key is not valid")
        keys = field(client.get("/ssh-keys", check=check), "data", list, DISPLAY, "ssh keys")
        for key in keys:
            content = field(key, "public_key", str, DISPLAY, "ssh key", optional=True)
            if content and key_body(content) == wanted:
                return field(key, "name", str, DISPLAY, "ssh key")
        name = "gpu-workbench-" + hashlib.sha256(wanted.encode("utf-8")).hexdigest()[:12]
        report("Adding SSH key %s to Lambda Cloud" % name)
        added = client.post(
            "/ssh-keys", {"name": name, "public_key": request.ssh_public_key.strip()}, check=check
        )
        data = field(added, "data", dict, DISPLAY, "ssh key")
        return field(data, "name", str, DISPLAY, "ssh key", optional=True) or name

    def create(
        self,
        credentials: Dict[str, str],
        request: CreateRequest,
        check: Check = no_check,
        report: Report = no_report,
    ) -> Vm:
        if request.spot:
            raise unsupported(DISPLAY, "launch spot instances", "Lambda has on-demand only.")
        if request.image:
            raise unsupported(
                DISPLAY, "choose the image", "Lambda instances run Lambda Stack (Ubuntu)."
            )
        if request.startup_script:
            raise unsupported(
                DISPLAY,
                "run a startup script",
                "Run the script over SSH once the instance is up.",
            )
        client = self._client(credentials)
        report("Checking Lambda Cloud capacity")
        types = self._types(client, check)
        entry = types.get(request.instance_type)
        if entry is None:
            raise ProviderError(
                "ProviderRequest",
                "Lambda Cloud has no instance type %s" % request.instance_type,
                hint="Pick one from the offerings list.",
            )
        regions = field(entry, "regions_with_capacity_available", list, DISPLAY, "type")
        names = [field(r, "name", str, DISPLAY, "region") for r in regions]
        if request.region not in names:
            raise ProviderError(
                "ProviderQuota",
                "Lambda Cloud has no %s capacity in %s now"
                % (request.instance_type, request.region),
                hint=(
                    "Capacity now in: %s." % ", ".join(names)
                    if names
                    else "No region has capacity now; try later or another type."
                ),
            )
        key_name = self._ssh_key_name(client, request, check, report)
        body = {
            "region_name": request.region,
            "instance_type_name": request.instance_type,
            "ssh_key_names": [key_name],
            "quantity": 1,
            "name": request.name[:NAME_MAX],
        }
        report("Launching %s in %s" % (request.instance_type, request.region))
        launched = client.post(
            "/instance-operations/launch", body, check=check, backoff=self.launch_backoff
        )
        # From here on an instance may exist: any failure terminates what was launched.
        ids: List[str] = []
        try:
            data = field(launched, "data", dict, DISPLAY, "launch")
            raw_ids = field(data, "instance_ids", list, DISPLAY, "launch")
            ids = [i for i in raw_ids if isinstance(i, str)]
            if len(ids) != 1 or len(raw_ids) != 1:
                raise shape_error(DISPLAY, "launch returned %d instance ids" % len(raw_ids))
            vm = self.refresh(credentials, ids[0])
        except BaseException:
            if ids:
                self._cleanup(client, ids, report)
            raise
        vm.tags = dict(request.tags)
        return vm

    def _cleanup(self, client: HttpClient, ids: List[str], report: Report) -> None:
        report("Launch failed after it started; terminating %s" % ", ".join(ids))
        try:
            client.post("/instance-operations/terminate", {"instance_ids": ids})
        except ProviderError:
            # The original error is what the user needs; the orphan is named in the log.
            log.warning("could not terminate Lambda instances %s after a failed launch", ids)

    def terminate(self, credentials: Dict[str, str], vm_id: str, check: Check = no_check) -> Vm:
        client = self._client(credentials)
        body = client.post("/instance-operations/terminate", {"instance_ids": [vm_id]}, check=check)
        data = field(body, "data", dict, DISPLAY, "terminate")
        gone = field(data, "terminated_instances", list, DISPLAY, "terminate")
        for item in gone:
            if isinstance(item, dict) and item.get("id") == vm_id:
                vm = self._vm(item)
                vm.state = "terminated"
                vm.capabilities = []
                return vm
        raise shape_error(DISPLAY, "terminate did not list instance %s" % vm_id)

    def start(self, credentials: Dict[str, str], vm_id: str, check: Check = no_check) -> Vm:
        raise unsupported(DISPLAY, "start instances", "Lambda instances run until terminated.")

    def stop(self, credentials: Dict[str, str], vm_id: str, check: Check = no_check) -> Vm:
        raise unsupported(
            DISPLAY,
            "stop instances",
            "Lambda Cloud can only terminate; keep data on an attached file system.",
        )


def _quote(value: str) -> str:
    return urllib.parse.quote(value, safe="")
