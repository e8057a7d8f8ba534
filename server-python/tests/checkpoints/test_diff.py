"""Checkpoint diff: change kinds, value hashing across formats and layouts, metadata."""

from __future__ import annotations

import dataclasses
import json
import os
import random
import shutil
import struct
import subprocess
import zipfile
from typing import Any, Dict, List, Optional

import pytest
from writers import npy_bytes, pack, write_safetensors

from gpu_workbench.checkpoints import decode, diff
from gpu_workbench.checkpoints.model import Reading, Tensor
from gpu_workbench.protocol import (
    CheckpointDiffCounts,
    CheckpointDiffResult,
    CheckpointDiffTensor,
    CheckpointFile,
    CheckpointMetadataChange,
    CheckpointTensor,
)

ENGINES = ["numpy", "stdlib"] if decode.numpy_module() is not None else ["stdlib"]


# ---- writers (safetensors README; numpy.lib.format) ----


def floats(seed: int, n: int) -> List[float]:
    rng = random.Random(seed)
    v = [rng.uniform(-1, 1) for _ in range(n)]
    return list(struct.unpack("<%df" % n, pack("f", v)))


def entries(result: Dict[str, Any]) -> Dict[str, str]:
    return {e["name"]: e["change"] for e in result["tensors"]}


def fields(cls: Any) -> set:
    return {f.name for f in dataclasses.fields(cls)}


# ---- change kinds ----


@pytest.fixture
def pair(tmp_path):
    w = floats(1, 12)
    a = write_safetensors(
        str(tmp_path / "a.safetensors"),
        [
            ("same", "F32", [3, 4], pack("f", w)),
            ("changed", "F32", [3, 4], pack("f", w)),
            ("reshaped", "F32", [3, 4], pack("f", w)),
            ("retyped", "F32", [4], pack("f", w[:4])),
            ("removed", "F32", [2], pack("f", w[:2])),
        ],
        {"format": "pt", "step": "100"},
    )
    w2 = list(w)
    w2[5] = 0.5
    b = write_safetensors(
        str(tmp_path / "b.safetensors"),
        [
            ("same", "F32", [3, 4], pack("f", w)),
            ("changed", "F32", [3, 4], pack("f", w2)),
            ("reshaped", "F32", [4, 3], pack("f", w)),
            ("retyped", "F64", [4], pack("d", w[:4])),
            ("added", "I64", [1], pack("q", [1])),
        ],
        {"format": "pt", "step": "200", "extra": "yes"},
    )
    return a, b


@pytest.mark.parametrize("engine", ENGINES)
def test_change_kinds(pair, engine):
    a, b = pair
    progress: List[float] = []
    result = diff.compare(a, b, engine=engine, report=lambda f, m=None: progress.append(f))
    json.dumps(result, allow_nan=False)
    assert entries(result) == {
        "same": "unchanged",
        "changed": "changed",
        "reshaped": "reshaped",
        "retyped": "retyped",
        "removed": "removed",
        "added": "added",
    }
    # Changes first, then by name; unchanged last.
    assert [e["name"] for e in result["tensors"]] == [
        "changed",
        "reshaped",
        "retyped",
        "added",
        "removed",
        "same",
    ]
    assert result["counts"] == {
        "added": 1,
        "removed": 1,
        "reshaped": 1,
        "retyped": 1,
        "changed": 1,
        "unchanged": 1,
        "unknown": 0,
    }
    assert result["summary"] == (
        "1 changed, 1 added, 1 removed, 1 reshaped, 1 retyped, 1 unchanged "
        "(values compared by hash)."
    )
    added = next(e for e in result["tensors"] if e["name"] == "added")
    assert added["a"] is None and added["b"]["dtype"] == "I64"
    removed = next(e for e in result["tensors"] if e["name"] == "removed")
    assert removed["b"] is None and removed["a"]["shape"] == [2]
    # The reader decides where __metadata__ goes under "metadata."; the leaves are ours.
    meta = {m["key"].rsplit(".", 1)[-1]: (m["a"], m["b"]) for m in result["metadata"]}
    assert meta == {"step": ("100", "200"), "extra": (None, "yes")}
    assert all(m["key"].startswith("metadata.") for m in result["metadata"])
    assert progress and progress[-1] == 1.0


def test_protocol_field_names(pair):
    result = diff.compare(*pair)
    assert set(result) == fields(CheckpointDiffResult)
    assert set(result["a"]) == fields(CheckpointFile)
    assert set(result["counts"]) == fields(CheckpointDiffCounts)
    for e in result["tensors"]:
        assert set(e) == fields(CheckpointDiffTensor)
        for side in (e["a"], e["b"]):
            assert side is None or set(side) == fields(CheckpointTensor)
    for m in result["metadata"]:
        assert set(m) == fields(CheckpointMetadataChange)
    assert result["a"]["format"] == "safetensors" and result["a"]["size"] > 0


def test_values_not_compared(pair):
    result = diff.compare(*pair, compare_values=False)
    kinds = entries(result)
    assert kinds["same"] == "unknown" and kinds["changed"] == "unknown"
    assert kinds["reshaped"] == "reshaped"
    assert result["counts"]["unknown"] == 2
    assert result["summary"].endswith("(values not compared).")


def test_file_against_itself(pair):
    result = diff.compare(pair[0], pair[0])
    assert set(entries(result).values()) == {"unchanged"}
    assert result["metadata"] == []
    assert result["summary"].startswith("No differences: 5 unchanged")


def test_cancel(pair):
    class Stop(Exception):
        pass

    calls: List[int] = []

    def check() -> None:
        calls.append(1)
        if len(calls) > 3:
            raise Stop()

    with pytest.raises(Stop):
        diff.compare(*pair, check=check)


# ---- across formats and layouts ----


@pytest.mark.parametrize("compressed", [False, True])
@pytest.mark.parametrize("engine", ENGINES)
def test_npz_against_safetensors(tmp_path, engine, compressed):
    rows, cols = 6, 9
    w = floats(4, rows * cols)
    column_major = [w[r * cols + c] for c in range(cols) for r in range(rows)]
    ints = list(range(-5, 20))
    st = write_safetensors(
        str(tmp_path / "m.safetensors"),
        [
            ("w", "F32", [rows, cols], pack("f", w)),
            ("big_endian", "F32", [rows, cols], pack("f", w)),
            ("fortran", "F32", [rows, cols], pack("f", w)),
            ("ints", "I64", [25], pack("q", ints)),
            ("half", "F16", [4], pack("e", [1.0, -2.0, 0.5, 3.0])),
        ],
    )
    npz = str(tmp_path / "m.npz")
    with zipfile.ZipFile(
        npz, "w", compression=zipfile.ZIP_DEFLATED if compressed else zipfile.ZIP_STORED
    ) as z:
        z.writestr("w.npy", npy_bytes("<f4", (rows, cols), pack("f", w)))
        z.writestr("big_endian.npy", npy_bytes(">f4", (rows, cols), pack("f", w, ">")))
        z.writestr(
            "fortran.npy", npy_bytes("<f4", (rows, cols), pack("f", column_major), fortran=True)
        )
        z.writestr("ints.npy", npy_bytes(">i8", (25,), pack("q", ints, ">")))
        z.writestr("half.npy", npy_bytes("<f2", (4,), pack("e", [1.0, -2.0, 0.5, 3.5])))
    result = diff.compare(npz, st, engine=engine)
    assert entries(result) == {
        "w": "unchanged",
        "big_endian": "unchanged",
        "fortran": "unchanged",
        "ints": "unchanged",
        "half": "changed",
    }
    assert {"key": "format", "a": "npz", "b": "safetensors"} in result["metadata"]


def test_npy_against_safetensors(tmp_path):
    w = floats(9, 32)
    npy = str(tmp_path / "w.npy")
    with open(npy, "wb") as f:
        f.write(npy_bytes("<f4", (4, 8), pack("f", w)))
    st = write_safetensors(str(tmp_path / "w.safetensors"), [("w", "F32", [4, 8], pack("f", w))])
    result = diff.compare(npy, st)
    assert entries(result) == {"w": "unchanged"}


@pytest.mark.parametrize("engine", ENGINES)
def test_strided_view_equals_contiguous_copy(tmp_path, engine):
    """A transposed view and a slice with a storage offset hash like their contiguous copies."""
    rows, cols = 5, 7
    base = floats(2, rows * cols)
    transposed = [base[r * cols + c] for c in range(cols) for r in range(rows)]
    sliced = [base[r * cols + c] for r in range(1, rows) for c in range(2, cols, 2)]
    path_a = str(tmp_path / "a.bin")
    with open(path_a, "wb") as f:
        f.write(pack("f", base))
    ra = Reading(path_a, "test", "views")
    ra.tensors = [
        Tensor("t", "F32", [cols, rows], None, stride=[1, cols], offset=0, storage="0"),
        Tensor("s", "F32", [rows - 1, 3], None, stride=[cols, 2], offset=4 * (cols + 2)),
    ]
    path_b = str(tmp_path / "b.bin")
    with open(path_b, "wb") as f:
        f.write(pack("f", transposed) + pack("f", sliced, ">"))
    rb = Reading(path_b, "test", "copies")
    rb.tensors = [
        Tensor("t", "F32", [cols, rows], 4 * rows * cols, offset=0),
        Tensor("s", "F32", [rows - 1, 3], 48, offset=4 * rows * cols, byte_order="big"),
    ]
    result = diff.compare(path_a, path_b, readings=(ra, rb), engine=engine)
    assert entries(result) == {"t": "unchanged", "s": "unchanged"}
    # One element off in the copy is a change.
    with open(path_b, "r+b") as f:
        f.seek(4)
        f.write(pack("f", [123.0]))
    result = diff.compare(path_a, path_b, readings=(ra, rb), engine=engine)
    assert entries(result) == {"t": "changed", "s": "unchanged"}


def test_unaddressable_values_are_unknown(tmp_path):
    path = str(tmp_path / "x.bin")
    with open(path, "wb") as f:
        f.write(b"\0" * 64)
    ra = Reading(path, "test", "a")
    ra.tensors = [
        Tensor("pickled", "F32", [2], 8, offset=None),
        Tensor("truncated", "F32", [100], 400, offset=0),
        Tensor("q", "Q4_K", [256], 144, offset=0, byte_order="big"),
    ]
    rb = Reading(path, "test", "b")
    rb.tensors = [
        Tensor("pickled", "F32", [2], 8, offset=0),
        Tensor("truncated", "F32", [100], 400, offset=4),
        Tensor("q", "Q4_K", [256], 144, offset=8, byte_order="big"),
    ]
    result = diff.compare(path, path, readings=(ra, rb))
    assert set(entries(result).values()) == {"unknown"}
    assert result["counts"]["unknown"] == 3


def test_prefix_stripping(tmp_path):
    w = floats(5, 4)
    a = write_safetensors(
        str(tmp_path / "a.safetensors"),
        [
            ("state_dict.layer.weight", "F32", [4], pack("f", w)),
            ("state_dict.layer.bias", "F32", [1], pack("f", w[:1])),
        ],
    )
    b = write_safetensors(
        str(tmp_path / "b.safetensors"),
        [
            ("layer.weight", "F32", [4], pack("f", w)),
            ("layer.bias", "F32", [1], pack("f", [9.0])),
        ],
    )
    result = diff.compare(a, b)
    assert entries(result) == {"layer.weight": "unchanged", "layer.bias": "changed"}
    assert "'state_dict.' from A" in result["summary"]
    bias = next(e for e in result["tensors"] if e["name"] == "layer.bias")
    assert bias["a"]["name"] == "state_dict.layer.bias" and bias["b"]["name"] == "layer.bias"


def test_match_names():
    keys_a, keys_b, note = diff.match_names(["module.a", "module.b"], ["model.a", "model.b"])
    assert set(keys_a) == set(keys_b) == {"a", "b"}
    assert note == "names matched after stripping 'module.' from A and 'model.' from B"
    keys_a, keys_b, note = diff.match_names(["a", "b"], ["a", "c"])
    assert note is None and set(keys_a) == {"a", "b"}
    # A prefix whose removal would merge two names is not used.
    keys_a, _, note = diff.match_names(["model.x", "x", "model.y"], ["y", "x", "z"])
    assert note is None and set(keys_a) == {"model.x", "x", "model.y"}


def test_metadata_flattening():
    ra = Reading("/a", "pytorch-zip", "")
    rb = Reading("/b", "pytorch-zip", "")
    ra.metadata = {"hparams": {"lr": 0.1, "layers": [1, 2]}, "name": "x"}
    rb.metadata = {"hparams": {"lr": 0.2, "layers": [1, 2]}, "name": "x", "new": {"k": True}}
    ra.epoch, rb.epoch = 3, 4
    ra.global_step = rb.global_step = 1000
    changes = diff.metadata_changes(ra, rb)
    assert changes == [
        {"key": "epoch", "a": 3, "b": 4},
        {"key": "metadata.hparams.lr", "a": 0.1, "b": 0.2},
        {"key": "metadata.new.k", "a": None, "b": True},
    ]


# ---- .pt against its .safetensors export, written by torch itself ----

TORCH_SCRIPT = r"""
import json, struct, sys, torch
out = sys.argv[1]
torch.manual_seed(0)
base = torch.randn(6, 10)
sd = {
    "model.w": torch.randn(4, 5),
    "model.t": base.t(),                 # transposed view
    "model.s": base[2:, 3:8],            # slice with a storage offset
    "model.h": torch.randn(3, 3).half(),
    "model.b": torch.randn(7).bfloat16(),
    "model.i": torch.arange(-4, 4),
    "model.m": torch.tensor([True, False, True]),
}
torch.save({"state_dict": sd, "epoch": 1}, out + "/m.pt")
names = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
         torch.int64: "I64", torch.bool: "BOOL"}
header, blobs, offset = {}, [], 0
for name, t in sd.items():
    t = t.contiguous()
    raw = t.view(torch.int16) if t.dtype == torch.bfloat16 else t
    data = raw.numpy().tobytes()
    header[name] = {"dtype": names[t.dtype], "shape": list(t.shape),
                    "data_offsets": [offset, offset + len(data)]}
    blobs.append(data)
    offset += len(data)
text = json.dumps(header).encode()
text += b" " * (-len(text) % 8)
with open(out + "/m.safetensors", "wb") as f:
    f.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))
"""


def torch_python() -> Optional[str]:
    for candidate in (
        os.environ.get("GPUWB_TORCH_PYTHON"),
        "/usr/bin/python3",
        shutil.which("python3"),
    ):
        if not candidate or not os.path.exists(candidate):
            continue
        probe = subprocess.run(
            [candidate, "-c", "import torch, numpy"], capture_output=True, timeout=120
        )
        if probe.returncode == 0:
            return candidate
    return None


def test_pt_against_safetensors_export(tmp_path):
    python = torch_python()
    if python is None:
        if os.environ.get("CI") == "true":
            pytest.fail("no Python with torch found (set GPUWB_TORCH_PYTHON)")
        pytest.skip("no Python with torch")
    subprocess.run([python, "-c", TORCH_SCRIPT, str(tmp_path)], check=True, timeout=300)
    result = diff.compare(str(tmp_path / "m.pt"), str(tmp_path / "m.safetensors"))
    changes = entries(result)
    assert set(changes.values()) == {"unchanged"}, changes
    assert len(changes) == 7
    assert "'state_dict.' from A" in result["summary"]
