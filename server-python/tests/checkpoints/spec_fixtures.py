"""Checkpoint files written from the format specifications (no safetensors/gguf libraries).

Each writer returns bytes; tests write them where they need them. Tensor data is filled
with a per-tensor byte pattern so tests can check that reported offsets point at it.
"""

from __future__ import annotations

import json
import os
import struct
import zlib
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

# ---- common ----


def pattern(seed: int, n: int) -> bytes:
    """`n` bytes that differ between seeds (and are not all equal)."""
    return bytes((seed * 31 + i * 7 + (i >> 8)) & 0xFF for i in range(n))


def write(path: str, data: bytes) -> str:
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)
    return path


# ---- safetensors (huggingface/safetensors README) ----

ST_BITS = {
    "BOOL": 8,
    "F4": 4,
    "F6_E2M3": 6,
    "F6_E3M2": 6,
    "U8": 8,
    "I8": 8,
    "F8_E5M2": 8,
    "F8_E4M3": 8,
    "F8_E8M0": 8,
    "F8_E4M3FNUZ": 8,
    "F8_E5M2FNUZ": 8,
    "I16": 16,
    "U16": 16,
    "F16": 16,
    "BF16": 16,
    "I32": 32,
    "U32": 32,
    "F32": 32,
    "C64": 64,
    "F64": 64,
    "I64": 64,
    "U64": 64,
}

STTensor = Tuple[str, str, List[int]]  # name, dtype, shape


def st_nbytes(dtype: str, shape: Sequence[int]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n * ST_BITS[dtype] // 8


def safetensors_bytes(
    tensors: Sequence[STTensor],
    metadata: Optional[Dict[str, Any]] = None,
    *,
    align: int = 8,
    header: Optional[Dict[str, Any]] = None,
    raw_header: Optional[bytes] = None,
    data: Optional[bytes] = None,
) -> bytes:
    """A safetensors file; `header`/`raw_header`/`data` replace the computed parts."""
    if header is None:
        header = {}
        if metadata is not None:
            header["__metadata__"] = metadata
        offset = 0
        chunks = []
        for i, (name, dtype, shape) in enumerate(tensors):
            n = st_nbytes(dtype, shape)
            header[name] = {
                "dtype": dtype,
                "shape": list(shape),
                "data_offsets": [offset, offset + n],
            }
            chunks.append(pattern(i + 1, n))
            offset += n
        if data is None:
            data = b"".join(chunks)
    if raw_header is None:
        raw_header = json.dumps(header, separators=(",", ":")).encode("utf-8")
        if align > 1:
            raw_header += b" " * (-len(raw_header) % align)
    return struct.pack("<Q", len(raw_header)) + raw_header + (data or b"")


# ---- GGUF (ggml docs/gguf.md) ----

GGUF_U8, GGUF_I8, GGUF_U16, GGUF_I16, GGUF_U32, GGUF_I32, GGUF_F32, GGUF_BOOL = range(8)
GGUF_STRING, GGUF_ARRAY, GGUF_U64, GGUF_I64, GGUF_F64 = 8, 9, 10, 11, 12
_GGUF_CODES = {
    0: "B",
    1: "b",
    2: "H",
    3: "h",
    4: "I",
    5: "i",
    6: "f",
    7: "B",
    10: "Q",
    11: "q",
    12: "d",
}

# ggml type id -> (name, block elements, bytes per block), from ggml-common.h's
# static_assert(sizeof(block_*)) with QK_K = 256 (written out independently of the reader).
GGML_BLOCKS: Dict[int, Tuple[str, int, int]] = {
    0: ("F32", 1, 4),
    1: ("F16", 1, 2),
    2: ("Q4_0", 32, 2 + 16),
    3: ("Q4_1", 32, 4 + 16),
    6: ("Q5_0", 32, 2 + 4 + 16),
    7: ("Q5_1", 32, 4 + 4 + 16),
    8: ("Q8_0", 32, 2 + 32),
    9: ("Q8_1", 32, 4 + 32),
    10: ("Q2_K", 256, 2 * 2 + 256 // 16 + 256 // 4),
    11: ("Q3_K", 256, 2 + 256 // 4 + 256 // 8 + 12),
    12: ("Q4_K", 256, 2 * 2 + 12 + 256 // 2),
    13: ("Q5_K", 256, 2 * 2 + 12 + 256 // 2 + 256 // 8),
    14: ("Q6_K", 256, 2 + 256 // 16 + 3 * 256 // 4),
    15: ("Q8_K", 256, 4 + 256 + 256 // 16 * 2),
    16: ("IQ2_XXS", 256, 2 + 256 // 8 * 2),
    17: ("IQ2_XS", 256, 2 + 256 // 8 * 2 + 256 // 32),
    18: ("IQ3_XXS", 256, 2 + 3 * (256 // 8)),
    19: ("IQ1_S", 256, 2 + 256 // 8 + 256 // 16),
    20: ("IQ4_NL", 32, 2 + 16),
    21: ("IQ3_S", 256, 2 + 13 * (256 // 32) + 256 // 64),
    22: ("IQ2_S", 256, 2 + 256 // 4 + 256 // 16),
    23: ("IQ4_XS", 256, 2 + 2 + 256 // 2 + 256 // 64),
    24: ("I8", 1, 1),
    25: ("I16", 1, 2),
    26: ("I32", 1, 4),
    27: ("I64", 1, 8),
    28: ("F64", 1, 8),
    29: ("IQ1_M", 256, 256 // 8 + 256 // 16 + 256 // 32),
    30: ("BF16", 1, 2),
    34: ("TQ1_0", 256, 2 + 4 * 13),
    35: ("TQ2_0", 256, 2 + 64),
    39: ("MXFP4", 32, 1 + 16),
    40: ("NVFP4", 64, 4 + 32),
    41: ("Q1_0", 128, 2 + 16),
    42: ("Q2_0", 64, 2 + 16),
}
GGML_ID = {name: i for i, (name, _, _) in GGML_BLOCKS.items()}

GGUFTensor = Tuple[str, int, List[int]]  # name, ggml type id, torch-order shape


def ggml_nbytes(type_id: int, shape: Sequence[int]) -> int:
    _, block, size = GGML_BLOCKS[type_id]
    n = 1
    for d in shape:
        n *= d
    return n // block * size


def gguf_str(s: Any, e: str = "<") -> bytes:
    raw = s if isinstance(s, bytes) else str(s).encode("utf-8")
    return struct.pack(e + "Q", len(raw)) + raw


def gguf_value(vtype: int, value: Any, e: str = "<") -> bytes:
    """A value of `vtype`; arrays are (item type, [items])."""
    if vtype == GGUF_STRING:
        return gguf_str(value, e)
    if vtype == GGUF_ARRAY:
        itype, items = value
        body = b"".join(gguf_value(itype, v, e) for v in items)
        return struct.pack(e + "IQ", itype, len(items)) + body
    return struct.pack(e + _GGUF_CODES[vtype], value)


def gguf_bytes(
    kvs: Sequence[Tuple[str, int, Any]],
    tensors: Sequence[GGUFTensor],
    *,
    version: int = 3,
    endian: str = "<",
    alignment: int = 32,
    offsets: Optional[List[int]] = None,
    tensor_count: Optional[int] = None,
    kv_count: Optional[int] = None,
    data: bool = True,
) -> bytes:
    """A GGUF file; `alignment` pads (set general.alignment in kvs to declare it)."""
    e = endian
    out = [b"GGUF", struct.pack(e + "I", version)]
    out.append(
        struct.pack(
            e + "QQ",
            len(tensors) if tensor_count is None else tensor_count,
            len(kvs) if kv_count is None else kv_count,
        )
    )
    for key, vtype, value in kvs:
        out.append(gguf_str(key, e) + struct.pack(e + "I", vtype) + gguf_value(vtype, value, e))
    blobs = []
    offset = 0
    for i, (name, type_id, shape) in enumerate(tensors):
        n = ggml_nbytes(type_id, shape)
        dims = list(reversed(shape))
        off = offset if offsets is None else offsets[i]
        out.append(
            gguf_str(name, e)
            + struct.pack(e + "I", len(dims))
            + struct.pack(e + "%dQ" % len(dims), *dims)
            + struct.pack(e + "IQ", type_id, off)
        )
        padded = n + (-n % alignment)
        if data:
            blobs.append(pattern(i + 1, n) + b"\x00" * (padded - n))
        offset += padded
    head = b"".join(out)
    head += b"\x00" * (-len(head) % alignment)
    return head + (b"".join(blobs) if data else b"")


def gguf_all_kv_types() -> List[Tuple[str, int, Any]]:
    """One KV of every value type, nested arrays and a long string array."""
    return [
        ("general.architecture", GGUF_STRING, "llama"),
        ("general.name", GGUF_STRING, "tiny ünïcode"),
        ("general.file_type", GGUF_U32, 15),
        ("general.quantization_version", GGUF_U32, 2),
        ("test.u8", GGUF_U8, 200),
        ("test.i8", GGUF_I8, -100),
        ("test.u16", GGUF_U16, 60000),
        ("test.i16", GGUF_I16, -30000),
        ("test.u32", GGUF_U32, 4000000000),
        ("test.i32", GGUF_I32, -2000000000),
        ("test.f32", GGUF_F32, 0.5),
        ("test.bool", GGUF_BOOL, 1),
        ("test.u64", GGUF_U64, (1 << 64) - 1),
        ("test.i64", GGUF_I64, -(1 << 63)),
        ("test.f64", GGUF_F64, 2.25),
        ("test.nan", GGUF_F32, float("nan")),
        ("test.array.i32", GGUF_ARRAY, (GGUF_I32, [1, -2, 3])),
        ("test.array.bool", GGUF_ARRAY, (GGUF_BOOL, [1, 0])),
        ("test.array.nested", GGUF_ARRAY, (GGUF_ARRAY, [(GGUF_U8, [1, 2]), (GGUF_STRING, ["x"])])),
        ("test.array.empty", GGUF_ARRAY, (GGUF_F64, [])),
        ("tokenizer.ggml.tokens", GGUF_ARRAY, (GGUF_STRING, ["tok%d" % i for i in range(1000)])),
        ("tokenizer.ggml.scores", GGUF_ARRAY, (GGUF_F32, [float(i) for i in range(1000)])),
        ("llama.block_count", GGUF_U32, 2),
    ]


# ---- .npy (numpy.lib.format) ----


def npy_header_text(descr: Any, shape: Tuple[int, ...], fortran: bool = False) -> str:
    return "{'descr': %r, 'fortran_order': %r, 'shape': %r, }" % (descr, fortran, shape)


def npy_bytes(
    descr: Any,
    shape: Tuple[int, ...],
    data: bytes,
    *,
    fortran: bool = False,
    version: Tuple[int, int] = (1, 0),
    header: Optional[str] = None,
    align: int = 64,
) -> bytes:
    """An .npy file; `header` replaces the dict literal."""
    text = npy_header_text(descr, shape, fortran) if header is None else header
    raw = text.encode("utf-8" if version[0] == 3 else "latin-1")
    prefix_len = 10 if version[0] == 1 else 12
    total = prefix_len + len(raw) + 1
    raw += b" " * (-total % align) + b"\n"
    magic = b"\x93NUMPY" + bytes(version)
    length = struct.pack("<H" if version[0] == 1 else "<I", len(raw))
    return magic + length + raw + data


# ---- zip, by hand (PKWARE APPNOTE), for archives zipfile will not write ----


class ZipEntry:
    def __init__(
        self,
        name: str,
        data: bytes,
        *,
        deflate: bool = False,
        declared_size: Optional[int] = None,
        method: Optional[int] = None,
        same_as: Optional[int] = None,
    ) -> None:
        self.name = name
        self.data = data
        self.deflate = deflate
        self.declared_size = declared_size  # lie about the uncompressed size
        self.method = method  # lie about the compression method
        self.same_as = same_as  # reuse entry i's local header and data (overlap bomb)


def zip_bytes(entries: Sequence[ZipEntry]) -> bytes:
    body = bytearray()
    central = bytearray()
    placed: List[Tuple[int, int, int, int, int]] = []  # offset, crc, csize, size, method
    for entry in entries:
        name = entry.name.encode("utf-8")
        if entry.same_as is not None:
            offset, crc, csize, size, method = placed[entry.same_as]
        else:
            if entry.deflate:
                c = zlib.compressobj(6, zlib.DEFLATED, -15)
                payload = c.compress(entry.data) + c.flush()
                method = 8
            else:
                payload = entry.data
                method = 0
            if entry.method is not None:
                method = entry.method
            crc = zlib.crc32(entry.data)
            csize = len(payload)
            size = len(entry.data) if entry.declared_size is None else entry.declared_size
            offset = len(body)
            body += struct.pack(
                "<IHHHHHIIIHH", 0x04034B50, 20, 0, method, 0, 0, crc, csize, size, len(name), 0
            )
            body += name + payload
        placed.append((offset, crc, csize, size, method))
        central += struct.pack(
            "<IHHHHHHIIIHHHHHII",
            0x02014B50,
            20,
            20,
            0,
            method,
            0,
            0,
            crc,
            csize,
            size,
            len(name),
            0,
            0,
            0,
            0,
            0,
            offset,
        )
        central += name
    eocd = struct.pack(
        "<IHHHHIIH", 0x06054B50, 0, 0, len(entries), len(entries), len(central), len(body), 0
    )
    return bytes(body) + bytes(central) + eocd


# ---- Hugging Face folders ----


def hf_folder(
    folder: str,
    shards: Mapping[str, Sequence[STTensor]],
    *,
    index: Optional[str] = "model.safetensors.index.json",
    config: Optional[Dict[str, Any]] = None,
    weight_map: Optional[Dict[str, Any]] = None,
    total_size: Optional[int] = None,
    index_extra: Optional[Dict[str, Any]] = None,
) -> Dict[str, str]:
    """Write safetensors shards, an index naming them and config.json; returns paths."""
    os.makedirs(folder, exist_ok=True)
    paths: Dict[str, str] = {}
    wm: Dict[str, Any] = {}
    size = 0
    for shard, tensors in shards.items():
        paths[shard] = write(
            os.path.join(folder, shard), safetensors_bytes(tensors, {"format": "pt"})
        )
        for name, dtype, shape in tensors:
            wm[name] = shard
            size += st_nbytes(dtype, shape)
    if index is not None:
        doc: Dict[str, Any] = {
            "metadata": {"total_size": size if total_size is None else total_size},
            "weight_map": wm if weight_map is None else weight_map,
        }
        doc.update(index_extra or {})
        paths[index] = write(os.path.join(folder, index), json.dumps(doc, indent=2).encode())
    if config is not None:
        paths["config.json"] = write(
            os.path.join(folder, "config.json"), json.dumps(config).encode()
        )
    return paths


LLAMA_CONFIG = {
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "torch_dtype": "bfloat16",
    "hidden_size": 64,
    "num_hidden_layers": 2,
}


# ---- files torch writes (generated once per test process by a Python that has torch) ----

TORCH_SCRIPT = r"""
import sys, torch
out = sys.argv[1]
torch.manual_seed(0)
sd = {"layer.weight": torch.randn(4, 3), "layer.bias": torch.zeros(4, dtype=torch.float16),
      "emb.weight": torch.arange(6, dtype=torch.int64).reshape(2, 3)}
torch.save(sd, out + "/small_zip.pt")
torch.save(sd, out + "/small_legacy.pt", _use_new_zipfile_serialization=False)
torch.save({"a.weight": torch.ones(2, 2)}, out + "/pytorch_model-00001-of-00002.bin")
torch.save({"b.weight": torch.ones(3), "b.bias": torch.zeros(3)},
           out + "/pytorch_model-00002-of-00002.bin")
"""
_torch_files: Dict[str, Any] = {}


def torch_python() -> str:
    return os.environ.get("GPUWB_TORCH_PYTHON") or "/usr/bin/python3"


def torch_files() -> Tuple[Optional[str], str]:
    """(folder with TORCH_SCRIPT's files, "") or (None, why torch is unavailable)."""
    if not _torch_files:
        import atexit
        import shutil
        import subprocess
        import tempfile

        out = tempfile.mkdtemp(prefix="gpuwb-torch-")
        atexit.register(shutil.rmtree, out, True)
        env = dict(os.environ)
        env.pop("PYTHONPATH", None)
        try:
            proc = subprocess.run(
                [torch_python(), "-c", TORCH_SCRIPT, out],
                capture_output=True,
                text=True,
                timeout=300,
                env=env,
            )
            ok = proc.returncode == 0
            why = proc.stderr.strip().splitlines()[-1:] if not ok else []
        except (OSError, subprocess.TimeoutExpired) as exc:
            ok, why = False, [str(exc)]
        _torch_files["result"] = (out, "") if ok else (None, " ".join(why) or "torch failed")
    return _torch_files["result"]


def need_torch_files() -> str:
    """The torch-written folder, or skip (fail under CI=true) when torch is unavailable."""
    import pytest

    folder, why = torch_files()
    if folder is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("torch is required in CI (%s): %s" % (torch_python(), why))
        pytest.skip("no Python with torch (%s): %s" % (torch_python(), why))
    return folder
