"""Zip archives read defensively: the central directory only, data offsets from local headers.

PyTorch writes uncompressed (STORED) members aligned inside the file, so tensor bytes are
addressed directly at their offset and never pass through `zipfile`. Compressed members
are decompressed only through `read_member`, which stops at a size cap (zip bombs).
"""

from __future__ import annotations

import struct
import zipfile
import zlib
from typing import BinaryIO, Dict, List, Optional

from .errors import CheckpointFormatError

MAX_MEMBERS = 2_000_000
# Ratio beyond which a DEFLATE member is treated as a bomb even under the size cap.
MAX_RATIO = 1000


class Member:
    __slots__ = ("compressed", "compressed_size", "crc", "data_offset", "method", "name", "size")

    def __init__(
        self, name: str, size: int, compressed_size: int, method: int, data_offset: int, crc: int
    ) -> None:
        self.name = name
        self.method = method  # zipfile.ZIP_STORED, ZIP_DEFLATED, ...
        self.size = size  # uncompressed bytes, as declared
        self.compressed_size = compressed_size
        self.compressed = method != zipfile.ZIP_STORED
        self.data_offset = data_offset  # absolute offset of the (possibly compressed) data
        self.crc = crc


class ZipListing:
    def __init__(self, members: List[Member], findings: List[str]) -> None:
        self.members = members
        self.by_name: Dict[str, Member] = {m.name: m for m in members}
        self.findings = findings  # oddities worth reporting (name mismatches, duplicates)


def list_members(f: BinaryIO, file_size: int) -> ZipListing:
    """The members of the zip in `f`, with their data offsets; raises CheckpointFormatError."""
    try:
        archive = zipfile.ZipFile(f)  # reads the central directory only
        infos = archive.infolist()
    except (
        zipfile.BadZipFile,
        zipfile.LargeZipFile,
        NotImplementedError,  # "zip file version N" from the central directory
        OSError,
        ValueError,
        EOFError,
        struct.error,
    ) as exc:
        raise CheckpointFormatError(
            "Not a readable zip archive: %s" % exc,
            hint="The file may be truncated or corrupt; re-save or re-download it.",
        ) from None
    if len(infos) > MAX_MEMBERS:
        raise CheckpointFormatError(
            "The zip archive has %d members, over the limit of %d" % (len(infos), MAX_MEMBERS)
        )
    findings: List[str] = []
    members: List[Member] = []
    seen = set()
    for info in infos:
        if info.filename in seen:
            findings.append("duplicate zip member %r" % info.filename)
        seen.add(info.filename)
        header = b""
        if 0 <= info.header_offset <= file_size:  # zipfile can compute a negative offset
            f.seek(info.header_offset)
            header = f.read(30)
        if len(header) < 30 or header[:4] != b"PK\x03\x04":
            raise CheckpointFormatError(
                "Zip member %r has no local header at offset %d"
                % (info.filename, info.header_offset)
            )
        name_len, extra_len = struct.unpack("<HH", header[26:30])
        local_name = f.read(name_len)
        if (
            local_name.decode("utf-8", "replace") != info.filename
            and local_name.decode("cp437", "replace") != info.filename
        ):
            findings.append(
                "zip member %r is named %r in its local header"
                % (info.filename, local_name.decode("utf-8", "replace"))
            )
        data_offset = info.header_offset + 30 + name_len + extra_len
        compressed = info.compress_type != zipfile.ZIP_STORED
        if data_offset + info.compress_size > file_size:
            raise CheckpointFormatError(
                "Zip member %r extends past the end of the file" % info.filename,
                hint="The file is truncated; re-save or re-download it.",
            )
        if not compressed and info.compress_size != info.file_size:
            raise CheckpointFormatError(
                "Stored zip member %r declares two different sizes" % info.filename
            )
        members.append(
            Member(
                info.filename,
                info.file_size,
                info.compress_size,
                info.compress_type,
                data_offset,
                info.CRC,
            )
        )
    return ZipListing(members, findings)


def read_member(f: BinaryIO, member: Member, limit: int) -> bytes:
    """The member's bytes, refusing more than `limit` bytes (declared or actual)."""
    if member.size > limit:
        raise CheckpointFormatError(
            "Zip member %r is %d bytes, over the limit of %d" % (member.name, member.size, limit)
        )
    f.seek(member.data_offset)
    if not member.compressed:
        data = f.read(member.size)
        if len(data) != member.size:
            raise CheckpointFormatError("Zip member %r is truncated" % member.name)
        return data
    return b"".join(iter_member(f, member, limit))


def iter_member(f: BinaryIO, member: Member, limit: int, chunk: int = 1 << 20):
    """Yield the member's bytes in chunks, decompressing DEFLATE with a cap on the output."""
    f.seek(member.data_offset)
    remaining = member.compressed_size
    if not member.compressed:
        while remaining > 0:
            data = f.read(min(chunk, remaining))
            if not data:
                raise CheckpointFormatError("Zip member %r is truncated" % member.name)
            remaining -= len(data)
            yield data
        return
    method = member.method
    if method != zipfile.ZIP_DEFLATED:
        raise CheckpointFormatError(
            "Zip member %r uses compression method %d; only stored and deflated members are read"
            % (member.name, method)
        )
    inflater = zlib.decompressobj(-15)
    produced = 0
    cap = min(limit, max(member.size, 1))
    while remaining > 0 or inflater.unconsumed_tail:
        if inflater.unconsumed_tail:
            data = inflater.unconsumed_tail
        else:
            data = f.read(min(chunk, remaining))
            if not data:
                raise CheckpointFormatError("Zip member %r is truncated" % member.name)
            remaining -= len(data)
        try:
            out = inflater.decompress(data, chunk)
        except zlib.error as exc:
            raise CheckpointFormatError(
                "Zip member %r is corrupt: %s" % (member.name, exc)
            ) from None
        produced += len(out)
        if produced > cap or (
            member.compressed_size and produced > MAX_RATIO * member.compressed_size + (1 << 20)
        ):
            raise CheckpointFormatError(
                "Zip member %r inflates beyond its declared size (a zip bomb?)" % member.name,
                hint="Do not load this file; it is built to exhaust memory.",
            )
        if out:
            yield out
        if inflater.eof:
            break


def member_offset(listing: ZipListing, name: str) -> Optional[int]:
    m = listing.by_name.get(name)
    return None if m is None else m.data_offset
