"""Tensor statistics read straight from checkpoint bytes, in bounded memory.

`compute` returns the CheckpointStatsResult of protocol.py. Values are never loaded
through torch/pickle: each tensor's bytes are read from its file at `Tensor.offset`,
honouring strides, storage offset, byte order and compressed zip members, in chunks.

Reading (shared with diff.py)
    A tensor is a strided box of elements. Its dimensions are simplified (size-1 dims
    dropped, adjacent dims merged where the strides allow), then cut into boxes of at most
    one chunk of elements (1 Mi elements with numpy, 64 Ki with the stdlib engine), in
    logical order. A box whose byte span is small and dense is read with one read and
    gathered in memory (numpy ``as_strided``, or bytes slicing); a sparse one is read in
    storage order, piece by piece, and permuted back. No read is larger than 16 MiB.
    Statistics do not depend on element order, so for them the dimensions are first sorted
    by stride (storage order), which makes transposed views contiguous.

Sampling
    A tensor with more than `max_elements` elements (default 4 Mi) is sampled: of its
    boxes, evenly spaced ones are read (at least about 64 of them), each contiguous in
    storage order. Reading is also timed: when the boxes planned would take longer than
    the time budget (default 2000 ms per tensor), the remaining boxes are thinned to
    evenly spaced ones that fit. In either case ``sampled`` is true and ``count`` says how
    many elements were read; every statistic, the histogram included, is over those.

Statistics
    min, max, mean and population std are over finite values; NaN and +-Inf are counted
    apart. ``zeroFraction`` is zeros (-0.0 included) over elements read. The histogram
    has `bins` equal-width bins from min to max (edges[0] = min, edges[-1] = max); a value
    goes to bin floor((v - min) * bins / (max - min)), max to the last bin, so bin i holds
    edges[i] <= v < edges[i+1] up to rounding at the edges (both engines compute it the
    same way and agree exactly). When all values are equal the edges are widened by 0.5
    either side (as numpy does). Non-finite results are sent as None, never NaN.
    8-bit types (fp8, int8, bool) and 16-bit types (f16, bf16, int16) of at least
    BIT_PATTERN_MIN elements are counted per bit pattern in one pass, and every statistic
    is derived exactly from those counts. Other types take a pass for the moments (per
    chunk, combined with Chan et al.'s formula) and one for the histogram, over the bytes
    (numpy) or sorted values (stdlib) kept from the first pass when they fit in 64 MiB,
    else read again.

Engines
    numpy when importable, else the standard library (``decode.FORCE_STDLIB`` or
    ``GPUWB_STATS_ENGINE=stdlib`` force it); they give the same counts, min, max and
    histogram, and mean/std equal up to float rounding.
"""

from __future__ import annotations

import array
import bisect
import difflib
import itertools
import math
import operator
import os
import threading
import time
from collections import Counter, OrderedDict
from typing import Any, BinaryIO, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

from ..errors import ApplicationError
from . import decode
from .errors import CheckpointFormatError
from .model import Check, Reading, Tensor, contiguous_strides, is_contiguous, no_check, product
from .zipread import Member, iter_member, list_members

Report = Callable[[float, Optional[str]], None]

DEFAULT_BINS = 32
MAX_BINS = 4096
DEFAULT_TIME_BUDGET_MS = 2000.0
DEFAULT_MAX_ELEMENTS = 4 * 1024 * 1024
CHUNK_ELEMS_NUMPY = 1 << 20
CHUNK_ELEMS_STDLIB = 1 << 16
CHUNK_BYTES = 16 << 20  # no single read is larger
SMALL_SPAN = 1 << 20  # a span this small is read whole even when sparse
DENSITY = 4  # otherwise whole only when span <= DENSITY * bytes wanted
RETAIN_BYTES = 64 << 20  # keep pass-1 bytes for the histogram pass up to this much
MIN_SAMPLE_BOXES = 64
BIT_PATTERN_MIN = 16384  # 16-bit tensors at least this big are counted per bit pattern
FIRST_PASS_SHARE = 0.6  # of the time budget, for wide types (the histogram pass follows)
PICKLED_VALUES = "values are stored inside the pickle and are not read"


def _noop_report(fraction: float, message: Optional[str] = None) -> None:
    pass


class TensorDataError(Exception):
    """A tensor's bytes cannot be read (reported per tensor, not for the whole request)."""


# ---------------------------------------------------------------------------------------
# Byte sources


class _FileSource:
    """Random access to a plain file (os.pread where available)."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._f: BinaryIO = open(path, "rb")  # noqa: SIM115 (closed by Sources.close)
        self.size = os.fstat(self._f.fileno()).st_size
        self._lock = threading.Lock()

    def read(self, pos: int, n: int) -> bytes:
        if pos < 0 or pos + n > self.size:
            raise TensorDataError(
                "the tensor's bytes (%d..%d) extend past the end of %s (%d bytes); "
                "the file may be truncated" % (pos, pos + n, os.path.basename(self.path), self.size)
            )
        if n == 0:
            return b""
        pread = getattr(os, "pread", None)
        if pread is not None:
            parts = []
            got = 0
            while got < n:
                data = pread(self._f.fileno(), n - got, pos + got)
                if not data:
                    raise TensorDataError("%s is shorter than it was" % self.path)
                parts.append(data)
                got += len(data)
            return parts[0] if len(parts) == 1 else b"".join(parts)
        with self._lock:
            self._f.seek(pos)
            data = self._f.read(n)
        if len(data) != n:
            raise TensorDataError("%s is shorter than it was" % self.path)
        return data

    def close(self) -> None:
        self._f.close()


class _MemberSource:
    """Reads from a compressed zip member, decompressing forward; going back restarts."""

    def __init__(self, path: str, member: Member) -> None:
        self.path = path
        self.member = member
        self.size = member.size
        self._f: BinaryIO = open(path, "rb")  # noqa: SIM115 (closed by Sources.close)
        self._restart()

    def _restart(self) -> None:
        self._it: Iterator[bytes] = iter_member(self._f, self.member, self.member.size)
        self._pos = 0  # stream offset of self._buf[0]
        self._buf = b""

    def read(self, pos: int, n: int) -> bytes:
        if pos < 0 or pos + n > self.size:
            raise TensorDataError(
                "the tensor's bytes (%d..%d) extend past the end of zip member %r (%d bytes)"
                % (pos, pos + n, self.member.name, self.size)
            )
        if pos < self._pos:
            self._restart()
        parts: List[bytes] = []
        start, end = pos, pos + n
        while start < end:
            buf_end = self._pos + len(self._buf)
            if start >= buf_end:
                try:
                    chunk = next(self._it, None)
                except CheckpointFormatError as exc:
                    raise TensorDataError(exc.message) from None
                if chunk is None:
                    raise TensorDataError("zip member %r is truncated" % self.member.name)
                self._pos, self._buf = buf_end, chunk
                continue
            a = start - self._pos
            b = min(len(self._buf), end - self._pos)
            parts.append(self._buf[a:b])
            start = self._pos + b
        return b"".join(parts)

    def close(self) -> None:
        self._f.close()


class _OffsetSource:
    """A window of a file (a stored zip member addressed by member-relative offsets)."""

    def __init__(self, inner: _FileSource, start: int, size: int) -> None:
        self._inner = inner
        self._start = start
        self.size = size

    def read(self, pos: int, n: int) -> bytes:
        if pos < 0 or pos + n > self.size:
            raise TensorDataError("the tensor's bytes extend past the end of its zip member")
        return self._inner.read(self._start + pos, n)

    def close(self) -> None:
        self._inner.close()


Source = Any  # _FileSource | _MemberSource | _OffsetSource
MAX_OPEN = 16


class Sources:
    """Open files (and zip members) by tensor, closed together; use as a context manager.

    At most MAX_OPEN are open at once (a folder of shards, an .npz of many members); the
    least recently used is closed first.
    """

    def __init__(self, reading: Reading) -> None:
        self.reading = reading
        base = reading.path
        self._base_dir = base if os.path.isdir(base) else os.path.dirname(base)
        self._open: "OrderedDict[Tuple[str, Optional[str]], Source]" = OrderedDict()
        self._listings: Dict[str, Dict[str, Member]] = {}

    def __enter__(self) -> "Sources":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        for src in self._open.values():
            try:
                src.close()
            except OSError:
                pass
        self._open.clear()

    def path_of(self, tensor: Tensor) -> str:
        if tensor.file is None:
            return self.reading.path
        if os.path.isabs(tensor.file):
            return tensor.file
        return os.path.join(self._base_dir, tensor.file)

    def get(self, tensor: Tensor) -> Source:
        path = self.path_of(tensor)
        key = (path, tensor.member)
        src = self._open.get(key)
        if src is not None:
            self._open.move_to_end(key)
            return src
        try:
            src = self._open_source(path, tensor.member)
        except OSError as exc:
            raise TensorDataError("cannot open %s: %s" % (path, exc.strerror or exc)) from None
        except CheckpointFormatError as exc:
            raise TensorDataError(exc.message) from None
        self._open[key] = src
        while len(self._open) > MAX_OPEN:
            _, old = self._open.popitem(last=False)
            try:
                old.close()
            except OSError:
                pass
        return src

    def _open_source(self, path: str, member_name: Optional[str]) -> Source:
        if member_name is None:
            return _FileSource(path)
        members = self._listings.get(path)
        if members is None:
            with open(path, "rb") as f:
                listing = list_members(f, os.fstat(f.fileno()).st_size)
            members = self._listings[path] = listing.by_name
        member = members.get(member_name)
        if member is None:
            raise TensorDataError(
                "zip member %r is not in %s" % (member_name, os.path.basename(path))
            )
        if member.compressed:
            return _MemberSource(path, member)
        # A stored member: its bytes sit in the file at data_offset.
        return _OffsetSource(_FileSource(path), member.data_offset, member.size)


# ---------------------------------------------------------------------------------------
# Layout: a tensor as a strided box of fixed-size units


class Layout:
    """Where a tensor's units (elements, or blocks for block types) are.

    `shape`/`strides` are simplified (size-1 dims dropped, mergeable dims merged, and in
    storage order when `reorder`); `pos` is the byte offset of unit 0 in its source.
    """

    __slots__ = ("itemsize", "numel", "pos", "shape", "span", "strides", "unit_elems")

    def __init__(
        self,
        shape: List[int],
        strides: List[int],
        itemsize: int,
        pos: int,
        unit_elems: int = 1,
        reorder: bool = False,
    ) -> None:
        if any(s < 0 for s in strides):
            raise TensorDataError("negative strides are not supported")
        if any(n < 0 for n in shape):
            raise TensorDataError("negative dimension in shape %r" % (shape,))
        self.numel = product(shape)
        self.shape, self.strides = simplify(shape, strides, reorder)
        self.itemsize = itemsize
        self.pos = pos
        self.unit_elems = unit_elems
        self.span = span_bytes(self.shape, self.strides, itemsize) if self.numel else 0


def layout_of(tensor: Tensor, *, reorder: bool, itemsize: Optional[int] = None) -> Layout:
    """The Layout of `tensor`, in units its dtype decodes in (or of `itemsize` bytes)."""
    if tensor.offset is None:
        raise TensorDataError(PICKLED_VALUES)
    shape = list(tensor.shape)
    unit = decode.unit(tensor.dtype) if itemsize is None else (1, itemsize)
    if unit is None:
        raise TensorDataError(decode.unsupported_reason(tensor.dtype) or "unsupported dtype")
    elems, nbytes = unit
    if elems > 1:
        if tensor.stride is not None:
            raise TensorDataError("strided views of %s blocks are not supported" % tensor.dtype)
        if tensor.numel % elems:
            raise TensorDataError(
                "%d elements are not a whole number of %s blocks" % (tensor.numel, tensor.dtype)
            )
        return Layout([tensor.numel // elems], [1], nbytes, tensor.offset, elems, reorder)
    strides = list(tensor.stride) if tensor.stride is not None else contiguous_strides(shape)
    if len(strides) != len(shape):
        raise TensorDataError("stride %r does not match shape %r" % (strides, shape))
    return Layout(shape, strides, nbytes, tensor.offset, 1, reorder)


def simplify(
    shape: Sequence[int], strides: Sequence[int], reorder: bool = False
) -> Tuple[List[int], List[int]]:
    """Drop size-1 dims, optionally sort by stride (largest first), merge contiguous dims."""
    dims = [(n, s) for n, s in zip(shape, strides) if n != 1]
    if reorder:
        dims.sort(key=lambda d: -d[1])  # stable: equal strides keep their order
    merged: List[Tuple[int, int]] = []
    for n, s in dims:
        if merged and merged[-1][1] == s * n:
            prev_n, _ = merged[-1]
            merged[-1] = (prev_n * n, s)
        else:
            merged.append((n, s))
    if not merged:
        return [1], [1]
    return [d[0] for d in merged], [d[1] for d in merged]


def span_bytes(shape: Sequence[int], strides: Sequence[int], itemsize: int) -> int:
    """Bytes from the first to one past the last element of a box (strides >= 0)."""
    if product(shape) == 0:
        return 0
    return (sum((n - 1) * s for n, s in zip(shape, strides)) + 1) * itemsize


class BoxPlan:
    """A layout cut into boxes of at most `chunk` units, numbered in (simplified) order.

    The first `k` dims are iterated one index at a time, dim k in runs of `rows`, dims
    after k whole; box(i) is random access so that samples can be spread evenly.
    """

    def __init__(self, layout: Layout, chunk: int) -> None:
        self.layout = layout
        shape = layout.shape
        chunk = max(1, chunk)
        k = 0
        while product(shape[k + 1 :]) > chunk:
            k += 1
        self.k = k
        self.inner = product(shape[k + 1 :])
        self.rows = max(1, chunk // self.inner)
        self.per_prefix = -(-shape[k] // self.rows) if shape[k] else 0
        self.count = product(shape[:k]) * self.per_prefix if layout.numel else 0

    def box(self, i: int) -> Tuple[int, List[int], List[int], int]:
        """(byte position, shape, strides, units) of box i."""
        lay = self.layout
        shape, strides, k = lay.shape, lay.strides, self.k
        p, r = divmod(i, self.per_prefix)
        unit_off = 0
        for d in range(k - 1, -1, -1):
            p, idx = divmod(p, shape[d])
            unit_off += idx * strides[d]
        a = r * self.rows
        b = min(shape[k], a + self.rows)
        unit_off += a * strides[k]
        box_shape = [b - a, *shape[k + 1 :]]
        box_strides = [strides[k], *strides[k + 1 :]]
        return lay.pos + unit_off * lay.itemsize, box_shape, box_strides, (b - a) * self.inner


def evenly_spaced(count: int, k: int) -> List[int]:
    """k indices spread evenly over range(count), one from the middle of each stratum."""
    if k >= count:
        return list(range(count))
    if k <= 0:
        return []
    return [((2 * j + 1) * count) // (2 * k) for j in range(k)]


def read_box(
    src: Source, pos: int, shape: List[int], strides: List[int], itemsize: int, np: Any = None
) -> bytes:
    """The bytes of a strided box, elements in logical (row-major over `shape`) order."""
    n = product(shape)
    span = span_bytes(shape, strides, itemsize)
    if span == n * itemsize and is_contiguous(shape, strides):
        return src.read(pos, span) if span <= CHUNK_BYTES else _read_long(src, pos, span)
    if span <= CHUNK_BYTES and (span <= SMALL_SPAN or span <= DENSITY * n * itemsize):
        return gather(src.read(pos, span), 0, shape, strides, itemsize, np)
    perm = sorted(range(len(shape)), key=lambda d: -strides[d])
    sshape = [shape[d] for d in perm]
    sstrides = [strides[d] for d in perm]
    data = _read_storage_order(src, pos, sshape, sstrides, itemsize, np)
    if perm == list(range(len(shape))):
        return data
    cstrides = contiguous_strides(sshape)
    where = {d: i for i, d in enumerate(perm)}
    return gather(data, 0, shape, [cstrides[where[d]] for d in range(len(shape))], itemsize, np)


def _read_long(src: Source, pos: int, n: int) -> bytes:
    return b"".join(
        src.read(p, min(CHUNK_BYTES, pos + n - p)) for p in range(pos, pos + n, CHUNK_BYTES)
    )


def _read_storage_order(
    src: Source, pos: int, shape: List[int], strides: List[int], itemsize: int, np: Any
) -> bytes:
    """A box whose strides do not increase, read piecewise; row-major bytes over `shape`."""
    n = product(shape)
    span = span_bytes(shape, strides, itemsize)
    if span == n * itemsize and is_contiguous(shape, strides):
        return src.read(pos, span) if span <= CHUNK_BYTES else _read_long(src, pos, span)
    if span <= CHUNK_BYTES and (span <= SMALL_SPAN or span <= DENSITY * n * itemsize):
        return gather(src.read(pos, span), 0, shape, strides, itemsize, np)
    n0, s0 = shape[0], strides[0]
    rest_shape, rest_strides = shape[1:], strides[1:]
    inner_span = span_bytes(rest_shape, rest_strides, itemsize) if rest_shape else itemsize
    step = s0 * itemsize
    rows = 1 if step == 0 else max(1, (CHUNK_BYTES - inner_span) // step + 1)
    if rows >= n0:
        rows = max(1, n0 // 2)
    parts = []
    for a in range(0, n0, rows):
        b = min(n0, a + rows)
        if b - a == 1 and rest_shape:
            parts.append(
                _read_storage_order(src, pos + a * step, rest_shape, rest_strides, itemsize, np)
            )
        else:
            parts.append(
                _read_storage_order(
                    src, pos + a * step, [b - a, *rest_shape], [s0, *rest_strides], itemsize, np
                )
            )
    return b"".join(parts)


def gather(
    buf: bytes, base: int, shape: List[int], strides: List[int], itemsize: int, np: Any = None
) -> bytes:
    """Elements of a strided box inside `buf` (byte `base` = element 0), row-major."""
    n = product(shape)
    if n == 0:
        return b""
    if np is not None:
        flat = np.frombuffer(buf, dtype=np.uint8)
        view = np.lib.stride_tricks.as_strided(
            flat[base:],
            shape=(*shape, itemsize),
            strides=(*(s * itemsize for s in strides), 1),
            writeable=False,
        )
        return view.tobytes()
    row_n, row_s = shape[-1], strides[-1]
    row_bytes = row_n * itemsize
    out = bytearray(n * itemsize)
    k = 0
    outer = itertools.product(*(range(d) for d in shape[:-1]))
    outer_strides = strides[:-1]
    for idx in outer:
        start = base + sum(i * s for i, s in zip(idx, outer_strides)) * itemsize
        if row_s == 1:
            out[k : k + row_bytes] = buf[start : start + row_bytes]
        elif row_s == 0:
            out[k : k + row_bytes] = buf[start : start + itemsize] * row_n
        else:
            step = row_s * itemsize
            stop = start + (row_n - 1) * step + 1
            for b in range(itemsize):
                out[k + b : k + row_bytes : itemsize] = buf[start + b : stop + b : step]
        k += row_bytes
    return bytes(out)


# ---------------------------------------------------------------------------------------
# Statistics


class _Moments:
    """Running statistics of finite values (Chan et al.'s pairwise combination)."""

    __slots__ = ("count", "inf", "m2", "max", "mean", "min", "n", "nan", "zeros")

    def __init__(self) -> None:
        self.count = 0  # elements read
        self.nan = 0
        self.inf = 0
        self.zeros = 0
        self.n = 0  # finite
        self.mean = 0.0
        self.m2 = 0.0
        self.min: Any = None
        self.max: Any = None

    def add(
        self,
        count: int,
        nan: int,
        inf: int,
        zeros: int,
        n: int,
        mn: Any,
        mx: Any,
        mean: float,
        m2: float,
    ) -> None:
        self.count += count
        self.nan += nan
        self.inf += inf
        self.zeros += zeros
        if n == 0:
            return
        self.min = mn if self.min is None or mn < self.min else self.min
        self.max = mx if self.max is None or mx > self.max else self.max
        if self.n == 0:
            self.n, self.mean, self.m2 = n, mean, m2
            return
        total = self.n + n
        delta = mean - self.mean
        self.mean += delta * n / total
        self.m2 += m2 + delta * delta * self.n * n / total
        self.n = total


def _moments_stdlib(values: Any, is_float: bool) -> Tuple[Tuple[Any, ...], List[Any]]:
    """Chunk statistics and the chunk's finite values, sorted (kept for the histogram)."""
    count = len(values)
    nan = inf = 0
    s = sum(values)
    if is_float and not math.isfinite(s):
        nan = sum(1 for v in values if v != v)
        values = [v for v in values if v - v == 0]
        inf = count - nan - len(values)
        s = sum(values)
    ordered = sorted(values)
    n = len(ordered)
    if n == 0:
        return (count, nan, inf, 0, 0, None, None, 0.0, 0.0), ordered
    zeros = bisect.bisect_right(ordered, 0) - bisect.bisect_left(ordered, 0)
    mean = s / n
    sq = sum(map(operator.mul, ordered, ordered))
    if not is_float:  # exact integers: one rounding
        m2 = (n * sq - s * s) / n
    else:
        m2 = sq - s * s / n
        if not m2 >= sq * 2.0**-20:  # cancellation (|mean| >> std) or overflow: two-pass
            dev = list(map((-mean).__add__, ordered))
            m2 = sum(map(operator.mul, dev, dev))
    return (count, nan, inf, zeros, n, ordered[0], ordered[-1], mean, m2), ordered


def _moments_numpy(values: Any, is_float: bool, np: Any, buf: Any) -> Tuple[Any, ...]:
    count = int(values.size)
    zeros = count - int(np.count_nonzero(values))
    nan = inf = 0
    s = float(values.sum(dtype=np.float64))
    if is_float and not math.isfinite(s):
        finite = np.isfinite(values)
        nan = int(np.count_nonzero(np.isnan(values)))
        values = values[finite]
        inf = count - nan - int(values.size)
        s = float(values.sum(dtype=np.float64))
    n = int(values.size)
    if n == 0:
        return count, nan, inf, zeros, 0, None, None, 0.0, 0.0
    mean = s / n
    dev = buf[:n]
    np.subtract(values, mean, out=dev, dtype=np.float64)
    np.square(dev, out=dev)  # not np.dot: BLAS threads crawl on a busy machine
    m2 = float(dev.sum())
    return count, nan, inf, zeros, n, values.min().item(), values.max().item(), mean, m2


def histogram_edges(lo: float, hi: float, bins: int) -> List[float]:
    """`bins` + 1 equal-width edges from lo to hi; widened when lo == hi."""
    lo, hi = float(lo), float(hi)
    if lo == hi:
        lo, hi = lo - 0.5, hi + 0.5
        if lo == hi:  # too large for +-0.5 to register
            lo, hi = lo - abs(lo) * 2.0**-20, hi + abs(hi) * 2.0**-20
    width = hi - lo
    if math.isfinite(width):
        edges = [lo + width * i / bins for i in range(bins + 1)]
    else:
        edges = [lo * (1.0 - i / bins) + hi * (i / bins) for i in range(bins + 1)]
    edges[0], edges[-1] = lo, hi
    return edges


class Binning:
    """Which histogram bin a finite value falls in, computed the same way by both engines.

    bin(v) = floor((v - min) * bins / (max - min)) in float64, the top value going to the
    last bin (halved operands when max - min overflows). Values within rounding of an edge
    may land in the neighbouring bin; the two engines always agree.
    """

    def __init__(self, lo: float, hi: float, bins: int) -> None:
        self.edges = histogram_edges(lo, hi, bins)
        lo, hi = self.edges[0], self.edges[-1]
        self.bins = bins
        self.half = not math.isfinite(hi - lo)
        if self.half:
            self.origin, self.scale = lo * 0.5, bins / (hi * 0.5 - lo * 0.5)
        else:
            self.origin, self.scale = lo, bins / (hi - lo)

    def index(self, v: Any) -> int:
        x = v * 0.5 if self.half else v
        i = int((x - self.origin) * self.scale)
        return self.bins - 1 if i >= self.bins else (0 if i < 0 else i)

    def count_sorted(self, values: Sequence[Any]) -> List[int]:
        """Counts per bin of sorted values (binary search for each bin's first value)."""
        n = len(values)
        cuts = [0]
        start = 0
        for k in range(1, self.bins):
            a, b = start, n
            while a < b:
                m = (a + b) // 2
                if self.index(values[m]) < k:
                    a = m + 1
                else:
                    b = m
            cuts.append(a)
            start = a
        cuts.append(n)
        return [cuts[i + 1] - cuts[i] for i in range(self.bins)]

    def count_numpy(self, values: Any, np: Any, buf: Any) -> List[int]:
        x = buf[: values.size]
        if self.half:
            np.multiply(values, 0.5, out=x, dtype=np.float64)
            np.subtract(x, self.origin, out=x)
        else:
            np.subtract(values, self.origin, out=x, dtype=np.float64)
        np.multiply(x, self.scale, out=x)
        np.minimum(x, self.bins - 1, out=x)
        np.maximum(x, 0, out=x)
        return np.bincount(x.astype(np.intp), minlength=self.bins).tolist()


class _Job:
    """One tensor's statistics."""

    def __init__(
        self,
        tensor: Tensor,
        sources: Sources,
        engine: str,
        np: Any,
        bins: int,
        budget_s: float,
        max_elements: int,
        check: Check,
        progress: Callable[[float], None],
    ) -> None:
        self.tensor = tensor
        self.sources = sources
        self.engine = engine
        self.np = np
        self.bins = bins
        self.budget_s = budget_s
        self.max_elements = max_elements
        self.check = check
        self.progress = progress
        self.sampled = False
        self._buf: Any = None

    def _buffer(self, n: int) -> Any:
        """A float64 scratch array of at least n elements (numpy engine), reused per chunk."""
        if self._buf is None or self._buf.size < n:
            self._buf = self.np.empty(n, dtype=self.np.float64)
        return self._buf

    def run(self) -> Dict[str, Any]:
        t = self.tensor
        lay = layout_of(t, reorder=True)
        if lay.numel == 0:
            return _result(t, 0, False, None, None, None, None, 0, 0, None, None, None)
        src = self.sources.get(t)
        chunk_elems = CHUNK_ELEMS_NUMPY if self.np is not None else CHUNK_ELEMS_STDLIB
        chunk = max(1, chunk_elems // lay.unit_elems)
        target = max(1, -(-self.max_elements // lay.unit_elems))
        if lay.numel > target:  # sample: smaller boxes, evenly spaced
            chunk = min(chunk, max(1, 1024 // lay.unit_elems, target // MIN_SAMPLE_BOXES))
            plan = BoxPlan(lay, chunk)
            order = evenly_spaced(plan.count, max(1, -(-target // chunk)))
        else:
            plan = BoxPlan(lay, chunk)
            order = list(range(plan.count))
        self.sampled = len(order) < plan.count
        if lay.unit_elems == 1 and (
            lay.itemsize == 1 or (lay.itemsize == 2 and lay.numel >= BIT_PATTERN_MIN)
        ):
            return self._by_bit_pattern(src, plan, order)
        return self._by_moments(src, plan, order)

    # -- the plan, thinned when the time budget would be exceeded --

    def _boxes(self, plan: BoxPlan, order: List[int], budget_s: float) -> Iterator[int]:
        started = time.perf_counter()
        done = 0
        while done < len(order):
            self.check()
            yield order[done]
            done += 1
            self.progress(done / len(order))
            left = len(order) - done
            if not left:
                break
            elapsed = time.perf_counter() - started
            per_box = elapsed / done
            if elapsed + per_box * left > budget_s:
                allowed = int((budget_s - elapsed) / per_box) if per_box > 0 else left
                if allowed < left:
                    self.sampled = True
                    rest = order[done:]
                    order = order[:done] + [rest[i] for i in evenly_spaced(len(rest), allowed)]

    def _read(self, src: Source, plan: BoxPlan, i: int) -> Tuple[bytes, int]:
        pos, shape, strides, units = plan.box(i)
        return read_box(src, pos, shape, strides, plan.layout.itemsize, self.np), units

    # -- 8/16-bit types: count bit patterns, derive everything exactly --

    def _by_bit_pattern(self, src: Source, plan: BoxPlan, order: List[int]) -> Dict[str, Any]:
        t = self.tensor
        np = self.np
        size = plan.layout.itemsize
        counts: Any = None
        code = ""
        if np is not None:
            counts = np.zeros(1 << (8 * size), dtype=np.int64)
            code = ("<" if t.byte_order == "little" else ">") + ("u1" if size == 1 else "u2")
        counter: Counter = Counter()
        for i in self._boxes(plan, order, self.budget_s):
            data, _ = self._read(src, plan, i)
            if np is not None:
                counts += np.bincount(np.frombuffer(data, dtype=code), minlength=counts.size)
            elif size == 1:
                counter.update(data)
            else:
                words = array.array("H", data)
                if t.byte_order != decode.NATIVE_ORDER:
                    words.byteswap()
                counter.update(words)
        if np is not None:
            nonzero = np.flatnonzero(counts)
            pairs = list(zip(nonzero.tolist(), counts[nonzero].tolist()))
        else:
            pairs = sorted(counter.items())
        return self._from_counts(pairs, size)

    def _from_counts(self, pairs: List[Tuple[int, int]], size: int) -> Dict[str, Any]:
        t = self.tensor
        raw = b"".join(code.to_bytes(size, "little") for code, _ in pairs)
        values = decode.decode_stdlib(raw, t.dtype, "little")
        count = nan = inf = zeros = 0
        finite: List[Tuple[Any, int]] = []
        for v, (_, c) in zip(values, pairs):
            count += c
            if v != v:
                nan += c
            elif v - v != 0:
                inf += c
            else:
                if v == 0:
                    zeros += c
                finite.append((v, c))
        mn = mx = mean = std = None
        hist = None
        if finite:
            finite.sort()
            n = sum(c for _, c in finite)
            mn, mx = finite[0][0], finite[-1][0]
            try:
                mean = math.fsum(v * c for v, c in finite) / n
                std = math.sqrt(math.fsum(c * (v - mean) ** 2 for v, c in finite) / n)
            except (OverflowError, ValueError):
                mean = std = None
            binning = Binning(mn, mx, self.bins)
            hcounts = [0] * self.bins
            for v, c in finite:
                hcounts[binning.index(v)] += c
            hist = {"edges": binning.edges, "counts": hcounts}
        return _result(
            t, count, self.sampled, mn, mx, mean, std, nan, inf, zeros / count if count else None,
            hist, None,
        )  # fmt: skip

    # -- wider types: moments pass, then a histogram pass --

    def _by_moments(self, src: Source, plan: BoxPlan, order: List[int]) -> Dict[str, Any]:
        """Pass 1: moments per chunk. Pass 2: histogram, over the bytes (numpy) or sorted
        values (stdlib) kept from pass 1 when they fit in RETAIN_BYTES, else re-read."""
        t = self.tensor
        np = self.np
        is_float = decode.is_float(t.dtype)
        acc = _Moments()
        kept: List[Any] = []
        kept_bytes = 0
        keep = True
        visited: List[int] = []
        kept_code = "f" if t.dtype == "F32" else "d"  # exact for every value kept
        for i in self._boxes(plan, order, self.budget_s * FIRST_PASS_SHARE):
            data, _ = self._read(src, plan, i)
            visited.append(i)
            if np is not None:
                values = decode.decode_numpy(data, t.dtype, t.byte_order, np)
                acc.add(*_moments_numpy(values, is_float, np, self._buffer(values.size)))
                piece: Any = data
            else:
                values = decode.decode_stdlib(data, t.dtype, t.byte_order)
                moments, ordered = _moments_stdlib(values, is_float)
                acc.add(*moments)
                piece = array.array(kept_code, ordered) if keep else None
            if keep:
                kept_bytes += len(piece) * (1 if np is not None else piece.itemsize)
                if kept_bytes <= RETAIN_BYTES:
                    kept.append(piece)
                else:
                    keep, kept = False, []
        hist = None
        if acc.n:
            binning = Binning(acc.min, acc.max, self.bins)
            hcounts = [0] * self.bins
            pieces: Iterator[Any] = (
                iter(kept) if keep else (self._read(src, plan, i)[0] for i in visited)
            )
            for piece in pieces:
                self.check()
                if np is not None:
                    f = decode.decode_numpy(piece, t.dtype, t.byte_order, np)
                    if is_float and not math.isfinite(float(f.sum(dtype=np.float64))):
                        f = f[np.isfinite(f)]
                    part = binning.count_numpy(f, np, self._buffer(f.size))
                elif keep:
                    part = binning.count_sorted(piece)
                else:
                    values = decode.decode_stdlib(piece, t.dtype, t.byte_order)
                    if is_float and not math.isfinite(sum(values)):
                        values = [v for v in values if v - v == 0]
                    part = binning.count_sorted(sorted(values))
                hcounts = [a + b for a, b in zip(hcounts, part)]
            hist = {"edges": binning.edges, "counts": hcounts}
        std = math.sqrt(acc.m2 / acc.n) if acc.n and acc.m2 >= 0 else None
        return _result(
            t, acc.count, self.sampled, acc.min, acc.max, acc.mean if acc.n else None, std,
            acc.nan, acc.inf, acc.zeros / acc.count if acc.count else None, hist, None,
        )  # fmt: skip


def _num(v: Any) -> Optional[float]:
    if v is None:
        return None
    f = float(v)
    return f if math.isfinite(f) else None


def _result(
    t: Tensor,
    count: int,
    sampled: bool,
    mn: Any,
    mx: Any,
    mean: Any,
    std: Any,
    nan: int,
    inf: int,
    zero_fraction: Optional[float],
    histogram: Optional[Dict[str, Any]],
    error: Optional[str],
) -> Dict[str, Any]:
    return {
        "name": t.name,
        "dtype": t.dtype,
        "numel": t.numel,
        "count": count,
        "sampled": sampled,
        "min": _num(mn),
        "max": _num(mx),
        "mean": _num(mean),
        "std": _num(std),
        "nanCount": nan,
        "infCount": inf,
        "zeroFraction": zero_fraction,
        "histogram": histogram,
        "error": error,
    }


def _error_result(t: Tensor, message: str) -> Dict[str, Any]:
    return _result(t, 0, False, None, None, None, None, 0, 0, None, None, message)


def select_tensors(reading: Reading, names: Optional[List[str]]) -> List[Tensor]:
    """The tensors named (in that order), or all; unknown names raise NotFound."""
    if names is None:
        return list(reading.tensors)
    by_name: Dict[str, Tensor] = {}
    for t in reading.tensors:
        by_name.setdefault(t.name, t)
    missing = [n for n in names if n not in by_name]
    if missing:
        close = difflib.get_close_matches(missing[0], list(by_name), n=5, cutoff=0.5)
        message = "No tensor named %r in %s" % (missing[0], os.path.basename(reading.path))
        if len(missing) > 1:
            message += " (and %d more missing)" % (len(missing) - 1)
        if close:
            message += "; close matches: %s" % ", ".join(close)
        raise ApplicationError(
            "NotFound",
            message,
            hint="Close matches: %s" % ", ".join(close) if close else None,
        )
    return [by_name[n] for n in names]


def compute(
    path: str,
    *,
    tensors: Optional[List[str]] = None,
    bins: Optional[int] = None,
    time_budget_ms: Optional[float] = None,
    max_elements: Optional[int] = None,
    check: Check = no_check,
    report: Report = _noop_report,
    engine: Optional[str] = None,
    reading: Optional[Reading] = None,
) -> Dict[str, Any]:
    """CheckpointStatsResult for the tensors of `path` (see the module docstring).

    `engine` ("numpy" | "stdlib") overrides the default (numpy when importable);
    `reading` skips reading the checkpoint's structure (tests with hand-built tensors).
    """
    started = time.perf_counter()
    if reading is None:
        from .readers import read_cached

        reading = read_cached(path, check)
    chosen = select_tensors(reading, tensors)
    name = decode.engine_name(engine)
    np = decode.numpy_module() if name == "numpy" else None
    if np is None:
        name = "stdlib"
    nbins = DEFAULT_BINS if bins is None else max(1, min(MAX_BINS, int(bins)))
    budget_s = (DEFAULT_TIME_BUDGET_MS if time_budget_ms is None else time_budget_ms) / 1000.0
    budget_s = max(0.0, budget_s)
    limit = DEFAULT_MAX_ELEMENTS if max_elements is None else max(1, int(max_elements))
    out: List[Dict[str, Any]] = []
    total = len(chosen)
    with Sources(reading) as sources:
        for index, t in enumerate(chosen):
            check()
            report(index / total if total else 1.0, t.name)

            def progress(frac: float, index: int = index) -> None:
                report((index + min(1.0, frac)) / total, None)

            reason = decode.unsupported_reason(t.dtype)
            if t.offset is None:
                out.append(_error_result(t, PICKLED_VALUES))
                continue
            if reason is not None:
                out.append(_error_result(t, reason))
                continue
            job = _Job(t, sources, name, np, nbins, budget_s, limit, check, progress)
            try:
                if np is not None:
                    with np.errstate(all="ignore"):  # inf - inf in sums: handled, not warned
                        out.append(job.run())
                else:
                    out.append(job.run())
            except TensorDataError as exc:
                out.append(_error_result(t, str(exc)))
            except (ValueError, OverflowError, MemoryError) as exc:
                out.append(_error_result(t, "cannot read values: %s" % exc))
    report(1.0, None)
    return {
        "path": reading.path,
        "engine": name,
        "stats": out,
        "elapsedMs": round((time.perf_counter() - started) * 1000.0, 3),
    }


__all__ = [
    "PICKLED_VALUES",
    "BoxPlan",
    "Layout",
    "Sources",
    "TensorDataError",
    "compute",
    "evenly_spaced",
    "gather",
    "histogram_edges",
    "layout_of",
    "read_box",
    "select_tensors",
    "simplify",
]
