"""VmService in process: provider isolation, credential hygiene, settings and autostop."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import pytest
from vm_fakes import FakeCloud, FakeProvider, LeakyProvider

from gpu_workbench.errors import ApplicationError, RequestCancelled
from gpu_workbench.vms import service as service_module
from gpu_workbench.vms.base import CreateRequest, ProviderError, Vm
from gpu_workbench.vms.service import (
    VmService,
    kernels_keep_busy,
    parse_utilization,
    provider_settings,
    tick_seconds,
)

TOKEN = "sk-planted-SECRET-7f3a9c"
MIN = 60.0


class Clock:
    def __init__(self, t: float = 1_800_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


class Rig:
    """A service with fake providers, a fake clock, hooks and captured notifications."""

    def __init__(self, tmp_path: Path, **service_args: Any) -> None:
        self.clock = Clock()
        self.notes: List[Tuple[str, Dict[str, Any]]] = []
        self.utilization: Optional[float] = 0.0
        self.is_busy = False
        self.tmp_path = tmp_path
        self.service = self.make(**service_args)

    def make(self, **service_args: Any) -> VmService:
        return VmService(
            str(self.tmp_path / "data"),
            {},
            {},
            lambda method, params: self.notes.append((method, params)),
            clock=self.clock,
            busy=lambda vm: self.is_busy,
            gpu_utilization=lambda vm: self.utilization,
            **service_args,
        )

    def cloud(self, name: str, **kwargs: Any) -> FakeCloud:
        cloud = FakeCloud(name, **kwargs)
        self.service.register(name, lambda settings: FakeProvider(settings, cloud), name.title())
        return cloud

    def at(self, minutes: float) -> None:
        self.clock.t = 1_800_000_000.0 + minutes * MIN

    def tick_at(self, minutes: float) -> None:
        self.at(minutes)
        self.service.tick()

    def warnings(self) -> List[Dict[str, Any]]:
        return [p for m, p in self.notes if m == "vm/idleWarning"]


@pytest.fixture
def rig(tmp_path: Path):
    r = Rig(tmp_path)
    yield r
    r.service.close()


# ---- registry and listing ----


def test_missing_or_broken_provider_module_is_isolated(rig: Rig, monkeypatch: Any) -> None:
    monkeypatch.setitem(
        service_module.PROVIDER_MODULES, "nope", ("does_not_exist", "NopeProvider", "Nope")
    )
    cloud = rig.cloud("good")
    cloud.add()
    infos = {p["name"]: p for p in rig.service.providers(None)["providers"]}
    assert infos["nope"]["available"] is False
    assert "could not be loaded" in infos["nope"]["reason"]
    assert infos["good"]["available"] is True
    listed = rig.service.list(None, None)
    assert [v["provider"] for v in listed["vms"] if v["provider"] == "good"] == ["good"]
    assert all(e["provider"] != "nope" for e in listed["errors"])
    explicit = rig.service.list(["nope", "good"], None)
    assert [e["provider"] for e in explicit["errors"]] == ["nope"]
    assert explicit["errors"][0]["kind"] == "ProviderUnavailable"
    assert len(explicit["vms"]) == 1


def test_list_errors_are_per_provider(rig: Rig) -> None:
    ok = rig.cloud("okc")
    ok.add()
    auth = rig.cloud("authc")
    auth.fail = ProviderError("ProviderAuth", "bad key", hint="set the key")
    crash = rig.cloud("crashc")
    crash.fail = RuntimeError("unexpected")
    result = rig.service.list(["okc", "authc", "crashc"], None)
    assert [v["provider"] for v in result["vms"]] == ["okc"]
    errors = {e["provider"]: e for e in result["errors"]}
    assert errors["authc"] == {
        "provider": "authc",
        "kind": "ProviderAuth",
        "message": "bad key",
        "hint": "set the key",
    }
    assert errors["crashc"]["kind"] == "Internal"


def test_unknown_provider(rig: Rig) -> None:
    with pytest.raises(ApplicationError) as info:
        rig.service.act("stop", "mars", "x", None)
    assert info.value.kind == "NotFound"


def test_credentials_reach_only_their_provider(rig: Rig) -> None:
    a = rig.cloud("ca")
    b = rig.cloud("cb")
    rig.service.list(["ca", "cb"], {"ca": {"apiKey": "key-for-a"}})
    assert a.seen_credentials == [{"apiKey": "key-for-a"}]
    assert b.seen_credentials == [{}]


def test_list_records_cost_and_fills_accrued(rig: Rig) -> None:
    cloud = rig.cloud("costc", price=3.0)
    vm = cloud.add(launched_at=rig.clock.t - 3600)
    first = rig.service.list(["costc"], None)["vms"][0]
    assert first["accruedCost"] == pytest.approx(3.0)
    rig.at(60)
    again = rig.service.list(["costc"], None)["vms"][0]
    assert again["accruedCost"] == pytest.approx(6.0)
    # Gone from the list: terminated as of the last sighting.
    del cloud.vms[vm.id]
    rig.at(180)
    rig.service.list(["costc"], None)
    report = rig.service.cost(1, None, None)
    assert report["burnRatePerHour"] == 0.0
    assert rig.service.ledger.accrued(vm.key, rig.clock.t) == pytest.approx(6.0)


def test_clock_offset_moves_cost(rig: Rig) -> None:
    cloud = rig.cloud("clk", price=1.0)
    cloud.add()
    rig.service.list(["clk"], None)
    rig.service.clock_offset = 7200.0
    assert rig.service.cost(1, None, None)["total"] == pytest.approx(2.0)


def test_create_reports_progress_and_honours_cancel(rig: Rig) -> None:
    cloud = rig.cloud("mk")
    messages: List[str] = []
    vm = rig.service.create(
        "mk", CreateRequest("trainer", "gpu.small", "r1"), None, report=messages.append
    )
    assert vm["state"] == "pending" and vm["managed"] is True
    assert messages == ["requesting gpu.small", "waiting for %s" % vm["id"]]

    def cancelled() -> None:
        raise RequestCancelled()

    with pytest.raises(RequestCancelled):
        rig.service.create("mk", CreateRequest("x", "gpu.small", "r1"), None, cancelled)
    assert len(cloud.vms) == 1


def test_operations_refused_when_the_provider_cannot(rig: Rig) -> None:
    cloud = rig.cloud("nostop", capabilities=["terminate"])
    vm = cloud.add()
    with pytest.raises(ProviderError) as info:
        rig.service.act("stop", "nostop", vm.id, None)
    assert info.value.kind == "Unsupported"
    assert cloud.calls == []
    # The VM's own capabilities (from the last list) are checked too.
    full = rig.cloud("full")
    stopped = full.add("stopped")
    rig.service.list(["full"], None)
    with pytest.raises(ProviderError) as info:
        rig.service.act("stop", "full", stopped.id, None)
    assert info.value.kind == "Unsupported"
    assert rig.service.act("start", "full", stopped.id, None)["state"] == "running"


def test_local_is_never_operated(rig: Rig) -> None:
    with pytest.raises(ApplicationError):
        rig.service.act("stop", "local", "local", None)


# ---- credentials never logged ----


def test_planted_token_never_logged_or_returned(rig: Rig, caplog: Any) -> None:
    rig.service.register("leaky", LeakyProvider)
    creds = {"leaky": {"apiKey": TOKEN}}
    caplog.set_level(logging.DEBUG)
    with caplog.at_level(logging.DEBUG):
        result = rig.service.list(["leaky"], creds)
        with pytest.raises(ApplicationError) as created:
            rig.service.create("leaky", CreateRequest("n", "t", "r"), creds)
        crash = rig.cloud("crash2")
        crash.fail = RuntimeError("token was %s" % TOKEN)
        crashed = rig.service.list(["crash2"], {"crash2": {"apiKey": TOKEN}})
        with pytest.raises(ApplicationError) as op:
            rig.service.act("stop", "crash2", "x", {"crash2": {"apiKey": TOKEN}})
    assert caplog.records, "the provider did log"
    assert TOKEN not in caplog.text
    for record in caplog.records:
        assert TOKEN not in record.getMessage()
    assert TOKEN not in repr(result) and "[redacted]" in result["errors"][0]["message"]
    assert TOKEN not in repr(crashed)
    for error in (created.value, op.value):
        assert TOKEN not in repr(error.to_dict())
    assert "boom with [redacted]" in created.value.message


def test_redaction_ends_with_the_call(rig: Rig, caplog: Any) -> None:
    rig.cloud("plain").add()
    rig.service.list(["plain"], {"plain": {"apiKey": "abcdefgh"}})
    with caplog.at_level(logging.INFO):
        logging.getLogger("gpu_workbench.test").info("the word abcdefgh later")
    assert "abcdefgh" in caplog.text  # nothing is kept after the call


# ---- settings ----


def test_provider_settings_env_fallbacks_and_untrusted() -> None:
    env = {"GPUWB_LAMBDA_API_URL": "http://127.0.0.1:9/lambda"}
    settings = {"lambda": {"apiUrl": "http://evil.example/"}, "aws": {"regions": ["us-east-1"]}}
    assert provider_settings(settings, "lambda", env, True)["apiUrl"] == "http://evil.example/"
    assert provider_settings(settings, "lambda", env, False)["apiUrl"] == (
        "http://127.0.0.1:9/lambda"
    )
    assert provider_settings(settings, "linode", env, False) == {}
    aws = provider_settings(
        {"aws": {"endpointUrl": "http://x", "regions": ["a"]}}, "aws", {}, False
    )
    assert aws == {"regions": ["a"]}
    assert provider_settings({}, "aws", {"GPUWB_AWS_ENDPOINT_URL": "http://m"}, True) == {
        "endpointUrl": "http://m"
    }


def test_providers_get_their_section(tmp_path: Path) -> None:
    got: Dict[str, Any] = {}

    def factory(settings: Dict[str, Any]) -> FakeProvider:
        got.update(settings)
        return FakeProvider(settings, FakeCloud("sec"))

    service = VmService(
        str(tmp_path / "d"), {"sec": {"apiUrl": "http://a", "x": 1}}, {}, None, trusted=False
    )
    service.register("sec", factory)
    service.list(["sec"], None)
    assert got == {"x": 1}
    service.update_settings({"sec": {"x": 2}})
    service.list(["sec"], None)
    assert got == {"x": 2}


def test_parse_utilization() -> None:
    assert parse_utilization("3\n87\n") == 87.0
    assert parse_utilization("") is None
    assert parse_utilization("[N/A]\n") is None


# ---- autostop ----


def watched(rig: Rig, name: str = "auto", minutes: int = 10, **kwargs: Any) -> Tuple[FakeCloud, Vm]:
    cloud = rig.cloud(name, **{k: v for k, v in kwargs.items() if k != "terminate"})
    vm = cloud.add()
    rig.service.list([name], None)
    info = rig.service.set_autostop(name, vm.id, minutes, None, kwargs.get("terminate"))
    assert info["idleMinutes"] == minutes
    return cloud, vm


def test_autostop_warns_two_minutes_before_then_stops(rig: Rig) -> None:
    cloud, vm = watched(rig)
    rig.tick_at(0)
    info = rig.service.autostop_info("auto", vm.id)
    assert info["action"] == "stop" and info["actAt"] == rig.clock.t + 10 * MIN
    rig.tick_at(7.9)
    assert rig.warnings() == []
    rig.tick_at(8)
    assert rig.warnings() == [
        {
            "provider": "auto",
            "id": vm.id,
            "name": vm.name,
            "actAt": rig.clock.t + 2 * MIN,
            "action": "stop",
        }
    ]
    rig.tick_at(9)
    assert len(rig.warnings()) == 1  # once
    rig.tick_at(10)
    assert cloud.calls[-1] == "stop %s" % vm.id
    assert cloud.vms[vm.id].state == "stopped"
    # Once done, the client is told so (to refresh its views now, not at its next poll).
    assert rig.warnings()[-1] == {
        "provider": "auto",
        "id": vm.id,
        "name": vm.name,
        "actAt": rig.clock.t,
        "action": "stopped",
    }
    rig.tick_at(11)
    assert cloud.calls.count("stop %s" % vm.id) == 1
    assert len(rig.warnings()) == 2


def test_keep_running_resets_the_window(rig: Rig) -> None:
    cloud, vm = watched(rig)
    rig.tick_at(0)
    rig.tick_at(8)
    assert len(rig.warnings()) == 1
    rig.at(9)
    info = rig.service.keep_running("auto", vm.id)
    assert info["idleSince"] == rig.clock.t and info["actAt"] == rig.clock.t + 10 * MIN
    rig.tick_at(10)
    rig.tick_at(16.9)
    assert "stop %s" % vm.id not in cloud.calls and len(rig.warnings()) == 1
    rig.tick_at(17)
    assert len(rig.warnings()) == 2
    rig.tick_at(19)
    assert cloud.calls[-1] == "stop %s" % vm.id


def test_busy_or_unknown_utilization_is_never_idle(rig: Rig) -> None:
    cloud, vm = watched(rig, minutes=1)
    rig.is_busy = True
    for minute in range(0, 30, 5):
        rig.tick_at(minute)
    rig.is_busy = False
    rig.utilization = None
    for minute in range(30, 60, 5):
        rig.tick_at(minute)
    rig.utilization = 50.0
    for minute in range(60, 90, 5):
        rig.tick_at(minute)
    assert rig.warnings() == [] and "stop %s" % vm.id not in cloud.calls
    assert "GPU 50% busy" in rig.service.autostop_info("auto", vm.id)["reason"]
    # A busy spell in the middle restarts the window.
    rig.utilization = 1.0
    rig.tick_at(100)
    rig.utilization = 90.0
    rig.tick_at(100.5)
    rig.utilization = 1.0
    rig.tick_at(101)
    rig.tick_at(101.9)
    assert "stop %s" % vm.id not in cloud.calls
    rig.tick_at(102)
    assert "stop %s" % vm.id in cloud.calls


def test_no_stop_terminates_when_allowed(rig: Rig) -> None:
    cloud, vm = watched(rig, "lam", capabilities=["create", "terminate"], terminate=True)
    assert rig.service.autostop_info("lam", vm.id)["action"] == "terminate"
    rig.tick_at(0)
    rig.tick_at(10)
    assert [w["action"] for w in rig.warnings()] == ["terminate", "terminated"]
    assert cloud.vms[vm.id].state == "terminated"
    assert rig.service.autostop_info("lam", vm.id)["action"] == "off"


def test_no_stop_without_permission_only_warns(rig: Rig) -> None:
    cloud, vm = watched(rig, "lam2", capabilities=["create", "terminate"])
    rig.tick_at(0)
    rig.tick_at(10)
    rig.tick_at(20)
    assert [w["action"] for w in rig.warnings()] == ["warn"]
    assert cloud.vms[vm.id].state == "running"


def test_stop_that_keeps_billing_is_not_the_action(rig: Rig) -> None:
    cloud, vm = watched(rig, "lin", stop_keeps_billing=True)
    assert rig.service.autostop_info("lin", vm.id)["action"] == "warn"
    rig.service.set_autostop("lin", vm.id, 10, None, True)
    rig.tick_at(0)
    rig.tick_at(10)
    assert cloud.vms[vm.id].state == "terminated"


def test_local_machine_is_never_acted_on(rig: Rig) -> None:
    info = rig.service.set_autostop("local", "local", 1, None, True)
    assert info["action"] == "off"
    rig.tick_at(0)
    rig.tick_at(30)
    assert rig.warnings() == []


def test_autostop_settings_survive_a_restart(rig: Rig) -> None:
    _, vm = watched(rig, minutes=15)
    rig.service.set_autostop("auto", "other", 0, None, None)
    again = rig.make()
    again.register("auto", lambda settings: FakeProvider(settings, FakeCloud("auto")))
    assert again.autostop_info("auto", vm.id)["idleMinutes"] == 15
    again.set_autostop("auto", vm.id, 0, None, None)
    assert rig.make().autostop_info("auto", vm.id)["action"] == "off"


def test_invalid_autostop_params(rig: Rig) -> None:
    with pytest.raises(ApplicationError):
        rig.service.set_autostop("local", "local", -1, None, None)
    with pytest.raises(ApplicationError):
        rig.service.set_autostop("local", "local", 5, 150.0, None)


def test_a_running_or_queued_kernel_keeps_its_machine_busy() -> None:
    key = "aws/i-1"
    idle = {"machine": key, "state": "idle", "queue": []}
    assert not kernels_keep_busy([], key)
    assert not kernels_keep_busy([idle], key)
    assert kernels_keep_busy([idle, {"machine": key, "state": "busy", "queue": []}], key)
    assert kernels_keep_busy([{"machine": key, "state": "starting", "queue": []}], key)
    assert kernels_keep_busy([{"machine": key, "state": "idle", "queue": ["e2"]}], key)
    # Kernels of other machines, this machine's (no `machine`) and ended ones do not count.
    others = [
        {"machine": "aws/i-2", "state": "busy", "queue": ["e1"]},
        {"machine": None, "state": "busy", "queue": []},
        {"state": "busy", "queue": []},
        {"machine": key, "state": "dead", "queue": []},
    ]
    assert not kernels_keep_busy(others, key)


def test_tick_seconds_setting_then_env_fallback() -> None:
    assert tick_seconds({}, {}) == 30.0
    assert tick_seconds({}, {"GPUWB_VM_AUTOSTOP_TICK_SECONDS": "0.25"}) == 0.25
    assert tick_seconds({}, {"GPUWB_VM_AUTOSTOP_TICK_SECONDS": "0"}) == 0.05
    assert tick_seconds({}, {"GPUWB_VM_AUTOSTOP_TICK_SECONDS": "soon"}) == 30.0
    assert tick_seconds({"autostopTickSeconds": 2}, {"GPUWB_VM_AUTOSTOP_TICK_SECONDS": "9"}) == 2.0


def test_watchdog_thread_ticks(tmp_path: Path) -> None:
    rig = Rig(tmp_path)
    cloud, vm = watched(rig, minutes=1)
    rig.service.update_settings({"autostopTickSeconds": 0.05})
    rig.service.start_watchdog()
    try:
        import time

        deadline = time.monotonic() + 5
        rig.tick_at(0)
        rig.at(2)
        while cloud.vms[vm.id].state != "stopped" and time.monotonic() < deadline:
            time.sleep(0.02)
        assert cloud.vms[vm.id].state == "stopped"
    finally:
        rig.service.close()
