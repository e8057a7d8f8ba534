"""GGUF reader: metadata of every type, quantized tensor sizes, offsets, ggml's checks."""

from __future__ import annotations

import json
import struct
import time

import pytest
from spec_fixtures import (
    GGML_BLOCKS,
    GGML_ID,
    GGUF_ARRAY,
    GGUF_F32,
    GGUF_I32,
    GGUF_STRING,
    GGUF_U8,
    GGUF_U32,
    GGUF_U64,
    ggml_nbytes,
    gguf_all_kv_types,
    gguf_bytes,
    gguf_str,
    pattern,
    write,
)

from gpu_workbench.checkpoints import gguf, readers
from gpu_workbench.checkpoints.errors import CheckpointFormatError

QUANT_TENSORS = [
    ("token_embd.weight", GGML_ID["Q4_K"], [8, 256]),
    ("blk.0.attn_q.weight", GGML_ID["Q4_0"], [4, 64]),
    ("blk.0.attn_k.weight", GGML_ID["Q8_0"], [4, 32]),
    ("blk.0.ffn_down.weight", GGML_ID["Q6_K"], [2, 512]),
    ("blk.0.ffn_up.weight", GGML_ID["IQ2_XS"], [3, 256]),
    ("blk.0.ffn_gate.weight", GGML_ID["MXFP4"], [5, 32]),
    ("blk.0.attn_norm.weight", GGML_ID["F32"], [7]),
    ("output.weight", GGML_ID["F16"], [3, 5]),
    ("rope_freqs", GGML_ID["BF16"], [2, 2, 3]),
    ("blk.0.attn_v.weight", GGML_ID["TQ1_0"], [1, 256]),
]


def _write(tmp_path, data: bytes, name: str = "m.gguf") -> str:
    return write(str(tmp_path / name), data)


def _fails(tmp_path, data: bytes, *fragments: str) -> CheckpointFormatError:
    path = _write(tmp_path, data)
    with pytest.raises(CheckpointFormatError) as info:
        gguf.read(path)
    for fragment in fragments:
        assert fragment in info.value.message, info.value.message
    return info.value


def test_reads_metadata_of_every_type(tmp_path):
    path = _write(tmp_path, gguf_bytes(gguf_all_kv_types(), QUANT_TENSORS))
    reading = gguf.read(path)
    kv = reading.metadata["gguf"]
    assert kv["general.architecture"] == "llama"
    assert kv["general.name"] == "tiny ünïcode"
    assert kv["test.u8"] == 200
    assert kv["test.i8"] == -100
    assert kv["test.u16"] == 60000
    assert kv["test.i16"] == -30000
    assert kv["test.u32"] == 4000000000
    assert kv["test.i32"] == -2000000000
    assert kv["test.f32"] == 0.5
    assert kv["test.bool"] is True
    assert kv["test.u64"] == (1 << 64) - 1
    assert kv["test.i64"] == -(1 << 63)
    assert kv["test.f64"] == 2.25
    assert kv["test.nan"] == "nan"  # JSON has no NaN
    assert kv["test.array.i32"] == [1, -2, 3]
    assert kv["test.array.bool"] == [True, False]
    assert kv["test.array.nested"] == [[1, 2], ["x"]]
    assert kv["test.array.empty"] == []
    tokens = kv["tokenizer.ggml.tokens"]
    assert tokens == {
        "type": "array",
        "itemType": "STRING",
        "count": 1000,
        "first": ["tok%d" % i for i in range(16)],
    }
    assert kv["tokenizer.ggml.scores"]["count"] == 1000
    assert kv["tokenizer.ggml.scores"]["first"][:3] == [0.0, 1.0, 2.0]
    assert reading.format_detail == "GGUF v3, llama, Q4_K_M"
    assert reading.warnings == []
    assert reading.safety.verdict == "safe"
    assert reading.epoch is None and reading.global_step is None
    json.dumps(reading.metadata, allow_nan=False)


def test_tensor_shapes_sizes_and_offsets(tmp_path):
    data = gguf_bytes(gguf_all_kv_types(), QUANT_TENSORS)
    path = _write(tmp_path, data)
    reading = gguf.read(path)
    assert [t.name for t in reading.tensors] == [n for n, _, _ in QUANT_TENSORS]
    for i, (t, (_, type_id, shape)) in enumerate(zip(reading.tensors, QUANT_TENSORS)):
        assert t.dtype == GGML_BLOCKS[type_id][0]
        assert t.shape == shape  # torch order: ggml's ne reversed
        nbytes = ggml_nbytes(type_id, shape)
        assert t.nbytes == nbytes
        assert t.offset is not None and t.offset % 32 == 0
        assert data[t.offset : t.offset + nbytes] == pattern(i + 1, nbytes)
        assert t.byte_order == "little"
    by_name = {t.name: t for t in reading.tensors}
    assert by_name["token_embd.weight"].numel == 8 * 256
    assert by_name["token_embd.weight"].nbytes == 8 * 144
    assert by_name["blk.0.ffn_up.weight"].nbytes == 3 * 74
    assert by_name["blk.0.ffn_gate.weight"].nbytes == 5 * 17
    assert "256 elements per 144-byte block" in (by_name["token_embd.weight"].detail or "")


@pytest.mark.parametrize("type_id", sorted(GGML_BLOCKS))
def test_every_ggml_type(tmp_path, type_id):
    name, block, size = GGML_BLOCKS[type_id]
    shape = [2, 3, block * 2]
    path = _write(tmp_path, gguf_bytes([], [("t", type_id, shape)]))
    (t,) = gguf.read(path).tensors
    assert t.dtype == name
    assert t.nbytes == 2 * 3 * 2 * size
    assert gguf.GGML_TYPES[type_id] == (name, block, size)


def test_custom_alignment_and_version_2(tmp_path):
    kvs = [("general.alignment", GGUF_U32, 64), ("general.architecture", GGUF_STRING, "gpt2")]
    tensors = [("a", 0, [3]), ("b", 0, [5]), ("c", 8, [32])]
    data = gguf_bytes(kvs, tensors, version=2, alignment=64)
    reading = gguf.read(_write(tmp_path, data))
    offsets = [t.offset for t in reading.tensors]
    assert all(o is not None and o % 64 == 0 for o in offsets)
    for i, t in enumerate(reading.tensors):
        assert t.offset is not None and t.nbytes is not None
        assert data[t.offset : t.offset + t.nbytes] == pattern(i + 1, t.nbytes)
    assert reading.format_detail == "GGUF v2, gpt2"
    assert reading.metadata["gguf"]["general.alignment"] == 64


def test_big_endian_file(tmp_path):
    kvs = [("general.architecture", GGUF_STRING, "llama"), ("x.n", GGUF_U32, 7)]
    tensors = [("w", 0, [2, 3]), ("q", 2, [1, 32])]
    data = gguf_bytes(kvs, tensors, endian=">")
    reading = gguf.read(_write(tmp_path, data))
    assert reading.metadata["gguf"]["x.n"] == 7
    assert [t.shape for t in reading.tensors] == [[2, 3], [1, 32]]
    assert all(t.byte_order == "big" for t in reading.tensors)
    assert "big-endian" in reading.format_detail
    assert any("big-endian" in w for w in reading.warnings)


def test_no_tensors(tmp_path):
    reading = gguf.read(_write(tmp_path, gguf_bytes([("a.b", GGUF_U8, 1)], [])))
    assert reading.tensors == []
    assert reading.format_detail == "GGUF v3"


def test_through_readers(tmp_path):
    path = _write(tmp_path, gguf_bytes(gguf_all_kv_types(), QUANT_TENSORS))
    summary = readers.inspect(path)
    assert summary["format"] == "gguf"
    assert summary["tensorCount"] == len(QUANT_TENSORS)
    json.dumps(summary, allow_nan=False)


def test_long_strings_are_cut(tmp_path):
    kvs = [("tokenizer.chat_template", GGUF_STRING, "x" * 100_000)]
    kv = gguf.read(_write(tmp_path, gguf_bytes(kvs, []))).metadata["gguf"]
    value = kv["tokenizer.chat_template"]
    assert value.startswith("x" * 1000) and "100000 bytes in all" in value
    assert len(value) < 70_000


def test_large_vocabulary_is_fast_and_bounded(tmp_path):
    vocab = ["t%d" % i for i in range(200_000)]
    kvs = [
        ("tokenizer.ggml.tokens", GGUF_ARRAY, (GGUF_STRING, vocab)),
        ("tokenizer.ggml.merges", GGUF_ARRAY, (GGUF_STRING, vocab)),
        ("tokenizer.ggml.token_type", GGUF_ARRAY, (GGUF_I32, [1] * 200_000)),
    ]
    path = _write(tmp_path, gguf_bytes(kvs, [("w", 0, [4])]))
    started = time.perf_counter()
    reading = gguf.read(path)
    elapsed = time.perf_counter() - started
    print("GGUF with 2 x 200,000-string arrays: %.0f ms" % (elapsed * 1000))
    assert elapsed < 3.0
    assert len(json.dumps(reading.metadata)) < 5000
    assert reading.metadata["gguf"]["tokenizer.ggml.merges"]["count"] == 200_000


def test_long_tensor_names_warn(tmp_path):
    reading = gguf.read(_write(tmp_path, gguf_bytes([], [("n" * 70, 0, [1])])))
    assert any("64 bytes or longer" in w for w in reading.warnings)


# ---- errors ----


def test_version_1_is_refused(tmp_path):
    data = b"GGUF" + struct.pack("<III", 1, 0, 0)
    _fails(tmp_path, data, "version 1")


@pytest.mark.parametrize("version", [0, 4, 0x7FFF])
def test_unknown_versions(tmp_path, version):
    _fails(tmp_path, gguf_bytes([], [], version=version), "unsupported GGUF version")


def test_not_gguf(tmp_path):
    _fails(tmp_path, b"GGUX" + b"\0" * 20, "not a GGUF file")


def test_truncated_header(tmp_path):
    data = gguf_bytes(gguf_all_kv_types(), QUANT_TENSORS)
    for cut in (6, 12, 30, 300, 5000):
        _fails(tmp_path, data[:cut], "truncated")


def test_truncated_data(tmp_path):
    data = gguf_bytes([], [("a", 0, [64])])
    err = _fails(tmp_path, data[:-10], "truncated", "'a'")
    assert err.hint


def test_counts_beyond_the_file(tmp_path):
    _fails(tmp_path, gguf_bytes([], [], kv_count=1 << 40), "metadata entries")
    _fails(tmp_path, gguf_bytes([], [], tensor_count=1 << 40), "tensors, more than")


def test_string_too_long(tmp_path):
    data = b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + struct.pack("<Q", (1 << 30) + 1) + b"k" * 64
    _fails(tmp_path, data, "over the limit")


def test_string_past_end(tmp_path):
    kv = gguf_str("k") + struct.pack("<I", GGUF_STRING) + struct.pack("<Q", 1000) + b"abc"
    data = b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + kv
    _fails(tmp_path, data, "truncated")


def test_string_array_item_past_end(tmp_path):
    kv = (
        gguf_str("k")
        + struct.pack("<IIQ", GGUF_ARRAY, GGUF_STRING, 40)
        + gguf_str("a") * 20
        + struct.pack("<Q", 1 << 29)
    )
    data = b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + kv + b"\0" * 400
    _fails(tmp_path, data, "truncated", "runs past the end")


def test_array_count_beyond_the_file(tmp_path):
    kv = gguf_str("k") + struct.pack("<IIQ", GGUF_ARRAY, GGUF_U64, 1 << 50)
    data = b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + kv + b"\0" * 64
    _fails(tmp_path, data, "more than the rest of the file")


def test_duplicate_key(tmp_path):
    kvs = [("a.b", GGUF_U8, 1), ("a.b", GGUF_U8, 2)]
    _fails(tmp_path, gguf_bytes(kvs, []), "'a.b' appears twice")


def test_duplicate_tensor_name(tmp_path):
    _fails(tmp_path, gguf_bytes([], [("w", 0, [4]), ("w", 0, [4])]), "'w' appears twice")


def test_unknown_value_type(tmp_path):
    kv = gguf_str("k") + struct.pack("<I", 13) + b"\0" * 8
    data = b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + kv
    _fails(tmp_path, data, "unknown value type 13")


def test_unknown_array_item_type(tmp_path):
    kv = gguf_str("k") + struct.pack("<IIQ", GGUF_ARRAY, 99, 1) + b"\0" * 8
    data = b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + kv
    _fails(tmp_path, data, "unknown value type 99")


def test_arrays_nested_too_deep(tmp_path):
    value: object = (GGUF_U8, [1])
    for _ in range(12):
        value = (GGUF_ARRAY, [value])
    _fails(tmp_path, gguf_bytes([("k", GGUF_ARRAY, value)], []), "nests arrays")


def test_alignment_not_power_of_two(tmp_path):
    _fails(tmp_path, gguf_bytes([("general.alignment", GGUF_U32, 24)], []), "power of two")
    _fails(tmp_path, gguf_bytes([("general.alignment", GGUF_U32, 0)], []), "power of two")


def test_alignment_wrong_type(tmp_path):
    _fails(tmp_path, gguf_bytes([("general.alignment", GGUF_F32, 32.0)], []), "requires a u32")


def test_too_many_dimensions(tmp_path):
    _fails(tmp_path, gguf_bytes([], [("w", 0, [1, 1, 1, 1, 2])]), "5 dimensions")


def _one_tensor(dims, type_id: int = 0, offset: int = 0) -> bytes:
    info = (
        gguf_str("w")
        + struct.pack("<I", len(dims))
        + struct.pack("<%dQ" % len(dims), *dims)
        + struct.pack("<IQ", type_id, offset)
    )
    head = b"GGUF" + struct.pack("<IQQ", 3, 1, 0) + info
    return head + b"\0" * (-len(head) % 32) + b"\0" * 256


def test_negative_dimension(tmp_path):
    _fails(tmp_path, _one_tensor([1 << 63]), "negative dimension")


def test_dimension_product_overflows(tmp_path):
    _fails(tmp_path, _one_tensor([1 << 40, 1 << 40]), "overflows")


def test_unknown_type(tmp_path):
    _fails(tmp_path, _one_tensor([4], type_id=77), "unknown ggml type 77")


def test_removed_type(tmp_path):
    _fails(tmp_path, _one_tensor([32], type_id=4), "ggml removed")
    _fails(tmp_path, _one_tensor([32], type_id=31), "ggml removed")


def test_row_not_divisible_by_block(tmp_path):
    _fails(tmp_path, _one_tensor([48, 2], type_id=GGML_ID["Q4_0"]), "block size 32")


def test_misaligned_offset(tmp_path):
    tensors = [("a", 0, [3]), ("b", 0, [3])]
    _fails(tmp_path, gguf_bytes([], tensors, offsets=[0, 12]), "not a multiple of the alignment")


def test_offsets_not_contiguous(tmp_path):
    tensors = [("a", 0, [3]), ("b", 0, [3])]
    _fails(tmp_path, gguf_bytes([], tensors, offsets=[0, 64]), "expected 32")
    _fails(tmp_path, gguf_bytes([], tensors, offsets=[0, 0]), "expected 32")
    _fails(tmp_path, gguf_bytes([], tensors, offsets=[32, 0]), "expected 0")


def test_only_read_errors_escape(tmp_path):
    """A header that claims a huge tensor with no data: a clear truncation error."""
    _fails(tmp_path, gguf_bytes([], [("w", 0, [1 << 30])], data=False), "truncated")
