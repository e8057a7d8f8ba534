"""Only the protocol writer reaches stdout; logs and stray output go to stderr."""

from __future__ import annotations

from conftest import BACKEND_PYTHON, backend_env, spawn

# Patches the ping handler to print and write to fd 1 directly, then runs the real main().
STRAY_OUTPUT_BACKEND = """
import os
from gpu_workbench import server
original = server.Server._ping
def noisy_ping(self, ctx, params):
    print("STRAY-PRINT")
    os.write(1, b"STRAY-FD-WRITE\\n")
    return original(self, ctx, params)
server.Server._ping = noisy_ping
from gpu_workbench.__main__ import main
main([])
"""


def test_stray_output_does_not_corrupt_framing(tmp_path):
    s = spawn(
        backend_env({"GPUWB_DATA_DIR": str(tmp_path)}), [BACKEND_PYTHON, "-c", STRAY_OUTPUT_BACKEND]
    )
    try:
        s.initialize()
        assert s.ping("a")["result"]["payload"] == "a"
        assert s.ping("b")["result"]["payload"] == "b"
        s.wait_stderr("STRAY-PRINT")
        s.wait_stderr("STRAY-FD-WRITE")
    finally:
        s.close()


def test_log_level_from_env(tmp_path):
    s = spawn(backend_env({"GPUWB_DATA_DIR": str(tmp_path), "GPUWB_LOG_LEVEL": "debug"}))
    try:
        s.initialize()
        s.wait_stderr("client sent initialized")  # a DEBUG line
    finally:
        s.close()


def test_log_level_from_initialization_options(session):
    session.initialize({"logLevel": "trace"})
    session.wait_stderr("client sent initialized")
    assert "result" in session.ping()


def test_default_log_level_hides_debug(ready):
    ready.request("shutdown")
    ready.notify("exit")
    assert ready.wait_exit() == 0
    ready.wait_stderr("exiting with code 0")  # INFO is shown...
    assert "client sent initialized" not in ready.stderr_text()  # ...DEBUG is not
