"""Writers from the specifications (safetensors README; numpy.lib.format) shared by the
statistics and diff tests."""

from __future__ import annotations

import json
import struct
import zipfile
from typing import Any, Dict, List, Optional, Sequence, Tuple


def write_safetensors(
    path: str,
    tensors: Sequence[Tuple[str, str, List[int], bytes]],
    metadata: Optional[Dict[str, str]] = None,
) -> str:
    header: Dict[str, Any] = {}
    if metadata is not None:
        header["__metadata__"] = metadata
    offset = 0
    for name, dtype, shape, data in tensors:
        header[name] = {
            "dtype": dtype,
            "shape": shape,
            "data_offsets": [offset, offset + len(data)],
        }
        offset += len(data)
    text = json.dumps(header).encode("utf-8")
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(t[3] for t in tensors))
    return path


def npy_bytes(descr: str, shape: Tuple[int, ...], data: bytes, fortran: bool = False) -> bytes:
    header = "{'descr': %r, 'fortran_order': %s, 'shape': %r, }" % (descr, fortran, shape)
    pad = -(10 + len(header) + 1) % 64
    header += " " * pad + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header.encode("latin1") + data


def write_npz(path: str, members: Dict[str, bytes], compressed: bool) -> str:
    method = zipfile.ZIP_DEFLATED if compressed else zipfile.ZIP_STORED
    with zipfile.ZipFile(path, "w", compression=method) as z:
        for name, data in members.items():
            z.writestr(name + ".npy", data)
    return path


def pack(fmt: str, values: Sequence[Any], order: str = "<") -> bytes:
    return struct.pack(order + "%d%s" % (len(values), fmt), *values)
