"""One kernel as this backend tracks it, and how journaled messages and the folder update it.

The manager and the event forwarder work on the same ``KernelHandle``; this module
owns its fields, the rules that derive ``state``, ``running``, ``queue`` and the
outstanding executions from the worker's journal, and the KernelDied error that says
how a kernel ended.
"""

from __future__ import annotations

import subprocess
import threading
from collections import OrderedDict
from typing import Any, Dict, List, Optional, Set

from ..errors import ApplicationError
from . import store
from .connection import WorkerConnection
from .launcher import START_TIMEOUT

RESTART_HINT = "Restart the kernel"

# Replies remembered per kernel so interrupt() can tell whether an execution finished.
FINISHED_KEEP = 1000


class KernelHandle:
    """This backend's view of one kernel; fields are guarded by `lock`."""

    def __init__(self, kernel_id: str, directory: str) -> None:
        self.kernel_id = kernel_id
        self.directory = directory
        self.lock = threading.RLock()
        self.changed = threading.Condition(self.lock)
        self.conn: Optional[WorkerConnection] = None
        self.last_seq = 0
        self.state = "starting"
        self.running: Optional[str] = None
        self.queue: List[str] = []
        # executionIds sent or seen and not yet replied, in order (running one first)
        self.active: "OrderedDict[str, None]" = OrderedDict()
        self.finished: "OrderedDict[str, str]" = OrderedDict()  # executionId -> reply status
        self.execution_ids: Set[str] = set()
        self.died: Optional[Dict[str, Any]] = None  # the last `died` message
        self.ended: Optional[Dict[str, Any]] = None  # ended.json
        self.kernel: Dict[str, Any] = {}  # kernel.json
        self.launch: Dict[str, Any] = {}  # python, cwd, name, idleTimeoutSeconds, envFile
        self.env: Optional[Dict[str, str]] = None  # known only for kernels started here
        self.process: Optional["subprocess.Popen[bytes]"] = None  # the monitor, if ours
        self.busy_op = threading.Lock()  # serializes start/restart/shutdown/attach
        self.transition: Optional[str] = None  # "restarting" | "shutting down" while it runs


class Transition:
    """Marks a kernel as restarting or shutting down for the duration of a with block."""

    def __init__(self, k: KernelHandle, what: str) -> None:
        self._k = k
        self._what = what

    def __enter__(self) -> None:
        with self._k.lock:
            self._k.transition = self._what

    def __exit__(self, *exc: object) -> None:
        with self._k.lock:
            self._k.transition = None


def load_disk(data_directory: str, k: KernelHandle) -> store.DiskKernel:
    """What the kernel's folder says now; an empty record when the folder is gone."""
    disk = store.load(data_directory, k.kernel_id)
    if disk is None:
        return store.DiskKernel(k.kernel_id, k.directory, None, None, None)
    return disk


def disk_last_seq(k: KernelHandle) -> int:
    """The seq of the last message in the kernel's journal on disk (0 when empty)."""
    tail = store.journal_tail(k.directory)
    return tail[-1]["seq"] if tail else 0


def apply_message(k: KernelHandle, message: Dict[str, Any]) -> None:
    """Track state from one journaled message (lock held)."""
    kind = message.get("type")
    if kind == "start":
        k.state = "idle"
        k.ended = None
        k.died = None
        k.running = None
        k.queue = []
        # Executions of an earlier worker process cannot still be outstanding.
        k.active.clear()
        for key in ("pid", "python", "pythonVersion", "cwd"):
            if key in message:
                k.kernel[key] = message[key]
    elif kind == "status":
        state = message.get("state")
        if state in ("idle", "busy"):
            k.state = state
        running = message.get("executionId") if state == "busy" else None
        k.running = running if isinstance(running, str) else None
        queue = message.get("queue")
        k.queue = [q for q in queue if isinstance(q, str)] if isinstance(queue, list) else []
        for execution_id in ([k.running] if k.running else []) + k.queue:
            if execution_id not in k.finished:
                k.active.setdefault(execution_id, None)
    elif kind == "reply":
        execution_id = message.get("executionId")
        if isinstance(execution_id, str):
            k.active.pop(execution_id, None)
            k.finished[execution_id] = str(message.get("status"))
            while len(k.finished) > FINISHED_KEEP:
                k.finished.popitem(last=False)
            if k.running == execution_id:
                k.running = None
            if execution_id in k.queue:
                k.queue.remove(execution_id)
    elif kind == "exit":
        k.state = "exited"
        k.running = None
        k.queue = []
    elif kind == "died":
        k.state = "dead"
        k.died = message
        k.running = None
        k.queue = []


def init_from_disk(k: KernelHandle, disk: store.DiskKernel) -> None:
    """Set seq and state from the journal's tail and the folder's json files."""
    tail = store.journal_tail(k.directory)
    k.last_seq = tail[-1]["seq"] if tail else 0
    for message in tail:
        apply_message(k, message)
    if disk.ended is not None:
        k.ended = disk.ended
        k.state = store.ended_state(disk.ended)
    elif disk.kernel is None:
        # A start that never finished (its backend died) must not look "starting" forever.
        k.state = "starting" if store.folder_age(k.directory) < 2 * START_TIMEOUT else "dead"
    elif not disk.kernel_alive():
        k.state = "dead"
    elif k.state not in ("idle", "busy"):
        k.state = "idle"


def died_error(k: KernelHandle) -> ApplicationError:
    """KernelDied describing how the kernel ended."""
    with k.lock:
        ended = dict(k.ended or {})
        died = dict(k.died or {})
    if not died:
        for message in reversed(store.journal_tail(k.directory)):
            if message.get("type") == "died":
                died = message
                break
    reason = ended.get("reason")
    label = k.kernel.get("name") or k.kernel_id
    if reason == "shutdown":
        return ApplicationError("KernelDied", "Kernel %s was shut down" % label, hint=RESTART_HINT)
    if reason == "idle":
        return ApplicationError(
            "KernelDied", "Kernel %s exited after being idle" % label, hint=RESTART_HINT
        )
    exit_code = died.get("exitCode", ended.get("exitCode"))
    sig = died.get("signal", ended.get("signal"))
    if sig:
        how = "killed by %s" % sig
    elif exit_code is not None:
        how = "exit code %s" % exit_code
    else:
        how = "no exit status recorded"
    tail = died.get("stderrTail")
    if not isinstance(tail, list):
        tail = store.stderr_tail(k.directory)
    detail = how
    if tail:
        detail += "\nstderr:\n" + "\n".join(str(line) for line in tail)
    return ApplicationError(
        "KernelDied", "Kernel %s died (%s)" % (label, how), detail=detail, hint=RESTART_HINT
    )
