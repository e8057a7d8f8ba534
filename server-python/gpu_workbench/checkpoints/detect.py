"""Format detection by content, never by file name."""

from __future__ import annotations

import io
import os
import pickletools
import struct

LEGACY_TORCH_MAGIC = bytes.fromhex("8a0a6cfc9c46f9206aa85019")  # LONG1 of 0x1950a86a20f9469cfc6c


def sniff_bytes(head: bytes, file_size: int) -> str:
    """Best guess from the first bytes (at least 512 when the file has them).

    Returns one of: zip, safetensors, gguf, npy, pytorch-legacy, pytorch-tar, pickle,
    json, unknown. Zip archives are refined by the reader (torch, TorchScript, npz).
    """
    if head[:4] == b"PK\x03\x04" or head[:4] == b"PK\x05\x06":
        return "zip"
    if head[:4] == b"GGUF":
        return "gguf"
    if head[:6] == b"\x93NUMPY":
        return "npy"
    if len(head) >= 2 and head[0] == 0x80 and head[1] <= 5:
        if head[2:14] == LEGACY_TORCH_MAGIC:
            return "pytorch-legacy"
        return "pickle"
    if len(head) >= 262 and head[257:262] == b"ustar":
        return "pytorch-tar"
    if len(head) >= 9:
        (n,) = struct.unpack("<Q", head[:8])
        if 2 <= n <= file_size - 8 and head[8:9] == b"{":
            return "safetensors"
    stripped = head.lstrip()
    if stripped[:1] == b"{":
        return "json"
    if head and head[0] in _PROTO0_FIRST and _looks_like_pickle(head, file_size):
        # Protocol 0/1 pickles have no PROTO opcode: decode the first opcodes to be sure.
        return "pickle"
    return "unknown"


# What protocol 0/1 picklers write first (MARK, containers, globals, scalars, strings).
_PROTO0_FIRST = frozenset(b"(}]).NIJKLFSTUVXGcd")


def _looks_like_pickle(head: bytes, file_size: int) -> bool:
    """True when `head` decodes as pickle opcodes (pickletools only decodes, never runs)."""
    ops = 0
    try:
        for opcode, _arg, _pos in pickletools.genops(io.BytesIO(head)):
            ops += 1
            if opcode.name == "STOP":
                return True
            if opcode.name == "PROTO" or ops >= 64:
                return ops >= 2
    except Exception as exc:  # pickletools raises ValueError and friends on bad input
        # Running out of bytes in a longer file is fine; anything else is not a pickle.
        text = str(exc)
        truncated = "remain" in text or "newline" in text or "not enough" in text
        return truncated and len(head) < file_size and ops >= 2
    return len(head) < file_size and ops >= 2


def sniff(path: str) -> str:
    """Detect the format of a file or folder (`folder` for directories)."""
    if os.path.isdir(path):
        return "folder"
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        head = f.read(512)
    return sniff_bytes(head, size)
