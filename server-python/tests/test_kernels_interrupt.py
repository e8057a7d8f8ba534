"""kernel/interrupt: SIGINT to the kernel's process group, SIGKILL after the grace period."""

from __future__ import annotations

import time

import pytest

from conftest import KernelClient, backend_env, spawn


def _busy(kernels, kid, eid):
    kernels.wait_event(
        kid,
        lambda e: (
            e.get("type") == "status" and e.get("state") == "busy" and e.get("executionId") == eid
        ),
    )


@pytest.mark.parametrize(
    "code",
    ["while True: pass", "import time\ntime.sleep(1000)", "input('waiting: ')"],
    ids=["busy-loop", "sleep", "input"],
)
def test_interrupt_stops_the_running_cell(kernels, code):
    kid = kernels.start()["kernelId"]
    eid = kernels.execute(kid, code)
    queued = kernels.execute(kid, "print('queued')")
    _busy(kernels, kid, eid)
    if code.startswith("input"):
        kernels.wait_event(kid, lambda e: e.get("type") == "input_request")
    result = kernels.call("kernel/interrupt", {"kernelId": kid})
    assert result == {"outcome": "interrupted"}
    assert kernels.reply(kid, eid)["status"] == "interrupted"
    assert kernels.reply(kid, queued)["status"] == "aborted"
    # The kernel lives on with its state.
    assert kernels.run(kid, "print('after')")["status"] == "ok"


def test_interrupt_when_idle(kernels):
    kid = kernels.start()["kernelId"]
    assert kernels.call("kernel/interrupt", {"kernelId": kid}) == {"outcome": "idle"}


def test_cell_ignoring_keyboard_interrupt_is_killed(kernels):
    kid = kernels.start()["kernelId"]
    # Ignoring SIGINT outright (a try/except in a loop can still lose the race).
    code = (
        "import signal, time\n"
        "signal.signal(signal.SIGINT, signal.SIG_IGN)\n"
        "print('ignoring', flush=True)\n"
        "time.sleep(1000)"
    )
    eid = kernels.execute(kid, code)
    kernels.wait_event(kid, lambda e: "ignoring" in kernels.stdout(kid, eid))
    started = time.monotonic()
    result = kernels.call("kernel/interrupt", {"kernelId": kid, "graceSeconds": 0.5})
    assert result == {"outcome": "killed"}
    died = kernels.wait_event(kid, lambda e: e.get("type") == "died", timeout=5)
    assert time.monotonic() - started < 0.5 + 1.0 + 0.5
    assert died["signal"] == "SIGKILL" and died["exitCode"] is None
    assert kernels.reply(kid, eid)["status"] == "died"
    error = kernels.error("kernel/execute", {"kernelId": kid, "code": "1"})
    assert error["data"]["kind"] == "KernelDied"
    assert "SIGKILL" in error["message"]


def test_interrupt_as_the_cell_starts_is_not_lost(kernel_data):
    """An interrupt that lands after the cell left the queue and said "busy" but before its
    code runs interrupts that cell; before, the SIGINT was dropped there, the cell ran on and
    the kernel was killed after the grace period. The worker pauses in that moment
    (GPUWB_DEBUG_CELL_START_DELAY) so the interrupt lands there every time."""
    s = spawn(
        backend_env({"GPUWB_DATA_DIR": str(kernel_data), "GPUWB_DEBUG_CELL_START_DELAY": "1"})
    )
    try:
        s.initialize()
        kernels = KernelClient(s)
        kid = kernels.start()["kernelId"]
        for i in range(2):
            eid = kernels.execute(kid, "import time\ntime.sleep(1000)")
            _busy(kernels, kid, eid)
            result = kernels.call("kernel/interrupt", {"kernelId": kid, "graceSeconds": 30})
            assert result == {"outcome": "interrupted"}, (i, result)
            assert kernels.reply(kid, eid)["status"] == "interrupted", i
        assert kernels.run(kid, "print('alive')")["status"] == "ok"
    finally:
        s.close()
