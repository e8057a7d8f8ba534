"""A JSON-RPC client of the agent, over the stdio of an ssh session through the master.

The link never reconnects by itself: when the ssh process ends, in-flight requests fail
with RemoteUnavailable and `on_exit(reason)` is called; whoever owns the link (the remote
manager) makes a new SshHost master and a new AgentLink, using `connect_with_backoff`.
Kernels on the machine are detached, so they keep running meanwhile; the new link
re-attaches with ``kernel/attach {kernelId, since}``.

Notifications from the agent (kernel/event, gpu/sample, $/progress ...) are handed to
`on_notification(method, params)` on the reader thread, in order; it must not block.
Requests from the agent (workspace/codeLens/refresh, window/workDoneProgress/create) are
answered with a null result.
"""

from __future__ import annotations

import json
import logging
import shlex
import subprocess
import threading
import time
from typing import Any, BinaryIO, Callable, Dict, Optional, Sequence, TypeVar, Union, cast

from .. import __version__
from ..errors import ApplicationError, RequestCancelled, RpcError
from ..framing import FrameReader, FrameWriter
from ..protocol import ERROR_KINDS
from .ssh import SshHost

log = logging.getLogger(__name__)

T = TypeVar("T")
START_TIMEOUT = 60.0
CANCEL_GRACE = 5.0
_DROPPED_HINT = "It reconnects by itself; running kernels keep running on the machine"


class _Pending:
    __slots__ = ("done", "error", "result")

    def __init__(self) -> None:
        self.done = threading.Event()
        self.result: Any = None
        self.error: Optional[Exception] = None


class AgentLink:
    """One ``python -m gpu_workbench`` on the machine, spoken to over an ssh channel."""

    def __init__(
        self,
        host: SshHost,
        agent: Union[Dict[str, Any], str],
        python: Optional[str] = None,
        on_notification: Optional[Callable[[str, Any], None]] = None,
        on_exit: Optional[Callable[[str], None]] = None,
    ) -> None:
        """`agent`: agent.install()'s result ({"path", "python", ...}), or the agent's folder
        with `python` given separately."""
        if isinstance(agent, dict):
            agent_dir, python = str(agent["path"]), python or str(agent["python"])
        else:
            agent_dir = agent
        if not python:
            raise ValueError("AgentLink needs the remote interpreter")
        self.host = host
        self.agent_dir = agent_dir
        self.python = python
        self.on_notification = on_notification
        self.on_exit = on_exit
        self.proc: Optional[subprocess.Popen[bytes]] = None
        self.server_info: Optional[Dict[str, Any]] = None
        self.exit_reason: Optional[str] = None
        self._writer: Optional[FrameWriter] = None
        self._pending: Dict[int, _Pending] = {}
        self._lock = threading.Lock()
        self._next_id = 0
        self._dead = False
        self._closing = False

    def command(self) -> str:
        """The remote shell command that runs the agent."""
        return "cd ~ && PYTHONPATH=%s exec %s -m gpu_workbench" % (
            shlex.quote(self.agent_dir),
            shlex.quote(self.python),
        )

    # ---- lifecycle ----

    def start(self, timeout: float = START_TIMEOUT) -> Dict[str, Any]:
        """Spawn the agent and run the LSP handshake; returns the initialize result."""
        proc = self.host.popen(self.command())
        self.proc = proc
        assert proc.stdin is not None and proc.stdout is not None
        self._writer = FrameWriter(cast(BinaryIO, proc.stdin))
        threading.Thread(
            target=self._read_loop, args=(proc,), name="agent-link-reader", daemon=True
        ).start()
        try:
            result = self.request(
                "initialize",
                {
                    "processId": None,
                    "clientInfo": {"name": "gpu-workbench-backend", "version": __version__},
                    "rootUri": None,
                    "capabilities": {},
                    "initializationOptions": {"trusted": True, "logLevel": "info"},
                },
                timeout=timeout,
            )
            self.notify("initialized", {})
        except ApplicationError as exc:
            self._kill()
            tail = self.host.stderr_tail(proc).strip()
            if exc.kind == "RemoteUnavailable":
                raise ApplicationError(
                    "RemoteUnavailable",
                    "The agent on %s did not start" % self.host.label,
                    detail=(tail[-1000:] or exc.message),
                    hint="Check that the machine's Python can run it (see the detail)",
                ) from None
            raise
        self.server_info = result.get("serverInfo") if isinstance(result, dict) else None
        return result

    @property
    def alive(self) -> bool:
        return (
            self.proc is not None
            and not self._dead
            and not self._closing
            and self.proc.poll() is None
        )

    def close(self, timeout: float = 5.0) -> None:
        """Shut the agent down politely (its kernels keep running), then end ssh; idempotent."""
        if self._closing:
            return
        if self.alive:
            try:
                self.request("shutdown", None, timeout=timeout)
                self.notify("exit", None)
            except (RpcError, OSError):
                pass
        self._closing = True
        proc = self.proc
        if proc is None:
            return
        try:
            if proc.stdin is not None:
                proc.stdin.close()
        except OSError:
            pass
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self._kill()

    def _kill(self) -> None:
        self._closing = True
        proc = self.proc
        if proc is not None and proc.poll() is None:
            proc.kill()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                pass

    # ---- messages ----

    def _send(self, message: Dict[str, Any]) -> None:
        if self._writer is None or self._dead:
            raise self._dropped()
        try:
            self._writer.write(message)
        except (OSError, ValueError):
            raise self._dropped() from None

    def _dropped(self) -> ApplicationError:
        return ApplicationError(
            "RemoteUnavailable",
            "The connection to %s dropped" % self.host.label,
            detail=self.exit_reason,
            hint=_DROPPED_HINT,
        )

    def notify(self, method: str, params: Any = None) -> None:
        """Send a notification to the agent (RemoteUnavailable if the link is gone)."""
        message: Dict[str, Any] = {"jsonrpc": "2.0", "method": method}
        if params is not None:
            message["params"] = params
        self._send(message)

    def request(
        self,
        method: str,
        params: Any = None,
        timeout: float = 60.0,
        cancelled: Optional[Callable[[], bool]] = None,
    ) -> Any:
        """Send a request and wait for its result.

        The agent's application errors are raised as ApplicationError (same kind, message,
        detail, hint), other error replies as RpcError; a link that dies meanwhile raises
        RemoteUnavailable. When `cancelled()` turns true the agent is sent $/cancelRequest
        and RequestCancelled is raised (after waiting briefly for the agent's own answer).
        """
        with self._lock:
            self._next_id += 1
            request_id = self._next_id
            pending = _Pending()
            self._pending[request_id] = pending
        message: Dict[str, Any] = {"jsonrpc": "2.0", "id": request_id, "method": method}
        if params is not None:
            message["params"] = params
        try:
            self._send(message)
            deadline = time.monotonic() + timeout
            cancel_sent = False
            while not pending.done.wait(0.05 if cancelled is not None else 0.5):
                now = time.monotonic()
                if self._dead:
                    raise self._dropped()
                if not cancel_sent and cancelled is not None and cancelled():
                    cancel_sent = True
                    try:
                        self.notify("$/cancelRequest", {"id": request_id})
                    except ApplicationError:
                        pass
                    deadline = min(deadline, now + CANCEL_GRACE)
                if now >= deadline:
                    if cancel_sent:
                        raise RequestCancelled()
                    try:
                        self.notify("$/cancelRequest", {"id": request_id})
                    except ApplicationError:
                        pass
                    raise ApplicationError(
                        "RemoteUnavailable",
                        "%s did not answer %s within %g seconds"
                        % (self.host.label, method, timeout),
                        hint="The machine or its network may be overloaded",
                    )
        finally:
            with self._lock:
                self._pending.pop(request_id, None)
        if pending.error is not None:
            raise pending.error
        return pending.result

    def latency_ms(self, timeout: float = 10.0) -> float:
        """One workbench/ping round trip to the agent, in milliseconds."""
        start = time.perf_counter()
        self.request("workbench/ping", {}, timeout=timeout)
        return (time.perf_counter() - start) * 1000.0

    # ---- reader ----

    def _read_loop(self, proc: "subprocess.Popen[bytes]") -> None:
        assert proc.stdout is not None
        reader = FrameReader(cast(BinaryIO, proc.stdout))
        try:
            while True:
                body = reader.read_message()
                if body is None:
                    break
                try:
                    message = json.loads(body.decode("utf-8"))
                except ValueError:
                    log.warning("agent on %s sent invalid JSON", self.host.label)
                    continue
                if isinstance(message, dict):
                    self._dispatch(message)
        except Exception:  # never let the reader die silently
            log.exception("agent link reader failed")
        finally:
            self._ended(proc)

    def _dispatch(self, message: Dict[str, Any]) -> None:
        method = message.get("method")
        if isinstance(method, str):
            if "id" in message:
                try:
                    self._send({"jsonrpc": "2.0", "id": message["id"], "result": None})
                except ApplicationError:
                    pass
                return
            callback = self.on_notification
            if callback is not None:
                try:
                    callback(method, message.get("params"))
                except Exception:
                    log.exception("notification handler failed for %s", method)
            return
        with self._lock:
            pending = self._pending.get(message.get("id"))  # type: ignore[arg-type]
        if pending is None:
            return  # a reply nobody waits for (timed out or cancelled)
        error = message.get("error")
        if isinstance(error, dict):
            pending.error = _error_from(error)
        else:
            pending.result = message.get("result")
        pending.done.set()

    def _ended(self, proc: "subprocess.Popen[bytes]") -> None:
        try:
            code: Optional[int] = proc.wait(3)
        except subprocess.TimeoutExpired:
            code = None
        tail = self.host.stderr_tail(proc).strip()
        reason = (
            "ssh exited with status %s" % code if code is not None else "the agent's output ended"
        )
        if tail:
            reason += ": " + tail.splitlines()[-1][:300]
        self.exit_reason = reason
        self._dead = True
        with self._lock:
            pendings = list(self._pending.values())
        for pending in pendings:
            if not pending.done.is_set():
                pending.error = self._dropped()
                pending.done.set()
        if not self._closing:
            log.warning("link to %s ended: %s", self.host.label, reason)
            callback = self.on_exit
            if callback is not None:
                try:
                    callback(reason)
                except Exception:
                    log.exception("on_exit handler failed")


def _error_from(error: Dict[str, Any]) -> RpcError:
    message = str(error.get("message") or "the agent failed")
    data = error.get("data")
    if isinstance(data, dict) and data.get("kind") in ERROR_KINDS:
        detail = data.get("detail")
        hint = data.get("hint")
        return ApplicationError(
            str(data["kind"]),
            message,
            detail=detail if isinstance(detail, str) else None,
            hint=hint if isinstance(hint, str) else None,
        )
    code = error.get("code")
    return RpcError(code if isinstance(code, int) else -32603, message, data)


def connect_with_backoff(
    make: Callable[[], T],
    on_attempt: Callable[[int, float], None],
    stop: threading.Event,
    delays: Sequence[float] = (0.5, 1, 2, 4, 8, 10),
) -> Optional[T]:
    """Call `make()` until it succeeds; None once `stop` is set.

    Only RemoteUnavailable is retried (other errors, e.g. a changed host key, are raised).
    After failed attempt n, `on_attempt(n, delay)` is called with the seconds until the
    next one; the delays follow `delays`, the last one repeating.
    """
    attempt = 0
    while not stop.is_set():
        try:
            return make()
        except ApplicationError as exc:
            if exc.kind != "RemoteUnavailable":
                raise
        delay = float(delays[min(attempt, len(delays) - 1)]) if delays else 1.0
        attempt += 1
        on_attempt(attempt, delay)
        if stop.wait(delay):
            break
    return None
