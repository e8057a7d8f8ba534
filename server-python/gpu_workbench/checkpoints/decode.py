"""Element decoders: raw tensor bytes -> numbers, for every dtype we can give statistics for.

Two engines give identical values:

- ``numpy`` (when importable): ``np.frombuffer`` with the right dtype; bf16 widened to the
  upper half of a float32, 8-bit floats through a 256-entry table.
- ``stdlib``: ``array``/``struct``/``bytes`` only; f16 with struct's ``e``, bf16 by
  interleaving zero bytes into float32s, 8-bit floats through the same tables.

The 8-bit float tables are computed once from the format definitions (sign, exponent,
mantissa, bias; OCP FP8 / MX and the FNUZ variants), not copied from a library:

=============  ====  =====  =======================================================
dtype          bias  inf    NaN
=============  ====  =====  =======================================================
F8_E4M3 (fn)   7     none   S.1111.111 (0x7F, 0xFF); max 448
F8_E5M2        15    E=31,M=0  E=31,M!=0; max 57344
F8_E4M3FNUZ    8     none   0x80 only (no negative zero); max 240
F8_E5M2FNUZ    16    none   0x80 only (no negative zero); max 57344
F8_E8M0 (fnu)  127   none   0xFF; unsigned powers of two 2**(E-127), no zero
=============  ====  =====  =======================================================

GGUF ``Q8_0`` and ``Q4_0`` blocks are dequantized as ggml does (an f16 scale per 32
elements). Complex, other quantized, packed sub-byte and opaque types have no decoder;
`unsupported_reason` says so in one sentence per tensor.

`FORCE_STDLIB` (or ``GPUWB_STATS_ENGINE=stdlib`` in the environment) makes every caller use
the standard-library engine, which is how the numpy-absent path is tested.
"""

from __future__ import annotations

import array
import math
import os
import struct
import sys
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

# Set to True to behave as if numpy were not installed (tests, benchmarks).
FORCE_STDLIB = False
ENGINE_ENV = "GPUWB_STATS_ENGINE"

Numbers = Union[Sequence[float], Sequence[int]]

NATIVE_ORDER = sys.byteorder  # "little" | "big"

# ---- which dtypes decode, and in which units ----

# Plain dtypes: bytes per element.
ITEMSIZE: Dict[str, int] = {
    "F64": 8,
    "F32": 4,
    "F16": 2,
    "BF16": 2,
    "F8_E4M3": 1,
    "F8_E5M2": 1,
    "F8_E4M3FNUZ": 1,
    "F8_E5M2FNUZ": 1,
    "F8_E8M0": 1,
    "I64": 8,
    "I32": 4,
    "I16": 2,
    "I8": 1,
    "U64": 8,
    "U32": 4,
    "U16": 2,
    "U8": 1,
    "BOOL": 1,
}

# Block types: (elements per block, bytes per block).
BLOCKS: Dict[str, Tuple[int, int]] = {"Q8_0": (32, 34), "Q4_0": (32, 18)}

FLOATS = frozenset(
    ("F64", "F32", "F16", "BF16", "F8_E4M3", "F8_E5M2", "F8_E4M3FNUZ", "F8_E5M2FNUZ", "F8_E8M0")
)
INTS = frozenset(("I64", "I32", "I16", "I8", "U64", "U32", "U16", "U8", "BOOL"))


def unit(dtype: str) -> Optional[Tuple[int, int]]:
    """(elements, bytes) of the smallest decodable piece of `dtype`; None: not decodable."""
    size = ITEMSIZE.get(dtype)
    if size is not None:
        return (1, size)
    return BLOCKS.get(dtype)


def is_float(dtype: str) -> bool:
    """True when decoded values can be NaN or infinite (floats and dequantized blocks)."""
    return dtype in FLOATS or dtype in BLOCKS


def unsupported_reason(dtype: str) -> Optional[str]:
    """Why `dtype` cannot be decoded, as one sentence; None when it can."""
    if unit(dtype) is not None:
        return None
    return "statistics are not available for %s" % dtype


# ---- engines ----


def numpy_module() -> Any:
    """numpy, or None when it is not installed or the stdlib engine is forced."""
    if FORCE_STDLIB or os.environ.get(ENGINE_ENV, "").strip().lower() == "stdlib":
        return None
    try:
        import numpy
    except Exception:  # ImportError, or a broken install raising anything at import
        return None
    return numpy


def engine_name(engine: Optional[str] = None) -> str:
    """The engine a caller will use: `engine` if given and available, else the default."""
    if engine == "stdlib":
        return "stdlib"
    if engine not in (None, "numpy"):
        raise ValueError("unknown engine %r (numpy or stdlib)" % (engine,))
    return "numpy" if numpy_module() is not None else "stdlib"


# ---- 8-bit float tables, from the format definitions ----


def _minifloat(byte: int, exp_bits: int, man_bits: int, bias: int, variant: str) -> float:
    """Value of one 8-bit float. variant: "ieee" (inf+NaN at max exponent), "fn" (no inf,
    NaN only with all exponent and mantissa bits set), "fnuz" (no inf, no -0, NaN = 0x80)."""
    sign = -1.0 if byte & 0x80 else 1.0
    exp = (byte >> man_bits) & ((1 << exp_bits) - 1)
    man = byte & ((1 << man_bits) - 1)
    max_exp = (1 << exp_bits) - 1
    if variant == "fnuz" and byte == 0x80:
        return math.nan
    if variant == "ieee" and exp == max_exp:
        return sign * math.inf if man == 0 else math.nan
    if variant == "fn" and exp == max_exp and man == (1 << man_bits) - 1:
        return math.nan
    if exp == 0:  # zero and subnormals: 0.m * 2**(1 - bias)
        return sign * math.ldexp(man, 1 - bias - man_bits)
    return sign * math.ldexp((1 << man_bits) + man, exp - bias - man_bits)


def _e8m0(byte: int) -> float:
    return math.nan if byte == 0xFF else math.ldexp(1.0, byte - 127)


def _build_tables() -> Dict[str, List[float]]:
    return {
        "F8_E4M3": [_minifloat(b, 4, 3, 7, "fn") for b in range(256)],
        "F8_E5M2": [_minifloat(b, 5, 2, 15, "ieee") for b in range(256)],
        "F8_E4M3FNUZ": [_minifloat(b, 4, 3, 8, "fnuz") for b in range(256)],
        "F8_E5M2FNUZ": [_minifloat(b, 5, 2, 16, "fnuz") for b in range(256)],
        "F8_E8M0": [_e8m0(b) for b in range(256)],
    }


TABLES: Dict[str, List[float]] = _build_tables()

_BOOL_TABLE = bytes([0] + [1] * 255)  # any non-zero byte is True


# ---- stdlib engine ----


def _typecode(kind: str, size: int) -> str:
    """An array typecode for a signed ("i") or unsigned ("u") integer of `size` bytes."""
    codes = ("b", "h", "i", "l", "q") if kind == "i" else ("B", "H", "I", "L", "Q")
    for code in codes:
        if array.array(code).itemsize == size:
            return code
    raise ValueError("no array typecode for %d-byte integers" % size)  # pragma: no cover


_INT_CODES: Dict[str, str] = {
    name: _typecode("u" if name.startswith("U") else "i", ITEMSIZE[name])
    for name in ("I64", "I32", "I16", "I8", "U64", "U32", "U16", "U8")
}


def _check_length(data: bytes, dtype: str) -> int:
    u = unit(dtype)
    if u is None:
        raise ValueError(unsupported_reason(dtype))
    if len(data) % u[1]:
        raise ValueError("%d bytes is not a whole number of %s elements" % (len(data), dtype))
    return len(data) // u[1]


def _bf16_as_f32_bytes(data: bytes, byte_order: str) -> bytearray:
    """Native-order float32 bytes whose upper 16 bits are the bf16 values in `data`."""
    n = len(data) // 2
    out = bytearray(4 * n)
    hi, lo = (data[1::2], data[0::2]) if byte_order == "little" else (data[0::2], data[1::2])
    if NATIVE_ORDER == "little":  # f32 bytes: 0, 0, lo, hi
        out[2::4] = lo
        out[3::4] = hi
    else:  # f32 bytes: hi, lo, 0, 0
        out[0::4] = hi
        out[1::4] = lo
    return out


def decode_stdlib(data: bytes, dtype: str, byte_order: str = "little") -> Numbers:
    """Decode `data` to Python numbers (an array, tuple or list) with the standard library."""
    n = _check_length(data, dtype)
    swap = byte_order != NATIVE_ORDER
    if dtype in TABLES:
        return list(map(TABLES[dtype].__getitem__, data))
    if dtype == "F64" or dtype == "F32":
        values = array.array("d" if dtype == "F64" else "f", data)
        if swap:
            values.byteswap()
        return values
    if dtype == "F16":
        return struct.unpack("%s%de" % ("<" if byte_order == "little" else ">", n), data)
    if dtype == "BF16":
        return array.array("f", _bf16_as_f32_bytes(data, byte_order))
    if dtype == "BOOL":
        return array.array("B", data.translate(_BOOL_TABLE))
    if dtype in _INT_CODES:
        values = array.array(_INT_CODES[dtype], data)
        if swap and values.itemsize > 1:
            values.byteswap()
        return values
    if dtype == "Q8_0":
        return _q8_0_stdlib(data, n, byte_order)
    if dtype == "Q4_0":
        return _q4_0_stdlib(data, n, byte_order)
    raise ValueError(unsupported_reason(dtype))  # pragma: no cover


def _scales_stdlib(data: bytes, n: int, block_bytes: int, byte_order: str) -> Tuple[float, ...]:
    raw = b"".join(data[i * block_bytes : i * block_bytes + 2] for i in range(n))
    return struct.unpack("%s%de" % ("<" if byte_order == "little" else ">", n), raw)


def _q8_0_stdlib(data: bytes, n: int, byte_order: str) -> List[float]:
    scales = _scales_stdlib(data, n, 34, byte_order)
    out: List[float] = []
    for i, d in enumerate(scales):
        qs = array.array("b", data[i * 34 + 2 : i * 34 + 34])
        out.extend(map(d.__mul__, map(float, qs)))
    return out


def _q4_0_stdlib(data: bytes, n: int, byte_order: str) -> List[float]:
    scales = _scales_stdlib(data, n, 18, byte_order)
    out: List[float] = []
    for i, d in enumerate(scales):
        qs = data[i * 18 + 2 : i * 18 + 18]
        out.extend(d * ((q & 0x0F) - 8) for q in qs)
        out.extend(d * ((q >> 4) - 8) for q in qs)
    return out


# ---- numpy engine ----

_NP_CODES: Dict[str, str] = {
    "F64": "f8",
    "F32": "f4",
    "F16": "f2",
    "I64": "i8",
    "I32": "i4",
    "I16": "i2",
    "I8": "i1",
    "U64": "u8",
    "U32": "u4",
    "U16": "u2",
    "U8": "u1",
}

_np_tables: Dict[str, Any] = {}


def decode_numpy(data: bytes, dtype: str, byte_order: str = "little", np: Any = None) -> Any:
    """Decode `data` to a 1-D numpy array (float64/float32/integers; bool as uint8)."""
    n = _check_length(data, dtype)
    if np is None:
        np = numpy_module()
        if np is None:
            raise RuntimeError("numpy is not available")
    order = "<" if byte_order == "little" else ">"
    code = _NP_CODES.get(dtype)
    if code is not None:
        values = np.frombuffer(data, dtype=order + code)
        if dtype == "F16":
            return values.astype(np.float32)
        return values
    if dtype in TABLES:
        table = _np_tables.get(dtype)
        if table is None:
            table = _np_tables[dtype] = np.array(TABLES[dtype], dtype=np.float64)
        return table[np.frombuffer(data, dtype=np.uint8)]
    if dtype == "BF16":
        wide = np.frombuffer(data, dtype=order + "u2").astype(np.uint32)
        wide <<= 16
        return wide.view(np.float32)
    if dtype == "BOOL":
        return (np.frombuffer(data, dtype=np.uint8) != 0).view(np.uint8)
    if dtype == "Q8_0":
        blocks = np.frombuffer(data, dtype=np.dtype([("d", order + "f2"), ("qs", "i1", (32,))]))
        scales = blocks["d"].astype(np.float64)[:, None]
        return (blocks["qs"].astype(np.float64) * scales).reshape(n * 32)
    if dtype == "Q4_0":
        blocks = np.frombuffer(data, dtype=np.dtype([("d", order + "f2"), ("qs", "u1", (16,))]))
        scales = blocks["d"].astype(np.float64)[:, None]
        qs = blocks["qs"].astype(np.int16)
        both = np.concatenate([(qs & 0x0F) - 8, (qs >> 4) - 8], axis=1)
        return (both.astype(np.float64) * scales).reshape(n * 32)
    raise ValueError(unsupported_reason(dtype))  # pragma: no cover


def decode(data: bytes, dtype: str, byte_order: str = "little", engine: Optional[str] = None):
    """Decode with the chosen engine: numpy array (numpy) or a sequence of numbers (stdlib)."""
    if engine_name(engine) == "numpy":
        return decode_numpy(data, dtype, byte_order)
    return decode_stdlib(data, dtype, byte_order)


def to_list(values: Any) -> List[float]:
    """Decoded values of either engine as a list of Python floats (tests, previews)."""
    if hasattr(values, "tolist"):
        return [float(v) for v in values.tolist()]
    return [float(v) for v in values]


# ---- byte order ----


def to_little_endian(data: bytes, swap_size: int) -> bytes:
    """`data` made of big-endian words of `swap_size` bytes, with every word reversed."""
    if swap_size <= 1:
        return data
    if swap_size in (2, 4, 8):
        values = array.array(_typecode("u", swap_size), data)
        values.byteswap()
        return values.tobytes()
    out = bytearray(len(data))
    for i in range(swap_size):
        out[i::swap_size] = data[swap_size - 1 - i :: swap_size]
    return bytes(out)
