"""The backend exits when its parent (or the initialize processId) dies."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from conftest import BACKEND_PYTHON, SERVER_ROOT, Session, backend_env, spawn
from gpu_workbench.parent_watch import pid_alive


def _wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not pid_alive(pid):
            return True
        time.sleep(0.05)
    return False


def test_exits_when_parent_is_killed(tmp_path):
    # The middle process passes its stdio straight through, so the backend keeps an open
    # stdin after the middle dies: only the parent watch can make it exit.
    middle_code = (
        "import subprocess, sys; sys.exit(subprocess.call([sys.executable, '-m', 'gpu_workbench']))"
    )
    proc = subprocess.Popen(
        [BACKEND_PYTHON, "-c", middle_code],
        cwd=str(SERVER_ROOT),
        env=backend_env({"GPUWB_DATA_DIR": str(tmp_path)}),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    s = Session(proc)
    backend_pid = None
    try:
        s.initialize()
        backend_pid = s.request("workbench/status")["result"]["pid"]
        assert backend_pid != proc.pid
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(5)
        assert _wait_gone(backend_pid, 5), "backend survived its parent"
    finally:
        if backend_pid is not None and pid_alive(backend_pid):
            os.kill(backend_pid, signal.SIGKILL)
        s.close()


def test_exits_when_client_process_id_dies(tmp_path):
    client = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    s = spawn(backend_env({"GPUWB_DATA_DIR": str(tmp_path)}))
    try:
        s.initialize(process_id=client.pid)
        assert "result" in s.ping()
        client.kill()
        client.wait(5)
        assert s.wait_exit(5) == 1
    finally:
        client.kill()
        s.close()
