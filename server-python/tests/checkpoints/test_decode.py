"""Element decoders: every dtype, edge values from the format definitions, both engines."""

from __future__ import annotations

import math
import random
import struct
import sys
from typing import Any, List

import pytest

from gpu_workbench.checkpoints import decode

HAS_NUMPY = decode.numpy_module() is not None
needs_numpy = pytest.mark.skipif(not HAS_NUMPY, reason="numpy is not installed")

NAN = math.nan
INF = math.inf


def same(a: float, b: float) -> bool:
    """Equal as floats, NaN equal to NaN, and the sign of zero respected."""
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return a == b and math.copysign(1.0, a) == math.copysign(1.0, b)


def assert_values(got: Any, expected: List[float]) -> None:
    values = decode.to_list(got)
    assert len(values) == len(expected)
    for i, (g, e) in enumerate(zip(values, expected)):
        assert same(g, e), "element %d: got %r, expected %r" % (i, g, e)


def both(data: bytes, dtype: str, order: str = "little") -> List[List[float]]:
    out = [decode.to_list(decode.decode_stdlib(data, dtype, order))]
    if HAS_NUMPY:
        out.append(decode.to_list(decode.decode_numpy(data, dtype, order)))
    return out


# ---- 8-bit floats: values worked out by hand from sign/exponent/mantissa/bias ----

FP8_CASES = {
    # OCP E4M3 ("fn"): bias 7, no infinities, NaN = S.1111.111, max 448.
    "F8_E4M3": [
        (0x00, 0.0),
        (0x80, -0.0),
        (0x01, 2.0**-9),  # smallest subnormal 0.001 * 2**-6
        (0x07, 7 * 2.0**-9),  # largest subnormal
        (0x08, 2.0**-6),  # smallest normal
        (0x38, 1.0),  # 0 0111 000
        (0x40, 2.0),
        (0xC0, -2.0),
        (0x3C, 1.5),
        (0x78, 256.0),  # exponent 1111 is finite in fn
        (0x7E, 448.0),  # max
        (0xFE, -448.0),
        (0x7F, NAN),
        (0xFF, NAN),
    ],
    # E5M2: IEEE-like, bias 15, inf at E=31 M=0, NaN at E=31 M!=0, max 57344.
    "F8_E5M2": [
        (0x00, 0.0),
        (0x80, -0.0),
        (0x01, 2.0**-16),
        (0x03, 3 * 2.0**-16),
        (0x04, 2.0**-14),
        (0x3C, 1.0),
        (0x3E, 1.5),
        (0x7B, 57344.0),
        (0xFB, -57344.0),
        (0x7C, INF),
        (0xFC, -INF),
        (0x7D, NAN),
        (0x7E, NAN),
        (0x7F, NAN),
        (0xFF, NAN),
    ],
    # E4M3FNUZ: bias 8, no inf, no negative zero, NaN = 0x80 only, max 240.
    "F8_E4M3FNUZ": [
        (0x00, 0.0),
        (0x80, NAN),
        (0x01, 2.0**-10),
        (0x08, 2.0**-7),
        (0x40, 1.0),
        (0x7F, 240.0),
        (0xFF, -240.0),
        (0x81, -(2.0**-10)),
    ],
    # E5M2FNUZ: bias 16, no inf, NaN = 0x80 only, max 57344; E=31 is finite.
    "F8_E5M2FNUZ": [
        (0x00, 0.0),
        (0x80, NAN),
        (0x01, 2.0**-17),
        (0x04, 2.0**-15),
        (0x40, 1.0),
        (0x7C, 32768.0),
        (0x7F, 57344.0),
        (0xFF, -57344.0),
    ],
    # E8M0 (fnu): unsigned powers of two, bias 127, no zero, NaN = 0xFF.
    "F8_E8M0": [
        (0x00, 2.0**-127),
        (0x7F, 1.0),
        (0x80, 2.0),
        (0xFE, 2.0**127),
        (0xFF, NAN),
    ],
}


@pytest.mark.parametrize("dtype", sorted(FP8_CASES))
def test_fp8_values_from_the_definition(dtype):
    cases = FP8_CASES[dtype]
    data = bytes(code for code, _ in cases)
    for values in both(data, dtype):
        assert_values(values, [v for _, v in cases])


@pytest.mark.parametrize(
    "dtype,nans,infs,max_value",
    [
        ("F8_E4M3", 2, 0, 448.0),
        ("F8_E5M2", 6, 2, 57344.0),
        ("F8_E4M3FNUZ", 1, 0, 240.0),
        ("F8_E5M2FNUZ", 1, 0, 57344.0),
        ("F8_E8M0", 1, 0, 2.0**127),
    ],
)
def test_fp8_tables_whole(dtype, nans, infs, max_value):
    table = decode.TABLES[dtype]
    assert len(table) == 256
    assert sum(1 for v in table if math.isnan(v)) == nans
    assert sum(1 for v in table if math.isinf(v)) == infs
    finite = [v for v in table if math.isfinite(v)]
    assert max(finite) == max_value
    if dtype != "F8_E8M0":
        assert min(finite) == -max_value
        # Positive codes increase strictly up to the largest finite one.
        positive = [v for v in table[:128] if math.isfinite(v)]
        assert positive == sorted(positive) and len(set(positive)) == len(positive)
        # Sign symmetry wherever the negative code is not the special NaN.
        for code in range(1, 128):
            if math.isfinite(table[code]) and math.isfinite(table[code | 0x80]):
                assert table[code | 0x80] == -table[code]
    else:
        assert all(v > 0 for v in finite)
        assert finite == sorted(finite)


# ---- 16-bit floats ----

F16_CASES = [
    (0x0000, 0.0),
    (0x8000, -0.0),
    (0x0001, 2.0**-24),  # smallest subnormal
    (0x03FF, 1023 * 2.0**-24),  # largest subnormal
    (0x0400, 2.0**-14),  # smallest normal
    (0x3C00, 1.0),
    (0xC000, -2.0),
    (0x3555, (1 + 0x155 / 1024.0) * 2.0**-2),  # about 1/3
    (0x7BFF, 65504.0),  # max
    (0xFBFF, -65504.0),
    (0x7C00, INF),
    (0xFC00, -INF),
    (0x7E00, NAN),
    (0xFE01, NAN),
]

BF16_CASES = [
    (0x0000, 0.0),
    (0x8000, -0.0),
    (0x0001, 2.0**-133),  # smallest subnormal: 2**-149 * 2**16
    (0x007F, 127 * 2.0**-133),
    (0x0080, 2.0**-126),  # smallest normal
    (0x3F80, 1.0),
    (0xBF80, -1.0),
    (0x4049, 3.140625),  # pi in bf16
    (0xC000, -2.0),
    (0x7F7F, (2 - 2.0**-7) * 2.0**127),  # max
    (0xFF7F, -(2 - 2.0**-7) * 2.0**127),
    (0x7F80, INF),
    (0xFF80, -INF),
    (0x7FC0, NAN),
    (0xFFC1, NAN),
    (0x7F81, NAN),  # signalling NaN stays NaN
]


@pytest.mark.parametrize("order", ["little", "big"])
@pytest.mark.parametrize("dtype,cases", [("F16", F16_CASES), ("BF16", BF16_CASES)])
def test_16_bit_floats(dtype, cases, order):
    fmt = ("<" if order == "little" else ">") + "%dH" % len(cases)
    data = struct.pack(fmt, *(code for code, _ in cases))
    for values in both(data, dtype, order):
        assert_values(values, [v for _, v in cases])


def test_bf16_is_the_upper_half_of_f32():
    rng = random.Random(5)
    floats = [rng.uniform(-1e30, 1e30) for _ in range(200)] + [1.0, -0.0, 1e-40]
    words = [struct.unpack("<I", struct.pack("<f", v))[0] >> 16 for v in floats]
    data = struct.pack("<%dH" % len(words), *words)
    expected = [struct.unpack("<f", struct.pack("<I", w << 16))[0] for w in words]
    for values in both(data, "BF16"):
        assert_values(values, expected)


# ---- 32/64-bit floats and integers ----


@pytest.mark.parametrize("order", ["little", "big"])
def test_wide_floats(order):
    e = "<" if order == "little" else ">"
    f32 = [0.0, -0.0, 1.5, -3.25, 2.0**-149, 2.0**-126, 3.4028234663852886e38, INF, -INF, NAN]
    f64 = [0.0, -0.0, 1e300, -1e-300, 5e-324, 1.7976931348623157e308, INF, -INF, NAN]
    for values in both(struct.pack(e + "%df" % len(f32), *f32), "F32", order):
        assert_values(values, f32)
    for values in both(struct.pack(e + "%dd" % len(f64), *f64), "F64", order):
        assert_values(values, f64)


INT_CASES = {
    "I8": ("b", [-128, -1, 0, 1, 127]),
    "U8": ("B", [0, 1, 128, 255]),
    "I16": ("h", [-32768, -1, 0, 256, 32767]),
    "U16": ("H", [0, 1, 256, 65535]),
    "I32": ("i", [-(2**31), -1, 0, 65536, 2**31 - 1]),
    "U32": ("I", [0, 1, 2**31, 2**32 - 1]),
    "I64": ("q", [-(2**63), -1, 0, 2**40 + 3, 2**63 - 1]),
    "U64": ("Q", [0, 1, 2**63, 2**64 - 1]),
}


@pytest.mark.parametrize("order", ["little", "big"])
@pytest.mark.parametrize("dtype", sorted(INT_CASES))
def test_integers(dtype, order):
    code, ints = INT_CASES[dtype]
    data = struct.pack(("<" if order == "little" else ">") + code * len(ints), *ints)
    got = decode.decode_stdlib(data, dtype, order)
    assert list(got) == ints  # exact, as Python ints
    if HAS_NUMPY:
        assert decode.decode_numpy(data, dtype, order).tolist() == ints


def test_bool_any_nonzero_byte_is_true():
    data = bytes([0, 1, 2, 255, 0])
    for values in both(data, "BOOL"):
        assert values == [0.0, 1.0, 1.0, 1.0, 0.0]


# ---- GGUF blocks (bonus) ----


def test_q8_0_blocks():
    scales = [0.5, -2.0]
    qs = [list(range(-16, 16)), [127, -128] + [0] * 30]
    data = b"".join(struct.pack("<e", d) + struct.pack("<32b", *q) for d, q in zip(scales, qs))
    expected = [d * q for d, block in zip(scales, qs) for q in block]
    for values in both(data, "Q8_0"):
        assert_values(values, expected)


def test_q4_0_blocks():
    d = 0.25
    nibbles_lo = list(range(16))
    nibbles_hi = list(range(15, -1, -1))
    data = struct.pack("<e", d) + bytes(lo | (hi << 4) for lo, hi in zip(nibbles_lo, nibbles_hi))
    # ggml: y[j] = (lo_j - 8) * d, y[j + 16] = (hi_j - 8) * d
    expected = [(q - 8) * d for q in nibbles_lo] + [(q - 8) * d for q in nibbles_hi]
    for values in both(data, "Q4_0"):
        assert_values(values, expected)
    big = struct.pack(">e", d) + data[2:]
    for values in both(big, "Q4_0", "big"):
        assert_values(values, expected)


# ---- engines agree on every bit pattern ----


@needs_numpy
@pytest.mark.parametrize("order", ["little", "big"])
@pytest.mark.parametrize(
    "dtype",
    [
        *("F16", "BF16", "I16", "U16"),
        *("F8_E4M3", "F8_E5M2", "F8_E4M3FNUZ", "F8_E5M2FNUZ", "F8_E8M0", "I8", "U8", "BOOL"),
    ],
)
def test_engines_identical_on_every_pattern(dtype, order):
    size = decode.ITEMSIZE[dtype]
    data = b"".join(code.to_bytes(size, order) for code in range(1 << (8 * size)))
    a = decode.to_list(decode.decode_stdlib(data, dtype, order))
    b = decode.to_list(decode.decode_numpy(data, dtype, order))
    assert len(a) == len(b) == 1 << (8 * size)
    assert all(same(x, y) for x, y in zip(a, b))


@needs_numpy
@pytest.mark.parametrize("order", ["little", "big"])
@pytest.mark.parametrize("dtype", ["F32", "F64", "I32", "U32", "I64", "U64", "Q8_0", "Q4_0"])
def test_engines_identical_on_random_bytes(dtype, order):
    elems, size = decode.unit(dtype) or (1, 1)
    rng = random.Random(dtype)
    data = bytes(rng.randrange(256) for _ in range(size * 97))
    if dtype in ("Q8_0", "Q4_0"):  # keep the f16 scales finite
        blocks = [bytearray(data[i : i + size]) for i in range(0, len(data), size)]
        for b in blocks:
            b[0:2] = struct.pack("<e" if order == "little" else ">e", rng.uniform(-4, 4))
        data = b"".join(bytes(b) for b in blocks)
    a = decode.decode_stdlib(data, dtype, order)
    b = decode.decode_numpy(data, dtype, order)
    assert len(a) == len(b) == 97 * elems
    if dtype in decode.INTS:
        assert list(a) == b.tolist()
    else:
        assert all(same(x, y) for x, y in zip(decode.to_list(a), decode.to_list(b)))


# ---- errors, switches, helpers ----


@pytest.mark.parametrize("dtype", ["C64", "C128", "Q4_K", "IQ2_XS", "F4", "F6_E2M3", "OBJECT"])
def test_unsupported_dtypes_say_so(dtype):
    assert decode.unsupported_reason(dtype) == "statistics are not available for %s" % dtype
    with pytest.raises(ValueError, match="statistics are not available"):
        decode.decode_stdlib(b"\0" * 16, dtype)


def test_supported_dtypes_have_no_reason():
    for dtype in list(decode.ITEMSIZE) + list(decode.BLOCKS):
        assert decode.unsupported_reason(dtype) is None


def test_partial_elements_are_refused():
    with pytest.raises(ValueError, match="whole number"):
        decode.decode_stdlib(b"\0\0\0", "F32")


def test_force_stdlib_switch(monkeypatch):
    monkeypatch.setattr(decode, "FORCE_STDLIB", True)
    assert decode.numpy_module() is None
    assert decode.engine_name() == "stdlib"
    assert decode.engine_name("numpy") == "stdlib"
    with pytest.raises(RuntimeError):
        decode.decode_numpy(b"\0\0\0\0", "F32")
    assert decode.to_list(decode.decode(struct.pack("<f", 1.5), "F32")) == [1.5]


def test_environment_forces_stdlib(monkeypatch):
    monkeypatch.setenv(decode.ENGINE_ENV, "stdlib")
    assert decode.engine_name() == "stdlib"


def test_numpy_import_failure_falls_back(monkeypatch):
    monkeypatch.setitem(sys.modules, "numpy", None)  # makes `import numpy` raise ImportError
    assert decode.numpy_module() is None
    assert decode.engine_name() == "stdlib"


def test_unknown_engine_is_an_error():
    with pytest.raises(ValueError):
        decode.engine_name("torch")


@pytest.mark.parametrize("size", [2, 4, 8, 16])
def test_to_little_endian(size):
    words = [bytes(range(i, i + size)) for i in range(0, 3 * size, size)]
    swapped = decode.to_little_endian(b"".join(words), size)
    assert swapped == b"".join(w[::-1] for w in words)
    assert decode.to_little_endian(b"abc", 1) == b"abc"
