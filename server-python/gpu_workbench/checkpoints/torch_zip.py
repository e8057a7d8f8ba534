"""PyTorch zip archives (torch.save since 1.6) and TorchScript archives (torch.jit.save).

Only the central directory, the small records and the pickles are read; storages
`<archive>/data/<key>` are addressed by their zip data offsets and never read. TorchScript
archives are recognized and summarized, never executed.
"""

from __future__ import annotations

import os
import zlib
from typing import Any, Callable, Dict, List, Optional

from . import pickle_vm, torch_pickle
from .dtypes import TORCH_STORAGES
from .errors import CheckpointFormatError
from .model import Check, Reading, gc_paused
from .zipread import Member, ZipListing, read_member

MAX_PICKLE_BYTES = 1 << 30  # data.pkl (kilobytes to a few MB in practice)
MAX_SIDE_PICKLE_BYTES = 64 << 20  # other pickles scanned for safety only
MAX_SIDE_PICKLES = 5000
MAX_RECORD_BYTES = 4096
BOMB_RATIO = 1000

TORCHSCRIPT_FINDING = (
    "TorchScript archives run code when loaded: torch.jit.load executes the archive's code/ "
    "files (and torch.load dispatched to it before 2.6, even with weights_only=True: "
    "CVE-2025-32434)"
)


def storage_dtype(stype: Any) -> Optional[tuple]:
    """(canonical dtype, untyped) for a storage class global, or None."""
    if type(stype) is not pickle_vm.Global:
        return None
    name = stype.name
    if name in TORCH_STORAGES:
        return TORCH_STORAGES[name], False
    if name in ("UntypedStorage", "_UntypedStorage"):
        return "U8", True
    return None


def storage_hook(
    reading: Reading,
    listing: ZipListing,
    folder: str,
    where: str,
    cache: Dict[str, torch_pickle.StorageRef],
) -> Callable[[Any], Any]:
    """persistent_load for zip pickles: ('storage', type, key, location, numel)."""

    def hook(pid: Any) -> Any:
        if not isinstance(pid, tuple) or len(pid) < 5 or pid[0] not in ("storage", b"storage"):
            reading.warn("%s: an unexpected persistent id %s" % (where, pickle_vm.describe(pid)))
            return pickle_vm.PersistentId(pid)
        stype, key, location, numel = pid[1], pid[2], pid[3], pid[4]
        key = key.decode("ascii", "replace") if isinstance(key, bytes) else str(key)
        ref = cache.get(key)
        if ref is not None:
            return ref
        kind = storage_dtype(stype)
        if kind is None:
            reading.warn(
                "%s: storage %s has an unknown storage type %s; read as bytes"
                % (where, key, pickle_vm.describe(stype))
            )
            kind = ("U8", True)
        member = listing.by_name.get(folder + key)
        ref = torch_pickle.StorageRef(
            key,
            kind[0],
            numel if type(numel) is int and numel >= 0 else None,
            untyped=kind[1],
            location=location if isinstance(location, str) else str(location),
        )
        if member is None:
            reading.warn("%s: storage %s has no record %s%s" % (where, key, folder, key))
        else:
            if member.compressed:
                ref.offset = 0
                ref.member = member.name
            else:
                ref.offset = member.data_offset
            if ref.nbytes is not None and member.size != ref.nbytes:
                reading.warn(
                    "%s: storage %s declares %d bytes but its record holds %d"
                    % (where, key, ref.nbytes, member.size)
                )
        cache[key] = ref
        return ref

    return hook


def _record(f: Any, listing: ZipListing, name: str) -> Optional[str]:
    m = listing.by_name.get(name)
    if m is None:
        return None
    try:
        raw = read_member(f, m, MAX_RECORD_BYTES)
    except CheckpointFormatError:
        return None
    return raw.decode("utf-8", "replace").strip()


def read(path: str, listing: ZipListing, check: Check) -> Reading:
    """A Reading of the PyTorch or TorchScript zip archive at `path`."""
    with gc_paused():
        return _read(path, listing, check)


def _read(path: str, listing: ZipListing, check: Check) -> Reading:
    size = os.path.getsize(path)
    members = listing.members
    if not members:
        raise CheckpointFormatError("%s is an empty zip archive" % os.path.basename(path))
    first = members[0].name
    warnings: List[str] = []
    if "/" in first:
        archive = first.split("/", 1)[0]
        base = archive + "/"
    else:
        archive = ""
        base = ""
        warnings.append(
            "the first zip entry %r is not in a folder; torch.load refuses such archives" % first
        )
    names = listing.by_name
    data_member = names.get(base + "data.pkl")
    if data_member is None:
        # torch.load would not find it; read the first data.pkl anyway to show something
        for m in members:
            if m.name.endswith("/data.pkl") or m.name == "data.pkl":
                data_member = m
                base = m.name[: -len("data.pkl")]
                warnings.append(
                    "data.pkl is not under the archive folder %r (taken from the first entry); "
                    "torch.load would not find it" % archive
                )
                break
    constants = names.get(base + "constants.pkl")
    code_files = sorted(
        m.name[len(base) + 5 :]
        for m in members
        if m.name.startswith(base + "code/") and not m.name.endswith("/")
    )
    torchscript = constants is not None or bool(code_files) or (base + "model.json") in names
    fmt = "torchscript" if torchscript else "pytorch-zip"
    reading = Reading(path, fmt, "")
    reading.add_file(path, size, fmt)
    for text in warnings:
        reading.warn(text)
    for text in listing.findings:
        reading.safety.add_finding("unknown", "zip: %s" % text)

    with open(path, "rb") as f:
        version = _record(f, listing, base + ".data/version") or _record(
            f, listing, base + "version"
        )
        byteorder = _record(f, listing, base + "byteorder")
        fmt_version = _record(f, listing, base + ".format_version")
        alignment = _record(f, listing, base + ".storage_alignment")
        serialization_id = _record(f, listing, base + ".data/serialization_id")
        meta = reading.metadata
        meta["archive"] = archive
        if version is not None:
            meta["serializationVersion"] = int(version) if version.isdigit() else version
        byte_order = "little"
        if byteorder is not None:
            meta["byteorder"] = byteorder
            if byteorder == "big":
                byte_order = "big"
            elif byteorder != "little":
                reading.warn("unknown byteorder record %r; assuming little-endian" % byteorder)
        if fmt_version is not None:
            meta["formatVersion"] = fmt_version
        if alignment is not None:
            meta["storageAlignment"] = int(alignment) if alignment.isdigit() else alignment
        if serialization_id is not None:
            meta["serializationId"] = serialization_id
        if torchscript:
            meta["code"] = [n for n in code_files if not n.endswith(".debug_pkl")][:500]
            extra = [m.name[len(base) + 6 :] for m in members if m.name.startswith(base + "extra/")]
            if extra:
                meta["extraFiles"] = extra[:100]
            reading.safety.add_finding("unsafe", TORCHSCRIPT_FINDING)
        kind = "TorchScript archive (torch.jit.save)" if torchscript else "PyTorch zip (torch.save)"
        parts = [kind]
        if version is not None:
            parts.append("version %s" % version)
        parts.append("archive %r" % archive)
        reading.format_detail = ", ".join(parts)

        _check_storages(reading, members, base)

        scanned = set()
        cache: Dict[str, torch_pickle.StorageRef] = {}
        if data_member is not None:
            scanned.add(id(data_member))
            root = _load(reading, f, data_member, listing, base + "data/", cache, check)
            torch_pickle.extract(
                reading,
                root,
                byte_order=byte_order,
                pickle_base=None if data_member.compressed else data_member.data_offset,
                where=data_member.name,
                check=check,
                blob_reader=_blob_reader(reading, data_member.name, check),
            )
        elif not torchscript:
            raise CheckpointFormatError(
                "%s is a zip archive without data.pkl" % os.path.basename(path),
                hint="A PyTorch checkpoint holds <archive>/data.pkl.",
            )
        else:
            reading.warn("the TorchScript archive has no data.pkl (model.json format?)")
        if constants is not None:
            scanned.add(id(constants))
            consts = _load(reading, f, constants, listing, base + "constants/", {}, check)
            if isinstance(consts, tuple):
                consts = {"c%d" % i: v for i, v in enumerate(consts)}
            torch_pickle.extract(
                reading,
                consts,
                byte_order=byte_order,
                where=constants.name,
                check=check,
                prefix="CONSTANTS",
                top=False,
            )
        _scan_side_pickles(reading, f, listing, scanned, check)
    return reading


def _load(
    reading: Reading,
    f: Any,
    member: Member,
    listing: ZipListing,
    folder: str,
    cache: Dict[str, torch_pickle.StorageRef],
    check: Check,
) -> Any:
    data = read_member(f, member, MAX_PICKLE_BYTES)
    if zlib.crc32(data) != member.crc:
        reading.safety.add_finding(
            "unknown",
            "zip: %s does not match its CRC; torch.load does not check it, some scanners skip it"
            % member.name,
        )
    hook = storage_hook(reading, listing, folder, member.name, cache)
    try:
        return pickle_vm.interpret(
            data, where=member.name, safety=reading.safety, check=check, persistent_load=hook
        )
    except pickle_vm.PickleError as exc:
        reading.warn(exc.message + "; showing what was decoded before it")
        return exc.partial


def _check_storages(reading: Reading, members: List[Member], base: str) -> None:
    folder = base + "data/"
    for m in members:
        if not m.compressed or not m.name.startswith(folder):
            continue
        if m.compressed_size and m.size > BOMB_RATIO * m.compressed_size and m.size > (64 << 20):
            reading.safety.add_finding(
                "unsafe",
                "zip: %s inflates %d bytes from %d (a zip bomb); torch.load would exhaust memory"
                % (m.name, m.size, m.compressed_size),
            )
        else:
            reading.safety.add_finding(
                "unknown",
                "zip: storage %s is compressed; torch writes storages uncompressed (re-saved "
                "by another tool?); its tensors are addressed inside the member" % m.name,
            )


def _scan_side_pickles(
    reading: Reading, f: Any, listing: ZipListing, scanned: set, check: Check
) -> None:
    """Scan the archive's other pickles (duplicates, attributes.pkl, debug pickles) for globals."""
    count = 0
    for m in listing.members:
        if id(m) in scanned or not (m.name.endswith(".pkl") or m.name.endswith("_pkl")):
            continue
        count += 1
        if count > MAX_SIDE_PICKLES:
            reading.safety.add_finding(
                "unknown", "zip: over %d pickles; the rest were not scanned" % MAX_SIDE_PICKLES
            )
            break
        check()
        try:
            data = read_member(f, m, MAX_SIDE_PICKLE_BYTES)
        except CheckpointFormatError as exc:
            reading.safety.add_finding("unknown", "zip: %s not scanned: %s" % (m.name, exc.message))
            continue
        safety = reading.safety
        try:
            pickle_vm.interpret(
                data,
                where=m.name,
                safety=safety,
                check=check,
                persistent_load=lambda pid: pickle_vm.PersistentId(pid),
            )
        except pickle_vm.PickleError:
            pass  # findings are in Safety already


def _blob_reader(
    reading: Reading, where: str, check: Check
) -> Callable[[bytes, Optional[int]], Optional[torch_pickle.StorageRef]]:
    def reader(blob: bytes, at: Optional[int]) -> Optional[torch_pickle.StorageRef]:
        from . import torch_legacy

        return torch_legacy.read_blob(blob, at, reading, where, check)

    return reader
