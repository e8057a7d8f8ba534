"""Socket client for one kernel worker: ``hello``/``welcome``, a reader thread, sending ops.

Newline-delimited JSON over a Unix socket (PROTOCOL.md). ``welcome``, journaled messages
and ``gap`` go to `on_message(conn, message)` on the reader thread, in the order the worker sent them;
``variables`` and ``pong`` answer the request that carries their ``requestId``. When the
socket ends, `on_close(conn, intentional)` runs on the reader thread (intentional: close()
was called), then `finished` is set.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import uuid
from typing import Any, Callable, Dict, Optional

log = logging.getLogger(__name__)

HELLO_TIMEOUT = 10.0


class WorkerUnavailable(Exception):
    """The worker cannot be reached, or the connection to it is gone."""


class WorkerConnection:
    """One connection to one worker."""

    def __init__(
        self,
        socket_path: str,
        on_message: Callable[["WorkerConnection", Dict[str, Any]], None],
        on_close: Callable[["WorkerConnection", bool], None],
        label: str = "gpu-workbench backend",
    ) -> None:
        self.socket_path = socket_path
        self._on_message = on_message
        self._on_close = on_close
        self._label = label
        self._sock: Optional[socket.socket] = None
        self._send_lock = threading.Lock()
        self._state_lock = threading.Lock()
        self._welcome: Optional[Dict[str, Any]] = None
        self._welcomed = threading.Event()
        self._pending: Dict[str, "_PendingReply"] = {}
        self._reader: Optional[threading.Thread] = None
        self._closing = False
        self.ended = threading.Event()  # the socket is closed; nothing more can be sent
        self.finished = threading.Event()  # ...and on_close has run

    # ---- opening ----

    def open(self, since: int, timeout: float = HELLO_TIMEOUT) -> Dict[str, Any]:
        """Connect, send hello{since}, start the reader; return the welcome message.

        Messages replayed after the welcome arrive through on_message as usual.
        """
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(timeout)
            sock.connect(self.socket_path)
            sock.settimeout(None)
        except OSError as exc:
            sock.close()
            raise WorkerUnavailable("cannot connect to %s: %s" % (self.socket_path, exc)) from None
        self._sock = sock
        self._reader = threading.Thread(
            target=self._read_loop, name="gpuwb-kernel-reader", daemon=True
        )
        self._reader.start()
        try:
            self.send({"op": "hello", "since": since, "client": self._label})
        except WorkerUnavailable:
            self.close()
            raise
        if not self._welcomed.wait(timeout) or self._welcome is None:
            self.close()
            raise WorkerUnavailable("the worker did not answer hello within %.0fs" % timeout)
        return self._welcome

    # ---- sending ----

    def send(self, op: Dict[str, Any]) -> None:
        """Send one op (a JSON object) as a line."""
        data = (json.dumps(op, ensure_ascii=False) + "\n").encode("utf-8", "surrogatepass")
        sock = self._sock
        if sock is None or self.ended.is_set():
            raise WorkerUnavailable("not connected to the kernel")
        try:
            with self._send_lock:
                sock.sendall(data)
        except OSError as exc:
            raise WorkerUnavailable("lost the connection to the kernel: %s" % exc) from None

    def request(self, op: Dict[str, Any], timeout: float) -> Dict[str, Any]:
        """Send an op with a fresh requestId and wait for the message answering it."""
        request_id = uuid.uuid4().hex
        pending = _PendingReply()
        with self._state_lock:
            if self.ended.is_set():
                raise WorkerUnavailable("not connected to the kernel")
            self._pending[request_id] = pending
        try:
            self.send(dict(op, requestId=request_id))
            if not pending.done.wait(timeout):
                raise TimeoutError(
                    "the kernel did not answer %s within %.0fs" % (op.get("op"), timeout)
                )
            if pending.reply is None:
                raise WorkerUnavailable("the connection to the kernel closed")
            return pending.reply
        finally:
            with self._state_lock:
                self._pending.pop(request_id, None)

    # ---- closing ----

    def close(self) -> None:
        """Close the socket on purpose; waits for the reader (unless called from it)."""
        self._closing = True
        sock = self._sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        reader = self._reader
        if reader is not None and reader is not threading.current_thread():
            reader.join(5.0)
            self.finished.wait(5.0)
        if sock is not None and reader is None:
            sock.close()

    @property
    def welcome(self) -> Optional[Dict[str, Any]]:
        return self._welcome

    # ---- reading ----

    def _read_loop(self) -> None:
        sock = self._sock
        assert sock is not None
        stream = sock.makefile("rb")
        try:
            for raw in stream:
                if not raw.strip():
                    continue
                try:
                    message = json.loads(raw.decode("utf-8", "surrogatepass"))
                except (ValueError, UnicodeDecodeError):
                    log.warning("kernel sent a malformed line (%d bytes)", len(raw))
                    continue
                if isinstance(message, dict):
                    self._dispatch(message)
        except OSError as exc:
            if not self._closing:
                log.info("kernel connection error: %s", exc)
        except Exception:
            log.exception("kernel reader failed")
        finally:
            try:
                stream.close()
                sock.close()
            except OSError:
                pass
            with self._state_lock:
                self.ended.set()
                pendings = list(self._pending.values())
            for pending in pendings:
                pending.done.set()
            self._welcomed.set()
            try:
                self._on_close(self, self._closing)
            except Exception:
                log.exception("kernel on_close handler failed")
            finally:
                self.finished.set()

    def _dispatch(self, message: Dict[str, Any]) -> None:
        kind = message.get("type")
        if kind == "welcome":
            self._welcome = message
            try:
                self._on_message(self, message)  # lets the owner see it in stream order
            finally:
                self._welcomed.set()
            return
        if kind in ("variables", "pong"):
            with self._state_lock:
                pending = self._pending.get(str(message.get("requestId")))
            if pending is not None:
                pending.reply = message
                pending.done.set()
            return
        if kind == "protocol_error":
            log.warning("kernel protocol error: %s", message.get("message"))
            return
        try:
            self._on_message(self, message)
        except Exception:
            log.exception("kernel message handler failed")


class _PendingReply:
    def __init__(self) -> None:
        self.done = threading.Event()
        self.reply: Optional[Dict[str, Any]] = None
