"""GPU Workbench kernel worker (see PROTOCOL.md in this folder for the contract).

One self-contained file, standard library only, Python 3.8+. It is copied to remote machines
and started in the user's interpreter:

    python worker.py --dir KDIR --id ID [--cwd DIR] [--idle-timeout S] [--name NAME]
                     [--journal-max-bytes N]

It forks at once: the parent becomes the monitor (waits for the kernel, records its death),
the child the kernel (own process group; user code on the main thread; one I/O thread that
owns the socket, the journal broadcast and the stdout/stderr pipes).
"""

from __future__ import annotations

import argparse
import ast
import base64
import bisect
import builtins
import codecs
import collections
import io
import json
import linecache
import os
import reprlib
import selectors
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
import types
import warnings
from array import array
from typing import Any, Callable, Deque, Dict, List, Optional, Set, Tuple

PROTOCOL_VERSION = 1
STREAM_CHARS = 65536  # a stream message holds at most this many characters...
PIPE_POLL_S = 0.01  # ...and what one look at the pipes found: while output flows they are
# read this often (not once per write); the first write after a quiet spell goes out at once
READ_CHUNK = 1 << 20
PIPE_SIZE = 1 << 20
CLIENT_MAX_BUFFER = 256 << 20  # bytes queued for a client that does not read; then dropped
VARIABLES_BUDGET_S = 0.15
REPR_CHARS = 120
INDEX_STRIDE = 32  # the journal index keeps the offset of every 32nd line
SHUTDOWN_GRACE_S = 5.0
CO_COROUTINE = 0x80
_ALLOW_TOP_LEVEL_AWAIT = getattr(ast, "PyCF_ALLOW_TOP_LEVEL_AWAIT", 0)
_SEQ_PREFIX = b'{"seq":'

_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=repr)
_ENCODER_ASCII = json.JSONEncoder(ensure_ascii=True, separators=(",", ":"), default=repr)


def _dumps(obj: Any) -> bytes:
    text = _ENCODER.encode(obj)
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates: escape them instead
        return _ENCODER_ASCII.encode(obj).encode("ascii")


def _now_ms(t0: float) -> float:
    return round((time.perf_counter() - t0) * 1000.0, 3)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def _atomic_write_json(path: str, obj: Any) -> None:
    tmp = "%s.tmp-%d" % (path, os.getpid())
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(obj, f)
    os.replace(tmp, path)


def _signal_name(num: int) -> str:
    try:
        return signal.Signals(num).name
    except ValueError:
        return "SIG%d" % num


# ---------------------------------------------------------------------------------------------
# Journal


def _line_seq(data: bytes, start: int, end: int) -> int:
    """The seq of the journal line data[start:end] (lines start with {"seq":N,); -1 if none."""
    if data.startswith(_SEQ_PREFIX, start):
        comma = data.find(b",", start + 7, min(end, start + 40))
        if comma > start + 7:
            try:
                return int(data[start + 7 : comma])
            except ValueError:
                pass
    try:
        obj = json.loads(data[start:end])
        seq = obj.get("seq") if isinstance(obj, dict) else None
        if isinstance(seq, int):
            return seq
    except ValueError:
        pass
    return -1


def _line_type(line: bytes) -> bytes:
    i = line.find(b',"type":"', 7, 48)
    if i < 0:
        return b""
    j = line.find(b'"', i + 9)
    return line[i + 9 : j] if j > 0 else b""


class _JournalFile:
    """One journal file with a sparse (seq, offset) index."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.size = 0
        self.first = 0  # 0: no line yet
        self.last = 0
        self.count = 0
        self.idx_seq = array("q")
        self.idx_off = array("q")

    def note(self, seq: int, offset: int, length: int) -> None:
        if self.first == 0:
            self.first = seq
        if self.count % INDEX_STRIDE == 0:
            self.idx_seq.append(seq)
            self.idx_off.append(offset)
        self.count += 1
        self.last = seq
        self.size = offset + length

    def scan(self) -> None:
        """Index an existing file; a torn last line (writer killed mid-write) is cut off."""
        try:
            with open(self.path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            return
        end = data.rfind(b"\n") + 1
        if end < len(data):
            try:
                os.truncate(self.path, end)
            except OSError:
                pass
        pos = 0
        while pos < end:
            nl = data.index(b"\n", pos)
            seq = _line_seq(data, pos, nl)
            if seq > 0:
                self.note(seq, pos, nl + 1 - pos)
            pos = nl + 1
        self.size = end

    def read_after(self, since: int) -> bytes:
        if self.count == 0 or self.last <= since:
            return b""
        i = bisect.bisect_right(self.idx_seq, since) - 1
        start = self.idx_off[i] if i >= 0 else 0
        try:
            with open(self.path, "rb") as f:
                f.seek(start)
                data = f.read(self.size - start)
        except OSError:
            return b""
        pos = 0
        while pos < len(data):
            nl = data.find(b"\n", pos)
            if nl < 0 or _line_seq(data, pos, nl) > since:
                break
            pos = nl + 1
        return data[pos:]

    def lines(self) -> List[bytes]:
        try:
            with open(self.path, "rb") as f:
                data = f.read()
        except OSError:
            return []
        return data.split(b"\n")


class Journal:
    """journal.jsonl (+ journal.1.jsonl after rotation): every journaled message, with seq."""

    def __init__(self, kdir: str, max_bytes: int) -> None:
        self.max_bytes = max(int(max_bytes), 4096)
        self.cur_path = os.path.join(kdir, "journal.jsonl")
        self.old_path = os.path.join(kdir, "journal.1.jsonl")
        self.old = _JournalFile(self.old_path)
        self.old.scan()
        self.cur = _JournalFile(self.cur_path)
        self.cur.scan()
        self.last_seq = max(self.cur.last, self.old.last)
        self.fd = os.open(self.cur_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        self.failed = False

    def first_seq(self) -> int:
        return self.old.first or self.cur.first or self.last_seq + 1

    def _flush(self, chunk: List[bytes]) -> None:
        if not chunk:
            return
        try:
            _write_all(self.fd, b"".join(chunk))
        except OSError as e:
            if not self.failed:
                self.failed = True
                _log("journal write failed: %r" % (e,))

    def _rotate(self) -> None:
        try:
            os.close(self.fd)
            os.replace(self.cur_path, self.old_path)
        except OSError as e:
            _log("journal rotation failed: %r" % (e,))
        self.cur.path = self.old_path
        self.old = self.cur
        self.cur = _JournalFile(self.cur_path)
        self.fd = os.open(self.cur_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_TRUNC, 0o600)

    def write(self, msgs: List[Dict[str, Any]]) -> bytes:
        """Give each message its seq, append them (one write per batch), return the lines."""
        out: List[bytes] = []
        chunk: List[bytes] = []
        for m in msgs:
            self.last_seq += 1
            m["seq"] = self.last_seq
            line = _dumps(m) + b"\n"
            if self.cur.size > 0 and self.cur.size + len(line) > self.max_bytes:
                self._flush(chunk)
                chunk = []
                self._rotate()
            self.cur.note(self.last_seq, self.cur.size, len(line))
            chunk.append(line)
            out.append(line)
        self._flush(chunk)
        return out[0] if len(out) == 1 else b"".join(out)

    def replay(self, since: int) -> Tuple[Optional[Tuple[int, int]], bytes]:
        first = self.first_seq()
        gap = (since + 1, first - 1) if since + 1 < first else None
        return gap, self.old.read_after(since) + self.cur.read_after(since)

    def last_message(self) -> Optional[Dict[str, Any]]:
        for jf in (self.cur, self.old):
            for line in reversed(jf.lines()):
                if line.strip():
                    try:
                        obj = json.loads(line)
                    except ValueError:
                        return None
                    return obj if isinstance(obj, dict) else None
        return None

    def unfinished(self) -> Tuple[Optional[str], Optional[int], List[str]]:
        """(running executionId, its executionCount, queued ids) from the last status message."""
        replied: Set[str] = set()
        counts: Dict[str, Any] = {}
        found: Optional[Dict[str, Any]] = None
        for jf in (self.cur, self.old):
            for line in reversed(jf.lines()):
                kind = _line_type(line)
                if kind not in (b"status", b"reply", b"execute_input"):
                    continue
                try:
                    obj = json.loads(line)
                except ValueError:
                    continue
                if found is not None:
                    # Looking further back for the running execution's execute_input.
                    if kind == b"execute_input" and obj.get("executionId") == found["running"]:
                        return found["running"], obj.get("executionCount"), found["queue"]
                    continue
                if kind == b"reply":
                    replied.add(obj.get("executionId"))
                elif kind == b"execute_input":
                    counts.setdefault(obj.get("executionId"), obj.get("executionCount"))
                else:
                    running = obj.get("executionId") if obj.get("state") == "busy" else None
                    queue = [q for q in obj.get("queue") or [] if q not in replied]
                    if running is None or running in replied:
                        return None, None, queue
                    if running in counts:
                        return running, counts[running], queue
                    found = {"running": running, "queue": queue}
        if found is not None:
            return found["running"], None, found["queue"]
        return None, None, []

    def close(self) -> None:
        try:
            os.close(self.fd)
        except OSError:
            pass


# ---------------------------------------------------------------------------------------------
# Logging of the worker's own problems (stderr.log, never the user's pipes)

_LOG: Any = None


def _log(text: str) -> None:
    stream = _LOG if _LOG is not None else sys.__stderr__
    try:
        if stream is not None:
            stream.write(
                "[gpuwb worker %d %s] %s\n" % (os.getpid(), time.strftime("%H:%M:%S"), text)
            )
            stream.flush()
    except Exception:
        pass


def _log_exc(context: str) -> None:
    _log("%s:\n%s" % (context, traceback.format_exc()))


# ---------------------------------------------------------------------------------------------
# Rich display helpers

_REPR_METHODS = (
    ("_repr_html_", "text/html"),
    ("_repr_markdown_", "text/markdown"),
    ("_repr_svg_", "image/svg+xml"),
    ("_repr_png_", "image/png"),
    ("_repr_jpeg_", "image/jpeg"),
    ("_repr_latex_", "text/latex"),
    ("_repr_json_", "application/json"),
)
_BINARY_MIMES = ("image/png", "image/jpeg", "image/gif", "image/webp", "application/pdf")


def _real_method(obj: Any, name: str) -> Optional[Callable[..., Any]]:
    try:
        method = getattr(obj, name, None)
    except Exception:
        return None
    return method if callable(method) else None


def _lies_about_attributes(obj: Any) -> bool:
    """Objects whose __getattr__ answers every name (mocks, proxies) get text/plain only."""
    try:
        return hasattr(obj, "_ipython_canary_method_should_not_exist_")
    except Exception:
        return True


def _normalize_bundle(data: Dict[str, Any]) -> Dict[str, Any]:
    out: Dict[str, Any] = {}
    for mime, value in data.items():
        if not isinstance(mime, str) or value is None:
            continue
        if mime == "application/json" or mime.endswith("+json"):
            try:
                json.dumps(value, allow_nan=False)
            except (TypeError, ValueError):
                continue
            out[mime] = value
        elif isinstance(value, (bytes, bytearray, memoryview)):
            raw = bytes(value)
            if mime in _BINARY_MIMES or not mime.startswith("text/"):
                out[mime] = base64.b64encode(raw).decode("ascii")
            else:
                out[mime] = raw.decode("utf-8", "replace")
        elif isinstance(value, str):
            out[mime] = value
        else:
            out[mime] = str(value)
    return out


def _report_formatter_error(what: str) -> None:
    try:
        sys.stderr.write("%s failed:\n%s" % (what, traceback.format_exc()))
        sys.stderr.flush()
    except Exception:
        pass


def _type_name(t: type) -> str:
    mod = getattr(t, "__module__", None) or ""
    qual = getattr(t, "__qualname__", None) or getattr(t, "__name__", "?")
    if mod == "builtins" or not mod:
        return qual
    top = mod.split(".", 1)[0]
    top_mod = sys.modules.get(top)
    try:
        if top_mod is not None and "." not in qual and getattr(top_mod, qual, None) is t:
            return "%s.%s" % (top, qual)
    except Exception:
        pass
    return "%s.%s" % (mod, qual)


_SIZED_TYPES: Tuple[type, ...] = (
    list,
    tuple,
    dict,
    set,
    frozenset,
    str,
    bytes,
    bytearray,
    range,
    collections.deque,
)


class _ShortRepr(reprlib.Repr):
    """reprlib with bounded output for bytes too (it would repr a 10 GB bytes in full)."""

    def __init__(self) -> None:
        super().__init__()
        self.maxlevel = 3
        self.maxlist = self.maxtuple = self.maxset = self.maxfrozenset = 16
        self.maxdeque = self.maxarray = 16
        self.maxdict = 10
        self.maxstring = REPR_CHARS
        self.maxlong = 60
        self.maxother = REPR_CHARS

    def repr_bytes(self, x: bytes, level: int) -> str:
        if len(x) <= REPR_CHARS:
            return repr(x)
        return repr(x[:REPR_CHARS]) + "..."

    def repr_bytearray(self, x: bytearray, level: int) -> str:
        if len(x) <= REPR_CHARS:
            return repr(x)
        return repr(x[:REPR_CHARS]) + "..."


_REPR = _ShortRepr()


def _describe(name: str, value: Any) -> Dict[str, Any]:
    t = type(value)
    entry: Dict[str, Any] = {
        "name": name,
        "type": _type_name(t),
        "shape": None,
        "length": None,
        "dtype": None,
        "size": None,
        "repr": None,
    }
    shape = None
    if not isinstance(value, type):
        try:
            raw = getattr(value, "shape", None)
            if isinstance(raw, tuple) and all(isinstance(d, int) for d in raw):
                shape = [int(d) for d in raw]
        except Exception:
            shape = None
    if shape is not None:
        entry["shape"] = shape
        try:
            dtype = getattr(value, "dtype", None)
            if dtype is not None:
                entry["dtype"] = str(dtype)
        except Exception:
            pass
        try:
            nbytes = getattr(value, "nbytes", None)
            if isinstance(nbytes, int):
                entry["size"] = nbytes
            else:
                element_size: Any = getattr(value, "element_size", None)
                numel: Any = getattr(value, "numel", None)
                if callable(element_size) and callable(numel):
                    es, ne = element_size(), numel()
                    if isinstance(es, int) and isinstance(ne, int):
                        entry["size"] = es * ne
        except Exception:
            pass
        count = 1
        for d in shape:
            count *= d
        if count <= 16:
            try:
                entry["repr"] = _clip(repr(value))
            except Exception:
                entry["repr"] = None
        if entry["repr"] is None:
            entry["repr"] = "%s %s%s" % (
                entry["type"],
                "x".join(str(d) for d in shape) or "scalar",
                " " + entry["dtype"] if entry["dtype"] else "",
            )
        return entry
    if isinstance(value, _SIZED_TYPES):
        sized: Any = value
        try:
            entry["length"] = len(sized)
        except Exception:
            pass
    try:
        entry["size"] = sys.getsizeof(value)
    except Exception:
        pass
    try:
        entry["repr"] = _clip(_REPR.repr(value))
    except Exception as e:
        entry["repr"] = "<repr failed: %s>" % type(e).__name__
    return entry


def _clip(text: str) -> str:
    text = text.replace("\n", " ")
    return text if len(text) <= REPR_CHARS else text[: REPR_CHARS - 3] + "..."


def _transform_shell_lines(code: str) -> str:
    """`!cmd` lines (after indentation) become calls that run cmd in the shell; same line count."""
    lines = code.split("\n")
    changed = False
    for i, line in enumerate(lines):
        stripped = line.lstrip()
        if stripped.startswith("!") and not stripped.startswith("!="):
            indent = line[: len(line) - len(stripped)]
            cmd = stripped[1:].rstrip("\r")
            lines[i] = "%s__gpuwb_shell__(%r)" % (indent, cmd)
            changed = True
    return "\n".join(lines) if changed else code


def _filter_traceback(te: traceback.TracebackException, worker_file: str) -> None:
    seen: Set[int] = set()
    todo = [te]
    while todo:
        cur = todo.pop()
        if id(cur) in seen:
            continue
        seen.add(id(cur))
        cur.stack[:] = [f for f in cur.stack if f.filename != worker_file]
        for attr in ("__cause__", "__context__"):
            nxt = getattr(cur, attr, None)
            if nxt is not None:
                todo.append(nxt)
        for nxt in getattr(cur, "exceptions", None) or ():
            todo.append(nxt)


# ---------------------------------------------------------------------------------------------
# The kernel process


class _NullContext:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: Any) -> None:
        return None


class _Exit:
    def __init__(self, reason: str) -> None:
        self.reason = reason


class _Client:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.inbuf = bytearray()
        self.scan = 0
        self.out: Deque[memoryview] = collections.deque()
        self.out_size = 0
        self.ready = False  # hello done: receives live messages
        self.closed = False
        self.writing = False  # registered for EVENT_WRITE
        self.write_failed = False
        self.hello_done = False
        self.label = ""


class _Tag:
    def __init__(self, name: str) -> None:
        self.name = name


_LISTEN = _Tag("listen")
_WAKE = _Tag("wake")
_PIPE = _Tag("pipe")

_WORKER_FILE = (lambda: None).__code__.co_filename


class Kernel:
    def __init__(
        self, args: argparse.Namespace, kdir: str, sock_path: str, pipes: Tuple[int, int]
    ) -> None:
        self.args = args
        self.kdir = kdir
        self.sock_path = sock_path
        self.kernel_id = args.id
        self.idle_timeout = float(args.idle_timeout or 0)
        self.lock = threading.RLock()
        self.cond = threading.Condition(self.lock)
        self.queue: Deque[Any] = collections.deque()
        self.running: Optional[str] = None
        # Outcomes of recent executions, for the `after` field of execute (see PROTOCOL.md).
        self.outcomes: "collections.OrderedDict[str, str]" = collections.OrderedDict()
        self.last_eid: Optional[str] = None
        self.count = 0
        self.clients: List[_Client] = []
        self.dirty: Set[_Client] = set()
        self.journal = Journal(kdir, args.journal_max_bytes)
        self.pipe_fds = pipes  # read ends: (stdout, stderr)
        self.pipe_eof: Set[int] = set()
        self.decoders = [codecs.getincrementaldecoder("utf-8")("replace") for _ in pipes]
        self.pending: List[List[Any]] = []  # [executionId, name, [texts]] in order
        self.pending_chars = 0
        self.pipes_paused_until = 0.0
        self.last_activity = time.monotonic()
        self.exit_reason: Optional[str] = None
        self.force_exit_at = 0.0
        self.finished = False
        self.input_waiting: Optional[str] = None
        self.input_value: Optional[str] = None
        self.interruptible = False
        self.critical = 0
        self.deferred_interrupt = False
        # Tests only (GPUWB_DEBUG_CELL_START_DELAY, seconds): a pause after a cell's "busy"
        # and before its code, where an interrupt must not be lost.
        try:
            self.start_delay = max(0.0, float(os.environ.get("GPUWB_DEBUG_CELL_START_DELAY") or 0))
        except ValueError:
            self.start_delay = 0.0
        self.main_ident = threading.get_ident()
        self.io_ident = -1
        self.woken = False
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        os.set_blocking(self.wake_w, False)
        self.sel = selectors.DefaultSelector()
        self.listener: Optional[socket.socket] = None
        self.fflush: Optional[Callable[..., Any]] = None
        self.loop: Any = None
        self.cell_figures: Set[int] = set()
        self.info: Dict[str, Any] = {}
        self.module = types.ModuleType("__main__")
        self.module.__dict__["__builtins__"] = builtins
        self.ns: Dict[str, Any] = self.module.__dict__

    # ---- setup -------------------------------------------------------------------------------

    def setup_process(self) -> None:
        os.environ.setdefault("MPLBACKEND", "Agg")
        os.environ.setdefault("PYTHONUNBUFFERED", "1")
        if self.args.cwd:
            os.chdir(self.args.cwd)
        # The user's imports resolve from the working directory, not from this file's folder.
        here = os.path.dirname(os.path.abspath(__file__))
        sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != here]
        sys.path.insert(0, "")
        sys.argv = [""]
        sys.modules["__main__"] = self.module
        builtins.display = self.display  # type: ignore[attr-defined]
        builtins.input = self.input  # type: ignore[assignment]
        builtins.__gpuwb_shell__ = self.shell  # type: ignore[attr-defined]
        try:
            import getpass

            getpass.getpass = self.getpass  # type: ignore[assignment]
        except Exception:
            pass
        sys.meta_path.insert(0, _PyplotHook(self))  # type: ignore[arg-type]
        signal.signal(signal.SIGINT, self._on_sigint)
        try:
            import ctypes

            libc = ctypes.CDLL(None)
            self.fflush = libc.fflush
            for name in ("stdout", "stderr"):
                try:
                    stream = ctypes.c_void_p.in_dll(libc, name)
                    libc.setvbuf(stream, None, 1, 0)  # _IOLBF: C output streams like a terminal
                except Exception:
                    pass
        except Exception:
            self.fflush = None

    def listen(self) -> None:
        try:
            os.unlink(self.sock_path)
        except FileNotFoundError:
            pass
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old_umask = os.umask(0o177)
        try:
            sock.bind(self.sock_path)
        finally:
            os.umask(old_umask)
        sock.listen(64)
        sock.setblocking(False)
        self.listener = sock

    def write_kernel_json(self) -> None:
        self.info = {
            "kernelId": self.kernel_id,
            "pid": os.getpid(),
            "pgid": os.getpgid(0),
            "monitorPid": os.getppid(),
            "python": sys.executable,
            "pythonVersion": "%d.%d.%d" % sys.version_info[:3],
            "cwd": os.getcwd(),
            "socket": self.sock_path,
            "createdAt": time.time(),
            "idleTimeoutSeconds": self.idle_timeout,
            "protocol": PROTOCOL_VERSION,
            "name": self.args.name,
        }
        _atomic_write_json(os.path.join(self.kdir, "kernel.json"), self.info)
        self.last_activity = time.monotonic()  # the idle clock starts once clients can come

    def serve(self) -> None:
        with self.lock:
            self._emit_locked(
                [
                    {
                        "seq": 0,
                        "type": "start",
                        "pid": os.getpid(),
                        "python": sys.executable,
                        "pythonVersion": "%d.%d.%d" % sys.version_info[:3],
                        "cwd": os.getcwd(),
                    }
                ]
            )
        self.listen()
        thread = threading.Thread(target=self._io_main, name="gpuwb-io", daemon=True)
        thread.start()
        self.write_kernel_json()
        self._main_loop()

    # ---- interrupt handling -----------------------------------------------------------------

    def _on_sigint(self, signum: int, frame: Any) -> None:
        if not self.interruptible:
            # A cell taken from the queue but not yet running its code (its "busy" is already
            # out): the interrupt is for it, so it is kept until the code starts.
            if self.running is not None:
                self.deferred_interrupt = True
            return
        if self.critical:
            self.deferred_interrupt = True
            return
        raise KeyboardInterrupt

    def _enter(self) -> bool:
        if threading.get_ident() == self.main_ident:
            self.critical += 1
            return True
        return False

    def _leave(self, entered: bool) -> None:
        if not entered:
            return
        self.critical -= 1
        if self.critical == 0 and self.deferred_interrupt:
            self.deferred_interrupt = False
            if self.interruptible:
                raise KeyboardInterrupt

    # ---- output path: pipes, journal, clients ------------------------------------------------

    def _current_eid(self) -> Optional[str]:
        return self.running if self.running is not None else self.last_eid

    def _read_pipes_locked(self) -> bool:
        got = False
        for i, fd in enumerate(self.pipe_fds):
            for _ in range(8):
                try:
                    data = os.read(fd, READ_CHUNK)
                except (BlockingIOError, InterruptedError):
                    break
                except OSError:
                    break
                if not data:
                    self.pipe_eof.add(fd)  # the user closed fd 1 or 2 (and so did its children)
                    break
                got = True
                text = self.decoders[i].decode(data)
                if text:
                    self._pending_add("stdout" if i == 0 else "stderr", text)
                if len(data) < READ_CHUNK:
                    break
        return got

    def _pending_add(self, name: str, text: str) -> None:
        eid = self._current_eid()
        last = self.pending[-1] if self.pending else None
        if last is not None and last[0] == eid and last[1] == name:
            last[2].append(text)
        else:
            self.pending.append([eid, name, [text]])
        self.pending_chars += len(text)
        if self.pending_chars >= STREAM_CHARS:
            self._flush_pending_locked()

    def _flush_pending_locked(self) -> None:
        if not self.pending:
            return
        msgs: List[Dict[str, Any]] = []
        for eid, name, parts in self.pending:
            text = "".join(parts)
            for i in range(0, len(text), STREAM_CHARS):
                msgs.append(
                    {
                        "seq": 0,
                        "type": "stream",
                        "executionId": eid,
                        "name": name,
                        "text": text[i : i + STREAM_CHARS],
                    }
                )
        self.pending = []
        self.pending_chars = 0
        self._emit_locked(msgs)

    def _emit_locked(self, msgs: List[Dict[str, Any]]) -> None:
        if not msgs:
            return
        if self.pending and msgs and msgs[0].get("type") != "stream":
            self._flush_pending_locked()
        blob = self.journal.write(msgs)
        for c in self.clients:
            if c.ready:
                self._send_locked(c, blob)

    def _send_locked(self, c: _Client, data: bytes) -> None:
        if c.closed or c.write_failed:
            return
        view = memoryview(data)
        if not c.out:
            try:
                n = c.sock.send(view)
            except (BlockingIOError, InterruptedError):
                n = 0
            except OSError:
                self._write_failed_locked(c)
                return
            if n == len(view):
                return
            view = view[n:]
        c.out.append(view)
        c.out_size += len(view)
        if c.out_size > CLIENT_MAX_BUFFER:
            _log("client %r does not read: dropped with %d bytes queued" % (c.label, c.out_size))
            self._drop_locked(c)
            return
        if not c.writing:
            self.dirty.add(c)
            self._wake()

    def _send_obj_locked(self, c: _Client, obj: Dict[str, Any]) -> None:
        self._send_locked(c, _dumps(obj) + b"\n")

    def _wake(self) -> None:
        if threading.get_ident() == self.io_ident or self.woken:
            return
        self.woken = True
        try:
            os.write(self.wake_w, b"x")
        except OSError:
            pass

    def _write_failed_locked(self, c: _Client) -> None:
        """The peer stopped reading (gone, most likely). Requests it sent before leaving are
        still in the socket: keep reading until EOF, send it nothing more."""
        c.write_failed = True
        c.ready = False
        c.out.clear()
        c.out_size = 0
        if c in self.clients:
            self.clients.remove(c)
            if not self.clients:
                self.last_activity = time.monotonic()
        if c.writing:
            self.dirty.add(c)
            self._wake()

    def _drop_locked(self, c: _Client) -> None:
        if c.closed:
            return
        c.closed = True
        c.out.clear()
        c.out_size = 0
        if c in self.clients:
            self.clients.remove(c)
        if not self.clients:
            self.last_activity = time.monotonic()
        if threading.get_ident() == self.io_ident:
            self._close_client(c)
        else:
            self.dirty.add(c)
            self._wake()

    def _close_client(self, c: _Client) -> None:
        try:
            self.sel.unregister(c.sock)
        except (KeyError, ValueError):
            pass
        try:
            c.sock.close()
        except OSError:
            pass

    def _main_emit(self, msgs: List[Dict[str, Any]], sync: bool = True) -> None:
        """Emit from the thread running user code: drain the pipes first so order holds."""
        entered = self._enter()
        try:
            if sync:
                self._flush_user_streams()
            with self.lock:
                if sync:
                    self._read_pipes_locked()
                    self._flush_pending_locked()
                if msgs:
                    self._emit_locked(msgs)
        finally:
            self._leave(entered)

    def _flush_user_streams(self) -> None:
        seen = []
        for s in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
            if s is None or any(s is x for x in seen):
                continue
            seen.append(s)
            try:
                s.flush()
            except Exception:
                pass
        if self.fflush is not None:
            try:
                self.fflush(None)
            except Exception:
                pass

    def _status_locked(self) -> Dict[str, Any]:
        queue = [r["executionId"] for r in self.queue if isinstance(r, dict)]
        if self.running is not None:
            return {
                "seq": 0,
                "type": "status",
                "state": "busy",
                "executionId": self.running,
                "queue": queue,
            }
        return {"seq": 0, "type": "status", "state": "idle", "queue": queue}

    def _remember(self, eid: str, status: str) -> None:
        """Keep recent outcomes for `after` checks (bounded)."""
        self.outcomes[eid] = status
        while len(self.outcomes) > 4096:
            self.outcomes.popitem(last=False)

    def _abort_queue_locked(self) -> List[Dict[str, Any]]:
        msgs = []
        keep: Deque[Any] = collections.deque()
        for r in self.queue:
            if isinstance(r, dict):
                self._remember(r["executionId"], "aborted")
                msgs.append(_reply(r["executionId"], "aborted", None, 0.0))
            else:
                keep.append(r)
        self.queue = keep
        return msgs

    # ---- I/O thread --------------------------------------------------------------------------

    def _io_main(self) -> None:
        self.io_ident = threading.get_ident()
        try:
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        except Exception:
            pass
        try:
            self._io_loop()
        except BaseException:
            _log_exc("I/O thread crashed; the kernel cannot serve clients and exits")
            os._exit(70)

    def _io_loop(self) -> None:
        sel = self.sel
        assert self.listener is not None
        sel.register(self.listener, selectors.EVENT_READ, _LISTEN)
        sel.register(self.wake_r, selectors.EVENT_READ, _WAKE)
        self._register_pipes()
        while True:
            timeout = self._io_timeout(time.monotonic())
            events = sel.select(timeout)
            for key, mask in events:
                tag = key.data
                try:
                    if tag is _PIPE:
                        self._on_pipes_readable()
                    elif tag is _WAKE:
                        try:
                            while os.read(self.wake_r, 4096):
                                pass
                        except OSError:
                            pass
                        self.woken = False
                    elif tag is _LISTEN:
                        self._accept()
                    elif isinstance(tag, _Client):
                        if mask & selectors.EVENT_READ and not tag.closed:
                            self._on_client_readable(tag)
                        if mask & selectors.EVENT_WRITE and not tag.closed:
                            self._on_client_writable(tag)
                except Exception:
                    _log_exc("I/O event failed")
            try:
                self._housekeeping(time.monotonic())
            except Exception:
                _log_exc("I/O housekeeping failed")

    def _io_timeout(self, now: float) -> Optional[float]:
        deadlines = []
        if self.pipes_paused_until:
            deadlines.append(self.pipes_paused_until)
        if self.idle_timeout > 0 and self.exit_reason is None:
            deadlines.append(self.last_activity + self.idle_timeout)
        if self.force_exit_at:
            deadlines.append(self.force_exit_at)
        if not deadlines:
            return None
        return max(0.0, min(deadlines) - now)

    def _register_pipes(self) -> None:
        for fd in self.pipe_fds:
            if fd not in self.pipe_eof:
                self.sel.register(fd, selectors.EVENT_READ, _PIPE)

    def _unregister_pipes(self) -> None:
        for fd in self.pipe_fds:
            try:
                self.sel.unregister(fd)
            except (KeyError, ValueError):
                pass

    def _on_pipes_readable(self) -> None:
        if self.pipes_paused_until:
            return
        with self.lock:
            self._read_pipes_locked()
            self._flush_pending_locked()
        # Output tends to come in bursts of small writes: rather than waking per write, look
        # again shortly and send what accumulated (see _housekeeping). What was read is
        # journaled at once, so a kernel that dies right after loses at most one poll's worth.
        self._unregister_pipes()
        self.pipes_paused_until = time.monotonic() + PIPE_POLL_S

    def _housekeeping(self, now: float) -> None:
        if self.pipes_paused_until and now >= self.pipes_paused_until:
            with self.lock:
                got = self._read_pipes_locked()
                self._flush_pending_locked()
                self.pipes_paused_until = now + PIPE_POLL_S if got else 0.0
            if not self.pipes_paused_until:
                self._register_pipes()
        if self.dirty:
            with self.lock:
                dirty, self.dirty = self.dirty, set()
                for c in dirty:
                    if c.closed:
                        self._close_client(c)
                    elif c.out and not c.writing:
                        c.writing = True
                        self.sel.modify(c.sock, selectors.EVENT_READ | selectors.EVENT_WRITE, c)
                    elif c.writing and not c.out:
                        c.writing = False
                        self.sel.modify(c.sock, selectors.EVENT_READ, c)
        if (
            self.idle_timeout > 0
            and self.exit_reason is None
            and now - self.last_activity >= self.idle_timeout
        ):
            with self.lock:
                if not self.clients and self.running is None and not self.queue:
                    self._request_exit_locked("idle")
                else:
                    self.last_activity = now
        if self.force_exit_at and now >= self.force_exit_at:
            _log("shutdown: user code did not stop within %.0fs; exiting" % SHUTDOWN_GRACE_S)
            self._finish(self.exit_reason or "shutdown", forced=True)

    def _accept(self) -> None:
        assert self.listener is not None
        while True:
            try:
                sock, _ = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            sock.setblocking(False)
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
            except OSError:
                pass
            c = _Client(sock)
            self.sel.register(sock, selectors.EVENT_READ, c)
            with self.lock:
                self.clients.append(c)
                self.last_activity = time.monotonic()

    def _on_client_readable(self, c: _Client) -> None:
        try:
            data = c.sock.recv(READ_CHUNK)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            with self.lock:
                self._drop_locked(c)
            return
        c.inbuf += data
        while not c.closed:
            nl = c.inbuf.find(b"\n", c.scan)
            if nl < 0:
                c.scan = len(c.inbuf)
                return
            line = bytes(c.inbuf[:nl])
            del c.inbuf[: nl + 1]
            c.scan = 0
            if line.strip():
                try:
                    self._handle_line(c, line)
                except Exception:
                    _log_exc("handling a client message failed")
                    with self.lock:
                        self._send_obj_locked(
                            c,
                            {
                                "type": "protocol_error",
                                "message": "internal error (see stderr.log)",
                            },
                        )

    def _on_client_writable(self, c: _Client) -> None:
        with self.lock:
            while c.out:
                buf = c.out[0]
                try:
                    n = c.sock.send(buf)
                except (BlockingIOError, InterruptedError):
                    return
                except OSError:
                    self._write_failed_locked(c)
                    return
                c.out_size -= n
                if n < len(buf):
                    c.out[0] = buf[n:]
                    return
                c.out.popleft()
            if c.writing and not c.closed:
                c.writing = False
                self.sel.modify(c.sock, selectors.EVENT_READ, c)

    def _protocol_error(self, c: _Client, message: str) -> None:
        with self.lock:
            self._send_obj_locked(c, {"type": "protocol_error", "message": message})

    def _handle_line(self, c: _Client, line: bytes) -> None:
        try:
            msg = json.loads(line)
        except ValueError as e:
            self._protocol_error(c, "malformed JSON: %s" % e)
            return
        if not isinstance(msg, dict):
            self._protocol_error(c, "a message must be a JSON object")
            return
        op = msg.get("op")
        if op == "hello":
            self._op_hello(c, msg)
            return
        if not c.hello_done:
            self._protocol_error(c, "the first message must be hello")
            return
        handler = self._OPS.get(op) if isinstance(op, str) else None
        if handler is None:
            self._protocol_error(c, "unknown op: %r" % (op,))
            return
        handler(self, c, msg)

    def _op_hello(self, c: _Client, msg: Dict[str, Any]) -> None:
        since = msg.get("since", 0)
        if since is None:
            since = 0
        if c.hello_done:
            self._protocol_error(c, "hello was already sent")
            return
        if not isinstance(since, int) or isinstance(since, bool) or since < 0:
            self._protocol_error(c, "hello.since must be an integer >= 0")
            return
        with self.lock:
            c.label = str(msg.get("client") or "")
            self._flush_pending_locked()
            self._send_obj_locked(
                c,
                {
                    "type": "welcome",
                    "kernel": self.info,
                    "firstSeq": self.journal.first_seq(),
                    "lastSeq": self.journal.last_seq,
                },
            )
            gap, data = self.journal.replay(since)
            if gap is not None:
                self._send_obj_locked(c, {"type": "gap", "from": gap[0], "to": gap[1]})
            if data:
                self._send_locked(c, data)
            c.hello_done = True
            c.ready = not c.write_failed

    def _op_execute(self, c: _Client, msg: Dict[str, Any]) -> None:
        eid = msg.get("executionId")
        code = msg.get("code")
        file = msg.get("file")
        line = msg.get("line", 0)
        if line is None:
            line = 0
        if not isinstance(eid, str) or not eid:
            self._protocol_error(c, "execute.executionId must be a non-empty string")
            return
        if not isinstance(code, str):
            self._protocol_error(c, "execute.code must be a string")
            return
        if file is not None and not isinstance(file, str):
            self._protocol_error(c, "execute.file must be a string or null")
            return
        if not isinstance(line, int) or isinstance(line, bool) or line < 0:
            self._protocol_error(c, "execute.line must be an integer >= 0")
            return
        req = {
            "executionId": eid,
            "code": code,
            "file": file or None,
            "line": line,
            "stopOnError": bool(msg.get("stopOnError", False)),
            "storeHistory": msg.get("storeHistory", True) is not False,
            "after": msg.get("after") if isinstance(msg.get("after"), str) else None,
        }
        with self.lock:
            if self.exit_reason is not None:
                self._emit_locked([_reply(eid, "aborted", None, 0.0)])
                return
            self.queue.append(req)
            self.cond.notify_all()
            if self.running is not None:
                self._emit_locked([self._status_locked()])

    def _op_input_reply(self, c: _Client, msg: Dict[str, Any]) -> None:
        value = msg.get("value")
        with self.lock:
            if self.input_waiting is None:
                self._send_obj_locked(
                    c, {"type": "protocol_error", "message": "no input is pending"}
                )
                return
            eid = msg.get("executionId")
            if eid is not None and eid != self.input_waiting:
                self._send_obj_locked(
                    c,
                    {"type": "protocol_error", "message": "input is pending for another execution"},
                )
                return
            self.input_value = (
                value if isinstance(value, str) else ("" if value is None else str(value))
            )
            self.cond.notify_all()

    def _op_clear_queue(self, c: _Client, msg: Dict[str, Any]) -> None:
        with self.lock:
            msgs = self._abort_queue_locked()
            if msgs:
                msgs.append(self._status_locked())
                self._emit_locked(msgs)

    def _op_variables(self, c: _Client, msg: Dict[str, Any]) -> None:
        limit = msg.get("limit", 200)
        if not isinstance(limit, int) or isinstance(limit, bool) or limit < 0:
            limit = 200
        variables, truncated = self.variables(limit)
        with self.lock:
            self._send_obj_locked(
                c,
                {
                    "type": "variables",
                    "requestId": msg.get("requestId"),
                    "variables": variables,
                    "truncated": truncated,
                },
            )

    def _op_ping(self, c: _Client, msg: Dict[str, Any]) -> None:
        with self.lock:
            self._send_obj_locked(c, {"type": "pong", "requestId": msg.get("requestId")})

    def _op_shutdown(self, c: _Client, msg: Dict[str, Any]) -> None:
        with self.lock:
            self._request_exit_locked("shutdown")

    _OPS: Dict[str, Callable[..., None]] = {
        "execute": _op_execute,
        "input_reply": _op_input_reply,
        "clear_queue": _op_clear_queue,
        "variables": _op_variables,
        "ping": _op_ping,
        "shutdown": _op_shutdown,
    }

    def _request_exit_locked(self, reason: str) -> None:
        if self.exit_reason is not None:
            return
        self.exit_reason = reason
        msgs = self._abort_queue_locked()
        if msgs:
            self._emit_locked(msgs)
        self.queue.append(_Exit(reason))
        self.cond.notify_all()
        if self.running is not None:
            self.force_exit_at = time.monotonic() + SHUTDOWN_GRACE_S
            try:
                os.kill(os.getpid(), signal.SIGINT)
            except OSError:
                pass

    def variables(self, limit: int) -> Tuple[List[Dict[str, Any]], bool]:
        t0 = time.monotonic()
        out: List[Dict[str, Any]] = []
        truncated = False
        items = list(self.ns.items())
        # Attribute reads below may warn; a warning written to a full stderr pipe from this
        # thread (the pipe's reader) would deadlock. catch_warnings is process-wide, so only
        # while no user code runs that could be changing the filters itself.
        idle = self.running is None
        guard: Any = warnings.catch_warnings() if idle else _NullContext()
        with guard:
            if idle:
                warnings.simplefilter("ignore")
            for name, value in items:
                if not isinstance(name, str) or name.startswith("_"):
                    continue
                if isinstance(value, types.ModuleType):
                    continue
                if len(out) >= limit or time.monotonic() - t0 > VARIABLES_BUDGET_S:
                    truncated = True
                    break
                try:
                    out.append(_describe(name, value))
                except Exception:
                    out.append({"name": name, "type": "?", "repr": "<unavailable>"})
        return out, truncated

    # ---- exit --------------------------------------------------------------------------------

    def _finish(self, reason: str, forced: bool = False) -> None:
        """Last words: drain output, journal `exit`, flush clients, remove the socket, exit 0."""
        self.lock.acquire()
        if self.finished:
            self.lock.release()
            return
        self.finished = True
        try:
            self._read_pipes_locked()
            msgs: List[Dict[str, Any]] = []
            if forced and self.running is not None:
                msgs.append(_reply(self.running, "interrupted", self.count, None))
            msgs.append({"seq": 0, "type": "exit", "reason": reason})
            self._emit_locked(msgs)
            self.journal.close()
            deadline = time.monotonic() + 2.0
            for c in list(self.clients):
                try:
                    c.sock.setblocking(True)
                    while c.out and time.monotonic() < deadline:
                        c.sock.settimeout(max(0.01, deadline - time.monotonic()))
                        n = c.sock.send(c.out[0])
                        if n < len(c.out[0]):
                            c.out[0] = c.out[0][n:]
                        else:
                            c.out.popleft()
                    c.sock.shutdown(socket.SHUT_RDWR)
                    c.sock.close()
                except OSError:
                    pass
            try:
                os.unlink(self.sock_path)
            except OSError:
                pass
        except BaseException:
            _log_exc("exit failed")
        finally:
            os._exit(0)

    # ---- main thread: executions ---------------------------------------------------------------

    def _main_loop(self) -> None:
        while True:
            try:
                with self.lock:
                    while not self.queue:
                        self.cond.wait()
                    item = self.queue.popleft()
                    if isinstance(item, dict):
                        self.running = item["executionId"]
                        self.last_eid = self.running
                if isinstance(item, _Exit):
                    self._exit_from_main(item.reason)
                    return
                self._run(item)
            except KeyboardInterrupt:
                continue
            except Exception:
                _log_exc("main loop")

    def _exit_from_main(self, reason: str) -> None:
        try:
            import atexit

            run_exitfuncs = getattr(atexit, "_run_exitfuncs", None)
            if run_exitfuncs is not None:
                run_exitfuncs()
        except BaseException:
            _log_exc("atexit handlers")
        try:
            self._flush_user_streams()
        except BaseException:
            pass
        self._finish(reason)

    def _run(self, req: Dict[str, Any]) -> None:
        eid = req["executionId"]
        after = req.get("after")
        if after is not None and self.outcomes.get(after, "ok") != "ok":
            # The execution this one follows failed: skip it, as stopOnError would have
            # had it been queued in time.
            with self.lock:
                self._remember(eid, "aborted")
                self.running = None
                self.deferred_interrupt = False
                msgs = [_reply(eid, "aborted", None, 0.0)]
                if not any(isinstance(r, dict) for r in self.queue):
                    msgs.append(self._status_locked())
                self._emit_locked(msgs)
            return
        store = req["storeHistory"]
        t0 = time.perf_counter()
        if store:
            self.count += 1
        count = self.count
        with self.lock:
            self._emit_locked(
                [
                    self._status_locked(),
                    {
                        "seq": 0,
                        "type": "execute_input",
                        "executionId": eid,
                        "executionCount": count,
                        # Where the code came from: a client that replays the journal later
                        # (a reloaded window) can put the result back under its cell.
                        "file": req["file"],
                        "line": req["line"],
                    },
                ]
            )
        if self.start_delay:  # tests only: widen the moment between "busy" and the code
            time.sleep(self.start_delay)
        status = "ok"
        tail: List[Dict[str, Any]] = []
        self.cell_figures = set()
        try:
            self.interruptible = True
            try:
                if self.deferred_interrupt:  # interrupted while it was starting
                    self.deferred_interrupt = False
                    raise KeyboardInterrupt
                tail = self._execute(req, count, store)
            finally:
                self.interruptible = False
        except KeyboardInterrupt as e:
            self.interruptible = False
            status = "interrupted"
            tail = [self._error_message(eid, e)]
        except SystemExit as e:
            self.interruptible = False
            if e.code is None or e.code == 0:
                tail = []
            else:
                status = "error"
                tail = [self._error_message(eid, e)]
        except BaseException as e:
            self.interruptible = False
            status = "error"
            tail = [self._error_message(eid, e)]
        entered = self._enter()
        try:
            self._flush_user_streams()
            with self.lock:
                self._read_pipes_locked()
                self._flush_pending_locked()
                tail.append(_reply(eid, status, count, _now_ms(t0)))
                self._remember(eid, status)
                if status == "error" and req["stopOnError"]:
                    tail.extend(self._abort_queue_locked())
                self.running = None
                if not any(isinstance(r, dict) for r in self.queue):
                    tail.append(self._status_locked())
                self.last_activity = time.monotonic()
                self._emit_locked(tail)
        finally:
            if entered:
                self.critical -= 1
            self.deferred_interrupt = False

    def _error_message(self, eid: str, e: BaseException) -> Dict[str, Any]:
        ename = type(e).__name__
        try:
            evalue = str(e)
        except Exception:
            evalue = "<str() failed>"
        frames: List[Dict[str, Any]] = []
        try:
            te = traceback.TracebackException(type(e), e, e.__traceback__, limit=None)
            _filter_traceback(te, _WORKER_FILE)
            lines = "".join(te.format()).rstrip("\n").split("\n")
            stack = list(te.stack)
            if len(stack) > 200:
                stack = stack[:100] + stack[-100:]
            frames = [{"file": f.filename, "line": f.lineno, "name": f.name} for f in stack]
            if isinstance(e, SyntaxError) and not frames and e.filename:
                frames = [{"file": e.filename, "line": e.lineno, "name": "<module>"}]
        except Exception:
            lines = ["%s: %s" % (ename, evalue)]
        return {
            "seq": 0,
            "type": "error",
            "executionId": eid,
            "ename": ename,
            "evalue": evalue,
            "traceback": lines,
            "frames": frames,
        }

    def _register_source(self, filename: str, line: int, code: str) -> None:
        lines = code.splitlines(True)
        if lines and not lines[-1].endswith("\n"):
            lines[-1] += "\n"
        if filename.startswith("<"):
            full = ["\n"] * line + lines
        else:
            disk: List[str] = []
            try:
                if os.path.getsize(filename) <= 16 << 20:
                    with open(filename, encoding="utf-8", errors="replace") as f:
                        disk = f.readlines()
            except OSError:
                disk = []
            if len(disk) < line:
                disk += ["\n"] * (line - len(disk))
            full = disk[:line] + lines + disk[line + len(lines) :]
        linecache.cache[filename] = (sum(len(x) for x in full), None, full, filename)

    def _execute(self, req: Dict[str, Any], count: int, store: bool) -> List[Dict[str, Any]]:
        code: str = req["code"]
        line: int = req["line"]
        filename = req["file"] or "<cell-%d>" % count
        self._register_source(filename, line, code)
        flags = _ALLOW_TOP_LEVEL_AWAIT if ("await" in code or "async" in code) else 0
        pad = "\n" * line
        try:
            tree = compile(
                pad + code, filename, "exec", ast.PyCF_ONLY_AST | flags, dont_inherit=True
            )
        except SyntaxError:
            shelled = _transform_shell_lines(code)
            if shelled == code:
                raise
            tree = compile(
                pad + shelled, filename, "exec", ast.PyCF_ONLY_AST | flags, dont_inherit=True
            )
        assert isinstance(tree, ast.Module)
        last: Optional[ast.Expr] = None
        final = tree.body[-1] if tree.body else None
        if isinstance(final, ast.Expr) and not _ends_with_semicolon(code, final, line):
            last = final
            tree.body.pop()
        if tree.body:
            self._run_code(compile(tree, filename, "exec", flags, dont_inherit=True))
        value = None
        if last is not None:
            expr = ast.Expression(last.value)
            value = self._run_code(compile(expr, filename, "eval", flags, dont_inherit=True))
        tail: List[Dict[str, Any]] = []
        if value is not None:
            if store:
                self.ns["___"] = self.ns.get("__")
                self.ns["__"] = self.ns.get("_")
                self.ns["_"] = value
            data, md = self.format(value)
            tail.append(
                {
                    "seq": 0,
                    "type": "execute_result",
                    "executionId": req["executionId"],
                    "executionCount": count,
                    "data": data,
                    "metadata": md,
                }
            )
        if "matplotlib.pyplot" in sys.modules:
            if tail:
                self._main_emit(tail)
                tail = []
            self.show_figures()
        return tail

    def _run_code(self, code: types.CodeType) -> Any:
        result = eval(code, self.ns)
        if code.co_flags & CO_COROUTINE:
            if self.loop is None:
                import asyncio

                self.loop = asyncio.new_event_loop()
                asyncio.set_event_loop(self.loop)
            result = self.loop.run_until_complete(result)
        return result

    # ---- user-facing builtins ----------------------------------------------------------------

    def format(self, obj: Any) -> Tuple[Dict[str, Any], Dict[str, Any]]:
        data: Dict[str, Any] = {}
        md: Dict[str, Any] = {}
        if not isinstance(obj, type) and not _lies_about_attributes(obj):
            method = _real_method(obj, "_repr_mimebundle_")
            if method is not None:
                try:
                    r = method(include=None, exclude=None)
                    if isinstance(r, tuple) and len(r) == 2:
                        r, rmd = r
                        if isinstance(rmd, dict):
                            md.update(rmd)
                    if isinstance(r, dict):
                        data.update(r)
                except Exception:
                    _report_formatter_error("_repr_mimebundle_ of %s" % _type_name(type(obj)))
            for name, mime in _REPR_METHODS:
                if mime in data:
                    continue
                method = _real_method(obj, name)
                if method is None:
                    continue
                try:
                    r = method()
                except Exception:
                    _report_formatter_error("%s of %s" % (name, _type_name(type(obj))))
                    continue
                if isinstance(r, tuple) and len(r) == 2:
                    r, rmd = r
                    if rmd:
                        md[mime] = rmd
                if r is not None:
                    data[mime] = r
            png = self._figure_png(obj)
            if png is not None and "image/png" not in data:
                data["image/png"] = png
        if "text/plain" not in data:
            try:
                data["text/plain"] = repr(obj)
            except Exception:
                _report_formatter_error("repr of %s" % _type_name(type(obj)))
                data["text/plain"] = "<%s object>" % _type_name(type(obj))
        return _normalize_bundle(data), md

    def _figure_png(self, obj: Any) -> Optional[bytes]:
        mfig = sys.modules.get("matplotlib.figure")
        figure_type = getattr(mfig, "Figure", None) if mfig is not None else None
        if figure_type is None or not isinstance(obj, figure_type):
            return None
        buf = io.BytesIO()
        obj.savefig(buf, format="png", bbox_inches="tight")
        self.cell_figures.add(id(obj))
        return buf.getvalue()

    def display(self, *objs: Any, raw: bool = False, metadata: Any = None, **kwargs: Any) -> None:
        eid = self._current_eid()
        for obj in objs:
            if raw and isinstance(obj, dict):
                data, md = _normalize_bundle(obj), {}
            else:
                data, md = self.format(obj)
            if isinstance(metadata, dict):
                md.update(metadata)
            self._main_emit(
                [
                    {
                        "seq": 0,
                        "type": "display_data",
                        "executionId": eid,
                        "data": data,
                        "metadata": md,
                    }
                ]
            )

    def show_figures(self) -> None:
        plt = sys.modules.get("matplotlib.pyplot")
        if plt is None:
            return
        try:
            backend = str(plt.get_backend()).lower()
        except Exception:
            return
        if backend != "agg":
            return
        for num in list(plt.get_fignums()):
            fig = plt.figure(num)
            try:
                if id(fig) in self.cell_figures or not fig.get_axes():
                    continue
                buf = io.BytesIO()
                fig.savefig(buf, format="png", bbox_inches="tight")
                data = {
                    "image/png": base64.b64encode(buf.getvalue()).decode("ascii"),
                    "text/plain": repr(fig),
                }
                self._main_emit(
                    [
                        {
                            "seq": 0,
                            "type": "display_data",
                            "executionId": self._current_eid(),
                            "data": data,
                            "metadata": {},
                        }
                    ]
                )
            finally:
                plt.close(fig)

    def input(self, prompt: Any = "") -> str:
        return self._request_input(str(prompt), False)

    def getpass(self, prompt: str = "Password: ", stream: Any = None) -> str:
        return self._request_input(str(prompt), True)

    def _request_input(self, prompt: str, password: bool) -> str:
        eid = self._current_eid()
        registered = False
        try:
            entered = self._enter()
            try:
                self._flush_user_streams()
                with self.lock:
                    if self.input_waiting is not None:
                        raise RuntimeError("input() is already waiting for a reply")
                    self._read_pipes_locked()
                    self._flush_pending_locked()
                    self.input_waiting = eid or ""
                    self.input_value = None
                    registered = True
                    self._emit_locked(
                        [
                            {
                                "seq": 0,
                                "type": "input_request",
                                "executionId": eid,
                                "prompt": prompt,
                                "password": password,
                            }
                        ]
                    )
            finally:
                self._leave(entered)  # may raise an interrupt that came meanwhile
            with self.lock:
                while self.input_value is None:
                    if self.exit_reason is not None:
                        raise EOFError("the kernel is shutting down")
                    self.cond.wait()
                return self.input_value
        except KeyboardInterrupt:
            raise KeyboardInterrupt from None  # not threading.py's frames in the traceback
        finally:
            if registered:
                entered = self._enter()
                try:
                    with self.lock:
                        self.input_waiting = None
                        self.input_value = None
                finally:
                    self._leave(entered)

    def shell(self, cmd: str) -> int:
        self._flush_user_streams()
        proc = subprocess.Popen(cmd, shell=True)
        try:
            return proc.wait()
        except KeyboardInterrupt:
            proc.kill()
            proc.wait()
            raise KeyboardInterrupt from None  # not subprocess.py's frames in the traceback
        except BaseException:
            proc.kill()
            proc.wait()
            raise


def _ends_with_semicolon(code: str, node: ast.AST, offset: int) -> bool:
    end_line = getattr(node, "end_lineno", None)
    end_col = getattr(node, "end_col_offset", None)
    if end_line is None or end_col is None:
        return False
    lines = code.split("\n")
    idx = end_line - 1 - offset
    if not 0 <= idx < len(lines):
        return False
    rest = lines[idx].encode("utf-8")[end_col:].decode("utf-8", "replace").lstrip()
    return rest.startswith(";")


def _reply(
    eid: str, status: str, count: Optional[int], duration: Optional[float]
) -> Dict[str, Any]:
    return {
        "seq": 0,
        "type": "reply",
        "executionId": eid,
        "status": status,
        "executionCount": count,
        "durationMs": duration,
    }


class _PyplotHook:
    """Meta-path finder that patches matplotlib.pyplot.show when the user imports pyplot."""

    def __init__(self, kernel: Kernel) -> None:
        self.kernel = kernel

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> Any:
        if fullname != "matplotlib.pyplot":
            return None
        import importlib.machinery

        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        loader = getattr(spec, "loader", None) if spec is not None else None
        original = getattr(loader, "exec_module", None)
        if original is None:
            return spec
        kernel = self.kernel

        def exec_module(module: types.ModuleType) -> None:
            original(module)
            real_show = getattr(module, "show", None)

            def show(*args: Any, **kwargs: Any) -> Any:
                try:
                    agg = str(module.get_backend()).lower() == "agg"
                except Exception:
                    agg = False
                if agg or real_show is None:
                    kernel.show_figures()
                    return None
                return real_show(*args, **kwargs)

            show.__doc__ = getattr(real_show, "__doc__", None)
            module.show = show  # type: ignore[attr-defined]

        try:
            loader.exec_module = exec_module  # type: ignore[union-attr]
        except Exception:
            pass
        return spec


# ---------------------------------------------------------------------------------------------
# Monitor


def _stderr_tail(path: str, lines: int = 20) -> List[str]:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 16384))
            data = f.read()
    except OSError:
        return []
    text = data.decode("utf-8", "replace").replace("\r\n", "\n")
    return [x for x in text.split("\n") if x.strip()][-lines:]


def _drain_pipe(fd: int) -> bytes:
    chunks = []
    total = 0
    while total < (8 << 20):
        try:
            data = os.read(fd, READ_CHUNK)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
        total += len(data)
    return b"".join(chunks)


def _monitor(
    kpid: int, kdir: str, sock_path: str, args: argparse.Namespace, pipes: Tuple[int, int]
) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    status = 0
    while True:
        try:
            _, status = os.waitpid(kpid, 0)
            break
        except InterruptedError:
            continue
        except ChildProcessError:
            break
    exit_code: Optional[int] = None
    sig: Optional[str] = None
    if os.WIFSIGNALED(status):
        sig = _signal_name(os.WTERMSIG(status))
    elif os.WIFEXITED(status):
        exit_code = os.WEXITSTATUS(status)
    try:
        os.killpg(kpid, signal.SIGKILL)  # what the kernel started is part of the kernel
    except OSError:
        pass
    reason = "died"
    log_path = os.path.join(kdir, "stderr.log")
    try:
        journal = Journal(kdir, args.journal_max_bytes)
        last = journal.last_message()
        if last is not None and last.get("type") == "exit":
            reason = str(last.get("reason") or "shutdown")
        else:
            running, count, queued = journal.unfinished()
            msgs: List[Dict[str, Any]] = []
            # Whatever the kernel wrote but had not read yet (a C++ abort message, say).
            for fd, name in zip(pipes, ("stdout", "stderr")):
                raw = _drain_pipe(fd)
                if not raw:
                    continue
                text = raw.decode("utf-8", "replace")
                msgs.append(
                    {"seq": 0, "type": "stream", "executionId": running, "name": name, "text": text}
                )
                if name == "stderr":
                    try:
                        with open(log_path, "a", encoding="utf-8") as f:
                            f.write(text if text.endswith("\n") else text + "\n")
                    except OSError:
                        pass
            if running is not None:
                msgs.append(_reply(running, "died", count, None))
            for q in queued:
                msgs.append(_reply(q, "aborted", None, 0.0))
            msgs.append(
                {
                    "seq": 0,
                    "type": "died",
                    "exitCode": exit_code,
                    "signal": sig,
                    "stderrTail": _stderr_tail(log_path),
                }
            )
            journal.write(msgs)
        journal.close()
    except Exception:
        _log_exc("monitor: journal")
    try:
        _atomic_write_json(
            os.path.join(kdir, "ended.json"),
            {"reason": reason, "exitCode": exit_code, "signal": sig, "endedAt": time.time()},
        )
    except Exception:
        _log_exc("monitor: ended.json")
    try:
        os.unlink(sock_path)
    except OSError:
        pass
    os._exit(0)


# ---------------------------------------------------------------------------------------------
# Entry point


def _socket_path(kdir: str, kernel_id: str) -> str:
    path = os.path.join(kdir, "sock")
    if len(os.fsencode(path)) <= 100:
        return path
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg and os.path.isdir(xdg):
        path = os.path.join(xdg, "gpuwb-%s.sock" % kernel_id)
        if len(os.fsencode(path)) <= 100:
            return path
    base = "/tmp/gpuwb-%d" % os.getuid()
    try:
        os.mkdir(base, 0o700)
    except FileExistsError:
        st = os.lstat(base)
        if st.st_uid != os.getuid() or not os.path.isdir(base) or os.path.islink(base):
            raise RuntimeError("%s is not a private directory" % base) from None
        os.chmod(base, 0o700)
    return os.path.join(base, "%s.sock" % kernel_id)


def _parse_args(argv: Optional[List[str]]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="worker.py", description="GPU Workbench kernel worker")
    p.add_argument("--dir", required=True)
    p.add_argument("--id", required=True)
    p.add_argument("--cwd", default=None)
    p.add_argument("--idle-timeout", type=float, default=0.0)
    p.add_argument("--name", default=None)
    p.add_argument("--journal-max-bytes", type=int, default=64 << 20)
    return p.parse_args(argv)


def _grow_pipe(fd: int) -> None:
    try:
        import fcntl

        fcntl.fcntl(fd, getattr(fcntl, "F_SETPIPE_SZ", 1031), PIPE_SIZE)
    except Exception:
        pass


def _kernel_main(
    args: argparse.Namespace, kdir: str, sock_path: str, fds: Tuple[int, int, int, int]
) -> None:
    global _LOG
    out_r, out_w, err_r, err_w = fds
    try:
        os.setpgid(0, 0)
    except OSError:
        pass
    log_fd = os.dup(2)  # stderr.log (as started); the worker's own messages go there
    _LOG = os.fdopen(log_fd, "w", buffering=1, encoding="utf-8", errors="backslashreplace")
    try:
        import faulthandler

        faulthandler.enable(file=_LOG, all_threads=True)
    except Exception:
        pass
    os.dup2(out_w, 1)
    os.dup2(err_w, 2)
    os.close(out_w)
    os.close(err_w)
    # Line-buffered text streams straight on fds 1/2, so Python and C output interleave.
    stdout = os.fdopen(1, "w", 1, encoding="utf-8", errors="backslashreplace", closefd=False)
    stderr = os.fdopen(2, "w", 1, encoding="utf-8", errors="backslashreplace", closefd=False)
    sys.stdout = stdout
    sys.stderr = stderr
    setattr(sys, "__stdout__", stdout)  # noqa: B010
    setattr(sys, "__stderr__", stderr)  # noqa: B010
    try:
        kernel = Kernel(args, kdir, sock_path, (out_r, err_r))
        kernel.setup_process()
        kernel.serve()
    except BaseException:
        _log_exc("kernel failed")
        os._exit(70)
    os._exit(0)


def main(argv: Optional[List[str]] = None) -> None:
    args = _parse_args(argv)
    kdir = os.path.abspath(args.dir)
    os.makedirs(kdir, mode=0o700, exist_ok=True)
    sock_path = _socket_path(kdir, args.id)
    try:
        os.unlink(os.path.join(kdir, "ended.json"))  # from an earlier life of this kernel folder
    except FileNotFoundError:
        pass
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    for fd in (out_r, err_r):
        _grow_pipe(fd)
        os.set_blocking(fd, False)
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid:
        os.close(out_w)
        os.close(err_w)
        _monitor(pid, kdir, sock_path, args, (out_r, err_r))
    else:
        _kernel_main(args, kdir, sock_path, (out_r, out_w, err_r, err_w))


if __name__ == "__main__":
    main()
