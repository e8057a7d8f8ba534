"""The kernel worker (gpu_workbench/kernels/worker.py) against PROTOCOL.md, as a subprocess
started the way the backend starts it, over its Unix socket."""

from __future__ import annotations

import ast
import json
import os
import signal
import socket
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Dict, List

import pytest
from worker_harness import (
    WORKER,
    Client,
    Kernel,
    new_kernel_id,
    pid_alive,
    start_kernel,
    wait_until,
)


def _report(name: str, value: Any) -> None:
    """Measurements are printed (pytest -s shows them), never asserted as thresholds."""
    print("\n[measure] %s: %s" % (name, value))


@pytest.fixture
def kernels(tmp_path):
    started: List[Kernel] = []

    def start(**kw) -> Kernel:
        k = start_kernel(tmp_path, **kw)
        started.append(k)
        return k

    yield start
    for k in started:
        k.close()


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    """One kernel for the tests that do not end or break it."""
    k = start_kernel(tmp_path_factory.mktemp("shared"))
    c = k.connect(label="shared")
    yield c
    k.close()


def _after_death(k: Kernel, c: Client):
    """The socket just ends; the monitor's `reply died`/`died` are in the journal."""
    c.wait_closed()
    ended = k.wait_ended()
    journal = k.journal()
    assert _seqs(journal) == list(range(1, len(journal) + 1))
    died = journal[-1]
    assert died["type"] == "died"
    replies = {m["executionId"]: m for m in journal if m["type"] == "reply"}
    assert not os.path.exists(k.socket_path)
    return ended, died, replies, journal


def _seqs(msgs: List[Dict[str, Any]]) -> List[int]:
    return [m["seq"] for m in msgs if "seq" in m]


# ---- the file itself -------------------------------------------------------------------------


def test_worker_parses_as_python38_and_is_standalone():
    src = WORKER.read_text(encoding="utf-8")
    tree = ast.parse(src, feature_version=(3, 8))
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            assert node.module and not node.module.startswith("gpu_workbench"), node.module
            assert node.level == 0
        if isinstance(node, ast.Import):
            for alias in node.names:
                assert not alias.name.startswith("gpu_workbench")


# ---- execution semantics ---------------------------------------------------------------------


def test_state_persists_and_last_expression_is_the_result(shared: Client):
    r = shared.run("x_persist = 41")
    assert r.status == "ok" and r.result is None
    r = shared.run("x_persist + 1")
    assert r.result == {"text/plain": "42"}
    assert r.reply["executionCount"] == r.of("execute_input")[0]["executionCount"]
    assert shared.run("_ * 2").result == {"text/plain": "84"}
    assert shared.run("x_persist + 1;").result is None  # trailing semicolon: no result
    assert shared.run("None").result is None
    assert shared.run("__name__").result == {"text/plain": "'__main__'"}


def test_store_history_false_keeps_count_and_underscore(shared: Client):
    r1 = shared.run("'kept'")
    r2 = shared.run("'not kept'", storeHistory=False)
    assert r2.reply["executionCount"] == r1.reply["executionCount"]
    assert shared.run("_").result == {"text/plain": "'kept'"}


def test_message_sequence_for_one_execution(shared: Client):
    r = shared.run("print('a')\n7")
    kinds = [m["type"] for m in r.msgs]
    assert kinds == ["status", "execute_input", "stream", "execute_result", "reply"]
    seqs = _seqs(r.msgs)
    assert seqs == sorted(seqs)
    idle = shared.wait_for(lambda m: m.get("type") == "status" and m["seq"] > seqs[-1])
    assert idle["state"] == "idle" and idle["queue"] == []


def test_top_level_await(shared: Client):
    r = shared.run("import asyncio\nawait asyncio.sleep(0)\n6 * 7")
    assert r.result == {"text/plain": "42"}, r.msgs


def test_shell_lines_keep_line_numbers(shared: Client):
    code = "if True:\n    !echo from-shell\n    !printf 'x\\ny\\n'\n1/0\n"
    r = shared.run(code)
    assert r.stdout == "from-shell\nx\ny\n"
    assert r.error is not None and r.error["frames"][-1]["line"] == 4


# ---- outputs ---------------------------------------------------------------------------------


def test_stream_display_and_result_keep_their_order(shared: Client):
    code = (
        "import os, sys\n"
        "print('one')\n"
        "os.write(1, b'two\\n')\n"
        "display({'k': 1})\n"
        "sys.stdout.write('three')\n"  # no newline: still flushed before the display
        "display('d2')\n"
        "print('four', file=sys.stderr)\n"
        "'end'\n"
    )
    r = shared.run(code)
    seen = []
    for m in r.msgs:
        if m["type"] == "stream":
            seen.append((m["name"], m["text"]))
        elif m["type"] in ("display_data", "execute_result"):
            seen.append((m["type"], m["data"]["text/plain"]))
    merged: List[Any] = []
    for kind, text in seen:
        if merged and merged[-1][0] == kind and kind in ("stdout", "stderr"):
            merged[-1] = (kind, merged[-1][1] + text)
        else:
            merged.append((kind, text))
    assert merged == [
        ("stdout", "one\ntwo\n"),
        ("display_data", "{'k': 1}"),
        ("stdout", "three"),
        ("display_data", "'d2'"),
        ("stderr", "four\n"),
        ("execute_result", "'end'"),
    ]


RICH = r"""
class Rich:
    def _repr_html_(self): return "<b>h</b>"
    def _repr_markdown_(self): return "**m**"
    def _repr_svg_(self): return "<svg></svg>"
    def _repr_png_(self): return b"\x89PNG\r\n"
    def _repr_jpeg_(self): return b"\xff\xd8\xff"
    def _repr_latex_(self): return "$x$"
    def _repr_json_(self): return {"a": [1, 2]}
    def __repr__(self): return "Rich()"

class Bundle:
    def _repr_mimebundle_(self, include=None, exclude=None):
        return {"text/html": "<i>b</i>", "application/vnd.custom+json": {"z": 1}}, {"text/html": {"isolated": True}}
    def _repr_html_(self): return "<i>not used</i>"

class Liar:
    def __getattr__(self, name): return lambda *a, **k: "lie"
    def __repr__(self): return "Liar()"

class Broken:
    def _repr_html_(self): raise RuntimeError("boom")
    def __repr__(self): return "Broken()"
"""


def test_rich_reprs(shared: Client):
    assert shared.run(RICH).status == "ok"
    data = shared.run("Rich()").result
    assert data == {
        "text/html": "<b>h</b>",
        "text/markdown": "**m**",
        "image/svg+xml": "<svg></svg>",
        "image/png": "iVBORw0K",
        "image/jpeg": "/9j/",
        "text/latex": "$x$",
        "application/json": {"a": [1, 2]},
        "text/plain": "Rich()",
    }
    r = shared.run("display(Bundle())")
    d = r.of("display_data")[0]
    assert d["data"]["text/html"] == "<i>b</i>"
    assert d["data"]["application/vnd.custom+json"] == {"z": 1}
    assert d["data"]["text/plain"].startswith("<__main__.Bundle object")
    assert d["metadata"] == {"text/html": {"isolated": True}}
    assert shared.run("Liar()").result == {"text/plain": "Liar()"}
    r = shared.run("Broken()")
    assert r.result == {"text/plain": "Broken()"}
    assert "boom" in r.stderr


def _kernel_has(c: Client, module: str) -> None:
    """Skip unless the kernel's interpreter (maybe not pytest's) can import module."""
    if c.run("import %s" % module, timeout=60).status != "ok":
        pytest.skip("%s is not importable in the kernel's interpreter" % module)


def test_matplotlib_figures(shared: Client):
    _kernel_has(shared, "matplotlib")
    code = (
        "import matplotlib.pyplot as plt\n"
        "plt.plot([1, 2, 3])\n"
        "plt.show()\n"
        "print('between')\n"
        "plt.figure(); plt.plot([3, 2, 1])\n"
    )
    r = shared.run(code, timeout=60)
    assert r.status == "ok", r.msgs
    kinds = [m["type"] for m in r.msgs if m["type"] in ("display_data", "stream")]
    assert kinds == ["display_data", "stream", "display_data"], kinds
    for d in r.of("display_data"):
        assert d["data"]["image/png"].startswith("iVBORw0KGgo")
        assert d["data"]["text/plain"].startswith("<Figure")
    assert shared.run("plt.get_fignums()").result == {"text/plain": "[]"}


def test_pandas_dataframe_html(shared: Client):
    _kernel_has(shared, "pandas")
    r = shared.run("import pandas as pd\npd.DataFrame({'a': [1, 2]})", timeout=60)
    assert "<table" in r.result["text/html"]
    assert "a" in r.result["text/plain"]


def test_fd_level_capture(shared: Client):
    code = (
        "import os, subprocess, sys, ctypes\n"
        "os.system('echo from-system')\n"
        "subprocess.run([sys.executable, '-c', 'print(\"from-child\")'])\n"
        "libc = ctypes.CDLL(None)\n"
        "libc.printf(b'from-printf %d\\n', 42)\n"
        "os.write(2, b'raw-stderr\\n')\n"
    )
    r = shared.run(code)
    assert r.stdout == "from-system\nfrom-child\nfrom-printf 42\n"
    assert r.stderr == "raw-stderr\n"


def test_unicode_split_across_reads_and_chunks(shared: Client):
    code = (
        "import os, sys, time\n"
        "b = 'é€😀'.encode()\n"
        "for i in range(len(b)):\n"
        "    os.write(1, b[i:i+1]); time.sleep(0.005)\n"
        "sys.stdout.write('€' * 70000)\n"
    )
    r = shared.run(code)
    assert r.stdout == "é€😀" + "€" * 70000
    assert "\ufffd" not in r.stdout
    assert all(len(m["text"]) <= 65536 for m in r.of("stream"))


def test_carriage_returns_and_ansi_pass_through(shared: Client):
    r = shared.run(r"print('10%\r50%\r100%\x1b[31mred\x1b[0m', end='\r\n')")
    assert r.stdout == "10%\r50%\r100%\x1b[31mred\x1b[0m\r\n"


# ---- errors and tracebacks ---------------------------------------------------------------------


def test_traceback_maps_to_file_line(shared: Client, tmp_path: Path):
    src = tmp_path / "train.py"
    lines = ["# line %d" % (i + 1) for i in range(60)]
    cell = ["def inner():", "    return 1 / 0", "inner()"]
    lines[40:43] = cell  # 0-based 40..42: 1-based 41..43
    src.write_text("\n".join(lines) + "\n")
    r = shared.run("\n".join(cell), file=str(src), line=40)
    assert r.status == "error"
    err = r.error
    assert err["ename"] == "ZeroDivisionError" and err["evalue"] == "division by zero"
    assert err["frames"] == [
        {"file": str(src), "line": 43, "name": "<module>"},
        {"file": str(src), "line": 42, "name": "inner"},
    ]
    text = "\n".join(err["traceback"])
    assert text.startswith("Traceback (most recent call last):")
    assert 'File "%s", line 43, in <module>' % src in text
    assert "return 1 / 0" in text
    assert "worker.py" not in text
    assert err["traceback"][-1] == "ZeroDivisionError: division by zero"


def test_cell_source_shown_even_when_file_differs(shared: Client, tmp_path: Path):
    src = tmp_path / "other.py"
    src.write_text("# nothing here\n" * 10)
    r = shared.run("x = 1\nraise ValueError('v')", file=str(src), line=5)
    assert r.error["frames"][-1]["line"] == 7
    assert "raise ValueError('v')" in "\n".join(r.error["traceback"])


def test_syntax_error_location(shared: Client):
    r = shared.run("a = 1\nb = (\n", file="/nonexistent/cell.py", line=10)
    assert r.status == "error" and r.error["ename"] == "SyntaxError"
    assert r.error["frames"][0]["file"] == "/nonexistent/cell.py"
    assert r.error["frames"][0]["line"] in (12, 13)
    assert "worker.py" not in "\n".join(r.error["traceback"])


def test_exception_chain_and_system_exit(shared: Client):
    r = shared.run("try:\n    1/0\nexcept Exception as e:\n    raise KeyError('k') from e")
    text = "\n".join(r.error["traceback"])
    assert "ZeroDivisionError" in text and "direct cause" in text and r.error["ename"] == "KeyError"
    assert shared.run("import sys; sys.exit(0)").status == "ok"
    r = shared.run("import sys; sys.exit(2)")
    assert r.status == "error" and r.error["ename"] == "SystemExit"
    assert shared.run("1").result == {"text/plain": "1"}  # still alive


# ---- queue -----------------------------------------------------------------------------------


def test_stop_on_error_aborts_queued(kernels):
    c = kernels().connect()
    gate = c.execute("input('go')")
    c.wait_for(lambda m: m.get("type") == "input_request")
    bad = c.execute("1/0", stopOnError=True)
    q1 = c.execute("x = 1")
    q2 = c.execute("x = 2")
    c.wait_for(lambda m: m.get("type") == "status" and m.get("queue") == [bad, q1, q2])
    c.send({"op": "input_reply", "executionId": gate, "value": ""})
    assert c.result(bad).status == "error"
    for eid in (q1, q2):
        reply = c.result(eid).reply
        assert reply["status"] == "aborted" and reply["executionCount"] is None
    # Without stopOnError the queue keeps running.
    e1 = c.execute("1/0")
    e2 = c.execute("'after'")
    assert c.result(e1).status == "error"
    assert c.result(e2).result == {"text/plain": "'after'"}


def test_after_skips_when_the_previous_execution_failed(kernels):
    """`after` is decided when the kernel dequeues: no race with a fast failing cell."""
    c = kernels().connect()
    bad = c.execute("1/0", stopOnError=True)
    assert c.result(bad).status == "error"  # finished before the next is even sent
    skipped = c.execute("y = 1", stopOnError=True, after=bad)
    reply = c.result(skipped).reply
    assert reply["status"] == "aborted" and reply["executionCount"] is None
    chained = c.execute("y = 2", after=skipped)
    assert c.result(chained).status == "aborted"
    good = c.execute("z = 3")
    assert c.result(good).status == "ok"
    runs = c.execute("z + 1", after=good)
    assert c.result(runs).result == {"text/plain": "4"}
    unknown = c.execute("5", after="never-seen")
    assert c.result(unknown).status == "ok"


def test_clear_queue(kernels):
    c = kernels().connect()
    gate = c.execute("input()")
    c.wait_for(lambda m: m.get("type") == "input_request")
    q = [c.execute("'q%d'" % i) for i in range(3)]
    c.wait_for(lambda m: m.get("type") == "status" and m.get("queue") == q)
    c.send({"op": "clear_queue"})
    for eid in q:
        assert c.result(eid).status == "aborted"
    c.wait_for(
        lambda m: m.get("type") == "status" and m.get("state") == "busy" and m["queue"] == []
    )
    c.send({"op": "input_reply", "executionId": gate, "value": "v"})
    r = c.result(gate)
    assert r.status == "ok" and r.result == {"text/plain": "'v'"}


# ---- input -----------------------------------------------------------------------------------


def test_input_and_getpass_round_trip(shared: Client):
    eid = shared.execute(
        "print('before')\nname = input('name? ')\nimport getpass\npw = getpass.getpass()\nname + '/' + pw"
    )
    req = shared.wait_for(lambda m: m.get("type") == "input_request" and m["executionId"] == eid)
    assert req["prompt"] == "name? " and req["password"] is False
    shared.send({"op": "input_reply", "executionId": eid, "value": "ada"})
    req2 = shared.wait_for(
        lambda m: m.get("type") == "input_request" and m["executionId"] == eid and m["password"]
    )
    assert req2["prompt"] == "Password: "
    shared.send({"op": "input_reply", "executionId": eid, "value": "s3cret"})
    r = shared.result(eid)
    assert r.result == {"text/plain": "'ada/s3cret'"}
    kinds = [m["type"] for m in r.msgs]
    assert kinds.index("stream") < kinds.index("input_request")  # prompt after prior output


# ---- interrupts ------------------------------------------------------------------------------


def _interrupt_latency(k: Kernel, c: Client, code: str) -> float:
    eid = c.execute("print('started', flush=True)\n" + code)
    c.wait_for(lambda m: m.get("type") == "stream" and m.get("executionId") == eid)
    t0 = time.perf_counter()
    k.signal(signal.SIGINT)
    r = c.result(eid)
    latency = (time.perf_counter() - t0) * 1000
    assert r.status == "interrupted", r.msgs
    assert r.error is not None and r.error["ename"] == "KeyboardInterrupt"
    return latency


def test_interrupts(kernels):
    k = kernels()
    c = k.connect()
    busy = _interrupt_latency(k, c, "while True:\n    pass")
    sleep = _interrupt_latency(k, c, "import time\ntime.sleep(100)")
    shell = _interrupt_latency(k, c, "!sleep 100")
    _report("interrupt latency while True: pass (ms)", round(busy, 2))
    _report("interrupt latency time.sleep(100) (ms)", round(sleep, 2))
    _report("interrupt latency !sleep 100 (ms)", round(shell, 2))
    # Blocked in input(): interrupted too.
    eid = c.execute("input('?')")
    c.wait_for(lambda m: m.get("type") == "input_request" and m["executionId"] == eid)
    k.signal(signal.SIGINT)
    assert c.result(eid).status == "interrupted"
    # SIGINT while idle is ignored; the kernel stays and works (input works again too).
    c.wait_for(
        lambda m: m.get("type") == "status" and m.get("state") == "idle", start=len(c.messages) - 1
    )
    k.signal(signal.SIGINT)
    assert c.run("1 + 1").result == {"text/plain": "2"}
    eid = c.execute("input()")
    c.wait_for(lambda m: m.get("type") == "input_request" and m["executionId"] == eid)
    c.send({"op": "input_reply", "executionId": eid, "value": "ok"})
    assert c.result(eid).result == {"text/plain": "'ok'"}
    assert pid_alive(k.pid)


def test_code_ignoring_interrupt_is_killed_and_reported(kernels):
    k = kernels()
    c = k.connect()
    code = (
        "import time\n"
        "while True:\n"
        "    try:\n"
        "        print('loop', flush=True); time.sleep(100)\n"
        "    except KeyboardInterrupt:\n"
        "        print('ignored', flush=True)\n"
    )
    eid = c.execute(code)
    queued = c.execute("'never'")
    c.wait_for(lambda m: m.get("type") == "stream" and "loop" in m["text"])
    k.signal(signal.SIGINT)
    c.wait_for(lambda m: m.get("type") == "stream" and "ignored" in m.get("text", ""))
    k.signal(signal.SIGKILL)  # the starter's escalation after its grace period
    ended, died, replies, _ = _after_death(k, c)
    assert died["signal"] == "SIGKILL" and died["exitCode"] is None
    assert ended["reason"] == "died" and ended["signal"] == "SIGKILL"
    assert replies[eid]["status"] == "died" and replies[eid]["executionCount"] == 1
    assert replies[queued]["status"] == "aborted" and replies[queued]["executionCount"] is None


# ---- death -----------------------------------------------------------------------------------


def test_os_exit_reports_exit_code(kernels):
    k = kernels()
    c = k.connect()
    eid = c.execute("print('bye', flush=True)\nimport os\nos._exit(3)")
    ended, died, replies, journal = _after_death(k, c)
    assert died["exitCode"] == 3 and died["signal"] is None
    assert ended == {"reason": "died", "exitCode": 3, "signal": None, "endedAt": ended["endedAt"]}
    assert replies[eid]["status"] == "died"
    assert "bye\n" in "".join(m["text"] for m in journal if m["type"] == "stream")
    assert not pid_alive(k.pid)


def test_segfault_reports_signal_and_stderr_tail(kernels):
    k = kernels()
    c = k.connect()
    eid = c.execute("import ctypes\nctypes.string_at(0)")
    ended, died, replies, _ = _after_death(k, c)
    assert died["signal"] == "SIGSEGV" and died["exitCode"] is None
    tail = "\n".join(died["stderrTail"])
    assert "Segmentation fault" in tail
    assert len(died["stderrTail"]) <= 20
    assert replies[eid]["status"] == "died"
    assert ended["signal"] == "SIGSEGV"


def test_last_words_on_stderr_reach_the_journal(kernels):
    k = kernels()
    c = k.connect()
    c.execute("import os\nos.write(2, b'terminate called after throwing\\n')\nos.abort()")
    _, died, _, journal = _after_death(k, c)
    assert died["signal"] == "SIGABRT"
    text = "".join(m["text"] for m in journal if m.get("type") == "stream")
    assert "terminate called after throwing" in text  # read by the kernel or the monitor


# ---- clients, journal, replay ------------------------------------------------------------------


def test_two_clients_receive_everything(kernels):
    k = kernels()
    a = k.connect(label="a")
    b = k.connect(label="b")
    eid = a.execute("for i in range(3): print(i)\ndisplay('x')\n'r'")
    ra = a.result(eid)
    rb = b.result(eid)
    assert [m["seq"] for m in ra.msgs] == [m["seq"] for m in rb.msgs]
    assert ra.msgs == rb.msgs
    a.close()  # one client leaving changes nothing for the other
    assert b.run("'still'").result == {"text/plain": "'still'"}


def test_reconnect_replays_exactly_the_missing_seqs(kernels):
    k = kernels()
    a = k.connect(label="a")
    a.run("'warm'")
    eid = a.execute(
        "import time\n"
        "for i in range(40):\n"
        "    print('line', i, flush=True)\n"
        "    time.sleep(0.005)\n"
        "'done'"
    )
    a.wait_for(lambda m: m.get("type") == "stream" and m.get("executionId") == eid)
    seen = max(_seqs(a.journaled()))
    a.close()
    # Produced with no client connected: still journaled. A new client catches up live.
    b = k.connect(since=seen, label="b")
    rb = b.result(eid)
    b_seqs = _seqs(b.journaled())
    assert b_seqs == list(range(seen + 1, b_seqs[-1] + 1)), "gap or duplicate"
    assert b.welcome["firstSeq"] == 1 and b.welcome["lastSeq"] >= seen
    assert rb.result == {"text/plain": "'done'"}
    full = k.connect(since=0, label="c")
    full.wait_for(lambda m: m.get("type") == "reply" and m.get("executionId") == eid)
    c_seqs = _seqs(full.journaled())
    assert c_seqs == list(range(1, c_seqs[-1] + 1))
    journal = k.journal()
    assert [m for m in full.journaled() if m["seq"] <= len(journal)] == journal[: len(c_seqs)]
    stdout = "".join(
        m["text"] for m in full.journaled() if m.get("type") == "stream" and m["executionId"] == eid
    )
    assert stdout == "".join("line %d\n" % i for i in range(40))


def test_attach_during_heavy_output_has_no_gap_or_duplicate(kernels):
    k = kernels()
    a = k.connect()
    eid = a.execute("for i in range(30000):\n    print(i)\n")
    late: List[Client] = []
    for _ in range(5):
        late.append(k.connect(since=0, label="late"))
    for c in [*late, a]:
        c.result(eid, timeout=30)
        seqs = _seqs(c.journaled())
        assert seqs == list(range(1, seqs[-1] + 1))
        text = "".join(
            m["text"]
            for m in c.journaled()
            if m.get("type") == "stream" and m["executionId"] == eid
        )
        assert text == "".join("%d\n" % i for i in range(30000))


def test_journal_rotation_and_gap(kernels):
    k = kernels(journal_max_bytes=50000)
    c = k.connect()
    for n in range(12):
        c.run("for i in range(100): print('rotation %d', i, '-' * 80)" % n)
    assert (k.dir / "journal.1.jsonl").exists()
    assert sorted(p.name for p in k.dir.glob("journal*")) == ["journal.1.jsonl", "journal.jsonl"]
    for p in k.dir.glob("journal*"):
        assert p.stat().st_size <= 50000
    on_disk = k.journal()
    first = on_disk[0]["seq"]
    assert first > 1
    assert _seqs(on_disk) == list(range(first, first + len(on_disk)))
    late = k.connect(since=0)
    last = late.welcome["lastSeq"]
    gap = late.wait_for(lambda m: m.get("type") == "gap")
    assert gap == {"type": "gap", "from": 1, "to": first - 1}
    assert late.welcome["firstSeq"] == first
    late.wait_for(lambda m: m.get("seq") == last)
    assert _seqs(late.journaled()) == list(range(first, last + 1))
    # since inside the kept range: no gap, exactly the rest.
    mid = k.connect(since=last - 5)
    mid.wait_for(lambda m: m.get("seq") == last)
    assert _seqs(mid.journaled()) == list(range(last - 4, last + 1))
    assert not any(m.get("type") == "gap" for m in mid.messages)


def test_restart_in_same_folder_continues_seq(kernels, tmp_path):
    k = kernels()
    c = k.connect()
    c.run("'first life'")
    c.send({"op": "shutdown"})
    c.wait_for(lambda m: m.get("type") == "exit")
    k.wait_ended()
    last = max(_seqs(k.journal()))
    k2 = kernels(kernel_id=k.id)
    c2 = k2.connect(since=last)
    start = c2.wait_for(lambda m: m.get("type") == "start")
    assert start["seq"] == last + 1 and start["pid"] == k2.pid
    assert not (k2.dir / "ended.json").exists()
    assert c2.run("1").reply["executionCount"] == 1


# ---- protocol --------------------------------------------------------------------------------


def test_protocol_errors_keep_the_connection(shared: Client, kernels):
    k = kernels()
    raw = Client(k.socket_path, since=None)
    raw.send({"op": "ping", "requestId": 1})
    assert raw.wait_for(lambda m: m.get("type") == "protocol_error")["message"].startswith(
        "the first message must be hello"
    )
    raw.send({"op": "hello", "since": 0})
    raw.wait_for(lambda m: m.get("type") == "welcome")
    n = len(raw.messages)
    raw.send(b"{not json\n")
    raw.send(b"[1, 2]\n")
    raw.send({"op": "frobnicate"})
    raw.send({"op": "execute", "executionId": 5, "code": "1"})
    raw.request("ping")  # answered after the four errors: they are all in by then
    errors = [m for m in raw.messages[n:] if m.get("type") == "protocol_error"]
    assert len(errors) == 4
    assert "malformed JSON" in errors[0]["message"]
    assert "unknown op" in errors[2]["message"]
    assert "executionId" in errors[3]["message"]
    assert all("seq" not in e for e in errors)
    assert raw.request("ping")["type"] == "pong"
    assert raw.run("'alive'").result == {"text/plain": "'alive'"}
    assert not any(m.get("type") == "protocol_error" for m in k.journal())


def test_huge_code_string(shared: Client):
    code = "big = '" + "a" * 10_000_000 + "'\nlen(big)"
    r = shared.run(code, timeout=60)
    assert r.result == {"text/plain": "10000000"}
    shared.run("del big")


# ---- variables -------------------------------------------------------------------------------


def test_variables_are_bounded_and_never_repr_shaped_objects(kernels):
    k = kernels()
    c = k.connect()
    setup = (
        "import itertools\n"
        "class Shaped:\n"
        "    shape = (100000, 100000)\n"
        "    dtype = 'float32'\n"
        "    nbytes = 40_000_000_000\n"
        "    def __repr__(self): raise AssertionError('repr of a shaped object')\n"
        "    def __len__(self): raise AssertionError('len of a shaped object')\n"
        "big_list = list(range(2000))\n"
        "blob = b'x' * 50_000_000\n"
        "text = 'hello'\n"
        "gen = (i for i in itertools.count())\n"
        "huge = Shaped()\n"
        "_private = 1\n"
        "def fn(): pass\n"
    )
    assert c.run(setup).status == "ok"
    # numpy in the kernel's interpreter (GPUWB_TEST_KERNEL_PYTHON may differ from pytest's).
    np_run = c.run("import numpy as np\narr = np.zeros((1000, 1000), dtype='float64')")
    has_numpy = np_run.status == "ok"
    msg = c.request("variables")
    by_name = {v["name"]: v for v in msg["variables"]}
    assert "_private" not in by_name and "itertools" not in by_name and "np" not in by_name
    assert "display" not in by_name and "input" not in by_name
    bl = by_name["big_list"]
    assert bl["type"] == "list" and bl["length"] == 2000 and len(bl["repr"]) <= 120
    assert bl["repr"].startswith("[0, 1, 2")
    blob = by_name["blob"]
    assert blob["type"] == "bytes" and blob["length"] == 50_000_000 and len(blob["repr"]) <= 120
    assert blob["size"] >= 50_000_000
    assert by_name["text"]["repr"] == "'hello'"
    assert by_name["gen"]["length"] is None and by_name["gen"]["type"] == "generator"
    h = by_name["huge"]
    assert h["shape"] == [100000, 100000] and h["dtype"] == "float32"
    assert h["size"] == 40_000_000_000 and h["length"] is None
    assert "100000x100000" in h["repr"]
    assert by_name["fn"]["type"] == "function"
    if has_numpy:
        a = by_name["arr"]
        assert a["type"] == "numpy.ndarray" and a["shape"] == [1000, 1000]
        assert a["dtype"] == "float64" and a["size"] == 8_000_000
        assert "0." not in a["repr"]
    limited = c.request("variables", limit=2)
    assert len(limited["variables"]) == 2 and limited["truncated"] is True
    # Answered while a cell is busy, quickly.
    eid = c.execute("print('busy', flush=True)\nwhile True: pass")
    c.wait_for(lambda m: m.get("type") == "stream" and m.get("executionId") == eid)
    t0 = time.perf_counter()
    msg = c.request("variables")
    busy_ms = (time.perf_counter() - t0) * 1000
    assert any(v["name"] == "big_list" for v in msg["variables"])
    assert c.request("ping")["type"] == "pong"
    _report("variables while busy (ms)", round(busy_ms, 2))
    k.signal(signal.SIGINT)
    assert c.result(eid).status == "interrupted"


# ---- lifetime --------------------------------------------------------------------------------


def test_idle_timeout_exits_and_leaves_no_process(kernels):
    k = kernels(idle_timeout=0.5)
    c = k.connect()
    c.run("x = 1")
    monitor = k.proc.pid
    c.close()
    ended = k.wait_ended(timeout=10)
    assert ended["reason"] == "idle" and ended["exitCode"] == 0
    assert k.journal()[-1]["type"] == "exit" and k.journal()[-1]["reason"] == "idle"
    wait_until(lambda: not pid_alive(k.pid), what="kernel gone")
    assert not pid_alive(monitor)
    assert not os.path.exists(k.socket_path)


def test_idle_timeout_waits_for_busy_kernel_and_connected_clients(kernels):
    k = kernels(idle_timeout=0.3)
    c = k.connect()
    eid = c.execute("import time; time.sleep(0.8)")
    c.close()
    ended = k.wait_ended(timeout=10)
    assert ended["reason"] == "idle"
    replies = [m for m in k.journal() if m["type"] == "reply"]
    assert replies[-1]["executionId"] == eid and replies[-1]["status"] == "ok"


def test_shutdown(kernels):
    k = kernels()
    c = k.connect()
    other = k.connect()
    c.run("import atexit; atexit.register(lambda: print('atexit ran'))")
    c.send({"op": "shutdown"})
    ex = other.wait_for(lambda m: m.get("type") == "exit")
    assert ex["reason"] == "shutdown"
    assert "atexit ran" in "".join(m.get("text", "") for m in other.messages)
    other.wait_closed()
    ended = k.wait_ended()
    assert ended["reason"] == "shutdown" and ended["exitCode"] == 0
    wait_until(lambda: not pid_alive(k.pid), what="kernel gone")
    assert not os.path.exists(k.socket_path)


def test_shutdown_while_busy_interrupts(kernels):
    k = kernels()
    c = k.connect()
    eid = c.execute("print('x', flush=True)\nimport time\ntime.sleep(100)")
    queued = c.execute("1")
    c.wait_for(lambda m: m.get("type") == "stream")
    c.send({"op": "shutdown"})
    c.wait_for(lambda m: m.get("type") == "exit")
    assert c.result(eid).status == "interrupted"
    assert c.result(queued).status == "aborted"
    assert k.wait_ended()["reason"] == "shutdown"


def test_shutdown_cleans_up_leftover_children(kernels):
    k = kernels()
    c = k.connect()
    r = c.run("import subprocess\nsubprocess.Popen(['sleep', '1000']).pid")
    child = int(r.result["text/plain"])
    assert pid_alive(child)
    c.send({"op": "shutdown"})
    assert k.wait_ended()["reason"] == "shutdown"
    wait_until(lambda: not pid_alive(child), what="child gone")


def test_shutdown_exits_even_if_code_ignores_the_interrupt(kernels):
    k = kernels()
    c = k.connect()
    code = (
        "import time\n"
        "while True:\n"
        "    try:\n"
        "        print('spin', flush=True); time.sleep(100)\n"
        "    except KeyboardInterrupt:\n"
        "        pass\n"
    )
    eid = c.execute(code)
    c.wait_for(lambda m: m.get("type") == "stream")
    c.send({"op": "shutdown"})
    assert c.wait_for(lambda m: m.get("type") == "exit", timeout=20)["reason"] == "shutdown"
    assert c.result(eid).status == "interrupted"
    ended = k.wait_ended()
    assert ended["reason"] == "shutdown" and ended["exitCode"] == 0


def test_long_directory_uses_short_socket_path(kernels, tmp_path):
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    k = start_kernel(deep)
    try:
        assert len(os.fsencode(k.socket_path)) <= 100
        assert not k.socket_path.startswith(str(deep))
        c = k.connect()
        assert c.run("2").result == {"text/plain": "2"}
    finally:
        k.close()


def test_kernel_json(kernels, tmp_path):
    k = kernels(name="my kernel", cwd=str(tmp_path))
    info = k.info
    assert info["kernelId"] == k.id and info["protocol"] == 1 and info["name"] == "my kernel"
    assert info["pgid"] == info["pid"] and info["monitorPid"] == k.proc.pid
    assert info["cwd"] == str(tmp_path)
    assert info["pythonVersion"].count(".") == 2
    c = k.connect()
    (tmp_path / "mymod_gpuwb.py").write_text("VALUE = 5\n")
    assert c.run("import mymod_gpuwb\nmymod_gpuwb.VALUE").result == {"text/plain": "5"}
    assert c.run("import os; os.environ['MPLBACKEND']").result == {"text/plain": "'Agg'"}


# ---- performance (measured, reported; correctness asserted) ------------------------------------


def test_many_lines_arrive_complete(kernels):
    k = kernels()
    c = k.connect()
    n = 200_000
    code = "for i in range(%d):\n    print(i, 'x' * 90)\n" % n
    expected = sum(len("%d %s\n" % (i, "x" * 90)) for i in range(n))
    t0 = time.perf_counter()
    r = c.run(code, timeout=60)
    elapsed = time.perf_counter() - t0
    assert r.status == "ok"
    out = r.stdout
    assert len(out) == expected
    assert out.count("\n") == n
    assert out.endswith("%d %s\n" % (n - 1, "x" * 90))
    _report("200k lines (%.1f MB): seconds" % (expected / 1e6), round(elapsed, 3))
    _report("200k lines: stream messages", len(r.of("stream")))


def test_round_trip_latency_raw_socket(kernels):
    k = kernels()
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(k.socket_path)
    s.sendall(b'{"op":"hello","since":0}\n')
    buf = b""

    def read_until(token: bytes) -> None:
        nonlocal buf
        while token not in buf:
            data = s.recv(1 << 16)
            assert data
            buf += data
        buf = buf[buf.index(token) + len(token) :]

    read_until(b'"type":"welcome"')
    times = []
    for i in range(1000):
        eid = "e%d" % i
        msg = b'{"op":"execute","executionId":"%s","code":"1+1"}\n' % eid.encode()
        t0 = time.perf_counter()
        s.sendall(msg)
        read_until(b'"type":"reply","executionId":"%s","status":"ok"' % eid.encode())
        times.append((time.perf_counter() - t0) * 1e6)
    s.close()
    times.sort()
    p50 = statistics.median(times)
    p99 = times[int(len(times) * 0.99) - 1]
    _report("1+1 round trip p50 (us)", round(p50, 1))
    _report("1+1 round trip p99 (us)", round(p99, 1))
    replies = [m for m in k.journal() if m["type"] == "reply"]
    assert len(replies) == 1000 and all(m["status"] == "ok" for m in replies)


def test_ping(shared: Client):
    assert shared.request("ping")["type"] == "pong"


def test_worker_runs_without_the_package_on_path(kernels, tmp_path):
    """The worker is shipped alone: copied elsewhere it still starts."""
    copy = tmp_path / "solo" / "worker.py"
    copy.parent.mkdir()
    copy.write_bytes(WORKER.read_bytes())
    kid = new_kernel_id()
    kdir = tmp_path / kid
    import subprocess

    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    with open(tmp_path / "solo.log", "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, str(copy), "--dir", str(kdir), "--id", kid],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=env,
            cwd=str(tmp_path),
        )
    k = Kernel(kdir, kid, proc)
    try:
        wait_until(lambda: (kdir / "kernel.json").exists(), what="kernel.json")
        k.info = json.loads((kdir / "kernel.json").read_text())
        c = k.connect()
        assert c.run("import sys; sys.path[0]").result == {"text/plain": "''"}
    finally:
        k.close()
