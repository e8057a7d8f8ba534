"""Fuzz the readers with truncated, bit-flipped and length-inflated checkpoint files.

Whatever the bytes, `readers.read` must either succeed or raise CheckpointFormatError, in
bounded time (2 s) and memory (64 MiB traced peak), and a successful reading must
summarize to strict JSON (for the formats read here: with every addressable tensor inside
its file). Seeds: safetensors,
GGUF, .npy (plain and object), .npz (stored and compressed), and a small torch zip and
legacy .pt written by torch (skipped without torch, except under CI=true).
"""

from __future__ import annotations

import importlib.util
import io
import json
import os
import struct
import tempfile
import time
import tracemalloc
from typing import Dict, List, Tuple

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from spec_fixtures import (
    GGML_ID,
    GGUF_ARRAY,
    GGUF_F32,
    GGUF_STRING,
    GGUF_U32,
    gguf_bytes,
    need_torch_files,
    npy_bytes,
    safetensors_bytes,
)

from gpu_workbench.checkpoints import readers
from gpu_workbench.checkpoints.errors import CheckpointFormatError
from gpu_workbench.checkpoints.model import summarize

TIME_LIMIT = 2.0
MEMORY_LIMIT = 64 << 20
EXAMPLES = int(os.environ.get("GPUWB_FUZZ_EXAMPLES", "250"))
_OTHER_READERS = ("pickle_file", "pickle_vm", "torch_legacy", "torch_zip", "torch_pickle")


def _npz(compressed: bool) -> bytes:
    buf = io.BytesIO()
    arrays = {"w": np.arange(12, dtype="<f4").reshape(3, 4), "b": np.zeros(3, ">i2")}
    (np.savez_compressed if compressed else np.savez)(buf, **arrays)
    return buf.getvalue()


def _object_npy() -> bytes:
    buf = io.BytesIO()
    array = np.empty(2, dtype=object)
    array[0], array[1] = {"a": 1}, "text"
    np.save(buf, array, allow_pickle=True)
    return buf.getvalue()


def _seeds() -> Dict[str, bytes]:
    kvs = [
        ("general.architecture", GGUF_STRING, "llama"),
        ("general.alignment", GGUF_U32, 32),
        ("llama.rope.scale", GGUF_F32, 1.5),
        ("tokenizer.ggml.tokens", GGUF_ARRAY, (GGUF_STRING, ["a", "bb", "ccc"] * 8)),
        ("nested", GGUF_ARRAY, (GGUF_ARRAY, [(GGUF_U32, [1, 2]), (GGUF_STRING, ["x"])])),
    ]
    tensors = [("blk.0.q", GGML_ID["Q4_0"], [2, 32]), ("norm", GGML_ID["F32"], [5])]
    return {
        "safetensors": safetensors_bytes(
            [("a.weight", "F16", [2, 3]), ("a.bias", "F32", [3]), ("s", "I64", [])],
            {"format": "pt"},
        ),
        "gguf": gguf_bytes(kvs, tensors),
        "npy": npy_bytes("<f4", (3, 4), np.arange(12, dtype="<f4").tobytes()),
        "npy-object": _object_npy(),
        "npz-stored": _npz(False),
        "npz-compressed": _npz(True),
    }


SEEDS = _seeds()
_dir = tempfile.TemporaryDirectory(prefix="gpuwb-fuzz-")
_counter = [0]

_SPECIAL = [
    0,
    1,
    0x7F,
    0xFF,
    0x7FFF,
    0xFFFF,
    0x7FFFFFFF,
    0xFFFFFFFF,
    (1 << 31),
    (1 << 32),
    (1 << 40),
    (1 << 62),
    (1 << 63) - 1,
    (1 << 64) - 1,
]


@st.composite
def mutations(draw, size: int) -> List[Tuple[str, int, int, int]]:
    """A few edits: ("cut", at) / ("flip", pos, bit) / ("int", pos, width, value)."""
    edits: List[Tuple[str, int, int, int]] = []
    head = min(size - 1, 160)
    pos = st.one_of(st.integers(0, head), st.integers(0, size - 1))
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["cut", "flip", "flip", "int", "int"]))
        if kind == "cut":
            edits.append(("cut", draw(st.integers(0, size - 1)), 0, 0))
        elif kind == "flip":
            edits.append(("flip", draw(pos), draw(st.integers(0, 7)), 0))
        else:
            width = draw(st.sampled_from([1, 2, 4, 8]))
            value = draw(st.one_of(st.sampled_from(_SPECIAL), st.integers(0, (1 << 64) - 1)))
            edits.append(("int", draw(pos), width, value & ((1 << (8 * width)) - 1)))
    return edits


def _apply(data: bytes, edits: List[Tuple[str, int, int, int]]) -> bytes:
    out = bytearray(data)
    for kind, a, b, c in edits:
        if kind == "cut":
            del out[a:]
        elif kind == "flip" and a < len(out):
            out[a] ^= 1 << b
        elif kind == "int" and a + b <= len(out):
            out[a : a + b] = c.to_bytes(b, "little")
    return bytes(out)


def _reader_missing(exc: ModuleNotFoundError) -> bool:
    """True while a reader another module owns has not been written yet."""
    name = getattr(exc, "name", "") or ""
    short = name.rsplit(".", 1)[-1]
    return short in _OTHER_READERS and importlib.util.find_spec(name) is None


def _run(data: bytes, in_file: bool = True) -> None:
    _counter[0] += 1
    path = os.path.join(_dir.name, "f%d" % _counter[0])
    with open(path, "wb") as f:
        f.write(data)
    tracemalloc.start()
    started = time.perf_counter()
    try:
        reading = readers.read(path)
        summary = summarize(reading, 1000, started)
        json.dumps(summary, allow_nan=False)
        size = len(data)
        for t in reading.tensors if in_file else ():
            if t.offset is not None and t.member is None and t.file in (None, path):
                assert 0 <= t.offset <= size, (t, t.offset, size)
                assert t.offset + (t.nbytes or 0) <= size, (t, t.offset, t.nbytes, size)
    except CheckpointFormatError:
        pass
    except ModuleNotFoundError as exc:
        if not _reader_missing(exc):
            raise
    finally:
        elapsed = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        os.remove(path)
    assert elapsed < TIME_LIMIT, "took %.2f s" % elapsed
    assert peak < MEMORY_LIMIT, "peak %d bytes" % peak


FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@pytest.mark.parametrize("fmt", sorted(SEEDS))
def test_seed_reads_cleanly(fmt):
    path = os.path.join(_dir.name, "seed-" + fmt)
    with open(path, "wb") as f:
        f.write(SEEDS[fmt])
    reading = readers.read(path)
    assert reading.tensors


@pytest.mark.parametrize("fmt", sorted(SEEDS))
@FUZZ
@given(data=st.data())
def test_fuzz_spec_formats(fmt, data):
    seed = SEEDS[fmt]
    _run(_apply(seed, data.draw(mutations(len(seed)))))


@pytest.fixture(scope="module")
def torch_seeds() -> Dict[str, bytes]:
    for module in ("torch_zip", "torch_legacy"):
        if importlib.util.find_spec("gpu_workbench.checkpoints." + module) is None:
            pytest.skip("the %s reader is not there yet" % module)
    folder = need_torch_files()
    seeds = {}
    for name in ("small_zip.pt", "small_legacy.pt"):
        with open(os.path.join(folder, name), "rb") as f:
            seeds[name] = f.read()
    return seeds


@pytest.mark.parametrize("name", ["small_zip.pt", "small_legacy.pt"])
@FUZZ
@given(data=st.data())
def test_fuzz_torch_formats(torch_seeds, name, data):
    seed = torch_seeds[name]
    # Only the contract here: the torch readers keep offsets of truncated storages (warned).
    _run(_apply(seed, data.draw(mutations(len(seed)))), in_file=False)


def test_inflated_lengths_everywhere():
    """Each header length/count field set to huge values, deterministically."""
    st_seed = SEEDS["safetensors"]
    gguf_seed = SEEDS["gguf"]
    cases = []
    for value in (1 << 31, (1 << 63) - 1, (1 << 64) - 1, len(st_seed) * 3):
        cases.append(struct.pack("<Q", value) + st_seed[8:])
        for at in (8, 16, 24):  # tensor count, KV count, first key length
            cases.append(gguf_seed[:at] + struct.pack("<Q", value) + gguf_seed[at + 8 :])
    npy_seed = SEEDS["npy"]
    cases.append(npy_seed[:8] + struct.pack("<H", 0xFFFF) + npy_seed[10:])
    for case in cases:
        _run(case)
