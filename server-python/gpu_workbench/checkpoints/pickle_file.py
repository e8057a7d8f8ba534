"""Bare pickle files (protocols 0-5, possibly several pickles one after another)."""

from __future__ import annotations

import os
from typing import Any, List

from . import pickle_vm, torch_pickle
from .errors import CheckpointFormatError
from .model import Check, Reading, gc_paused
from .torch_legacy import _mapped, read_blob

MAX_PICKLES = 64

# First bytes of a protocol 0/1 pickle (what a pickler writes first).
_PROTO0_STARTS = frozenset(b"(}]).NIJKLFSTUVXGcdlprgqhi")


def _starts_pickle(data: Any, pos: int) -> bool:
    first = data[pos]
    if first == 0x80:
        return pos + 1 < len(data) and data[pos + 1] <= 5
    return first in _PROTO0_STARTS


def read(path: str, check: Check) -> Reading:
    """A Reading of the bare pickle at `path`: structure, tensors if any, and safety."""
    with gc_paused():
        return _read(path, check)


def _read(path: str, check: Check) -> Reading:
    size = os.path.getsize(path)
    if size == 0:
        raise CheckpointFormatError("%s is empty" % os.path.basename(path))
    reading = Reading(path, "pickle", "Python pickle")
    reading.add_file(path, size, "pickle")
    # The file is mapped, not read: large payloads become Blobs, so any size is fine.
    limits = pickle_vm.Limits(max_bytes=max(size, pickle_vm.DEFAULT_LIMITS.max_bytes))
    roots: List[Any] = []
    protocols: List[int] = []
    persistent: List[int] = [0]

    def hook(pid: Any) -> Any:
        persistent[0] += 1
        return pickle_vm.PersistentId(pid)

    with _mapped(path) as data:
        pos = 0
        while pos < size and len(roots) < MAX_PICKLES:
            if roots and not _starts_pickle(data, pos):
                reading.warn("%d bytes after the last pickle are not a pickle" % (size - pos))
                break
            where = "pickle" if not roots else "pickle %d" % (len(roots) + 1)
            try:
                r = pickle_vm.run(
                    data,
                    where=where,
                    safety=reading.safety,
                    check=check,
                    persistent_load=hook,
                    limits=limits,
                    start=pos,
                )
            except pickle_vm.PickleError as exc:
                if not roots and exc.partial is None and not reading.safety.globals:
                    raise CheckpointFormatError(
                        "%s is not a readable pickle: %s" % (os.path.basename(path), exc.message)
                    ) from None
                reading.warn(exc.message + "; showing what was decoded before it")
                roots.append(exc.partial)
                break
            roots.append(r.value)
            protocols.append(r.protocol)
            pos = r.end
        if pos < size and len(roots) >= MAX_PICKLES:
            reading.warn("over %d pickles; the rest were not read" % MAX_PICKLES)
        if len(roots) > 1:
            reading.format_detail = "%d concatenated Python pickles (protocols %s)" % (
                len(roots),
                ", ".join(str(p) for p in protocols) or "?",
            )
            reading.safety.add_finding(
                "unknown",
                "the file holds %d pickles one after another; pickle.load reads only the "
                "first, the others run when a program calls it again" % len(roots),
            )
        elif protocols:
            reading.format_detail = "Python pickle, protocol %d" % protocols[0]
        if persistent[0]:
            reading.warn(
                "the pickle uses %d persistent ids (saved with a custom pickler); "
                "pickle.load alone cannot load it" % persistent[0]
            )

        def blobs(blob: bytes, at: Any) -> Any:
            return read_blob(blob, at, reading, "embedded", check)

        if len(roots) == 1:
            torch_pickle.extract(
                reading, roots[0], pickle_base=0, where="pickle", check=check, blob_reader=blobs
            )
        else:
            for i, root in enumerate(roots):
                torch_pickle.extract(
                    reading,
                    root,
                    pickle_base=0,
                    where="pickle %d" % (i + 1),
                    check=check,
                    blob_reader=blobs,
                    prefix=str(i),
                    top=False,
                )
            x = torch_pickle.Extractor(reading)
            reading.structure = [torch_pickle.Renderer(x).render(r, 3) for r in roots[:16]]
    return reading
