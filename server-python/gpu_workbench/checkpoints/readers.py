"""Dispatch a path to its reader by content, and the public entry points built on them."""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections import OrderedDict
from typing import Any, Dict, List, Optional

from ..errors import RequestCancelled
from .detect import sniff
from .errors import CheckpointFormatError
from .model import Check, Reading, gc_paused, no_check, summarize
from .zipread import list_members

log = logging.getLogger(__name__)

# Files the folder scan skips without opening (they cannot be checkpoints we read).
_SKIP_SUFFIXES = (".py", ".md", ".txt", ".yaml", ".yml", ".log", ".csv", ".png", ".jpg", ".ipynb")


def read(path: str, check: Check = no_check) -> Reading:
    """Read any supported checkpoint at `path` (file, *.index.json or folder)."""
    path = os.path.abspath(path)
    if not os.path.exists(path):
        raise CheckpointFormatError("No such file or folder: %s" % path)
    kind = sniff(path)
    if kind == "folder":
        from . import hf

        return hf.read_folder(path, check)
    if kind == "json":
        from . import hf

        return hf.read_index(path, check)
    if kind == "safetensors":
        from . import safetensors

        return safetensors.read(path, check)
    if kind == "gguf":
        from . import gguf

        return gguf.read(path, check)
    if kind == "npy":
        from . import numpy_fmt

        return numpy_fmt.read_npy(path, check)
    if kind == "pytorch-legacy":
        from . import torch_legacy

        return torch_legacy.read(path, check)
    if kind == "pytorch-tar":
        from . import torch_legacy

        return torch_legacy.read_tar(path, check)
    if kind == "pickle":
        from . import pickle_file

        return pickle_file.read(path, check)
    if kind == "zip":
        return _read_zip(path, check)
    raise CheckpointFormatError(
        "Not a checkpoint format GPU Workbench reads: %s" % os.path.basename(path),
        hint="Supported: safetensors, PyTorch (.pt/.pth/.bin/.ckpt, zip and legacy), TorchScript, "
        "pickle, .npy/.npz, GGUF, Hugging Face *.index.json and model folders.",
    )


_CACHE_SIZE = 8
_cache: "OrderedDict[tuple, Reading]" = OrderedDict()
_cache_lock = threading.Lock()


def _stamp(path: str) -> tuple:
    st = os.stat(path)
    return (path, st.st_size, st.st_mtime_ns, st.st_ino)


def read_cached(path: str, check: Check = no_check) -> Reading:
    """`read`, remembering the last few readings until the file changes (stats, diff, editor)."""
    path = os.path.abspath(path)
    try:
        key = _stamp(path)
    except OSError:
        return read(path, check)
    if os.path.isdir(path):
        return read(path, check)  # a folder's shards can change without its own stamp changing
    with _cache_lock:
        hit = _cache.get(key)
        if hit is not None:
            _cache.move_to_end(key)
            return hit
    reading = read(path, check)
    with _cache_lock:
        _cache[key] = reading
        while len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)
    return reading


def _read_zip(path: str, check: Check) -> Reading:
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        listing = list_members(f, size)
    names = [m.name for m in listing.members]
    if any(
        n.endswith(("/data.pkl", "constants.pkl", "/model.json")) or n in ("data.pkl", "model.json")
        for n in names
    ):
        from . import torch_zip

        return torch_zip.read(path, listing, check)
    if names and all(n.endswith(".npy") or n.endswith("/") for n in names):
        from . import numpy_fmt

        return numpy_fmt.read_npz(path, listing, check)
    raise CheckpointFormatError(
        "%s is a zip archive but neither a PyTorch checkpoint nor an .npz" % os.path.basename(path),
        hint="A PyTorch zip holds <name>/data.pkl; an .npz holds *.npy members.",
    )


def inspect(
    path: str, max_tensors: Optional[int] = None, check: Check = no_check
) -> Dict[str, Any]:
    """The CheckpointSummary of `path` (protocol.py)."""
    started = time.perf_counter()
    with gc_paused():
        reading = read_cached(path, check)
        return summarize(reading, max_tensors, started)


def candidate_files(paths: List[str]) -> List[str]:
    """Files named directly, plus every file under named folders whose content looks like a checkpoint."""
    out: List[str] = []
    for p in paths:
        p = os.path.abspath(p)
        if not os.path.isdir(p):
            out.append(p)
            continue
        for root, dirs, files in os.walk(p):
            dirs[:] = sorted(
                d
                for d in dirs
                if not d.startswith(".") and d not in ("node_modules", "__pycache__")
            )
            for name in sorted(files):
                if name.endswith(_SKIP_SUFFIXES):
                    continue
                full = os.path.join(root, name)
                try:
                    kind = sniff(full)
                except OSError:
                    continue
                if kind not in ("unknown", "json"):
                    out.append(full)
    return out


def scan(
    paths: List[str], allow: Optional[List[str]] = None, check: Check = no_check
) -> Dict[str, Any]:
    """Safety verdicts for files and folders (CheckpointScanResult)."""
    from .safety import extra_allowed

    results = []
    with extra_allowed(allow or []):
        for path in candidate_files(paths):
            check()
            try:
                reading = read(path, check)
            except RequestCancelled:
                raise
            except Exception as exc:  # one unreadable file must not end the scan of the rest
                if isinstance(exc, CheckpointFormatError):
                    message = exc.message
                else:
                    log.exception("scan: reading %s failed", path)
                    message = "Could not read the file (%s: %s); see the logs" % (
                        type(exc).__name__,
                        exc,
                    )
                results.append(
                    {
                        "path": path,
                        "format": "unknown",
                        "verdict": "error",
                        "summary": message,
                        "globals": [],
                        "error": message,
                    }
                )
                continue
            safety = reading.safety.to_json()
            results.append(
                {
                    "path": path,
                    "format": reading.format,
                    "verdict": safety["verdict"],
                    "summary": safety["summary"],
                    "globals": safety["globals"],
                    "error": None,
                }
            )
    return {"results": results}


def load_json_file(path: str, limit: int) -> Any:
    """Parse a small JSON file (index, config.json), refusing more than `limit` bytes."""
    size = os.path.getsize(path)
    if size > limit:
        raise CheckpointFormatError(
            "%s is %d bytes, over the limit of %d" % (os.path.basename(path), size, limit)
        )
    with open(path, "rb") as f:
        raw = f.read()
    try:
        return json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise CheckpointFormatError(
            "%s is not valid JSON: %s" % (os.path.basename(path), exc)
        ) from None
