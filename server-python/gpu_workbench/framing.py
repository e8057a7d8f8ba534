"""LSP base-protocol framing: ``Content-Length: N\\r\\n\\r\\n`` followed by N bytes of JSON.

The reader never gives up on a malformed stream: it logs the problem and resynchronises
by scanning forward for the next ``Content-Length:`` header.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from typing import Any, BinaryIO, Optional, Tuple

log = logging.getLogger(__name__)

# Above kernel/execute's 64 MiB code limit, so oversized code gets a proper error reply.
MAX_CONTENT_LENGTH = 128 * 1024 * 1024
# A header block this long without its blank line is garbage, not a slow header.
MAX_HEADER_BYTES = 8 * 1024
_CHUNK = 64 * 1024
_HEADER_END = b"\r\n\r\n"
_CONTENT_LENGTH = re.compile(rb"content-length:", re.IGNORECASE)
_PATTERN_LEN = len(b"content-length:")
_LEADING_WHITESPACE = b"\r\n\t "


def parse_header_block(block: bytes) -> Tuple[Optional[int], Optional[str]]:
    """Parse the header lines before the blank line.

    Returns ``(content_length, None)`` on success or ``(None, problem)`` when the block is
    malformed (missing/invalid/conflicting Content-Length, bad line, non-ASCII).
    """
    try:
        text = block.decode("ascii")
    except UnicodeDecodeError:
        return None, "header contains non-ASCII bytes"
    length: Optional[int] = None
    for line in text.split("\r\n"):
        name, sep, value = line.partition(":")
        if (
            not sep
            or not name
            or name.strip() != name
            or any(ord(c) < 0x20 for c in line if c != "\t")
        ):
            return None, "malformed header line %r" % (line[:60],)
        if name.lower() != "content-length":
            continue  # Content-Type and unknown headers are allowed and ignored
        value = value.strip(" \t")
        # isdigit() also accepts non-ASCII digits, but the block is ASCII by now; the
        # length cap keeps int() away from absurd digit strings.
        if not value.isdigit() or len(value) > 18:
            return None, "invalid Content-Length %r" % (value[:30],)
        number = int(value)
        if length is not None and number != length:
            return None, "conflicting Content-Length headers"
        length = number
    if length is None:
        return None, "header has no Content-Length"
    return length, None


class FrameReader:
    """Reads framed message bodies from a binary stream."""

    def __init__(self, stream: BinaryIO, max_content_length: int = MAX_CONTENT_LENGTH) -> None:
        self._stream = stream
        self._max = max_content_length
        self._buf = bytearray()
        # Counts framing problems so tests and diagnostics can see resyncs happened.
        self.problems = 0

    def read_message(self) -> Optional[bytes]:
        """Return the next message body, or None at end of stream.

        Framing problems are logged and skipped; they never raise.
        """
        while True:
            self._drop_leading_whitespace()
            if not self._buf:
                if not self._fill():
                    return None
                continue
            end = self._buf.find(_HEADER_END)
            if end < 0:
                if len(self._buf) > MAX_HEADER_BYTES:
                    self._problem("header not terminated within %d bytes" % MAX_HEADER_BYTES)
                    if not self._skip_to_header(1):
                        return None
                    continue
                if not self._fill():
                    self._problem(
                        "end of stream inside a header (%d bytes dropped)" % len(self._buf)
                    )
                    return None
                continue
            length, problem = parse_header_block(bytes(self._buf[:end]))
            if problem is not None or length is None:
                self._problem(problem or "bad header")
                if not self._skip_to_header(1):
                    return None
                continue
            del self._buf[: end + len(_HEADER_END)]
            if length > self._max:
                # Refuse to buffer it; the body is treated as garbage up to the next header.
                self._problem("Content-Length %d exceeds the %d byte limit" % (length, self._max))
                if not self._skip_to_header(0):
                    return None
                continue
            body = self._take(length)
            if body is None:
                self._problem("end of stream inside a %d byte body" % length)
            return body

    def _problem(self, message: str) -> None:
        self.problems += 1
        log.warning("framing: %s; resynchronising", message)

    def _fill(self) -> bool:
        chunk = self._read(_CHUNK)
        if not chunk:
            return False
        self._buf += chunk
        return True

    def _read(self, size: int) -> bytes:
        read1 = getattr(self._stream, "read1", None)
        if read1 is not None:
            return read1(size)
        return self._stream.read(size)

    def _drop_leading_whitespace(self) -> None:
        # Stray newlines between frames are common (e.g. a client's trailing "\n") and harmless.
        if self._buf and self._buf[0] in _LEADING_WHITESPACE:
            del self._buf[: len(self._buf) - len(self._buf.lstrip(_LEADING_WHITESPACE))]

    def _skip_to_header(self, start: int) -> bool:
        """Discard bytes until the buffer starts at a ``Content-Length:`` found at or after `start`."""
        while True:
            match = _CONTENT_LENGTH.search(self._buf, start)
            if match is not None:
                del self._buf[: match.start()]
                return True
            # Keep a tail that could be the beginning of a header split across reads, but
            # always drop at least `start` bytes so the search makes progress.
            drop = max(len(self._buf) - (_PATTERN_LEN - 1), start, 0)
            del self._buf[:drop]
            start = 0
            if not self._fill():
                return False

    def _take(self, length: int) -> Optional[bytes]:
        if len(self._buf) >= length:
            body = bytes(self._buf[:length])
            del self._buf[:length]
            return body
        parts = [bytes(self._buf)]
        need = length - len(self._buf)
        self._buf.clear()
        while need > 0:
            chunk = self._read(min(need, 1 << 20))
            if not chunk:
                return None
            parts.append(chunk)
            need -= len(chunk)
        return b"".join(parts)


def encode_message(message: Any) -> bytes:
    """Serialize a message to compact UTF-8 JSON (raises ValueError/TypeError if impossible)."""
    try:
        return json.dumps(
            message, ensure_ascii=False, allow_nan=False, separators=(",", ":")
        ).encode("utf-8")
    except UnicodeEncodeError:
        # Lone surrogates (legal in JSON escapes, illegal in UTF-8) survive only as \\u escapes.
        return json.dumps(
            message, ensure_ascii=True, allow_nan=False, separators=(",", ":")
        ).encode("ascii")


class FrameWriter:
    """Writes framed messages; one lock keeps frames from different threads whole."""

    def __init__(self, stream: BinaryIO) -> None:
        self._stream = stream
        self._lock = threading.Lock()

    def write(self, message: Any) -> None:
        """Encode and write one message (ValueError/TypeError if unencodable, OSError if closed)."""
        body = encode_message(message)
        header = ("Content-Length: %d\r\n\r\n" % len(body)).encode("ascii")
        with self._lock:
            self._stream.write(header + body if len(body) < _CHUNK else header)
            if len(body) >= _CHUNK:
                self._stream.write(body)
            self._stream.flush()
