"""Kernel manager: starts detached workers, keeps one connection per kernel, forwards events.

Every journaled message a worker sends is forwarded to the client as a ``kernel/event``
notification, in seq order, without duplicates; the manager remembers the last seq it
forwarded per kernel. When a worker's socket ends, the manager waits briefly for the
monitor's ``ended.json`` and forwards what the monitor appended to the journal (``reply
died``, ``died``), so a death is reported within about a second. Kernels outlive the
backend: closing the manager only closes connections.
"""

from __future__ import annotations

import logging
import math
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import OrderedDict
from typing import Any, Callable, Dict, List, Mapping, Optional, Set

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
from . import store
from .connection import WorkerConnection, WorkerUnavailable
from .envfile import load_env_file

log = logging.getLogger(__name__)

Notify = Callable[[str, Dict[str, Any]], None]

MAX_CODE_BYTES = 64 * 1024 * 1024
START_TIMEOUT = 30.0
STOP_GRACE = 2.0
EOF_WAIT_FOR_ENDED = 1.5
POLL = 0.02
CATCH_UP_TIMEOUT = 10.0
VARIABLES_TIMEOUT = 10.0
DEFAULT_INTERRUPT_GRACE = 3.0
RESTART_HINT = "Restart the kernel"
# Replies remembered per kernel so interrupt() can tell whether an execution finished.
_FINISHED_KEEP = 1000


def _app(kind: str, message: str, detail: Optional[str] = None, hint: Optional[str] = None):
    return ApplicationError(kind, message, detail=detail, hint=hint)


def _invalid(message: str) -> RpcError:
    return RpcError(INVALID_PARAMS, "Invalid params: " + message)


class _Kernel:
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


class _Transition:
    """Marks a kernel as restarting or shutting down for the duration of a with block."""

    def __init__(self, k: _Kernel, what: str) -> None:
        self._k = k
        self._what = what

    def __enter__(self) -> None:
        with self._k.lock:
            self._k.transition = self._what

    def __exit__(self, *exc: object) -> None:
        with self._k.lock:
            self._k.transition = None


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
        self._notify = notify
        self._environ: Dict[str, str] = dict(os.environ if environ is None else environ)
        self._default_python = default_python or sys.executable
        self._kernels: Dict[str, _Kernel] = {}
        self._lock = threading.Lock()
        self._closed = False

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
        env = self._kernel_env(env_file, params.env or {})
        kernel_id = store.new_kernel_id()
        directory = os.path.join(self.root, kernel_id)
        os.makedirs(directory, mode=0o700)
        store.write_json(os.path.join(directory, store.LAUNCH_JSON), launch)
        k = _Kernel(kernel_id, directory)
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
        try:
            conn.send(op)
        except WorkerUnavailable:
            with k.lock:
                k.active.pop(execution_id, None)
            raise self._died_error(k) from None
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
            raise self._died_error(k) from None
        except TimeoutError:
            log.info("kernel %s did not answer ping; interrupting anyway", k.kernel_id)
        disk = self._disk(k)
        if not self._signal_group(disk, signal.SIGINT):
            raise self._died_error(k)
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
        self._signal_group(disk, signal.SIGKILL)
        return KernelInterruptResult(outcome="killed")

    def restart(self, kernel_id: str) -> KernelInfo:
        """Stop the worker and start a new one in the same folder (journal seq continues)."""
        k = self._get(kernel_id)
        with k.busy_op, _Transition(k, "restarting"):
            self._stop(k)
            if k.env is None:
                env_file = k.launch.get("envFile")
                k.env = self._kernel_env(env_file if isinstance(env_file, str) else None, {})
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
        with k.busy_op, _Transition(k, "shutting down"):
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
                    self._connect(k, disk, since)
                    return self._info(k)
                except WorkerUnavailable as exc:
                    log.info("attach to %s: %s; replaying from disk", k.kernel_id, exc)
            self._replay_from_disk(k, since, explicit=True)
            self._refresh_ended(k)
        return self._info(k)

    def input_reply(self, kernel_id: str, execution_id: str, value: str) -> None:
        """Answer an input_request."""
        k = self._get(kernel_id)
        conn = self._connected(k, block=False)
        try:
            conn.send({"op": "input_reply", "executionId": execution_id, "value": value})
        except WorkerUnavailable:
            raise self._died_error(k) from None

    def variables(self, kernel_id: str) -> List[Variable]:
        """The kernel's user variables (as the worker summarizes them)."""
        k = self._get(kernel_id)
        conn = self._connected(k)
        try:
            reply = conn.request({"op": "variables", "limit": 200}, VARIABLES_TIMEOUT)
        except WorkerUnavailable:
            raise self._died_error(k) from None
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
        self._closed = True
        with self._lock:
            kernels = list(self._kernels.values())
        for k in kernels:
            with k.lock:
                conn, k.conn = k.conn, None
            if conn is not None:
                conn.close()

    # ================= launching and stopping =================

    def _kernel_env(self, env_file: Optional[str], overrides: Dict[str, str]) -> Dict[str, str]:
        env = dict(self._environ)
        if env_file:
            try:
                values, warnings = load_env_file(env_file, env)
            except OSError as exc:
                raise _app(
                    "NotFound",
                    "Cannot read the env file %s: %s" % (env_file, exc.strerror or exc),
                    hint="Fix the envFile setting or create the file",
                ) from None
            for warning in warnings:
                log.warning("%s: %s", env_file, warning)
            env.update(values)
        env.update(overrides)
        return env

    def _launch(self, k: _Kernel, since: int) -> None:
        """Start the worker process, wait for kernel.json, connect."""
        launch = k.launch
        python = str(launch.get("python") or self._default_python)
        argv = [python, store.WORKER_FILE, "--dir", k.directory, "--id", k.kernel_id]
        cwd = launch.get("cwd")
        if isinstance(cwd, str) and cwd:
            argv += ["--cwd", cwd]
        argv += ["--idle-timeout", repr(float(launch.get("idleTimeoutSeconds") or 0.0))]
        if launch.get("name"):
            argv += ["--name", str(launch["name"])]
        log_path = os.path.join(k.directory, store.STDERR_LOG)
        with open(log_path, "ab") as log_file:
            try:
                process = subprocess.Popen(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=log_file,
                    stderr=log_file,
                    env=k.env,
                    cwd=cwd if isinstance(cwd, str) and cwd else None,
                    start_new_session=True,
                    close_fds=True,
                )
            except FileNotFoundError:
                raise _app(
                    "KernelDied",
                    "Python interpreter not found: %s" % python,
                    hint="Select an existing Python interpreter for the kernel",
                ) from None
            except OSError as exc:
                raise _app(
                    "KernelDied",
                    "Cannot run the Python interpreter %s: %s" % (python, exc.strerror or exc),
                    hint="Select a working Python interpreter for the kernel",
                ) from None
        k.process = process
        # The monitor is our child: reap it when it exits so it never lingers as a zombie.
        threading.Thread(target=process.wait, name="gpuwb-kernel-reaper", daemon=True).start()
        kernel_json = os.path.join(k.directory, store.KERNEL_JSON)
        deadline = time.monotonic() + START_TIMEOUT
        disk: Optional[store.DiskKernel] = None
        while True:
            disk = self._disk(k)
            if disk.kernel is not None and disk.socket_path:
                break
            failed = process.poll() is not None or disk.ended is not None
            if failed or time.monotonic() > deadline:
                if not failed:
                    self._kill_unstarted(process)
                tail = store.stderr_tail(k.directory)
                last = next((line for line in reversed(tail) if line.strip()), "")
                raise _app(
                    "KernelDied",
                    "The kernel failed to start with %s%s"
                    % (python, (": " + last.strip()) if last else ""),
                    detail="\n".join(tail) or None,
                    hint="Check that %s is Python 3.8 or newer; its log is %s" % (python, log_path),
                )
            time.sleep(POLL)
        log.info("kernel %s started (pid %s) from %s", k.kernel_id, disk.pid, kernel_json)
        with k.lock:
            k.kernel = disk.kernel or {}
        try:
            self._connect(k, disk, since)
        except WorkerUnavailable as exc:
            raise _app(
                "KernelDied",
                "The kernel started but cannot be reached: %s" % exc,
                detail="\n".join(store.stderr_tail(k.directory)) or None,
                hint=RESTART_HINT,
            ) from None

    def _kill_unstarted(self, process: "subprocess.Popen[bytes]") -> None:
        if process.poll() is None:
            try:
                os.killpg(process.pid, signal.SIGKILL)  # our child's own session
            except OSError:
                pass

    def _stop(self, k: _Kernel) -> None:
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
                self._connect(k, disk, self._disk_last_seq(k))
                conn = k.conn
                if conn is not None:
                    conn.send({"op": "shutdown"})
            except (WorkerUnavailable, ApplicationError):
                conn = None
        if not self._wait(lambda: not disk.kernel_alive(), STOP_GRACE):
            log.info(
                "kernel %s did not shut down within %.0fs; killing it", k.kernel_id, STOP_GRACE
            )
            self._signal_group(disk, signal.SIGKILL)
            self._wait(lambda: not disk.kernel_alive(), STOP_GRACE)
        # The monitor writes ended.json once it has reaped the kernel.
        ended_path = os.path.join(k.directory, store.ENDED_JSON)
        monitor_done = self._wait(
            lambda: os.path.exists(ended_path) or not disk.monitor_alive(), STOP_GRACE
        )
        if not monitor_done and disk.monitor_alive() and disk.monitor_pid is not None:
            try:
                os.kill(disk.monitor_pid, signal.SIGKILL)
            except OSError:
                pass
        if conn is not None:
            # Let the reader deliver everything up to EOF (exit, or the monitor's died).
            conn.finished.wait(EOF_WAIT_FOR_ENDED + 2.0)
        with k.lock:
            if k.conn is conn and conn is not None:
                k.conn = None
        if conn is not None:
            conn.close()
        self._replay_from_disk(k, k.last_seq, explicit=False)
        self._refresh_ended(k)
        store.remove_stale_socket(self._disk(k))

    @staticmethod
    def _wait(predicate: Callable[[], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while True:
            if predicate():
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(POLL)

    def _signal_group(self, disk: store.DiskKernel, sig: int) -> bool:
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

    # ================= connections and events =================

    def _connect(self, k: _Kernel, disk: store.DiskKernel, since: int) -> None:
        """Open a connection with hello{since}; return once the replay has been forwarded."""
        path = disk.socket_path
        if path is None:
            raise WorkerUnavailable("kernel.json names no socket")
        conn = WorkerConnection(
            path,
            lambda c, message: self._on_message(k, c, message),
            lambda c, intentional: self._on_close(k, c, intentional),
        )
        with k.lock:
            old, k.conn = k.conn, conn
            k.last_seq = since
            if disk.kernel is not None:
                k.kernel = disk.kernel
        if old is not None and old is not conn:
            old.close()
        try:
            welcome = conn.open(since)
        except WorkerUnavailable:
            with k.lock:
                if k.conn is conn:
                    k.conn = None
            raise
        last = welcome.get("lastSeq")
        kernel_json = welcome.get("kernel")
        with k.lock:
            if isinstance(kernel_json, dict):
                k.kernel = kernel_json
            if isinstance(last, int) and not isinstance(last, bool):
                deadline = time.monotonic() + CATCH_UP_TIMEOUT
                while k.last_seq < last and not conn.ended.is_set():
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    k.changed.wait(remaining)
            if k.ended is None and k.state == "starting":
                k.state = "idle"

    def _connected(self, k: _Kernel, block: bool = True) -> WorkerConnection:
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
                self._refresh_ended(k)
                raise self._died_error(k)
            since = k.last_seq if k.last_seq else self._disk_last_seq(k)
            try:
                self._connect(k, disk, since)
            except WorkerUnavailable:
                self._refresh_ended(k)
                raise self._died_error(k) from None
            with k.lock:
                assert k.conn is not None
                return k.conn
        finally:
            k.busy_op.release()

    def _on_message(self, k: _Kernel, conn: WorkerConnection, message: Dict[str, Any]) -> None:
        with k.lock:
            if k.conn is not conn:
                return  # a connection being replaced
            if message.get("type") == "welcome":
                # A client that claims more than the journal holds would drop new messages.
                last = message.get("lastSeq")
                if isinstance(last, int) and not isinstance(last, bool) and last < k.last_seq:
                    k.last_seq = last
                return
            self._deliver(k, message)

    def _deliver(self, k: _Kernel, message: Dict[str, Any]) -> None:
        """Forward one message in seq order (lock held); fills holes from the disk journal."""
        if message.get("type") == "gap":
            to = message.get("to")
            if isinstance(to, int) and not isinstance(to, bool):
                k.last_seq = max(k.last_seq, to)
            self._send_event(k, message)
            return
        seq = message.get("seq")
        if not isinstance(seq, int) or isinstance(seq, bool):
            log.debug("kernel %s sent an unsequenced %s", k.kernel_id, message.get("type"))
            return
        if seq <= k.last_seq:
            return  # already forwarded
        if seq > k.last_seq + 1:
            missing, _ = store.read_journal(k.directory, k.last_seq)
            for old in missing:
                if old["seq"] >= seq:
                    break
                if old["seq"] == k.last_seq + 1:
                    self._apply(k, old)
                    k.last_seq = old["seq"]
                    self._send_event(k, old)
            if seq > k.last_seq + 1:
                gap = {"type": "gap", "from": k.last_seq + 1, "to": seq - 1}
                self._send_event(k, gap)
        self._apply(k, message)
        k.last_seq = seq
        self._send_event(k, message)
        k.changed.notify_all()

    def _send_event(self, k: _Kernel, event: Dict[str, Any]) -> None:
        if self._closed:
            return
        try:
            self._notify("kernel/event", {"kernelId": k.kernel_id, "event": event})
        except Exception:
            log.exception("cannot forward a kernel event")

    def _apply(self, k: _Kernel, message: Dict[str, Any]) -> None:
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
                while len(k.finished) > _FINISHED_KEEP:
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

    def _on_close(self, k: _Kernel, conn: WorkerConnection, intentional: bool) -> None:
        """The socket ended: wait briefly for ended.json, forward the monitor's messages."""
        if intentional or self._closed:
            return
        with k.lock:
            if k.conn is not conn:
                return
        ended_path = os.path.join(k.directory, store.ENDED_JSON)
        self._wait(lambda: os.path.exists(ended_path), EOF_WAIT_FOR_ENDED)
        with k.lock:
            if k.conn is not conn:
                return
            self._replay_from_disk(k, k.last_seq, explicit=False)
            k.conn = None
        self._refresh_ended(k)
        with k.lock:
            k.changed.notify_all()
        log.info("kernel %s disconnected (state %s)", k.kernel_id, k.state)

    def _replay_from_disk(self, k: _Kernel, since: int, explicit: bool) -> None:
        """Forward journaled messages with seq > since from disk (explicit: an attach)."""
        messages, first = store.read_journal(k.directory, since)
        with k.lock:
            if explicit:
                k.last_seq = since
                if first is not None and first > since + 1:
                    self._send_event(k, {"type": "gap", "from": since + 1, "to": first - 1})
                    k.last_seq = first - 1
            for message in messages:
                self._deliver(k, message)
            k.changed.notify_all()

    def _refresh_ended(self, k: _Kernel) -> None:
        """Pick up ended.json (or notice a kernel that died without one)."""
        disk = self._disk(k)
        with k.lock:
            if disk.ended is not None:
                k.ended = disk.ended
                k.state = store.ended_state(disk.ended)
            elif disk.kernel is not None and not disk.kernel_alive() and not disk.monitor_alive():
                k.ended = {"reason": "died", "exitCode": None, "signal": None}
                k.state = "dead"
            else:
                return
            k.running = None
            k.queue = []
            k.active.clear()
            k.changed.notify_all()

    # ================= lookups and info =================

    def _disk(self, k: _Kernel) -> store.DiskKernel:
        disk = store.load(self.data_directory, k.kernel_id)
        if disk is None:
            return store.DiskKernel(k.kernel_id, k.directory, None, None, None)
        return disk

    def _disk_last_seq(self, k: _Kernel) -> int:
        tail = store.journal_tail(k.directory)
        return tail[-1]["seq"] if tail else 0

    def _get(self, kernel_id: str) -> _Kernel:
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
        k = _Kernel(kernel_id, disk.directory)
        k.kernel = disk.kernel or {}
        k.launch = disk.launch or {
            "python": (disk.kernel or {}).get("python"),
            "cwd": (disk.kernel or {}).get("cwd"),
            "name": (disk.kernel or {}).get("name") or "",
            "idleTimeoutSeconds": (disk.kernel or {}).get("idleTimeoutSeconds") or 0.0,
            "envFile": None,
        }
        self._init_from_disk(k, disk)
        with self._lock:
            return self._kernels.setdefault(kernel_id, k)

    def _init_from_disk(self, k: _Kernel, disk: store.DiskKernel) -> None:
        tail = store.journal_tail(k.directory)
        k.last_seq = tail[-1]["seq"] if tail else 0
        for message in tail:
            self._apply(k, message)
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

    def _info(self, k: _Kernel) -> KernelInfo:
        with k.lock:
            connected = k.conn is not None and not k.conn.ended.is_set()
        if not connected:
            # Not attached: the folder is the truth (another backend may be driving it).
            disk = self._disk(k)
            fresh = _Kernel(k.kernel_id, k.directory)
            fresh.kernel = disk.kernel or dict(k.kernel)
            self._init_from_disk(fresh, disk)
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

    def _died_error(self, k: _Kernel) -> ApplicationError:
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
            return _app("KernelDied", "Kernel %s was shut down" % label, hint=RESTART_HINT)
        if reason == "idle":
            return _app(
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
        return _app(
            "KernelDied", "Kernel %s died (%s)" % (label, how), detail=detail, hint=RESTART_HINT
        )

    def _forget_folder(self, k: _Kernel) -> None:
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
