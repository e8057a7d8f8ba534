"""The provider interface and the records every provider returns.

A provider declares what it can do (`capabilities`); operations it cannot do raise
Unsupported, they are never faked. Records are plain classes with `to_json()` matching the
VmInfo / VmOffering / VmProviderInfo dataclasses in protocol.py.

Credentials reach a provider per call as a dict (e.g. {"apiKey": "..."}); a provider must
never log them, put them in an error message or keep them after the call.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional

from ..errors import ApplicationError

Check = Callable[[], None]  # raises when the request was cancelled
Report = Callable[[str], None]  # progress message

STATES = ("pending", "running", "stopping", "stopped", "terminated", "unknown")
CAPABILITIES = ("offerings", "create", "start", "stop", "terminate", "spot")
MANAGED_TAG = "gpu-workbench"  # VMs created here carry this tag (value: "1")


def no_check() -> None:
    """A cancellation check that never fires."""


def no_report(message: str) -> None:
    """A progress reporter that drops messages."""


class ProviderError(ApplicationError):
    """A provider failure mapped to an application error kind with a hint.

    kind: ProviderAuth (bad or missing credentials), ProviderQuota (quota or capacity),
    ProviderRateLimited, ProviderUnavailable (network, timeout, 5xx, SDK missing),
    ProviderResponse (malformed answer), ProviderRequest (invalid request), Unsupported,
    NotFound.
    """

    def __init__(
        self, kind: str, message: str, hint: Optional[str] = None, detail: Optional[str] = None
    ) -> None:
        super().__init__(kind, message, detail=detail, hint=hint)


def unsupported(provider: str, operation: str, why: str) -> ProviderError:
    return ProviderError("Unsupported", "%s cannot %s" % (provider, operation), hint=why)


class SshTarget:
    __slots__ = ("alias", "host", "identity_file", "port", "user")

    def __init__(
        self,
        host: str,
        port: int = 22,
        user: Optional[str] = None,
        identity_file: Optional[str] = None,
        alias: Optional[str] = None,
    ) -> None:
        self.host = host
        self.port = port
        self.user = user
        self.identity_file = identity_file
        self.alias = alias

    def to_json(self) -> Dict[str, Any]:
        return {
            "host": self.host,
            "port": self.port,
            "user": self.user,
            "identityFile": self.identity_file,
            "alias": self.alias,
        }


class Vm:
    """One machine as its provider reports it (accrued cost is filled in by the ledger)."""

    def __init__(
        self,
        provider: str,
        id: str,
        name: str,
        state: str,
        *,
        instance_type: Optional[str] = None,
        gpu_model: Optional[str] = None,
        gpu_count: int = 0,
        region: Optional[str] = None,
        price_per_hour: Optional[float] = None,
        spot: bool = False,
        launched_at: Optional[float] = None,
        address: Optional[str] = None,
        ssh: Optional[SshTarget] = None,
        tags: Optional[Dict[str, str]] = None,
        capabilities: Optional[List[str]] = None,
        stop_keeps_billing: bool = False,
        detail: Optional[str] = None,
    ) -> None:
        if state not in STATES:
            state = "unknown"
        self.provider = provider
        self.id = id
        self.name = name
        self.state = state
        self.instance_type = instance_type
        self.gpu_model = gpu_model
        self.gpu_count = gpu_count
        self.region = region
        # 0 from an API means "not known", never free: only the local machine costs 0.
        self.price_per_hour = price_per_hour
        self.spot = spot
        self.launched_at = launched_at
        self.address = address
        self.ssh = ssh
        self.tags = dict(tags or {})
        self.capabilities = list(capabilities or [])
        self.stop_keeps_billing = stop_keeps_billing
        self.detail = detail
        self.accrued_cost: Optional[float] = None

    @property
    def key(self) -> str:
        return "%s/%s" % (self.provider, self.id)

    @property
    def managed(self) -> bool:
        return MANAGED_TAG in self.tags

    def to_json(self) -> Dict[str, Any]:
        return {
            "provider": self.provider,
            "id": self.id,
            "name": self.name,
            "state": self.state,
            "instanceType": self.instance_type,
            "gpuModel": self.gpu_model,
            "gpuCount": self.gpu_count,
            "region": self.region,
            "pricePerHour": self.price_per_hour,
            "spot": self.spot,
            "launchedAt": self.launched_at,
            "address": self.address,
            "ssh": self.ssh.to_json() if self.ssh is not None else None,
            "tags": self.tags,
            "managed": self.managed,
            "capabilities": self.capabilities,
            "stopKeepsBilling": self.stop_keeps_billing,
            "accruedCost": self.accrued_cost,
            "detail": self.detail,
        }


class Offering:
    def __init__(
        self,
        provider: str,
        instance_type: str,
        *,
        description: str = "",
        gpu_model: Optional[str] = None,
        gpu_count: int = 0,
        gpu_memory_gib: Optional[float] = None,
        vcpus: Optional[int] = None,
        ram_gib: Optional[float] = None,
        price_per_hour: Optional[float] = None,
        spot_price_per_hour: Optional[float] = None,
        price_source: str = "unknown",
        regions: Optional[List[Dict[str, Any]]] = None,  # {"name", "available": bool | None}
    ) -> None:
        self.provider = provider
        self.instance_type = instance_type
        self.description = description
        self.gpu_model = gpu_model
        self.gpu_count = gpu_count
        self.gpu_memory_gib = gpu_memory_gib
        self.vcpus = vcpus
        self.ram_gib = ram_gib
        self.price_per_hour = price_per_hour
        self.spot_price_per_hour = spot_price_per_hour
        self.price_source = price_source
        self.regions = list(regions or [])

    def to_json(self) -> Dict[str, Any]:
        return {
            "provider": self.provider,
            "instanceType": self.instance_type,
            "description": self.description,
            "gpuModel": self.gpu_model,
            "gpuCount": self.gpu_count,
            "gpuMemoryGiB": self.gpu_memory_gib,
            "vcpus": self.vcpus,
            "ramGiB": self.ram_gib,
            "pricePerHour": self.price_per_hour,
            "spotPricePerHour": self.spot_price_per_hour,
            "priceSource": self.price_source,
            "regions": self.regions,
        }


class CreateRequest:
    """What `create` gets (VmCreateParams without credentials)."""

    def __init__(
        self,
        name: str,
        instance_type: str,
        region: str,
        *,
        image: Optional[str] = None,
        disk_gib: Optional[int] = None,
        spot: bool = False,
        ssh_key_name: Optional[str] = None,
        ssh_public_key: Optional[str] = None,
        tags: Optional[Dict[str, str]] = None,
        startup_script: Optional[str] = None,
    ) -> None:
        self.name = name
        self.instance_type = instance_type
        self.region = region
        self.image = image
        self.disk_gib = disk_gib
        self.spot = spot
        self.ssh_key_name = ssh_key_name
        self.ssh_public_key = ssh_public_key
        self.tags = dict(tags or {})
        self.tags.setdefault(MANAGED_TAG, "1")
        self.startup_script = startup_script


class Provider:
    """One cloud (or this machine, or SSH hosts). Subclasses set the class attributes."""

    name = ""
    display_name = ""
    capabilities: List[str] = []
    credential_fields: List[str] = []  # secrets kept in VS Code SecretStorage
    stop_keeps_billing = False
    notes: List[str] = []

    def __init__(self, settings: Optional[Dict[str, Any]] = None) -> None:
        # Non-secret settings: API base URLs (tests point them at local servers), AWS
        # profile and regions, extra SSH hosts. Never credentials.
        self.settings = dict(settings or {})

    # ---- what the provider is ----

    def availability(self, credentials: Dict[str, str]) -> Optional[str]:
        """None when usable; otherwise why not, saying what to do (install X, set a key)."""
        return None

    def configured(self, credentials: Dict[str, str]) -> bool:
        return all(credentials.get(f) for f in self.credential_fields)

    def info(self, credentials: Dict[str, str]) -> Dict[str, Any]:
        reason = self.availability(credentials)
        return {
            "name": self.name,
            "displayName": self.display_name,
            "available": reason is None,
            "reason": reason,
            "capabilities": list(self.capabilities),
            "credentialFields": list(self.credential_fields),
            "configured": self.configured(credentials),
            "stopKeepsBilling": self.stop_keeps_billing,
            "notes": list(self.notes),
        }

    # ---- operations (raise ProviderError; unsupported ones raise `unsupported`) ----

    def offerings(
        self, credentials: Dict[str, str], region: Optional[str], check: Check = no_check
    ) -> List[Offering]:
        raise unsupported(self.display_name, "list offerings", "This provider has no catalogue.")

    def list(self, credentials: Dict[str, str], check: Check = no_check) -> List[Vm]:
        raise NotImplementedError

    def create(
        self,
        credentials: Dict[str, str],
        request: CreateRequest,
        check: Check = no_check,
        report: Report = no_report,
    ) -> Vm:
        raise unsupported(
            self.display_name, "create machines", "Create it with the provider's own tools."
        )

    def start(self, credentials: Dict[str, str], vm_id: str, check: Check = no_check) -> Vm:
        raise unsupported(self.display_name, "start machines", "")

    def stop(self, credentials: Dict[str, str], vm_id: str, check: Check = no_check) -> Vm:
        raise unsupported(self.display_name, "stop machines", "")

    def terminate(self, credentials: Dict[str, str], vm_id: str, check: Check = no_check) -> Vm:
        raise unsupported(self.display_name, "terminate machines", "")

    def refresh(self, credentials: Dict[str, str], vm_id: str, check: Check = no_check) -> Vm:
        """One VM's current record (default: from `list`)."""
        for vm in self.list(credentials, check):
            if vm.id == vm_id:
                return vm
        raise ProviderError("NotFound", "No machine %s on %s" % (vm_id, self.display_name))
