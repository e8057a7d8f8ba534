"""Exit when the editor that started us dies, so no orphaned backend is left running."""

from __future__ import annotations

import logging
import os
import sys
import threading
from typing import Callable, Optional

log = logging.getLogger(__name__)


def pid_alive(pid: int) -> bool:
    """True if process `pid` exists and is not a zombie."""
    if pid <= 0:
        return False
    if sys.platform == "win32":
        return _pid_alive_windows(pid)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists but belongs to someone else
    except OSError:
        return False
    # A dead parent nobody has reaped yet still answers kill(0); /proc tells the truth.
    try:
        with open("/proc/%d/stat" % pid, "rb") as f:
            stat = f.read()
        state = stat[stat.rindex(b")") + 2 : stat.rindex(b")") + 3]
        return state not in (b"Z", b"X")
    except (OSError, ValueError):
        return True


def _pid_alive_windows(pid: int) -> bool:
    import ctypes

    synchronize = 0x00100000
    kernel32 = ctypes.windll.kernel32  # type: ignore[attr-defined]
    handle = kernel32.OpenProcess(synchronize, False, pid)
    if not handle:
        return False
    try:
        # WAIT_TIMEOUT (0x102) means the process is still running.
        return kernel32.WaitForSingleObject(handle, 0) == 0x102
    finally:
        kernel32.CloseHandle(handle)


def _exit_now(reason: str) -> None:
    log.warning("%s; exiting", reason)
    try:
        sys.stderr.flush()
    except Exception:
        pass
    # os._exit: the main thread is blocked reading stdin and cannot be interrupted portably.
    os._exit(1)


class ParentWatch:
    """Polls the parent pid and (once known) the client's processId from a daemon thread."""

    def __init__(
        self,
        initial_ppid: Optional[int] = None,
        interval: float = 0.5,
        on_death: Callable[[str], None] = _exit_now,
    ) -> None:
        self._initial_ppid = os.getppid() if initial_ppid is None else initial_ppid
        self._interval = interval
        self._on_death = on_death
        self._client_pid: Optional[int] = None
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def start(self) -> None:
        """Start polling in a daemon thread."""
        self._thread = threading.Thread(target=self._run, name="gpuwb-parent-watch", daemon=True)
        self._thread.start()

    def watch_pid(self, pid: Optional[int]) -> None:
        """Also watch the client process announced in initialize's processId."""
        if pid is not None and pid > 0:
            self._client_pid = pid

    def stop(self) -> None:
        """Stop polling."""
        self._stop.set()

    def check(self) -> Optional[str]:
        """Return why we should exit, or None while the parent and client are alive."""
        ppid = os.getppid()
        # Re-parenting (to init or a subreaper) means the process that started us is gone.
        if self._initial_ppid > 1 and ppid != self._initial_ppid:
            return "parent process %d died (ppid is now %d)" % (self._initial_ppid, ppid)
        client = self._client_pid
        if client is not None and not pid_alive(client):
            return "client process %d is gone" % client
        return None

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                reason = self.check()
            except Exception:
                log.exception("parent watch check failed")
                continue
            if reason is not None:
                self._on_death(reason)
                return
