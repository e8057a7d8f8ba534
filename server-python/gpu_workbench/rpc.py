"""JSON-RPC 2.0 connection: validates messages, routes them, runs handlers, sends replies.

Lifecycle rules live in the router (server.py); this module only knows JSON-RPC, LSP
cancellation ($/cancelRequest) and work-done progress ($/progress).
"""

from __future__ import annotations

import json
import logging
import math
import threading
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, Deque, Dict, List, Optional

from .convert import ConversionError, from_dict, to_json
from .errors import (
    INTERNAL_ERROR,
    INVALID_PARAMS,
    INVALID_REQUEST,
    METHOD_NOT_FOUND,
    PARSE_ERROR,
    REQUEST_CANCELLED,
    RequestCancelled,
    RpcError,
    error_response,
)
from .framing import FrameReader, FrameWriter, encode_message

log = logging.getLogger(__name__)

Reply = Callable[[Optional[Dict[str, Any]]], None]


@dataclass
class Route:
    """How to serve one method: handler(ctx, params), params dataclass, where it runs."""

    handler: Callable[["RequestContext", Any], Any]
    params_type: Any = None  # dataclass to convert params into; None passes raw params
    slow: bool = False  # slow handlers run on the thread pool so the read loop keeps going
    kind: str = "request"
    # lane(raw params) -> a key, or None. Requests with a key run off the read loop, one at
    # a time per key, in the order they arrived (e.g. the calls of one remote machine: a
    # hung link must not stall the read loop, and its cells must still run in order).
    # None runs the request as `slow` says.
    lane: Optional[Callable[[Any], Optional[str]]] = None


class _Lanes:
    """Ordered queues on a shared thread pool: one drain task per busy key, none when idle."""

    def __init__(self, executor: ThreadPoolExecutor) -> None:
        self._executor = executor
        self._lock = threading.Lock()
        self._queues: Dict[str, Deque[Callable[[], None]]] = {}

    def submit(self, key: str, task: Callable[[], None]) -> None:
        """Run `task` after every earlier task of `key`; raises RuntimeError when shut down."""
        with self._lock:
            queue = self._queues.get(key)
            if queue is not None:
                queue.append(task)
                return
            self._queues[key] = deque([task])
        try:
            self._executor.submit(self._drain, key)
        except RuntimeError:
            with self._lock:
                self._queues.pop(key, None)
            raise

    def _drain(self, key: str) -> None:
        while True:
            with self._lock:
                queue = self._queues[key]
                if not queue:
                    del self._queues[key]
                    return
                task = queue[0]
            try:
                task()
            except Exception:  # tasks reply for themselves; never lose the rest of the lane
                log.exception("a task of lane %s raised", key)
            finally:
                with self._lock:
                    queue.popleft()


class PlainJson:
    """A handler result that is already plain JSON (dicts, lists, str, int, bool, None).

    It is sent as is, skipping `to_json`'s walk, which costs far more than encoding for big
    results such as the code lenses of a 10k-line file.
    """

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value


class Router:
    """Interface the connection uses to find a route; server.py implements it."""

    def resolve(self, method: str, is_request: bool) -> Optional[Route]:
        """Return the route, None if unknown/dropped, or raise RpcError to refuse a request."""
        raise NotImplementedError


def _short(text: str, limit: int = 100) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


def _lane_of(route: Route, params: Any) -> Optional[str]:
    if route.lane is None:
        return None
    try:
        return route.lane(params)
    except Exception:  # malformed params: the handler's conversion reports them
        return None


def _valid_id(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, float):
        return math.isfinite(value)
    # null ids are allowed by JSON-RPC 2.0 (the reply then also has id null).
    return value is None or isinstance(value, (int, str))


def _progress_token(params: Any) -> Any:
    if isinstance(params, dict):
        token = params.get("workDoneToken")
        if isinstance(token, str) or (isinstance(token, int) and not isinstance(token, bool)):
            return token
    return None


class WorkDoneProgress:
    """Sends ``$/progress`` begin/report/end for a request's workDoneToken (no-op without one)."""

    def __init__(self, connection: "Connection", token: Any, title: str, cancellable: bool) -> None:
        self._connection = connection
        self.token = token
        self._title = title
        self._cancellable = cancellable
        self._state = "new"

    def _send(self, value: Dict[str, Any]) -> None:
        if self.token is not None:
            self._connection.notify("$/progress", {"token": self.token, "value": value})

    def begin(self, message: Optional[str] = None, percentage: Optional[int] = None) -> None:
        """Start the progress (sent once)."""
        if self._state != "new":
            return
        self._state = "begun"
        value: Dict[str, Any] = {
            "kind": "begin",
            "title": self._title,
            "cancellable": self._cancellable,
        }
        _add_optional(value, message, percentage)
        self._send(value)

    def report(self, message: Optional[str] = None, percentage: Optional[int] = None) -> None:
        """Report intermediate progress; ignored unless begun and not ended."""
        if self._state != "begun":
            return
        value: Dict[str, Any] = {"kind": "report"}
        _add_optional(value, message, percentage)
        self._send(value)

    def end(self, message: Optional[str] = None) -> None:
        """Finish the progress (sent once, only after begin)."""
        if self._state != "begun":
            return
        self._state = "ended"
        value: Dict[str, Any] = {"kind": "end"}
        _add_optional(value, message, None)
        self._send(value)


def _add_optional(value: Dict[str, Any], message: Optional[str], percentage: Optional[int]) -> None:
    if message is not None:
        value["message"] = message
    if percentage is not None:
        value["percentage"] = max(0, min(100, int(percentage)))


class RequestContext:
    """What a handler knows about its request: id, cancellation, progress, notifications."""

    def __init__(self, connection: "Connection", request_id: Any, method: str, params: Any) -> None:
        self.connection = connection
        self.id = request_id
        self.method = method
        self.raw_params = params
        self.cancelled = threading.Event()
        self.work_done_token = _progress_token(params)

    @property
    def is_cancelled(self) -> bool:
        """True once the client cancelled this request."""
        return self.cancelled.is_set()

    def raise_if_cancelled(self) -> None:
        """Raise RequestCancelled if the client cancelled this request."""
        if self.cancelled.is_set():
            raise RequestCancelled()

    def work_done_progress(self, title: str, cancellable: bool = False) -> WorkDoneProgress:
        """A progress reporter bound to the request's workDoneToken (silent if there is none)."""
        return WorkDoneProgress(self.connection, self.work_done_token, title, cancellable)

    def notify(self, method: str, params: Any) -> None:
        """Send a server->client notification."""
        self.connection.notify(method, params)


class _Pending:
    """An in-flight request; guarantees exactly one reply even when cancel races completion."""

    def __init__(self, ctx: RequestContext, reply: Reply) -> None:
        self.ctx = ctx
        self._reply = reply
        self._lock = threading.Lock()
        self._done = False

    def finish(self, response: Dict[str, Any]) -> bool:
        with self._lock:
            if self._done:
                return False
            self._done = True
        self._reply(response)
        return True


class _Batch:
    """Collects the replies of one batch and sends them as a single array."""

    def __init__(self, connection: "Connection", size: int) -> None:
        self._connection = connection
        self._remaining = size
        self._responses: List[Dict[str, Any]] = []
        self._lock = threading.Lock()

    def reply(self, response: Optional[Dict[str, Any]]) -> None:
        with self._lock:
            if response is not None:
                self._responses.append(response)
            self._remaining -= 1
            complete = self._remaining == 0
        if complete and self._responses:
            self._connection.write(self._responses)


class Connection:
    """Serves one JSON-RPC peer over a FrameReader/FrameWriter pair."""

    def __init__(
        self, reader: FrameReader, writer: FrameWriter, router: Router, max_workers: int = 8
    ) -> None:
        self._reader = reader
        self._writer = writer
        self._router = router
        self._executor = ThreadPoolExecutor(
            max_workers=max_workers, thread_name_prefix="gpuwb-handler"
        )
        self._lanes = _Lanes(self._executor)
        self._inflight: Dict[Any, _Pending] = {}
        self._tokens: Dict[Any, _Pending] = {}
        self._inflight_lock = threading.Lock()
        self._exit_code: Optional[int] = None
        self._stopping = False
        self._next_request = 0
        self._request_lock = threading.Lock()

    # ---- loop ----

    def serve(self) -> Optional[int]:
        """Read and handle messages until stop() or end of input.

        Returns the code passed to stop(), or None when the input ended.
        """
        try:
            while not self._stopping:
                body = self._reader.read_message()
                if body is None:
                    log.info("input closed")
                    break
                try:
                    self.handle_body(body)
                except Exception:  # never let one message kill the loop
                    log.exception("unexpected failure while handling a message")
        finally:
            self._cancel_all()
            self._executor.shutdown(wait=False, cancel_futures=True)
        return self._exit_code

    def stop(self, exit_code: int) -> None:
        """Ask the read loop to end after the current message."""
        self._exit_code = exit_code
        self._stopping = True

    # ---- output ----

    def write(self, message: Any) -> None:
        """Write a message, falling back to an InternalError reply if it cannot be encoded."""
        try:
            self._writer.write(message)
            return
        except (TypeError, ValueError):
            log.exception("cannot encode outgoing message")
        except OSError as exc:
            log.error("cannot write to the client: %s", exc)
            return
        fallback: Any = None
        if isinstance(message, dict) and "id" in message:
            fallback = _internal_error(message.get("id"))
        elif isinstance(message, list):
            fallback = [m if _encodable(m) else _internal_error(m.get("id")) for m in message]
        if fallback is not None:
            try:
                self._writer.write(fallback)
            except (TypeError, ValueError, OSError):
                log.exception("cannot write fallback error")

    def notify(self, method: str, params: Any) -> None:
        """Send a notification to the client."""
        value = params.value if isinstance(params, PlainJson) else to_json(params)
        self.write({"jsonrpc": "2.0", "method": method, "params": value})

    def request(self, method: str, params: Any = None) -> str:
        """Send a server->client request and return its id; the client's reply is ignored.

        Ids are strings prefixed ``gpuwb-`` so they never look like the client's own ids.
        """
        with self._request_lock:
            self._next_request += 1
            request_id = "gpuwb-%d" % self._next_request
        message: Dict[str, Any] = {"jsonrpc": "2.0", "id": request_id, "method": method}
        if params is not None:
            message["params"] = to_json(params)
        self.write(message)
        return request_id

    # ---- parsing ----

    def handle_body(self, body: bytes) -> None:
        """Decode one framed body (a message or a batch) and handle it."""
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError as exc:
            log.warning("message is not valid UTF-8: %s", exc)
            self.write(
                error_response(
                    None, RpcError(PARSE_ERROR, "Parse error: message is not valid UTF-8")
                )
            )
            return
        try:
            message = json.loads(text)
        except (ValueError, RecursionError) as exc:
            log.warning("message is not valid JSON: %s", _short(str(exc)))
            self.write(error_response(None, RpcError(PARSE_ERROR, "Parse error: invalid JSON")))
            return
        if isinstance(message, list):
            if not message:
                self.write(
                    error_response(None, RpcError(INVALID_REQUEST, "Invalid Request: empty batch"))
                )
                return
            batch = _Batch(self, len(message))
            for item in message:
                self._handle_message(item, batch.reply)
        else:
            self._handle_message(message, self._reply_single)

    def _reply_single(self, response: Optional[Dict[str, Any]]) -> None:
        if response is not None:
            self.write(response)

    def _handle_message(self, message: Any, reply: Reply) -> None:
        if not isinstance(message, dict):
            reply(
                error_response(
                    None, RpcError(INVALID_REQUEST, "Invalid Request: expected an object")
                )
            )
            return
        has_id = "id" in message
        request_id = message.get("id")
        id_ok = _valid_id(request_id)
        reply_id = request_id if has_id and id_ok else None

        def invalid(text: str) -> None:
            reply(error_response(reply_id, RpcError(INVALID_REQUEST, "Invalid Request: " + text)))

        if message.get("jsonrpc") != "2.0":
            invalid('jsonrpc must be "2.0"')
            return
        if has_id and not id_ok:
            invalid("id must be a string, number or null")
            return
        if "method" not in message and has_id and ("result" in message or "error" in message):
            # A reply to a server->client request (see request()); replies are not awaited.
            if "error" in message:
                log.debug(
                    "client answered request %r with an error: %r", request_id, message["error"]
                )
            else:
                log.debug("ignoring response message for id %r", request_id)
            reply(None)
            return
        method = message.get("method")
        if not isinstance(method, str):
            invalid("method must be a string")
            return
        params = message.get("params")
        # params: null is treated like absent params; some clients send it for no-arg calls.
        if params is not None and not isinstance(params, (dict, list)):
            invalid("params must be an object or an array")
            return
        if has_id:
            self._handle_request(request_id, method, params, reply)
        else:
            try:
                self._handle_notification(method, params)
            finally:
                reply(None)

    # ---- notifications ----

    def _handle_notification(self, method: str, params: Any) -> None:
        if method == "$/cancelRequest":
            if isinstance(params, dict) and _valid_id(params.get("id")) and "id" in params:
                self.cancel(params["id"])
            else:
                log.debug("ignoring malformed $/cancelRequest")
            return
        if method == "window/workDoneProgress/cancel":
            token = params.get("token") if isinstance(params, dict) else None
            with self._inflight_lock:
                pending = self._tokens.get(token) if _valid_id(token) else None
            if pending is not None:
                self.cancel(pending.ctx.id)
            return
        try:
            route = self._router.resolve(method, False)
        except RpcError as exc:
            log.debug("dropping notification %s: %s", _short(method), exc.message)
            return
        if route is None:
            log.debug("ignoring notification %s", _short(method))
            return
        ctx = RequestContext(self, None, method, params)
        if route.slow:
            self._executor.submit(self._run_notification, route, ctx)
        else:
            self._run_notification(route, ctx)

    def _run_notification(self, route: Route, ctx: RequestContext) -> None:
        try:
            route.handler(ctx, self._convert_params(route, ctx.raw_params))
        except RpcError as exc:
            log.warning("notification %s failed: %s", ctx.method, exc.message)
        except Exception:
            log.exception("notification %s raised", ctx.method)

    # ---- requests ----

    def _handle_request(self, request_id: Any, method: str, params: Any, reply: Reply) -> None:
        try:
            route = self._router.resolve(method, True)
        except RpcError as exc:
            reply(error_response(request_id, exc))
            return
        if route is None:
            reply(
                error_response(
                    request_id, RpcError(METHOD_NOT_FOUND, "Method not found: %s" % _short(method))
                )
            )
            return
        ctx = RequestContext(self, request_id, method, params)
        pending = _Pending(ctx, reply)
        with self._inflight_lock:
            self._inflight[_id_key(request_id)] = pending
            if ctx.work_done_token is not None:
                self._tokens[ctx.work_done_token] = pending
        lane = _lane_of(route, params)
        if lane is not None or route.slow:
            try:
                if lane is not None:
                    self._lanes.submit(lane, lambda: self._run_request(route, pending))
                else:
                    self._executor.submit(self._run_request, route, pending)
            except RuntimeError:  # executor already shut down (we are exiting)
                self._forget(pending)
                pending.finish(
                    error_response(request_id, RpcError(INVALID_REQUEST, "server is exiting"))
                )
        else:
            self._run_request(route, pending)

    def _run_request(self, route: Route, pending: _Pending) -> None:
        ctx = pending.ctx
        try:
            result = route.handler(ctx, self._convert_params(route, ctx.raw_params))
            value = result.value if isinstance(result, PlainJson) else to_json(result)
            response: Dict[str, Any] = {"jsonrpc": "2.0", "id": ctx.id, "result": value}
        except RpcError as exc:
            response = error_response(ctx.id, exc)
        except Exception:
            # The traceback is for the log only; the client gets a short, stable message.
            log.exception("request %s (id %r) raised", ctx.method, ctx.id)
            response = _internal_error(ctx.id, ctx.method)
        finally:
            self._forget(pending)
        pending.finish(response)

    def _convert_params(self, route: Route, params: Any) -> Any:
        if route.params_type is None:
            return params
        if params is None:
            params = {}
        try:
            return from_dict(route.params_type, params)
        except ConversionError as exc:
            raise RpcError(INVALID_PARAMS, "Invalid params: %s" % exc) from None

    def _forget(self, pending: _Pending) -> None:
        with self._inflight_lock:
            key = _id_key(pending.ctx.id)
            if self._inflight.get(key) is pending:
                del self._inflight[key]
            token = pending.ctx.work_done_token
            if token is not None and self._tokens.get(token) is pending:
                del self._tokens[token]

    def cancel(self, request_id: Any) -> bool:
        """Cancel an in-flight request: flag its context and reply RequestCancelled now.

        Replying immediately keeps cancellation prompt even if a handler is slow to notice;
        its eventual result is discarded. Returns False if the request was not in flight.
        """
        with self._inflight_lock:
            pending = self._inflight.get(_id_key(request_id))
        if pending is None:
            log.debug("cancel for unknown or finished request %r", request_id)
            return False
        pending.ctx.cancelled.set()
        pending.finish(
            error_response(pending.ctx.id, RpcError(REQUEST_CANCELLED, "Request cancelled"))
        )
        return True

    def _cancel_all(self) -> None:
        with self._inflight_lock:
            pendings = list(self._inflight.values())
        for pending in pendings:
            pending.ctx.cancelled.set()


def _id_key(request_id: Any) -> Any:
    # 1 and "1" are different ids; keying on (type, value) keeps them apart.
    return (type(request_id).__name__, request_id)


def _internal_error(request_id: Any, method: Optional[str] = None) -> Dict[str, Any]:
    text = (
        "Internal error" if method is None else "Internal error while handling %s" % _short(method)
    )
    return error_response(request_id, RpcError(INTERNAL_ERROR, text))


def _encodable(message: Any) -> bool:
    try:
        encode_message(message)
        return True
    except (TypeError, ValueError):
        return False
