"""Tensor statistics from raw bytes: files written here from the format specs, strided
views on hand-built readings, sampling, and the numpy and stdlib engines agreeing."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import random
import struct
import sys
from typing import Any, Dict, List, Optional, Sequence, Tuple

import pytest
from writers import npy_bytes, pack, write_npz, write_safetensors

from gpu_workbench.checkpoints import decode, stats
from gpu_workbench.checkpoints.model import Reading, Tensor, contiguous_strides, product
from gpu_workbench.errors import ApplicationError
from gpu_workbench.protocol import CheckpointHistogram, CheckpointStatsResult, CheckpointTensorStats

HAS_NUMPY = decode.numpy_module() is not None
ENGINES = ["numpy", "stdlib"] if HAS_NUMPY else ["stdlib"]
NAN = math.nan
INF = math.inf


# ---- writers, from the specs (safetensors README; numpy.lib.format) ----


def f32(values: Sequence[float]) -> List[float]:
    """Values rounded to float32."""
    return list(struct.unpack("<%df" % len(values), struct.pack("<%df" % len(values), *values)))


# ---- reference statistics, plain Python ----


def reference(values: Sequence[float], bins: int = 32) -> Dict[str, Any]:
    nan = sum(1 for v in values if v != v)
    inf = sum(1 for v in values if v == INF or v == -INF)
    fin = [v for v in values if v == v and v not in (INF, -INF)]
    out: Dict[str, Any] = {
        "count": len(values),
        "nanCount": nan,
        "infCount": inf,
        "zeroFraction": (sum(1 for v in values if v == 0) / len(values)) if values else None,
        "min": None,
        "max": None,
        "mean": None,
        "std": None,
        "counts": None,
    }
    if fin:
        n = len(fin)
        mean = math.fsum(fin) / n
        lo, hi = float(min(fin)), float(max(fin))
        out.update(
            min=lo,
            max=hi,
            mean=mean,
            std=math.sqrt(math.fsum((v - mean) ** 2 for v in fin) / n),
        )
        if lo == hi:
            lo, hi = lo - 0.5, hi + 0.5
        counts = [0] * bins
        for v in fin:
            counts[min(bins - 1, int((v - lo) * (bins / (hi - lo))))] += 1
        out["counts"] = counts
    return out


def close(a: Optional[float], b: Optional[float], rel: float = 1e-9) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return math.isclose(a, b, rel_tol=rel, abs_tol=1e-12)


def assert_matches(got: Dict[str, Any], values: Sequence[float], rel: float = 1e-9) -> None:
    ref = reference(values)
    assert got["error"] is None, got["error"]
    for key in ("count", "nanCount", "infCount"):
        assert got[key] == ref[key], (key, got[key], ref[key])
    assert close(got["zeroFraction"], ref["zeroFraction"])
    for key in ("min", "max", "mean", "std"):
        assert close(got[key], ref[key], rel), (key, got[key], ref[key])
    if ref["counts"] is None:
        assert got["histogram"] is None
    else:
        assert sum(got["histogram"]["counts"]) == sum(ref["counts"])
        # Bin by bin, allowing values within rounding of an edge to sit next door.
        assert all(abs(a - b) <= 2 for a, b in zip(got["histogram"]["counts"], ref["counts"]))


def by_name(result: Dict[str, Any]) -> Dict[str, Dict[str, Any]]:
    return {s["name"]: s for s in result["stats"]}


def run(path: str, engine: str, reading: Optional[Reading] = None, **kw: Any) -> Dict[str, Any]:
    result = stats.compute(path, engine=engine, reading=reading, **kw)
    json.dumps(result, allow_nan=False)  # never NaN/Infinity on the wire
    return result


def no_cap(**kw: Any) -> Dict[str, Any]:
    return dict(max_elements=1 << 40, time_budget_ms=1e9, **kw)


# ---- safetensors ----


def _dtype_fixture() -> Tuple[List[Tuple[str, str, List[int], bytes]], Dict[str, List[float]]]:
    rng = random.Random(7)
    tensors: List[Tuple[str, str, List[int], bytes]] = []
    expected: Dict[str, List[float]] = {}

    def add(name: str, dtype: str, shape: List[int], data: bytes, values: List[Any]) -> None:
        tensors.append((name, dtype, shape, data))
        expected[name] = [float(v) for v in values]

    v32 = f32([rng.gauss(0, 2) for _ in range(600)] + [NAN, INF, -INF, 0.0, -0.0, NAN])
    add("f32", "F32", [6, 101], pack("f", v32), v32)
    v64 = [rng.uniform(-1e6, 1e6) for _ in range(333)] + [0.0, 1e-300]
    add("f64", "F64", [335], pack("d", v64), v64)
    v16 = [rng.choice([0.0, -0.0, 1.0, -2.5, 65504.0, 2.0**-24, INF, NAN]) for _ in range(257)]
    add("f16", "F16", [257], pack("e", v16), list(struct.unpack("<257e", pack("e", v16))))
    words = [struct.unpack("<I", struct.pack("<f", x))[0] >> 16 for x in v32[:500]]
    bf = [struct.unpack("<f", struct.pack("<I", w << 16))[0] for w in words]
    add("bf16", "BF16", [20, 25], pack("H", words), bf)
    ints = [rng.randrange(-(2**62), 2**62) for _ in range(99)] + [0, 0]
    add("i64", "I64", [101], pack("q", ints), ints)
    i32 = [rng.randrange(-(2**31), 2**31) for _ in range(64)]
    add("i32", "I32", [8, 8], pack("i", i32), i32)
    i16 = [rng.randrange(-(2**15), 2**15) for _ in range(300)] + [0]
    add("i16", "I16", [301], pack("h", i16), i16)
    i8 = [rng.randrange(-128, 128) for _ in range(77)]
    add("i8", "I8", [7, 11], pack("b", i8), i8)
    u8 = [rng.randrange(256) for _ in range(50)]
    add("u8", "U8", [50], bytes(u8), u8)
    u64 = [2**64 - 1, 0, 2**63, 12345]
    add("u64", "U64", [4], pack("Q", u64), u64)
    flags = [rng.randrange(2) for _ in range(40)]
    add("bool", "BOOL", [40], bytes(flags), flags)
    # E4M3: 0x38 = 1.0, 0x40 = 2.0, 0xC0 = -2.0, 0x7E = 448, 0x7F = NaN, 0x00 = 0
    e4 = {0x38: 1.0, 0x40: 2.0, 0xC0: -2.0, 0x7E: 448.0, 0x7F: NAN, 0x00: 0.0}
    codes = [rng.choice(list(e4)) for _ in range(90)]
    add("fp8", "F8_E4M3", [90], bytes(codes), [e4[c] for c in codes])
    # E5M2: 0x3C = 1.0, 0x7C = inf, 0xFC = -inf, 0x01 = 2**-16
    e5 = {0x3C: 1.0, 0x7C: INF, 0xFC: -INF, 0x01: 2.0**-16}
    codes5 = [rng.choice(list(e5)) for _ in range(33)]
    add("fp8e5", "F8_E5M2", [33], bytes(codes5), [e5[c] for c in codes5])
    add("scalar", "F32", [], pack("f", [3.5]), [3.5])
    add("empty", "F32", [0, 4], b"", [])
    add("same", "F32", [16], pack("f", [7.0] * 16), [7.0] * 16)
    add("nan_only", "F16", [3], pack("e", [NAN, NAN, INF]), [NAN, NAN, INF])
    return tensors, expected


@pytest.fixture(params=["bit_patterns", "moments"])
def sixteen_bit(request, monkeypatch):
    """16-bit tensors counted per bit pattern, or through the moments passes."""
    monkeypatch.setattr(stats, "BIT_PATTERN_MIN", 0 if request.param == "bit_patterns" else 1 << 40)
    return request.param


@pytest.mark.parametrize("engine", ENGINES)
def test_safetensors_every_dtype(tmp_path, engine, sixteen_bit):
    tensors, expected = _dtype_fixture()
    path = write_safetensors(str(tmp_path / "m.safetensors"), tensors, {"format": "pt"})
    result = run(path, engine, **no_cap())
    assert result["engine"] == engine
    assert result["path"] == os.path.abspath(path)
    got = by_name(result)
    assert list(got) == [t[0] for t in tensors]
    for name, values in expected.items():
        assert got[name]["numel"] == len(values)
        assert got[name]["sampled"] is False
        assert_matches(got[name], values)
    assert got["empty"]["count"] == 0 and got["empty"]["zeroFraction"] is None
    assert got["nan_only"]["min"] is None and got["nan_only"]["histogram"] is None
    assert got["nan_only"]["nanCount"] == 2 and got["nan_only"]["infCount"] == 1
    same = got["same"]["histogram"]
    assert same["edges"][0] == 6.5 and same["edges"][-1] == 7.5
    assert sum(same["counts"]) == 16 and same["counts"][16] == 16
    assert got["f32"]["zeroFraction"] == 2 / 606  # -0.0 counts as zero
    assert len(got["f32"]["histogram"]["edges"]) == 33


def test_bins_parameter(tmp_path):
    values = f32([float(i) for i in range(100)])
    path = write_safetensors(
        str(tmp_path / "m.safetensors"), [("w", "F32", [100], pack("f", values))]
    )
    for engine in ENGINES:
        hist = run(path, engine, bins=4)["stats"][0]["histogram"]
        assert hist["edges"] == [0.0, 24.75, 49.5, 74.25, 99.0]
        assert hist["counts"] == [25, 25, 25, 25]
        assert len(run(path, engine, bins=1)["stats"][0]["histogram"]["counts"]) == 1


@pytest.mark.skipif(not HAS_NUMPY, reason="numpy is not installed")
def test_engines_agree(tmp_path, sixteen_bit):
    tensors, _ = _dtype_fixture()
    path = write_safetensors(str(tmp_path / "m.safetensors"), tensors)
    a = by_name(run(path, "numpy", **no_cap()))
    b = by_name(run(path, "stdlib", **no_cap()))
    assert a.keys() == b.keys()
    for name in a:
        x, y = a[name], b[name]
        for key in ("count", "nanCount", "infCount", "zeroFraction", "min", "max", "histogram"):
            assert x[key] == y[key], (name, key, x[key], y[key])
        assert close(x["mean"], y["mean"], 1e-12) and close(x["std"], y["std"], 1e-12), name


def test_without_numpy(tmp_path, monkeypatch):
    tensors, expected = _dtype_fixture()
    path = write_safetensors(str(tmp_path / "m.safetensors"), tensors)
    monkeypatch.setitem(sys.modules, "numpy", None)  # `import numpy` raises ImportError
    result = stats.compute(path, **no_cap())
    assert result["engine"] == "stdlib"
    for name, values in expected.items():
        assert_matches(by_name(result)[name], values)
    monkeypatch.undo()
    monkeypatch.setattr(decode, "FORCE_STDLIB", True)
    assert stats.compute(path, tensors=["f32"])["engine"] == "stdlib"


def test_protocol_field_names(tmp_path):
    path = write_safetensors(
        str(tmp_path / "m.safetensors"), [("w", "F32", [2], pack("f", [1, 2]))]
    )
    result = stats.compute(path)
    fields = lambda cls: {f.name for f in dataclasses.fields(cls)}  # noqa: E731
    assert set(result) == fields(CheckpointStatsResult)
    entry = result["stats"][0]
    assert set(entry) == fields(CheckpointTensorStats)
    assert set(entry["histogram"]) == fields(CheckpointHistogram)
    assert isinstance(result["elapsedMs"], float)


def test_selection_order_and_not_found(tmp_path):
    path = write_safetensors(
        str(tmp_path / "m.safetensors"),
        [
            ("layers.0.weight", "F32", [1], pack("f", [1])),
            ("layers.1.weight", "F32", [1], pack("f", [2])),
        ],
    )
    result = stats.compute(path, tensors=["layers.1.weight", "layers.0.weight"])
    assert [s["name"] for s in result["stats"]] == ["layers.1.weight", "layers.0.weight"]
    with pytest.raises(ApplicationError) as info:
        stats.compute(path, tensors=["layers.2.weight"])
    assert info.value.kind == "NotFound"
    assert "layers.2.weight" in info.value.message
    assert info.value.hint is not None and "layers.0.weight" in info.value.hint


def test_progress_and_cancel(tmp_path):
    values = f32([float(i) for i in range(1000)])
    path = write_safetensors(
        str(tmp_path / "m.safetensors"),
        [("a", "F32", [1000], pack("f", values)), ("b", "F32", [1000], pack("f", values))],
    )
    seen: List[float] = []
    stats.compute(path, report=lambda frac, msg=None: seen.append(frac))
    assert seen[-1] == 1.0 and seen == sorted(seen) and all(0 <= f <= 1 for f in seen)

    class Stop(Exception):
        pass

    calls = []

    def check() -> None:
        calls.append(1)
        if len(calls) > 2:
            raise Stop()

    with pytest.raises(Stop):
        stats.compute(path, check=check)


# ---- .npy / .npz ----


@pytest.mark.parametrize("engine", ENGINES)
def test_npy_big_endian_and_fortran(tmp_path, engine):
    rng = random.Random(3)
    rows, cols = 9, 14
    values = f32([rng.uniform(-5, 5) for _ in range(rows * cols)])  # logical row-major
    big = str(tmp_path / "big.npy")
    with open(big, "wb") as f:
        f.write(npy_bytes(">f4", (rows, cols), pack("f", values, ">")))
    assert_matches(run(big, engine)["stats"][0], values)
    # Fortran order: column-major bytes, a strided view for the reader.
    column_major = [values[r * cols + c] for c in range(cols) for r in range(rows)]
    fortran = str(tmp_path / "fortran.npy")
    with open(fortran, "wb") as f:
        f.write(npy_bytes("<f4", (rows, cols), pack("f", column_major), fortran=True))
    assert_matches(run(fortran, engine)["stats"][0], values)
    ints = str(tmp_path / "ints.npy")
    with open(ints, "wb") as f:
        f.write(npy_bytes(">i8", (5,), pack("q", [-3, 0, 9, 2**40, 7], ">")))
    assert_matches(run(ints, engine)["stats"][0], [-3, 0, 9, 2**40, 7])


@pytest.mark.parametrize("compressed", [False, True])
@pytest.mark.parametrize("engine", ENGINES)
def test_npz_members(tmp_path, engine, compressed):
    rng = random.Random(11)
    a = f32([rng.gauss(0, 1) for _ in range(5000)])
    b = [rng.randrange(-100, 100) for _ in range(300)]
    h = [rng.uniform(-3, 3) for _ in range(64)]
    h = list(struct.unpack("<64e", pack("e", h)))
    path = write_npz(
        str(tmp_path / ("c.npz" if compressed else "s.npz")),
        {
            "a": npy_bytes("<f4", (50, 100), pack("f", a)),
            "b": npy_bytes("<i2", (300,), pack("h", b)),
            "h": npy_bytes(">f2", (8, 8), pack("e", h, ">")),
        },
        compressed,
    )
    got = by_name(run(path, engine, **no_cap()))
    assert_matches(got["a"], a)
    assert_matches(got["b"], b)
    assert_matches(got["h"], h)
    # Reading the members again, out of order, restarts the decompression when needed.
    got = by_name(run(path, engine, tensors=["h", "a", "b"], **no_cap()))
    assert_matches(got["a"], a)


def test_npy_object_array_is_not_read(tmp_path):
    path = str(tmp_path / "obj.npy")
    with open(path, "wb") as f:
        f.write(npy_bytes("|O", (2,), b"\x80\x02]q\x00(K\x01K\x02e."))
    entry = stats.compute(path)["stats"][0]
    assert entry["error"] == stats.PICKLED_VALUES
    assert entry["count"] == 0 and entry["histogram"] is None


# ---- hand-built readings: strided views, errors ----


def _raw_reading(tmp_path, data: bytes, tensors: List[Tensor]) -> Tuple[str, Reading]:
    path = str(tmp_path / "raw.bin")
    with open(path, "wb") as f:
        f.write(data)
    reading = Reading(path, "test", "hand-built")
    reading.tensors = tensors
    return path, reading


def view_values(base: List[Any], shape: List[int], stride: List[int], offset: int) -> List[Any]:
    """Elements of a strided view, row-major, by plain index arithmetic."""
    out = []
    for flat in range(product(shape)):
        pos, rem = offset, flat
        for size, st in zip(reversed(shape), reversed(stride)):
            rem, i = divmod(rem, size)
            pos += i * st
        out.append(base[pos])
    return out


VIEWS = [
    # (name, shape, stride, storage offset in elements)
    ("contiguous", [30, 40], [40, 1], 0),
    ("transposed", [40, 30], [1, 40], 0),
    ("slice", [20, 13], [40, 3], 85),
    ("column", [30], [40], 7),
    ("broadcast", [5, 40], [0, 1], 40),
    ("permuted3d", [4, 10, 30], [10, 1, 40], 0),
    ("scalar_view", [], [], 1199),
    ("rows_reversed_dims", [2, 3, 4, 5], [1, 2, 6, 24], 3),
]


@pytest.fixture(params=["default", "tiny_chunks"])
def chunking(request, monkeypatch):
    """Run with the normal chunk sizes, and with tiny ones so that every box is split."""
    if request.param == "tiny_chunks":
        monkeypatch.setattr(stats, "CHUNK_BYTES", 64)
        monkeypatch.setattr(stats, "SMALL_SPAN", 16)
        monkeypatch.setattr(stats, "CHUNK_ELEMS_NUMPY", 7)
        monkeypatch.setattr(stats, "CHUNK_ELEMS_STDLIB", 5)
        monkeypatch.setattr(stats, "MIN_SAMPLE_BOXES", 4)
    return request.param


@pytest.mark.parametrize("engine", ENGINES)
def test_strided_views(tmp_path, engine, chunking):
    rng = random.Random(1)
    base = f32([rng.uniform(-10, 10) for _ in range(1200)])
    base[17] = NAN
    base[40 * 3 + 5] = 0.0
    header = b"JUNK" * 3
    tensors = [
        Tensor(name, "F32", shape, None, stride=stride, offset=len(header) + 4 * off)
        for name, shape, stride, off in VIEWS
    ]
    path, reading = _raw_reading(tmp_path, header + pack("f", base), tensors)
    got = by_name(run(path, engine, reading, **no_cap()))
    for name, shape, stride, off in VIEWS:
        assert_matches(got[name], view_values(base, shape, stride, off))


@pytest.mark.parametrize("engine", ENGINES)
def test_strided_16_bit_and_big_endian(tmp_path, engine, chunking):
    rng = random.Random(2)
    words = [rng.randrange(0x3000, 0x5000) for _ in range(600)]  # finite bf16/f16 patterns
    bf = [struct.unpack("<f", struct.pack("<I", w << 16))[0] for w in words]
    i16 = [w - 0x4000 for w in words]
    data = pack("H", words) + pack("h", i16, ">") + pack("d", bf, ">")
    tensors = [
        Tensor("bf16_T", "BF16", [20, 30], None, stride=[1, 20], offset=0),
        Tensor(
            "i16_be_slice",
            "I16",
            [10, 7],
            None,
            stride=[60, 4],
            offset=1200 + 2 * 31,
            byte_order="big",
        ),
        Tensor("f64_be_T", "F64", [30, 20], None, stride=[1, 30], offset=2400, byte_order="big"),
    ]
    path, reading = _raw_reading(tmp_path, data, tensors)
    got = by_name(run(path, engine, reading, **no_cap()))
    assert_matches(got["bf16_T"], view_values(bf, [20, 30], [1, 20], 0))
    assert_matches(got["i16_be_slice"], view_values(i16, [10, 7], [60, 4], 31))
    assert_matches(got["f64_be_T"], view_values(bf, [30, 20], [1, 30], 0))


class _MemorySource:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.largest = 0
        self.reads = 0

    def read(self, pos: int, n: int) -> bytes:
        assert pos >= 0 and pos + n <= len(self.data)
        self.largest = max(self.largest, n)
        self.reads += 1
        return self.data[pos : pos + n]


@pytest.mark.parametrize("engine", ENGINES)
def test_read_box_random_views(engine, monkeypatch):
    """Random strided boxes read through every path equal plain index arithmetic."""
    np = decode.numpy_module() if engine == "numpy" else None
    rng = random.Random(42)
    for caps in [(1 << 24, 1 << 20), (96, 24)]:
        monkeypatch.setattr(stats, "CHUNK_BYTES", caps[0])
        monkeypatch.setattr(stats, "SMALL_SPAN", caps[1])
        for _ in range(150):
            ndim = rng.randrange(1, 5)
            shape = [rng.randrange(1, 6) for _ in range(ndim)]
            stride = [rng.choice([0, 1, 2, 3, 7, 11, 30]) for _ in range(ndim)]
            if rng.random() < 0.5:  # a permutation of a contiguous layout
                perm = list(range(ndim))
                rng.shuffle(perm)
                cont = contiguous_strides([shape[p] for p in perm])
                stride = [0] * ndim
                for i, p in enumerate(perm):
                    stride[p] = cont[i]
            itemsize = rng.choice([1, 2, 4, 8, 16])
            offset = rng.randrange(0, 5)
            extent = offset + sum((n - 1) * s for n, s in zip(shape, stride)) + 1
            elements = [bytes([rng.randrange(256) for _ in range(itemsize)]) for _ in range(extent)]
            src = _MemorySource(b"".join(elements))
            got = stats.read_box(src, offset * itemsize, shape, stride, itemsize, np)
            want = b"".join(view_values(elements, shape, stride, offset))
            assert got == want, (shape, stride, itemsize, caps)
            assert src.largest <= max(caps[0], itemsize)


def test_sparse_view_reads_only_what_it_needs(monkeypatch):
    """A column of a big matrix is read piecewise, not as one huge span."""
    monkeypatch.setattr(stats, "CHUNK_BYTES", 4096)
    monkeypatch.setattr(stats, "SMALL_SPAN", 1024)
    rows, cols = 64, 512
    src = _MemorySource(bytes(range(256)) * (rows * cols * 4 // 256))
    data = stats.read_box(src, 8, [rows], [cols], 4)
    assert len(data) == rows * 4
    assert src.largest <= 4096


@pytest.mark.parametrize("engine", ENGINES)
def test_gguf_style_blocks(tmp_path, engine):
    scales = [0.5, -0.25]
    qs = [[(i * 7) % 256 - 128 for i in range(32)], [(i * 13) % 256 - 128 for i in range(32)]]
    data = b"".join(struct.pack("<e", d) + pack("b", q) for d, q in zip(scales, qs))
    tensors = [Tensor("q", "Q8_0", [2, 32], len(data), offset=0)]
    path, reading = _raw_reading(tmp_path, data, tensors)
    assert_matches(
        run(path, engine, reading)["stats"][0], [d * q for d, b in zip(scales, qs) for q in b]
    )


def test_per_tensor_errors(tmp_path):
    data = pack("f", [1.0, 2.0, 3.0])
    tensors = [
        Tensor("ok", "F32", [3], 12, offset=0),
        Tensor("pickled", "F32", [3], 12, offset=None),
        Tensor("complex", "C64", [1], 8, offset=0),
        Tensor("quant", "Q4_K", [256], 144, offset=0),
        Tensor("truncated", "F32", [10], 40, offset=4),
        Tensor("missing_file", "F32", [1], 4, offset=0, file="nowhere.bin"),
        Tensor("negative", "F32", [2], None, stride=[-1], offset=4),
    ]
    path, reading = _raw_reading(tmp_path, data, tensors)
    got = by_name(run(path, ENGINES[0], reading))
    assert got["ok"]["error"] is None and got["ok"]["mean"] == 2.0
    assert got["pickled"]["error"] == "values are stored inside the pickle and are not read"
    assert got["complex"]["error"] == "statistics are not available for C64"
    assert got["quant"]["error"] == "statistics are not available for Q4_K"
    assert "past the end" in got["truncated"]["error"]
    assert "cannot open" in got["missing_file"]["error"]
    assert "negative strides" in got["negative"]["error"]
    for name in ("pickled", "complex", "truncated"):
        assert got[name]["count"] == 0 and got[name]["min"] is None


def test_shards_resolve_relative_files(tmp_path):
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "part-1.bin").write_bytes(pack("f", [1.0, 3.0]))
    (folder / "part-2.bin").write_bytes(pack("f", [5.0]))
    reading = Reading(str(folder), "hf-folder", "test")
    reading.tensors = [
        Tensor("a", "F32", [2], 8, offset=0, file="part-1.bin"),
        Tensor("b", "F32", [1], 4, offset=0, file=str(folder / "part-2.bin")),
    ]
    got = by_name(stats.compute(str(folder), reading=reading))
    assert got["a"]["mean"] == 2.0 and got["b"]["mean"] == 5.0


# ---- sampling ----


@pytest.mark.parametrize("dtype", ["F32", "BF16"])
@pytest.mark.parametrize("engine", ENGINES)
def test_sampling_by_max_elements(tmp_path, engine, dtype):
    n = 200_000
    values = f32([float(i) for i in range(n)])
    if dtype == "F32":
        data = pack("f", values)
    else:  # bf16: the upper halves
        data = pack("H", [struct.unpack("<I", struct.pack("<f", v))[0] >> 16 for v in values])
    path = write_safetensors(str(tmp_path / "m.safetensors"), [("ramp", dtype, [400, 500], data)])
    entry = run(path, engine, max_elements=20_000)["stats"][0]
    assert entry["sampled"] is True
    assert 10_000 <= entry["count"] <= 40_000
    assert entry["numel"] == n
    # Evenly spaced samples: the ends of the ramp are represented and the mean is central.
    assert entry["min"] < 0.05 * n and entry["max"] > 0.95 * n
    assert abs(entry["mean"] - n / 2) < 0.05 * n
    assert sum(entry["histogram"]["counts"]) == entry["count"]
    full = run(path, engine, **no_cap())["stats"][0]
    assert full["sampled"] is False and full["count"] == n


def test_sampling_by_time_budget(tmp_path, monkeypatch):
    monkeypatch.setattr(stats, "CHUNK_ELEMS_NUMPY", 1 << 14)
    n = 300_000
    values = f32([float(i % 1000) for i in range(n)])
    path = write_safetensors(
        str(tmp_path / "m.safetensors"), [("w", "F32", [n], pack("f", values))]
    )
    for engine in ENGINES:
        entry = run(path, engine, time_budget_ms=0, max_elements=1 << 40)["stats"][0]
        assert entry["sampled"] is True
        assert 0 < entry["count"] < n
        assert (
            entry["histogram"] is not None and sum(entry["histogram"]["counts"]) == entry["count"]
        )


def test_evenly_spaced():
    assert stats.evenly_spaced(10, 20) == list(range(10))
    assert stats.evenly_spaced(100, 4) == [12, 37, 62, 87]
    assert stats.evenly_spaced(5, 0) == []
    picks = stats.evenly_spaced(1000, 37)
    assert len(set(picks)) == 37 and picks == sorted(picks)


def test_simplify_and_plan():
    assert stats.simplify([2, 3, 4], [12, 4, 1]) == ([24], [1])
    assert stats.simplify([4, 3], [1, 4], reorder=True) == ([12], [1])
    assert stats.simplify([1, 1], [5, 9]) == ([1], [1])
    assert stats.simplify([3, 1, 2], [2, 7, 1]) == ([6], [1])
    lay = stats.Layout([10, 7], [7, 1], 4, 100)
    plan = stats.BoxPlan(lay, 16)
    boxes = [plan.box(i) for i in range(plan.count)]
    assert sum(b[3] for b in boxes) == 70
    assert boxes[0][0] == 100
