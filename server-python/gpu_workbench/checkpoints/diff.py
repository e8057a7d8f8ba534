"""Compare two checkpoints tensor by tensor, across formats (CheckpointDiffResult).

Tensors are keyed by name. When the two sides name the same tensors with different
leading prefixes ("state_dict.", "model.", "module.", ...), the pairing that matches the
most names is used and the summary says which prefix was stripped from which side.

Per name: only in B -> "added"; only in A -> "removed"; different shapes -> "reshaped";
same shape, different dtypes -> "retyped"; otherwise the values are compared by hashing
(blake2b) each tensor's bytes in logical element order, byte order normalized to little
endian, so a strided view in a .pt compares equal to its contiguous .safetensors export
-> "changed" / "unchanged". Values that cannot be compared (compare_values false, data
inside a pickle, unreadable bytes, sub-byte or block types that are strided or big-endian)
give "unknown". Bitwise hashing means -0.0 vs 0.0 or different NaN payloads count as
changed.

Metadata: both sides' `metadata` (under "metadata.") plus "format", "epoch" and
"globalStep" are flattened to dotted keys and every key whose values differ is listed.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

from . import decode
from .dtypes import lookup
from .model import Check, Reading, Tensor, no_check
from .stats import (
    CHUNK_BYTES,
    BoxPlan,
    Layout,
    Sources,
    TensorDataError,
    layout_of,
    read_box,
)

Report = Callable[[float, Optional[str]], None]

# Sort order of the tensor list: changes first.
CHANGE_ORDER = ("changed", "reshaped", "retyped", "added", "removed", "unknown", "unchanged")
_RANK = {c: i for i, c in enumerate(CHANGE_ORDER)}
# Prefixes worth trying even when they cover less than half of the names.
KNOWN_PREFIXES = ("state_dict.", "model.", "module.", "_orig_mod.", "model.model.", "net.")


def _noop_report(fraction: float, message: Optional[str] = None) -> None:
    pass


# ---------------------------------------------------------------------------------------
# Hashing values


def _hash_layout(t: Tensor) -> Tuple[Layout, int]:
    """(layout in whole bytes, byte-swap word size or 0 when it cannot be normalized)."""
    if t.offset is None:
        raise TensorDataError("values are stored inside the pickle and are not read")
    dt = lookup(t.dtype)
    if dt is not None and dt.block == 1 and dt.bits % 8 == 0 and dt.bits > 0:
        itemsize = dt.bits // 8
        swap = itemsize // 2 if dt.kind == "complex" else itemsize
        return layout_of(t, reorder=False, itemsize=itemsize), swap
    # Sub-byte and block types: only as one contiguous little-endian run of bytes.
    if t.stride is not None or t.nbytes is None:
        raise TensorDataError("strided %s views cannot be compared" % t.dtype)
    return Layout([t.nbytes], [1], 1, t.offset), 0 if t.byte_order == "little" else -1


def tensor_digest(sources: Sources, t: Tensor, np: Any = None, check: Check = no_check) -> str:
    """blake2b of the tensor's bytes in logical order, little-endian; TensorDataError if not
    readable."""
    lay, swap = _hash_layout(t)
    if swap < 0:
        raise TensorDataError("big-endian %s data cannot be normalized" % t.dtype)
    h = hashlib.blake2b(digest_size=20)
    if lay.numel == 0:
        return h.hexdigest()
    src = sources.get(t)
    plan = BoxPlan(lay, max(1, CHUNK_BYTES // lay.itemsize))
    big = t.byte_order != "little" and swap > 1
    for i in range(plan.count):
        check()
        pos, shape, strides, _ = plan.box(i)
        data = read_box(src, pos, shape, strides, lay.itemsize, np)
        if big:
            data = decode.to_little_endian(data, swap)
        h.update(data)
    return h.hexdigest()


@functools.lru_cache(maxsize=256)
def _realpath(path: str) -> str:
    return os.path.realpath(path)


def _place(sources: Sources, t: Tensor) -> Tuple[Any, ...]:
    """Where a tensor's values are, exactly: equal places hold equal values."""
    return (
        _realpath(sources.path_of(t)),
        t.member,
        t.offset,
        t.dtype,
        tuple(t.shape),
        None if t.stride is None else tuple(t.stride),
        t.byte_order,
    )


# ---------------------------------------------------------------------------------------
# Matching names


def _prefixes(names: List[str]) -> List[str]:
    """Dotted prefixes (1 or 2 components) shared by at least half of `names`, plus the
    known ones present at all."""
    counts: Dict[str, int] = {}
    for name in names:
        parts = name.split(".")
        for k in (1, 2):
            if len(parts) > k:
                p = ".".join(parts[:k]) + "."
                counts[p] = counts.get(p, 0) + 1
    found = [p for p, c in counts.items() if c * 2 >= len(names)]
    found += [p for p in KNOWN_PREFIXES if p in counts and p not in found]
    return found


def _strip(names: List[str], prefix: str) -> Optional[Dict[str, str]]:
    """key -> original name with `prefix` removed where present; None if two collide."""
    out: Dict[str, str] = {}
    for name in names:
        key = name[len(prefix) :] if prefix and name.startswith(prefix) else name
        if key in out:
            return None
        out[key] = name
    return out


def match_names(
    names_a: List[str], names_b: List[str]
) -> Tuple[Dict[str, str], Dict[str, str], Optional[str]]:
    """(key -> name in A, key -> name in B, note) for the pairing matching the most names."""
    plain_a = {n: n for n in names_a}
    plain_b = {n: n for n in names_b}
    best = (len(plain_a.keys() & plain_b.keys()), 0, "", "")
    best_maps = (plain_a, plain_b)
    if best[0] == min(len(plain_a), len(plain_b)):
        return plain_a, plain_b, None
    maps_a: Dict[str, Optional[Dict[str, str]]] = {"": plain_a}
    maps_b: Dict[str, Optional[Dict[str, str]]] = {"": plain_b}
    for p in _prefixes(names_a):
        maps_a[p] = _strip(names_a, p)
    for p in _prefixes(names_b):
        maps_b[p] = _strip(names_b, p)
    for pa, ma in maps_a.items():
        for pb, mb in maps_b.items():
            if ma is None or mb is None or (pa == pb):
                continue
            score = (len(ma.keys() & mb.keys()), -(bool(pa) + bool(pb)), pa, pb)
            if score[:2] > best[:2]:
                best, best_maps = score, (ma, mb)
    _, _, pa, pb = best
    if not pa and not pb:
        return plain_a, plain_b, None
    sides = []
    if pa:
        sides.append("%r from A" % pa)
    if pb:
        sides.append("%r from B" % pb)
    return best_maps[0], best_maps[1], "names matched after stripping " + " and ".join(sides)


# ---------------------------------------------------------------------------------------
# Metadata


def _flatten(value: Any, prefix: str, out: Dict[str, Any]) -> None:
    if isinstance(value, dict) and value:
        for k, v in value.items():
            _flatten(v, "%s.%s" % (prefix, k) if prefix else str(k), out)
    else:
        out[prefix] = value


def flat_metadata(reading: Reading) -> Dict[str, Any]:
    out: Dict[str, Any] = {
        "format": reading.format,
        "epoch": reading.epoch,
        "globalStep": reading.global_step,
    }
    _flatten(reading.metadata or {}, "metadata", out)
    return out


def _same(a: Any, b: Any) -> bool:
    try:
        return json.dumps(a, sort_keys=True, default=str) == json.dumps(
            b, sort_keys=True, default=str
        )
    except (TypeError, ValueError):
        return a == b


def metadata_changes(a: Reading, b: Reading) -> List[Dict[str, Any]]:
    fa, fb = flat_metadata(a), flat_metadata(b)
    keys = sorted(set(fa) | set(fb))
    return [
        {"key": k, "a": fa.get(k), "b": fb.get(k)} for k in keys if not _same(fa.get(k), fb.get(k))
    ]


# ---------------------------------------------------------------------------------------
# compare


def _file_json(reading: Reading) -> Dict[str, Any]:
    size = sum(f.get("size", 0) for f in reading.files)
    if not reading.files:
        try:
            size = os.path.getsize(reading.path) if os.path.isfile(reading.path) else 0
        except OSError:
            size = 0
    return {"path": reading.path, "size": size, "format": reading.format}


def summary_sentence(counts: Dict[str, int], compare_values: bool, note: Optional[str]) -> str:
    order = ("changed", "added", "removed", "reshaped", "retyped", "unchanged", "unknown")
    parts = ["%d %s" % (counts[k], k) for k in order if counts[k]]
    if not parts:
        return "Neither checkpoint has tensors."
    if not any(counts[k] for k in order if k not in ("unchanged", "unknown")):
        text = "No differences: " + ", ".join(parts)
    else:
        text = ", ".join(parts)
    text += " (values compared by hash)" if compare_values else " (values not compared)"
    if note:
        text += "; " + note
    return text + "."


def compare(
    a: str,
    b: str,
    *,
    compare_values: bool = True,
    check: Check = no_check,
    report: Report = _noop_report,
    engine: Optional[str] = None,
    readings: Optional[Tuple[Reading, Reading]] = None,
) -> Dict[str, Any]:
    """CheckpointDiffResult of `a` against `b` (see the module docstring).

    `readings` skips reading the checkpoints' structure (tests with hand-built tensors).
    """
    started = time.perf_counter()
    if readings is None:
        from .readers import read_cached

        report(0.0, os.path.basename(a))
        ra = read_cached(a, check)
        report(0.0, os.path.basename(b))
        rb = read_cached(b, check)
    else:
        ra, rb = readings
    np = decode.numpy_module() if decode.engine_name(engine) == "numpy" else None

    first_a: Dict[str, Tensor] = {}
    for t in ra.tensors:
        first_a.setdefault(t.name, t)
    first_b: Dict[str, Tensor] = {}
    for t in rb.tensors:
        first_b.setdefault(t.name, t)
    keys_a, keys_b, note = match_names(list(first_a), list(first_b))

    pairs: List[Tuple[str, Optional[Tensor], Optional[Tensor]]] = []
    for key in sorted(set(keys_a) | set(keys_b)):
        ta = first_a[keys_a[key]] if key in keys_a else None
        tb = first_b[keys_b[key]] if key in keys_b else None
        pairs.append((key, ta, tb))

    to_hash = [
        (ta, tb)
        for _, ta, tb in pairs
        if compare_values
        and ta is not None
        and tb is not None
        and ta.shape == tb.shape
        and ta.dtype == tb.dtype
    ]
    total_bytes = sum((ta.nbytes or 0) + (tb.nbytes or 0) for ta, tb in to_hash) or 1
    done_bytes = 0

    entries: List[Dict[str, Any]] = []
    counts = {c: 0 for c in CHANGE_ORDER}
    with Sources(ra) as sa, Sources(rb) as sb:
        cache_a: Dict[Tuple[Any, ...], Optional[str]] = {}
        cache_b: Dict[Tuple[Any, ...], Optional[str]] = {}

        def digest(sources: Sources, cache: Dict[Tuple[Any, ...], Optional[str]], t: Tensor):
            place = _place(sources, t)
            if place not in cache:
                try:
                    cache[place] = tensor_digest(sources, t, np, check)
                except TensorDataError:
                    cache[place] = None
            return cache[place]

        for key, ta, tb in pairs:
            check()
            if ta is None:
                change = "added"
            elif tb is None:
                change = "removed"
            elif ta.shape != tb.shape:
                change = "reshaped"
            elif ta.dtype != tb.dtype:
                change = "retyped"
            elif not compare_values:
                change = "unknown"
            else:
                report(done_bytes / total_bytes, key)
                if _place(sa, ta) == _place(sb, tb) and ta.offset is not None:
                    change = "unchanged"  # the very same bytes (a file against itself)
                else:
                    da = digest(sa, cache_a, ta)
                    db = digest(sb, cache_b, tb) if da is not None else None
                    if da is None or db is None:
                        change = "unknown"
                    else:
                        change = "unchanged" if da == db else "changed"
                done_bytes += (ta.nbytes or 0) + (tb.nbytes or 0)
            counts[change] += 1
            entries.append(
                {
                    "name": key,
                    "change": change,
                    "a": None if ta is None else ta.to_json(),
                    "b": None if tb is None else tb.to_json(),
                }
            )
    entries.sort(key=lambda e: (_RANK[e["change"]], e["name"]))
    report(1.0, None)
    return {
        "a": _file_json(ra),
        "b": _file_json(rb),
        "tensors": entries,
        "metadata": metadata_changes(ra, rb),
        "counts": counts,
        "summary": summary_sentence(counts, compare_values, note),
        "elapsedMs": round((time.perf_counter() - started) * 1000.0, 3),
    }
