"""NumPy .npy and .npz: array headers only.

.npy (numpy.lib.format): magic "\\x93NUMPY", major, minor, a header length (u16 in 1.0,
u32 in 2.0 and 3.0), then a Python dict literal with exactly the keys descr, fortran_order
and shape (latin-1 in 1.0/2.0, UTF-8 in 3.0), then the data. Headers over 10,000 bytes are
refused as numpy does; the literal is checked (braces, nesting depth) and then parsed with
`ast.literal_eval`, never `eval`. Arrays whose dtype holds Python objects are followed by a
pickle, which is scanned by the symbolic pickle VM (nothing is executed).

.npz is a zip of <name>.npy members (numpy.savez stores them, savez_compressed deflates
them). Stored members are addressed at their absolute offset in the file; for deflated
members `Tensor.member` names the member and the offset is into its decompressed bytes.
Only the first few KiB of each member are inflated. Zip bombs are refused: members that
overlap one another (the non-recursive bomb), members that declare more bytes than DEFLATE
can produce from their compressed size, members that inflate past their declared size, and
members whose array header declares more data than the member holds.
"""

from __future__ import annotations

import ast
import os
import re
import struct
import sys
from typing import Any, BinaryIO, List, Optional, Tuple

from .dtypes import lookup
from .errors import CheckpointFormatError
from .model import Check, Reading, Tensor, contiguous_strides, no_check
from .zipread import Member, ZipListing, iter_member, read_member

MAGIC = b"\x93NUMPY"
MAX_HEADER = 10_000  # numpy's _MAX_HEADER_SIZE
HEAD_READ = 12 + MAX_HEADER  # prefix + the largest header we accept
MAX_NESTING = 16
PICKLE_LIMIT = 64 << 20  # object arrays: the most pickle bytes scanned
# DEFLATE cannot expand more than 1032:1; anything claiming more is lying (or a bomb).
DEFLATE_MAX_RATIO = 1032
MAX_DIMS = 64  # numpy's NPY_MAXDIMS is 32 (64 since 2.0)

_TYPESTR = re.compile(r"^([<>|=]?)([biufcmMOSUV])(\d*)(\[[A-Za-z0-9]+\])?$")
# One-character type codes (numpy.dtype("f") etc.), as (kind, bytes); "l"/"L" as on LP64.
_CHARCODES = {
    "?": ("b", 1),
    "b": ("i", 1),
    "B": ("u", 1),
    "h": ("i", 2),
    "H": ("u", 2),
    "i": ("i", 4),
    "I": ("u", 4),
    "l": ("i", 8),
    "L": ("u", 8),
    "q": ("i", 8),
    "Q": ("u", 8),
    "e": ("f", 2),
    "f": ("f", 4),
    "d": ("f", 8),
    "g": ("f", 16),
    "F": ("c", 8),
    "D": ("c", 16),
    "G": ("c", 32),
    "O": ("O", 8),
}
_NAMES = {
    "bool": ("b", 1),
    "int8": ("i", 1),
    "int16": ("i", 2),
    "int32": ("i", 4),
    "int64": ("i", 8),
    "uint8": ("u", 1),
    "uint16": ("u", 2),
    "uint32": ("u", 4),
    "uint64": ("u", 8),
    "float16": ("f", 2),
    "float32": ("f", 4),
    "float64": ("f", 8),
    "complex64": ("c", 8),
    "complex128": ("c", 16),
    "object": ("O", 8),
}
_CANONICAL = {
    ("b", 1): "BOOL",
    ("i", 1): "I8",
    ("i", 2): "I16",
    ("i", 4): "I32",
    ("i", 8): "I64",
    ("u", 1): "U8",
    ("u", 2): "U16",
    ("u", 4): "U32",
    ("u", 8): "U64",
    ("f", 2): "F16",
    ("f", 4): "F32",
    ("f", 8): "F64",
    ("c", 8): "C64",
    ("c", 16): "C128",
}
# Kinds outside the shared table keep a descriptive upper-case name (detail has the descr).
_OTHER_KINDS = {
    "S": "BYTES",
    "U": "STR",
    "V": "VOID",
    "M": "DATETIME64",
    "m": "TIMEDELTA64",
    "O": "OBJECT",
}


class _DType:
    """What the inspector needs of a numpy dtype description."""

    __slots__ = ("byte_order", "has_object", "itemsize", "name")

    def __init__(self, name: str, itemsize: int, byte_order: str, has_object: bool) -> None:
        self.name = name
        self.itemsize = itemsize
        self.byte_order = byte_order
        self.has_object = has_object


class _Header:
    __slots__ = ("descr", "dtype", "fortran", "header_bytes", "shape", "version")

    def __init__(
        self,
        version: Tuple[int, int],
        header_bytes: int,
        descr: Any,
        dtype: _DType,
        fortran: bool,
        shape: List[int],
    ) -> None:
        self.version = version
        self.header_bytes = header_bytes  # bytes before the data (prefix + header)
        self.descr = descr
        self.dtype = dtype
        self.fortran = fortran
        self.shape = shape

    @property
    def numel(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n

    def data_bytes(self) -> Optional[int]:
        if self.dtype.has_object:
            return None
        return self.numel * self.dtype.itemsize


def _bad(where: str, text: str, hint: Optional[str] = None) -> CheckpointFormatError:
    return CheckpointFormatError("%s: %s" % (where, text), hint=hint)


# ---- the header ----


def parse_header(head: bytes, where: str) -> _Header:
    """Parse an .npy prefix + header from `head` (the first HEAD_READ bytes or fewer)."""
    if head[:6] != MAGIC:
        raise _bad(where, "not an .npy array (no \\x93NUMPY magic)")
    if len(head) < 10:
        raise _bad(where, "truncated inside the .npy header", "The file is truncated.")
    major, minor = head[6], head[7]
    if (major, minor) not in ((1, 0), (2, 0), (3, 0)):
        raise _bad(where, "unsupported .npy format version %d.%d" % (major, minor))
    if major == 1:
        (hlen,) = struct.unpack_from("<H", head, 8)
        start = 10
    else:
        if len(head) < 12:
            raise _bad(where, "truncated inside the .npy header", "The file is truncated.")
        (hlen,) = struct.unpack_from("<I", head, 8)
        start = 12
    if hlen > MAX_HEADER:
        raise _bad(
            where,
            "the .npy header is %d bytes, over numpy's limit of %d" % (hlen, MAX_HEADER),
            "numpy refuses such headers by default (they are parsed as Python literals).",
        )
    if len(head) < start + hlen:
        raise _bad(where, "truncated inside the .npy header", "The file is truncated.")
    raw = head[start : start + hlen]
    try:
        text = raw.decode("utf-8" if major == 3 else "latin-1")
    except UnicodeDecodeError:
        raise _bad(where, "the version 3.0 .npy header is not valid UTF-8") from None
    d = _literal_dict(text, where)
    if set(d) != {"descr", "fortran_order", "shape"}:
        raise _bad(
            where,
            "the .npy header has the keys %s; it must have exactly descr, fortran_order, shape"
            % ", ".join(sorted(repr(k)[:40] for k in d)[:8]),
        )
    shape = d["shape"]
    if (
        not isinstance(shape, tuple)
        or len(shape) > MAX_DIMS
        or not all(type(x) is int and x >= 0 for x in shape)
    ):
        raise _bad(where, "the .npy shape %r is not a tuple of non-negative integers" % (shape,))
    fortran = d["fortran_order"]
    if not isinstance(fortran, bool):
        raise _bad(where, "fortran_order is %r, not True or False" % (fortran,))
    dtype = _descr(d["descr"], where, 0)
    return _Header((major, minor), start + hlen, d["descr"], dtype, fortran, list(shape))


def _literal_dict(text: str, where: str) -> dict:
    """The header's dict literal, after checking it is one; never `eval`."""
    body = text.strip(" \t\r\n\x00")
    if not body.startswith("{") or not body.endswith("}"):
        raise _bad(where, "the .npy header is not a Python dict literal")
    depth = 0
    quote = ""
    for ch in body:
        if quote:
            if ch == quote:
                quote = ""
        elif ch in "'\"":
            quote = ch
        elif ch in "([{":
            depth += 1
            if depth > MAX_NESTING:
                raise _bad(where, "the .npy header nests more than %d deep" % MAX_NESTING)
        elif ch in ")]}":
            depth -= 1
    try:
        value = ast.literal_eval(body)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError) as exc:
        raise _bad(
            where, "the .npy header is not a valid Python dict literal: %s" % str(exc)[:200]
        ) from None
    if not isinstance(value, dict):
        raise _bad(where, "the .npy header is not a dict")
    return value


def _descr(descr: Any, where: str, depth: int) -> _DType:
    """A numpy dtype description (typestr, field list or (base, shape)) to a _DType."""
    if depth > MAX_NESTING:
        raise _bad(where, "the dtype nests too deep")
    if isinstance(descr, str):
        return _typestr(descr, where)
    if isinstance(descr, tuple) and len(descr) == 2 and isinstance(descr[1], (tuple, int)):
        base = _descr(descr[0], where, depth + 1)
        count = _subshape(descr[1], where)
        return _DType("STRUCT", base.itemsize * count, base.byte_order, base.has_object)
    if isinstance(descr, list):
        size = 0
        has_object = False
        orders = set()
        for field in descr:
            if not isinstance(field, tuple) or len(field) not in (2, 3):
                raise _bad(where, "a structured dtype field is not (name, type[, shape])")
            fname = field[0]
            if isinstance(fname, tuple):  # (title, name)
                if len(fname) != 2 or not all(isinstance(x, str) for x in fname):
                    raise _bad(where, "a structured dtype field has a malformed title")
            elif not isinstance(fname, str):
                raise _bad(where, "a structured dtype field name is not a string")
            sub = _descr(field[1], where, depth + 1)
            count = _subshape(field[2], where) if len(field) == 3 else 1
            size += sub.itemsize * count
            has_object = has_object or sub.has_object
            if sub.itemsize > 1:
                orders.add(sub.byte_order)
        order = "big" if orders == {"big"} else "little"
        return _DType("STRUCT", size, order, has_object)
    raise _bad(where, "the dtype description %r is not understood" % (str(descr)[:80],))


def _subshape(shape: Any, where: str) -> int:
    if type(shape) is int:
        shape = (shape,)
    if not isinstance(shape, tuple) or not all(type(x) is int and x >= 0 for x in shape):
        raise _bad(where, "a dtype sub-array shape is not a tuple of non-negative integers")
    n = 1
    for x in shape:
        n *= x
    return n


def _typestr(descr: str, where: str) -> _DType:
    order_char = ""
    if descr[:1] in "<>|=" and descr:
        order_char, rest = descr[0], descr[1:]
    else:
        rest = descr
    if rest in _NAMES and not order_char:
        kind, size = _NAMES[rest]
    elif rest in _CHARCODES:
        kind, size = _CHARCODES[rest]
    else:
        m = _TYPESTR.match(descr)
        if m is None:
            raise _bad(where, "the dtype %r is not understood" % descr[:80])
        order_char, kind, digits = m.group(1), m.group(2), m.group(3)
        if len(digits) > 12:
            raise _bad(where, "the dtype %r is too large" % descr[:80])
        size = int(digits) if digits else (8 if kind in "OMm" else 0)
        if kind == "U":
            size *= 4  # UCS-4 characters
    if (kind in "mM" and size != 8) or (kind == "f" and size not in (2, 4, 8, 12, 16)):
        raise _bad(where, "the dtype %r is not understood" % descr[:80])
    if kind == "c" and size not in (8, 16, 24, 32):
        raise _bad(where, "the dtype %r is not understood" % descr[:80])
    if order_char == ">":
        byte_order = "big"
    elif order_char == "=":
        byte_order = sys.byteorder
    else:
        byte_order = "little"
    name = _CANONICAL.get((kind, size))
    if name is None:
        if kind in "fc":
            name = ("F%d" if kind == "f" else "C%d") % (size * 8)
        elif kind in _OTHER_KINDS:
            name = _OTHER_KINDS[kind]
        else:
            raise _bad(where, "the dtype %r has an unsupported size" % descr[:80])
    return _DType(name, size, byte_order, kind == "O")


def _json_descr(descr: Any) -> Any:
    """The descr as JSON (tuples become lists); headers are small, so no further bound."""
    if isinstance(descr, (tuple, list)):
        return [_json_descr(x) for x in descr]
    if isinstance(descr, (str, int, bool)) or descr is None:
        return descr
    return repr(descr)


def _tensor(name: str, h: _Header, offset: Optional[int], member: Optional[str] = None) -> Tensor:
    nbytes = h.data_bytes()
    stride = None
    if h.fortran and len(h.shape) > 1:
        stride = contiguous_strides(h.shape[::-1])[::-1]
    detail = None
    if not isinstance(h.descr, str):
        detail = "numpy %s" % str(_json_descr(h.descr))[:200]
    elif lookup(h.dtype.name) is None or h.dtype.name == "OBJECT":
        detail = "numpy %s" % h.descr[:80]
    if h.dtype.has_object:
        detail = (detail or "numpy object array") + "; its elements are a pickle"
    return Tensor(
        name,
        h.dtype.name,
        h.shape,
        nbytes,
        numel=h.numel,
        stride=stride,
        offset=None if h.dtype.has_object else offset,
        member=member,
        byte_order=h.dtype.byte_order,
        detail=detail,
    )


def _scan_pickle(data: bytes, where: str, reading: Reading, check: Check) -> None:
    """Scan an object array's pickle with the symbolic VM (imported late: optional)."""
    try:
        from . import pickle_vm
    except ImportError:
        reading.safety.add_finding(
            "unknown",
            "%s holds a pickle (an object array) that could not be scanned" % where,
        )
        return
    try:
        pickle_vm.interpret(data, where=where, safety=reading.safety, check=check)
    except CheckpointFormatError as exc:
        reading.warn("%s: the object array's pickle is malformed: %s" % (where, exc.message))
        reading.safety.add_finding(
            "unknown", "%s holds a malformed pickle (an object array)" % where
        )


def _pickle_too_big(where: str, n: int, reading: Reading) -> None:
    reading.safety.add_finding(
        "unknown",
        "%s holds a %d-byte pickle (an object array), over the %d MiB scan limit; "
        "it was not scanned" % (where, n, PICKLE_LIMIT >> 20),
    )


def _npy_detail(h: _Header) -> str:
    descr = h.descr if isinstance(h.descr, str) else "structured"
    text = "npy v%d.%d, %s, shape (%s)" % (
        h.version[0],
        h.version[1],
        descr[:40],
        ", ".join(str(d) for d in h.shape) + ("," if len(h.shape) == 1 else ""),
    )
    if h.fortran:
        text += ", Fortran order"
    return text


# ---- .npy ----


def read_npy(path: str, check: Check = no_check) -> Reading:
    """Read an .npy file's header; raises CheckpointFormatError."""
    path = os.path.abspath(path)
    name = os.path.basename(path)
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            head = f.read(HEAD_READ)
            h = parse_header(head, name)
            reading = Reading(path, "npy", _npy_detail(h))
            reading.add_file(path, size, "npy")
            reading.metadata["npy"] = {
                "version": "%d.%d" % h.version,
                "descr": _json_descr(h.descr),
                "fortranOrder": h.fortran,
                "shape": h.shape,
            }
            stem = name[:-4] if name.lower().endswith(".npy") else name
            reading.tensors.append(_tensor(stem or "array", h, h.header_bytes))
            rest = size - h.header_bytes
            nbytes = h.data_bytes()
            if nbytes is None:
                if rest > PICKLE_LIMIT:
                    _pickle_too_big(name, rest, reading)
                else:
                    f.seek(h.header_bytes)
                    _scan_pickle(f.read(rest), name, reading, check)
            elif nbytes > rest:
                raise _bad(
                    name,
                    "truncated: the array needs %d bytes of data but %d follow the header"
                    % (nbytes, max(rest, 0)),
                    "The file is truncated; re-save or re-download it.",
                )
            elif nbytes < rest:
                reading.warn("%d bytes follow the array data" % (rest - nbytes))
    except OSError as exc:
        raise CheckpointFormatError("Cannot read %s: %s" % (name, exc)) from None
    return reading


# ---- .npz ----


def read_npz(path: str, listing: ZipListing, check: Check = no_check) -> Reading:
    """Read the array headers of an .npz whose zip directory is `listing`."""
    path = os.path.abspath(path)
    name = os.path.basename(path)
    members = [m for m in listing.members if not m.name.endswith("/")]
    _check_overlaps(members, name)
    try:
        size = os.path.getsize(path)
        reading = Reading(path, "npz", "")
        reading.add_file(path, size, "npz")
        for finding in listing.findings:
            reading.warn(finding)
        compressed = 0
        with open(path, "rb") as f:
            for i, m in enumerate(members):
                if i & 0xFF == 0:
                    check()
                if m.compressed:
                    compressed += 1
                reading.tensors.append(_npz_member(f, m, name, reading, check))
    except OSError as exc:
        raise CheckpointFormatError("Cannot read %s: %s" % (name, exc)) from None
    n = len(members)
    if not n:
        how = "empty"
    elif compressed == n:
        how = "compressed"
    elif compressed:
        how = "%d compressed" % compressed
    else:
        how = "stored"
    reading.format_detail = "npz, %d array%s (%s)" % (n, "" if n == 1 else "s", how)
    reading.metadata["npz"] = {"arrays": n, "compressed": compressed}
    return reading


def _check_overlaps(members: List[Member], name: str) -> None:
    spans = sorted(
        (m.data_offset, m.data_offset + m.compressed_size, m.name)
        for m in members
        if m.compressed_size
    )
    for (_, end, a), (start, _, b) in zip(spans, spans[1:]):
        if start < end:
            raise CheckpointFormatError(
                "%s: the zip members %r and %r share bytes (a zip bomb reuses data this way)"
                % (name, a[:100], b[:100]),
                hint="Do not extract this file; it is built to exhaust disk or memory.",
            )


def _npz_member(f: BinaryIO, m: Member, name: str, reading: Reading, check: Check) -> Tensor:
    where = "%s/%s" % (name, m.name)
    if m.compressed and m.size > DEFLATE_MAX_RATIO * m.compressed_size + 65536:
        raise CheckpointFormatError(
            "%s: declares %d bytes from %d compressed bytes, more than DEFLATE can produce "
            "(a zip bomb?)" % (where, m.size, m.compressed_size),
            hint="Do not extract this file; it is built to exhaust disk or memory.",
        )
    head = _member_head(f, m)
    h = parse_header(head, where)
    tname = m.name[:-4] if m.name.lower().endswith(".npy") else m.name
    if m.compressed:
        tensor = _tensor(tname, h, h.header_bytes, member=m.name)
    else:
        tensor = _tensor(tname, h, m.data_offset + h.header_bytes)
    rest = m.size - h.header_bytes
    nbytes = h.data_bytes()
    if nbytes is None:
        if rest > PICKLE_LIMIT:
            _pickle_too_big(where, rest, reading)
        else:
            data = read_member(f, m, PICKLE_LIMIT + HEAD_READ)
            _scan_pickle(data[h.header_bytes :], where, reading, check)
    elif nbytes > rest:
        raise CheckpointFormatError(
            "%s: the array needs %d bytes of data but the member holds %d after its header "
            "(truncated, or a size lie)" % (where, nbytes, max(rest, 0)),
            hint="The file is truncated or corrupt; re-save or re-download it.",
        )
    elif nbytes < rest:
        reading.warn("%s: %d bytes follow the array data" % (m.name, rest - nbytes))
    return tensor


def _member_head(f: BinaryIO, m: Member) -> bytes:
    """The first HEAD_READ bytes of a member (or all of it), inflating no more than that."""
    want = min(m.size, HEAD_READ)
    if not m.compressed:
        f.seek(m.data_offset)
        data = f.read(want)
        if len(data) != want:
            raise CheckpointFormatError("Zip member %r is truncated" % m.name)
        return data
    parts: List[bytes] = []
    got = 0
    chunks = iter_member(f, m, m.size, chunk=16384)
    try:
        for chunk in chunks:
            parts.append(chunk)
            got += len(chunk)
            if got >= want:
                break
    finally:
        chunks.close()
    return b"".join(parts)[:want]
