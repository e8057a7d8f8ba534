"""One table of element types for every format.

Canonical names are upper case, in safetensors' spelling where it has one (F32, BF16,
F8_E4M3, I64, BOOL); GGUF quantized types keep ggml's names (Q4_K). Sizes are in bits, so
sub-byte and block-quantized types fit the same table.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional


@dataclass(frozen=True)
class DType:
    name: str
    bits: int  # per element; for block types, bits of a whole block / block_elems is not integral, see block
    kind: str  # "float" | "int" | "uint" | "bool" | "complex" | "quant" | "other"
    block: int = 1  # elements per block (GGUF quantized types)
    block_bytes: int = 0  # bytes per block (block types only)

    def nbytes(self, numel: int) -> Optional[int]:
        """Bytes of `numel` elements, or None if numel does not fill whole blocks/bytes."""
        if self.block > 1:
            if numel % self.block:
                return None
            return numel // self.block * self.block_bytes
        total_bits = numel * self.bits
        if total_bits % 8:
            return None
        return total_bits // 8


def _d(name: str, bits: int, kind: str) -> DType:
    return DType(name, bits, kind)


DTYPES: Dict[str, DType] = {
    d.name: d
    for d in (
        _d("F64", 64, "float"),
        _d("F32", 32, "float"),
        _d("F16", 16, "float"),
        _d("BF16", 16, "float"),
        _d("F8_E4M3", 8, "float"),
        _d("F8_E5M2", 8, "float"),
        _d("F8_E4M3FNUZ", 8, "float"),
        _d("F8_E5M2FNUZ", 8, "float"),
        _d("F8_E8M0", 8, "float"),
        _d("F6_E2M3", 6, "float"),
        _d("F6_E3M2", 6, "float"),
        _d("F4", 4, "float"),  # safetensors F4 and torch float4_e2m1fn_x2 (two per byte)
        _d("C32", 32, "complex"),
        _d("C64", 64, "complex"),
        _d("C128", 128, "complex"),
        _d("I64", 64, "int"),
        _d("I32", 32, "int"),
        _d("I16", 16, "int"),
        _d("I8", 8, "int"),
        _d("U64", 64, "uint"),
        _d("U32", 32, "uint"),
        _d("U16", 16, "uint"),
        _d("U8", 8, "uint"),
        _d("BOOL", 8, "bool"),
        _d("QINT8", 8, "quant"),
        _d("QUINT8", 8, "quant"),
        _d("QINT32", 32, "quant"),
        _d("QUINT4X2", 8, "quant"),  # one byte per element of the packed storage
        _d("QUINT2X4", 8, "quant"),
        _d("BITS8", 8, "other"),
        _d("BITS16", 16, "other"),
        _d("BITS1X8", 8, "other"),
        _d("BITS2X4", 8, "other"),
        _d("BITS4X2", 8, "other"),
        _d("OBJECT", 64, "other"),  # numpy object arrays (pointers; the data is a pickle)
    )
}


def ggml_type(name: str, block: int, block_bytes: int) -> DType:
    """A GGUF tensor type (ggml names: Q4_K, IQ2_XS, ...); plain types map to the table."""
    plain = {
        "F32": "F32",
        "F16": "F16",
        "BF16": "BF16",
        "F64": "F64",
        "I8": "I8",
        "I16": "I16",
        "I32": "I32",
        "I64": "I64",
    }
    if name in plain:
        return DTYPES[plain[name]]
    return DType(name, 0, "quant", block, block_bytes)


def lookup(name: str) -> Optional[DType]:
    return DTYPES.get(name)


# torch storage class name -> canonical dtype (legacy typed storages).
TORCH_STORAGES: Dict[str, str] = {
    "DoubleStorage": "F64",
    "FloatStorage": "F32",
    "HalfStorage": "F16",
    "LongStorage": "I64",
    "IntStorage": "I32",
    "ShortStorage": "I16",
    "CharStorage": "I8",
    "ByteStorage": "U8",
    "BoolStorage": "BOOL",
    "BFloat16Storage": "BF16",
    "ComplexDoubleStorage": "C128",
    "ComplexFloatStorage": "C64",
    "QInt8Storage": "QINT8",
    "QInt32Storage": "QINT32",
    "QUInt8Storage": "QUINT8",
    "QUInt4x2Storage": "QUINT4X2",
    "QUInt2x4Storage": "QUINT2X4",
}

# torch.<dtype> attribute name -> canonical dtype.
TORCH_DTYPES: Dict[str, str] = {
    "float64": "F64",
    "double": "F64",
    "float32": "F32",
    "float": "F32",
    "float16": "F16",
    "half": "F16",
    "bfloat16": "BF16",
    "float8_e4m3fn": "F8_E4M3",
    "float8_e5m2": "F8_E5M2",
    "float8_e4m3fnuz": "F8_E4M3FNUZ",
    "float8_e5m2fnuz": "F8_E5M2FNUZ",
    "float8_e8m0fnu": "F8_E8M0",
    "float4_e2m1fn_x2": "F4",
    "complex32": "C32",
    "chalf": "C32",
    "complex64": "C64",
    "cfloat": "C64",
    "complex128": "C128",
    "cdouble": "C128",
    "int64": "I64",
    "long": "I64",
    "int32": "I32",
    "int": "I32",
    "int16": "I16",
    "short": "I16",
    "int8": "I8",
    "uint8": "U8",
    "uint16": "U16",
    "uint32": "U32",
    "uint64": "U64",
    "bool": "BOOL",
    "qint8": "QINT8",
    "quint8": "QUINT8",
    "qint32": "QINT32",
    "quint4x2": "QUINT4X2",
    "quint2x4": "QUINT2X4",
    "bits8": "BITS8",
    "bits16": "BITS16",
    "bits1x8": "BITS1X8",
    "bits2x4": "BITS2X4",
    "bits4x2": "BITS4X2",
}
