"""GGUF (llama.cpp / ggml): header, key-value metadata and tensor infos; no tensor data.

Layout (ggml docs/gguf.md): magic "GGUF", u32 version, u64 tensor count, u64 KV count,
the KV pairs, the tensor infos, padding to the alignment, then the data section. Versions
2 and 3 are read; version 1 (32-bit counts) is refused as ggml does. There is no byte-order
flag: a version whose low 16 bits are zero was written big-endian (ggml's own test), and
such files are read in big-endian with a warning, since llama.cpp refuses them.

The checks are ggml's (src/gguf.cpp): strings at most 1 GiB, counts that the rest of the
file can hold, no duplicate keys or tensor names, at most 4 dimensions each below 2^63
with no overflow of the element count, a known type whose block size divides ne[0],
`general.alignment` a u32 power of two, and tensor offsets aligned and contiguous (each
equals the running sum of the padded sizes before it) inside the file. Tensor names of 64
bytes or more (GGML_MAX_NAME) only warn: ggml refuses them but the file is still readable.

Metadata stays bounded whatever the file: arrays longer than 16 items keep their first 16
and their count (`{"type": "array", "itemType": ..., "count": n, "first": [...]}`), long
strings are cut at 64 KiB, and a budget caps the values kept in all.
"""

from __future__ import annotations

import math
import os
import struct
from typing import Any, BinaryIO, Dict, List, Optional, Tuple

from .dtypes import DType, ggml_type
from .errors import CheckpointFormatError
from .model import Check, Reading, Tensor, gc_paused, no_check

MAGIC = b"GGUF"
MAX_STRING = 1 << 30  # GGUF_MAX_STRING_LENGTH
MAX_KEY = 65535
MAX_NAME_OK = 63  # GGML_MAX_NAME - 1
MAX_DIMS = 4  # GGML_MAX_DIMS
INT64_MAX = (1 << 63) - 1
DEFAULT_ALIGNMENT = 32
ARRAY_HEAD = 16  # items kept of a long array
MAX_DEPTH = 8  # nested arrays
KEEP_STRING = 65536  # bytes kept of a string value
KEEP_ARRAY_STRING = 1024  # bytes kept of a string inside an array
VALUE_BUDGET = 50_000  # scalar values kept across all metadata
MAX_KEYS_KEPT = 10_000
CHUNK = 1 << 20

# ggml type id -> (name, block elements, bytes per block); ggml-common.h, QK_K = 256.
GGML_TYPES: Dict[int, Tuple[str, int, int]] = {
    0: ("F32", 1, 4),
    1: ("F16", 1, 2),
    2: ("Q4_0", 32, 18),
    3: ("Q4_1", 32, 20),
    6: ("Q5_0", 32, 22),
    7: ("Q5_1", 32, 24),
    8: ("Q8_0", 32, 34),
    9: ("Q8_1", 32, 36),
    10: ("Q2_K", 256, 84),
    11: ("Q3_K", 256, 110),
    12: ("Q4_K", 256, 144),
    13: ("Q5_K", 256, 176),
    14: ("Q6_K", 256, 210),
    15: ("Q8_K", 256, 292),
    16: ("IQ2_XXS", 256, 66),
    17: ("IQ2_XS", 256, 74),
    18: ("IQ3_XXS", 256, 98),
    19: ("IQ1_S", 256, 50),
    20: ("IQ4_NL", 32, 18),
    21: ("IQ3_S", 256, 110),
    22: ("IQ2_S", 256, 82),
    23: ("IQ4_XS", 256, 136),
    24: ("I8", 1, 1),
    25: ("I16", 1, 2),
    26: ("I32", 1, 4),
    27: ("I64", 1, 8),
    28: ("F64", 1, 8),
    29: ("IQ1_M", 256, 56),
    30: ("BF16", 1, 2),
    34: ("TQ1_0", 256, 54),
    35: ("TQ2_0", 256, 66),
    39: ("MXFP4", 32, 17),
    40: ("NVFP4", 64, 36),
    41: ("Q1_0", 128, 18),
    42: ("Q2_0", 64, 18),
}
REMOVED_TYPES = {
    4: "Q4_2",
    5: "Q4_3",
    31: "Q4_0_4_4",
    32: "Q4_0_4_8",
    33: "Q4_0_8_8",
    36: "IQ4_NL_4_4",
    37: "IQ4_NL_4_8",
    38: "IQ4_NL_8_8",
}
_DTYPES: Dict[int, DType] = {i: ggml_type(*spec) for i, spec in GGML_TYPES.items()}
_DETAILS: Dict[int, str] = {
    i: "ggml %s: %d elements per %d-byte block" % spec
    for i, spec in GGML_TYPES.items()
    if spec[1] > 1
}

# general.file_type (llama.h llama_ftype); shown without the MOSTLY_ prefix.
FILE_TYPES: Dict[int, str] = {
    0: "F32",
    1: "F16",
    2: "Q4_0",
    3: "Q4_1",
    4: "Q4_1_SOME_F16",
    7: "Q8_0",
    8: "Q5_0",
    9: "Q5_1",
    10: "Q2_K",
    11: "Q3_K_S",
    12: "Q3_K_M",
    13: "Q3_K_L",
    14: "Q4_K_S",
    15: "Q4_K_M",
    16: "Q5_K_S",
    17: "Q5_K_M",
    18: "Q6_K",
    19: "IQ2_XXS",
    20: "IQ2_XS",
    21: "Q2_K_S",
    22: "IQ3_XS",
    23: "IQ3_XXS",
    24: "IQ1_S",
    25: "IQ4_NL",
    26: "IQ3_S",
    27: "IQ3_M",
    28: "IQ2_S",
    29: "IQ2_M",
    30: "IQ4_XS",
    31: "IQ1_M",
    32: "BF16",
    36: "TQ1_0",
    37: "TQ2_0",
    38: "MXFP4_MOE",
    39: "NVFP4",
    40: "Q1_0",
    1024: "guessed",
}

# KV value types: id -> (name, struct code, size); STRING and ARRAY have no fixed size.
T_STRING = 8
T_ARRAY = 9
T_BOOL = 7
T_U32 = 4
VALUE_TYPES: Dict[int, Tuple[str, str, int]] = {
    0: ("U8", "B", 1),
    1: ("I8", "b", 1),
    2: ("U16", "H", 2),
    3: ("I16", "h", 2),
    4: ("U32", "I", 4),
    5: ("I32", "i", 4),
    6: ("F32", "f", 4),
    7: ("BOOL", "B", 1),
    8: ("STRING", "", 8),  # size: the length prefix, the least a string takes
    9: ("ARRAY", "", 12),  # size: item type + count, the least an array takes
    10: ("U64", "Q", 8),
    11: ("I64", "q", 8),
    12: ("F64", "d", 8),
}

_HINT = "The file is truncated or corrupt; re-download or re-convert it."


def _error(name: str, text: str, hint: Optional[str] = None) -> CheckpointFormatError:
    return CheckpointFormatError("%s: %s" % (name, text), hint=hint)


class _Reader:
    """Sequential reads from a file through a 1 MiB window, every read bounded by the file."""

    def __init__(self, f: BinaryIO, size: int, endian: str, name: str) -> None:
        self.f = f
        self.size = size
        self.name = name
        self.buf = b""
        self.base = 0  # file offset of buf[0]
        self.pos = 0  # index into buf
        self.endian = endian
        self.u32s = struct.Struct(endian + "I")
        self.u64s = struct.Struct(endian + "Q")

    def tell(self) -> int:
        return self.base + self.pos

    def truncated(self, what: str) -> CheckpointFormatError:
        return _error(
            self.name,
            "truncated: %s at byte %d runs past the end of the file (%d bytes)"
            % (what, self.tell(), self.size),
            _HINT,
        )

    def need(self, n: int, what: str) -> None:
        if self.pos + n <= len(self.buf):
            return
        start = self.base + self.pos
        if start + n > self.size:
            raise self.truncated(what)
        self.f.seek(start)
        self.buf = self.f.read(max(n, CHUNK))
        self.base = start
        self.pos = 0
        if len(self.buf) < n:
            raise self.truncated(what)

    def skip(self, n: int, what: str) -> None:
        target = self.base + self.pos + n
        if target > self.size:
            raise self.truncated(what)
        if self.pos + n <= len(self.buf):
            self.pos += n
        else:
            self.base = target
            self.buf = b""
            self.pos = 0

    def take(self, n: int, what: str) -> bytes:
        self.need(n, what)
        data = self.buf[self.pos : self.pos + n]
        self.pos += n
        return data

    def u32(self, what: str) -> int:
        self.need(4, what)
        (v,) = self.u32s.unpack_from(self.buf, self.pos)
        self.pos += 4
        return v

    def u64(self, what: str) -> int:
        self.need(8, what)
        (v,) = self.u64s.unpack_from(self.buf, self.pos)
        self.pos += 8
        return v

    def string(self, what: str, keep: int, limit: int = MAX_STRING) -> str:
        n = self.u64(what)
        if n > limit:
            raise _error(
                self.name,
                "%s is %d bytes long, over the limit of %d" % (what, n, limit),
                "A string that long is corrupt or built to exhaust memory.",
            )
        if n <= keep:
            return self.take(n, what).decode("utf-8", "replace")
        text = self.take(keep, what).decode("utf-8", "ignore")
        self.skip(n - keep, what)
        return text + "… (%d bytes in all)" % n

    def skip_strings(self, count: int, what: str, check: Check) -> None:
        """Skip `count` strings; the hot loop of tokenizer vocabularies."""
        unpack = self.u64s.unpack_from
        buf = self.buf
        pos = self.pos
        end = len(buf)
        for i in range(count):
            if pos + 8 > end:
                self.pos = pos
                self.need(8, what)
                buf = self.buf
                pos = self.pos
                end = len(buf)
            (n,) = unpack(buf, pos)
            if n > MAX_STRING:
                self.pos = pos
                raise _error(
                    self.name,
                    "%s item %d is %d bytes long, over the limit of %d" % (what, i, n, MAX_STRING),
                )
            pos += 8 + n
            if pos > end:
                self.pos = end
                self.skip(pos - end, what)
                buf = self.buf
                pos = self.pos
                end = len(buf)
            if i & 0xFFFF == 0xFFFF:
                check()
        self.pos = pos


class _Parser:
    def __init__(self, r: _Reader, check: Check) -> None:
        self.r = r
        self.check = check
        self.budget = VALUE_BUDGET

    def value(self, vtype: int, what: str, depth: int = 0) -> Any:
        r = self.r
        if vtype == T_STRING:
            self.budget -= 1
            return r.string(what, KEEP_STRING if depth == 0 else KEEP_ARRAY_STRING)
        if vtype == T_ARRAY:
            return self.array(what, depth + 1)
        spec = VALUE_TYPES.get(vtype)
        if spec is None:
            raise _error(r.name, "%s has the unknown value type %d" % (what, vtype))
        self.budget -= 1
        _, code, size = spec
        r.need(size, what)
        (v,) = struct.unpack_from(r.endian + code, r.buf, r.pos)
        r.pos += size
        if vtype == T_BOOL:
            return v != 0
        return _json_number(v)

    def array(self, what: str, depth: int) -> Any:
        r = self.r
        if depth > MAX_DEPTH:
            raise _error(r.name, "%s nests arrays more than %d deep" % (what, MAX_DEPTH))
        itype = r.u32(what)
        count = r.u64(what)
        spec = VALUE_TYPES.get(itype)
        if spec is None:
            raise _error(r.name, "%s is an array of the unknown value type %d" % (what, itype))
        tname, code, size = spec
        if count > (r.size - r.tell()) // size:
            raise _error(
                r.name,
                "%s declares %d %s items, more than the rest of the file can hold "
                "(truncated or corrupt)" % (what, count, tname),
                _HINT,
            )
        keep = min(count, ARRAY_HEAD, max(self.budget, 0))
        items: List[Any] = []
        if code:
            if keep:
                r.need(keep * size, what)
                items = list(struct.unpack_from("%s%d%s" % (r.endian, keep, code), r.buf, r.pos))
                r.pos += keep * size
                self.budget -= keep
                if itype == T_BOOL:
                    items = [v != 0 for v in items]
                else:
                    items = [_json_number(v) for v in items]
            r.skip((count - keep) * size, what)
        elif itype == T_STRING:
            for _ in range(keep):
                items.append(self.value(T_STRING, what, depth))
            r.skip_strings(count - keep, what, self.check)
        else:  # nested arrays
            for i in range(count):
                if i < keep:
                    items.append(self.array(what, depth + 1))
                else:
                    saved = self.budget
                    self.budget = 0
                    self.array(what, depth + 1)
                    self.budget = saved
                if i & 0xFFF == 0xFFF:
                    self.check()
        if count <= ARRAY_HEAD and keep == count:
            return items
        return {"type": "array", "itemType": tname, "count": count, "first": items}


def _json_number(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf")
    return v


def read(path: str, check: Check = no_check) -> Reading:
    """Read a GGUF file's metadata and tensor infos; raises CheckpointFormatError."""
    path = os.path.abspath(path)
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as f, gc_paused():
            return _read(f, path, size, check)
    except OSError as exc:
        raise CheckpointFormatError("Cannot read %s: %s" % (os.path.basename(path), exc)) from None


def _read(f: BinaryIO, path: str, size: int, check: Check) -> Reading:
    name = os.path.basename(path)
    head = f.read(24)
    if head[:4] != MAGIC:
        raise _error(name, "not a GGUF file (no GGUF magic)")
    if len(head) < 8:
        raise _error(name, "truncated inside the GGUF header", _HINT)
    (version,) = struct.unpack_from("<I", head, 4)
    endian = "<"
    if version & 0xFFFF == 0 and version:
        endian = ">"
        (version,) = struct.unpack_from(">I", head, 4)
    if version == 1:
        raise _error(
            name,
            "GGUF version 1 is not supported (it used 32-bit counts and ggml dropped it)",
            "Convert the file again with a current llama.cpp.",
        )
    if version not in (2, 3):
        raise _error(
            name,
            "unsupported GGUF version %d (versions 2 and 3 are read)" % version,
            "The header may be corrupt, or the file newer than this reader.",
        )
    r = _Reader(f, size, endian, name)
    r.skip(8, "header")
    n_tensors = r.u64("the tensor count")
    n_kv = r.u64("the metadata count")
    reading = Reading(path, "gguf", "")
    reading.add_file(path, size, "gguf")
    if endian == ">":
        reading.warn("This GGUF file is big-endian; llama.cpp on little-endian machines refuses it")

    # ---- key-value metadata ----
    remaining = size - r.tell()
    if n_kv > remaining // 13:  # key length + value type + the smallest value
        raise _error(
            name,
            "declares %d metadata entries, more than the file can hold (truncated or corrupt)"
            % n_kv,
            _HINT,
        )
    if n_tensors > remaining // 24:  # name length + n_dims + type + offset
        raise _error(
            name,
            "declares %d tensors, more than the file can hold (truncated or corrupt)" % n_tensors,
            _HINT,
        )
    parser = _Parser(r, check)
    kv: Dict[str, Any] = {}
    types: Dict[str, int] = {}
    dropped = 0
    alignment_value: Any = None
    for i in range(n_kv):
        if i & 0xFF == 0xFF:
            check()
        key = r.string("metadata key %d" % i, MAX_KEY, MAX_KEY)
        if key in types:
            raise _error(name, "the metadata key %r appears twice" % key[:200])
        vtype = r.u32("the type of %r" % key[:200])
        value = parser.value(vtype, "metadata %r" % key[:200])
        types[key] = vtype
        if key == "general.alignment":
            alignment_value = value
        if len(kv) < MAX_KEYS_KEPT:
            kv[key] = value
        else:
            dropped += 1
    if dropped:
        reading.warn("%d metadata entries beyond the first %d are not shown" % (dropped, len(kv)))

    alignment = DEFAULT_ALIGNMENT
    if "general.alignment" in types:
        if types["general.alignment"] != T_U32:
            raise _error(
                name,
                "general.alignment has type %s; ggml requires a u32"
                % VALUE_TYPES[types["general.alignment"]][0],
            )
        alignment = alignment_value
        if alignment <= 0 or alignment & (alignment - 1):
            raise _error(name, "general.alignment is %d, not a power of two" % alignment)

    # ---- tensor infos ----
    infos: List[Tuple[str, List[int], int, int, int, int]] = []
    names = set()
    long_names = 0
    u64 = r.u64s.unpack_from
    u32 = r.u32s.unpack_from
    dims_of = [struct.Struct("%s%dQ" % (endian, k)) for k in range(MAX_DIMS + 1)]
    type_offset = struct.Struct(endian + "IQ")
    for i in range(n_tensors):
        if i & 0xFFF == 0xFFF:
            check()
        r.need(8, "a tensor name")
        (n,) = u64(r.buf, r.pos)
        if n > MAX_KEY:
            raise _error(name, "the name of tensor %d is %d bytes long" % (i, n))
        r.pos += 8
        r.need(n + 4, "a tensor name")
        pos = r.pos
        tname = r.buf[pos : pos + n].decode("utf-8", "replace")
        (n_dims,) = u32(r.buf, pos + n)
        r.pos = pos + n + 4
        if tname in names:
            raise _error(name, "the tensor name %r appears twice" % tname[:200])
        names.add(tname)
        if n > MAX_NAME_OK:
            long_names += 1
        if n_dims > MAX_DIMS:
            raise _error(
                name, "tensor %r has %d dimensions; ggml allows at most 4" % (tname, n_dims)
            )
        r.need(8 * n_dims + 12, "a tensor info")
        dims = list(dims_of[n_dims].unpack_from(r.buf, r.pos))
        type_id, offset = type_offset.unpack_from(r.buf, r.pos + 8 * n_dims)
        r.pos += 8 * n_dims + 12
        numel = 1
        for d in dims:
            if d > INT64_MAX:
                raise _error(name, "tensor %r has a negative dimension" % tname)
            numel *= d
        if numel > INT64_MAX:
            raise _error(
                name, "tensor %r has dimensions %s whose product overflows" % (tname, dims)
            )
        spec = GGML_TYPES.get(type_id)
        if spec is None:
            if type_id in REMOVED_TYPES:
                raise _error(
                    name,
                    "tensor %r has type %d (%s), which ggml removed"
                    % (tname, type_id, REMOVED_TYPES[type_id]),
                    "Re-quantize the model with a current llama.cpp.",
                )
            raise _error(name, "tensor %r has the unknown ggml type %d" % (tname, type_id))
        ne0 = dims[0] if dims else 1
        block, block_bytes = spec[1], spec[2]
        if ne0 % block:
            raise _error(
                name,
                "tensor %r has %d elements per row, not a multiple of the %s block size %d"
                % (tname, ne0, spec[0], block),
            )
        nbytes = (ne0 // block) * block_bytes * (numel // ne0) if ne0 else 0
        infos.append((tname, dims, type_id, numel, nbytes, offset))
    if long_names:
        reading.warn(
            "%d tensor name%s 64 bytes or longer; ggml (GGML_MAX_NAME) refuses them"
            % (long_names, " is" if long_names == 1 else "s are")
        )

    header_end = r.tell()
    data_start = -(-header_end // alignment) * alignment
    expected = 0
    data_end = data_start
    byte_order = "little" if endian == "<" else "big"
    tensors = reading.tensors
    for i, (tname, dims, type_id, numel, nbytes, offset) in enumerate(infos):
        if i & 0xFFF == 0xFFF:
            check()
        if offset % alignment:
            raise _error(
                name,
                "tensor %r has offset %d, not a multiple of the alignment %d"
                % (tname, offset, alignment),
            )
        if offset != expected:
            raise _error(
                name,
                "tensor %r has offset %d, expected %d: tensors must follow one another "
                "(padded to %d bytes)" % (tname, offset, expected, alignment),
            )
        expected += -(-nbytes // alignment) * alignment
        data_end = data_start + offset + nbytes
        if data_end > size:
            raise _error(
                name,
                "truncated: tensor %r ends at byte %d but the file has %d bytes"
                % (tname, data_end, size),
                _HINT,
            )
        dtype = _DTYPES[type_id]
        tensors.append(
            Tensor(
                tname,
                dtype.name,
                dims[::-1],
                nbytes,
                numel=numel,
                offset=data_start + offset,
                byte_order=byte_order,
                detail=_DETAILS.get(type_id),
            )
        )

    reading.metadata["gguf"] = kv
    parts = ["GGUF v%d" % version]
    arch = kv.get("general.architecture")
    if isinstance(arch, str) and arch:
        parts.append(arch[:64])
    ftype = kv.get("general.file_type")
    if isinstance(ftype, int) and not isinstance(ftype, bool):
        parts.append(FILE_TYPES.get(ftype, "file type %d" % ftype))
    if endian == ">":
        parts.append("big-endian")
    reading.format_detail = ", ".join(parts)
    return reading
