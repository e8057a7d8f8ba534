#!/usr/bin/env python3
"""Kernel benchmarks: GPU Workbench's kernel against ipykernel driven by jupyter_client.

Both are measured from a client's point of view through their full stack, side by side in
one run, on one machine, with one interpreter for both kernels:

- Jupyter: jupyter_client's KernelManager + BlockingKernelClient (no server), messages read
  from the iopub and shell channels.
- GPU Workbench: the backend (`python -m gpu_workbench`) over stdio with LSP framing, which
  drives the kernel worker; messages are the backend's `kernel/event` notifications.

Benchmarks: round trip of `1+1`, cold start to the first result, output throughput of a
20 MB print loop (and the bytes lost), interrupt latency of a busy loop and of a sleep.
Tools alternate their order between repetitions. Nothing is asserted: this is a report.

    /usr/bin/python3 bench/kernels.py [--quick] [--json OUT] [--tools gpuwb,jupyter]

Prints a Markdown table (with the machine) and writes the raw numbers as JSON
(default bench/results/kernels.json). Every kernel started is shut down at the end, also on
error or Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import select
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
SERVER_ROOT = ROOT / "server-python"

TRIVIAL = "1+1"
LINES = 200_000
PRINT_CODE = 'for i in range(%d): print(f"line {i:08d} " + "x"*80)' % LINES
EXPECTED_TEXT = "".join(f"line {i:08d} " + "x" * 80 + "\n" for i in range(LINES))
EXPECTED_BYTES = len(EXPECTED_TEXT.encode("utf-8"))
BUSY_CODES = {"loop": "while True: pass", "sleep": "import time; time.sleep(100)"}
# After the kernel reports busy, let the user code really start before interrupting.
SETTLE_SECONDS = 0.1
TIMEOUT = 60.0
JUPYTER = "jupyter"
OURS = "gpuwb"
LABELS = {OURS: "GPU Workbench", JUPYTER: "Jupyter"}
TIMES = "\u00d7"  # multiplication sign


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------
# Statistics


def percentile(values: List[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100.0 * len(ordered)))
    return ordered[rank - 1]


def summary(values: List[float]) -> Dict[str, Any]:
    if not values:
        return {"n": 0}
    return {
        "n": len(values),
        "p50": statistics.median(values),
        "p99": percentile(values, 99),
        "min": min(values),
        "max": max(values),
        "mean": statistics.fmean(values),
    }


# ---------------------------------------------------------------------------------------------
# Jupyter: jupyter_client's KernelManager + BlockingKernelClient, ipykernel


class JupyterTool:
    """ipykernel started by jupyter_client from a kernel spec naming `python` explicitly."""

    key = JUPYTER

    def __init__(self, python: str, workdir: Path) -> None:
        from jupyter_client.kernelspec import KernelSpecManager

        spec_dir = workdir / "kernelspecs" / "bench-python"
        spec_dir.mkdir(parents=True)
        spec = {
            "argv": [python, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
            "display_name": "bench python",
            "language": "python",
        }
        (spec_dir / "kernel.json").write_text(json.dumps(spec))
        self.spec_manager = KernelSpecManager(
            kernel_dirs=[str(spec_dir.parent)], ensure_native_kernel=False
        )
        self.workdir = workdir
        self.managers: List[Any] = []
        self.clients: List[Any] = []
        self.km: Any = None
        self.kc: Any = None

    # ---- lifecycle ----

    def _start(self) -> Tuple[Any, Any]:
        from jupyter_client import KernelManager

        km = KernelManager(kernel_name="bench-python", kernel_spec_manager=self.spec_manager)
        self.managers.append(km)
        km.start_kernel(cwd=str(self.workdir), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        kc = km.client()
        self.clients.append(kc)
        kc.start_channels()
        kc.wait_for_ready(timeout=TIMEOUT)
        return km, kc

    def _stop(self, km: Any, kc: Any) -> None:
        try:
            kc.stop_channels()
        finally:
            km.shutdown_kernel(now=False)

    def open(self) -> None:
        """Start the long-lived kernel used by every benchmark but the cold start."""
        self.km, self.kc = self._start()

    def close(self) -> None:
        for kc in self.clients:
            try:
                kc.stop_channels()
            except Exception:
                pass
        for km in self.managers:
            try:
                if km.has_kernel and km.is_alive():
                    km.shutdown_kernel(now=True)
            except Exception as exc:
                log(f"jupyter: shutdown failed: {exc!r}")
                try:
                    km.kill_kernel()
                except Exception:
                    pass

    def versions(self) -> Dict[str, str]:
        import ipykernel
        import jupyter_client
        import zmq

        return {
            "jupyter_client": jupyter_client.__version__,
            "ipykernel": ipykernel.__version__,
            "pyzmq": zmq.__version__,
            "libzmq": zmq.zmq_version(),
        }

    # ---- helpers ----

    @staticmethod
    def _iopub_until(kc: Any, parent: str, done: Callable[[Dict[str, Any]], bool]) -> None:
        """Read iopub, ignoring other executions' messages, until `done(msg)` is true."""
        deadline = time.monotonic() + TIMEOUT
        while True:
            msg = kc.get_iopub_msg(timeout=max(0.001, deadline - time.monotonic()))
            if msg["parent_header"].get("msg_id") == parent and done(msg):
                return

    @staticmethod
    def _shell_reply(kc: Any, parent: str) -> Dict[str, Any]:
        deadline = time.monotonic() + TIMEOUT
        while True:
            msg = kc.get_shell_msg(timeout=max(0.001, deadline - time.monotonic()))
            if msg["parent_header"].get("msg_id") == parent:
                return msg

    def _wait_idle(self, kc: Any, parent: str) -> None:
        self._iopub_until(
            kc,
            parent,
            lambda m: m["msg_type"] == "status" and m["content"]["execution_state"] == "idle",
        )

    # ---- benchmarks ----

    def round_trip(self) -> float:
        kc = self.kc
        t0 = time.perf_counter()
        parent = kc.execute(TRIVIAL)
        self._iopub_until(kc, parent, lambda m: m["msg_type"] == "execute_result")
        reply = self._shell_reply(kc, parent)
        elapsed = time.perf_counter() - t0
        if reply["content"]["status"] != "ok":
            raise RuntimeError(f"jupyter: 1+1 failed: {reply['content']}")
        return elapsed

    def cold_start(self) -> Dict[str, float]:
        t0 = time.perf_counter()
        km, kc = self._start()
        t_ready = time.perf_counter()
        parent = kc.execute(TRIVIAL)
        self._iopub_until(kc, parent, lambda m: m["msg_type"] == "execute_result")
        elapsed = time.perf_counter() - t0
        self._shell_reply(kc, parent)
        self._stop(km, kc)
        return {"firstResult": elapsed, "ready": t_ready - t0}

    def throughput(self) -> Dict[str, Any]:
        kc = self.kc
        parts: List[str] = []
        messages = 0
        t0 = time.perf_counter()
        t_last = t0
        parent = kc.execute(PRINT_CODE)
        deadline = time.monotonic() + 10 * TIMEOUT
        while True:
            msg = kc.get_iopub_msg(timeout=max(0.001, deadline - time.monotonic()))
            if msg["parent_header"].get("msg_id") != parent:
                continue
            kind = msg["msg_type"]
            if kind == "stream":
                parts.append(msg["content"]["text"])
                messages += 1
                t_last = time.perf_counter()
            elif kind == "status" and msg["content"]["execution_state"] == "idle":
                break
        reply = self._shell_reply(kc, parent)
        t_done = time.perf_counter()
        return stream_result(parts, messages, t_last - t0, t_done - t0, reply["content"]["status"])

    def interrupt(self, code: str) -> Dict[str, Any]:
        kc, km = self.kc, self.km
        parent = kc.execute(code)
        self._iopub_until(
            kc,
            parent,
            lambda m: m["msg_type"] == "status" and m["content"]["execution_state"] == "busy",
        )
        time.sleep(SETTLE_SECONDS)
        t0 = time.perf_counter()
        km.interrupt_kernel()
        reply = self._shell_reply(kc, parent)
        elapsed = time.perf_counter() - t0
        self._wait_idle(kc, parent)
        content = reply["content"]
        return {"seconds": elapsed, "status": content["status"], "ename": content.get("ename")}


# ---------------------------------------------------------------------------------------------
# GPU Workbench: the backend over stdio (LSP framing, JSON-RPC 2.0) driving the kernel worker


class RpcError(RuntimeError):
    pass


class Backend:
    """A blocking client of one `python -m gpu_workbench` process (no reader thread)."""

    def __init__(self, python: str, data_dir: Path, log_path: Path) -> None:
        env = dict(os.environ)
        env["PYTHONPATH"] = str(SERVER_ROOT)
        self.log_file = open(log_path, "ab")  # noqa: SIM115 (closed in close())
        self.proc = subprocess.Popen(
            [python, "-m", "gpu_workbench"],
            cwd=str(SERVER_ROOT),
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log_file,
        )
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.stdin = self.proc.stdin
        self.fd = self.proc.stdout.fileno()
        self.buf = bytearray()
        self.pending: List[Dict[str, Any]] = []
        self.next_id = 0
        self.data_dir = data_dir
        self.server_info: Dict[str, Any] = {}

    # ---- framing ----

    def send(self, message: Dict[str, Any]) -> None:
        body = json.dumps(message, ensure_ascii=False).encode("utf-8")
        self.stdin.write(b"Content-Length: %d\r\n\r\n" % len(body) + body)
        self.stdin.flush()

    def _parse(self) -> Optional[Dict[str, Any]]:
        end = self.buf.find(b"\r\n\r\n")
        if end < 0:
            return None
        length = None
        for line in bytes(self.buf[:end]).split(b"\r\n"):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value.strip())
        if length is None:
            raise RpcError("backend sent a frame without Content-Length")
        start = end + 4
        if len(self.buf) < start + length:
            return None
        body = bytes(self.buf[start : start + length])
        del self.buf[: start + length]
        return json.loads(body.decode("utf-8"))

    def read(self, timeout: float = TIMEOUT) -> Dict[str, Any]:
        """The next message: one set aside by `request`, else the next frame on stdout."""
        if self.pending:
            return self.pending.pop(0)
        deadline = time.monotonic() + timeout
        while True:
            message = self._parse()
            if message is not None:
                return message
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no message from the backend within {timeout:.0f} s")
            ready, _, _ = select.select([self.fd], [], [], remaining)
            if ready:
                data = os.read(self.fd, 1 << 20)
                if not data:
                    raise EOFError("the backend closed its stdout")
                self.buf += data

    # ---- JSON-RPC ----

    def send_request(self, method: str, params: Any) -> int:
        self.next_id += 1
        self.send({"jsonrpc": "2.0", "id": self.next_id, "method": method, "params": params})
        return self.next_id

    def notify(self, method: str, params: Any) -> None:
        self.send({"jsonrpc": "2.0", "method": method, "params": params})

    def request(self, method: str, params: Any, timeout: float = TIMEOUT) -> Any:
        """Send a request and wait for its response; other messages are kept for `read`."""
        request_id = self.send_request(method, params)
        deadline = time.monotonic() + timeout
        kept: List[Dict[str, Any]] = []
        try:
            while True:
                if self.pending:
                    message = self.pending.pop(0)
                else:
                    message = self.read(max(0.001, deadline - time.monotonic()))
                if "method" not in message and message.get("id") == request_id:
                    return result_of(method, message)
                kept.append(message)
        finally:
            self.pending[:0] = kept

    def initialize(self) -> None:
        result = self.request(
            "initialize",
            {
                "processId": os.getpid(),
                "capabilities": {},
                "initializationOptions": {"dataDirectory": str(self.data_dir), "trusted": True},
            },
        )
        self.server_info = result.get("serverInfo", {})
        self.notify("initialized", {})

    def close(self) -> None:
        try:
            if self.proc.poll() is None:
                self.request("shutdown", None, timeout=10)
                self.notify("exit", None)
                self.proc.wait(10)
        except Exception as exc:
            log(f"gpuwb: backend shutdown failed: {exc!r}")
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait(10)
            for stream in (self.proc.stdin, self.proc.stdout):
                try:
                    if stream is not None:
                        stream.close()
                except OSError:
                    pass
            self.log_file.close()


def result_of(method: str, message: Dict[str, Any]) -> Any:
    if "error" in message:
        error = message["error"]
        raise RpcError(f"{method}: {error.get('code')} {error.get('message')}")
    return message.get("result")


class WorkbenchTool:
    """GPU Workbench's kernel, started and driven through the backend's `kernel/*` methods."""

    key = OURS

    def __init__(self, python: str, workdir: Path) -> None:
        self.python = python
        self.workdir = workdir
        self.backends: List[Backend] = []
        self.kernels: List[Tuple[Backend, str]] = []
        self.backend: Optional[Backend] = None
        self.kernel_id = ""
        self.counter = 0

    # ---- lifecycle ----

    def _backend(self) -> Backend:
        index = len(self.backends)
        data_dir = self.workdir / f"data{index}"
        backend = Backend(self.python, data_dir, self.workdir / f"backend{index}.log")
        self.backends.append(backend)
        backend.initialize()
        return backend

    def _start_kernel(self, backend: Backend) -> str:
        result = backend.request(
            "kernel/start", {"python": self.python, "cwd": str(self.workdir)}, timeout=TIMEOUT
        )
        kernel_id = result["kernelId"]
        self.kernels.append((backend, kernel_id))
        return kernel_id

    def _execution_id(self) -> str:
        self.counter += 1
        return f"bench-{os.getpid()}-{self.counter}"

    def open(self) -> None:
        self.backend = self._backend()
        self.kernel_id = self._start_kernel(self.backend)

    def close(self) -> None:
        for backend, kernel_id in self.kernels:
            if backend.proc.poll() is None:
                try:
                    backend.request("kernel/shutdown", {"kernelId": kernel_id}, timeout=10)
                except Exception as exc:
                    log(f"gpuwb: kernel/shutdown {kernel_id} failed: {exc!r}")
        for backend in self.backends:
            backend.close()
        # Kernels are detached processes: kill any still alive (only ours, by pid).
        deadline = time.monotonic() + 5
        for backend in self.backends:
            for info_path in sorted(backend.data_dir.glob("kernels/*/kernel.json")):
                kill_leftover(info_path, deadline)

    def versions(self) -> Dict[str, str]:
        info = self.backends[0].server_info if self.backends else {}
        return {"gpu_workbench": str(info.get("version", "?"))}

    # ---- helpers ----

    def _execute(
        self,
        backend: Backend,
        kernel_id: str,
        code: str,
        on_event: Callable[[Dict[str, Any], float], bool],
        timeout: float = TIMEOUT,
    ) -> str:
        """Send `kernel/execute` and feed this execution's events to `on_event(event, t)`
        until it returns True (after the response has arrived too). Returns the executionId."""
        execution_id = self._execution_id()
        request_id = backend.send_request(
            "kernel/execute", {"kernelId": kernel_id, "code": code, "executionId": execution_id}
        )
        answered = False
        finished = False
        other_responses: List[Dict[str, Any]] = []
        deadline = time.monotonic() + timeout
        while not (answered and finished):
            message = backend.read(max(0.001, deadline - time.monotonic()))
            now = time.perf_counter()
            if "method" not in message:
                if message.get("id") == request_id:
                    result = result_of("kernel/execute", message)
                    if result.get("executionId") not in (None, execution_id):
                        raise RpcError(f"kernel/execute answered {result!r}")
                    answered = True
                else:
                    other_responses.append(message)
                continue
            if message.get("method") != "kernel/event":
                continue
            params = message.get("params") or {}
            event = params.get("event") or {}
            if params.get("kernelId") != kernel_id:
                continue
            if event.get("type") in ("died", "exit"):
                raise RpcError(f"kernel ended: {event!r}")
            if event.get("executionId") == execution_id and not finished:
                finished = on_event(event, now)
        backend.pending.extend(other_responses)
        return execution_id

    def _first_result(self, backend: Backend, kernel_id: str, t0: float) -> Tuple[float, float]:
        """Run `1+1`; return (time of execute_result, time of reply) relative to t0."""
        seen: Dict[str, float] = {}

        def on_event(event: Dict[str, Any], now: float) -> bool:
            kind = event.get("type")
            if kind in ("execute_result", "reply"):
                seen.setdefault(kind, now)
            if kind == "reply" and event.get("status") != "ok":
                raise RpcError(f"1+1 failed: {event!r}")
            return "execute_result" in seen and "reply" in seen

        self._execute(backend, kernel_id, TRIVIAL, on_event)
        return seen["execute_result"] - t0, seen["reply"] - t0

    # ---- benchmarks ----

    def round_trip(self) -> float:
        assert self.backend is not None
        t0 = time.perf_counter()
        result_at, reply_at = self._first_result(self.backend, self.kernel_id, t0)
        return max(result_at, reply_at)

    def cold_start(self) -> Dict[str, float]:
        """Kernel start with a running backend (as the extension has), and also from spawning
        a fresh backend."""
        t_spawn = time.perf_counter()
        backend = self._backend()
        t0 = time.perf_counter()
        kernel_id = self._start_kernel(backend)
        t_started = time.perf_counter()
        result_at, _ = self._first_result(backend, kernel_id, t0)
        backend.request("kernel/shutdown", {"kernelId": kernel_id}, timeout=10)
        backend.close()
        return {
            "firstResult": result_at,
            "ready": t_started - t0,
            "firstResultWithBackendStart": result_at + (t0 - t_spawn),
        }

    def throughput(self) -> Dict[str, Any]:
        assert self.backend is not None
        parts: List[str] = []
        state = {"messages": 0, "last": 0.0, "status": "?"}

        def on_event(event: Dict[str, Any], now: float) -> bool:
            kind = event.get("type")
            if kind == "stream":
                parts.append(event.get("text", ""))
                state["messages"] += 1
                state["last"] = now
            elif kind == "reply":
                state["status"] = event.get("status")
                state["durationMs"] = event.get("durationMs")
                return True
            return False

        t0 = time.perf_counter()
        state["last"] = t0
        self._execute(self.backend, self.kernel_id, PRINT_CODE, on_event, timeout=10 * TIMEOUT)
        t_done = time.perf_counter()
        result = stream_result(
            parts, state["messages"], state["last"] - t0, t_done - t0, state["status"]
        )
        result["kernelDurationMs"] = state.get("durationMs")
        return result

    def interrupt(self, code: str) -> Dict[str, Any]:
        backend = self.backend
        assert backend is not None
        state: Dict[str, Any] = {}

        def on_event(event: Dict[str, Any], now: float) -> bool:
            kind = event.get("type")
            if kind == "status" and event.get("state") == "busy" and "t0" not in state:
                time.sleep(SETTLE_SECONDS)
                state["t0"] = time.perf_counter()
                state["request"] = backend.send_request(
                    "kernel/interrupt", {"kernelId": self.kernel_id}
                )
            elif kind == "reply":
                state["t1"] = now
                state["status"] = event.get("status")
                return True
            return False

        self._execute(backend, self.kernel_id, code, on_event)
        if "t0" not in state:
            raise RpcError("no busy status before the reply")
        # The interrupt's own response (its outcome), which `_execute` skipped or is pending.
        outcome = None
        for message in backend.pending:
            if "method" not in message and message.get("id") == state["request"]:
                backend.pending.remove(message)
                outcome = (message.get("result") or {}).get("outcome")
                break
        else:
            deadline = time.monotonic() + 10
            while outcome is None and time.monotonic() < deadline:
                message = backend.read(max(0.001, deadline - time.monotonic()))
                if "method" not in message and message.get("id") == state["request"]:
                    outcome = (result_of("kernel/interrupt", message) or {}).get("outcome")
        return {"seconds": state["t1"] - state["t0"], "status": state["status"], "outcome": outcome}


def kill_leftover(info_path: Path, deadline: float) -> None:
    """Kill the worker and monitor named by a kernel.json if they still run worker.py."""
    try:
        info = json.loads(info_path.read_text())
    except (OSError, ValueError):
        return
    for key in ("pid", "monitorPid"):
        pid = info.get(key)
        if not isinstance(pid, int) or not is_worker(pid):
            continue
        try:
            os.kill(pid, signal.SIGTERM)
        except OSError:
            continue
        while time.monotonic() < deadline and is_worker(pid):
            time.sleep(0.05)
        if is_worker(pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        log(f"gpuwb: killed leftover kernel process {pid} ({info_path.parent.name})")


def is_worker(pid: int) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    zombie = stat.rsplit(")", 1)[-1].split()[0] == "Z"
    return b"worker.py" in cmdline and not zombie


# ---------------------------------------------------------------------------------------------
# Shared


def stream_result(
    parts: List[str], messages: int, last: float, done: float, status: Any
) -> Dict[str, Any]:
    text = "".join(parts)
    received = len(text.encode("utf-8"))
    return {
        "secondsToLastByte": last,
        "secondsToReply": done,
        "bytesExpected": EXPECTED_BYTES,
        "bytesReceived": received,
        "bytesLost": EXPECTED_BYTES - received,
        "contentExact": text == EXPECTED_TEXT,
        "messages": messages,
        "replyStatus": status,
        "mbPerSecond": received / last / 1e6 if last > 0 else None,
    }


def plain_python_seconds(python: str) -> float:
    """The cell's loop in a bare interpreter writing line-buffered to a pipe we drain.

    No kernel can deliver the output faster than the loop produces it: this is the floor
    both tools are measured against.
    """
    code = "import os, sys\nsys.stdout = os.fdopen(1, 'w', 1)\n" + PRINT_CODE + "\n"
    t0 = time.perf_counter()
    proc = subprocess.Popen([python, "-c", code], stdout=subprocess.PIPE)
    assert proc.stdout is not None
    received = 0
    while True:
        chunk = proc.stdout.read(1 << 16)
        if not chunk:
            break
        received += len(chunk)
    proc.wait()
    elapsed = time.perf_counter() - t0
    if received != EXPECTED_BYTES:
        raise RuntimeError(f"plain Python wrote {received} bytes, expected {EXPECTED_BYTES}")
    return elapsed


def machine() -> Dict[str, Any]:
    cpu = platform.processor() or "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    ram = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                ram = int(line.split()[1]) * 1024
    except OSError:
        pass
    distro = ""
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                distro = line.split("=", 1)[1].strip('"')
    except OSError:
        pass
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count()
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "usableCores": usable,
        "ramBytes": ram,
        "os": f"{distro} ({platform.system()} {platform.release()})".strip(),
        "benchPython": f"{platform.python_implementation()} {platform.python_version()}",
        "benchExecutable": sys.executable,
    }


def kernel_python_version(python: str) -> str:
    out = subprocess.run(
        [python, "-c", "import platform; print(platform.python_version())"],
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.strip()


# ---------------------------------------------------------------------------------------------
# Driver


class Runner:
    def __init__(self, tools: Dict[str, Any], quick: bool, python: str) -> None:
        self.tools = tools
        self.quick = quick
        self.python = python
        self.floor: Dict[str, Any] = {}
        self.results: Dict[str, Dict[str, Any]] = {key: {} for key in tools}
        self.errors: Dict[str, Dict[str, str]] = {key: {} for key in tools}
        self.broken: Dict[str, bool] = dict.fromkeys(tools, False)
        self.rep = 0

    def order(self) -> List[str]:
        """Tools in alternating order, one flip per call."""
        keys = sorted(self.tools)
        self.rep += 1
        return keys if self.rep % 2 else keys[::-1]

    def guard(self, key: str, bench: str, fn: Callable[[], Any]) -> Any:
        if self.broken[key]:
            return None
        try:
            return fn()
        except Exception as exc:
            log(f"{key}: {bench} failed: {exc!r}")
            traceback.print_exc(file=sys.stderr)
            self.errors[key][bench] = repr(exc)
            if bench == "open" or not isinstance(exc, RpcError):
                # A timeout or a dead connection leaves the kernel in an unknown state.
                self.broken[key] = True
            return None

    def open(self) -> None:
        for key in self.order():
            log(f"{key}: starting the kernel")
            self.guard(key, "open", self.tools[key].open)

    def round_trips(self) -> None:
        total = 200 if self.quick else 1000
        warmup = 50
        block = 50 if self.quick else 100
        samples: Dict[str, List[float]] = {key: [] for key in self.tools}
        for key in self.order():
            log(f"{key}: {warmup} warm-up round trips")
            self.guard(
                key, "roundTrip", lambda k=key: [self.tools[k].round_trip() for _ in range(warmup)]
            )
        done = 0
        while done < total:
            n = min(block, total - done)
            for key in self.order():
                got = self.guard(
                    key,
                    "roundTrip",
                    lambda k=key, n=n: [self.tools[k].round_trip() for _ in range(n)],
                )
                if got:
                    samples[key].extend(got)
            done += n
        log(f"round trips: {done} each")
        for key, values in samples.items():
            self.results[key]["roundTrip"] = {"seconds": summary(values), "samples": values}

    def cold_starts(self) -> None:
        runs = 2 if self.quick else 5
        samples: Dict[str, List[Dict[str, float]]] = {key: [] for key in self.tools}
        for i in range(runs):
            for key in self.order():
                log(f"{key}: cold start {i + 1}/{runs}")
                got = self.guard(key, "coldStart", self.tools[key].cold_start)
                if got:
                    samples[key].append(got)
        for key, runs_ in samples.items():
            entry: Dict[str, Any] = {"runs": runs_}
            for field in ("firstResult", "ready", "firstResultWithBackendStart"):
                values = [r[field] for r in runs_ if field in r]
                if values:
                    entry[field] = summary(values)
            self.results[key]["coldStart"] = entry

    def throughputs(self) -> None:
        runs = 2 if self.quick else 3
        samples: Dict[str, List[Dict[str, Any]]] = {key: [] for key in self.tools}
        floor: List[float] = []
        for i in range(runs):
            log(f"floor: plain Python to a pipe {i + 1}/{runs}")
            floor.append(plain_python_seconds(self.python))
            for key in self.order():
                log(f"{key}: output throughput {i + 1}/{runs}")
                got = self.guard(key, "throughput", self.tools[key].throughput)
                if got:
                    log(
                        f"{key}:   {got['secondsToLastByte']:.2f} s, "
                        f"{got['bytesReceived']} of {got['bytesExpected']} bytes"
                    )
                    samples[key].append(got)
        for key, runs_ in samples.items():
            entry: Dict[str, Any] = {"runs": runs_}
            if runs_:
                entry["secondsToLastByte"] = summary([r["secondsToLastByte"] for r in runs_])
                entry["secondsToReply"] = summary([r["secondsToReply"] for r in runs_])
                entry["bytesLostMax"] = max(r["bytesLost"] for r in runs_)
                entry["bytesLostTotal"] = sum(r["bytesLost"] for r in runs_)
                entry["allExact"] = all(r["contentExact"] for r in runs_)
            self.results[key]["throughput"] = entry
        self.floor = summary(floor)

    def interrupts(self) -> None:
        runs = 2 if self.quick else 10
        for name, code in BUSY_CODES.items():
            samples: Dict[str, List[Dict[str, Any]]] = {key: [] for key in self.tools}
            for i in range(runs):
                for key in self.order():
                    log(f"{key}: interrupt {name} {i + 1}/{runs}")
                    got = self.guard(
                        key, f"interrupt.{name}", lambda k=key, c=code: self.tools[k].interrupt(c)
                    )
                    if got:
                        samples[key].append(got)
            for key, runs_ in samples.items():
                self.results[key][f"interrupt.{name}"] = {
                    "seconds": summary([r["seconds"] for r in runs_]),
                    "runs": runs_,
                }

    def close(self) -> None:
        for key, tool in self.tools.items():
            try:
                tool.close()
            except Exception as exc:
                log(f"{key}: cleanup failed: {exc!r}")


# ---------------------------------------------------------------------------------------------
# Report


def ms(seconds: Optional[float]) -> str:
    if seconds is None:
        return "n/a"
    value = seconds * 1000
    return (
        f"{value:.3f} ms" if value < 1 else f"{value:.2f} ms" if value < 100 else f"{value:.0f} ms"
    )


def secs(seconds: Optional[float]) -> str:
    return "n/a" if seconds is None else f"{seconds:.2f} s"


def dig(data: Dict[str, Any], path: str) -> Any:
    value: Any = data
    for part in path.split("/"):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def ratio(ours: Optional[float], theirs: Optional[float]) -> str:
    if ours is None or theirs is None or theirs == 0:
        return "n/a"
    return f"{ours / theirs:.2f}{TIMES}"


def table(report: Dict[str, Any]) -> str:
    res = report["results"]
    ours, theirs = res.get(OURS, {}), res.get(JUPYTER, {})
    rows: List[str] = [
        "| Benchmark | GPU Workbench | Jupyter | ours / Jupyter | Goal |",
        "|---|---|---|---|---|",
    ]

    def timed(label: str, path: str, fmt: Callable[[Optional[float]], str], goal: str) -> None:
        a, b = dig(ours, path), dig(theirs, path)
        rows.append(f"| {label} | {fmt(a)} | {fmt(b)} | {ratio(a, b)} | {goal} |")

    n = dig(ours, "roundTrip/seconds/n") or dig(theirs, "roundTrip/seconds/n") or 0
    timed(f"`1+1` round trip p50 (n={n})", "roundTrip/seconds/p50", ms, f"≤ 0.3{TIMES}")
    timed(f"`1+1` round trip p99 (n={n})", "roundTrip/seconds/p99", ms, "")
    runs = dig(ours, "coldStart/firstResult/n") or dig(theirs, "coldStart/firstResult/n") or 0
    timed(
        f"Cold start → first `1+1` result, median of {runs}",
        "coldStart/firstResult/p50",
        ms,
        f"≤ 0.25{TIMES}",
    )
    timed("… of which start until ready", "coldStart/ready/p50", ms, "")
    a = dig(ours, "coldStart/firstResultWithBackendStart/p50")
    rows.append(
        f"| … GPU Workbench including spawning its backend | {ms(a)} | (no equivalent) | | |"
    )
    runs = len(dig(ours, "throughput/runs") or dig(theirs, "throughput/runs") or [])
    timed(
        f"200,000 lines ({EXPECTED_BYTES / 1e6:.0f} MB) to the last byte, median of {runs}",
        "throughput/secondsToLastByte/p50",
        secs,
        f"≥ 3{TIMES} faster (≤ 0.33{TIMES})",
    )
    timed("… to the execution's reply", "throughput/secondsToReply/p50", secs, "")

    def lost(data: Dict[str, Any]) -> str:
        entry = data.get("throughput") or {}
        if "bytesLostMax" not in entry:
            return "n/a"
        exact = "content exact" if entry["allExact"] else "content differs"
        return f"{entry['bytesLostMax']:,} (max per run; {exact})"

    rows.append(f"| … bytes lost of {EXPECTED_BYTES:,} | {lost(ours)} | {lost(theirs)} | | 0 |")
    floor = report.get("floor") or {}
    if floor.get("p50") is not None:
        rows.append(
            f"| … floor: the same loop in plain Python, line-buffered into a pipe, no kernel "
            f"| {secs(floor['p50'])} | {secs(floor['p50'])} | | |"
        )
    for name, code in BUSY_CODES.items():
        runs = dig(ours, f"interrupt.{name}/seconds/n") or dig(
            theirs, f"interrupt.{name}/seconds/n"
        )
        timed(
            f"Interrupt `{code}` → reply, p50 of {runs or 0}",
            f"interrupt.{name}/seconds/p50",
            ms,
            "< 100 ms (ours)",
        )
    lines = ["\n".join(rows), ""]
    errors = report.get("errors") or {}
    for key, errs in errors.items():
        for bench, message in errs.items():
            lines.append(f"- {LABELS[key]} {bench} failed: `{message}`")
    m = report["machine"]
    v = report["versions"]
    ram = f"{m['ramBytes'] / 2**30:.0f} GiB" if m.get("ramBytes") else "?"
    lines.append(
        f"Machine: {m['cpu']}, {m['cores']} cores ({m['usableCores']} usable), {ram} RAM, "
        f"{m['os']}. Bench client {m['benchPython']} ({m['benchExecutable']}); both kernels "
        f"and the backend on {report['kernelPython']} (Python {report['kernelPythonVersion']}). "
        + ", ".join(f"{k} {val}" for k, val in sorted(v.items()))
        + f". {report['date']}. Mode: {'quick' if report['quick'] else 'full'}."
    )
    lines.append(
        "Jupyter is driven by jupyter_client's KernelManager + BlockingKernelClient with default "
        "settings and no server; jupyter_server would additionally rate-limit IOPub "
        "(1 MB/s data, 1000 msg/s over 3 s windows) and drop output beyond that."
    )
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="200 round trips, 2 runs each")
    parser.add_argument(
        "--json", metavar="OUT", help="results file (default bench/results/kernels.json)"
    )
    parser.add_argument(
        "--python", default=sys.executable, help="interpreter of both kernels and the backend"
    )
    parser.add_argument("--tools", default=f"{OURS},{JUPYTER}", help="comma-separated subset")
    parser.add_argument(
        "--only", default="", help="comma-separated subset of roundtrip,cold,throughput,interrupt"
    )
    args = parser.parse_args(argv)
    keys = [k.strip() for k in args.tools.split(",") if k.strip()]
    benches = {b.strip() for b in args.only.split(",") if b.strip()} or {
        "roundtrip",
        "cold",
        "throughput",
        "interrupt",
    }
    python = str(Path(args.python).absolute())
    out = Path(args.json) if args.json else BENCH_DIR / "results" / "kernels.json"

    workdir = Path(tempfile.mkdtemp(prefix="gpuwb-kbench-"))
    tools: Dict[str, Any] = {}
    runner: Optional[Runner] = None

    def on_term(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_term)
    try:
        if OURS in keys:
            tools[OURS] = WorkbenchTool(python, workdir / "gpuwb")
            (workdir / "gpuwb").mkdir()
        if JUPYTER in keys:
            (workdir / "jupyter").mkdir()
            tools[JUPYTER] = JupyterTool(python, workdir / "jupyter")
        runner = Runner(tools, args.quick, python)
        runner.open()
        if "roundtrip" in benches:
            runner.round_trips()
        if "cold" in benches:
            runner.cold_starts()
        if "throughput" in benches:
            runner.throughputs()
        if "interrupt" in benches:
            runner.interrupts()
    finally:
        if runner is not None:
            runner.close()
        else:
            for tool in tools.values():
                tool.close()
        shutil.rmtree(workdir, ignore_errors=True)

    versions: Dict[str, str] = {}
    for tool in tools.values():
        try:
            versions.update(tool.versions())
        except Exception as exc:
            log(f"versions: {exc!r}")
    report = {
        "date": time.strftime("%Y-%m-%d"),
        "quick": args.quick,
        "machine": machine(),
        "kernelPython": python,
        "kernelPythonVersion": kernel_python_version(python),
        "versions": versions,
        "settleSeconds": SETTLE_SECONDS,
        "results": runner.results,
        "floor": runner.floor,
        "errors": {k: v for k, v in runner.errors.items() if v},
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1) + "\n")
    print(table(report))
    log(f"raw results: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
