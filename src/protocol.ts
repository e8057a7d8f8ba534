/**
 * The one typed surface of the backend protocol, mirrored by
 * server-python/gpu_workbench/protocol.py. Every custom method is a constant with its
 * param and result types; `PROTOCOL_SPEC` lists their field names at run time so a test
 * can compare both sides (test/unit/protocol.test.ts).
 *
 * This module must not import `vscode`: the CLI and unit tests use it too.
 */
import { NotificationType, RequestType, RequestType0 } from "vscode-jsonrpc";

// ---- records -------------------------------------------------------------------------

export interface PythonInfo {
  executable: string;
  version: string;
  implementation: string;
}

export interface StatusResult {
  name: string;
  version: string;
  pid: number;
  uptimeSeconds: number;
  python: PythonInfo;
  dataDirectory: string;
  trusted: boolean;
  capabilities: string[];
}

export interface PingParams {
  payload?: string;
}

export interface PingResult {
  payload: string | null;
  serverTime: number;
}

/** Options sent in `initialize`'s `initializationOptions`. */
export interface InitializationOptions {
  dataDirectory?: string;
  trusted?: boolean;
  /** Regexes of lines that start a cell (setting gpuWorkbench.cells.markers). */
  cellMarkers?: string[];
  logLevel?: "trace" | "debug" | "info" | "warning" | "error";
}

// ---- kernels -------------------------------------------------------------------------

export type KernelState = "starting" | "idle" | "busy" | "dead" | "exited";

export interface KernelInfo {
  kernelId: string;
  name: string;
  pid: number;
  python: string;
  pythonVersion: string;
  cwd: string;
  state: KernelState;
  createdAt: number;
  lastSeq: number;
  queue: string[];
  idleTimeoutSeconds: number;
}

export interface KernelStartParams {
  python?: string;
  cwd?: string;
  env?: Record<string, string>;
  envFile?: string;
  name?: string;
  idleTimeoutSeconds?: number;
}

export interface KernelRef {
  kernelId: string;
}

export interface KernelExecuteParams {
  kernelId: string;
  code: string;
  /** The file the code came from, so tracebacks point at it. */
  file?: string;
  /** 0-based line in `file` where the code starts. */
  line?: number;
  stopOnError?: boolean;
  executionId?: string;
  /** Run only if this earlier execution ended ok; else reply "aborted" (Run All). */
  after?: string;
}

export interface KernelExecuteResult {
  executionId: string;
  /** 0 when it runs now. */
  queuePosition: number;
}

export interface KernelInterruptParams {
  kernelId: string;
  graceSeconds?: number;
}

export interface KernelInterruptResult {
  outcome: "interrupted" | "killed" | "idle";
}

export interface KernelListResult {
  kernels: KernelInfo[];
}

export interface KernelAttachParams {
  kernelId: string;
  /** The last seq this client has seen; events after it are replayed. */
  since?: number;
}

export interface KernelInputReplyParams {
  kernelId: string;
  executionId: string;
  value: string;
}

export interface Variable {
  name: string;
  type: string;
  shape: number[] | null;
  length: number | null;
  dtype: string | null;
  size: number | null;
  repr: string;
}

export interface KernelVariablesResult {
  variables: Variable[];
}

/** Outputs follow the Jupyter notebook format's shapes (mime bundles, base64 images). */
export type MimeBundle = Record<string, unknown>;

export interface ErrorFrame {
  file: string;
  line: number;
  name: string;
}

/** A kernel's journaled message (see server-python/gpu_workbench/kernels/PROTOCOL.md). */
export type KernelEvent = { seq: number } & (
  | { type: "start"; pid: number; python: string; pythonVersion: string; cwd: string }
  | { type: "status"; state: "idle" | "busy"; executionId?: string; queue: string[] }
  | { type: "execute_input"; executionId: string; executionCount: number; file?: string | null; line?: number }
  | { type: "stream"; executionId: string; name: "stdout" | "stderr"; text: string }
  | { type: "display_data"; executionId: string; data: MimeBundle; metadata: Record<string, unknown> }
  | {
      type: "execute_result";
      executionId: string;
      executionCount: number;
      data: MimeBundle;
      metadata: Record<string, unknown>;
    }
  | {
      type: "error";
      executionId: string;
      ename: string;
      evalue: string;
      traceback: string[];
      frames: ErrorFrame[];
    }
  | { type: "input_request"; executionId: string; prompt: string; password: boolean }
  | {
      type: "reply";
      executionId: string;
      status: "ok" | "error" | "interrupted" | "aborted" | "died";
      executionCount: number | null;
      durationMs: number;
    }
  | { type: "exit"; reason: "shutdown" | "idle" }
  | { type: "died"; exitCode: number | null; signal: string | null; stderrTail: string[] }
);

/** Replay could not reach back this far: these seqs were rotated out of the journal. */
export interface KernelGap {
  type: "gap";
  from: number;
  to: number;
}

export interface KernelEventParams {
  kernelId: string;
  event: KernelEvent | KernelGap;
}

// ---- cells ---------------------------------------------------------------------------

export interface CellsParseParams {
  text: string;
  /** Marker regexes; default `# %%`, `#%%`, `# In[ ]:`. */
  markers?: string[];
}

export interface Cell {
  index: number;
  kind: "code" | "markdown";
  title: string;
  /** 0-based line of the marker (0 for a leading cell without one). */
  startLine: number;
  /** 0-based first line of the body. */
  codeStartLine: number;
  /** 0-based last line, inclusive. */
  endLine: number;
  code: string;
}

export interface CellsParseResult {
  cells: Cell[];
}

// ---- checkpoints ---------------------------------------------------------------------

export type CheckpointFormat =
  | "safetensors"
  | "pytorch-zip"
  | "pytorch-legacy"
  | "pytorch-tar"
  | "torchscript"
  | "pickle"
  | "npy"
  | "npz"
  | "gguf"
  | "hf-index"
  | "hf-folder";

export type SafetyVerdict = "safe" | "unknown" | "unsafe";

export interface CheckpointInspectParams {
  path: string;
  /** Cap on the tensors listed (totals still count all); 0 lists none. */
  maxTensors?: number;
}

export interface CheckpointTensor {
  name: string;
  /** Canonical upper-case name: F32, BF16, F8_E4M3, I64, BOOL, Q4_K, … */
  dtype: string;
  shape: number[];
  numel: number;
  nbytes: number | null;
  storage: string | null;
  storageOffset: number;
  stride: number[] | null;
  offset: number | null;
  file: string | null;
  member: string | null;
  byteOrder: "little" | "big";
  /** "weight" counts as a parameter; "state" is optimizer, scheduler and other training state. */
  role: "weight" | "state";
  detail: string | null;
}

export interface CheckpointDtypeTotal {
  dtype: string;
  tensors: number;
  parameters: number;
  bytes: number;
}

export interface CheckpointModule {
  name: string;
  path: string;
  tensors: number;
  parameters: number;
  bytes: number;
  children: CheckpointModule[];
}

export interface CheckpointSharedStorage {
  storage: string;
  tensors: string[];
  bytes: number;
}

export interface CheckpointGlobal {
  module: string;
  name: string;
  classification: "allowed" | "unsafe" | "unknown";
  count: number;
  where: string;
  reason: string;
}

export interface CheckpointSafety {
  verdict: SafetyVerdict;
  summary: string;
  globals: CheckpointGlobal[];
  findings: string[];
}

export interface CheckpointFile {
  path: string;
  size: number;
  format: string;
}

export interface CheckpointSummary {
  path: string;
  format: CheckpointFormat;
  formatDetail: string;
  fileSize: number;
  files: CheckpointFile[];
  tensorCount: number;
  tensorsListed: number;
  tensors: CheckpointTensor[];
  /** Elements of weight tensors: a 0-dim tensor counts 1, tied weights count once, optimizer and training state not at all. */
  parameterCount: number;
  tensorBytes: number;
  storageBytes: number;
  dtypes: CheckpointDtypeTotal[];
  modules: CheckpointModule;
  sharedStorages: CheckpointSharedStorage[];
  epoch: number | null;
  globalStep: number | null;
  metadata: Record<string, unknown>;
  structure: unknown;
  warnings: string[];
  safety: CheckpointSafety;
  elapsedMs: number;
}

export interface CheckpointStatsParams {
  path: string;
  tensors?: string[] | null;
  bins?: number;
  timeBudgetMs?: number;
  maxElements?: number;
}

export interface CheckpointHistogram {
  edges: number[];
  counts: number[];
}

export interface CheckpointTensorStats {
  name: string;
  dtype: string;
  numel: number;
  count: number;
  sampled: boolean;
  min: number | null;
  max: number | null;
  mean: number | null;
  std: number | null;
  nanCount: number;
  infCount: number;
  zeroFraction: number | null;
  histogram: CheckpointHistogram | null;
  error: string | null;
}

export interface CheckpointStatsResult {
  path: string;
  engine: "numpy" | "stdlib";
  stats: CheckpointTensorStats[];
  elapsedMs: number;
}

export interface CheckpointDiffParams {
  a: string;
  b: string;
  compareValues?: boolean;
}

export type TensorChange = "added" | "removed" | "reshaped" | "retyped" | "changed" | "unchanged" | "unknown";

export interface CheckpointDiffTensor {
  name: string;
  change: TensorChange;
  a: CheckpointTensor | null;
  b: CheckpointTensor | null;
}

export interface CheckpointMetadataChange {
  key: string;
  a: unknown;
  b: unknown;
}

export interface CheckpointDiffCounts {
  added: number;
  removed: number;
  reshaped: number;
  retyped: number;
  changed: number;
  unchanged: number;
  unknown: number;
}

export interface CheckpointDiffResult {
  a: CheckpointFile;
  b: CheckpointFile;
  tensors: CheckpointDiffTensor[];
  metadata: CheckpointMetadataChange[];
  counts: CheckpointDiffCounts;
  summary: string;
  elapsedMs: number;
}

export interface CheckpointScanParams {
  paths: string[];
  allow?: string[];
}

export interface CheckpointScanEntry {
  path: string;
  format: string;
  verdict: SafetyVerdict | "error";
  summary: string;
  globals: CheckpointGlobal[];
  error: string | null;
}

export interface CheckpointScanResult {
  results: CheckpointScanEntry[];
}

// ---- methods -------------------------------------------------------------------------

export const status = new RequestType0<StatusResult, void>("workbench/status");
export const ping = new RequestType<PingParams, PingResult, void>("workbench/ping");

export const kernelStart = new RequestType<KernelStartParams, KernelInfo, void>("kernel/start");
export const kernelExecute = new RequestType<KernelExecuteParams, KernelExecuteResult, void>("kernel/execute");
export const kernelInterrupt = new RequestType<KernelInterruptParams, KernelInterruptResult, void>("kernel/interrupt");
export const kernelRestart = new RequestType<KernelRef, KernelInfo, void>("kernel/restart");
export const kernelShutdown = new RequestType<KernelRef, KernelRef, void>("kernel/shutdown");
export const kernelList = new RequestType<Record<string, never>, KernelListResult, void>("kernel/list");
export const kernelAttach = new RequestType<KernelAttachParams, KernelInfo, void>("kernel/attach");
export const kernelInputReply = new RequestType<KernelInputReplyParams, Record<string, never>, void>(
  "kernel/inputReply",
);
export const kernelVariables = new RequestType<KernelRef, KernelVariablesResult, void>("kernel/variables");
export const kernelEvent = new NotificationType<KernelEventParams>("kernel/event");

export const cellsParse = new RequestType<CellsParseParams, CellsParseResult, void>("cells/parse");

export const checkpointInspect = new RequestType<CheckpointInspectParams, CheckpointSummary, void>(
  "checkpoint/inspect",
);
export const checkpointStats = new RequestType<CheckpointStatsParams, CheckpointStatsResult, void>("checkpoint/stats");
export const checkpointDiff = new RequestType<CheckpointDiffParams, CheckpointDiffResult, void>("checkpoint/diff");
export const checkpointScan = new RequestType<CheckpointScanParams, CheckpointScanResult, void>("checkpoint/scan");

// ---- errors --------------------------------------------------------------------------

/** Application error kinds and their JSON-RPC codes (from -32000 down, clear of LSP's). */
export const ERROR_KINDS = {
  Internal: -32000,
  InvalidState: -32010,
  NotFound: -32011,
  Unsupported: -32012,
  Untrusted: -32013,
  KernelDied: -32020,
  ProviderAuth: -32030,
  ProviderUnavailable: -32031,
  CheckpointFormat: -32040,
  UnsafePickle: -32041,
} as const;

export type ErrorKind = keyof typeof ERROR_KINDS;

/** The `data` of an application error. */
export interface ErrorData {
  kind: ErrorKind;
  detail?: string | null;
  hint?: string | null;
}

/** Narrow an unknown error (a vscode-jsonrpc ResponseError) to its application data. */
export function errorData(err: unknown): ErrorData | undefined {
  if (typeof err !== "object" || err === null) return undefined;
  const data = (err as { data?: unknown }).data;
  if (typeof data !== "object" || data === null) return undefined;
  const kind = (data as { kind?: unknown }).kind;
  if (typeof kind !== "string" || !(kind in ERROR_KINDS)) return undefined;
  return data as ErrorData;
}

// ---- run-time spec for the cross-language check --------------------------------------

/**
 * A shape lists every key of T exactly once: `true` for a leaf, a nested shape for a
 * record whose fields the other side declares too (a dataclass in protocol.py). Free-form
 * objects (dicts, event unions) are leaves. The compiler rejects a missing or an extra key,
 * so the spec cannot drift from the interfaces above.
 */
export type Shape<T> = {
  [K in keyof Required<T>]-?: NonNullable<T[K]> extends readonly unknown[]
    ? true
    : NonNullable<T[K]> extends object
      ? Shape<NonNullable<T[K]>> | true
      : true;
};

function shape<T>(s: Shape<T>): Shape<T> {
  return s;
}

interface MethodSpec {
  kind: "request" | "notification";
  params: object | null;
  result: object | null;
}

const KERNEL_INFO = shape<KernelInfo>({
  kernelId: true,
  name: true,
  pid: true,
  python: true,
  pythonVersion: true,
  cwd: true,
  state: true,
  createdAt: true,
  lastSeq: true,
  queue: true,
  idleTimeoutSeconds: true,
});

const KERNEL_REF = shape<KernelRef>({ kernelId: true });

/** Every custom method, keyed by name, with the shapes of its params and result. */
export const PROTOCOL_SPEC: Record<string, MethodSpec> = {
  [status.method]: {
    kind: "request",
    params: null,
    result: shape<StatusResult>({
      name: true,
      version: true,
      pid: true,
      uptimeSeconds: true,
      python: { executable: true, version: true, implementation: true },
      dataDirectory: true,
      trusted: true,
      capabilities: true,
    }),
  },
  [ping.method]: {
    kind: "request",
    params: shape<PingParams>({ payload: true }),
    result: shape<PingResult>({ payload: true, serverTime: true }),
  },
  [kernelStart.method]: {
    kind: "request",
    params: shape<KernelStartParams>({
      python: true,
      cwd: true,
      env: true,
      envFile: true,
      name: true,
      idleTimeoutSeconds: true,
    }),
    result: KERNEL_INFO,
  },
  [kernelExecute.method]: {
    kind: "request",
    params: shape<KernelExecuteParams>({
      kernelId: true,
      code: true,
      file: true,
      line: true,
      stopOnError: true,
      executionId: true,
      after: true,
    }),
    result: shape<KernelExecuteResult>({ executionId: true, queuePosition: true }),
  },
  [kernelInterrupt.method]: {
    kind: "request",
    params: shape<KernelInterruptParams>({ kernelId: true, graceSeconds: true }),
    result: shape<KernelInterruptResult>({ outcome: true }),
  },
  [kernelRestart.method]: { kind: "request", params: KERNEL_REF, result: KERNEL_INFO },
  [kernelShutdown.method]: { kind: "request", params: KERNEL_REF, result: KERNEL_REF },
  [kernelList.method]: { kind: "request", params: {}, result: shape<KernelListResult>({ kernels: true }) },
  [kernelAttach.method]: {
    kind: "request",
    params: shape<KernelAttachParams>({ kernelId: true, since: true }),
    result: KERNEL_INFO,
  },
  [kernelInputReply.method]: {
    kind: "request",
    params: shape<KernelInputReplyParams>({ kernelId: true, executionId: true, value: true }),
    result: {},
  },
  [kernelVariables.method]: {
    kind: "request",
    params: KERNEL_REF,
    result: shape<KernelVariablesResult>({ variables: true }),
  },
  [kernelEvent.method]: {
    kind: "notification",
    params: shape<KernelEventParams>({ kernelId: true, event: true }),
    result: null,
  },
  [cellsParse.method]: {
    kind: "request",
    params: shape<CellsParseParams>({ text: true, markers: true }),
    result: shape<CellsParseResult>({ cells: true }),
  },
  [checkpointInspect.method]: {
    kind: "request",
    params: shape<CheckpointInspectParams>({ path: true, maxTensors: true }),
    result: shape<CheckpointSummary>({
      path: true,
      format: true,
      formatDetail: true,
      fileSize: true,
      files: true,
      tensorCount: true,
      tensorsListed: true,
      tensors: true,
      parameterCount: true,
      tensorBytes: true,
      storageBytes: true,
      dtypes: true,
      modules: { name: true, path: true, tensors: true, parameters: true, bytes: true, children: true },
      sharedStorages: true,
      epoch: true,
      globalStep: true,
      metadata: true,
      structure: true,
      warnings: true,
      safety: { verdict: true, summary: true, globals: true, findings: true },
      elapsedMs: true,
    }),
  },
  [checkpointStats.method]: {
    kind: "request",
    params: shape<CheckpointStatsParams>({
      path: true,
      tensors: true,
      bins: true,
      timeBudgetMs: true,
      maxElements: true,
    }),
    result: shape<CheckpointStatsResult>({ path: true, engine: true, stats: true, elapsedMs: true }),
  },
  [checkpointDiff.method]: {
    kind: "request",
    params: shape<CheckpointDiffParams>({ a: true, b: true, compareValues: true }),
    result: shape<CheckpointDiffResult>({
      a: { path: true, size: true, format: true },
      b: { path: true, size: true, format: true },
      tensors: true,
      metadata: true,
      counts: {
        added: true,
        removed: true,
        reshaped: true,
        retyped: true,
        changed: true,
        unchanged: true,
        unknown: true,
      },
      summary: true,
      elapsedMs: true,
    }),
  },
  [checkpointScan.method]: {
    kind: "request",
    params: shape<CheckpointScanParams>({ paths: true, allow: true }),
    result: shape<CheckpointScanResult>({ results: true }),
  },
};

/** Flatten a shape into sorted dotted field paths, the form protocol.py prints. */
export function fieldPaths(s: object | null, prefix = ""): string[] {
  if (s === null) return [];
  const out: string[] = [];
  for (const [key, value] of Object.entries(s)) {
    if (value === true) out.push(prefix + key);
    else out.push(...fieldPaths(value as object, `${prefix}${key}.`));
  }
  return out.sort();
}
