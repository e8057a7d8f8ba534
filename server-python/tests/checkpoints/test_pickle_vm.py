"""The symbolic pickle interpreter and the global classifier (no torch needed)."""

from __future__ import annotations

import collections
import contextvars
import pickle
import random
import struct
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any, List, Optional, Tuple

import pytest

from gpu_workbench.checkpoints import detect, pickle_file, pickle_vm, readers
from gpu_workbench.checkpoints.errors import Cancelled, CheckpointFormatError
from gpu_workbench.checkpoints.model import Safety
from gpu_workbench.checkpoints.pickle_vm import Call, Global, Limits, PickleError
from gpu_workbench.checkpoints.safety import classify, extra_allowed


def run(data: bytes, **kw: Any) -> Tuple[Any, Safety]:
    safety = Safety()
    value = pickle_vm.interpret(data, where="test.pkl", safety=safety, **kw)
    return value, safety


def globals_of(safety: Safety) -> List[Tuple[str, str, str]]:
    return sorted((g.module, g.name, g.classification) for g in safety.globals)


def unsafe_findings(safety: Safety) -> List[str]:
    return [text for sev, text in safety.findings if sev == "unsafe"]


class Plain:
    """A class pickled by reference (tests module), to produce NEWOBJ/BUILD and friends."""

    def __init__(self) -> None:
        self.a = 1
        self.b = [1, 2]


class WithKw:
    def __new__(cls, *args: Any, **kwargs: Any) -> "WithKw":
        return super().__new__(cls)

    def __getnewargs_ex__(self) -> Any:
        return (1,), {"k": 2}


# ---- values ----

VALUES = [
    0,
    1,
    -1,
    255,
    256,
    65535,
    65536,
    -(2**31),
    2**31 - 1,
    2**70,
    -(2**100),
    1.5,
    -0.0,
    float("inf"),
    "",
    "héllo ✓",
    "x" * 300,
    b"",
    b"\x00\xff",
    b"y" * 300,
    None,
    True,
    False,
    (),
    (1,),
    (1, 2),
    (1, 2, 3),
    (1, 2, 3, 4),
    [],
    [1, [2, [3]]],
    {},
    {"a": 1, 2: (3,), (4, 5): None},
    list(range(2500)),
    {("k%d" % i): i for i in range(1500)},
]


@pytest.mark.parametrize("protocol", range(6))
def test_plain_values_round_trip(protocol: int) -> None:
    for value in VALUES:
        data = pickle.dumps(value, protocol=protocol)
        got, safety = run(data)
        if protocol < 3 and isinstance(value, bytes):
            # _codecs.encode(text, "latin1"), or bytes() for b""
            assert type(got) is Call and got.func.name in ("encode", "bytes")
            continue
        assert got == value, (protocol, value)
        assert not safety.findings


@pytest.mark.parametrize("protocol", range(6))
def test_objects_become_calls(protocol: int) -> None:
    data = pickle.dumps(Plain(), protocol=protocol)
    got, safety = run(data)
    assert type(got) is Call
    if protocol >= 2:
        assert got.func == Global(__name__, "Plain")
    else:
        assert got.func == Global("copy_reg", "_reconstructor")
        assert got.args[0] == Global(__name__, "Plain")
    assert got.state == {"a": 1, "b": [1, 2]}
    assert (__name__, "Plain", "unknown") in globals_of(safety)


def test_newobj_ex_and_sets() -> None:
    got, _ = run(pickle.dumps(WithKw(), protocol=4))
    assert got.kind == "newobj_ex" and got.args == (1,) and got.kwargs == {"k": 2}
    got, _ = run(pickle.dumps({1, 2}, protocol=4))
    assert got == {1, 2}
    got, _ = run(pickle.dumps(frozenset({3}), protocol=4))
    assert got == frozenset({3})


def test_ordered_dict_items_and_state() -> None:
    od = collections.OrderedDict(a=1, b=2)
    got, safety = run(pickle.dumps(od, protocol=2))
    assert got.func == Global("collections", "OrderedDict")
    assert got.items == {"a": 1, "b": 2}
    assert globals_of(safety) == [("collections", "OrderedDict", "allowed")]


def test_memo_shares_objects() -> None:
    shared = [1]
    got, _ = run(pickle.dumps([shared, shared], protocol=2))
    assert got[0] is got[1]
    got, _ = run(pickle.dumps([shared, shared], protocol=4))  # MEMOIZE
    assert got[0] is got[1]
    got, _ = run(pickle.dumps([shared, shared], protocol=0))  # PUT / GET text
    assert got[0] is got[1]
    many = [[i] for i in range(300)]
    got, _ = run(pickle.dumps(many + many, protocol=2))  # LONG_BINPUT / LONG_BINGET
    assert got[0] is got[300] and got[299] is got[599]


def test_cycles_do_not_hang() -> None:
    a: List[Any] = []
    a.append(a)
    got, _ = run(pickle.dumps(a, protocol=2))
    assert got[0] is got


def test_protocol0_text_opcodes() -> None:
    data = b"(lp0\nI01\naI00\naL12345678901234567890L\naF1.25\naS'a\\x41'\naVsn\\u00e9\na."
    got, _ = run(data)
    assert got == [True, False, 12345678901234567890, 1.25, "aA", "sné"]


# ---- globals ----


def test_global_stack_global_inst_keep_names() -> None:
    got, safety = run(b"cos\nsystem\n(S'ls'\ntR.")
    assert got.func == Global("os", "system") and got.args == ("ls",)
    assert ("os", "system", "unsafe") in globals_of(safety)
    assert safety.verdict == "unsafe"
    # STACK_GLOBAL with a dotted name: module and name exactly as written
    data = b"\x80\x04\x8c\x07pathlib\x8c\tos.system\x93\x8c\x02id\x85R."
    got, safety = run(data)
    assert got.func == Global("pathlib", "os.system")
    assert globals_of(safety) == [("pathlib", "os.system", "unsafe")]
    data = b"\x80\x04\x8c\x05torch\x8c\x11storage.os.system\x93."
    got, safety = run(data)
    assert globals_of(safety) == [("torch", "storage.os.system", "unsafe")]
    # INST: GLOBAL + MARK call
    got, safety = run(b"(S'echo'\nisubprocess\ncheck_output\n.")
    assert got.kind == "inst" and got.func == Global("subprocess", "check_output")
    assert safety.verdict == "unsafe"


def test_sour_pickle_chain() -> None:
    data = (
        b"c__builtin__\nglobals\n(tRp0\n"
        b"c__builtin__\ncompile\n(S'print(1)'\nS''\nS'exec'\ntRp1\n"
        b"c__builtin__\neval\n(g1\ng0\ntR."
    )
    got, safety = run(data)
    names = {(g.module, g.name): g.classification for g in safety.globals}
    assert names[("__builtin__", "eval")] == "unsafe"
    assert names[("__builtin__", "compile")] == "unsafe"
    assert got.func == Global("__builtin__", "eval")


def test_global_counts_and_protocol2_name_mapping() -> None:
    _, safety = run(b"(c__builtin__\nset\n((ltRc__builtin__\nset\n((ltRl.")
    (ref,) = [g for g in safety.globals if g.name == "set"]
    assert ref.module == "__builtin__" and ref.count == 2 and ref.classification == "allowed"
    # Python 2 names that pickle maps to dangerous modules are judged by the mapping
    _, safety = run(b"\x80\x02ccommands\ngetoutput\nq\x00.")
    assert safety.verdict == "unsafe"


def test_stack_global_with_hidden_operands() -> None:
    # the module string comes from a memo entry behind a decoy global
    data = (
        b"\x80\x04\x8c\x05torch\x94\x8c\x0bLongStorage\x94\x93\x94"
        b"\x8c\x02os\x94\x8c\x06system\x94\x93\x8c\x02id\x85R."
    )
    _, safety = run(data)
    assert ("os", "system", "unsafe") in globals_of(safety)
    assert ("torch", "LongStorage", "allowed") in globals_of(safety)
    # type-confused memo: an int where a module name should be
    data = b"\x80\x04K\x05\x94\x8c\x06system\x93\x8c\x02id\x85R."
    _, safety = run(data)
    assert safety.verdict == "unsafe"
    assert any("not plain strings" in g.reason for g in safety.globals)
    # a memo entry that was never stored
    data = b"\x80\x04h\x07\x8c\x06system\x93."
    _, safety = run(data)
    assert safety.verdict == "unsafe"
    assert any("never stored" in t for t in unsafe_findings(safety))


def test_ext_opcodes_are_unsafe() -> None:
    for data in (
        b"\x80\x02\x82\x01)R.",
        b"\x80\x02\x83\x01\x02)R.",
        b"\x80\x02\x84\x01\x00\x00\x00.",
    ):
        _, safety = run(data)
        assert safety.verdict == "unsafe"
        assert any(g.module == "<copyreg extension>" for g in safety.globals)


def test_calls_on_computed_callables_are_unsafe() -> None:
    # REDUCE on the result of another REDUCE (getattr(...)(...)-style)
    data = b"cbuiltins\ndict\n)R)R."
    _, safety = run(data)
    assert any("computed while loading" in t for t in unsafe_findings(safety))
    # BUILD on an imported global monkey-patches it
    data = b"\x80\x02ctorch._utils\n_rebuild_tensor_v2\n}X\x08\x00\x00\x00__code__Nsb."
    _, safety = run(data)
    assert any("monkey-patching" in t for t in unsafe_findings(safety))


def test_persistent_ids_go_to_the_hook() -> None:
    seen: List[Any] = []

    def hook(pid: Any) -> Any:
        seen.append(pid)
        return ("loaded", pid)

    got, _ = run(b"\x80\x02(X\x07\x00\x00\x00storageK\x01tQ.", persistent_load=hook)
    assert seen == [("storage", 1)] and got == ("loaded", ("storage", 1))
    got, _ = run(b"Pabc\n.", persistent_load=hook)
    assert got == ("loaded", "abc")
    got, _ = run(b"Pabc\n.")
    assert type(got) is pickle_vm.PersistentId and got.pid == "abc"


def test_concatenated_pickles_with_run() -> None:
    data = (
        pickle.dumps(1, protocol=2) + pickle.dumps([2], protocol=4) + pickle.dumps("x", protocol=0)
    )
    safety = Safety()
    pos, values = 0, []
    while pos < len(data):
        r = pickle_vm.run(data, where="t", safety=safety, start=pos)
        values.append(r.value)
        pos = r.end
    assert values == [1, [2], "x"]
    assert safety.pickles == 3


# ---- frames ----


def test_consistent_frames_pass() -> None:
    value = {"k%d" % i: "v%d" % i * 10 for i in range(5000)}  # several 64 KiB frames
    data = pickle.dumps(value, protocol=4)
    assert data.count(b"\x95") >= 3
    got, safety = run(data)
    assert got == value and not safety.findings
    big = [b"x" * 200_000, "y"]  # large bytes are written outside frames
    got, safety = run(pickle.dumps(big, protocol=5))
    assert got == big and not safety.findings


def test_frame_disagreements_are_reported() -> None:
    # a BINBYTES whose payload crosses the end of its declared frame
    body = b"B\x10\x00\x00\x00" + b"c" * 16 + b"."
    data = b"\x80\x04\x95" + struct.pack("<Q", 8) + body
    got, safety = run(data)
    assert got == b"c" * 16
    assert any("crosses the end of the FRAME" in t for t in unsafe_findings(safety))
    # a frame longer than the data
    data = b"\x80\x04\x95" + struct.pack("<Q", 1000) + b"K\x01."
    got, safety = run(data)
    assert got == 1 and any("declares 1000 bytes" in t for t in unsafe_findings(safety))
    # a new frame before the current one ends
    data = b"\x80\x04\x95" + struct.pack("<Q", 12) + b"\x95" + struct.pack("<Q", 3) + b"K\x01."
    got, safety = run(data)
    assert got == 1 and any("before the frame" in t for t in unsafe_findings(safety))


# ---- limits and errors ----


def test_limits_raise_clean_errors_with_findings() -> None:
    data = pickle.dumps(list(range(10000)), protocol=2)
    with pytest.raises(PickleError) as info:
        run(data, limits=Limits(max_opcodes=1000, check_every=100))
    assert info.value.limit
    with pytest.raises(PickleError):
        run(data, limits=Limits(max_stack=500, check_every=100))
    with pytest.raises(PickleError):
        run(
            pickle.dumps([[i] for i in range(3000)], protocol=2),
            limits=Limits(max_memo=100, check_every=100),
        )
    with pytest.raises(PickleError):
        run(b"(" * 5000 + b".", limits=Limits(max_marks=100, check_every=100))
    with pytest.raises(PickleError):
        run(data, limits=Limits(max_bytes=100))
    safety = Safety()
    with pytest.raises(PickleError):
        pickle_vm.interpret(
            data, where="t", safety=safety, limits=Limits(max_opcodes=10, check_every=5)
        )
    assert any("limit" in text for _, text in safety.findings)


def test_billion_laughs_is_refused() -> None:
    parts = [b"\x80\x02]q\x00"]  # memo 0: []
    for level in range(1, 40):
        parts.append(b"(" + b"h%c" % (level - 1) * 10 + b"lq%c" % level)
    data = b"".join(parts) + b"."
    safety = Safety()
    # the machine itself shares references, so this is only flagged by the ratio check
    with pytest.raises(PickleError) as info:
        pickle_vm.interpret(
            data,
            where="t",
            safety=safety,
            limits=Limits(min_gets_for_ratio=100, max_get_ratio=5, check_every=64),
        )
    assert info.value.limit
    assert any("billion laughs" in t for t in unsafe_findings(safety))


def test_default_limits_pass_a_100k_tensor_state_dict() -> None:
    # usage grows linearly with tensors: 10k tensors must use under a tenth of every limit
    data = _fake_torch_state_dict(10_000)
    safety = Safety()
    machine_limits = pickle_vm.DEFAULT_LIMITS
    r = pickle_vm.run(
        data, where="data.pkl", safety=safety, persistent_load=lambda pid: ("S", pid[2])
    )
    assert r.value.items is not None and len(r.value.items) == 10_000
    assert 25 * 10_000 <= r.opcodes <= 40 * 10_000
    assert r.opcodes * 10 < machine_limits.max_opcodes
    assert machine_limits.max_memo > 6 * 10_000 * 10
    assert len(data) * 10 < machine_limits.max_bytes
    assert safety.verdict == "safe"


def _fake_torch_state_dict(n: int) -> bytes:
    """A data.pkl shaped like torch.save's (protocol 2, memo indices beyond 255)."""
    memo = [0]

    def put() -> bytes:
        i = memo[0]
        memo[0] += 1
        return b"r" + struct.pack("<I", i)

    def get(i: int) -> bytes:
        return b"j" + struct.pack("<I", i)

    out = [b"\x80\x02ccollections\nOrderedDict\n" + put() + b")R" + put() + b"("]
    out.append(b"ctorch._utils\n_rebuild_tensor_v2\n" + put())  # memo 2
    out.append(b"X\x07\x00\x00\x00storage" + put())  # memo 3
    out.append(b"ctorch\nFloatStorage\n" + put())  # memo 4
    out.append(b"X\x03\x00\x00\x00cpu" + put() + b"0")  # memo 5
    out.append(b"0000(")
    for i in range(n):
        key = ("layer.%d.weight" % i).encode()
        sid = str(i).encode()
        out.append(
            b"X"
            + struct.pack("<I", len(key))
            + key
            + put()
            + get(2)
            + b"(("
            + get(3)
            + get(4)
            + b"X"
            + struct.pack("<I", len(sid))
            + sid
            + put()
            + get(5)
            + b"K\x0ctQ"
            + put()
            + b"K\x00K\x03K\x04\x86"
            + put()
            + b"K\x04K\x01\x86"
            + put()
            + b"\x89"
            + get(0)
            + b")R"
            + put()
            + b"tR"
            + put()
        )
        if i % 1000 == 999:
            out.append(b"u(")
    out.append(b"u.")
    return b"".join(out)


def test_check_is_called_and_cancels() -> None:
    data = pickle.dumps(list(range(50000)), protocol=2)
    calls = []

    def check() -> None:
        calls.append(1)
        if len(calls) == 3:
            raise Cancelled()

    with pytest.raises(Cancelled):
        run(data, check=check, limits=Limits(check_every=1000))
    assert len(calls) == 3


MALFORMED = [
    b"",
    b".",
    b"\x80\x02",
    b"\x80\x09N.",
    b"K",
    b"J\x01\x02",
    b"X\xff\xff\xff\x7fabc",
    b"\x80\x04\x8d" + b"\xff" * 8,
    b"(t\x85\x85\x85.",
    b"R.",
    b"0.",
    b"s.",
    b"}K\x01s.",
    b"(((((.",
    b"I12a\n.",
    b"F1.2.3\n.",
    b"S'unterminated\n.",
    b"Sunquoted\n.",
    b"cos\n",
    b"g99\n.",
    b"p-1\n.",
    b"\x8b\xff\xff\xff\xff.",
    b"\xff.",
    b"\x80\x04\x95",
    b"}(K\x01u.",
    b"o.",
    b"\x92.",
    b"cmod\n\xf8\n.",
    b"L" + b"9" * 10000 + b"\n.",
    b"\x80\x05\x97\x98.",
]


@pytest.mark.parametrize("data", MALFORMED)
def test_malformed_input_raises_only_format_errors(data: bytes) -> None:
    try:
        run(data)
    except CheckpointFormatError:
        pass


def test_truncations_and_mutations_raise_only_format_errors() -> None:
    rng = random.Random(1234)
    samples = [
        pickle.dumps(v, protocol=p)
        for p in range(6)
        for v in (
            {"a": [1, 2.5, "x", b"y", (None, True)], "b": collections.OrderedDict(c={3})},
            Plain(),
            [[i, str(i)] for i in range(40)],
        )
    ]
    samples.append(_fake_torch_state_dict(3))
    for data in samples:
        for cut in range(len(data)):
            try:
                run(data[:cut])
            except CheckpointFormatError:
                pass
        for _ in range(150):
            mutated = bytearray(data)
            for _ in range(rng.randint(1, 4)):
                mutated[rng.randrange(len(mutated))] = rng.randrange(256)
            try:
                run(bytes(mutated))
            except CheckpointFormatError:
                pass


def test_deep_nesting_is_a_clean_error() -> None:
    # 200k nested tuples built through the memo: hashing them would recurse
    depth = 200_000
    data = b"\x80\x02)" + b"\x85" * depth + b"}\x94h\x00K\x01s."
    try:
        run(data)
    except CheckpointFormatError:
        pass
    data = b"\x80\x02" + b"]" * 50_000 + b"a" * 49_999 + b"."
    got, _ = run(data)
    assert isinstance(got, list)


def test_partial_results_and_globals_survive_errors() -> None:
    good = pickle.dumps({"a": 1, "b": 2, "c": [3, 4]}, protocol=2)
    evil = b"\x80\x02}q\x00(X\x01\x00\x00\x00aK\x01X\x01\x00\x00\x00bcposix\nsystem\n"
    safety = Safety()
    with pytest.raises(PickleError) as info:
        pickle_vm.interpret(evil, where="t", safety=safety)
    assert info.value.partial["a"] == 1
    assert safety.verdict == "unsafe"  # the global before the failure is recorded
    with pytest.raises(PickleError) as info:
        run(good[:-8])
    assert info.value.partial["a"] == 1 and info.value.partial["b"] == 2


def test_bad_dict_keys_do_not_crash() -> None:
    data = b"\x80\x02}](K\x01K\x02e]s."  # a list as a key
    got, _ = run(data)
    assert len(got) == 1


# ---- classifier ----


@pytest.mark.parametrize(
    "module,name,expected",
    [
        ("torch._utils", "_rebuild_tensor_v2", "allowed"),
        ("torch._utils", "_rebuild_tensor_v3", "allowed"),
        ("torch._tensor", "_rebuild_from_type_v2", "allowed"),
        ("torch", "FloatStorage", "allowed"),
        ("torch.storage", "UntypedStorage", "allowed"),
        ("torch", "bfloat16", "allowed"),
        ("torch", "per_channel_affine", "allowed"),
        ("collections", "OrderedDict", "allowed"),
        ("_codecs", "encode", "allowed"),
        ("builtins", "set", "allowed"),
        ("__builtin__", "set", "allowed"),
        ("numpy.core.multiarray", "_reconstruct", "allowed"),
        ("numpy._core.multiarray", "scalar", "allowed"),
        ("numpy", "dtype", "allowed"),
        ("argparse", "Namespace", "unknown"),
        ("torch.nn.modules.linear", "Linear", "unknown"),
        ("torch.jit._pickle", "build_intlist", "unknown"),
        ("builtins", "int", "unknown"),
        ("builtins", "eval", "unsafe"),
        ("builtins", "exec", "unsafe"),
        ("builtins", "getattr", "unsafe"),
        ("__builtin__", "apply", "unsafe"),
        ("builtins", "__import__", "unsafe"),
        ("os", "system", "unsafe"),
        ("posix", "system", "unsafe"),
        ("nt", "system", "unsafe"),
        ("subprocess", "Popen", "unsafe"),
        ("socket", "create_connection", "unsafe"),
        ("runpy", "_run_code", "unsafe"),
        ("pickle", "loads", "unsafe"),
        ("marshal", "loads", "unsafe"),
        ("types", "CodeType", "unsafe"),
        ("importlib", "import_module", "unsafe"),
        ("ctypes", "CDLL", "unsafe"),
        ("pip", "main", "unsafe"),
        ("webbrowser", "open", "unsafe"),
        ("functools", "partial", "unsafe"),
        ("operator", "attrgetter", "unsafe"),
        ("_operator", "methodcaller", "unsafe"),
        ("bdb", "Bdb.run", "unsafe"),
        ("pydoc", "pipepager", "unsafe"),
        ("timeit", "timeit", "unsafe"),
        ("numpy.testing._private.utils", "runstring", "unsafe"),
        ("torch.serialization", "load", "unsafe"),
        ("torch", "load", "unsafe"),
        ("pathlib", "os.system", "unsafe"),
        ("torch", "storage.os.system", "unsafe"),
        ("torch", "_utils.__builtins__", "unsafe"),
        ("collections", "OrderedDict.__init__.__globals__", "unsafe"),
        ("torch.os", "system", "unsafe"),
        ("", "x", "unsafe"),
        ("os.", "system", "unsafe"),
    ],
)
def test_classify(module: str, name: str, expected: str) -> None:
    assert classify(module, name)[0] == expected


def test_extra_allowed_is_per_context() -> None:
    assert classify("argparse", "Namespace")[0] == "unknown"
    with extra_allowed(["argparse.Namespace", "os.system", "mymod.sys.x"]):
        assert classify("argparse", "Namespace")[0] == "allowed"
        assert classify("os", "system")[0] == "unsafe"  # never allowed
        assert classify("mymod.sys", "x")[0] == "unsafe"
        # other threads (the backend's pool) do not see this request's allowlist
        with ThreadPoolExecutor(1) as pool:
            assert pool.submit(classify, "argparse", "Namespace").result()[0] == "unknown"
        ctx = contextvars.copy_context()
        assert ctx.run(classify, "argparse", "Namespace")[0] == "allowed"
    assert classify("argparse", "Namespace")[0] == "unknown"
    results: List[Optional[str]] = [None, None]

    def worker(i: int, allow: List[str]) -> None:
        with extra_allowed(allow):
            results[i] = classify("argparse", "Namespace")[0]

    threads = [
        threading.Thread(target=worker, args=(0, ["argparse.Namespace"])),
        threading.Thread(target=worker, args=(1, [])),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == ["allowed", "unknown"]


# ---- bare pickle files and detection ----


def test_pickle_file_concatenated_and_malicious(tmp_path: Any) -> None:
    path = tmp_path / "two.pkl"
    path.write_bytes(pickle.dumps({"a": 1}, protocol=2) + b"cos\nsystem\n(S'id'\ntR.")
    reading = pickle_file.read(str(path), lambda: None)
    assert reading.safety.verdict == "unsafe"
    assert "2 concatenated" in reading.format_detail
    assert isinstance(reading.structure, list) and reading.structure[0] == {"a": 1}
    summary = readers.inspect(str(path))
    assert summary["format"] == "pickle" and summary["safety"]["verdict"] == "unsafe"


def test_pickle_file_broken_after_payload(tmp_path: Any) -> None:
    path = tmp_path / "broken.pkl"
    path.write_bytes(b"\x80\x02cbuiltins\nexec\nX\x04\x00\x00\x00pass\x85R\xff\xff")
    reading = pickle_file.read(str(path), lambda: None)
    assert reading.safety.verdict == "unsafe"
    assert reading.warnings


def test_pickle_file_not_a_pickle(tmp_path: Any) -> None:
    path = tmp_path / "junk.pkl"
    path.write_bytes(b"\x80\x02\xff\xff")
    with pytest.raises(CheckpointFormatError):
        pickle_file.read(str(path), lambda: None)


def test_detect_protocol0_pickles() -> None:
    for value in ({"a": 1}, [1, 2], (1,), 5, "s", None, {"x": [1.5, b"b"]}):
        for protocol in (0, 1):
            data = pickle.dumps(value, protocol=protocol)
            assert detect.sniff_bytes(data[:512], len(data)) == "pickle", (value, protocol)
    big = pickle.dumps({"k%d" % i: list(range(10)) for i in range(300)}, protocol=0)
    assert detect.sniff_bytes(big[:512], len(big)) == "pickle"
    assert detect.sniff_bytes(b"cos\nsystem\n(S'ls'\ntR.", 21) == "pickle"
    for text in (b"(hello) world", b"Note: x\n", b"]]]", b"NaN values\n", b"cat\ndog\n"):
        assert detect.sniff_bytes(text, len(text)) == "unknown"


def test_billion_laughs_file_is_quick_to_inspect(tmp_path: Any) -> None:
    import time

    parts = [b"\x80\x02K\x01q\x00"]
    for level in range(1, 60):
        parts.append(b"(" + b"h%c" % (level - 1) * 10 + b"lq%c" % level)
    path = tmp_path / "laughs.pkl"
    path.write_bytes(b"".join(parts) + b".")
    started = time.perf_counter()
    summary = readers.inspect(str(path))
    assert time.perf_counter() - started < 5
    assert summary["format"] == "pickle"


def test_mutated_torch_zip_pickles_read_cleanly(tmp_path: Any) -> None:
    import zipfile

    rng = random.Random(99)
    pkl = _fake_torch_state_dict(6)
    for trial in range(250):
        data = bytearray(pkl)
        for _ in range(rng.randint(1, 6)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        if trial % 5 == 0:
            data = data[: rng.randrange(len(data))]
        path = tmp_path / ("m%d.pt" % trial)
        with zipfile.ZipFile(path, "w") as z:
            z.writestr("archive/data.pkl", bytes(data))
            for i in range(6):
                z.writestr("archive/data/%d" % i, b"\0" * 48)
            z.writestr("archive/version", "3\n")
        try:
            summary = readers.inspect(str(path))
        except CheckpointFormatError:
            continue
        import json

        json.dumps(summary, allow_nan=False)


def test_limits_hold_when_every_few_opcodes_start_a_frame() -> None:
    one = b"\x95" + struct.pack("<Q", 3) + b"N0N"  # FRAME, then NONE POP NONE
    data = b"\x80\x04" + one * 5000 + b"."
    with pytest.raises(PickleError) as info:
        run(data, limits=Limits(max_opcodes=1000, check_every=100))
    assert info.value.limit


def test_gc_is_enabled_again_after_reads(tmp_path: Any) -> None:
    import gc

    path = tmp_path / "x.pkl"
    path.write_bytes(pickle.dumps({"a": [1, 2]}, protocol=4))
    assert gc.isenabled()
    readers.read(str(path))
    with pytest.raises(PickleError):
        run(b"\x80\x02(")
    assert gc.isenabled()
