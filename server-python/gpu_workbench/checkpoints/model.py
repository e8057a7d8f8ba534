"""The one model every reader fills: tensors, metadata, structure, safety; and the summary.

A reader returns a `Reading`; `summarize` turns it into the plain-JSON CheckpointSummary
declared in protocol.py (module tree, totals by dtype, parameter count, shared storages).
Results are plain dicts rather than dataclasses so that 100,000 tensors serialize quickly;
a test checks their keys against the protocol dataclasses.
"""

from __future__ import annotations

import gc
import threading
import time
from contextlib import contextmanager
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Tuple

Check = Callable[[], None]  # raises when the request was cancelled


def no_check() -> None:
    """A cancellation check that never fires."""


_gc_lock = threading.Lock()
_gc_pausers = 0
_gc_was_enabled = False


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while building many acyclic objects.

    Reading a 100,000-tensor header and summarizing it allocate millions of objects; the
    collector would rescan the growing heap over and over (about half the time). Nothing
    built here forms cycles. Counted, so overlapping requests on the backend's thread pool
    turn it back on only when the last one ends.
    """
    global _gc_pausers, _gc_was_enabled
    with _gc_lock:
        if _gc_pausers == 0:
            _gc_was_enabled = gc.isenabled()
            gc.disable()
        _gc_pausers += 1
    try:
        yield
    finally:
        with _gc_lock:
            _gc_pausers -= 1
            if _gc_pausers == 0 and _gc_was_enabled:
                gc.enable()


class Tensor:
    """One tensor as found in a file; no element is ever read to build it."""

    __slots__ = (
        "byte_order",
        "detail",
        "dtype",
        "file",
        "member",
        "name",
        "nbytes",
        "numel",
        "offset",
        "role",
        "shape",
        "storage",
        "storage_bytes",
        "storage_offset",
        "stride",
    )

    def __init__(
        self,
        name: str,
        dtype: str,
        shape: List[int],
        nbytes: Optional[int],
        *,
        numel: Optional[int] = None,
        storage: Optional[str] = None,
        storage_offset: int = 0,
        storage_bytes: Optional[int] = None,
        stride: Optional[List[int]] = None,
        offset: Optional[int] = None,
        file: Optional[str] = None,
        member: Optional[str] = None,
        byte_order: str = "little",
        role: str = "weight",
        detail: Optional[str] = None,
    ) -> None:
        self.name = name
        self.dtype = dtype
        self.shape = list(shape)
        self.numel = numel if numel is not None else product(self.shape)
        self.nbytes = nbytes
        self.storage = storage  # storage key: tensors with the same (file, storage) share bytes
        self.storage_offset = storage_offset  # elements
        self.storage_bytes = storage_bytes  # size of the whole storage, for de-duplication
        self.stride = None if stride is None or is_contiguous(self.shape, stride) else list(stride)
        self.offset = offset  # absolute byte offset of element 0 in `file` (or in `member`)
        self.file = file
        self.member = member
        self.byte_order = byte_order
        self.role = role
        self.detail = detail

    def to_json(self) -> Dict[str, Any]:
        return {
            "name": self.name,
            "dtype": self.dtype,
            "shape": self.shape,
            "numel": self.numel,
            "nbytes": self.nbytes,
            "storage": self.storage,
            "storageOffset": self.storage_offset,
            "stride": self.stride,
            "offset": self.offset,
            "file": self.file,
            "member": self.member,
            "byteOrder": self.byte_order,
            "role": self.role,
            "detail": self.detail,
        }

    def __repr__(self) -> str:
        return "Tensor(%r, %s, %r)" % (self.name, self.dtype, self.shape)


class GlobalRef:
    """A global (module, name) a pickle would import, classified against the allowlist."""

    __slots__ = ("classification", "count", "module", "name", "reason", "where")

    def __init__(
        self, module: str, name: str, classification: str, reason: str, where: str
    ) -> None:
        self.module = module
        self.name = name
        self.classification = classification  # "allowed" | "unknown" | "unsafe"
        self.reason = reason
        self.where = where
        self.count = 0

    def to_json(self) -> Dict[str, Any]:
        return {
            "module": self.module,
            "name": self.name,
            "classification": self.classification,
            "count": self.count,
            "where": self.where,
            "reason": self.reason,
        }


_RANK = {"safe": 0, "allowed": 0, "unknown": 1, "unsafe": 2}


class Safety:
    """What loading the file with torch.load / pickle.load would execute."""

    def __init__(self) -> None:
        self._globals: Dict[Tuple[str, str, str], GlobalRef] = {}
        self.findings: List[Tuple[str, str]] = []  # (severity "safe"|"unknown"|"unsafe", text)
        self.pickles = 0  # pickle streams scanned

    def add_global(self, ref: GlobalRef) -> GlobalRef:
        key = (ref.where, ref.module, ref.name)
        existing = self._globals.get(key)
        if existing is None:
            self._globals[key] = existing = ref
        existing.count += 1
        return existing

    def add_finding(self, severity: str, text: str) -> None:
        if (severity, text) not in self.findings:
            self.findings.append((severity, text))

    def merge(self, other: "Safety") -> None:
        for ref in other.globals:
            mine = self._globals.get((ref.where, ref.module, ref.name))
            if mine is None:
                self._globals[(ref.where, ref.module, ref.name)] = ref
            else:
                mine.count += ref.count
        for severity, text in other.findings:
            self.add_finding(severity, text)
        self.pickles += other.pickles

    @property
    def globals(self) -> List[GlobalRef]:
        return sorted(
            self._globals.values(),
            key=lambda g: (-_RANK[g.classification], g.where, g.module, g.name),
        )

    @property
    def verdict(self) -> str:
        rank = 0
        for ref in self._globals.values():
            rank = max(rank, _RANK[ref.classification])
        for severity, _ in self.findings:
            rank = max(rank, _RANK[severity])
        return ("safe", "unknown", "unsafe")[rank]

    def summary(self) -> str:
        verdict = self.verdict
        if verdict == "safe":
            if self.pickles == 0:
                return "Safe: this format holds data only; opening it cannot run code."
            return (
                "Safe: every global in the pickle is on torch's weights-only allowlist, "
                "so torch.load(weights_only=True) runs no other code."
            )
        names = ["%s.%s" % (g.module, g.name) for g in self.globals if g.classification == verdict]
        shown = ", ".join(names[:3]) + (" and %d more" % (len(names) - 3) if len(names) > 3 else "")
        if verdict == "unsafe":
            if names:
                return "Unsafe: loading this file with torch.load or pickle would call %s." % shown
            return "Unsafe: %s" % next(t for s, t in self.findings if s == "unsafe")
        if names:
            return (
                "Unknown code: torch.load would import %s, which the weights-only loader refuses; "
                "load it only if you trust its source." % shown
            )
        return "Unknown: %s" % next(t for s, t in self.findings if s == "unknown")

    def to_json(self) -> Dict[str, Any]:
        return {
            "verdict": self.verdict,
            "summary": self.summary(),
            "globals": [g.to_json() for g in self.globals],
            "findings": [text for _, text in self.findings],
        }


class Reading:
    """What a reader found in a file (or a folder of shards)."""

    def __init__(self, path: str, fmt: str, format_detail: str) -> None:
        self.path = path
        self.format = fmt
        self.format_detail = format_detail
        self.files: List[Dict[str, Any]] = []  # {"path", "size", "format"}
        self.tensors: List[Tensor] = []
        self.metadata: Dict[str, Any] = {}
        self.structure: Any = None
        self.warnings: List[str] = []
        self.safety = Safety()
        self.epoch: Optional[int] = None
        self.global_step: Optional[int] = None

    def add_file(self, path: str, size: int, fmt: str) -> None:
        self.files.append({"path": path, "size": size, "format": fmt})

    def warn(self, text: str) -> None:
        if text not in self.warnings:
            self.warnings.append(text)


def product(values: Iterable[int]) -> int:
    n = 1
    for v in values:
        n *= v
    return n


def contiguous_strides(shape: List[int]) -> List[int]:
    strides = [0] * len(shape)
    step = 1
    for i in range(len(shape) - 1, -1, -1):
        strides[i] = step
        step *= max(shape[i], 1)
    return strides


def is_contiguous(shape: List[int], stride: List[int]) -> bool:
    if len(shape) != len(stride):
        return False
    expected = 1
    for size, st in zip(reversed(shape), reversed(stride)):
        if size != 1 and st != expected:
            return False
        expected *= size
    return True


# ---- summary ----


def summarize(reading: Reading, max_tensors: Optional[int], started: float) -> Dict[str, Any]:
    """The CheckpointSummary for a reading (see protocol.py)."""
    tensors = reading.tensors
    parameter_count = 0
    tensor_bytes = 0
    dtypes: Dict[str, List[int]] = {}
    storages: Dict[Tuple[Optional[str], str], List[Tensor]] = {}
    storage_bytes = 0
    seen_views = set()
    for t in tensors:
        nbytes = t.nbytes or 0
        tensor_bytes += nbytes
        params = 0
        if t.role == "weight":
            params = t.numel
            if t.storage is not None:
                # Tied weights (one view of one storage under two names) count once, as
                # sum(p.numel() for p in model.parameters()) does.
                view = (t.file, t.storage, t.storage_offset, tuple(t.shape), tuple(t.stride or ()))
                if view in seen_views:
                    params = 0
                seen_views.add(view)
        parameter_count += params
        entry = dtypes.setdefault(t.dtype, [0, 0, 0])
        entry[0] += 1
        entry[1] += params
        entry[2] += nbytes
        if t.storage is None:
            storage_bytes += nbytes
        else:
            group = storages.setdefault((t.file, t.storage), [])
            if not group:
                storage_bytes += t.storage_bytes if t.storage_bytes is not None else nbytes
            group.append(t)
    shared = [
        {
            "storage": key[1],
            "tensors": [t.name for t in group],
            "bytes": max(
                (t.storage_bytes if t.storage_bytes is not None else (t.nbytes or 0)) for t in group
            ),
        }
        for key, group in storages.items()
        if len(group) > 1
    ]
    shared.sort(key=lambda s: -s["bytes"])
    listed = tensors if max_tensors is None else tensors[: max(0, max_tensors)]
    return {
        "path": reading.path,
        "format": reading.format,
        "formatDetail": reading.format_detail,
        "fileSize": sum(f["size"] for f in reading.files),
        "files": reading.files,
        "tensorCount": len(tensors),
        "tensorsListed": len(listed),
        "tensors": [t.to_json() for t in listed],
        "parameterCount": parameter_count,
        "tensorBytes": tensor_bytes,
        "storageBytes": storage_bytes,
        "dtypes": [
            {"dtype": name, "tensors": v[0], "parameters": v[1], "bytes": v[2]}
            for name, v in sorted(dtypes.items(), key=lambda kv: (-kv[1][2], kv[0]))
        ],
        "modules": module_tree(tensors),
        "sharedStorages": shared,
        "epoch": reading.epoch,
        "globalStep": reading.global_step,
        "metadata": reading.metadata,
        "structure": reading.structure,
        "warnings": reading.warnings,
        "safety": reading.safety.to_json(),
        "elapsedMs": round((time.perf_counter() - started) * 1000.0, 3),
    }


def module_tree(tensors: List[Tensor]) -> Dict[str, Any]:
    """Modules from dotted tensor names; each node sums the tensors below it.

    A tensor "a.b.weight" belongs to modules "", "a" and "a.b". Children are sorted by
    bytes, largest first. Totals are gathered per direct parent first, then pushed up once
    per module, so the cost is one pass over the tensors plus one over the modules.
    """
    direct: Dict[str, List[int]] = {}
    for t in tensors:
        name = t.name
        cut = name.rfind(".")
        parent = name[:cut] if cut > 0 else ""
        entry = direct.get(parent)
        if entry is None:
            entry = direct[parent] = [0, 0, 0]
        entry[0] += 1
        entry[1] += t.numel if t.role == "weight" else 0
        entry[2] += t.nbytes or 0
    totals: Dict[str, List[int]] = {}
    for parent, (count, params, nbytes) in direct.items():
        path = parent
        while True:
            entry = totals.get(path)
            if entry is None:
                entry = totals[path] = [0, 0, 0]
            entry[0] += count
            entry[1] += params
            entry[2] += nbytes
            if not path:
                break
            cut = path.rfind(".")
            path = path[:cut] if cut > 0 else ""
    nodes: Dict[str, Dict[str, Any]] = {}
    for path, (count, params, nbytes) in totals.items():
        cut = path.rfind(".")
        nodes[path] = {
            "name": path[cut + 1 :],
            "path": path,
            "tensors": count,
            "parameters": params,
            "bytes": nbytes,
            "children": [],
        }
    for path, node in nodes.items():
        if path:
            cut = path.rfind(".")
            nodes[path[:cut] if cut > 0 else ""]["children"].append(node)
    root = nodes.get("") or _node("", "")
    _sort(root)
    return root


def _node(name: str, path: str) -> Dict[str, Any]:
    return {"name": name, "path": path, "tensors": 0, "parameters": 0, "bytes": 0, "children": []}


def _sort(root: Dict[str, Any]) -> None:
    stack = [root]
    while stack:
        node = stack.pop()
        children = node["children"]
        if len(children) > 1:
            children.sort(key=_child_key)
        stack.extend(children)


def _child_key(c: Dict[str, Any]) -> Tuple[int, str]:
    return (-c["bytes"], c["name"])
