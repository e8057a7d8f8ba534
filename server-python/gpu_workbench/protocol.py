"""Wire contract of the custom methods: params/result dataclasses, METHODS and ERROR_KINDS.

The TypeScript client checks itself against the spec printed by
``python -m gpu_workbench.protocol``; that spec is derived from the dataclasses here,
so this module is the single source of truth.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Union

from . import __version__
from .convert import field_paths

DEBUG_METHODS_ENV = "GPUWB_DEBUG_METHODS"

# Application error kinds -> JSON-RPC codes. Codes start at -32000 and go down, skipping
# LSP's -32001/-32002 and the -32800 range so clients can tell them apart.
ERROR_KINDS: Dict[str, int] = {
    "Internal": -32000,
    "InvalidState": -32010,
    "NotFound": -32011,
    "Unsupported": -32012,
    "Untrusted": -32013,
    "KernelDied": -32020,
    "ProviderAuth": -32030,
    "ProviderUnavailable": -32031,
    "CheckpointFormat": -32040,
    "UnsafePickle": -32041,
}


# ---- LSP lifecycle (not custom methods, so not in METHODS) ----


@dataclass
class InitializeParams:
    """The parts of LSP InitializeParams the backend uses."""

    processId: Optional[int] = None
    # Validated leniently in options.py: bad options must not make initialize fail.
    initializationOptions: Any = None


# ---- workbench/ping ----


@dataclass
class PingParams:
    payload: Optional[str] = None


@dataclass
class PingResult:
    payload: Optional[str]
    serverTime: float


# ---- workbench/status ----


@dataclass
class StatusParams:
    pass


@dataclass
class PythonInfo:
    executable: str
    version: str
    implementation: str


@dataclass
class StatusResult:
    name: str
    version: str
    pid: int
    uptimeSeconds: float
    python: PythonInfo
    dataDirectory: str
    trusted: bool
    capabilities: List[str]


# ---- debug/sleep (only with GPUWB_DEBUG_METHODS=1) ----


@dataclass
class SleepParams:
    seconds: float
    workDoneToken: Optional[Union[str, int]] = None


@dataclass
class SleepResult:
    sleptSeconds: float


# ---- kernel/* ----


@dataclass
class KernelInfo:
    kernelId: str
    name: str
    pid: Optional[int]  # the kernel process (its process group leader); None if unknown
    python: str
    pythonVersion: str
    cwd: str
    state: str  # "starting" | "idle" | "busy" | "dead" | "exited"
    createdAt: float  # unix seconds
    lastSeq: int  # last journal seq this backend has forwarded (or on disk, if not attached)
    queue: List[str]  # executionIds waiting behind the running one
    idleTimeoutSeconds: float


@dataclass
class KernelStartParams:
    python: Optional[str] = None  # default: the backend's own interpreter
    cwd: Optional[str] = None
    env: Optional[Dict[str, str]] = None  # wins over envFile, which wins over the backend's env
    envFile: Optional[str] = None  # relative paths are resolved against cwd
    name: Optional[str] = None
    idleTimeoutSeconds: Optional[float] = None  # 0 or absent: never


@dataclass
class KernelExecuteParams:
    kernelId: str
    code: str
    file: Optional[str] = None
    line: Optional[int] = None  # 0-based line in `file` where `code` starts
    stopOnError: Optional[bool] = None
    executionId: Optional[str] = None  # default: generated
    # Skip this one (reply "aborted") unless that earlier execution ended "ok": Run All
    # stops at an error however fast the failing cell was.
    after: Optional[str] = None


@dataclass
class KernelExecuteResult:
    executionId: str
    queuePosition: int  # 0 = runs now


@dataclass
class KernelInterruptParams:
    kernelId: str
    graceSeconds: Optional[float] = None  # default 3


@dataclass
class KernelInterruptResult:
    outcome: str  # "interrupted" | "killed" | "idle"


@dataclass
class KernelIdParams:
    kernelId: str


@dataclass
class KernelIdResult:
    kernelId: str


@dataclass
class KernelListParams:
    pass


@dataclass
class KernelListResult:
    kernels: List[KernelInfo]


@dataclass
class KernelAttachParams:
    kernelId: str
    since: Optional[int] = None  # last seq the client has; 0 (default) replays everything


@dataclass
class KernelInputReplyParams:
    kernelId: str
    executionId: str
    value: str


@dataclass
class EmptyResult:
    pass


@dataclass
class Variable:
    name: str
    type: str
    shape: Optional[List[int]]
    length: Optional[int]
    dtype: Optional[str]
    size: Optional[int]
    repr: str


@dataclass
class KernelVariablesResult:
    variables: List[Variable]


@dataclass
class KernelEventParams:
    """Server->client notification: one worker message, verbatim (or a `gap`)."""

    kernelId: str
    event: Dict[str, Any]


# ---- cells/parse ----


@dataclass
class CellsParseParams:
    text: str
    markers: Optional[List[str]] = None  # regexes matched at line start; default the standard ones


@dataclass
class Cell:
    index: int
    kind: str  # "code" | "markdown"
    title: str
    startLine: int  # 0-based line of the marker (0 for a leading cell without one)
    codeStartLine: int  # first line of the body
    endLine: int  # last line, inclusive (trailing blank lines excluded)
    code: str


@dataclass
class CellsParseResult:
    cells: List[Cell]


@dataclass(frozen=True)
class MethodInfo:
    """One custom method: its name, kind and the dataclasses of its params and result."""

    name: str
    kind: str  # "request" (client->server, has a reply) or "notification"
    params: Any
    result: Any = None
    debug_only: bool = False
    to_client: bool = False  # a notification the server sends (kernel/event), not one it serves


METHODS: Dict[str, MethodInfo] = {
    info.name: info
    for info in (
        MethodInfo("workbench/ping", "request", PingParams, PingResult),
        MethodInfo("workbench/status", "request", StatusParams, StatusResult),
        MethodInfo("debug/sleep", "request", SleepParams, SleepResult, debug_only=True),
        MethodInfo("kernel/start", "request", KernelStartParams, KernelInfo),
        MethodInfo("kernel/execute", "request", KernelExecuteParams, KernelExecuteResult),
        MethodInfo("kernel/interrupt", "request", KernelInterruptParams, KernelInterruptResult),
        MethodInfo("kernel/restart", "request", KernelIdParams, KernelInfo),
        MethodInfo("kernel/shutdown", "request", KernelIdParams, KernelIdResult),
        MethodInfo("kernel/list", "request", KernelListParams, KernelListResult),
        MethodInfo("kernel/attach", "request", KernelAttachParams, KernelInfo),
        MethodInfo("kernel/inputReply", "request", KernelInputReplyParams, EmptyResult),
        MethodInfo("kernel/variables", "request", KernelIdParams, KernelVariablesResult),
        MethodInfo("kernel/event", "notification", KernelEventParams, to_client=True),
        MethodInfo("cells/parse", "request", CellsParseParams, CellsParseResult),
    )
}


def debug_methods_enabled(environ: Optional[Mapping[str, str]] = None) -> bool:
    """True when the debug-only methods should be served (env GPUWB_DEBUG_METHODS=1)."""
    env = os.environ if environ is None else environ
    return env.get(DEBUG_METHODS_ENV) == "1"


def served_methods(include_debug: bool) -> List[str]:
    """Sorted names of the custom methods served with or without the debug ones."""
    return sorted(name for name, info in METHODS.items() if include_debug or not info.debug_only)


def spec(include_debug: Optional[bool] = None) -> Dict[str, Any]:
    """The machine-readable protocol description printed by ``python -m gpu_workbench.protocol``."""
    if include_debug is None:
        include_debug = debug_methods_enabled()
    methods: Dict[str, Any] = {}
    for name in served_methods(include_debug):
        info = METHODS[name]
        entry: Dict[str, Any] = {"kind": info.kind, "params": field_paths(info.params)}
        if info.kind == "request":
            entry["result"] = field_paths(info.result) if info.result is not None else []
        methods[name] = entry
    return {"version": __version__, "methods": methods, "errorKinds": dict(ERROR_KINDS)}


def main() -> int:
    """Print the spec as JSON on stdout."""
    json.dump(spec(), sys.stdout, indent=2, sort_keys=True)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
