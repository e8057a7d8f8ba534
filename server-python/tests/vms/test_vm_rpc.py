"""vm/* through the real backend: providers, the local machine, cost shapes, autostop
records, the debug clock, and credentials kept out of the log."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Dict

import pytest
from shapes import assert_shape

from conftest import SERVER_ROOT, Session, backend_env, spawn
from gpu_workbench import protocol

TOKEN = "sk-planted-RPC-SECRET-51d0e2"
SIX = ["local", "ssh", "aws", "lambda", "linode", "skypilot"]
HAVE_LOCAL = (SERVER_ROOT / "gpu_workbench" / "vms" / "local.py").exists()


def vm_backend(tmp_path: Path, options: Any = None, **env: str) -> Session:
    extra: Dict[str, str] = {
        "GPUWB_DATA_DIR": str(tmp_path / "data"),
        "GPUWB_LOG_LEVEL": "debug",
        "GPUWB_VM_EXTRA_PROVIDERS": "leaky=vm_fakes:LeakyProvider,fake=vm_fakes:FakeProvider",
        "PYTHONPATH": os.pathsep.join([str(SERVER_ROOT), str(SERVER_ROOT / "tests")]),
    }
    extra.update(env)
    session = spawn(backend_env(extra))
    session.initialize(options)
    return session


@pytest.fixture
def vms(tmp_path: Path):
    session = vm_backend(tmp_path, {"logLevel": "debug"})
    yield session
    session.close()


def result(session: Session, method: str, params: Any, timeout: float = 20.0) -> Any:
    response = session.request(method, params, timeout)
    assert "result" in response, response
    return response["result"]


def test_methods_are_advertised(vms: Session) -> None:
    status = result(vms, "workbench/status", {})
    for name in protocol.METHODS:
        if name.startswith("vm/") or name == "debug/clock":
            assert name in status["capabilities"], name


def test_providers_lists_all_six(vms: Session) -> None:
    providers = result(vms, "vm/providers", {})["providers"]
    names = [p["name"] for p in providers]
    assert names[:6] == SIX
    for info in providers:
        assert_shape(protocol.VmProviderInfo, info)
    if HAVE_LOCAL:
        assert providers[0]["available"] is True


@pytest.mark.skipif(not HAVE_LOCAL, reason="the local provider is not there yet")
def test_list_includes_the_local_machine(vms: Session) -> None:
    listed = result(vms, "vm/list", {"providers": ["local"]})
    assert_shape(protocol.VmListResult, listed)
    local = [v for v in listed["vms"] if v["provider"] == "local"]
    assert len(local) == 1 and local[0]["state"] == "running"
    assert local[0]["accruedCost"] == 0.0
    assert listed["errors"] == []


def test_cost_shape_and_debug_clock(vms: Session) -> None:
    created = result(
        vms,
        "vm/create",
        {
            "provider": "fake",
            "name": "trainer",
            "instanceType": "gpu.small",
            "region": "r1",
            "workDoneToken": "mk",
        },
    )
    assert_shape(protocol.VmInfo, created)
    listed = result(vms, "vm/list", {"providers": ["fake"]})
    assert_shape(protocol.VmListResult, listed)
    before = result(vms, "vm/cost", {"dailyBudget": 1.0, "monthlyBudget": 100.0})
    assert_shape(protocol.VmCostResult, before)
    assert before["burnRatePerHour"] == pytest.approx(2.0)
    clock = result(vms, "debug/clock", {"offsetSeconds": 3600})
    assert_shape(protocol.ClockResult, clock)
    after = result(vms, "vm/cost", {"dailyBudget": 1.0, "days": 2})
    assert_shape(protocol.VmCostResult, after)
    assert after["total"] == pytest.approx(before["total"] + 2.0, abs=0.05)
    assert after["budgets"][0]["level"] == "over"
    assert len(after["byDay"]) == 2
    again = result(vms, "vm/list", {"providers": ["fake"]})["vms"][0]
    assert again["accruedCost"] == pytest.approx(2.0, abs=0.05)
    bad = vms.request("vm/cost", {"days": 0})
    assert bad["error"]["code"] == -32602


def test_autostop_and_keep_running_records(vms: Session) -> None:
    info = result(vms, "vm/autostop", {"provider": "fake", "id": "fake-9", "idleMinutes": 30})
    assert_shape(protocol.VmAutostopInfo, info)
    assert info["idleMinutes"] == 30 and info["action"] == "stop"
    kept = result(vms, "vm/keepRunning", {"provider": "fake", "id": "fake-9"})
    assert_shape(protocol.VmAutostopInfo, kept)
    error = vms.request("vm/stop", {"provider": "local", "id": "local"})["error"]
    assert error["data"]["kind"] == "Unsupported"
    unknown = vms.request("vm/start", {"provider": "mars", "id": "x"})["error"]
    assert unknown["data"]["kind"] == "NotFound"


def test_planted_credential_never_in_the_log(vms: Session) -> None:
    creds = {"leaky": {"apiKey": TOKEN}, "lambda": {"apiKey": TOKEN}}
    listed = result(vms, "vm/list", {"providers": ["leaky", "lambda"], "credentials": creds})
    assert [e["provider"] for e in listed["errors"]][:1] == ["leaky"]
    created = vms.request(
        "vm/create",
        {
            "provider": "leaky",
            "name": "n",
            "instanceType": "t",
            "region": "r",
            "credentials": creds,
        },
    )
    assert created["error"]["data"]["kind"] == "Internal"
    result(vms, "vm/providers", {"credentials": creds})
    result(vms, "workbench/ping", {})
    log = vms.stderr_text()
    assert "DEBUG" in log and "listing with key [redacted]" in log
    assert TOKEN not in log
    assert TOKEN not in repr(listed) and TOKEN not in repr(created)


def test_untrusted_workspace_still_serves_vms(tmp_path: Path) -> None:
    session = vm_backend(tmp_path, {"trusted": False, "vms": {"lambda": {"apiUrl": "http://x"}}})
    try:
        providers = result(session, "vm/providers", {})["providers"]
        assert [p["name"] for p in providers][:6] == SIX
        session.notify(
            "workspace/didChangeConfiguration",
            {"settings": {"gpuWorkbench": {"vms": {"autostopTickSeconds": 5}}}},
        )
        session.wait_stderr("VM settings updated")
    finally:
        session.close()
