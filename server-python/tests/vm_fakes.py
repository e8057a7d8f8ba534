"""In-memory VM providers for tests (used in-process and, through GPUWB_VM_EXTRA_PROVIDERS,
inside a backend subprocess)."""

from __future__ import annotations

import logging
from typing import Any, Dict, List, Optional

from gpu_workbench.vms.base import (
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
)

log = logging.getLogger("gpu_workbench.vms.fake")


class FakeCloud:
    """The state behind a FakeProvider: machines, calls made, failures to inject."""

    def __init__(
        self,
        name: str = "fake",
        capabilities: Optional[List[str]] = None,
        stop_keeps_billing: bool = False,
        price: Optional[float] = 2.0,
    ) -> None:
        self.name = name
        self.capabilities = list(
            capabilities if capabilities is not None else ["create", "start", "stop", "terminate"]
        )
        self.stop_keeps_billing = stop_keeps_billing
        self.price = price
        self.vms: Dict[str, Vm] = {}
        self.calls: List[str] = []
        self.fail: Optional[BaseException] = None
        self.seen_credentials: List[Dict[str, str]] = []
        self._next = 0

    def add(
        self, state: str = "running", name: str = "", launched_at: Optional[float] = None
    ) -> Vm:
        self._next += 1
        vm_id = "%s-%d" % (self.name, self._next)
        vm = Vm(
            self.name,
            vm_id,
            name or vm_id,
            state,
            instance_type="gpu.small",
            gpu_model="T4",
            gpu_count=1,
            price_per_hour=self.price,
            launched_at=launched_at,
            ssh=SshTarget("127.0.0.1", 22, "ubuntu"),
            stop_keeps_billing=self.stop_keeps_billing,
        )
        self._caps(vm)
        self.vms[vm_id] = vm
        return vm

    def _caps(self, vm: Vm) -> None:
        caps = []
        if vm.state == "running" and "stop" in self.capabilities:
            caps.append("stop")
        if vm.state == "stopped" and "start" in self.capabilities:
            caps.append("start")
        if vm.state != "terminated" and "terminate" in self.capabilities:
            caps.append("terminate")
        vm.capabilities = caps

    def set_state(self, vm_id: str, state: str) -> Vm:
        vm = self.vms[vm_id]
        vm.state = state
        self._caps(vm)
        return vm


class FakeProvider(Provider):
    name = "fake"
    display_name = "Fake cloud"
    credential_fields = ["apiKey"]

    def __init__(
        self, settings: Optional[Dict[str, Any]] = None, cloud: Optional[FakeCloud] = None
    ):
        super().__init__(settings)
        self.cloud = cloud or FakeCloud()
        self.name = self.cloud.name
        self.capabilities = list(self.cloud.capabilities)
        self.stop_keeps_billing = self.cloud.stop_keeps_billing

    def _enter(self, what: str, credentials: Dict[str, str]) -> None:
        self.cloud.calls.append(what)
        self.cloud.seen_credentials.append(dict(credentials))
        if self.cloud.fail is not None:
            raise self.cloud.fail

    def offerings(
        self, credentials: Dict[str, str], region: Optional[str], check: Check = no_check
    ) -> List[Offering]:
        self._enter("offerings", credentials)
        return [Offering(self.name, "gpu.small", gpu_model="T4", gpu_count=1, price_per_hour=2.0)]

    def list(self, credentials: Dict[str, str], check: Check = no_check) -> List[Vm]:
        self._enter("list", credentials)
        return [vm for vm in self.cloud.vms.values() if vm.state != "terminated"]

    def create(
        self,
        credentials: Dict[str, str],
        request: CreateRequest,
        check: Check = no_check,
        report: Report = no_report,
    ) -> Vm:
        self._enter("create", credentials)
        report("requesting %s" % request.instance_type)
        check()
        vm = self.cloud.add("pending", request.name)
        vm.tags.update(request.tags)
        report("waiting for %s" % vm.id)
        return vm

    def _op(self, what: str, credentials: Dict[str, str], vm_id: str, state: str) -> Vm:
        self._enter("%s %s" % (what, vm_id), credentials)
        if vm_id not in self.cloud.vms:
            raise ProviderError("NotFound", "no machine %s" % vm_id)
        return self.cloud.set_state(vm_id, state)

    def start(self, credentials: Dict[str, str], vm_id: str, check: Check = no_check) -> Vm:
        return self._op("start", credentials, vm_id, "running")

    def stop(self, credentials: Dict[str, str], vm_id: str, check: Check = no_check) -> Vm:
        return self._op("stop", credentials, vm_id, "stopped")

    def terminate(self, credentials: Dict[str, str], vm_id: str, check: Check = no_check) -> Vm:
        return self._op("terminate", credentials, vm_id, "terminated")


class LeakyProvider(FakeProvider):
    """A badly behaved provider: logs the credentials it gets and puts them in its errors
    (the backend must keep them out of its log and its replies anyway)."""

    name = "leaky"
    display_name = "Leaky cloud"

    def __init__(self, settings: Optional[Dict[str, Any]] = None) -> None:
        super().__init__(settings, FakeCloud("leaky"))

    def list(self, credentials: Dict[str, str], check: Check = no_check) -> List[Vm]:
        key = credentials.get("apiKey", "")
        log.debug("listing with key %s", key)
        log.info("credentials: %r", credentials)
        raise ProviderError(
            "ProviderAuth", "key %s was refused" % key, hint="check key %s" % key, detail=key
        )

    def create(
        self,
        credentials: Dict[str, str],
        request: CreateRequest,
        check: Check = no_check,
        report: Report = no_report,
    ) -> Vm:
        raise RuntimeError("boom with %s" % credentials.get("apiKey"))
