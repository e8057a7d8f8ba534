"""PyTorch's legacy formats: stacked pickles (before 1.6, or _use_new_zipfile_serialization=False)
and the older tar archive. Storage offsets come from walking the per-storage headers; no
tensor data is read.
"""

from __future__ import annotations

import mmap
import os
import struct
import tarfile
from contextlib import contextmanager
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

from . import pickle_vm, torch_pickle
from .dtypes import DTYPES
from .errors import CheckpointFormatError
from .model import Check, Reading, gc_paused
from .torch_zip import storage_dtype

MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
PROTOCOL_VERSION = 1001
MAX_STORAGES = 10_000_000
MAX_TAR_MEMBERS = 10_000

_I64 = struct.Struct("<q")
_I32 = struct.Struct("<i")


@contextmanager
def _mapped(path: str) -> Iterator[Any]:
    """The file's bytes: an mmap (or bytes for an empty or unmappable file)."""
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size == 0:
            yield b""
            return
        try:
            m = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        except (OSError, ValueError):
            yield f.read()
            return
        try:
            yield m
        finally:
            m.close()


class _Storages:
    """Storages of one legacy pickle, created by the persistent-id hook."""

    def __init__(self, reading: Reading, where: str) -> None:
        self.reading = reading
        self.where = where
        self.refs: Dict[str, torch_pickle.StorageRef] = {}
        self.modules: List[Dict[str, Any]] = []

    def hook(self, pid: Any) -> Any:
        if not isinstance(pid, tuple) or not pid:
            self.reading.warn(
                "%s: an unexpected persistent id %s" % (self.where, pickle_vm.describe(pid))
            )
            return pickle_vm.PersistentId(pid)
        kind = pid[0].decode("ascii", "replace") if isinstance(pid[0], bytes) else pid[0]
        if kind == "module" and len(pid) >= 2:
            if len(self.modules) < 100:
                self.modules.append(
                    {
                        "class": pid[1].full if type(pid[1]) is pickle_vm.Global else str(pid[1]),
                        "sourceFile": pid[2] if len(pid) > 2 and isinstance(pid[2], str) else None,
                    }
                )
            return pid[1]
        if kind != "storage" or len(pid) < 5:
            self.reading.warn(
                "%s: an unexpected persistent id %s" % (self.where, pickle_vm.describe(pid))
            )
            return pickle_vm.PersistentId(pid)
        stype, key, location, numel = pid[1], pid[2], pid[3], pid[4]
        view = pid[5] if len(pid) > 5 else None
        key = key.decode("ascii", "replace") if isinstance(key, bytes) else str(key)
        ref = self.refs.get(key)
        if ref is None:
            dtype = storage_dtype(stype)
            if dtype is None:
                self.reading.warn(
                    "%s: storage %s has an unknown storage type %s; read as bytes"
                    % (self.where, key, pickle_vm.describe(stype))
                )
                dtype = ("U8", True)
            ref = torch_pickle.StorageRef(
                key,
                dtype[0],
                numel if type(numel) is int and numel >= 0 else None,
                untyped=dtype[1],
                location=location if isinstance(location, str) else str(location),
            )
            self.refs[key] = ref
        if isinstance(view, tuple) and len(view) == 3 and type(view[1]) is int:
            return torch_pickle.StorageView(ref, view[1])
        return ref


def _run(
    data: Any, start: int, where: str, reading: Reading, check: Check, **kw: Any
) -> Tuple[Any, int, bool]:
    """(value, end, ok) of the pickle at `start`; a failure is a warning, not an exception."""
    try:
        r = pickle_vm.run(data, where=where, safety=reading.safety, check=check, start=start, **kw)
        return r.value, r.end, True
    except pickle_vm.PickleError as exc:
        reading.warn(exc.message)
        return exc.partial, -1, False


def _stacked(
    data: Any, reading: Reading, check: Check, label: str, base: Optional[int]
) -> Tuple[Any, Optional[_Storages], bool]:
    """Decode the stacked pickles in `data`; returns (object, storages, complete)."""
    size = len(data)
    magic, pos, ok = _run(data, 0, label + "pickle 1 (magic number)", reading, check)
    if not ok:
        return None, None, False
    if magic != MAGIC_NUMBER:
        reading.safety.add_finding(
            "unsafe" if type(magic) is pickle_vm.Call else "unknown",
            "%sthe first pickle is not the legacy magic number but %s: torch.load unpickles "
            "it before checking (a magic-number bypass?)" % (label, pickle_vm.describe(magic)),
        )
    proto, pos, ok = _run(data, pos, label + "pickle 2 (protocol version)", reading, check)
    if not ok:
        return None, None, False
    if proto != PROTOCOL_VERSION:
        reading.warn(
            "%sprotocol version %s (expected %d)"
            % (label, pickle_vm.describe(proto), PROTOCOL_VERSION)
        )
    sys_info, pos, ok = _run(data, pos, label + "pickle 3 (sys_info)", reading, check)
    if not ok:
        return None, None, False
    if isinstance(sys_info, dict) and not label:
        reading.metadata["sysInfo"] = torch_pickle.Renderer(torch_pickle.Extractor(reading)).render(
            sys_info, 3
        )
        if sys_info.get("little_endian") is False:
            reading.warn("saved on a big-endian machine; storages are written little-endian")
    storages = _Storages(reading, label + "pickle 4 (object)")
    root, pos, ok = _run(
        data, pos, label + "pickle 4 (object)", reading, check, persistent_load=storages.hook
    )
    if not ok:
        return root, storages, False
    keys, pos, ok = _run(data, pos, label + "pickle 5 (storage keys)", reading, check)
    if not ok:
        return root, storages, False
    if not isinstance(keys, list):
        reading.warn("%sthe storage key list is a %s" % (label, type(keys).__name__))
        return root, storages, False
    for key in keys:
        key = str(key)
        ref = storages.refs.get(key)
        if ref is None:
            reading.warn(
                "%sstorage %s is listed but never used; later offsets are unknown" % (label, key)
            )
            return root, storages, False
        if pos + 8 > size:
            reading.warn("%sthe file ends before storage %s (truncated)" % (label, key))
            return root, storages, False
        numel = _I64.unpack_from(data, pos)[0]
        dt = DTYPES.get(ref.dtype)
        nbytes = dt.nbytes(numel) if dt is not None and numel >= 0 else None
        if nbytes is None:
            reading.warn("%sstorage %s has an invalid element count %d" % (label, key, numel))
            return root, storages, False
        if ref.numel is not None and numel != ref.numel:
            reading.warn(
                "%sstorage %s holds %d elements but the pickle says %d"
                % (label, key, numel, ref.numel)
            )
            ref.numel = numel
            ref.nbytes = nbytes
        if pos + 8 + nbytes > size:
            # Leave the offset unknown: statistics must not read past the end of the file.
            reading.warn("%sstorage %s extends past the end of the file (truncated)" % (label, key))
            return root, storages, False
        ref.offset = (base + pos + 8) if base is not None else None
        pos += 8 + nbytes
    if pos < size and not label:
        reading.warn("%d bytes after the last storage" % (size - pos))
    return root, storages, True


def read(path: str, check: Check) -> Reading:
    """A Reading of the stacked-pickle legacy file at `path`."""
    with gc_paused():
        return _read(path, check)


def _read(path: str, check: Check) -> Reading:
    size = os.path.getsize(path)
    reading = Reading(
        path,
        "pytorch-legacy",
        "PyTorch legacy format (torch.save before 1.6 or _use_new_zipfile_serialization=False)",
    )
    reading.add_file(path, size, "pytorch-legacy")
    with _mapped(path) as data:
        root, storages, _ = _stacked(data, reading, check, "", 0)
        if storages is not None and storages.modules:
            reading.metadata["moduleSources"] = storages.modules
        torch_pickle.extract(
            reading,
            root,
            pickle_base=0,
            where="pickle 4 (object)",
            check=check,
            blob_reader=_blob_reader(reading, check),
        )
    return reading


def _blob_reader(
    reading: Reading, check: Check
) -> Callable[[bytes, Optional[int]], Optional[torch_pickle.StorageRef]]:
    def reader(blob: bytes, at: Optional[int]) -> Optional[torch_pickle.StorageRef]:
        return read_blob(blob, at, reading, "embedded", check)

    return reader


def read_blob(
    blob: bytes, at: Optional[int], reading: Reading, where: str, check: Check
) -> Optional[torch_pickle.StorageRef]:
    """The storage in a torch.save blob (torch.storage._load_from_bytes); `at`: its file offset.

    Its pickles are scanned into the reading's Safety like the file's own.
    """
    if blob[:2] == b"PK":
        reading.warn("%s: an embedded zip torch.save blob is not read" % where)
        return None
    label = "%s torch.save blob: " % where
    root, _, _ = _stacked(blob, reading, check, label, at)
    if type(root) is torch_pickle.StorageView:
        root = root.root
    if type(root) is torch_pickle.StorageRef:
        if at is not None:
            root.key = "embedded@%d" % at
        return root
    reading.warn("%sdoes not hold a storage" % label)
    return None


# ---- the tar format ----


def read_tar(path: str, check: Check) -> Reading:
    """A Reading of the tar-format legacy checkpoint at `path` (members sys_info, pickle, ...)."""
    with gc_paused():
        return _read_tar(path, check)


def _read_tar(path: str, check: Check) -> Reading:
    size = os.path.getsize(path)
    reading = Reading(path, "pytorch-tar", "PyTorch legacy tar format (torch.save before 0.1.10)")
    reading.add_file(path, size, "pytorch-tar")
    try:
        with tarfile.open(path, "r:") as tar:
            members: Dict[str, tarfile.TarInfo] = {}
            for i, m in enumerate(tar):
                if i >= MAX_TAR_MEMBERS:
                    raise CheckpointFormatError(
                        "the tar archive has over %d members" % MAX_TAR_MEMBERS
                    )
                members[m.name] = m
    except (tarfile.TarError, OSError, EOFError, ValueError, struct.error) as exc:
        raise CheckpointFormatError("Not a readable tar archive: %s" % exc) from None
    missing = [n for n in ("pickle", "storages", "tensors") if n not in members]
    if missing:
        raise CheckpointFormatError(
            "%s is a tar archive without the member(s) %s of a legacy PyTorch checkpoint"
            % (os.path.basename(path), ", ".join(missing))
        )
    for name, m in members.items():
        if name not in ("sys_info", "pickle", "storages", "tensors"):
            reading.warn("unexpected tar member %r" % name)
        if m.offset_data + m.size > size:
            raise CheckpointFormatError("tar member %r extends past the end of the file" % name)
    with _mapped(path) as data:
        info = members.get("sys_info")
        if info is not None:
            value, _, ok = _run_member(data, info, 0, "sys_info", reading, check)
            if ok and isinstance(value, dict):
                reading.metadata["sysInfo"] = torch_pickle.Renderer(
                    torch_pickle.Extractor(reading)
                ).render(value, 3)
        objects: Dict[int, Any] = {}
        _tar_storages(data, members["storages"], objects, reading, check)
        _tar_tensors(data, members["tensors"], objects, reading, check)

        def hook(pid: Any) -> Any:
            if isinstance(pid, tuple):
                return pid[0] if pid else None
            try:
                return objects[int(pid)]
            except (KeyError, ValueError, TypeError):
                reading.warn(
                    "pickle: persistent id %s names no storage or tensor" % pickle_vm.describe(pid)
                )
                return pickle_vm.PersistentId(pid)

        m = members["pickle"]
        root, _, _ = _run_member(data, m, 0, "pickle", reading, check, persistent_load=hook)
        torch_pickle.extract(reading, root, pickle_base=0, where="pickle", check=check)
    return reading


def _run_member(
    data: Any, m: tarfile.TarInfo, skip: int, where: str, reading: Reading, check: Check, **kw: Any
) -> Tuple[Any, int, bool]:
    start = m.offset_data + skip
    try:
        r = pickle_vm.run(
            data,
            where=where,
            safety=reading.safety,
            check=check,
            start=start,
            end=m.offset_data + m.size,
            **kw,
        )
        return r.value, r.end, True
    except pickle_vm.PickleError as exc:
        reading.warn(exc.message)
        return exc.partial, -1, False


def _count(value: Any, what: str, reading: Reading) -> int:
    if type(value) is not int or value < 0 or value > MAX_STORAGES:
        reading.warn("%s: an invalid count %s" % (what, pickle_vm.describe(value)))
        return 0
    return value


def _tar_storages(
    data: Any, m: tarfile.TarInfo, objects: Dict[int, Any], reading: Reading, check: Check
) -> None:
    end = m.offset_data + m.size
    value, pos, ok = _run_member(data, m, 0, "storages", reading, check)
    if not ok:
        return
    for _ in range(_count(value, "storages", reading)):
        check()
        args, pos, ok = _run_member(data, m, pos - m.offset_data, "storages", reading, check)
        if not ok:
            return
        if not isinstance(args, tuple) or len(args) != 3:
            reading.warn("storages: an unreadable storage header")
            return
        key, location, stype = args
        dtype = storage_dtype(stype) or ("U8", True)
        dt = DTYPES[dtype[0]]
        if pos + 8 > end:
            reading.warn("storages: truncated")
            return
        numel = _I64.unpack_from(data, pos)[0]
        nbytes = dt.nbytes(numel) if numel >= 0 else None
        if nbytes is None or pos + 8 + nbytes > end:
            reading.warn("storages: storage %s has an invalid size" % pickle_vm.describe(key))
            return
        ref = torch_pickle.StorageRef(
            str(key), dtype[0], numel, location=str(location), offset=pos + 8
        )
        if type(key) is int:
            objects[key] = ref
        pos += 8 + nbytes
    views, pos, ok = _run_member(data, m, pos - m.offset_data, "storages", reading, check)
    if ok and isinstance(views, list):
        for v in views:
            if isinstance(v, tuple) and len(v) == 4:
                target, root, offset, _numel = v
                base = objects.get(root) if type(root) is int else None
                if (
                    type(base) is torch_pickle.StorageRef
                    and type(offset) is int
                    and type(target) is int
                ):
                    objects[target] = torch_pickle.StorageView(base, offset)


def _tar_tensors(
    data: Any, m: tarfile.TarInfo, objects: Dict[int, Any], reading: Reading, check: Check
) -> None:
    end = m.offset_data + m.size
    value, pos, ok = _run_member(data, m, 0, "tensors", reading, check)
    if not ok:
        return
    for _ in range(_count(value, "tensors", reading)):
        check()
        args, pos, ok = _run_member(data, m, pos - m.offset_data, "tensors", reading, check)
        if not ok:
            return
        if not isinstance(args, tuple) or len(args) != 3:
            reading.warn("tensors: an unreadable tensor header")
            return
        key, storage_id, _ttype = args
        if pos + 8 > end:
            reading.warn("tensors: truncated")
            return
        ndim = _I32.unpack_from(data, pos)[0]
        need = 8 + 16 * ndim + 8
        if ndim < 0 or ndim > 64 or pos + need > end:
            reading.warn("tensors: tensor %s has an invalid header" % pickle_vm.describe(key))
            return
        sizes = list(struct.unpack_from("<%dq" % ndim, data, pos + 8))
        strides = list(struct.unpack_from("<%dq" % ndim, data, pos + 8 + 8 * ndim))
        offset = _I64.unpack_from(data, pos + 8 + 16 * ndim)[0]
        pos += need
        storage = objects.get(storage_id) if type(storage_id) is int else None
        base = 0
        if type(storage) is torch_pickle.StorageView:
            base = storage.base
            storage = storage.root
        if (
            type(storage) is not torch_pickle.StorageRef
            or any(s < 0 for s in sizes + strides)
            or offset < 0
        ):
            reading.warn(
                "tensors: tensor %s has no valid storage or shape" % pickle_vm.describe(key)
            )
            continue
        if type(key) is int:
            objects[key] = torch_pickle.TensorInfo(
                "tensor",
                storage.dtype,
                sizes,
                stride=strides,
                storage=storage,
                storage_offset=base + offset,
            )
