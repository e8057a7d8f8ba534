"""Kernel folders on disk: ``<dataDirectory>/kernels/<kernelId>/`` (see PROTOCOL.md).

Everything here reads what workers and their monitors wrote; nothing assumes the kernel
was started by this backend. Liveness checks never trust a pid alone: the process must be
alive and, where /proc exists, be a worker.py for that kernel id.
"""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
import shutil
import stat
import time
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

from ..parent_watch import pid_alive

log = logging.getLogger(__name__)

KERNELS_DIR = "kernels"
KERNEL_JSON = "kernel.json"
ENDED_JSON = "ended.json"
JOURNAL = "journal.jsonl"
OLD_JOURNAL = "journal.1.jsonl"
STDERR_LOG = "stderr.log"
LAUNCH_JSON = "launch.json"  # ours: how this kernel was started, for restarts (no env values)
WORKER_FILE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "worker.py")

_KERNEL_ID = re.compile(r"^[0-9a-f]{12}$")
# Ended kernels' folders older than this are removed by prune().
PRUNE_AFTER_SECONDS = 24 * 3600.0
# How far back from the end of the journal to look for the last status message.
_TAIL_BYTES = 256 * 1024


def kernels_root(data_directory: str) -> str:
    """The folder holding every kernel folder."""
    return os.path.join(data_directory, KERNELS_DIR)


def is_kernel_id(value: str) -> bool:
    """True for 12 lowercase hex characters."""
    return bool(_KERNEL_ID.match(value))


def new_kernel_id() -> str:
    """A fresh random kernel id."""
    return secrets.token_hex(6)


def read_json(path: str) -> Optional[Dict[str, Any]]:
    """A JSON object from `path`, or None when missing, partial or not an object."""
    try:
        with open(path, encoding="utf-8") as f:
            value = json.load(f)
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def write_json(path: str, value: Dict[str, Any]) -> None:
    """Write atomically (temp file + rename)."""
    temp = "%s.tmp.%d" % (path, os.getpid())
    with open(temp, "w", encoding="utf-8") as f:
        json.dump(value, f)
    os.replace(temp, path)


def _int(value: Any) -> Optional[int]:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    return None


def process_matches(pid: Optional[int], kernel_id: str) -> bool:
    """True when `pid` is alive and (where /proc can tell) runs worker.py for `kernel_id`."""
    if pid is None or pid <= 0 or not pid_alive(pid):
        return False
    if not os.path.isdir("/proc/self"):
        return True
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            args = f.read().split(b"\0")
    except OSError:
        return False  # gone meanwhile; our own processes are always readable
    has_worker = any(os.path.basename(a) == b"worker.py" for a in args)
    return has_worker and kernel_id.encode("ascii") in args


def stderr_tail(kernel_dir: str, lines: int = 20) -> List[str]:
    """The last `lines` lines of the worker's stderr.log."""
    path = os.path.join(kernel_dir, STDERR_LOG)
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 64 * 1024))
            data = f.read()
    except OSError:
        return []
    text = data.decode("utf-8", "replace").rstrip("\n")
    return text.split("\n")[-lines:] if text else []


def _parse_lines(data: bytes) -> List[Dict[str, Any]]:
    messages: List[Dict[str, Any]] = []
    for raw in data.split(b"\n"):
        if not raw.strip():
            continue
        try:
            message = json.loads(raw.decode("utf-8"))
        except (ValueError, UnicodeDecodeError):
            continue  # a line being written right now, or damage; seqs reveal any hole
        if isinstance(message, dict) and _int(message.get("seq")) is not None:
            messages.append(message)
    return messages


def read_journal(kernel_dir: str, since: int = 0) -> Tuple[List[Dict[str, Any]], Optional[int]]:
    """Journaled messages with seq > `since`, in order, from the rotated and current journal.

    Returns (messages, first_available_seq); the caller reports a gap when the first
    available seq is beyond since + 1.
    """
    collected: Dict[int, Dict[str, Any]] = {}
    for name in (OLD_JOURNAL, JOURNAL):
        try:
            with open(os.path.join(kernel_dir, name), "rb") as f:
                data = f.read()
        except OSError:
            continue
        for message in _parse_lines(data):
            collected[message["seq"]] = message
    if not collected:
        return [], None
    first = min(collected)
    return [collected[s] for s in sorted(collected) if s > since], first


def journal_tail(kernel_dir: str) -> List[Dict[str, Any]]:
    """The last messages of the current journal (cheap: reads at most the last 256 KiB)."""
    path = os.path.join(kernel_dir, JOURNAL)
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            start = max(0, size - _TAIL_BYTES)
            f.seek(start)
            data = f.read()
    except OSError:
        return []
    if start > 0:
        data = data[data.find(b"\n") + 1 :]  # drop the partial first line
    return _parse_lines(data)


@dataclass
class DiskKernel:
    """What the folder says about one kernel."""

    kernel_id: str
    directory: str
    kernel: Optional[Dict[str, Any]]  # kernel.json
    ended: Optional[Dict[str, Any]]  # ended.json
    launch: Optional[Dict[str, Any]]  # launch.json

    @property
    def pid(self) -> Optional[int]:
        return _int((self.kernel or {}).get("pid"))

    @property
    def pgid(self) -> Optional[int]:
        return _int((self.kernel or {}).get("pgid")) or self.pid

    @property
    def monitor_pid(self) -> Optional[int]:
        return _int((self.kernel or {}).get("monitorPid"))

    @property
    def socket_path(self) -> Optional[str]:
        value = (self.kernel or {}).get("socket")
        return value if isinstance(value, str) and value else None

    def kernel_alive(self) -> bool:
        """The kernel process is running (verified against its command line)."""
        return self.ended is None and process_matches(self.pid, self.kernel_id)

    def monitor_alive(self) -> bool:
        return process_matches(self.monitor_pid, self.kernel_id)


def load(data_directory: str, kernel_id: str) -> Optional[DiskKernel]:
    """Read one kernel folder; None when it does not exist."""
    if not is_kernel_id(kernel_id):
        return None
    directory = os.path.join(kernels_root(data_directory), kernel_id)
    if not os.path.isdir(directory):
        return None
    return DiskKernel(
        kernel_id=kernel_id,
        directory=directory,
        kernel=read_json(os.path.join(directory, KERNEL_JSON)),
        ended=read_json(os.path.join(directory, ENDED_JSON)),
        launch=read_json(os.path.join(directory, LAUNCH_JSON)),
    )


def list_ids(data_directory: str) -> List[str]:
    """Ids of every kernel folder, oldest first."""
    root = kernels_root(data_directory)
    try:
        names = [n for n in os.listdir(root) if is_kernel_id(n)]
    except OSError:
        return []
    entries: List[Tuple[float, str]] = []
    for name in names:
        try:
            entries.append((os.stat(os.path.join(root, name)).st_mtime, name))
        except OSError:
            continue
    return [name for _, name in sorted(entries)]


def ended_state(ended: Dict[str, Any]) -> str:
    """KernelInfo.state for an ended kernel: "exited" when asked to end, else "dead"."""
    return "exited" if ended.get("reason") in ("shutdown", "idle") else "dead"


def remove_stale_socket(disk: DiskKernel) -> None:
    """Remove the socket of a kernel whose processes are gone (the monitor normally does)."""
    path = disk.socket_path
    if path is None or disk.kernel_alive() or disk.monitor_alive():
        return
    try:
        if stat.S_ISSOCK(os.lstat(path).st_mode):
            os.unlink(path)
    except OSError:
        pass


def prune(data_directory: str, now: Optional[float] = None) -> List[str]:
    """Remove folders of kernels that ended more than a day ago; return their ids."""
    now = time.time() if now is None else now
    removed: List[str] = []
    for kernel_id in list_ids(data_directory):
        disk = load(data_directory, kernel_id)
        if disk is None:
            continue
        if disk.ended is not None:
            ended_at = disk.ended.get("endedAt")
            if not isinstance(ended_at, (int, float)) or isinstance(ended_at, bool):
                ended_at = _mtime(os.path.join(disk.directory, ENDED_JSON))
        elif disk.kernel is not None and not disk.kernel_alive() and not disk.monitor_alive():
            ended_at = _mtime(os.path.join(disk.directory, KERNEL_JSON))  # died unrecorded
        elif disk.kernel is None:
            ended_at = _mtime(disk.directory)  # a start that never finished
        else:
            continue
        if now - ended_at < PRUNE_AFTER_SECONDS:
            continue
        remove_stale_socket(disk)
        shutil.rmtree(disk.directory, ignore_errors=True)
        removed.append(kernel_id)
    return removed


def folder_age(path: str) -> float:
    """Seconds since `path` was last modified."""
    return max(0.0, time.time() - _mtime(path))


def _mtime(path: str) -> float:
    try:
        return os.stat(path).st_mtime
    except OSError:
        return time.time()
