"""safetensors reader: values, offsets, every validation rule, speed."""

from __future__ import annotations

import json
import os
import struct
import time
from typing import Any, Dict, List

import pytest
from spec_fixtures import ST_BITS, pattern, safetensors_bytes, st_nbytes, write

from gpu_workbench.checkpoints import readers, safetensors
from gpu_workbench.checkpoints.dtypes import lookup
from gpu_workbench.checkpoints.errors import CheckpointFormatError


def _write(tmp_path, data: bytes, name: str = "m.safetensors") -> str:
    return write(str(tmp_path / name), data)


def _entry(dtype: str, shape: List[int], begin: int, end: int) -> Dict[str, Any]:
    return {"dtype": dtype, "shape": shape, "data_offsets": [begin, end]}


def _fails(tmp_path, data: bytes, *fragments: str) -> CheckpointFormatError:
    path = _write(tmp_path, data)
    with pytest.raises(CheckpointFormatError) as info:
        safetensors.read(path)
    for fragment in fragments:
        assert fragment in info.value.message, info.value.message
    return info.value


def test_reads_tensors_metadata_and_offsets(tmp_path):
    tensors = [
        ("model.embed.weight", "BF16", [8, 4]),
        ("model.layers.0.w", "F32", [4, 4]),
        ("model.layers.0.b", "F16", [4]),
        ("scalar", "I64", []),
        ("empty", "F32", [0, 3]),
    ]
    data = safetensors_bytes(tensors, {"format": "pt", "note": "ü"})
    path = _write(tmp_path, data)
    reading = safetensors.read(path)
    assert reading.format == "safetensors"
    assert reading.metadata == {"safetensors": {"format": "pt", "note": "ü"}}
    assert reading.warnings == []
    assert reading.files == [{"path": path, "size": len(data), "format": "safetensors"}]
    (n,) = struct.unpack("<Q", data[:8])
    assert n % 8 == 0  # the writer pads the header with spaces
    by_name = {t.name: t for t in reading.tensors}
    assert set(by_name) == {name for name, _, _ in tensors}
    for i, (name, dtype, shape) in enumerate(tensors):
        t = by_name[name]
        assert t.dtype == dtype
        assert t.shape == shape
        nbytes = st_nbytes(dtype, shape)
        assert t.nbytes == nbytes
        assert t.byte_order == "little"
        assert t.stride is None
        assert t.offset is not None and t.offset >= 8 + n
        assert data[t.offset : t.offset + nbytes] == pattern(i + 1, nbytes)
    assert by_name["scalar"].numel == 1
    assert by_name["empty"].numel == 0
    assert reading.format_detail == "safetensors, 5 tensors, header %d B" % n
    assert reading.safety.verdict == "safe"


def test_every_dtype_has_a_canonical_name(tmp_path):
    tensors = []
    for dtype in ST_BITS:
        tensors.append(("t_" + dtype.lower(), dtype, [2, 4]))  # 8 elements: whole bytes for F4/F6
    path = _write(tmp_path, safetensors_bytes(tensors))
    reading = safetensors.read(path)
    assert {t.dtype for t in reading.tensors} == set(ST_BITS)
    for t in reading.tensors:
        d = lookup(t.dtype)
        assert d is not None and d.bits == ST_BITS[t.dtype]
        assert t.nbytes == 8 * ST_BITS[t.dtype] // 8


def test_inspect_through_readers(tmp_path):
    tensors = [("a.weight", "F32", [3, 2]), ("a.bias", "F32", [3])]
    path = _write(tmp_path, safetensors_bytes(tensors, {"format": "pt"}))
    summary = readers.inspect(path)
    assert summary["format"] == "safetensors"
    assert summary["tensorCount"] == 2
    assert summary["parameterCount"] == 9
    assert summary["tensorBytes"] == 36
    assert summary["modules"]["children"][0]["path"] == "a"
    json.dumps(summary, allow_nan=False)


def test_header_of_one_kib_formats_in_kib(tmp_path):
    tensors = [("t%03d" % i, "U8", [1]) for i in range(40)]
    path = _write(tmp_path, safetensors_bytes(tensors))
    assert safetensors.read(path).format_detail.endswith(" KiB")
    assert safetensors.format_size(1536) == "1.5 KiB"
    assert safetensors.format_size(3 << 20) == "3.0 MiB"


# ---- the reference reader's errors ----


def test_header_too_small(tmp_path):
    _fails(tmp_path, b"\x01\x00\x00", "HeaderTooSmall")


def test_header_too_large(tmp_path):
    _fails(tmp_path, struct.pack("<Q", 100_000_001) + b"{}", "HeaderTooLarge")


def test_invalid_header_length(tmp_path):
    _fails(tmp_path, struct.pack("<Q", 50) + b"{}", "InvalidHeaderLength")


def test_header_not_utf8(tmp_path):
    _fails(tmp_path, safetensors_bytes([], raw_header=b'{"\xff": 1}'), "UTF-8")


def test_header_not_json(tmp_path):
    _fails(tmp_path, safetensors_bytes([], raw_header=b'{"a": '), "not valid JSON")


def test_header_with_nan_is_not_json(tmp_path):
    raw = b'{"__metadata__": {"x": NaN}}'
    _fails(tmp_path, safetensors_bytes([], raw_header=raw), "not valid JSON")


def test_deeply_nested_header(tmp_path):
    raw = b'{"a": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    _fails(tmp_path, safetensors_bytes([], raw_header=raw), "not valid JSON")


def test_header_not_an_object(tmp_path):
    _fails(tmp_path, safetensors_bytes([], raw_header=b"[1, 2]"), "not an object")


def test_duplicate_tensor_name(tmp_path):
    raw = (
        b'{"a": {"dtype": "U8", "shape": [1], "data_offsets": [0, 1]},'
        b' "a": {"dtype": "U8", "shape": [1], "data_offsets": [1, 2]}}'
    )
    _fails(tmp_path, safetensors_bytes([], raw_header=raw, data=b"xy"), "'a' twice")


def test_duplicate_key_inside_an_entry(tmp_path):
    raw = b'{"a": {"dtype": "U8", "dtype": "F32", "shape": [1], "data_offsets": [0, 1]}}'
    _fails(tmp_path, safetensors_bytes([], raw_header=raw, data=b"x"), "'dtype' twice")


@pytest.mark.parametrize(
    ("entry", "fragment"),
    [
        ([1, 2], "not an object"),
        ({"shape": [1], "data_offsets": [0, 1]}, "no dtype"),
        ({"dtype": "F128", "shape": [1], "data_offsets": [0, 1]}, "unknown dtype 'F128'"),
        ({"dtype": "U8", "shape": [-1], "data_offsets": [0, 1]}, "shape"),
        ({"dtype": "U8", "shape": [1.0], "data_offsets": [0, 1]}, "shape"),
        ({"dtype": "U8", "shape": [True], "data_offsets": [0, 1]}, "shape"),
        ({"dtype": "U8", "shape": "1", "data_offsets": [0, 1]}, "shape"),
        ({"dtype": "U8", "shape": [1]}, "data_offsets"),
        ({"dtype": "U8", "shape": [1], "data_offsets": [0, 1, 2]}, "data_offsets"),
        ({"dtype": "U8", "shape": [1], "data_offsets": [-1, 0]}, "data_offsets"),
        ({"dtype": "U8", "shape": [1], "data_offsets": [0, 1 << 64]}, "data_offsets"),
    ],
)
def test_malformed_entries(tmp_path, entry, fragment):
    _fails(tmp_path, safetensors_bytes([], header={"t": entry}, data=b"x"), fragment)


def test_hole_between_tensors(tmp_path):
    header = {"a": _entry("U8", [2], 0, 2), "b": _entry("U8", [2], 3, 5)}
    _fails(tmp_path, safetensors_bytes([], header=header, data=b"x" * 5), "hole", "InvalidOffset")


def test_first_tensor_not_at_zero(tmp_path):
    header = {"a": _entry("U8", [2], 4, 6)}
    _fails(tmp_path, safetensors_bytes([], header=header, data=b"x" * 6), "hole")


def test_overlapping_tensors(tmp_path):
    header = {"a": _entry("U8", [4], 0, 4), "b": _entry("U8", [4], 2, 6)}
    _fails(tmp_path, safetensors_bytes([], header=header, data=b"x" * 6), "overlap")


def test_end_before_begin(tmp_path):
    header = {
        "a": _entry("U8", [0], 0, 0),
        "b": _entry("U8", [0], 0, 0),
        "c": _entry("U8", [1], 0, 1),
    }
    # c starts where b ends; a zero-length span reversed:
    header["d"] = _entry("U8", [0], 1, 0)
    _fails(tmp_path, safetensors_bytes([], header=header, data=b"x"), "InvalidOffset")


def test_overflowing_shape(tmp_path):
    header = {"a": _entry("F32", [1 << 40, 1 << 30], 0, 1)}
    _fails(tmp_path, safetensors_bytes([], header=header, data=b"x"), "ValidationOverflow")


def test_misaligned_sub_byte_tensor(tmp_path):
    header = {"a": _entry("F4", [3], 0, 2)}
    _fails(tmp_path, safetensors_bytes([], header=header, data=b"xx"), "MisalignedSlice")


def test_size_does_not_match_shape(tmp_path):
    header = {"a": _entry("F32", [2, 2], 0, 12)}
    _fails(tmp_path, safetensors_bytes([], header=header, data=b"x" * 12), "TensorInvalidInfo")


def test_data_past_end_of_file(tmp_path):
    data = safetensors_bytes([("a", "F32", [4])])
    err = _fails(tmp_path, data[:-3], "truncated")
    assert err.hint


def test_trailing_bytes_warn(tmp_path):
    path = _write(tmp_path, safetensors_bytes([("a", "F32", [4])]) + b"junk")
    reading = safetensors.read(path)
    assert len(reading.tensors) == 1
    assert any("4 bytes follow" in w for w in reading.warnings)


def test_non_string_metadata_warns(tmp_path):
    path = _write(tmp_path, safetensors_bytes([("a", "U8", [1])], {"format": "pt", "n": 3}))
    reading = safetensors.read(path)
    assert reading.metadata["safetensors"] == {"format": "pt", "n": "3"}
    assert any("not a string" in w for w in reading.warnings)


def test_metadata_not_an_object_warns(tmp_path):
    path = _write(tmp_path, safetensors_bytes([("a", "U8", [1])], ["x"]))  # type: ignore[arg-type]
    reading = safetensors.read(path)
    assert "safetensors" in reading.metadata
    assert any("__metadata__ is a JSON list" in w for w in reading.warnings)


def test_huge_metadata_is_bounded(tmp_path):
    meta = {"k%d" % i: "v" for i in range(1500)}
    meta["big"] = "x" * 200_000
    path = _write(tmp_path, safetensors_bytes([("a", "U8", [1])], meta))
    reading = safetensors.read(path)
    shown = reading.metadata["safetensors"]
    assert len(shown) == safetensors.METADATA_MAX_KEYS
    assert len(json.dumps(shown)) < 200_000


def test_only_the_header_is_read(tmp_path, monkeypatch):
    big = ("w", "F32", [1 << 20])  # 4 MiB of data
    path = _write(tmp_path, safetensors_bytes([big]))
    read_sizes: List[int] = []
    real_open = open

    class Spy:
        def __init__(self, f):
            self.f = f

        def read(self, n=-1):
            read_sizes.append(n)
            return self.f.read(n)

        def __getattr__(self, name):
            return getattr(self.f, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

    def spy_open(p, mode="r", *args, **kwargs):
        f = real_open(p, mode, *args, **kwargs)
        return Spy(f) if p == path else f

    monkeypatch.setattr("builtins.open", spy_open)
    safetensors.read(path)
    assert read_sizes and all(0 <= n < 4096 for n in read_sizes)


def test_cancellation_is_checked(tmp_path):
    class Stop(Exception):
        pass

    def check() -> None:
        raise Stop()

    path = _write(tmp_path, safetensors_bytes([("a", "U8", [1])]))
    with pytest.raises(Stop):
        safetensors.read(path, check)


# ---- speed ----


def _many(n: int) -> bytes:
    header = {"__metadata__": {"format": "pt"}}
    for i in range(n):
        layer = i // 10
        header["model.layers.%d.block.%d.weight" % (layer, i % 10)] = _entry(
            "BF16", [2], 4 * i, 4 * i + 4
        )
    return safetensors_bytes([], header=header, data=b"\x00" * (4 * n))


def test_speed_1000_tensors(tmp_path):
    path = _write(tmp_path, _many(1000))
    readers.inspect(path)  # warm imports
    path2 = _write(tmp_path, _many(1000), "m2.safetensors")
    best = float("inf")
    for _ in range(3):
        os.utime(path2, None)
        started = time.perf_counter()
        summary = readers.read(path2)
        from gpu_workbench.checkpoints.model import summarize

        summarize(summary, None, started)
        best = min(best, time.perf_counter() - started)
    print("1,000-tensor safetensors: read + summarize %.1f ms" % (best * 1000))
    assert best < 0.05


def test_speed_100k_tensors(tmp_path):
    path = _write(tmp_path, _many(100_000))
    read_s = float("inf")
    reading = None
    for _ in range(2):
        started = time.perf_counter()
        reading = safetensors.read(path)
        read_s = min(read_s, time.perf_counter() - started)
    assert reading is not None and len(reading.tensors) == 100_000
    started = time.perf_counter()
    summary = readers.inspect(path)
    inspect_s = time.perf_counter() - started
    print(
        "100,000-tensor safetensors (header %s): read %.0f ms, inspect (read + summary) %.0f ms"
        % (summary["formatDetail"].split("header ")[1], read_s * 1000, inspect_s * 1000)
    )
    assert summary["tensorCount"] == 100_000
    # Generous bounds: CI machines are shared; typical is ~0.2 s to read on a laptop.
    assert read_s < 2.0
    assert inspect_s < 6.0
