"""Hugging Face layouts: sharded checkpoints behind a *.index.json, and model folders.

An index is `{"metadata": {"total_size": ...}, "weight_map": {tensor: shard file}}`. Its
values must be plain file names in the index's own folder (no separators, no "..");
malformed entries are skipped with a warning, and an index with no usable entry is an
error. Each shard is read by content through `readers.read` (safetensors or PyTorch .bin),
its tensors keep `file` = the shard's absolute path, and safety verdicts are merged. A
shard that is missing or unreadable becomes a warning (and, for safety, an "unknown"
finding, since it was not scanned) so the rest of a partial download stays inspectable;
only an index none of whose shards can be read is an error. Names the index maps to a
shard that lacks them, tensors the index does not name, and a `metadata.total_size` that
disagrees with the shards' tensors are reported as warnings.

A folder uses its index when it has one (safetensors preferred), else every *.safetensors,
else pytorch_model*.bin, else the other checkpoint-looking files (*.pt, *.pth, *.bin,
*.ckpt, *.gguf, *.npz, *.npy) whose content a reader recognizes. `config.json` beside the
weights becomes metadata["config"] (bounded) and names the architecture in formatDetail.
"""

from __future__ import annotations

import math
import os
from typing import Any, Dict, List, Optional, Tuple

from .detect import sniff
from .errors import CheckpointFormatError
from .model import Check, Reading, Tensor, no_check

INDEX_LIMIT = 64 << 20
CONFIG_LIMIT = 4 << 20
LISTED = 5  # names quoted in a warning
_CHECKPOINT_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt", ".gguf", ".npz", ".npy")
_OTHER_SUFFIXES = (*_CHECKPOINT_SUFFIXES, ".safetensors", ".pkl", ".pickle")


def _names(items: List[str]) -> str:
    shown = ", ".join(repr(x[:120]) for x in items[:LISTED])
    if len(items) > LISTED:
        shown += " and %d more" % (len(items) - LISTED)
    return shown


def bounded(value: Any, depth: int = 0) -> Any:
    """A JSON value cut down to a size safe to send (strings, lists, dicts, depth)."""
    if isinstance(value, str):
        return value if len(value) <= 4096 else value[:4096] + "… (%d characters)" % len(value)
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if depth >= 8:
        return "…"
    if isinstance(value, list):
        out = [bounded(v, depth + 1) for v in value[:64]]
        if len(value) > 64:
            out.append("… (%d items)" % len(value))
        return out
    if isinstance(value, dict):
        result: Dict[str, Any] = {}
        for i, (k, v) in enumerate(value.items()):
            if i >= 256:
                result["…"] = "%d keys" % len(value)
                break
            result[str(k)[:256]] = bounded(v, depth + 1)
        return result
    return str(value)[:4096]


def _load_json(path: str, limit: int) -> Any:
    from .readers import load_json_file

    return load_json_file(path, limit)


def _config(folder: str, reading: Reading) -> Optional[Dict[str, Any]]:
    path = os.path.join(folder, "config.json")
    if not os.path.isfile(path):
        return None
    try:
        config = _load_json(path, CONFIG_LIMIT)
    except (CheckpointFormatError, OSError) as exc:
        reading.warn("config.json could not be read: %s" % getattr(exc, "message", exc))
        return None
    if not isinstance(config, dict):
        reading.warn("config.json is not a JSON object")
        return None
    reading.metadata["config"] = bounded(config)
    return config


def _config_label(config: Optional[Dict[str, Any]]) -> str:
    if not config:
        return ""
    arch = config.get("architectures")
    name = arch[0] if isinstance(arch, list) and arch and isinstance(arch[0], str) else ""
    extra = []
    for key in ("model_type", "torch_dtype", "dtype"):
        v = config.get(key)
        if isinstance(v, str) and v and v not in extra:
            extra.append(v[:40])
    if not name and not extra:
        return ""
    label = name[:80] or "model"
    if extra:
        label += " (%s)" % ", ".join(extra)
    return label


def _valid_file_name(value: Any) -> bool:
    return (
        isinstance(value, str)
        and value not in ("", ".", "..")
        and "/" not in value
        and "\\" not in value
        and "\x00" not in value
        and ":" not in value
        and not os.path.isabs(value)
    )


# ---- shards ----


class _Shards:
    """Shard readings folded into one Reading."""

    def __init__(self, reading: Reading) -> None:
        self.reading = reading
        self.where: Dict[str, str] = {}  # tensor name -> shard file name
        self.duplicates: List[str] = []
        self.failed: List[str] = []
        self.formats: Dict[str, int] = {}

    def add(self, shard: str, check: Check) -> None:
        from .readers import read

        reading = self.reading
        base = os.path.basename(shard)
        try:
            kind = sniff(shard)
            if kind in ("json", "folder"):
                raise CheckpointFormatError("it is %s, not a checkpoint file" % kind)
            sub = read(shard, check)
        except (CheckpointFormatError, OSError) as exc:
            self.failed.append(base)
            reading.warn("Shard %s could not be read: %s" % (base, getattr(exc, "message", exc)))
            reading.safety.add_finding(
                "unknown", "shard %s could not be read, so it was not scanned" % base
            )
            return
        self.formats[sub.format] = self.formats.get(sub.format, 0) + 1
        where = self.where
        for t in sub.tensors:
            if t.file is None:
                t.file = shard
            if t.name in where:
                self.duplicates.append(t.name)
            else:
                where[t.name] = base
        reading.tensors.extend(sub.tensors)
        reading.files.extend(sub.files)
        reading.safety.merge(sub.safety)
        for w in sub.warnings:
            reading.warn("%s: %s" % (base, w))
        shards = reading.metadata.setdefault("shards", [])
        if len(shards) < 1000:
            shards.append(
                {
                    "file": base,
                    "format": sub.format,
                    "formatDetail": sub.format_detail,
                    "tensors": len(sub.tensors),
                }
            )
        for key, value in sub.metadata.items():
            reading.metadata.setdefault(key, value)  # the first shard's, e.g. "safetensors"

    def finish(self) -> None:
        if self.duplicates:
            self.reading.warn(
                "%d tensor names appear in more than one shard: %s"
                % (len(self.duplicates), _names(self.duplicates))
            )

    def describe(self) -> str:
        n = sum(self.formats.values())
        kind = next(iter(self.formats)) if len(self.formats) == 1 else "mixed"
        return "%d %s shard%s" % (n, kind, "" if n == 1 else "s")


def _tensor_bytes(tensors: List[Tensor]) -> Tuple[int, int]:
    """(sum of tensor bytes, bytes after de-duplicating shared storages)."""
    total = 0
    stored = 0
    seen = set()
    for t in tensors:
        nbytes = t.nbytes or 0
        total += nbytes
        if t.storage is None:
            stored += nbytes
        elif (t.file, t.storage) not in seen:
            seen.add((t.file, t.storage))
            stored += t.storage_bytes if t.storage_bytes is not None else nbytes
    return total, stored


# ---- *.index.json ----


def read_index(path: str, check: Check = no_check) -> Reading:
    """Read a sharded checkpoint through its *.index.json."""
    path = os.path.abspath(path)
    reading = _read_index(path, check)
    label = _config_label(_config(os.path.dirname(path), reading))
    reading.format_detail = "Hugging Face index%s, %s" % (
        ", " + label if label else "",
        reading.format_detail,
    )
    return reading


def _read_index(path: str, check: Check) -> Reading:
    name = os.path.basename(path)
    folder = os.path.dirname(path)
    data = _load_json(path, INDEX_LIMIT)
    if not isinstance(data, dict):
        raise CheckpointFormatError("%s is not a JSON object" % name)
    weight_map = data.get("weight_map")
    if not isinstance(weight_map, dict):
        raise CheckpointFormatError(
            "%s has no weight_map object, so it is not a sharded-checkpoint index" % name,
            hint='An index looks like {"metadata": {...}, "weight_map": {"tensor": "file"}}.',
        )
    reading = Reading(path, "hf-index", "")
    bad: List[str] = []
    by_shard: Dict[str, List[str]] = {}
    for tname, value in weight_map.items():
        if _valid_file_name(value):
            by_shard.setdefault(value, []).append(tname)
        else:
            bad.append("%s -> %s" % (tname[:80], str(value)[:80]))
    if bad:
        reading.warn(
            "%d weight_map entr%s skipped: shard names must be plain file names in the "
            "index's folder: %s" % (len(bad), "y was" if len(bad) == 1 else "ies were", _names(bad))
        )
    if not by_shard:
        raise CheckpointFormatError(
            "%s names no usable shard (its weight_map has %d entries)" % (name, len(weight_map))
        )
    shards = _Shards(reading)
    missing = []
    for shard in sorted(by_shard):
        check()
        full = os.path.join(folder, shard)
        if not os.path.isfile(full):
            missing.append(shard)
            reading.warn(
                "Shard %s (named by %d tensors) is missing" % (shard, len(by_shard[shard]))
            )
            reading.safety.add_finding("unknown", "shard %s is missing; not scanned" % shard)
            continue
        shards.add(full, check)
    shards.finish()
    if len(missing) + len(shards.failed) == len(by_shard):
        raise CheckpointFormatError(
            "None of the %d shards named by %s could be read" % (len(by_shard), name),
            hint="; ".join(reading.warnings[:3]) or None,
        )

    # weight_map against what the shards hold
    unreadable = set(missing) | set(shards.failed)
    where = shards.where
    absent: List[str] = []
    moved: List[str] = []
    for shard, tnames in by_shard.items():
        if shard in unreadable:
            continue
        for tname in tnames:
            actual = where.get(tname)
            if actual is None:
                absent.append(tname)
            elif actual != shard:
                moved.append("%s (in %s, not %s)" % (tname, actual, shard))
    if absent:
        reading.warn(
            "%d tensor%s named by the index %s missing from %s shard: %s"
            % (
                len(absent),
                "" if len(absent) == 1 else "s",
                "is" if len(absent) == 1 else "are",
                "its" if len(absent) == 1 else "their",
                _names(absent),
            )
        )
    if moved:
        reading.warn(
            "%d tensor%s in a different shard than the index says: %s"
            % (len(moved), " is" if len(moved) == 1 else "s are", _names(moved))
        )
    unnamed = [t for t in where if t not in weight_map]
    if unnamed:
        reading.warn(
            "%d tensor%s in the shards but not in the index: %s"
            % (len(unnamed), " is" if len(unnamed) == 1 else "s are", _names(unnamed))
        )

    meta = data.get("metadata")
    total_size = meta.get("total_size") if isinstance(meta, dict) else None
    if isinstance(total_size, (int, float)) and not isinstance(total_size, bool) and not unreadable:
        total, stored = _tensor_bytes(reading.tensors)
        if total_size not in (total, stored):
            reading.warn(
                "The index's metadata.total_size is %d bytes but the shards' tensors hold %d"
                % (int(total_size), stored)
            )
    index_meta: Dict[str, Any] = {
        "file": name,
        "entries": len(weight_map),
        "shards": len(by_shard),
    }
    for key, value in data.items():
        if key != "weight_map":
            index_meta[str(key)[:256]] = bounded(value)
    reading.metadata["index"] = index_meta
    reading.format_detail = "%s, %d tensors" % (shards.describe(), len(reading.tensors))
    return reading


# ---- folders ----


def read_folder(path: str, check: Check = no_check) -> Reading:
    """Read a model folder: its index, else its weight files; config.json as metadata."""
    path = os.path.abspath(path)
    try:
        entries = sorted(os.listdir(path))
    except OSError as exc:
        raise CheckpointFormatError("Cannot list %s: %s" % (path, exc)) from None
    files = [e for e in entries if os.path.isfile(os.path.join(path, e))]
    used: List[str] = []
    indexes = [e for e in files if e.endswith(".index.json")]
    reading: Optional[Reading] = None
    if indexes:
        chosen = _choose_index(indexes)
        reading = _read_index(os.path.join(path, chosen), check)
        used.append(chosen)
        used.extend(os.path.basename(f["path"]) for f in reading.files)
        others = [i for i in indexes if i != chosen]
        if others:
            reading.warn("Using %s; also in the folder: %s" % (chosen, _names(others)))
    else:
        chosen_files = _weight_files(path, files)
        if not chosen_files:
            raise CheckpointFormatError(
                "No checkpoint files in %s" % path,
                hint="A model folder holds *.safetensors, pytorch_model*.bin, *.pt or *.gguf "
                "files, or a *.index.json.",
            )
        reading = Reading(path, "hf-folder", "")
        shards = _Shards(reading)
        for name in chosen_files:
            check()
            shards.add(os.path.join(path, name), check)
        shards.finish()
        if len(shards.failed) == len(chosen_files):
            raise CheckpointFormatError(
                "None of the %d checkpoint files in %s could be read" % (len(chosen_files), path),
                hint="; ".join(reading.warnings[:3]) or None,
            )
        used.extend(chosen_files)
        reading.format_detail = "%s, %d tensors" % (shards.describe(), len(reading.tensors))
    reading.path = path
    reading.format = "hf-folder"
    label = _config_label(_config(path, reading))
    prefix = "Hugging Face folder" if label or indexes or "config.json" in files else "folder"
    reading.format_detail = "%s%s, %s" % (
        prefix,
        ", " + label if label else "",
        reading.format_detail,
    )
    skipped = [e for e in files if e not in used and e.endswith(_OTHER_SUFFIXES)]
    if skipped:
        reading.warn(
            "Not included (inspect them on their own): %s" % _names(skipped),
        )
    return reading


def _choose_index(indexes: List[str]) -> str:
    for preferred in ("model.safetensors.index.json", "pytorch_model.bin.index.json"):
        if preferred in indexes:
            if preferred.startswith("pytorch"):
                safetensors = [i for i in indexes if i.endswith(".safetensors.index.json")]
                if safetensors:
                    return safetensors[0]
            return preferred
    safetensors = [i for i in indexes if i.endswith(".safetensors.index.json")]
    return (safetensors or indexes)[0]


def _weight_files(folder: str, files: List[str]) -> List[str]:
    found = [e for e in files if e.endswith(".safetensors")]
    if found:
        return found
    found = [e for e in files if e.startswith("pytorch_model") and e.endswith(".bin")]
    if found:
        return found
    out = []
    for e in files:
        if not e.endswith(_CHECKPOINT_SUFFIXES):
            continue
        try:
            kind = sniff(os.path.join(folder, e))
        except OSError:
            continue
        if kind not in ("unknown", "json", "folder"):
            out.append(e)
    return out
