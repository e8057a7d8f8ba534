"""Idle autostop: a watchdog that runs on the machine itself, with or without a client.

On the machine (stdlib only, Python 3.8+)::

    python -m gpu_workbench.remote.watchdog --idle-seconds S [--threshold PCT]
        [--command CMD] [--state FILE] [--tick SECONDS] [--data-dir DIR] [--detach]
    python -m gpu_workbench.remote.watchdog --stop [--state FILE]
    python -m gpu_workbench.remote.watchdog --info [--state FILE]

Every tick the machine is idle when no kernel of this user is busy (their folders under
the data directory, read with kernels/store.py and state.py) and every GPU's utilization
is below the threshold (gpu.source.open_source(), opened once; no GPU counts as idle).
After `S` seconds of uninterrupted idleness it runs CMD once with /bin/sh -c (default
``sudo -n shutdown -h now``), records that and the exit status in the state file and
exits. Activity resets the timer.

One watchdog per state file: ``<state>.lock`` is held (flock) while one runs and
``<state>.pid`` names it; a new start stops the old one (SIGTERM) and takes over, so its
settings replace the old ones. ``--detach`` starts the watchdog in a new session
(setsid) with its output in ``<state>.log`` and prints its info once it runs, so it
outlives the ssh session and the agent.

The state file (JSON): idleMinutes, idleSeconds, threshold, command, idleSince, actAt,
reason, pid, acted, exitStatus, lastTick.

In the local backend, start() and info() drive the above over the host's SSH connection
and return protocol.RemoteAutostopInfo without `machine`.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from typing import Any, Dict, List, Optional, Tuple

log = logging.getLogger("gpu_workbench.remote.watchdog")

MODULE = "gpu_workbench.remote.watchdog"
DEFAULT_COMMAND = "sudo -n shutdown -h now"
DEFAULT_THRESHOLD = 10.0
DEFAULT_TICK = 30.0
STATE_NAME = os.path.join("autostop", "state.json")
COMMAND_TIMEOUT = 600.0
REPLACE_TIMEOUT = 10.0


# ======================= shared helpers =======================


def default_state_path(data_directory: Optional[str] = None) -> str:
    from ..data_dir import resolve_data_directory

    return os.path.join(resolve_data_directory(data_directory, os.environ), STATE_NAME)


def _read_json(path: str) -> Optional[Dict[str, Any]]:
    try:
        with open(path, encoding="utf-8") as f:
            value = json.load(f)
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def _write_json(path: str, value: Dict[str, Any]) -> None:
    temp = "%s.tmp.%d" % (path, os.getpid())
    with open(temp, "w", encoding="utf-8") as f:
        json.dump(value, f)
    os.replace(temp, path)


def is_watchdog(pid: Any) -> bool:
    """True when `pid` is alive and (where /proc can tell) runs this module."""
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        return False
    from ..parent_watch import pid_alive

    if not pid_alive(pid):
        return False
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            cmdline = f.read()
    except OSError:
        return not os.path.isdir("/proc/self")
    if cmdline == b"":
        return False  # a zombie
    return MODULE.encode("ascii") in cmdline


def read_info(state_path: str) -> Dict[str, Any]:
    """RemoteAutostopInfo (without machine) from the state file, plus the raw state."""
    state = _read_json(state_path) or {}
    acted = bool(state.get("acted"))
    running = is_watchdog(state.get("pid")) and not acted
    minutes = state.get("idleMinutes")
    reason = str(state.get("reason") or "off")
    if not running and not acted and reason not in ("off", "stopped"):
        reason = "not running (last: %s)" % reason  # killed, or the machine rebooted
    return {
        "idleMinutes": minutes if isinstance(minutes, int) and (running or acted) else 0,
        "idleSince": state.get("idleSince") if running else None,
        "actAt": state.get("actAt") if running else None,
        "reason": reason,
        "running": running,
        "state": state,
    }


# ======================= on the machine =======================


def busy_kernels(data_directory: str) -> List[str]:
    """Ids of this user's live kernels that are running or have queued code."""
    from ..kernels import store
    from ..kernels.state import KernelHandle, init_from_disk

    busy: List[str] = []
    for kernel_id in store.list_ids(data_directory):
        disk = store.load(data_directory, kernel_id)
        if disk is None or not disk.kernel_alive():
            continue
        k = KernelHandle(kernel_id, disk.directory)
        init_from_disk(k, disk)
        if k.state == "busy" or k.running or k.queue:
            busy.append(kernel_id)
    return busy


class GpuProbe:
    """Utilization of every GPU from one source opened once; no GPU reads as idle."""

    def __init__(self) -> None:
        self.source: Any = None
        self.why: Optional[str] = None
        try:
            from ..gpu.source import GpuUnavailable, open_source

            try:
                self.source = open_source()
            except GpuUnavailable as exc:
                self.why = str(exc)
        except Exception as exc:  # a broken driver must not stop the watchdog
            self.why = "GPU telemetry failed: %s" % exc

    def busy(self, threshold: float) -> Optional[str]:
        """Why the GPUs count as busy, or None when every one is below `threshold`."""
        if self.source is None:
            return None
        try:
            reading = self.source.read(processes=False)
        except Exception as exc:
            log.warning("GPU reading failed: %s", exc)
            return None
        for gpu in reading:
            util = gpu.get("utilization")
            if isinstance(util, (int, float)) and not gpu.get("lost") and util >= threshold:
                return "GPU %s at %d%% (threshold %g%%)" % (gpu.get("index"), util, threshold)
        return None

    def close(self) -> None:
        if self.source is not None:
            try:
                self.source.close()
            except Exception:
                pass


def _lock(state_path: str) -> Any:
    """Take `<state>.lock`, stopping a watchdog that holds it; return the open lock file."""
    import fcntl

    handle = open(state_path + ".lock", "a+")  # noqa: SIM115 (held while the watchdog runs)
    deadline = time.monotonic() + REPLACE_TIMEOUT
    signalled = False
    while True:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            return handle
        except OSError:
            pass
        if not signalled:
            try:
                with open(state_path + ".pid", encoding="utf-8") as f:
                    old = int(f.read().strip() or "0")
            except (OSError, ValueError):
                old = 0
            if old and old != os.getpid() and is_watchdog(old):
                try:
                    os.kill(old, signal.SIGTERM)
                except OSError:
                    pass
            signalled = True
        if time.monotonic() > deadline:
            raise SystemExit("another watchdog holds %s.lock and did not stop" % state_path)
        time.sleep(0.05)


class Watchdog:
    def __init__(
        self,
        state_path: str,
        data_directory: str,
        idle_seconds: float,
        threshold: float,
        command: str,
        tick: float,
    ) -> None:
        self.state_path = state_path
        self.data_directory = data_directory
        self.idle_seconds = idle_seconds
        self.threshold = threshold
        self.command = command
        self.tick = tick
        self.stop = threading.Event()
        self.state: Dict[str, Any] = {
            "idleMinutes": max(1, math.ceil(idle_seconds / 60.0)),
            "idleSeconds": idle_seconds,
            "threshold": threshold,
            "command": command,
            "idleSince": None,
            "actAt": None,
            "reason": "starting",
            "pid": os.getpid(),
            "acted": False,
            "exitStatus": None,
            "lastTick": None,
        }

    def save(self) -> None:
        _write_json(self.state_path, self.state)

    def check(self, gpus: GpuProbe, now: float) -> bool:
        """One tick; True when the idle rule has held long enough."""
        kernels = busy_kernels(self.data_directory)
        why: Optional[str] = None
        if kernels:
            why = "kernel %s is running code" % ", ".join(kernels)
        else:
            why = gpus.busy(self.threshold)
        self.state["lastTick"] = now
        if why is not None:
            self.state.update(idleSince=None, actAt=None, reason="busy: " + why)
            return False
        if self.state["idleSince"] is None:
            self.state["idleSince"] = now
        self.state["actAt"] = self.state["idleSince"] + self.idle_seconds
        gpu_part = "no GPU" if gpus.source is None else "GPUs below %g%%" % self.threshold
        self.state["reason"] = "idle: no kernel busy, %s" % gpu_part
        return now >= self.state["actAt"]

    def act(self) -> int:
        log.info("idle for %gs: running %s", self.idle_seconds, self.command)
        try:
            code = subprocess.run(
                ["/bin/sh", "-c", self.command],
                stdin=subprocess.DEVNULL,
                timeout=COMMAND_TIMEOUT,
            ).returncode
        except subprocess.TimeoutExpired:
            code = -1
        except OSError as exc:
            log.error("cannot run %s: %s", self.command, exc)
            code = 127
        self.state.update(
            acted=True,
            exitStatus=code,
            reason="idle for %gs: ran %s (exit %d)" % (self.idle_seconds, self.command, code),
            lastTick=time.time(),
        )
        self.save()
        return code

    def run(self) -> int:
        gpus = GpuProbe()
        if gpus.why:
            log.info("no GPU telemetry (%s): GPUs count as idle", gpus.why)
        try:
            while not self.stop.is_set():
                if self.check(gpus, time.time()):
                    self.act()
                    return 0
                self.save()
                self.stop.wait(self.tick)
        finally:
            gpus.close()
        self.state.update(idleSince=None, actAt=None, reason="stopped", lastTick=time.time())
        self.save()
        return 0


def _spawn_detached(argv: List[str], state_path: str) -> Dict[str, Any]:
    """Start the watchdog in its own session, wait until it runs, return its info."""
    log_path = state_path + ".log"
    env = dict(os.environ)
    package_root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env["PYTHONPATH"] = package_root + (
        os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else ""
    )
    with open(log_path, "ab") as out, open(os.devnull, "rb") as devnull:
        proc = subprocess.Popen(
            [sys.executable, "-m", MODULE, *argv],
            stdin=devnull,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd="/",
            env=env,
            start_new_session=True,
            close_fds=True,
        )
    deadline = time.monotonic() + REPLACE_TIMEOUT + 5
    while time.monotonic() < deadline:
        state = _read_json(state_path) or {}
        if state.get("pid") == proc.pid and state.get("lastTick") is not None:
            break
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    return read_info(state_path)


def _stop(state_path: str) -> Dict[str, Any]:
    state = _read_json(state_path) or {}
    pid = state.get("pid")
    if isinstance(pid, int) and is_watchdog(pid) and not state.get("acted"):
        try:
            os.kill(pid, signal.SIGTERM)
        except OSError:
            pass
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and is_watchdog(pid):
            time.sleep(0.05)
    if os.path.isdir(os.path.dirname(state_path)):
        state = _read_json(state_path) or {}
        state.update(idleSince=None, actAt=None, reason="off", idleMinutes=0)
        _write_json(state_path, state)
    return read_info(state_path)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m " + MODULE)
    parser.add_argument("--idle-seconds", type=float)
    parser.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD)
    parser.add_argument("--command", default=DEFAULT_COMMAND)
    parser.add_argument("--state")
    parser.add_argument("--tick", type=float, default=DEFAULT_TICK)
    parser.add_argument("--data-dir")
    parser.add_argument("--detach", action="store_true")
    parser.add_argument("--stop", action="store_true")
    parser.add_argument("--info", action="store_true")
    args = parser.parse_args(argv)
    from ..data_dir import resolve_data_directory

    data_directory = resolve_data_directory(args.data_dir, os.environ)
    state_path = os.path.abspath(
        os.path.expanduser(args.state or os.path.join(data_directory, STATE_NAME))
    )
    if args.info:
        print(json.dumps(read_info(state_path)))
        return 0
    os.makedirs(os.path.dirname(state_path), mode=0o700, exist_ok=True)
    if args.stop:
        print(json.dumps(_stop(state_path)))
        return 0
    if args.idle_seconds is None or not args.idle_seconds > 0 or not args.tick > 0:
        parser.error("--idle-seconds and --tick must be > 0")
    if args.detach:
        rest = [
            "--idle-seconds", repr(args.idle_seconds),
            "--threshold", repr(args.threshold),
            "--command", args.command,
            "--state", state_path,
            "--tick", repr(args.tick),
            "--data-dir", data_directory,
        ]  # fmt: skip
        print(json.dumps(_spawn_detached(rest, state_path)))
        return 0

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s watchdog[%(process)d] %(levelname)s %(message)s"
    )
    lock = _lock(state_path)
    watchdog = Watchdog(
        state_path, data_directory, args.idle_seconds, args.threshold, args.command, args.tick
    )
    signal.signal(signal.SIGTERM, lambda *_: watchdog.stop.set())
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    with open(state_path + ".pid", "w", encoding="utf-8") as f:
        f.write("%d\n" % os.getpid())
    log.info(
        "watching %s: idle %gs, GPU threshold %g%%, command %r",
        data_directory,
        args.idle_seconds,
        args.threshold,
        args.command,
    )
    try:
        return watchdog.run()
    finally:
        lock.close()


# ======================= in the local backend =======================


def _remote_command(install: Dict[str, Any], args: List[str]) -> str:
    return "PYTHONPATH=%s %s -m %s %s" % (
        shlex.quote(str(install["path"])),
        shlex.quote(str(install.get("python") or "python3")),
        MODULE,
        " ".join(shlex.quote(a) for a in args),
    )


def _call(host: Any, install: Dict[str, Any], args: List[str], timeout: float) -> Dict[str, Any]:
    from ..errors import ApplicationError

    result = host.run(_remote_command(install, args), timeout=timeout)
    out = (
        result.stdout.decode("utf-8", "replace")
        if isinstance(result.stdout, bytes)
        else str(result.stdout or "")
    )
    err = (
        result.stderr.decode("utf-8", "replace")
        if isinstance(result.stderr, bytes)
        else str(result.stderr or "")
    )
    lines = [line for line in out.splitlines() if line.strip()]
    try:
        value = json.loads(lines[-1]) if result.returncode == 0 and lines else None
    except ValueError:
        value = None
    if not isinstance(value, dict):
        raise ApplicationError(
            "RemoteUnavailable",
            "The autostop watchdog on the machine did not answer (exit %s)" % result.returncode,
            detail=(err.strip() or out.strip())[-2000:] or None,
        )
    return value


def _public(value: Dict[str, Any]) -> Dict[str, Any]:
    return {
        "idleMinutes": value.get("idleMinutes") or 0,
        "idleSince": value.get("idleSince"),
        "actAt": value.get("actAt"),
        "reason": str(value.get("reason") or ""),
        "running": bool(value.get("running")),
    }


def start(
    host: Any,
    install: Dict[str, Any],
    idle_minutes: int,
    threshold: float,
    command: Optional[str],
    tick: float = DEFAULT_TICK,
    idle_seconds: Optional[float] = None,
) -> Dict[str, Any]:
    """Start (or replace, or with idle_minutes 0 stop) the watchdog on the machine.

    `install` is remote/agent.install()'s result (path, python). `idle_seconds`, when
    given, overrides idle_minutes * 60 (tests). Returns RemoteAutostopInfo minus machine.
    """
    seconds = float(idle_seconds) if idle_seconds is not None else float(idle_minutes) * 60.0
    if seconds <= 0:
        return _public(_call(host, install, ["--stop"], timeout=30))
    args = [
        "--detach",
        "--idle-seconds", repr(seconds),
        "--threshold", repr(float(DEFAULT_THRESHOLD if threshold is None else threshold)),
        "--command", command or DEFAULT_COMMAND,
        "--tick", repr(float(tick)),
    ]  # fmt: skip
    value = _public(_call(host, install, args, timeout=REPLACE_TIMEOUT + 30))
    if idle_seconds is None:
        value["idleMinutes"] = idle_minutes
    return value


def info(host: Any, install: Dict[str, Any]) -> Dict[str, Any]:
    """The watchdog's state on the machine: RemoteAutostopInfo minus machine."""
    return _public(_call(host, install, ["--info"], timeout=30))


def _info_with_state(host: Any, install: Dict[str, Any]) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    """(RemoteAutostopInfo minus machine, the raw state file) — for tests and diagnostics."""
    value = _call(host, install, ["--info"], timeout=30)
    return _public(value), value.get("state") or {}


if __name__ == "__main__":
    sys.exit(main())
