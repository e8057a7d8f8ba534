"""safetensors: an 8-byte little-endian header length N, N bytes of JSON, then the data.

Only the 8 + N header bytes are read. The header is validated the way the reference
reader does (huggingface/safetensors `read_metadata` and `Metadata::validate`):

- fewer than 8 bytes (HeaderTooSmall), N over 100,000,000 (HeaderTooLarge), 8 + N past the
  end of the file (InvalidHeaderLength), a header that is not UTF-8 or not JSON, duplicate
  keys, NaN/Infinity constants (not JSON), an unknown dtype, a malformed shape or
  `data_offsets`;
- tensors sorted by offset must tile the data buffer from 0 with no hole or overlap
  (InvalidOffset); dtype bits times elements is computed with 64-bit overflow checks
  (ValidationOverflow), must be whole bytes (MisalignedSlice) and equal `end - begin`
  (TensorInvalidInfo); data past the end of the file is an error (a truncated download).

Every one of those raises CheckpointFormatError. Two departures from the reference reader
keep a still-usable file inspectable, each with a warning: trailing bytes after the last
tensor (MetadataIncompleteBuffer there) and `__metadata__` values that are not strings.
"""

from __future__ import annotations

import json
import os
import re
import struct
from typing import Any, Dict, List, Tuple

from .errors import CheckpointFormatError
from .model import Check, Reading, Tensor, gc_paused, no_check

HEADER_LIMIT = 100_000_000
U64_MAX = (1 << 64) - 1
# Metadata is echoed to the client: bound what one file can put there.
METADATA_MAX_KEYS = 1000
METADATA_MAX_CHARS = 65536

# Bits per element (safetensors tensor.rs Dtype::bitsize); the names are canonical already.
BITS: Dict[str, int] = {
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

_TRUNCATED_HINT = "The file is truncated or corrupt; re-save or re-download it."


class _DuplicateKey(Exception):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _pairs(pairs: List[Tuple[str, Any]]) -> Dict[str, Any]:
    d = dict(pairs)
    if len(d) != len(pairs):
        seen = set()
        for key, _ in pairs:
            if key in seen:
                raise _DuplicateKey(key)
            seen.add(key)
    return d


def _constant(name: str) -> Any:
    raise ValueError("%s is not valid JSON" % name)


def format_size(n: int) -> str:
    """1536 -> '1.5 KiB'."""
    if n < 1024:
        return "%d B" % n
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        n_f = n / 1024.0
        if n_f < 1024 or unit == "TiB":
            return "%.1f %s" % (n_f, unit)
        n = int(n_f)
    return "%d B" % n  # not reached


def read(path: str, check: Check = no_check) -> Reading:
    """Read a safetensors file's header; raises CheckpointFormatError when it is malformed."""
    path = os.path.abspath(path)
    name = os.path.basename(path)
    try:
        size = os.path.getsize(path)
        with open(path, "rb") as f:
            prefix = f.read(8)
            if len(prefix) < 8:
                raise CheckpointFormatError(
                    "%s is too small for safetensors: %d bytes, fewer than the 8-byte header "
                    "length (HeaderTooSmall)" % (name, len(prefix)),
                    hint=_TRUNCATED_HINT,
                )
            (n,) = struct.unpack("<Q", prefix)
            if n > HEADER_LIMIT:
                raise CheckpointFormatError(
                    "%s declares a %d-byte safetensors header, over the limit of 100,000,000 "
                    "bytes (HeaderTooLarge)" % (name, n),
                    hint="A header that large is corrupt or built to exhaust memory.",
                )
            if 8 + n > size:
                raise CheckpointFormatError(
                    "%s declares a %d-byte safetensors header but only %d bytes follow the "
                    "length (InvalidHeaderLength)" % (name, n, size - 8),
                    hint=_TRUNCATED_HINT,
                )
            raw = f.read(n)
    except OSError as exc:
        raise CheckpointFormatError("Cannot read %s: %s" % (name, exc)) from None
    if len(raw) != n:
        raise CheckpointFormatError(
            "%s changed while it was read (header cut short)" % name, hint=_TRUNCATED_HINT
        )
    return parse_header(path, raw, size, check)


# A key is a string followed by optional whitespace and a colon; this counts whitespace ones.
_SPACED_KEY = re.compile(rb'"[ \t\n\r]+:')


def _parse_json(text: str, name: str, hook: bool = False) -> Any:
    try:
        if hook:
            return json.loads(text, object_pairs_hook=_pairs, parse_constant=_constant)
        return json.loads(text, parse_constant=_constant)
    except _DuplicateKey as exc:
        raise CheckpointFormatError(
            "The safetensors header of %s has the key %r twice; the format forbids duplicates"
            % (name, exc.key[:200]),
            hint="Different readers would pick different tensors; re-save the file.",
        ) from None
    except (ValueError, RecursionError) as exc:
        raise CheckpointFormatError(
            "The safetensors header of %s is not valid JSON: %s" % (name, str(exc)[:200]),
            hint=_TRUNCATED_HINT,
        ) from None


def _refuse_duplicates(raw: bytes, text: str, name: str, parsed_keys: int) -> None:
    """Raise if a key is repeated anywhere in the header.

    The header was parsed without a hook (a hook costs a Python call per object). Every
    key in the text ends in `"`, optional whitespace and `:`, and nothing else does except
    text inside strings, so when the number of such matches equals the keys that were
    parsed, no key was repeated. Otherwise the header is parsed again with a hook that
    names the duplicate (or finds none: a string merely contained `":`).
    """
    if parsed_keys != raw.count(b'":') + len(_SPACED_KEY.findall(raw)):
        _parse_json(text, name, hook=True)


def _count_keys(value: Any) -> int:
    """Keys of every object in a parsed JSON value (iteratively: headers can nest deep)."""
    count = 0
    stack = [value]
    pop = stack.pop
    push = stack.extend
    while stack:
        v = pop()
        t = type(v)
        if t is dict:
            count += len(v)
            for item in v.values():
                if type(item) in (dict, list):
                    stack.append(item)
        elif t is list:
            push(item for item in v if type(item) in (dict, list))
    return count


def parse_header(path: str, raw: bytes, file_size: int, check: Check = no_check) -> Reading:
    """Validate the JSON header `raw` of the safetensors file `path` and build its Reading."""
    with gc_paused():
        return _parse_header(path, raw, file_size, check)


def _parse_header(path: str, raw: bytes, file_size: int, check: Check) -> Reading:
    name = os.path.basename(path)
    n = len(raw)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CheckpointFormatError(
            "The safetensors header of %s is not valid UTF-8 (byte %d of the file)"
            % (name, 8 + exc.start)
        ) from None
    header = _parse_json(text, name)
    if not isinstance(header, dict):
        raise CheckpointFormatError(
            "The safetensors header of %s is a JSON %s, not an object"
            % (name, type(header).__name__)
        )
    check()
    reading = Reading(path, "safetensors", "")
    reading.add_file(path, file_size, "safetensors")
    keys = len(header)
    meta = header.pop("__metadata__", None)
    if meta is not None:
        keys += _count_keys(meta)

    entries: List[Tuple[int, int, str, str, List[int], int]] = []
    append_entry = entries.append
    bad = _bad_entry
    for tname, info in header.items():
        if type(info) is not dict:
            keys += _count_keys(info)
            continue  # refused below, once duplicates are ruled out
        keys += len(info)
        if len(info) != 3:
            keys += sum(
                _count_keys(v) for k, v in info.items() if k not in ("shape", "data_offsets")
            )
        dtype = info.get("dtype")
        shape = info.get("shape")
        offsets = info.get("data_offsets")
        if type(dtype) is not str:
            raise bad(name, tname, "has no dtype string")
        bits = BITS.get(dtype)
        if bits is None:
            raise bad(name, tname, "has the unknown dtype %r" % dtype[:40])
        if type(shape) is not list:
            raise bad(name, tname, "has a shape that is not a list of non-negative integers")
        numel = 1
        for d in shape:
            if type(d) is not int or d < 0:
                raise bad(name, tname, "has a shape that is not a list of non-negative integers")
            numel *= d
            if numel > U64_MAX:
                raise CheckpointFormatError(
                    "Tensor %r in %s has a shape whose size overflows 64 bits "
                    "(ValidationOverflow)" % (tname[:200], name)
                )
        if type(offsets) is not list or len(offsets) != 2:
            raise bad(name, tname, "has data_offsets that are not two non-negative integers")
        begin, end = offsets
        if (
            type(begin) is not int
            or type(end) is not int
            or not 0 <= begin <= U64_MAX
            or not 0 <= end <= U64_MAX
        ):
            raise bad(name, tname, "has data_offsets that are not two non-negative integers")
        append_entry((begin, end, tname, dtype, shape, numel))
    _refuse_duplicates(raw, text, name, keys)
    if len(entries) != len(header):
        for tname, info in header.items():
            if type(info) is not dict:
                raise bad(name, tname, "is not an object with dtype, shape and data_offsets")
    if meta is not None:
        reading.metadata["safetensors"] = _metadata(meta, reading)

    entries.sort(key=lambda e: (e[0], e[1]))
    check()
    base = 8 + n
    end_of_data = 0
    tensors = reading.tensors
    append = tensors.append
    for i, (begin, end, tname, dtype, shape, numel) in enumerate(entries):
        if i & 4095 == 4095:
            check()
        if begin != end_of_data:
            if begin > end_of_data:
                raise CheckpointFormatError(
                    "Tensor %r in %s starts at byte %d of the data buffer, but the previous "
                    "tensor ends at %d: the buffer has a hole (InvalidOffset)"
                    % (tname[:200], name, begin, end_of_data),
                    hint="safetensors forbids unindexed bytes; the file is corrupt or crafted.",
                )
            raise CheckpointFormatError(
                "Tensor %r in %s starts at byte %d of the data buffer, inside the previous "
                "tensor, which ends at %d: tensors overlap (InvalidOffset)"
                % (tname[:200], name, begin, end_of_data)
            )
        if end < begin:
            raise CheckpointFormatError(
                "Tensor %r in %s ends (byte %d) before it starts (byte %d) (InvalidOffset)"
                % (tname[:200], name, end, begin)
            )
        bits = numel * BITS[dtype]
        if bits > U64_MAX:
            raise CheckpointFormatError(
                "Tensor %r in %s has shape %s: its size in bits overflows 64 bits "
                "(ValidationOverflow)" % (tname[:200], name, shape)
            )
        if bits % 8:
            raise CheckpointFormatError(
                "Tensor %r in %s has %d %s elements, which do not fill whole bytes "
                "(MisalignedSlice)" % (tname[:200], name, numel, dtype)
            )
        nbytes = bits >> 3
        if end - begin != nbytes:
            raise CheckpointFormatError(
                "Tensor %r in %s is %s %s (%d bytes) but its data_offsets span %d bytes "
                "(TensorInvalidInfo)" % (tname[:200], name, dtype, shape, nbytes, end - begin)
            )
        end_of_data = end
        append(Tensor(tname, dtype, shape, nbytes, numel=numel, offset=base + begin))

    if base + end_of_data > file_size:
        raise CheckpointFormatError(
            "%s is truncated: its tensors end at byte %d but the file has %d bytes"
            % (name, base + end_of_data, file_size),
            hint=_TRUNCATED_HINT,
        )
    if base + end_of_data < file_size:
        reading.warn(
            "%d bytes follow the last tensor; the safetensors library refuses files with "
            "trailing bytes (MetadataIncompleteBuffer)" % (file_size - base - end_of_data)
        )
    reading.format_detail = "safetensors, %d tensor%s, header %s" % (
        len(tensors),
        "" if len(tensors) == 1 else "s",
        format_size(n),
    )
    return reading


def _bad_entry(name: str, tname: str, what: str) -> CheckpointFormatError:
    return CheckpointFormatError(
        "Tensor %r in the safetensors header of %s %s" % (tname[:200], name, what)
    )


def _metadata(meta: Any, reading: Reading) -> Dict[str, str]:
    """`__metadata__` as string -> string, bounded; odd values are kept as JSON text."""
    if not isinstance(meta, dict):
        reading.warn(
            "__metadata__ is a JSON %s, not a string-to-string object; the safetensors "
            "library refuses this file" % type(meta).__name__
        )
        meta = {"__metadata__": meta}
    out: Dict[str, str] = {}
    odd = 0
    for key, value in meta.items():
        if len(out) >= METADATA_MAX_KEYS:
            reading.warn(
                "__metadata__ has %d entries; only the first %d are shown"
                % (len(meta), METADATA_MAX_KEYS)
            )
            break
        if not isinstance(value, str):
            odd += 1
            value = json.dumps(value)
        if len(value) > METADATA_MAX_CHARS:
            value = value[:METADATA_MAX_CHARS] + "… (%d characters in all)" % len(value)
        out[key[:METADATA_MAX_CHARS]] = value
    if odd:
        reading.warn(
            "%d __metadata__ value%s not a string (shown as JSON); the safetensors library "
            "refuses such files" % (odd, " is" if odd == 1 else "s are")
        )
    return out
