"""Test helpers: spawn the real backend and talk framed JSON-RPC to it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import pytest

SERVER_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_TIMEOUT = 10.0
# Interpreter for backend subprocesses; point it at e.g. a Python 3.9 to check compatibility
# while pytest itself runs on an interpreter that has pytest/hypothesis.
BACKEND_PYTHON = os.environ.get("GPUWB_TEST_BACKEND_PYTHON") or sys.executable


def frame(body: bytes) -> bytes:
    """Wrap a body in an LSP header."""
    return b"Content-Length: %d\r\n\r\n" % len(body) + body


def encode(message: Any) -> bytes:
    """Frame a JSON value (UTF-8, not ASCII-escaped, so lengths are byte counts)."""
    return frame(json.dumps(message, ensure_ascii=False).encode("utf-8"))


def backend_env(extra: Optional[Dict[str, str]] = None) -> Dict[str, str]:
    """Environment for a backend process: package importable, debug methods on."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(SERVER_ROOT)
    env["GPUWB_DEBUG_METHODS"] = "1"
    env.pop("GPUWB_LOG_LEVEL", None)
    if extra:
        env.update(extra)
    return env


class Session:
    """A client connected to a backend process's stdin/stdout.

    A reader thread parses frames into `_messages`; tests wait on them with timeouts.
    """

    def __init__(self, proc: subprocess.Popen) -> None:
        self.proc = proc
        self._messages: List[Any] = []
        self._cond = threading.Condition()
        self._stderr: List[str] = []
        self._next_id = 0
        self.closed = False
        threading.Thread(target=self._read_stdout, daemon=True).start()
        threading.Thread(target=self._read_stderr, daemon=True).start()

    # ---- background readers ----

    def _read_stdout(self) -> None:
        stream = self.proc.stdout
        assert stream is not None
        try:
            while True:
                length = None
                while True:
                    line = stream.readline()
                    if not line:
                        return
                    if line == b"\r\n":
                        break
                    name, _, value = line.decode("ascii").partition(":")
                    if name.lower() == "content-length":
                        length = int(value.strip())
                assert length is not None, "server sent a frame without Content-Length"
                body = stream.read(length)
                if len(body) < length:
                    return
                message = json.loads(body.decode("utf-8"))
                with self._cond:
                    self._messages.append(message)
                    self._cond.notify_all()
        finally:
            with self._cond:
                self.closed = True
                self._cond.notify_all()

    def _read_stderr(self) -> None:
        stream = self.proc.stderr
        assert stream is not None
        for raw in iter(stream.readline, b""):
            with self._cond:
                self._stderr.append(raw.decode("utf-8", "replace"))
                self._cond.notify_all()

    # ---- sending ----

    def send_raw(self, data: bytes) -> None:
        """Write bytes to the backend's stdin."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def send(self, message: Any) -> None:
        """Send one JSON message (or batch)."""
        self.send_raw(encode(message))

    def new_id(self) -> int:
        self._next_id += 1
        return self._next_id

    def send_request(self, method: str, params: Any = None, request_id: Any = None) -> Any:
        """Send a request and return its id without waiting."""
        if request_id is None:
            request_id = self.new_id()
        message: Dict[str, Any] = {"jsonrpc": "2.0", "id": request_id, "method": method}
        if params is not None:
            message["params"] = params
        self.send(message)
        return request_id

    def notify(self, method: str, params: Any = None) -> None:
        message: Dict[str, Any] = {"jsonrpc": "2.0", "method": method}
        if params is not None:
            message["params"] = params
        self.send(message)

    def request(
        self, method: str, params: Any = None, timeout: float = DEFAULT_TIMEOUT
    ) -> Dict[str, Any]:
        """Send a request and wait for the response with its id."""
        request_id = self.send_request(method, params)
        return self.response(request_id, timeout)

    # ---- waiting ----

    def wait_for(self, predicate: Callable[[Any], bool], timeout: float = DEFAULT_TIMEOUT) -> Any:
        """Remove and return the first received message matching `predicate`."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for i, message in enumerate(self._messages):
                    if predicate(message):
                        return self._messages.pop(i)
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(
                        "no matching message within %.1fs; have %r" % (timeout, self._messages[-5:])
                    )
                if self.closed:
                    raise EOFError("backend closed stdout; have %r" % (self._messages[-5:],))
                self._cond.wait(remaining)

    def response(self, request_id: Any, timeout: float = DEFAULT_TIMEOUT) -> Dict[str, Any]:
        """Wait for the (non-batch) response to `request_id`."""
        return self.wait_for(
            lambda m: (
                isinstance(m, dict)
                and "method" not in m
                and m.get("id") == request_id
                and type(m.get("id")) is type(request_id)
            ),
            timeout,
        )

    def drain(self) -> List[Any]:
        """Remove and return every message received so far."""
        with self._cond:
            messages, self._messages = self._messages, []
            return messages

    def wait_stderr(self, needle: str, timeout: float = DEFAULT_TIMEOUT) -> str:
        """Wait for a log line containing `needle`."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for line in self._stderr:
                    if needle in line:
                        return line
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(
                        "no log line with %r; log:\n%s" % (needle, "".join(self._stderr))
                    )
                self._cond.wait(remaining)

    def stderr_text(self) -> str:
        with self._cond:
            return "".join(self._stderr)

    def wait_exit(self, timeout: float = DEFAULT_TIMEOUT) -> int:
        return self.proc.wait(timeout)

    # ---- lifecycle shortcuts ----

    def initialize(self, options: Any = None, process_id: Any = None) -> Dict[str, Any]:
        params: Dict[str, Any] = {"processId": process_id, "capabilities": {}}
        if options is not None:
            params["initializationOptions"] = options
        response = self.request("initialize", params)
        assert "result" in response, response
        self.notify("initialized", {})
        return response

    def ping(
        self, payload: Optional[str] = None, timeout: float = DEFAULT_TIMEOUT
    ) -> Dict[str, Any]:
        params = {} if payload is None else {"payload": payload}
        return self.request("workbench/ping", params, timeout)

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            try:
                if stream is not None:
                    stream.close()
            except OSError:
                pass


def spawn(env: Optional[Dict[str, str]] = None, args: Optional[List[str]] = None) -> Session:
    """Start `python -m gpu_workbench` (or `args`) with pipes and wrap it in a Session."""
    command = args if args is not None else [BACKEND_PYTHON, "-m", "gpu_workbench"]
    proc = subprocess.Popen(
        command,
        cwd=str(SERVER_ROOT),
        env=env if env is not None else backend_env(),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    return Session(proc)


@pytest.fixture
def data_env(tmp_path: Path) -> Dict[str, str]:
    """Backend environment whose default data directory lives under tmp_path."""
    return backend_env({"GPUWB_DATA_DIR": str(tmp_path / "data")})


@pytest.fixture
def session(data_env: Dict[str, str]):
    """A started, not yet initialized backend."""
    s = spawn(data_env)
    yield s
    s.close()


@pytest.fixture
def ready(session: Session) -> Session:
    """An initialized backend."""
    session.initialize()
    return session


# ---- kernels ----


def kill_kernels(data_directory: Path) -> None:
    """SIGKILL every worker (kernel group and monitor) recorded under a data directory."""
    import signal

    for kernel_json in data_directory.glob("kernels/*/kernel.json"):
        try:
            meta = json.loads(kernel_json.read_text())
        except (OSError, ValueError):
            continue
        kernel_id = kernel_json.parent.name
        for key in ("pgid", "pid", "monitorPid"):
            pid = meta.get(key)
            if not isinstance(pid, int) or pid <= 0 or not _is_worker(pid, kernel_id):
                continue
            try:
                if key == "pgid":
                    os.killpg(pid, signal.SIGKILL)
                else:
                    os.kill(pid, signal.SIGKILL)
            except OSError:
                pass


def _is_worker(pid: int, kernel_id: str) -> bool:
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            args = f.read().split(b"\0")
    except OSError:
        return False
    return any(a.endswith(b"worker.py") for a in args) and kernel_id.encode() in args


def process_gone(pid: int) -> bool:
    """True when `pid` no longer runs (zombies count as gone)."""
    try:
        with open("/proc/%d/stat" % pid, "rb") as f:
            stat = f.read()
    except OSError:
        return True
    return stat[stat.rindex(b")") + 2 : stat.rindex(b")") + 3] in (b"Z", b"X")


def wait_until(
    predicate: Callable[[], bool], timeout: float = DEFAULT_TIMEOUT, what: str = ""
) -> None:
    """Poll `predicate` (every 20 ms) until true; fail after `timeout`."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("timed out waiting for %s" % (what or predicate))
        time.sleep(0.02)


class KernelClient:
    """Kernel calls over a Session, collecting kernel/event notifications per kernel."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.events: Dict[str, List[Dict[str, Any]]] = {}

    def call(self, method: str, params: Any = None, timeout: float = 40.0) -> Any:
        response = self.session.request(method, params if params is not None else {}, timeout)
        assert "result" in response, response
        return response["result"]

    def error(self, method: str, params: Any = None, timeout: float = 40.0) -> Dict[str, Any]:
        response = self.session.request(method, params if params is not None else {}, timeout)
        assert "error" in response, response
        return response["error"]

    def start(self, **params: Any) -> Dict[str, Any]:
        info = self.call("kernel/start", params)
        self.events.setdefault(info["kernelId"], [])
        return info

    def execute(self, kernel_id: str, code: str, **params: Any) -> str:
        params.update(kernelId=kernel_id, code=code)
        return self.call("kernel/execute", params)["executionId"]

    def _pull(self, timeout: float) -> Dict[str, Any]:
        message = self.session.wait_for(
            lambda m: isinstance(m, dict) and m.get("method") == "kernel/event", timeout
        )
        params = message["params"]
        self.events.setdefault(params["kernelId"], []).append(params["event"])
        return params

    def pull_all(self) -> None:
        """Collect every kernel/event received so far."""
        while True:
            try:
                self._pull(0.0)
            except (TimeoutError, EOFError):
                return

    def wait_event(
        self,
        kernel_id: str,
        predicate: Callable[[Dict[str, Any]], bool],
        timeout: float = DEFAULT_TIMEOUT,
    ) -> Dict[str, Any]:
        """The first event of `kernel_id` (received so far or later) matching `predicate`."""
        deadline = time.monotonic() + timeout
        seen = 0
        while True:
            events = self.events.setdefault(kernel_id, [])
            for event in events[seen:]:
                if predicate(event):
                    return event
            seen = len(events)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(
                    "no matching event for %s within %.1fs; last: %r"
                    % (kernel_id, timeout, events[-5:])
                )
            try:
                self._pull(remaining)
            except TimeoutError:
                continue

    def reply(
        self, kernel_id: str, execution_id: str, timeout: float = DEFAULT_TIMEOUT
    ) -> Dict[str, Any]:
        return self.wait_event(
            kernel_id,
            lambda e: e.get("type") == "reply" and e.get("executionId") == execution_id,
            timeout,
        )

    def run(
        self, kernel_id: str, code: str, timeout: float = DEFAULT_TIMEOUT, **params: Any
    ) -> Dict[str, Any]:
        """Execute and wait for the reply."""
        return self.reply(kernel_id, self.execute(kernel_id, code, **params), timeout)

    def outputs(self, kernel_id: str, execution_id: str) -> List[Dict[str, Any]]:
        return [e for e in self.events.get(kernel_id, []) if e.get("executionId") == execution_id]

    def stdout(self, kernel_id: str, execution_id: str) -> str:
        return "".join(
            e["text"]
            for e in self.outputs(kernel_id, execution_id)
            if e.get("type") == "stream" and e.get("name") == "stdout"
        )

    def seqs(self, kernel_id: str) -> List[int]:
        return [e["seq"] for e in self.events.get(kernel_id, []) if "seq" in e]


@pytest.fixture
def kernel_data(tmp_path: Path):
    """A data directory for kernels; every kernel started under it is killed afterwards."""
    data = tmp_path / "data"
    data.mkdir()
    yield data
    kill_kernels(data)


def spawn_kernel_backend(data: Path, options: Optional[Dict[str, Any]] = None) -> KernelClient:
    """An initialized backend whose data directory is `data`, wrapped in a KernelClient."""
    s = spawn(backend_env({"GPUWB_DATA_DIR": str(data)}))
    s.initialize(options)
    return KernelClient(s)


@pytest.fixture
def kernels(kernel_data: Path):
    """A KernelClient on an initialized backend with a private data directory."""
    client = spawn_kernel_backend(kernel_data)
    yield client
    client.session.close()
