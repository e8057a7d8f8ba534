"""`checkpoint/list`: the checkpoint files under a folder, for the Checkpoints view's remote
roots (the agent walks the machine's disk; only this listing crosses the network).

Bounded: at most `max_depth` folders deep and `max_files` entries; hidden folders,
node_modules and __pycache__ are skipped; symbolic links to folders are not followed (no
loops), links to files are listed under their own name. `*.index.json` files are read (up to
a size limit) for the shard names of their `weight_map`, as the VS Code tree does locally.
"""

from __future__ import annotations

import json
import os
import stat
from typing import Any, Dict, List, Optional, Tuple

from ..errors import ApplicationError

EXTENSIONS = (".safetensors", ".pt", ".pth", ".ckpt", ".gguf", ".npz", ".npy", ".bin")
INDEX_SUFFIX = ".index.json"
SKIPPED_DIRS = frozenset(("node_modules", "__pycache__"))
DEFAULT_MAX_FILES = 2000
MAX_DEPTH = 4
MAX_INDEX_BYTES = 64 * 1024 * 1024


def shards_of_index(text: str) -> Optional[List[str]]:
    """The sorted shard names of an index's `weight_map`, or None when it is not one."""
    try:
        data = json.loads(text)
    except ValueError:
        return None
    mapping = data.get("weight_map") if isinstance(data, dict) else None
    if not isinstance(mapping, dict):
        return None
    shards = sorted({v for v in mapping.values() if isinstance(v, str)})
    return shards or None


def _entry(path: str, st: os.stat_result) -> Dict[str, Any]:
    return {"path": path, "size": st.st_size, "mtimeMs": int(st.st_mtime_ns // 1_000_000)}


def _read_index(path: str, st: os.stat_result) -> Optional[List[str]]:
    if st.st_size > MAX_INDEX_BYTES:
        return None
    try:
        with open(path, "rb") as f:
            return shards_of_index(f.read().decode("utf-8", "replace"))
    except OSError:
        return None


def _check_folder(folder: str) -> str:
    if not folder or not folder.strip():
        raise ApplicationError("InvalidState", "No folder given", hint="Give a folder path.")
    path = os.path.abspath(os.path.expanduser(folder.strip()))
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise ApplicationError(
            "NotFound",
            "No such folder: %s" % path,
            hint="Check the path; it is a path on the machine that lists it.",
        ) from None
    except PermissionError:
        raise ApplicationError(
            "InvalidState",
            "Permission denied: %s" % path,
            hint="Choose a folder the user you connect as can read.",
        ) from None
    except OSError as e:
        raise ApplicationError(
            "InvalidState", "Cannot read %s: %s" % (path, e.strerror or e)
        ) from None
    if not stat.S_ISDIR(st.st_mode):
        raise ApplicationError(
            "InvalidState",
            "Not a folder: %s" % path,
            hint="Give the folder that holds the checkpoints, not a file.",
        )
    if not os.access(path, os.R_OK | os.X_OK):
        raise ApplicationError(
            "InvalidState",
            "Permission denied: %s" % path,
            hint="Choose a folder the user you connect as can read.",
        )
    return path


def list_folder(
    folder: str,
    max_files: Optional[int] = None,
    max_depth: int = MAX_DEPTH,
    check: Any = lambda: None,
) -> Dict[str, Any]:
    """Checkpoint files and indexes under `folder` (breadth first, sorted, bounded)."""
    root = _check_folder(folder)
    limit = DEFAULT_MAX_FILES if max_files is None or max_files <= 0 else max_files
    files: List[Dict[str, Any]] = []
    indexes: List[Dict[str, Any]] = []
    truncated = False
    queue: List[Tuple[str, int]] = [(root, 0)]
    while queue and not truncated:
        check()
        directory, depth = queue.pop(0)
        try:
            with os.scandir(directory) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError:
            if directory == root:
                raise ApplicationError(
                    "InvalidState",
                    "Permission denied: %s" % root,
                    hint="Choose a folder the user you connect as can read.",
                ) from None
            continue  # an unreadable subfolder is left out, as the local search does
        for e in entries:
            try:
                is_dir = e.is_dir(follow_symlinks=False)
            except OSError:
                continue
            if is_dir:
                if e.name.startswith(".") or e.name in SKIPPED_DIRS:
                    continue
                if depth + 1 < max_depth:
                    queue.append((e.path, depth + 1))
                continue
            name = e.name.lower()
            is_index = name.endswith(INDEX_SUFFIX)
            if not is_index and not name.endswith(EXTENSIONS):
                continue
            try:
                st = os.stat(e.path)  # a link to a file is listed; a dangling one is not
            except OSError:
                continue
            if not stat.S_ISREG(st.st_mode):
                continue
            if len(files) + len(indexes) >= limit:
                truncated = True
                break
            if is_index:
                shards = _read_index(e.path, st)
                if shards is not None:
                    indexes.append(dict(_entry(e.path, st), shards=shards))
            else:
                files.append(_entry(e.path, st))
    return {"folder": root, "files": files, "indexes": indexes, "truncated": truncated}
