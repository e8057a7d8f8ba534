"""A kernel that dies is reported within about a second; the backend carries on; restart."""

from __future__ import annotations

import time

import pytest


@pytest.mark.parametrize(
    "code, exit_code, signal",
    [
        ("import os, sys\nsys.stdout.flush()\nos._exit(3)", 3, None),
        ("import ctypes\nctypes.string_at(0)", None, "SIGSEGV"),
    ],
    ids=["os-exit", "segfault"],
)
def test_death_is_reported(kernels, code, exit_code, signal):
    kid = kernels.start()["kernelId"]
    kernels.run(kid, "x = 1")
    started = time.monotonic()
    eid = kernels.execute(kid, code)
    died = kernels.wait_event(kid, lambda e: e.get("type") == "died", timeout=5)
    assert time.monotonic() - started < 2.5
    assert died["exitCode"] == exit_code
    assert died["signal"] == signal
    assert isinstance(died["stderrTail"], list)
    assert kernels.reply(kid, eid)["status"] == "died"
    seqs = kernels.seqs(kid)
    assert seqs == list(range(1, len(seqs) + 1))
    # The backend is fine.
    assert "result" in kernels.session.ping()
    error = kernels.error("kernel/execute", {"kernelId": kid, "code": "x"})
    assert error["code"] == -32020
    assert error["data"]["kind"] == "KernelDied"
    assert error["data"]["hint"] == "Restart the kernel"
    expected = "exit code 3" if exit_code is not None else "SIGSEGV"
    assert expected in error["message"] and expected in error["data"]["detail"]
    listed = {k["kernelId"]: k for k in kernels.call("kernel/list")["kernels"]}
    assert listed[kid]["state"] == "dead"
    # Restart brings it back with a clean namespace and continuing seqs.
    info = kernels.call("kernel/restart", {"kernelId": kid})
    assert info["kernelId"] == kid and info["state"] in ("idle", "busy")
    reply = kernels.run(kid, "print('x' in dir())")
    assert kernels.stdout(kid, reply["executionId"]) == "False\n"
    seqs = kernels.seqs(kid)
    assert seqs == list(range(1, len(seqs) + 1))


def test_restart_live_kernel_drops_state(kernels):
    info = kernels.start(name="r")
    kid = info["kernelId"]
    kernels.run(kid, "y = 5")
    restarted = kernels.call("kernel/restart", {"kernelId": kid})
    assert restarted["kernelId"] == kid
    assert restarted["pid"] != info["pid"]
    assert restarted["name"] == "r"
    kernels.wait_event(kid, lambda e: e.get("type") == "exit")
    starts = [e for e in kernels.events[kid] if e.get("type") == "start"]
    reply = kernels.run(kid, "print('y' in dir())")
    assert kernels.stdout(kid, reply["executionId"]) == "False\n"
    starts = [e for e in kernels.events[kid] if e.get("type") == "start"]
    assert len(starts) == 2 and starts[1]["pid"] == restarted["pid"]
    seqs = kernels.seqs(kid)
    assert seqs == list(range(1, len(seqs) + 1))
