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
    "ProviderQuota": -32032,  # quota or capacity: the request is valid but cannot be served now
    "ProviderRateLimited": -32033,
    "ProviderResponse": -32034,  # the provider answered something we cannot understand
    "ProviderRequest": -32035,  # the provider refused the request as invalid (bad type, region)
    "CheckpointFormat": -32040,
    "UnsafePickle": -32041,
    "HostKeyUnknown": -32060,  # the machine's SSH host key is not in known_hosts yet: ask the user
    "HostKeyChanged": -32061,  # it differs from known_hosts: never overridden from here
    "RemoteUnavailable": -32062,  # cannot reach the machine, or its agent cannot run
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


# ---- debug/clock (only with GPUWB_DEBUG_METHODS=1) ----


@dataclass
class ClockParams:
    offsetSeconds: float  # the VM service's clock runs this far ahead of real time (absolute)


@dataclass
class ClockResult:
    offsetSeconds: float
    now: float  # the service's shifted clock, unix seconds


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
    machine: Optional[str] = None  # "provider/id" for a kernel on a remote machine; None: here


@dataclass
class KernelStartParams:
    python: Optional[str] = None  # default: the backend's own interpreter (on `machine`: python3)
    cwd: Optional[str] = None
    env: Optional[Dict[str, str]] = None  # wins over envFile, which wins over the backend's env
    envFile: Optional[str] = None  # relative paths are resolved against cwd
    name: Optional[str] = None
    idleTimeoutSeconds: Optional[float] = None  # 0 or absent: never
    machine: Optional[str] = (
        None  # "provider/id" of a connected machine (remote/connect); None: here
    )


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


# ---- checkpoint/* ----
# Results are built as plain JSON by gpu_workbench.checkpoints (fast for 100k tensors);
# tests check that every object they build has exactly the fields declared here.


@dataclass
class CheckpointInspectParams:
    path: str  # a file, a *.index.json or a folder of shards
    maxTensors: Optional[int] = None  # cap on the tensors listed (totals still count all); 0: none
    machine: Optional[str] = None  # read it on this connected machine (path is the machine's)


@dataclass
class CheckpointTensor:
    name: str
    dtype: str  # canonical upper-case name: F32, BF16, F8_E4M3, I64, BOOL, Q4_K, ...
    shape: List[int]
    numel: int
    nbytes: Optional[int]  # bytes of this tensor's elements; None when unknown
    storage: Optional[str]  # storage key (tied weights share one); None if the format has none
    storageOffset: int  # in elements, into the storage
    stride: Optional[List[int]]  # in elements; None: contiguous (row-major)
    offset: Optional[int]  # absolute byte offset of element 0 in `file`; None: not addressable
    file: Optional[str]  # the file holding the bytes; None: the inspected file
    member: Optional[
        str
    ]  # zip member when the bytes are compressed inside it (offset is then into the member)
    byteOrder: str  # "little" | "big"
    role: str  # "weight" (counts as a parameter) | "state" (optimizer, scheduler, loops, callbacks)
    detail: Optional[str]  # e.g. "parameter", "quantized per_tensor_affine scale=0.1"


@dataclass
class CheckpointDtypeTotal:
    dtype: str
    tensors: int
    parameters: int
    bytes: int


@dataclass
class CheckpointModule:
    name: str  # last path component ("" for the root)
    path: str  # dotted path
    tensors: int
    parameters: int
    bytes: int
    children: List[Any]  # CheckpointModule


@dataclass
class CheckpointSharedStorage:
    storage: str
    tensors: List[str]
    bytes: int


@dataclass
class CheckpointGlobal:
    module: str  # exactly as written in the pickle
    name: str
    classification: str  # "allowed" | "unsafe" | "unknown"
    count: int
    where: str  # the pickle it was found in, e.g. "archive/data.pkl"
    reason: str  # why it is allowed or not


@dataclass
class CheckpointSafety:
    verdict: str  # "safe" | "unknown" | "unsafe"
    summary: str  # one sentence for the banner
    globals: List[CheckpointGlobal]
    findings: List[str]  # other issues: refused opcodes, limits hit, zip tricks


@dataclass
class CheckpointFile:
    path: str
    size: int
    format: str


@dataclass
class CheckpointSummary:
    path: str
    format: str  # safetensors | pytorch-zip | pytorch-legacy | pytorch-tar | torchscript | pickle | npy | npz | gguf | hf-index | hf-folder
    formatDetail: str
    fileSize: int  # bytes of all files read
    files: List[CheckpointFile]  # shards (one entry for a single file)
    tensorCount: int
    tensorsListed: int  # < tensorCount when maxTensors cut the list
    tensors: List[CheckpointTensor]
    # Elements of weight tensors: a 0-dim tensor counts 1, tied weights (one view of one
    # storage under several names) count once, optimizer and training state not at all.
    parameterCount: int
    tensorBytes: int  # sum of nbytes (views counted once per tensor)
    storageBytes: int  # bytes on disk after de-duplicating shared storages
    dtypes: List[CheckpointDtypeTotal]
    modules: CheckpointModule
    sharedStorages: List[CheckpointSharedStorage]
    epoch: Optional[int]
    globalStep: Optional[int]
    metadata: Dict[str, Any]  # format/framework metadata, JSON values only
    structure: Any  # depth-limited sketch of the pickled object (None for non-pickle formats)
    warnings: List[str]
    safety: CheckpointSafety
    elapsedMs: float


@dataclass
class CheckpointStatsParams:
    path: str
    tensors: Optional[List[str]] = None  # None: every tensor
    bins: Optional[int] = None  # histogram bins, default 32
    timeBudgetMs: Optional[float] = (
        None  # per tensor; beyond it the tensor is sampled (default 2000)
    )
    maxElements: Optional[int] = None  # read at most this many elements per tensor before sampling
    machine: Optional[str] = None  # compute it on this connected machine (path is the machine's)


@dataclass
class CheckpointHistogram:
    edges: List[float]  # bins + 1 edges
    counts: List[int]


@dataclass
class CheckpointTensorStats:
    name: str
    dtype: str
    numel: int
    count: int  # elements read (== numel unless sampled)
    sampled: bool
    min: Optional[float]  # None when no finite element
    max: Optional[float]
    mean: Optional[float]
    std: Optional[float]
    nanCount: int
    infCount: int
    zeroFraction: Optional[float]
    histogram: Optional[CheckpointHistogram]
    error: Optional[str]  # why this tensor has no statistics (unsupported dtype, unreadable)


@dataclass
class CheckpointStatsResult:
    path: str
    engine: str  # "numpy" | "stdlib"
    stats: List[CheckpointTensorStats]
    elapsedMs: float


@dataclass
class CheckpointListParams:
    folder: str  # absolute, or starting with ~ (the home of the machine that lists it)
    machine: Optional[str] = None  # list it on this connected machine
    maxFiles: Optional[int] = None  # entries listed at most (default 2000); then truncated


@dataclass
class CheckpointListFile:
    path: str
    size: int
    mtimeMs: int


@dataclass
class CheckpointListIndex:
    path: str  # a *.index.json
    size: int
    mtimeMs: int
    shards: List[str]  # file names of its weight_map, sorted


@dataclass
class CheckpointListResult:
    folder: str  # absolute, as resolved on the machine that listed it
    files: List[CheckpointListFile]  # checkpoint files (by extension), 4 folders deep at most
    indexes: List[CheckpointListIndex]
    truncated: bool  # maxFiles was reached


@dataclass
class CheckpointDiffParams:
    a: str
    b: str
    compareValues: Optional[bool] = None  # hash byte ranges of same-shaped tensors (default true)


@dataclass
class CheckpointDiffTensor:
    name: str
    change: str  # added | removed | reshaped | retyped | changed | unchanged | unknown
    a: Optional[CheckpointTensor]
    b: Optional[CheckpointTensor]


@dataclass
class CheckpointMetadataChange:
    key: str  # dotted path into metadata
    a: Any
    b: Any


@dataclass
class CheckpointDiffCounts:
    added: int
    removed: int
    reshaped: int
    retyped: int
    changed: int
    unchanged: int
    unknown: int  # values not compared (compareValues false, unaddressable data)


@dataclass
class CheckpointDiffResult:
    a: CheckpointFile
    b: CheckpointFile
    tensors: List[CheckpointDiffTensor]  # every name in either, changed ones first
    metadata: List[CheckpointMetadataChange]
    counts: CheckpointDiffCounts
    summary: str
    elapsedMs: float


@dataclass
class CheckpointScanParams:
    paths: List[str]  # files or folders (searched recursively, by content)
    allow: Optional[List[str]] = None  # extra allowed globals, "module.name"


@dataclass
class CheckpointScanEntry:
    path: str
    format: str
    verdict: str  # safe | unknown | unsafe | error
    summary: str
    globals: List[CheckpointGlobal]
    error: Optional[str]


@dataclass
class CheckpointScanResult:
    results: List[CheckpointScanEntry]


# ---- vm/* ----
# Credentials travel per call in `credentials` ({field: value}, e.g. {"apiKey": "..."}) and
# are never logged, stored or echoed back; AWS uses its own credential chain ("profile").


@dataclass
class VmCredentialsParams:
    credentials: Optional[Dict[str, Dict[str, str]]] = None  # provider -> {field: value}


@dataclass
class VmProviderInfo:
    name: str  # local | ssh | aws | lambda | linode | skypilot
    displayName: str
    available: bool  # False: missing library/CLI, or not configured
    reason: Optional[str]  # why not available, with what to do
    capabilities: List[str]  # subset of: offerings, create, start, stop, terminate, spot
    credentialFields: List[str]  # secrets the extension keeps in SecretStorage, e.g. ["apiKey"]
    configured: bool  # credentials present (or not needed)
    stopKeepsBilling: bool  # True for Linode: a powered-off Linode is still billed
    notes: List[str]


@dataclass
class VmProvidersResult:
    providers: List[VmProviderInfo]


@dataclass
class VmOfferingsParams:
    provider: str
    region: Optional[str] = None
    credentials: Optional[Dict[str, Dict[str, str]]] = None


@dataclass
class VmRegion:
    name: str
    available: Optional[bool]  # capacity now; None when the provider does not say


@dataclass
class VmOffering:
    provider: str
    instanceType: str
    description: str
    gpuModel: Optional[str]
    gpuCount: int
    gpuMemoryGiB: Optional[float]  # per GPU
    vcpus: Optional[int]
    ramGiB: Optional[float]
    pricePerHour: Optional[float]  # on-demand; None: unknown (never 0 for unknown)
    spotPricePerHour: Optional[float]
    priceSource: str  # "api" | "table YYYY-MM-DD" | "unknown"
    regions: List[VmRegion]


@dataclass
class VmOfferingsResult:
    offerings: List[VmOffering]


@dataclass
class VmSshTarget:
    host: str
    port: int
    user: Optional[str]
    identityFile: Optional[str]
    alias: Optional[str]  # Host alias from ~/.ssh/config, when there is one


@dataclass
class VmInfo:
    provider: str
    id: str
    name: str
    state: str  # pending | running | stopping | stopped | terminated | unknown
    instanceType: Optional[str]
    gpuModel: Optional[str]
    gpuCount: int
    region: Optional[str]
    pricePerHour: Optional[float]  # None: unknown
    spot: bool
    launchedAt: Optional[float]  # unix seconds
    address: Optional[str]
    ssh: Optional[VmSshTarget]
    tags: Dict[str, str]
    managed: bool  # created by GPU Workbench (tag gpu-workbench)
    capabilities: List[str]  # what can be done to this VM now
    stopKeepsBilling: bool
    accruedCost: Optional[float]  # from the ledger; None: unknown price
    detail: Optional[str]  # e.g. "unreachable: connection refused"


@dataclass
class VmListParams:
    providers: Optional[List[str]] = None  # default: every available provider
    credentials: Optional[Dict[str, Dict[str, str]]] = None


@dataclass
class VmProviderError:
    provider: str
    kind: str  # an ERROR_KINDS name
    message: str
    hint: Optional[str]


@dataclass
class VmListResult:
    vms: List[VmInfo]
    errors: List[VmProviderError]  # one provider failing does not hide the others


@dataclass
class VmCreateParams:
    provider: str
    name: str
    instanceType: str
    region: str
    image: Optional[str] = None  # default: the provider's deep-learning image
    diskGiB: Optional[int] = None
    spot: Optional[bool] = None
    sshKeyName: Optional[str] = None
    sshPublicKey: Optional[str] = None
    tags: Optional[Dict[str, str]] = None
    startupScript: Optional[str] = None
    credentials: Optional[Dict[str, Dict[str, str]]] = None


@dataclass
class VmRefParams:
    provider: str
    id: str
    credentials: Optional[Dict[str, Dict[str, str]]] = None


@dataclass
class VmCostParams:
    days: Optional[int] = None  # default 30
    dailyBudget: Optional[float] = None
    monthlyBudget: Optional[float] = None


@dataclass
class VmCostEntry:
    key: str  # "provider/id", a day "YYYY-MM-DD" (UTC) or a provider name
    label: str
    cost: float  # of the intervals whose price is known
    unknownHours: float  # hours at an unknown price (the cost is then a lower bound)
    hours: float


@dataclass
class VmBudgetStatus:
    period: str  # "daily" | "monthly"
    limit: float
    spent: float
    level: str  # "ok" | "warning" (>= 80%) | "over" (>= 100%)


@dataclass
class VmCostResult:
    total: float
    unknownHours: float
    burnRatePerHour: float  # running VMs with a known price
    burnUnknown: int  # running VMs whose price is unknown
    byVm: List[VmCostEntry]
    byDay: List[VmCostEntry]
    byProvider: List[VmCostEntry]
    budgets: List[VmBudgetStatus]
    since: float  # unix seconds
    now: float


@dataclass
class VmAutostopParams:
    provider: str
    id: str
    idleMinutes: int  # 0: off
    gpuThreshold: Optional[float] = (
        None  # % utilization under which the GPU counts as idle (default 10)
    )
    terminateIfNoStop: Optional[bool] = None  # for providers that cannot stop (Lambda)


@dataclass
class VmAutostopInfo:
    provider: str
    id: str
    idleMinutes: int
    idleSince: Optional[float]  # None: busy (or not watched)
    actAt: Optional[float]
    action: str  # "stop" | "terminate" | "warn" | "off"
    reason: str


@dataclass
class VmIdleWarningParams:
    """Server->client: a VM will be acted on at `actAt` unless kept running."""

    provider: str
    id: str
    name: str
    actAt: float
    action: str


@dataclass
class VmKeepRunningParams:
    provider: str
    id: str


# ---- GPU health (gpu/...) ----
# Units: memory in bytes, power in watts, temperature in degrees Celsius, times in unix
# seconds. A value the driver does not report (NOT_SUPPORTED, [N/A]) is None, never 0.


@dataclass
class GpuReason:
    gpu: Optional[int]  # the GPU's index; None: the machine as a whole
    severity: str  # "warn" | "critical"
    code: str  # stable id, e.g. "hwSlowdown", "xid79", "eccUncorrected", "gpuCount"
    message: str  # one sentence for people


@dataclass
class GpuProcess:
    pid: int
    name: Optional[str]  # process name when it can be read (/proc or nvidia-smi)
    usedMemory: Optional[int]  # bytes; None when the driver does not say (Windows WDDM)


@dataclass
class GpuEcc:
    correctedVolatile: Optional[int]  # since the driver loaded
    uncorrectedVolatile: Optional[int]
    correctedAggregate: Optional[int]  # lifetime
    uncorrectedAggregate: Optional[int]


@dataclass
class GpuRemappedRows:
    correctable: Optional[int]
    uncorrectable: Optional[int]
    pending: Optional[bool]  # a remap waits for a GPU reset / reboot
    failure: Optional[bool]  # a remap failed: the GPU needs service


@dataclass
class GpuPcie:
    gen: Optional[int]
    maxGen: Optional[int]
    width: Optional[int]
    maxWidth: Optional[int]


@dataclass
class GpuXid:
    xid: int
    time: float
    meaning: str
    severity: str  # "warn" | "critical"


@dataclass
class GpuInfo:
    index: int
    uuid: str
    name: str
    lost: bool  # fallen off the bus (NVML_ERROR_GPU_IS_LOST); the other values are then None
    utilization: Optional[int]  # % of time a kernel ran in the last sample period
    memoryUtilization: Optional[int]  # % of time memory was read or written
    memoryUsed: Optional[int]
    memoryTotal: Optional[int]
    temperature: Optional[int]
    temperatureSlowdown: Optional[int]  # the driver's slowdown threshold
    powerDraw: Optional[float]
    powerLimit: Optional[float]  # enforced limit
    clocksEventReasons: Optional[int]  # NVML clock-event (throttle) reason bitmask
    throttle: List[str]  # names of the active reasons, e.g. ["HwSlowdown"]
    ecc: GpuEcc
    remappedRows: Optional[GpuRemappedRows]  # None before Ampere
    pcie: GpuPcie
    persistenceMode: Optional[bool]
    processes: List[GpuProcess]
    xids: List[GpuXid]  # XID events seen since the sampler started (newest last)
    verdict: str  # "ok" | "warn" | "critical"
    reasons: List[GpuReason]


@dataclass
class GpuSnapshot:
    machine: str  # "local" (a VM's "provider/id" once remote sampling exists)
    source: str  # "nvml" | "nvidia-smi" | "none"
    time: float
    driverVersion: Optional[str]
    cudaVersion: Optional[str]  # the driver's CUDA version, e.g. "12.4"
    gpus: List[GpuInfo]
    verdict: str  # "ok" | "warn" | "critical" of the machine ("ok" with no GPU)
    reasons: List[GpuReason]  # the machine's and every GPU's
    message: Optional[str]  # with no GPU data: why (no driver, no GPU, library failed)
    intervalSeconds: float
    sampling: bool  # a sampler is running (someone watches)


@dataclass
class GpuStatusParams:
    fresh: Optional[bool] = None  # take a new sample even when the sampler has a recent one
    machine: Optional[str] = None  # a connected machine's GPUs (asked of its agent); None: here


@dataclass
class GpuWatchParams:
    watcher: str  # who watches, e.g. "statusBar", "panel"; sampling runs while any does
    watching: bool
    machine: Optional[str] = None  # a connected machine's GPUs (sampled by its agent); None: here


@dataclass
class GpuHistoryParams:
    seconds: Optional[float] = None  # default 900 (15 minutes), the most kept
    machine: Optional[str] = None  # a connected machine's history (its agent's); None: here


@dataclass
class GpuHistoryGpu:
    index: int
    utilization: Optional[int]
    memoryUsed: Optional[int]
    memoryTotal: Optional[int]
    powerDraw: Optional[float]
    temperature: Optional[int]


@dataclass
class GpuHistoryPoint:
    time: float
    gpus: List[GpuHistoryGpu]


@dataclass
class GpuHistoryResult:
    machine: str
    intervalSeconds: float
    points: List[GpuHistoryPoint]  # oldest first


@dataclass
class GpuCheckParams:
    python: Optional[str] = None  # interpreter for the torch tests (default: the kernels' one)
    benchmarks: Optional[bool] = None  # run the torch tests when torch is there (default true)
    expectedGpuCount: Optional[int] = None  # default: setting gpuWorkbench.gpu.expectedCount


@dataclass
class GpuCheckRow:
    id: str  # stable, e.g. "driver", "gpuCount", "pcie", "matmul"
    title: str
    status: str  # "pass" | "warn" | "fail" | "skip" | "info"
    detail: str
    gpu: Optional[int]  # None: the machine
    measured: Optional[float]
    expected: Optional[float]
    unit: Optional[str]  # "TFLOPS", "GB/s", ...


@dataclass
class GpuCheckReport:
    machine: str
    time: float
    durationMs: float
    verdict: str  # "pass" | "warn" | "fail": the worst row
    rows: List[GpuCheckRow]
    markdown: str  # the same report as Markdown, for export


# ---- remote machines (remote/...) ----
# A machine is a VM of the VM service ("provider/id") reached over OpenSSH with one
# multiplexed master connection; the agent (this backend's own package, copied once per
# version) runs there. Kernels, GPU sampling and checkpoint reading are forwarded to it.


@dataclass
class RemoteInterpreter:
    path: str
    version: str  # "3.10.12"
    kind: str  # "system" | "conda" | "venv"
    name: str  # "python3", a conda env's name, a venv's folder
    hasTorch: Optional[bool]  # None: not checked


@dataclass
class RemoteForward:
    remotePort: int
    localPort: int


@dataclass
class RemoteMachine:
    machine: str  # "provider/id"
    name: str
    state: str  # "connecting" | "connected" | "reconnecting" | "disconnected" | "failed"
    message: Optional[str]  # why it is not connected, for people
    host: str  # "user@host:port" or an ssh alias
    agentVersion: Optional[str]
    agentPython: Optional[str]
    interpreters: List[RemoteInterpreter]
    connectedAt: Optional[float]
    reconnects: int  # times the link came back since remote/connect
    latencyMs: Optional[float]  # last round trip to the agent
    forwards: List[RemoteForward]


@dataclass
class RemoteConnectParams:
    provider: str
    id: str
    python: Optional[str] = None  # the agent's interpreter on the machine (default python3)
    credentials: Optional[Dict[str, Dict[str, str]]] = None  # to look the machine up


@dataclass
class RemoteRefParams:
    machine: str


@dataclass
class RemoteListParams:
    pass


@dataclass
class RemoteListResult:
    machines: List[RemoteMachine]


@dataclass
class RemoteTrustHostParams:
    machine: str
    fingerprint: str  # the SHA256 fingerprint the user accepted (from HostKeyUnknown's data)


@dataclass
class RemoteSyncParams:
    machine: str
    localPath: str
    remotePath: Optional[str] = None  # default ~/gpu-workbench/<folder name>
    dryRun: Optional[bool] = None  # list what would be sent
    maxBytes: Optional[int] = None  # refuse when more would be sent (default 500 MiB)


@dataclass
class RemoteSyncResult:
    machine: str
    localPath: str
    remotePath: str
    method: str  # "rsync" | "tar"
    files: int  # sent (or that would be, dry run)
    bytes: int
    sample: List[str]  # up to 200 of the paths sent
    dryRun: bool
    durationMs: float


@dataclass
class RemoteForwardParams:
    machine: str
    remotePort: int
    localPort: Optional[int] = None  # default: the same number when free, else any free port


@dataclass
class RemoteUnforwardParams:
    machine: str
    localPort: int


@dataclass
class RemoteAutostopParams:
    machine: str
    idleMinutes: int  # 0: off
    gpuThreshold: Optional[float] = None  # default 10 (%)
    command: Optional[str] = (
        None  # the stop action on the machine (default: sudo -n shutdown -h now)
    )


@dataclass
class RemoteAutostopInfo:
    machine: str
    idleMinutes: int
    idleSince: Optional[float]
    actAt: Optional[float]
    reason: str
    running: bool  # the watchdog process is alive on the machine


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
        MethodInfo("debug/clock", "request", ClockParams, ClockResult, debug_only=True),
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
        MethodInfo("checkpoint/inspect", "request", CheckpointInspectParams, CheckpointSummary),
        MethodInfo("checkpoint/stats", "request", CheckpointStatsParams, CheckpointStatsResult),
        MethodInfo("checkpoint/diff", "request", CheckpointDiffParams, CheckpointDiffResult),
        MethodInfo("checkpoint/scan", "request", CheckpointScanParams, CheckpointScanResult),
        MethodInfo("checkpoint/list", "request", CheckpointListParams, CheckpointListResult),
        MethodInfo("vm/providers", "request", VmCredentialsParams, VmProvidersResult),
        MethodInfo("vm/offerings", "request", VmOfferingsParams, VmOfferingsResult),
        MethodInfo("vm/list", "request", VmListParams, VmListResult),
        MethodInfo("vm/create", "request", VmCreateParams, VmInfo),
        MethodInfo("vm/start", "request", VmRefParams, VmInfo),
        MethodInfo("vm/stop", "request", VmRefParams, VmInfo),
        MethodInfo("vm/terminate", "request", VmRefParams, VmInfo),
        MethodInfo("vm/cost", "request", VmCostParams, VmCostResult),
        MethodInfo("vm/autostop", "request", VmAutostopParams, VmAutostopInfo),
        MethodInfo("vm/keepRunning", "request", VmKeepRunningParams, VmAutostopInfo),
        MethodInfo("vm/idleWarning", "notification", VmIdleWarningParams, to_client=True),
        MethodInfo("gpu/status", "request", GpuStatusParams, GpuSnapshot),
        MethodInfo("gpu/watch", "request", GpuWatchParams, GpuSnapshot),
        MethodInfo("gpu/history", "request", GpuHistoryParams, GpuHistoryResult),
        MethodInfo("gpu/check", "request", GpuCheckParams, GpuCheckReport),
        MethodInfo("gpu/sample", "notification", GpuSnapshot, to_client=True),
        MethodInfo("remote/connect", "request", RemoteConnectParams, RemoteMachine),
        MethodInfo("remote/disconnect", "request", RemoteRefParams, RemoteMachine),
        MethodInfo("remote/list", "request", RemoteListParams, RemoteListResult),
        MethodInfo("remote/trustHost", "request", RemoteTrustHostParams, RemoteMachine),
        MethodInfo("remote/sync", "request", RemoteSyncParams, RemoteSyncResult),
        MethodInfo("remote/forward", "request", RemoteForwardParams, RemoteMachine),
        MethodInfo("remote/unforward", "request", RemoteUnforwardParams, RemoteMachine),
        MethodInfo("remote/autostop", "request", RemoteAutostopParams, RemoteAutostopInfo),
        MethodInfo("remote/autostopInfo", "request", RemoteRefParams, RemoteAutostopInfo),
        MethodInfo("remote/state", "notification", RemoteMachine, to_client=True),
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
