"""Worker processes: the environment they get, launching them, stopping and signalling them.

Everything here acts on processes and the kernel folder only; connections and event
forwarding are the manager's and ``events``'s business. Signals go to a kernel's process
group only after checking that the pid still belongs to that kernel, so a recycled pid
is never hit.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import threading
import time
from typing import Any, Callable, Dict, Mapping, Optional

from ..errors import ApplicationError
from . import store
from .envfile import load_env_file

log = logging.getLogger(__name__)

START_TIMEOUT = 30.0
STOP_GRACE = 2.0
POLL = 0.02


def kernel_env(
    environ: Mapping[str, str], env_file: Optional[str], overrides: Mapping[str, str]
) -> Dict[str, str]:
    """The worker's environment: ``environ``, then the env file, then ``overrides``."""
    env = dict(environ)
    if env_file:
        try:
            values, warnings = load_env_file(env_file, env)
        except OSError as exc:
            raise ApplicationError(
                "NotFound",
                "Cannot read the env file %s: %s" % (env_file, exc.strerror or exc),
                hint="Fix the envFile setting or create the file",
            ) from None
        for warning in warnings:
            log.warning("%s: %s", env_file, warning)
        env.update(values)
    env.update(overrides)
    return env


def spawn_worker(
    kernel_id: str,
    directory: str,
    launch: Mapping[str, Any],
    env: Optional[Dict[str, str]],
    python: str,
) -> "subprocess.Popen[bytes]":
    """Start the worker (its monitor) in a new session, stdout and stderr to its log."""
    argv = [python, store.WORKER_FILE, "--dir", directory, "--id", kernel_id]
    cwd = launch.get("cwd")
    if isinstance(cwd, str) and cwd:
        argv += ["--cwd", cwd]
    argv += ["--idle-timeout", repr(float(launch.get("idleTimeoutSeconds") or 0.0))]
    if launch.get("name"):
        argv += ["--name", str(launch["name"])]
    log_path = os.path.join(directory, store.STDERR_LOG)
    with open(log_path, "ab") as log_file:
        try:
            process = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=log_file,
                env=env,
                cwd=cwd if isinstance(cwd, str) and cwd else None,
                start_new_session=True,
                close_fds=True,
            )
        except FileNotFoundError:
            raise ApplicationError(
                "KernelDied",
                "Python interpreter not found: %s" % python,
                hint="Select an existing Python interpreter for the kernel",
            ) from None
        except OSError as exc:
            raise ApplicationError(
                "KernelDied",
                "Cannot run the Python interpreter %s: %s" % (python, exc.strerror or exc),
                hint="Select a working Python interpreter for the kernel",
            ) from None
    # The monitor is our child: reap it when it exits so it never lingers as a zombie.
    threading.Thread(target=process.wait, name="gpuwb-kernel-reaper", daemon=True).start()
    return process


def wait_started(
    process: "subprocess.Popen[bytes]",
    load_disk: Callable[[], store.DiskKernel],
    directory: str,
    python: str,
) -> store.DiskKernel:
    """Poll the folder until kernel.json names a socket; KernelDied if the start fails.

    The start fails when the process exits, ended.json appears, or START_TIMEOUT passes
    (then the still-running process group is killed so it cannot start late).
    """
    log_path = os.path.join(directory, store.STDERR_LOG)
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        disk = load_disk()
        if disk.kernel is not None and disk.socket_path:
            return disk
        failed = process.poll() is not None or disk.ended is not None
        if failed or time.monotonic() > deadline:
            if not failed:
                kill_unstarted(process)
            tail = store.stderr_tail(directory)
            last = next((line for line in reversed(tail) if line.strip()), "")
            raise ApplicationError(
                "KernelDied",
                "The kernel failed to start with %s%s"
                % (python, (": " + last.strip()) if last else ""),
                detail="\n".join(tail) or None,
                hint="Check that %s is Python 3.8 or newer; its log is %s" % (python, log_path),
            )
        time.sleep(POLL)


def kill_unstarted(process: "subprocess.Popen[bytes]") -> None:
    """SIGKILL the session of a worker we spawned that never wrote kernel.json."""
    if process.poll() is None:
        try:
            os.killpg(process.pid, signal.SIGKILL)  # our child's own session
        except OSError:
            pass


def ensure_stopped(disk: store.DiskKernel) -> None:
    """After a shutdown request: SIGKILL the kernel after STOP_GRACE, then its monitor too.

    Returns once the kernel process is gone and the monitor has written ended.json or
    exited (or has been killed for not doing so in time).
    """
    if not wait_until(lambda: not disk.kernel_alive(), STOP_GRACE):
        log.info("kernel %s did not shut down within %.0fs; killing it", disk.kernel_id, STOP_GRACE)
        signal_group(disk, signal.SIGKILL)
        wait_until(lambda: not disk.kernel_alive(), STOP_GRACE)
    # The monitor writes ended.json once it has reaped the kernel.
    ended_path = os.path.join(disk.directory, store.ENDED_JSON)
    monitor_done = wait_until(
        lambda: os.path.exists(ended_path) or not disk.monitor_alive(), STOP_GRACE
    )
    if not monitor_done and disk.monitor_alive() and disk.monitor_pid is not None:
        try:
            os.kill(disk.monitor_pid, signal.SIGKILL)
        except OSError:
            pass


def wait_until(predicate: Callable[[], bool], timeout: float) -> bool:
    """Poll ``predicate`` every POLL seconds; whether it became true within ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(POLL)


def signal_group(disk: store.DiskKernel, sig: int) -> bool:
    """Signal the kernel's process group after checking it still is that kernel's."""
    pid, pgid = disk.pid, disk.pgid
    if pid is None or pgid is None or not store.process_matches(pid, disk.kernel_id):
        return False
    try:
        if os.getpgid(pid) != pgid:
            log.warning(
                "kernel %s: pid %d is not in group %d; not signalling",
                disk.kernel_id,
                pid,
                pgid,
            )
            return False
        os.killpg(pgid, sig)
        return True
    except OSError as exc:
        log.info("cannot signal kernel %s: %s", disk.kernel_id, exc)
        return False
