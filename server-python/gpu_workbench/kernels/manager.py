"""Kernel manager: the ``kernel/*`` operations over detached workers, one connection each.

Every journaled message a worker sends is forwarded to the client as a ``kernel/event``
notification, in seq order, without duplicates (see ``events``); the manager remembers
the last seq it forwarded per kernel. When a worker's socket ends, the manager waits
briefly for the monitor's ``ended.json`` and forwards what the monitor appended to the
journal (``reply died``, ``died``), so a death is reported within about a second.
Kernels outlive the backend: closing the manager only closes connections. Processes are
started, stopped and signalled by ``launcher``; the per-kernel record lives in ``state``.
"""

from __future__ import annotations

import logging
import math
import os
import signal
import sys
import threading
import time
import uuid
from typing import Any, Dict, List, Mapping, Optional

from ..errors import INVALID_PARAMS, ApplicationError, RpcError
from ..protocol import (
    KernelAttachParams,
    KernelExecuteParams,
    KernelExecuteResult,
    KernelInfo,
    KernelInterruptParams,
    KernelInterruptResult,
    KernelStartParams,
    Variable,
)
from . import launcher, store
from .connection import WorkerConnection, WorkerUnavailable
from .events import EOF_WAIT_FOR_ENDED, EventForwarder, Notify
from .state import (
    RESTART_HINT,
    KernelHandle,
    Transition,
    died_error,
    disk_last_seq,
    init_from_disk,
    load_disk,
)

log = logging.getLogger(__name__)

MAX_CODE_BYTES = 64 * 1024 * 1024
VARIABLES_TIMEOUT = 10.0
DEFAULT_INTERRUPT_GRACE = 3.0


def _app(kind: str, message: str, detail: Optional[str] = None, hint: Optional[str] = None):
    return ApplicationError(kind, message, detail=detail, hint=hint)


def _invalid(message: str) -> RpcError:
    return RpcError(INVALID_PARAMS, "Invalid params: " + message)


class KernelManager:
    """All kernels under ``<dataDirectory>/kernels`` as seen by one backend."""

    def __init__(
        self,
        data_directory: str,
        notify: Notify,
        environ: Optional[Mapping[str, str]] = None,
        default_python: Optional[str] = None,
    ) -> None:
        self.data_directory = data_directory
        self.root = store.kernels_root(data_directory)
        self._environ: Dict[str, str] = dict(os.environ if environ is None else environ)
        self._default_python = default_python or sys.executable
        self._kernels: Dict[str, KernelHandle] = {}
        self._lock = threading.Lock()
        # Connections and event forwarding; close() stops its notifications.
        self._events = EventForwarder(data_directory, notify)

    # ================= public operations =================

    def start(self, params: KernelStartParams) -> KernelInfo:
        """Start a new worker and connect to it."""
        python = params.python or self._default_python
        cwd = os.path.abspath(os.path.expanduser(params.cwd)) if params.cwd else None
        if cwd is not None and not os.path.isdir(cwd):
            raise _app(
                "NotFound",
                "Working directory not found: %s" % cwd,
                hint="Choose an existing folder as the kernel's working directory",
            )
        idle = params.idleTimeoutSeconds or 0.0
        if not math.isfinite(idle) or idle < 0:
            raise _invalid("params.idleTimeoutSeconds must be a finite number >= 0")
        env_file = None
        if params.envFile:
            env_file = os.path.join(cwd or os.getcwd(), os.path.expanduser(params.envFile))
        launch = {
            "python": python,
            "cwd": cwd,
            "name": params.name or "",
            "idleTimeoutSeconds": idle,
            "envFile": env_file,
        }
        env = launcher.kernel_env(self._environ, env_file, params.env or {})
        kernel_id = store.new_kernel_id()
        directory = os.path.join(self.root, kernel_id)
        os.makedirs(directory, mode=0o700)
        store.write_json(os.path.join(directory, store.LAUNCH_JSON), launch)
        k = KernelHandle(kernel_id, directory)
        k.launch = launch
        k.env = env
        with self._lock:
            self._kernels[kernel_id] = k
        try:
            with k.busy_op:
                self._launch(k, since=0)
        except Exception:
            with self._lock:
                self._kernels.pop(kernel_id, None)
            self._forget_folder(k)
            raise
        return self._info(k)

    def execute(self, params: KernelExecuteParams) -> KernelExecuteResult:
        """Queue code on the kernel; outputs arrive as kernel/event notifications."""
        code = params.code
        if (
            len(code) > MAX_CODE_BYTES
            or len(code.encode("utf-8", "surrogatepass")) > MAX_CODE_BYTES
        ):
            raise _invalid("params.code is larger than the 64 MiB limit")
        if params.line is not None and params.line < 0:
            raise _invalid("params.line must be >= 0")
        k = self._get(params.kernelId)
        execution_id = params.executionId or uuid.uuid4().hex
        conn = self._connected(k, block=False)
        with k.lock:
            if execution_id in k.execution_ids:
                raise _invalid(
                    "params.executionId %r was already used on this kernel" % execution_id
                )
            k.execution_ids.add(execution_id)
            position = len(k.active)
            k.active[execution_id] = None
        op = {
            "op": "execute",
            "executionId": execution_id,
            "code": code,
            "file": params.file,
            "line": params.line or 0,
            "stopOnError": bool(params.stopOnError),
            "storeHistory": True,
        }
        if params.after:
            op["after"] = params.after
        try:
            conn.send(op)
        except WorkerUnavailable:
            with k.lock:
                k.active.pop(execution_id, None)
            raise died_error(k) from None
        return KernelExecuteResult(executionId=execution_id, queuePosition=position)

    def interrupt(self, params: KernelInterruptParams) -> KernelInterruptResult:
        """clear_queue, SIGINT to the group, then SIGKILL if the running cell does not stop."""
        grace = DEFAULT_INTERRUPT_GRACE if params.graceSeconds is None else params.graceSeconds
        if not math.isfinite(grace) or grace < 0 or grace > 3600:
            raise _invalid("params.graceSeconds must be between 0 and 3600")
        k = self._get(params.kernelId)
        conn = self._connected(k)
        with k.lock:
            outstanding = list(k.active)
        if not outstanding:
            return KernelInterruptResult(outcome="idle")
        try:
            conn.send({"op": "clear_queue"})
            # Ops are handled in order: the pong proves the queue is cleared before SIGINT,
            # so the next queued cell cannot start in the moment after the interrupt.
            conn.request({"op": "ping"}, min(2.0, grace + 0.5))
        except WorkerUnavailable:
            raise died_error(k) from None
        except TimeoutError:
            log.info("kernel %s did not answer ping; interrupting anyway", k.kernel_id)
        disk = self._disk(k)
        if not launcher.signal_group(disk, signal.SIGINT):
            raise died_error(k)
        deadline = time.monotonic() + grace
        with k.lock:
            while True:
                if all(e in k.finished or e not in k.active for e in outstanding):
                    return KernelInterruptResult(outcome="interrupted")
                if k.ended is not None:
                    return KernelInterruptResult(outcome="killed")
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                k.changed.wait(remaining)
        log.info("kernel %s did not stop within %.1fs of SIGINT; killing it", k.kernel_id, grace)
        launcher.signal_group(disk, signal.SIGKILL)
        return KernelInterruptResult(outcome="killed")

    def restart(self, kernel_id: str) -> KernelInfo:
        """Stop the worker and start a new one in the same folder (journal seq continues)."""
        k = self._get(kernel_id)
        with k.busy_op, Transition(k, "restarting"):
            self._stop(k)
            if k.env is None:
                env_file = k.launch.get("envFile")
                k.env = launcher.kernel_env(
                    self._environ, env_file if isinstance(env_file, str) else None, {}
                )
            for name in (store.ENDED_JSON, store.KERNEL_JSON):
                try:
                    os.unlink(os.path.join(k.directory, name))
                except OSError:
                    pass
            with k.lock:
                k.ended = None
                k.died = None
                k.state = "starting"
                k.active.clear()
                k.running = None
                k.queue = []
                since = k.last_seq
            self._launch(k, since=since)
        return self._info(k)

    def shutdown(self, kernel_id: str) -> None:
        """Ask the kernel to exit (SIGKILL after a grace period); its folder stays."""
        k = self._get(kernel_id)
        with k.busy_op, Transition(k, "shutting down"):
            self._stop(k)

    def list(self) -> List[KernelInfo]:
        """Every kernel folder under the data directory, with its state."""
        try:
            store.prune(self.data_directory)
        except Exception:
            log.exception("pruning old kernel folders failed")
        infos: List[KernelInfo] = []
        for kernel_id in store.list_ids(self.data_directory):
            try:
                infos.append(self._info(self._get(kernel_id)))
            except ApplicationError:
                continue  # removed meanwhile
        return infos

    def attach(self, params: KernelAttachParams) -> KernelInfo:
        """(Re)connect with hello{since}; for an ended kernel, replay its journal from disk."""
        since = params.since or 0
        if since < 0:
            raise _invalid("params.since must be >= 0")
        k = self._get(params.kernelId)
        with k.busy_op:
            old = k.conn
            if old is not None:
                with k.lock:
                    k.conn = None
                old.close()
            disk = self._disk(k)
            if disk.kernel is not None and disk.kernel_alive() and disk.socket_path:
                try:
                    self._events.connect(k, disk, since)
                    return self._info(k)
                except WorkerUnavailable as exc:
                    log.info("attach to %s: %s; replaying from disk", k.kernel_id, exc)
            self._events.replay_from_disk(k, since, explicit=True)
            self._events.refresh_ended(k)
        return self._info(k)

    def input_reply(self, kernel_id: str, execution_id: str, value: str) -> None:
        """Answer an input_request."""
        k = self._get(kernel_id)
        conn = self._connected(k, block=False)
        try:
            conn.send({"op": "input_reply", "executionId": execution_id, "value": value})
        except WorkerUnavailable:
            raise died_error(k) from None

    def variables(self, kernel_id: str) -> List[Variable]:
        """The kernel's user variables (as the worker summarizes them)."""
        k = self._get(kernel_id)
        conn = self._connected(k)
        try:
            reply = conn.request({"op": "variables", "limit": 200}, VARIABLES_TIMEOUT)
        except WorkerUnavailable:
            raise died_error(k) from None
        except TimeoutError:
            raise _app(
                "InvalidState",
                "The kernel did not answer the variables request",
                hint="Try again when the kernel is idle",
            ) from None
        raw = reply.get("variables")
        return [_variable(v) for v in raw if isinstance(v, dict)] if isinstance(raw, list) else []

    def close(self) -> None:
        """Close every connection; the kernels keep running."""
        self._events.closed = True
        with self._lock:
            kernels = list(self._kernels.values())
        for k in kernels:
            with k.lock:
                conn, k.conn = k.conn, None
            if conn is not None:
                conn.close()

    # ================= launching and stopping =================

    def _launch(self, k: KernelHandle, since: int) -> None:
        """Start the worker process, wait for kernel.json, connect."""
        python = str(k.launch.get("python") or self._default_python)
        k.process = launcher.spawn_worker(k.kernel_id, k.directory, k.launch, k.env, python)
        disk = launcher.wait_started(k.process, lambda: self._disk(k), k.directory, python)
        kernel_json = os.path.join(k.directory, store.KERNEL_JSON)
        log.info("kernel %s started (pid %s) from %s", k.kernel_id, disk.pid, kernel_json)
        with k.lock:
            k.kernel = disk.kernel or {}
        try:
            self._events.connect(k, disk, since)
        except WorkerUnavailable as exc:
            raise _app(
                "KernelDied",
                "The kernel started but cannot be reached: %s" % exc,
                detail="\n".join(store.stderr_tail(k.directory)) or None,
                hint=RESTART_HINT,
            ) from None

    def _stop(self, k: KernelHandle) -> None:
        """Shutdown op, wait STOP_GRACE, then SIGKILL; returns once the kernel has ended."""
        disk = self._disk(k)
        with k.lock:
            conn = k.conn
        if conn is not None and not conn.ended.is_set():
            try:
                conn.send({"op": "shutdown"})
            except WorkerUnavailable:
                pass
        elif disk.kernel_alive():
            conn = None
            # Not connected: connect just to ask politely (so the worker writes `exit`).
            try:
                self._events.connect(k, disk, disk_last_seq(k))
                conn = k.conn
                if conn is not None:
                    conn.send({"op": "shutdown"})
            except (WorkerUnavailable, ApplicationError):
                conn = None
        launcher.ensure_stopped(disk)
        if conn is not None:
            # Let the reader deliver everything up to EOF (exit, or the monitor's died).
            conn.finished.wait(EOF_WAIT_FOR_ENDED + 2.0)
        with k.lock:
            if k.conn is conn and conn is not None:
                k.conn = None
        if conn is not None:
            conn.close()
        self._events.replay_from_disk(k, k.last_seq, explicit=False)
        self._events.refresh_ended(k)
        store.remove_stale_socket(self._disk(k))

    # ================= connections =================

    def _connected(self, k: KernelHandle, block: bool = True) -> WorkerConnection:
        """The kernel's live connection, connecting if needed; KernelDied if it has ended.

        With block=False (handlers on the read loop) a kernel that is being started,
        restarted or stopped is refused at once instead of waited for.
        """
        with k.lock:
            transition = k.transition
            conn = k.conn
            if transition is None and conn is not None and not conn.ended.is_set():
                return conn
        if transition is not None and not block:
            raise _app(
                "InvalidState",
                "Kernel %s is %s" % (k.kernel_id, transition),
                hint="Try again when it is ready",
            )
        if conn is not None:
            conn.finished.wait(EOF_WAIT_FOR_ENDED + 1.0)  # let a death be recorded first
        if not k.busy_op.acquire(blocking=block):
            raise _app(
                "InvalidState",
                "Kernel %s is busy changing state" % k.kernel_id,
                hint="Try again when it is ready",
            )
        try:
            with k.lock:
                conn = k.conn
                if conn is not None and not conn.ended.is_set():
                    return conn
            disk = self._disk(k)
            if disk.kernel is None or not disk.kernel_alive() or not disk.socket_path:
                self._events.refresh_ended(k)
                raise died_error(k)
            since = k.last_seq if k.last_seq else disk_last_seq(k)
            try:
                self._events.connect(k, disk, since)
            except WorkerUnavailable:
                self._events.refresh_ended(k)
                raise died_error(k) from None
            with k.lock:
                assert k.conn is not None
                return k.conn
        finally:
            k.busy_op.release()

    # ================= lookups and info =================

    def _disk(self, k: KernelHandle) -> store.DiskKernel:
        return load_disk(self.data_directory, k)

    def _get(self, kernel_id: str) -> KernelHandle:
        """The kernel's handle, loading it from disk on first use; NotFound if no folder."""
        with self._lock:
            k = self._kernels.get(kernel_id)
        if k is not None:
            return k
        disk = store.load(self.data_directory, kernel_id)
        if disk is None:
            raise _app(
                "NotFound",
                "No kernel with id %s" % kernel_id,
                hint="Refresh the kernel list; it may have been removed",
            )
        k = KernelHandle(kernel_id, disk.directory)
        k.kernel = disk.kernel or {}
        k.launch = disk.launch or {
            "python": (disk.kernel or {}).get("python"),
            "cwd": (disk.kernel or {}).get("cwd"),
            "name": (disk.kernel or {}).get("name") or "",
            "idleTimeoutSeconds": (disk.kernel or {}).get("idleTimeoutSeconds") or 0.0,
            "envFile": None,
        }
        init_from_disk(k, disk)
        with self._lock:
            return self._kernels.setdefault(kernel_id, k)

    def _info(self, k: KernelHandle) -> KernelInfo:
        with k.lock:
            connected = k.conn is not None and not k.conn.ended.is_set()
        if not connected:
            # Not attached: the folder is the truth (another backend may be driving it).
            disk = self._disk(k)
            fresh = KernelHandle(k.kernel_id, k.directory)
            fresh.kernel = disk.kernel or dict(k.kernel)
            init_from_disk(fresh, disk)
            with k.lock:
                if k.conn is None:
                    k.kernel = fresh.kernel
                    k.state, k.queue, k.running = fresh.state, fresh.queue, fresh.running
                    k.last_seq = max(k.last_seq, fresh.last_seq)
                    if fresh.ended is not None:
                        k.ended = fresh.ended
        with k.lock:
            meta = k.kernel
            launch = k.launch
            pid = meta.get("pid")
            created = meta.get("createdAt")
            idle = meta.get("idleTimeoutSeconds", launch.get("idleTimeoutSeconds"))
            return KernelInfo(
                kernelId=k.kernel_id,
                name=str(meta.get("name") or launch.get("name") or ""),
                pid=pid if isinstance(pid, int) and not isinstance(pid, bool) else None,
                python=str(meta.get("python") or launch.get("python") or ""),
                pythonVersion=str(meta.get("pythonVersion") or ""),
                cwd=str(meta.get("cwd") or launch.get("cwd") or ""),
                state=k.state,
                createdAt=float(created) if isinstance(created, (int, float)) else 0.0,
                lastSeq=k.last_seq,
                queue=list(k.queue),
                idleTimeoutSeconds=float(idle) if isinstance(idle, (int, float)) else 0.0,
            )

    def _forget_folder(self, k: KernelHandle) -> None:
        """Remove the folder of a kernel that never started."""
        import shutil

        shutil.rmtree(k.directory, ignore_errors=True)


def _opt_int(value: Any) -> Optional[int]:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _variable(raw: Dict[str, Any]) -> Variable:
    shape = raw.get("shape")
    dtype = raw.get("dtype")
    return Variable(
        name=str(raw.get("name", "")),
        type=str(raw.get("type", "")),
        shape=[s for s in shape if isinstance(s, int)] if isinstance(shape, list) else None,
        length=_opt_int(raw.get("length")),
        dtype=str(dtype) if dtype is not None else None,
        size=_opt_int(raw.get("size")),
        repr=str(raw.get("repr", "")),
    )
