"""Start kernel workers (gpu_workbench/kernels/worker.py) the way the backend does and speak
their socket protocol (newline-delimited JSON). Waits are on messages, with deadlines."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

WORKER = Path(__file__).resolve().parent.parent / "gpu_workbench" / "kernels" / "worker.py"
# Interpreter the kernel runs in (the user's); defaults to the one running pytest.
KERNEL_PYTHON = os.environ.get("GPUWB_TEST_KERNEL_PYTHON") or sys.executable
TIMEOUT = 15.0

Message = Dict[str, Any]


def new_kernel_id() -> str:
    return uuid.uuid4().hex[:12]


def wait_until(pred: Callable[[], Any], timeout: float = TIMEOUT, what: str = "condition") -> Any:
    """Poll pred (cheap file/process checks) until it returns a truthy value."""
    deadline = time.monotonic() + timeout
    delay = 0.002
    while True:
        value = pred()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError("timed out waiting for %s" % what)
        time.sleep(delay)
        delay = min(delay * 2, 0.05)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie still answers kill(0); treat it as gone.
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


class Result:
    """Everything journaled for one execution, up to and including its reply."""

    def __init__(self, eid: str, msgs: List[Message]) -> None:
        self.eid = eid
        self.msgs = msgs
        self.reply = msgs[-1] if msgs and msgs[-1].get("type") == "reply" else {}

    @property
    def status(self) -> Optional[str]:
        return self.reply.get("status")

    def text(self, name: str) -> str:
        return "".join(
            m["text"] for m in self.msgs if m.get("type") == "stream" and m.get("name") == name
        )

    @property
    def stdout(self) -> str:
        return self.text("stdout")

    @property
    def stderr(self) -> str:
        return self.text("stderr")

    def of(self, kind: str) -> List[Message]:
        return [m for m in self.msgs if m.get("type") == kind]

    @property
    def result(self) -> Any:
        found = self.of("execute_result")
        return found[0]["data"] if found else None

    @property
    def error(self) -> Any:
        found = self.of("error")
        return found[0] if found else None


class Client:
    """One socket connection; a reader thread collects every message in order."""

    def __init__(self, path: str, since: Optional[int] = 0, label: str = "test") -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(path)
        self.messages: List[Message] = []
        self.cond = threading.Condition()
        self.closed = False
        self.bytes_received = 0
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()
        if since is not None:
            self.send({"op": "hello", "since": since, "client": label})
            self.welcome = self.wait_for(lambda m: m.get("type") == "welcome")

    def _read(self) -> None:
        buf = b""
        while True:
            try:
                data = self.sock.recv(1 << 20)
            except OSError:
                data = b""
            if not data:
                with self.cond:
                    self.closed = True
                    self.cond.notify_all()
                return
            self.bytes_received += len(data)
            buf += data
            if b"\n" not in data:
                continue
            lines = buf.split(b"\n")
            buf = lines.pop()
            parsed = [json.loads(line) for line in lines if line]
            with self.cond:
                self.messages.extend(parsed)
                self.cond.notify_all()

    def send(self, obj: Any) -> None:
        data = obj if isinstance(obj, bytes) else json.dumps(obj).encode("utf-8") + b"\n"
        self.sock.sendall(data)

    def wait_for(
        self, pred: Callable[[Message], Any], timeout: float = TIMEOUT, start: int = 0
    ) -> Message:
        deadline = time.monotonic() + timeout
        i = start
        with self.cond:
            while True:
                while i < len(self.messages):
                    if pred(self.messages[i]):
                        return self.messages[i]
                    i += 1
                if self.closed:
                    raise EOFError("connection closed; last messages: %r" % self.messages[-5:])
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError("no matching message; last: %r" % self.messages[-5:])
                self.cond.wait(left)

    def wait_closed(self, timeout: float = TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        with self.cond:
            while not self.closed:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError("connection still open")
                self.cond.wait(left)

    def journaled(self) -> List[Message]:
        with self.cond:
            return [m for m in self.messages if "seq" in m]

    def execute(self, code: str, eid: Optional[str] = None, **fields: Any) -> str:
        eid = eid or uuid.uuid4().hex
        msg = {"op": "execute", "executionId": eid, "code": code}
        msg.update(fields)
        self.send(msg)
        return eid

    def result(self, eid: str, timeout: float = TIMEOUT) -> Result:
        self.wait_for(
            lambda m: m.get("type") == "reply" and m.get("executionId") == eid, timeout=timeout
        )
        with self.cond:
            msgs = [m for m in self.messages if m.get("executionId") == eid and "seq" in m]
        return Result(eid, msgs)

    def run(self, code: str, timeout: float = TIMEOUT, **fields: Any) -> Result:
        return self.result(self.execute(code, **fields), timeout=timeout)

    def request(self, op: str, timeout: float = TIMEOUT, **fields: Any) -> Message:
        rid = uuid.uuid4().hex
        msg = {"op": op, "requestId": rid}
        msg.update(fields)
        self.send(msg)
        return self.wait_for(lambda m: m.get("requestId") == rid, timeout=timeout)

    def close(self) -> None:
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()


class Kernel:
    """A worker process tree: the monitor (our child) and the kernel (its child)."""

    def __init__(self, kdir: Path, kernel_id: str, proc: subprocess.Popen) -> None:
        self.dir = kdir
        self.id = kernel_id
        self.proc = proc  # the monitor
        self.info: Dict[str, Any] = {}
        self.clients: List[Client] = []

    @property
    def pid(self) -> int:
        return int(self.info["pid"])

    @property
    def socket_path(self) -> str:
        return str(self.info["socket"])

    def connect(self, since: Optional[int] = 0, label: str = "test") -> Client:
        c = Client(self.socket_path, since=since, label=label)
        self.clients.append(c)
        return c

    def signal(self, sig: int) -> None:
        """Signal the kernel's process group, as the backend's interrupt does."""
        os.killpg(self.pid, sig)

    def wait_ended(self, timeout: float = TIMEOUT) -> Dict[str, Any]:
        self.proc.wait(timeout=timeout)
        with open(self.dir / "ended.json") as f:
            return json.load(f)

    def journal(self) -> List[Message]:
        out: List[Message] = []
        for name in ("journal.1.jsonl", "journal.jsonl"):
            p = self.dir / name
            if p.exists():
                out.extend(json.loads(line) for line in p.read_bytes().splitlines() if line)
        return out

    def stderr_log(self) -> str:
        p = self.dir / "stderr.log"
        return p.read_text(errors="replace") if p.exists() else ""

    def close(self) -> None:
        for c in self.clients:
            c.close()
        if self.info:
            try:
                os.killpg(self.pid, signal.SIGKILL)
            except OSError:
                pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def start_kernel(
    base: Path,
    *,
    idle_timeout: float = 0,
    journal_max_bytes: Optional[int] = None,
    cwd: Optional[str] = None,
    name: Optional[str] = None,
    kernel_id: Optional[str] = None,
    env: Optional[Dict[str, str]] = None,
    python: str = KERNEL_PYTHON,
    timeout: float = TIMEOUT,
) -> Kernel:
    """Start `python worker.py` detached, wait for kernel.json (the socket is listening then)."""
    kernel_id = kernel_id or new_kernel_id()
    kdir = base / kernel_id
    kdir.mkdir(parents=True, exist_ok=True)
    kernel_json = kdir / "kernel.json"
    try:
        kernel_json.unlink()
    except FileNotFoundError:
        pass
    argv = [python, str(WORKER), "--dir", str(kdir), "--id", kernel_id]
    argv += ["--idle-timeout", str(idle_timeout)]
    if journal_max_bytes is not None:
        argv += ["--journal-max-bytes", str(journal_max_bytes)]
    if cwd is not None:
        argv += ["--cwd", cwd]
    if name is not None:
        argv += ["--name", name]
    full_env = dict(os.environ)
    full_env.pop("MPLBACKEND", None)
    if env:
        full_env.update(env)
    with open(kdir / "stderr.log", "ab") as log:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=full_env,
        )
    k = Kernel(kdir, kernel_id, proc)

    def ready() -> bool:
        if kernel_json.exists():
            return True
        if proc.poll() is not None:
            raise RuntimeError("worker exited early:\n" + k.stderr_log())
        return False

    wait_until(ready, timeout, "kernel.json")
    k.info = json.loads(kernel_json.read_text())
    return k
