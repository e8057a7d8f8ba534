"""A symbolic pickle interpreter: what a pickle would build, without importing or calling anything.

Every opcode of protocols 0-5 is understood. Instead of importing, GLOBAL / STACK_GLOBAL /
INST produce a `Global(module, name)` token (classified in `Safety` as it is met); instead
of calling, REDUCE / NEWOBJ / NEWOBJ_EX / OBJ / INST produce `Call` nodes, and BUILD
records the state on them. Containers become plain Python values (dict, list, tuple, set),
strings and numbers stay what they are. Persistent ids go to an optional hook.

The byte stream is read linearly, as CPython's C unpickler does; FRAME boundaries are
checked and a frame that an opcode crosses is reported (scanners that honour frames see a
different pickle than the one `pickle.load` runs).

Limits bound opcodes, stack, memo, input size and memo expansion ("billion laughs"). A
limit or a malformed stream raises `PickleError` (a CheckpointFormatError) carrying what was
decoded so far; the globals met before the failure are already recorded in `Safety`.
Nothing but CheckpointFormatError (or Cancelled, from `check`) escapes.
"""

from __future__ import annotations

import codecs
import struct

# The table `pickle` uses to map Python 2 names (fix_imports); data only.
from _compat_pickle import IMPORT_MAPPING, NAME_MAPPING
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

from . import safety as _safety
from .errors import CheckpointFormatError
from .model import Check, GlobalRef, Safety, gc_paused, no_check

# ---- the values a pickle decodes to ----


class Global:
    """An imported name, exactly as written in the pickle (dotted names kept)."""

    __slots__ = ("module", "name")

    def __init__(self, module: str, name: str) -> None:
        self.module = module
        self.name = name

    @property
    def full(self) -> str:
        return self.module + "." + self.name

    def __eq__(self, other: object) -> bool:
        return type(other) is Global and other.module == self.module and other.name == self.name

    def __hash__(self) -> int:
        return hash((self.module, self.name))

    def __repr__(self) -> str:
        return "Global(%s.%s)" % (self.module, self.name)


class Call:
    """What `func(*args, **kwargs)` would return, with what BUILD/SETITEM/APPEND add to it.

    kind: "reduce" | "newobj" | "newobj_ex" | "obj" | "inst".
    """

    __slots__ = ("args", "func", "items", "kind", "kwargs", "list_items", "state")

    def __init__(self, func: Any, args: Any, kind: str, kwargs: Any = None) -> None:
        self.func = func
        self.args = args
        self.kind = kind
        self.kwargs = kwargs
        self.state: Any = None  # BUILD argument (merged when BUILD runs twice on dicts)
        self.items: Optional[Dict[Any, Any]] = None  # SETITEM(S) on the object
        self.list_items: Optional[List[Any]] = None  # APPEND(S) / ADDITEMS on the object

    @property
    def global_name(self) -> Optional[str]:
        f = self.func
        return f.module + "." + f.name if type(f) is Global else None

    def __repr__(self) -> str:
        return "Call(%r, %d args)" % (
            self.func,
            len(self.args) if isinstance(self.args, tuple) else -1,
        )


class PersistentId:
    """A persistent id met without a `persistent_load` hook."""

    __slots__ = ("pid",)

    def __init__(self, pid: Any) -> None:
        self.pid = pid

    def __repr__(self) -> str:
        return "PersistentId(%r)" % (self.pid,)


class Buffer:
    """An out-of-band buffer (protocol 5 NEXT_BUFFER); its bytes are not in the pickle."""

    __slots__ = ("index", "readonly")

    def __init__(self, index: int) -> None:
        self.index = index
        self.readonly = False


class Blob:
    """A string or bytes payload too large to copy: `length` bytes at `offset` of the data."""

    __slots__ = ("kind", "length", "offset")

    def __init__(self, kind: str, offset: int, length: int) -> None:
        self.kind = kind  # "bytes" | "bytearray" | "str"
        self.offset = offset
        self.length = length

    def __repr__(self) -> str:
        return "Blob(%s, %d bytes at %d)" % (self.kind, self.length, self.offset)


class BytesAt(bytes):
    """Bytes from a BINBYTES-style opcode; `at` is the payload's offset in the data."""

    at = -1


class ByteArrayAt(bytearray):
    """A bytearray from BYTEARRAY8; `at` is the payload's offset in the data."""

    at = -1


class Unresolved:
    """A value pickle.load could not produce (a memo entry that was never stored)."""

    __slots__ = ("why",)

    def __init__(self, why: str) -> None:
        self.why = why

    def __repr__(self) -> str:
        return "Unresolved(%s)" % self.why


class Key:
    """An unhashable value used as a dict key or set element, hashed by identity."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value


# ---- limits and errors ----


class Limits:
    """Resource limits; the defaults pass a 100k-tensor state dict (~30 opcodes per tensor)."""

    def __init__(
        self,
        *,
        max_opcodes: int = 20_000_000,
        max_stack: int = 2_000_000,
        max_marks: int = 100_000,
        max_memo: int = 4_000_000,
        max_bytes: int = 1 << 30,
        max_get_ratio: float = 50.0,
        min_gets_for_ratio: int = 10_000,
        max_inline_bytes: int = 64 << 20,
        max_text_line: int = 1 << 20,
        max_int_digits: int = 4300,
        check_every: int = 4096,
    ) -> None:
        self.max_opcodes = max_opcodes
        self.max_stack = max_stack
        self.max_marks = max_marks
        self.max_memo = max_memo
        self.max_bytes = max_bytes
        self.max_get_ratio = max_get_ratio
        self.min_gets_for_ratio = min_gets_for_ratio
        self.max_inline_bytes = max_inline_bytes
        self.max_text_line = max_text_line
        self.max_int_digits = max_int_digits
        self.check_every = max(1, check_every)


DEFAULT_LIMITS = Limits()


class PickleError(CheckpointFormatError):
    """A malformed pickle or a limit hit; `partial` is what was decoded before it."""

    def __init__(self, message: str, *, partial: Any, position: int, limit: bool) -> None:
        super().__init__(message)
        self.partial = partial
        self.position = position
        self.limit = limit  # a resource limit (rather than malformed bytes)


class Result:
    __slots__ = ("end", "opcodes", "protocol", "value")

    def __init__(self, value: Any, end: int, protocol: int, opcodes: int) -> None:
        self.value = value
        self.end = end  # offset just past STOP
        self.protocol = protocol
        self.opcodes = opcodes


class _Stop(Exception):
    def __init__(self, pos: int) -> None:
        self.pos = pos


class _Frame(Exception):
    def __init__(self, pos: int) -> None:
        self.pos = pos


class _Abort(Exception):
    def __init__(self, message: str, limit: bool = False) -> None:
        self.message = message
        self.limit = limit


Data = Union[bytes, bytearray, Any]  # bytes, bytearray or an mmap.mmap (needs .find)

OPCODE_NAMES: Dict[int, str] = {
    ord(c): n
    for c, n in (
        ("(", "MARK"),
        (".", "STOP"),
        ("0", "POP"),
        ("1", "POP_MARK"),
        ("2", "DUP"),
        ("F", "FLOAT"),
        ("I", "INT"),
        ("J", "BININT"),
        ("K", "BININT1"),
        ("L", "LONG"),
        ("M", "BININT2"),
        ("N", "NONE"),
        ("P", "PERSID"),
        ("Q", "BINPERSID"),
        ("R", "REDUCE"),
        ("S", "STRING"),
        ("T", "BINSTRING"),
        ("U", "SHORT_BINSTRING"),
        ("V", "UNICODE"),
        ("X", "BINUNICODE"),
        ("a", "APPEND"),
        ("b", "BUILD"),
        ("c", "GLOBAL"),
        ("d", "DICT"),
        ("}", "EMPTY_DICT"),
        ("e", "APPENDS"),
        ("g", "GET"),
        ("h", "BINGET"),
        ("i", "INST"),
        ("j", "LONG_BINGET"),
        ("l", "LIST"),
        ("]", "EMPTY_LIST"),
        ("o", "OBJ"),
        ("p", "PUT"),
        ("q", "BINPUT"),
        ("r", "LONG_BINPUT"),
        ("s", "SETITEM"),
        ("t", "TUPLE"),
        (")", "EMPTY_TUPLE"),
        ("u", "SETITEMS"),
        ("G", "BINFLOAT"),
        ("\x80", "PROTO"),
        ("\x81", "NEWOBJ"),
        ("\x82", "EXT1"),
        ("\x83", "EXT2"),
        ("\x84", "EXT4"),
        ("\x85", "TUPLE1"),
        ("\x86", "TUPLE2"),
        ("\x87", "TUPLE3"),
        ("\x88", "NEWTRUE"),
        ("\x89", "NEWFALSE"),
        ("\x8a", "LONG1"),
        ("\x8b", "LONG4"),
        ("B", "BINBYTES"),
        ("C", "SHORT_BINBYTES"),
        ("\x8c", "SHORT_BINUNICODE"),
        ("\x8d", "BINUNICODE8"),
        ("\x8e", "BINBYTES8"),
        ("\x8f", "EMPTY_SET"),
        ("\x90", "ADDITEMS"),
        ("\x91", "FROZENSET"),
        ("\x92", "NEWOBJ_EX"),
        ("\x93", "STACK_GLOBAL"),
        ("\x94", "MEMOIZE"),
        ("\x95", "FRAME"),
        ("\x96", "BYTEARRAY8"),
        ("\x97", "NEXT_BUFFER"),
        ("\x98", "READONLY_BUFFER"),
    )
}

_U32 = struct.Struct("<I")
_I32 = struct.Struct("<i")
_U16 = struct.Struct("<H")
_U64 = struct.Struct("<Q")
_F64BE = struct.Struct(">d")
_ESCAPE_DECODE = codecs.escape_decode  # type: ignore[attr-defined]


def describe(value: Any) -> str:
    """A short description of a decoded value for messages."""
    if type(value) is Global:
        return value.full
    if type(value) is Call:
        return "the result of calling %s" % describe(value.func)
    if isinstance(value, (str, bytes)):
        text = repr(value)
        return text if len(text) <= 60 else text[:57] + "..."
    if value is None or isinstance(value, (bool, int, float)):
        return repr(value)
    return "a %s" % type(value).__name__


def hashable(value: Any) -> Any:
    """`value` if it can be a dict key, else a `Key` wrapping it."""
    try:
        hash(value)
    except TypeError:
        return Key(value)
    return value


def _decode_str8(raw: bytes) -> str:
    """Protocol 0-2 8-bit strings: UTF-8 as torch.load decodes them, else Latin-1."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def _decode_utf8(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("utf-8", "backslashreplace")


def interpret(
    data: bytes,
    *,
    where: str,
    safety: Safety,
    check: Check = no_check,
    persistent_load: Optional[Callable[[Any], Any]] = None,
    limits: Optional[Limits] = None,
) -> Any:
    """The object the pickle in `data` would build (symbolically); see the module doc."""
    return run(
        data,
        where=where,
        safety=safety,
        check=check,
        persistent_load=persistent_load,
        limits=limits,
    ).value


def run(
    data: Data,
    *,
    where: str,
    safety: Safety,
    check: Check = no_check,
    persistent_load: Optional[Callable[[Any], Any]] = None,
    limits: Optional[Limits] = None,
    start: int = 0,
    end: Optional[int] = None,
) -> Result:
    """Interpret one pickle starting at `start` (up to `end`); the Result says where it ended.

    Call again from `result.end` for concatenated pickles (legacy torch files).
    """
    lim = limits or DEFAULT_LIMITS
    size = len(data)
    stop_at = size if end is None else max(0, min(end, size))
    safety.pickles += 1
    if stop_at - start > lim.max_bytes:
        text = "%s: the pickle is %d bytes, over the limit of %d" % (
            where,
            stop_at - start,
            lim.max_bytes,
        )
        safety.add_finding("unknown", text + "; it was not scanned")
        raise PickleError(text, partial=None, position=start, limit=True)
    with gc_paused():
        return _Machine(data, start, stop_at, where, safety, check, persistent_load, lim).execute()


class _Machine:
    """One run of the interpreter; handlers are closures over local state for speed."""

    def __init__(
        self,
        data: Data,
        start: int,
        end: int,
        where: str,
        safety: Safety,
        check: Check,
        persistent_load: Optional[Callable[[Any], Any]],
        limits: Limits,
    ) -> None:
        self.data = data
        self.start = start
        self.end = end
        self.where = where
        self.safety = safety
        self.check = check
        self.persistent_load = persistent_load
        self.limits = limits
        self.stack: List[Any] = []
        self.marks: List[int] = []
        self.memo: Dict[int, Any] = {}
        self.proto = 0
        self.globals: Dict[Tuple[str, str], Tuple[Global, GlobalRef]] = {}
        self.buffers = 0

    # ---- helpers used by handlers (slow paths) ----

    def finding(self, severity: str, text: str) -> None:
        self.safety.add_finding(severity, "%s: %s" % (self.where, text))

    def note_global(self, module: str, name: str) -> Global:
        key = (module, name)
        hit = self.globals.get(key)
        if hit is not None:
            hit[1].count += 1
            return hit[0]
        classification, reason = _safety.classify(module, name)
        if self.proto < 3:
            mapped = NAME_MAPPING.get(key)
            if mapped is None and module in IMPORT_MAPPING:
                mapped = (IMPORT_MAPPING[module], name)
            if mapped is not None and mapped != key:
                c2, r2 = _safety.classify(mapped[0], mapped[1])
                if _RANK[c2] > _RANK[classification]:
                    classification = c2
                    reason = "pickle maps it to %s.%s: %s" % (mapped[0], mapped[1], r2)
        ref = self.safety.add_global(GlobalRef(module, name, classification, reason, self.where))
        token = Global(module, name)
        self.globals[key] = (token, ref)
        return token

    def unsafe_global(self, module: str, name: str, reason: str) -> Global:
        """Record a global whose real identity is hidden (EXT codes, computed operands)."""
        key = (module, name)
        hit = self.globals.get(key)
        if hit is not None:
            hit[1].count += 1
            return hit[0]
        ref = self.safety.add_global(GlobalRef(module, name, "unsafe", reason, self.where))
        token = Global(module, name)
        self.globals[key] = (token, ref)
        return token

    def salvage(self) -> Any:
        """The outermost object decoded so far, with pending SETITEMS/APPENDS applied."""
        stack = self.stack
        marks = self.marks
        for i, k in enumerate(marks):
            if k <= 0 or k > len(stack):
                continue
            target = stack[k - 1]
            hi = marks[i + 1] if i + 1 < len(marks) else len(stack)
            pending = stack[k:hi]
            try:
                if isinstance(target, dict) or (type(target) is Call and target.items is not None):
                    d = target if isinstance(target, dict) else target.items
                    assert d is not None
                    for j in range(0, len(pending) - 1, 2):
                        d[hashable(pending[j])] = pending[j + 1]
                elif isinstance(target, list):
                    target.extend(pending)
            except (RecursionError, TypeError, ValueError):
                continue
        return stack[0] if stack else None

    # ---- the loop ----

    def execute(self) -> Result:
        data = self.data
        end = self.end
        stack = self.stack
        marks = self.marks
        memo = self.memo
        push = stack.append
        pop = stack.pop
        lim = self.limits
        hook = self.persistent_load
        inline_max = lim.max_inline_bytes
        machine = self
        u32 = _U32.unpack_from
        gets = 0

        def pop_mark() -> List[Any]:
            k = marks.pop()
            items = stack[k:]
            del stack[k:]
            return items

        def need(pos: int, n: int) -> int:
            e = pos + n
            if e > end:
                raise _Abort(
                    "truncated: %d bytes needed at byte %d, the data ends at %d" % (n, pos, end)
                )
            return e

        max_line = lim.max_text_line

        def readline(pos: int) -> Tuple[Any, int]:
            nl = data.find(b"\n", pos, end)
            if nl < 0:
                raise _Abort("unterminated text argument at byte %d" % pos)
            if nl - pos > max_line:
                raise _Abort("a text argument of %d bytes" % (nl - pos), limit=True)
            return data[pos:nl], nl + 1

        def text_int(raw: bytes) -> int:
            if len(raw) > lim.max_int_digits:
                raise _Abort("a text integer of %d digits" % len(raw), limit=True)
            return int(raw, 0) if raw[:2].lower() in (b"0x", b"0o", b"0b") else int(raw)

        # ---- handlers: take the offset after the opcode, return the next opcode's ----

        def op_mark(pos: int) -> int:
            marks.append(len(stack))
            return pos

        def op_stop(pos: int) -> int:
            raise _Stop(pos)

        def op_pop(pos: int) -> int:
            if marks and marks[-1] == len(stack):
                marks.pop()  # C's POP removes a MARK on top of the stack
            else:
                pop()
            return pos

        def op_pop_mark(pos: int) -> int:
            pop_mark()
            return pos

        def op_dup(pos: int) -> int:
            push(stack[-1])
            return pos

        def op_float(pos: int) -> int:
            raw, pos = readline(pos)
            push(float(raw))
            return pos

        def op_int(pos: int) -> int:
            raw, pos = readline(pos)
            if raw == b"00":
                push(False)
            elif raw == b"01":
                push(True)
            else:
                push(text_int(raw))
            return pos

        def op_binint(pos: int) -> int:
            e = pos + 4
            if e > end:
                need(pos, 4)
            push(_I32.unpack_from(data, pos)[0])
            return e

        def op_binint1(pos: int) -> int:
            push(data[pos])
            return pos + 1

        def op_binint2(pos: int) -> int:
            e = need(pos, 2)
            push(_U16.unpack_from(data, pos)[0])
            return e

        def op_long(pos: int) -> int:
            raw, pos = readline(pos)
            if raw.endswith(b"L"):
                raw = raw[:-1]
            push(text_int(raw))
            return pos

        def op_long1(pos: int) -> int:
            n = data[pos]
            e = need(pos + 1, n)
            push(int.from_bytes(data[pos + 1 : e], "little", signed=True))
            return e

        def op_long4(pos: int) -> int:
            e = need(pos, 4)
            n = _I32.unpack_from(data, pos)[0]
            if n < 0:
                raise _Abort("LONG4 with a negative length")
            if n > 1 << 20:
                raise _Abort("a LONG4 integer of %d bytes" % n, limit=True)
            e2 = need(e, n)
            push(int.from_bytes(data[e:e2], "little", signed=True))
            return e2

        def op_none(pos: int) -> int:
            push(None)
            return pos

        def op_true(pos: int) -> int:
            push(True)
            return pos

        def op_false(pos: int) -> int:
            push(False)
            return pos

        def op_binfloat(pos: int) -> int:
            e = need(pos, 8)
            push(_F64BE.unpack_from(data, pos)[0])
            return e

        def payload(pos: int, n: int, kind: str) -> int:
            e = need(pos, n)
            if n > inline_max:
                push(Blob(kind, pos, n))
                return e
            raw = data[pos:e]
            if kind == "str":
                push(_decode_utf8(bytes(raw)))
            elif kind == "str8":
                push(_decode_str8(bytes(raw)))
            elif kind == "bytearray":
                ba = ByteArrayAt(raw)
                ba.at = pos
                push(ba)
            else:
                b = BytesAt(raw)
                b.at = pos
                push(b)
            return e

        def op_binunicode(pos: int) -> int:
            e = pos + 4
            if e > end:
                need(pos, 4)
            n = u32(data, pos)[0]
            e2 = e + n
            if n <= 256 and e2 <= end:  # fast path: short keys
                try:
                    push(str(data[e:e2], "utf-8"))
                    return e2
                except UnicodeDecodeError:
                    pass
            return payload(e, n, "str")

        def op_short_binunicode(pos: int) -> int:
            n = data[pos]
            e = pos + 1 + n
            if e <= end:
                try:
                    push(str(data[pos + 1 : e], "utf-8"))
                    return e
                except UnicodeDecodeError:
                    pass
            return payload(pos + 1, n, "str")

        def op_binunicode8(pos: int) -> int:
            e = need(pos, 8)
            return payload(e, _U64.unpack_from(data, pos)[0], "str")

        def op_unicode(pos: int) -> int:
            raw, pos = readline(pos)
            push(str(raw, "raw-unicode-escape"))
            return pos

        def op_string(pos: int) -> int:
            raw, pos = readline(pos)
            if len(raw) >= 2 and raw[0] == raw[-1] and raw[:1] in (b"'", b'"'):
                raw = raw[1:-1]
            else:
                raise _Abort("the STRING argument must be quoted")
            push(_decode_str8(_ESCAPE_DECODE(raw)[0]))
            return pos

        def op_binstring(pos: int) -> int:
            e = need(pos, 4)
            n = _I32.unpack_from(data, pos)[0]
            if n < 0:
                raise _Abort("BINSTRING with a negative length")
            return payload(e, n, "str8")

        def op_short_binstring(pos: int) -> int:
            return payload(pos + 1, data[pos], "str8")

        def op_binbytes(pos: int) -> int:
            e = need(pos, 4)
            return payload(e, _U32.unpack_from(data, pos)[0], "bytes")

        def op_short_binbytes(pos: int) -> int:
            return payload(pos + 1, data[pos], "bytes")

        def op_binbytes8(pos: int) -> int:
            e = need(pos, 8)
            return payload(e, _U64.unpack_from(data, pos)[0], "bytes")

        def op_bytearray8(pos: int) -> int:
            e = need(pos, 8)
            return payload(e, _U64.unpack_from(data, pos)[0], "bytearray")

        def op_next_buffer(pos: int) -> int:
            push(Buffer(machine.buffers))
            machine.buffers += 1
            return pos

        def op_readonly_buffer(pos: int) -> int:
            top = stack[-1]
            if type(top) is Buffer:
                top.readonly = True
            return pos

        def op_empty_tuple(pos: int) -> int:
            push(())
            return pos

        def op_tuple(pos: int) -> int:
            push(tuple(pop_mark()))
            return pos

        def op_tuple1(pos: int) -> int:
            stack[-1] = (stack[-1],)
            return pos

        def op_tuple2(pos: int) -> int:
            b = pop()
            stack[-1] = (stack[-1], b)
            return pos

        def op_tuple3(pos: int) -> int:
            c = pop()
            b = pop()
            stack[-1] = (stack[-1], b, c)
            return pos

        def op_empty_list(pos: int) -> int:
            push([])
            return pos

        def op_list(pos: int) -> int:
            push(pop_mark())
            return pos

        def op_empty_dict(pos: int) -> int:
            push({})
            return pos

        def op_dict(pos: int) -> int:
            items = pop_mark()
            d: Dict[Any, Any] = {}
            for i in range(0, len(items) - 1, 2):
                d[hashable(items[i])] = items[i + 1]
            if len(items) % 2:
                raise _Abort("DICT with an odd number of items")
            push(d)
            return pos

        def op_empty_set(pos: int) -> int:
            push(set())
            return pos

        def op_frozenset(pos: int) -> int:
            push(frozenset(hashable(x) for x in pop_mark()))
            return pos

        def set_item(target: Any, key: Any, value: Any) -> None:
            if type(target) is dict:
                try:
                    target[key] = value
                except TypeError:
                    target[Key(key)] = value
            elif type(target) is Call:
                if target.items is None:
                    target.items = {}
                target.items[hashable(key)] = value
            else:
                odd_target("SETITEM", target)

        def odd_target(op: str, target: Any) -> None:
            if type(target) is Global:
                machine.finding(
                    "unsafe",
                    "%s on the imported global %s modifies it while loading" % (op, target.full),
                )
            else:
                machine.finding(
                    "unknown",
                    "%s on %s (pickle.load would call its methods)" % (op, describe(target)),
                )

        def op_setitem(pos: int) -> int:
            value = pop()
            key = pop()
            set_item(stack[-1], key, value)
            return pos

        def op_setitems(pos: int) -> int:
            items = pop_mark()
            target = stack[-1]
            if type(target) is dict:
                try:
                    for i in range(0, len(items) - 1, 2):
                        target[items[i]] = items[i + 1]
                except TypeError:
                    for i in range(0, len(items) - 1, 2):
                        target[hashable(items[i])] = items[i + 1]
            else:
                for i in range(0, len(items) - 1, 2):
                    set_item(target, items[i], items[i + 1])
            if len(items) % 2:
                raise _Abort("SETITEMS with an odd number of items")
            return pos

        def add_items(op: str, target: Any, items: List[Any]) -> None:
            if type(target) is list:
                target.extend(items)
            elif type(target) is set:
                target.update(hashable(x) for x in items)
            elif type(target) is Call:
                if target.list_items is None:
                    target.list_items = []
                target.list_items.extend(items)
            else:
                odd_target(op, target)

        def op_append(pos: int) -> int:
            value = pop()
            target = stack[-1]
            if type(target) is list:
                target.append(value)
            else:
                add_items("APPEND", target, [value])
            return pos

        def op_appends(pos: int) -> int:
            items = pop_mark()
            add_items("APPENDS", stack[-1], items)
            return pos

        def op_additems(pos: int) -> int:
            items = pop_mark()
            add_items("ADDITEMS", stack[-1], items)
            return pos

        def call_check(op: str, func: Any) -> None:
            if type(func) is Global:
                return
            if type(func) in (Call, Unresolved, PersistentId) or not isinstance(
                func, (str, bytes, int, float, tuple, list, dict, set, type(None))
            ):
                machine.finding(
                    "unsafe",
                    "%s calls %s, not an imported global: the callable is computed while loading"
                    % (op, describe(func)),
                )
            else:
                machine.finding(
                    "unknown",
                    "%s calls %s, which is not callable; pickle.load fails here"
                    % (op, describe(func)),
                )

        def op_reduce(pos: int) -> int:
            args = pop()
            func = stack[-1]
            if type(func) is not Global:
                call_check("REDUCE", func)
            stack[-1] = Call(func, args, "reduce")
            return pos

        def op_newobj(pos: int) -> int:
            args = pop()
            cls = stack[-1]
            if type(cls) is not Global:
                call_check("NEWOBJ", cls)
            stack[-1] = Call(cls, args, "newobj")
            return pos

        def op_newobj_ex(pos: int) -> int:
            kwargs = pop()
            args = pop()
            cls = stack[-1]
            if type(cls) is not Global:
                call_check("NEWOBJ_EX", cls)
            stack[-1] = Call(cls, args, "newobj_ex", kwargs)
            return pos

        def op_obj(pos: int) -> int:
            items = pop_mark()
            if not items:
                raise _Abort("OBJ without a class")
            cls = items[0]
            if type(cls) is not Global:
                call_check("OBJ", cls)
            push(Call(cls, tuple(items[1:]), "obj"))
            return pos

        def op_build(pos: int) -> int:
            state = pop()
            target = stack[-1]
            if type(target) is Call:
                old = target.state
                if type(old) is dict and type(state) is dict:
                    old.update(state)
                else:
                    target.state = state
            elif type(target) is Global:
                machine.finding(
                    "unsafe",
                    "BUILD sets attributes on the imported global %s (monkey-patching it)"
                    % target.full,
                )
            else:
                machine.finding(
                    "unknown",
                    "BUILD on %s (pickle.load would call its __setstate__)" % describe(target),
                )
            return pos

        def global_text(raw: bytes) -> str:
            try:
                return raw.decode("utf-8")
            except UnicodeDecodeError:
                text = raw.decode("utf-8", "backslashreplace")
                machine.finding(
                    "unsafe",
                    "a global name is not valid UTF-8 (%r); a scanner evasion attempt" % text,
                )
                return text

        def op_global(pos: int) -> int:
            m, pos = readline(pos)
            n, pos = readline(pos)
            push(machine.note_global(global_text(m), global_text(n)))
            return pos

        def op_inst(pos: int) -> int:
            m, pos = readline(pos)
            n, pos = readline(pos)
            g = machine.note_global(global_text(m), global_text(n))
            push(Call(g, tuple(pop_mark()), "inst"))
            return pos

        def op_stack_global(pos: int) -> int:
            name = pop()
            module = stack[-1]
            if type(module) is str and type(name) is str:
                stack[-1] = machine.note_global(module, name)
            else:
                m = module if type(module) is str else "<%s>" % describe(module)
                n = name if type(name) is str else "<%s>" % describe(name)
                stack[-1] = machine.unsafe_global(
                    m,
                    n,
                    "STACK_GLOBAL operands are not plain strings (module %s, name %s): "
                    "the imported name cannot be resolved statically"
                    % (describe(module), describe(name)),
                )
            return pos

        def ext(code: int) -> int:
            if code <= 0:
                raise _Abort("EXT code %d is not positive" % code)
            push(
                machine.unsafe_global(
                    "<copyreg extension>",
                    str(code),
                    "EXT opcode: a global hidden behind extension code %d of the copyreg "
                    "registry" % code,
                )
            )
            return code

        def op_ext1(pos: int) -> int:
            ext(data[pos])
            return pos + 1

        def op_ext2(pos: int) -> int:
            e = need(pos, 2)
            ext(_U16.unpack_from(data, pos)[0])
            return e

        def op_ext4(pos: int) -> int:
            e = need(pos, 4)
            ext(_I32.unpack_from(data, pos)[0])
            return e

        def persistent(pid: Any) -> None:
            if hook is None:
                push(PersistentId(pid))
            else:
                push(hook(pid))

        def op_persid(pos: int) -> int:
            raw, pos = readline(pos)
            try:
                pid = raw.decode("ascii")
            except UnicodeDecodeError:
                raise _Abort("PERSID argument is not ASCII") from None
            persistent(pid)
            return pos

        def op_binpersid(pos: int) -> int:
            persistent(pop())
            return pos

        def missing(index: int) -> None:
            machine.finding(
                "unsafe",
                "memo entry %d is read but was never stored: pickle.load fails here, and "
                "scanners may resolve it differently" % index,
            )
            push(Unresolved("memo entry %d" % index))

        def op_get(pos: int) -> int:
            nonlocal gets
            raw, pos = readline(pos)
            i = text_int(raw)
            gets += 1
            try:
                push(memo[i])
            except KeyError:
                missing(i)
            return pos

        def op_binget(pos: int) -> int:
            nonlocal gets
            gets += 1
            try:
                push(memo[data[pos]])
            except KeyError:
                missing(data[pos])
            return pos + 1

        def op_long_binget(pos: int) -> int:
            nonlocal gets
            e = pos + 4
            if e > end:
                need(pos, 4)
            i = u32(data, pos)[0]
            gets += 1
            try:
                push(memo[i])
            except KeyError:
                missing(i)
            return e

        def op_put(pos: int) -> int:
            raw, pos = readline(pos)
            i = text_int(raw)
            if i < 0:
                raise _Abort("negative PUT index")
            memo[i] = stack[-1]
            return pos

        def op_binput(pos: int) -> int:
            memo[data[pos]] = stack[-1]
            return pos + 1

        def op_long_binput(pos: int) -> int:
            e = pos + 4
            if e > end:
                need(pos, 4)
            memo[u32(data, pos)[0]] = stack[-1]
            return e

        def op_memoize(pos: int) -> int:
            memo[len(memo)] = stack[-1]
            return pos

        def op_proto(pos: int) -> int:
            p = data[pos]
            if p > 5:
                raise _Abort("unsupported pickle protocol %d" % p)
            if pos - 1 != machine.start:
                machine.finding(
                    "unknown", "a PROTO opcode in the middle of the pickle (byte %d)" % (pos - 1)
                )
            machine.proto = p
            return pos + 1

        def op_frame(pos: int) -> int:
            raise _Frame(pos)

        def bad(pos: int) -> int:
            raise _Abort("unknown opcode 0x%02x" % data[pos - 1])

        table: Dict[str, Callable[[int], int]] = {
            "(": op_mark,
            ".": op_stop,
            "0": op_pop,
            "1": op_pop_mark,
            "2": op_dup,
            "F": op_float,
            "I": op_int,
            "J": op_binint,
            "K": op_binint1,
            "L": op_long,
            "M": op_binint2,
            "N": op_none,
            "P": op_persid,
            "Q": op_binpersid,
            "R": op_reduce,
            "S": op_string,
            "T": op_binstring,
            "U": op_short_binstring,
            "V": op_unicode,
            "X": op_binunicode,
            "a": op_append,
            "b": op_build,
            "c": op_global,
            "d": op_dict,
            "}": op_empty_dict,
            "e": op_appends,
            "g": op_get,
            "h": op_binget,
            "i": op_inst,
            "j": op_long_binget,
            "l": op_list,
            "]": op_empty_list,
            "o": op_obj,
            "p": op_put,
            "q": op_binput,
            "r": op_long_binput,
            "s": op_setitem,
            "t": op_tuple,
            ")": op_empty_tuple,
            "u": op_setitems,
            "G": op_binfloat,
            "\x80": op_proto,
            "\x81": op_newobj,
            "\x82": op_ext1,
            "\x83": op_ext2,
            "\x84": op_ext4,
            "\x85": op_tuple1,
            "\x86": op_tuple2,
            "\x87": op_tuple3,
            "\x88": op_true,
            "\x89": op_false,
            "\x8a": op_long1,
            "\x8b": op_long4,
            "B": op_binbytes,
            "C": op_short_binbytes,
            "\x8c": op_short_binunicode,
            "\x8d": op_binunicode8,
            "\x8e": op_binbytes8,
            "\x8f": op_empty_set,
            "\x90": op_additems,
            "\x91": op_frozenset,
            "\x92": op_newobj_ex,
            "\x93": op_stack_global,
            "\x94": op_memoize,
            "\x95": op_frame,
            "\x96": op_bytearray8,
            "\x97": op_next_buffer,
            "\x98": op_readonly_buffer,
        }
        dispatch: List[Callable[[int], int]] = [bad] * 256
        for ch, fn in table.items():
            dispatch[ord(ch)] = fn

        pos = self.start
        limit = end
        frame_end = -1
        ops = 0
        chunk = lim.check_every
        steps = range(chunk)
        done = 0
        next_check = chunk
        check = self.check
        try:
            while True:
                done = chunk
                try:
                    for done in steps:  # noqa: B007 - `done` counts the opcodes run
                        if pos >= limit:
                            break
                        pos = dispatch[data[pos]](pos + 1)
                    else:
                        done = chunk
                except _Frame as fr:
                    ops += done + 1
                    if ops >= next_check:
                        next_check = ops + chunk
                        check()
                        self._limits(ops, gets)
                    fpos = fr.pos
                    if frame_end >= 0 and fpos - 1 < frame_end:
                        self.finding(
                            "unsafe",
                            "a FRAME starts at byte %d, before the frame ending at byte %d is "
                            "done: scanners that honour frames read a different pickle"
                            % (fpos - 1, frame_end),
                        )
                    e = need(fpos, 8)
                    length = _U64.unpack_from(data, fpos)[0]
                    pos = e
                    if e + length > end:
                        self.finding(
                            "unsafe",
                            "the FRAME at byte %d declares %d bytes but only %d remain"
                            % (fpos - 1, length, end - e),
                        )
                        frame_end = -1
                        limit = end
                    else:
                        frame_end = e + length
                        limit = frame_end
                    continue
                ops += done
                if ops >= next_check:
                    next_check = ops + chunk
                    check()
                    self._limits(ops, gets)
                if pos >= limit:
                    if frame_end >= 0 and limit == frame_end:
                        if pos > frame_end:
                            self.finding(
                                "unsafe",
                                "an opcode crosses the end of the FRAME ending at byte %d: "
                                "scanners that honour frames read a different pickle" % frame_end,
                            )
                        frame_end = -1
                        limit = end
                        if pos < end:
                            continue
                    raise _Abort("the pickle ends without a STOP opcode (truncated?)")
        except _Stop as s:
            ops += done + 1
            if frame_end >= 0 and s.pos > frame_end:
                self.finding(
                    "unsafe",
                    "an opcode crosses the end of the FRAME ending at byte %d: "
                    "scanners that honour frames read a different pickle" % frame_end,
                )
            if not stack:
                raise self._error("STOP with an empty stack", pos, False) from None
            return Result(stack.pop(), s.pos, self.proto, ops)
        except _Abort as a:
            raise self._error(a.message, pos, a.limit) from None
        except PickleError:
            raise
        except CheckpointFormatError as exc:
            raise self._error(exc.message, pos, False) from None
        except (
            IndexError,
            KeyError,
            struct.error,
            ValueError,
            TypeError,
            OverflowError,
            UnicodeError,
            RecursionError,
            MemoryError,
            AttributeError,
            ZeroDivisionError,
        ) as exc:
            raise self._error(self._explain(exc, pos), pos, False) from None

    def _limits(self, ops: int, gets: int) -> None:
        lim = self.limits
        if ops > lim.max_opcodes:
            raise _Abort("over %d opcodes" % lim.max_opcodes, limit=True)
        if len(self.stack) > lim.max_stack:
            raise _Abort("the stack holds over %d items" % lim.max_stack, limit=True)
        if len(self.marks) > lim.max_marks:
            raise _Abort("over %d nested MARKs" % lim.max_marks, limit=True)
        if len(self.memo) > lim.max_memo:
            raise _Abort("the memo holds over %d entries" % lim.max_memo, limit=True)
        puts = len(self.memo)
        if gets > lim.min_gets_for_ratio and gets > lim.max_get_ratio * max(puts, 1):
            self.finding(
                "unsafe",
                "%d memo reads for %d memo entries: an expansion (billion laughs) attack"
                % (gets, puts),
            )
            raise _Abort("memo expansion ratio over %g" % lim.max_get_ratio, limit=True)

    def _explain(self, exc: BaseException, pos: int) -> str:
        op = self.data[pos] if 0 <= pos < len(self.data) else -1
        name = OPCODE_NAMES.get(op, "0x%02x" % op if op >= 0 else "end of data")
        if isinstance(exc, IndexError):
            if not self.stack or "pop from empty list" in str(exc):
                return "%s at byte %d: stack underflow or missing MARK" % (name, pos)
            return "%s at byte %d: truncated" % (name, pos)
        if isinstance(exc, RecursionError):
            return "%s at byte %d: nested too deeply" % (name, pos)
        if isinstance(exc, MemoryError):
            return "%s at byte %d: out of memory" % (name, pos)
        return "%s at byte %d: %s" % (name, pos, exc)

    def _error(self, message: str, pos: int, limit: bool) -> PickleError:
        if limit:
            text = "%s: pickle limit hit at byte %d: %s" % (self.where, pos, message)
            self.safety.add_finding("unknown", text + "; the rest of the pickle was not scanned")
        else:
            text = "%s: malformed pickle at byte %d: %s" % (self.where, pos, message)
            self.safety.add_finding(
                "unknown", text + " (pickle.load stops there, after running what comes before)"
            )
        try:
            partial = self.salvage()
        except Exception:  # salvage is best effort
            partial = None
        return PickleError(text, partial=partial, position=pos, limit=limit)


_RANK = {"allowed": 0, "unknown": 1, "unsafe": 2}
