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
  /** Non-secret provider settings (gpuWorkbench.vms.*); credentials go per call instead. */
  vms?: VmInitOptions;
  /** GPU health settings (gpuWorkbench.gpu.*). */
  gpu?: GpuInitOptions;
  /** Remote execution settings (gpuWorkbench.remote.*). */
  remote?: { knownHostsFile?: string };
}

export interface GpuInitOptions {
  /** Seconds between samples while someone watches (minimum 0.5). */
  intervalSeconds?: number;
  /** °C at which a GPU's temperature is a warning. */
  temperatureWarning?: number;
  /** Minutes of memory held at 0% utilization before a warning; 0: off. */
  idleMemoryMinutes?: number;
  /** How many GPUs this machine should have; null: no check. */
  expectedCount?: number | null;
}

export interface VmInitOptions {
  aws?: { endpointUrl?: string; regions?: string[]; profile?: string };
  lambda?: { apiUrl?: string };
  linode?: { apiUrl?: string };
  ssh?: { hosts?: unknown[] };
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
  /** "provider/id" for a kernel on a remote machine; null (or absent): this machine. */
  machine?: string | null;
}

export interface KernelStartParams {
  python?: string;
  cwd?: string;
  env?: Record<string, string>;
  envFile?: string;
  name?: string;
  idleTimeoutSeconds?: number;
  /** "provider/id" of a connected machine (remote/connect); absent: this machine. */
  machine?: string;
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
  /** Read it on this connected machine ("provider/id"; the path is the machine's). */
  machine?: string;
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
  /** Compute them on this connected machine ("provider/id"; the path is the machine's). */
  machine?: string;
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

export interface CheckpointListParams {
  /** Absolute, or starting with ~ (the home of the machine that lists it). */
  folder: string;
  /** List it on this connected machine ("provider/id"). */
  machine?: string;
  /** Entries listed at most (default 2000); beyond it `truncated`. */
  maxFiles?: number;
}

export interface CheckpointListFile {
  path: string;
  size: number;
  mtimeMs: number;
}

export interface CheckpointListIndex extends CheckpointListFile {
  /** File names of its weight_map, sorted. */
  shards: string[];
}

export interface CheckpointListResult {
  /** Absolute, as resolved on the machine that listed it. */
  folder: string;
  files: CheckpointListFile[];
  indexes: CheckpointListIndex[];
  truncated: boolean;
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

// ---- GPU machines ------------------------------------------------------------------

export interface VmCredentialsParams {
  credentials?: Record<string, Record<string, string>>;
}

export interface VmProviderInfo {
  name: string;
  displayName: string;
  available: boolean;
  reason: string | null;
  capabilities: string[];
  credentialFields: string[];
  configured: boolean;
  stopKeepsBilling: boolean;
  notes: string[];
}

export interface VmProvidersResult {
  providers: VmProviderInfo[];
}

export interface VmOfferingsParams {
  provider: string;
  region?: string;
  credentials?: Record<string, Record<string, string>>;
}

export interface VmRegion {
  name: string;
  available: boolean | null;
}

export interface VmOffering {
  provider: string;
  instanceType: string;
  description: string;
  gpuModel: string | null;
  gpuCount: number;
  gpuMemoryGiB: number | null;
  vcpus: number | null;
  ramGiB: number | null;
  pricePerHour: number | null;
  spotPricePerHour: number | null;
  priceSource: string;
  regions: VmRegion[];
}

export interface VmOfferingsResult {
  offerings: VmOffering[];
}

export interface VmSshTarget {
  host: string;
  port: number;
  user: string | null;
  identityFile: string | null;
  alias: string | null;
}

export interface VmInfo {
  provider: string;
  id: string;
  name: string;
  state: string;
  instanceType: string | null;
  gpuModel: string | null;
  gpuCount: number;
  region: string | null;
  pricePerHour: number | null;
  spot: boolean;
  launchedAt: number | null;
  address: string | null;
  ssh: VmSshTarget | null;
  tags: Record<string, string>;
  managed: boolean;
  capabilities: string[];
  stopKeepsBilling: boolean;
  accruedCost: number | null;
  detail: string | null;
}

export interface VmListParams {
  providers?: string[];
  credentials?: Record<string, Record<string, string>>;
}

export interface VmProviderError {
  provider: string;
  kind: string;
  message: string;
  hint: string | null;
}

export interface VmListResult {
  vms: VmInfo[];
  errors: VmProviderError[];
}

export interface VmCreateParams {
  provider: string;
  name: string;
  instanceType: string;
  region: string;
  image?: string;
  diskGiB?: number;
  spot?: boolean;
  sshKeyName?: string;
  sshPublicKey?: string;
  tags?: Record<string, string>;
  startupScript?: string;
  credentials?: Record<string, Record<string, string>>;
}

export interface VmRefParams {
  provider: string;
  id: string;
  credentials?: Record<string, Record<string, string>>;
}

export interface VmCostParams {
  days?: number;
  dailyBudget?: number;
  monthlyBudget?: number;
}

export interface VmCostEntry {
  key: string;
  label: string;
  cost: number;
  unknownHours: number;
  hours: number;
}

export interface VmBudgetStatus {
  period: string;
  limit: number;
  spent: number;
  level: string;
}

export interface VmCostResult {
  total: number;
  unknownHours: number;
  burnRatePerHour: number;
  burnUnknown: number;
  byVm: VmCostEntry[];
  byDay: VmCostEntry[];
  byProvider: VmCostEntry[];
  budgets: VmBudgetStatus[];
  since: number;
  now: number;
}

export interface VmAutostopParams {
  provider: string;
  id: string;
  idleMinutes: number;
  gpuThreshold?: number;
  terminateIfNoStop?: boolean;
}

export interface VmAutostopInfo {
  provider: string;
  id: string;
  idleMinutes: number;
  idleSince: number | null;
  actAt: number | null;
  action: string;
  reason: string;
}

export interface VmIdleWarningParams {
  provider: string;
  id: string;
  name: string;
  actAt: number;
  action: string;
}

export interface VmKeepRunningParams {
  provider: string;
  id: string;
}

// ---- GPU health ----------------------------------------------------------------------
// Memory in bytes, power in watts, temperature in °C, times in unix seconds; a value the
// driver does not report is null, never 0.

export type GpuVerdict = "ok" | "warn" | "critical";

export interface GpuReason {
  /** The GPU's index; null: the machine as a whole. */
  gpu: number | null;
  severity: "warn" | "critical";
  /** Stable id, e.g. "hwSlowdown", "xid79", "eccUncorrected", "gpuCount". */
  code: string;
  message: string;
}

export interface GpuProcess {
  pid: number;
  name: string | null;
  usedMemory: number | null;
}

export interface GpuEcc {
  correctedVolatile: number | null;
  uncorrectedVolatile: number | null;
  correctedAggregate: number | null;
  uncorrectedAggregate: number | null;
}

export interface GpuRemappedRows {
  correctable: number | null;
  uncorrectable: number | null;
  pending: boolean | null;
  failure: boolean | null;
}

export interface GpuPcie {
  gen: number | null;
  maxGen: number | null;
  width: number | null;
  maxWidth: number | null;
}

export interface GpuXid {
  xid: number;
  time: number;
  meaning: string;
  severity: "warn" | "critical";
}

export interface GpuInfo {
  index: number;
  uuid: string;
  name: string;
  /** Fallen off the bus; the other values are then null. */
  lost: boolean;
  utilization: number | null;
  memoryUtilization: number | null;
  memoryUsed: number | null;
  memoryTotal: number | null;
  temperature: number | null;
  temperatureSlowdown: number | null;
  powerDraw: number | null;
  powerLimit: number | null;
  clocksEventReasons: number | null;
  throttle: string[];
  ecc: GpuEcc;
  remappedRows: GpuRemappedRows | null;
  pcie: GpuPcie;
  persistenceMode: boolean | null;
  processes: GpuProcess[];
  xids: GpuXid[];
  verdict: GpuVerdict;
  reasons: GpuReason[];
}

export interface GpuSnapshot {
  machine: string;
  source: "nvml" | "nvidia-smi" | "none";
  time: number;
  driverVersion: string | null;
  cudaVersion: string | null;
  gpus: GpuInfo[];
  verdict: GpuVerdict;
  reasons: GpuReason[];
  /** With no GPU data: why. */
  message: string | null;
  intervalSeconds: number;
  sampling: boolean;
}

export interface GpuStatusParams {
  fresh?: boolean;
  /** A connected machine's GPUs (asked of its agent); absent: this machine. */
  machine?: string;
}

export interface GpuWatchParams {
  watcher: string;
  watching: boolean;
  /** A connected machine's GPUs (sampled by its agent); absent: this machine. */
  machine?: string;
}

export interface GpuHistoryParams {
  seconds?: number;
  /** A connected machine's history (its agent's); absent: this machine. */
  machine?: string;
}

export interface GpuHistoryGpu {
  index: number;
  utilization: number | null;
  memoryUsed: number | null;
  memoryTotal: number | null;
  powerDraw: number | null;
  temperature: number | null;
}

export interface GpuHistoryPoint {
  time: number;
  gpus: GpuHistoryGpu[];
}

export interface GpuHistoryResult {
  machine: string;
  intervalSeconds: number;
  points: GpuHistoryPoint[];
}

export interface GpuCheckParams {
  python?: string;
  benchmarks?: boolean;
  expectedGpuCount?: number;
}

export type GpuCheckStatus = "pass" | "warn" | "fail" | "skip" | "info";

export interface GpuCheckRow {
  id: string;
  title: string;
  status: GpuCheckStatus;
  detail: string;
  gpu: number | null;
  measured: number | null;
  expected: number | null;
  unit: string | null;
}

export interface GpuCheckReport {
  machine: string;
  time: number;
  durationMs: number;
  verdict: "pass" | "warn" | "fail";
  rows: GpuCheckRow[];
  markdown: string;
}

// ---- remote machines -----------------------------------------------------------------

export type RemoteState = "connecting" | "connected" | "reconnecting" | "disconnected" | "failed";

export interface RemoteInterpreter {
  path: string;
  version: string;
  kind: "system" | "conda" | "venv";
  name: string;
  hasTorch: boolean | null;
}

export interface RemoteForward {
  remotePort: number;
  localPort: number;
}

export interface RemoteMachine {
  machine: string;
  name: string;
  state: RemoteState;
  message: string | null;
  host: string;
  agentVersion: string | null;
  agentPython: string | null;
  interpreters: RemoteInterpreter[];
  connectedAt: number | null;
  reconnects: number;
  latencyMs: number | null;
  forwards: RemoteForward[];
}

export interface RemoteConnectParams {
  provider: string;
  id: string;
  python?: string;
  credentials?: Record<string, Record<string, string>>;
}

export interface RemoteRefParams {
  machine: string;
}

export type RemoteListParams = Record<string, never>;

export interface RemoteListResult {
  machines: RemoteMachine[];
}

export interface RemoteTrustHostParams {
  machine: string;
  fingerprint: string;
}

export interface RemoteSyncParams {
  machine: string;
  localPath: string;
  remotePath?: string;
  dryRun?: boolean;
  maxBytes?: number;
}

export interface RemoteSyncResult {
  machine: string;
  localPath: string;
  remotePath: string;
  method: "rsync" | "tar";
  files: number;
  bytes: number;
  sample: string[];
  dryRun: boolean;
  durationMs: number;
}

export interface RemoteForwardParams {
  machine: string;
  remotePort: number;
  localPort?: number;
}

export interface RemoteUnforwardParams {
  machine: string;
  localPort: number;
}

export interface RemoteAutostopParams {
  machine: string;
  idleMinutes: number;
  gpuThreshold?: number;
  command?: string;
}

export interface RemoteAutostopInfo {
  machine: string;
  idleMinutes: number;
  idleSince: number | null;
  actAt: number | null;
  reason: string;
  running: boolean;
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
export const checkpointList = new RequestType<CheckpointListParams, CheckpointListResult, void>("checkpoint/list");

export const vmProviders = new RequestType<VmCredentialsParams, VmProvidersResult, void>("vm/providers");
export const vmOfferings = new RequestType<VmOfferingsParams, VmOfferingsResult, void>("vm/offerings");
export const vmList = new RequestType<VmListParams, VmListResult, void>("vm/list");
export const vmCreate = new RequestType<VmCreateParams, VmInfo, void>("vm/create");
export const vmStart = new RequestType<VmRefParams, VmInfo, void>("vm/start");
export const vmStop = new RequestType<VmRefParams, VmInfo, void>("vm/stop");
export const vmTerminate = new RequestType<VmRefParams, VmInfo, void>("vm/terminate");
export const vmCost = new RequestType<VmCostParams, VmCostResult, void>("vm/cost");
export const vmAutostop = new RequestType<VmAutostopParams, VmAutostopInfo, void>("vm/autostop");
export const vmKeepRunning = new RequestType<VmKeepRunningParams, VmAutostopInfo, void>("vm/keepRunning");
export const vmIdleWarning = new NotificationType<VmIdleWarningParams>("vm/idleWarning");

export const gpuStatus = new RequestType<GpuStatusParams, GpuSnapshot, void>("gpu/status");
export const gpuWatch = new RequestType<GpuWatchParams, GpuSnapshot, void>("gpu/watch");
export const gpuHistory = new RequestType<GpuHistoryParams, GpuHistoryResult, void>("gpu/history");
export const gpuCheck = new RequestType<GpuCheckParams, GpuCheckReport, void>("gpu/check");
export const gpuSample = new NotificationType<GpuSnapshot>("gpu/sample");

export const remoteConnect = new RequestType<RemoteConnectParams, RemoteMachine, void>("remote/connect");
export const remoteDisconnect = new RequestType<RemoteRefParams, RemoteMachine, void>("remote/disconnect");
export const remoteList = new RequestType<RemoteListParams, RemoteListResult, void>("remote/list");
export const remoteTrustHost = new RequestType<RemoteTrustHostParams, RemoteMachine, void>("remote/trustHost");
export const remoteSync = new RequestType<RemoteSyncParams, RemoteSyncResult, void>("remote/sync");
export const remoteForward = new RequestType<RemoteForwardParams, RemoteMachine, void>("remote/forward");
export const remoteUnforward = new RequestType<RemoteUnforwardParams, RemoteMachine, void>("remote/unforward");
export const remoteAutostop = new RequestType<RemoteAutostopParams, RemoteAutostopInfo, void>("remote/autostop");
/** The watchdog's state on the machine now (the countdown), without changing it. */
export const remoteAutostopInfo = new RequestType<RemoteRefParams, RemoteAutostopInfo, void>("remote/autostopInfo");
export const remoteState = new NotificationType<RemoteMachine>("remote/state");

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
  ProviderQuota: -32032,
  ProviderRateLimited: -32033,
  ProviderResponse: -32034,
  ProviderRequest: -32035,
  CheckpointFormat: -32040,
  UnsafePickle: -32041,
  HostKeyUnknown: -32060,
  HostKeyChanged: -32061,
  RemoteUnavailable: -32062,
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
  machine: true,
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
      machine: true,
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
    params: shape<CheckpointInspectParams>({ path: true, maxTensors: true, machine: true }),
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
      machine: true,
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
  [checkpointList.method]: {
    kind: "request",
    params: shape<CheckpointListParams>({ folder: true, machine: true, maxFiles: true }),
    result: shape<CheckpointListResult>({ folder: true, files: true, indexes: true, truncated: true }),
  },
  [vmProviders.method]: {
    kind: "request",
    params: shape<VmCredentialsParams>({ credentials: true }),
    result: shape<VmProvidersResult>({ providers: true }),
  },
  [vmOfferings.method]: {
    kind: "request",
    params: shape<VmOfferingsParams>({ provider: true, region: true, credentials: true }),
    result: shape<VmOfferingsResult>({ offerings: true }),
  },
  [vmList.method]: {
    kind: "request",
    params: shape<VmListParams>({ providers: true, credentials: true }),
    result: shape<VmListResult>({ vms: true, errors: true }),
  },
  [vmCreate.method]: {
    kind: "request",
    params: shape<VmCreateParams>({
      provider: true,
      name: true,
      instanceType: true,
      region: true,
      image: true,
      diskGiB: true,
      spot: true,
      sshKeyName: true,
      sshPublicKey: true,
      tags: true,
      startupScript: true,
      credentials: true,
    }),
    result: shape<VmInfo>({
      provider: true,
      id: true,
      name: true,
      state: true,
      instanceType: true,
      gpuModel: true,
      gpuCount: true,
      region: true,
      pricePerHour: true,
      spot: true,
      launchedAt: true,
      address: true,
      ssh: { host: true, port: true, user: true, identityFile: true, alias: true },
      tags: true,
      managed: true,
      capabilities: true,
      stopKeepsBilling: true,
      accruedCost: true,
      detail: true,
    }),
  },
  [vmStart.method]: {
    kind: "request",
    params: shape<VmRefParams>({ provider: true, id: true, credentials: true }),
    result: shape<VmInfo>({
      provider: true,
      id: true,
      name: true,
      state: true,
      instanceType: true,
      gpuModel: true,
      gpuCount: true,
      region: true,
      pricePerHour: true,
      spot: true,
      launchedAt: true,
      address: true,
      ssh: { host: true, port: true, user: true, identityFile: true, alias: true },
      tags: true,
      managed: true,
      capabilities: true,
      stopKeepsBilling: true,
      accruedCost: true,
      detail: true,
    }),
  },
  [vmStop.method]: {
    kind: "request",
    params: shape<VmRefParams>({ provider: true, id: true, credentials: true }),
    result: shape<VmInfo>({
      provider: true,
      id: true,
      name: true,
      state: true,
      instanceType: true,
      gpuModel: true,
      gpuCount: true,
      region: true,
      pricePerHour: true,
      spot: true,
      launchedAt: true,
      address: true,
      ssh: { host: true, port: true, user: true, identityFile: true, alias: true },
      tags: true,
      managed: true,
      capabilities: true,
      stopKeepsBilling: true,
      accruedCost: true,
      detail: true,
    }),
  },
  [vmTerminate.method]: {
    kind: "request",
    params: shape<VmRefParams>({ provider: true, id: true, credentials: true }),
    result: shape<VmInfo>({
      provider: true,
      id: true,
      name: true,
      state: true,
      instanceType: true,
      gpuModel: true,
      gpuCount: true,
      region: true,
      pricePerHour: true,
      spot: true,
      launchedAt: true,
      address: true,
      ssh: { host: true, port: true, user: true, identityFile: true, alias: true },
      tags: true,
      managed: true,
      capabilities: true,
      stopKeepsBilling: true,
      accruedCost: true,
      detail: true,
    }),
  },
  [vmCost.method]: {
    kind: "request",
    params: shape<VmCostParams>({ days: true, dailyBudget: true, monthlyBudget: true }),
    result: shape<VmCostResult>({
      total: true,
      unknownHours: true,
      burnRatePerHour: true,
      burnUnknown: true,
      byVm: true,
      byDay: true,
      byProvider: true,
      budgets: true,
      since: true,
      now: true,
    }),
  },
  [vmAutostop.method]: {
    kind: "request",
    params: shape<VmAutostopParams>({
      provider: true,
      id: true,
      idleMinutes: true,
      gpuThreshold: true,
      terminateIfNoStop: true,
    }),
    result: shape<VmAutostopInfo>({
      provider: true,
      id: true,
      idleMinutes: true,
      idleSince: true,
      actAt: true,
      action: true,
      reason: true,
    }),
  },
  [vmKeepRunning.method]: {
    kind: "request",
    params: shape<VmKeepRunningParams>({ provider: true, id: true }),
    result: shape<VmAutostopInfo>({
      provider: true,
      id: true,
      idleMinutes: true,
      idleSince: true,
      actAt: true,
      action: true,
      reason: true,
    }),
  },
  [vmIdleWarning.method]: {
    kind: "notification",
    params: shape<VmIdleWarningParams>({ provider: true, id: true, name: true, actAt: true, action: true }),
    result: null,
  },
  [gpuStatus.method]: {
    kind: "request",
    params: shape<GpuStatusParams>({ fresh: true, machine: true }),
    result: shape<GpuSnapshot>({
      machine: true,
      source: true,
      time: true,
      driverVersion: true,
      cudaVersion: true,
      gpus: true,
      verdict: true,
      reasons: true,
      message: true,
      intervalSeconds: true,
      sampling: true,
    }),
  },
  [gpuWatch.method]: {
    kind: "request",
    params: shape<GpuWatchParams>({ watcher: true, watching: true, machine: true }),
    result: shape<GpuSnapshot>({
      machine: true,
      source: true,
      time: true,
      driverVersion: true,
      cudaVersion: true,
      gpus: true,
      verdict: true,
      reasons: true,
      message: true,
      intervalSeconds: true,
      sampling: true,
    }),
  },
  [gpuHistory.method]: {
    kind: "request",
    params: shape<GpuHistoryParams>({ seconds: true, machine: true }),
    result: shape<GpuHistoryResult>({ machine: true, intervalSeconds: true, points: true }),
  },
  [gpuCheck.method]: {
    kind: "request",
    params: shape<GpuCheckParams>({ python: true, benchmarks: true, expectedGpuCount: true }),
    result: shape<GpuCheckReport>({
      machine: true,
      time: true,
      durationMs: true,
      verdict: true,
      rows: true,
      markdown: true,
    }),
  },
  [gpuSample.method]: {
    kind: "notification",
    params: shape<GpuSnapshot>({
      machine: true,
      source: true,
      time: true,
      driverVersion: true,
      cudaVersion: true,
      gpus: true,
      verdict: true,
      reasons: true,
      message: true,
      intervalSeconds: true,
      sampling: true,
    }),
    result: null,
  },
  [remoteConnect.method]: {
    kind: "request",
    params: shape<RemoteConnectParams>({ provider: true, id: true, python: true, credentials: true }),
    result: shape<RemoteMachine>({
      machine: true,
      name: true,
      state: true,
      message: true,
      host: true,
      agentVersion: true,
      agentPython: true,
      interpreters: true,
      connectedAt: true,
      reconnects: true,
      latencyMs: true,
      forwards: true,
    }),
  },
  [remoteDisconnect.method]: {
    kind: "request",
    params: shape<RemoteRefParams>({ machine: true }),
    result: shape<RemoteMachine>({
      machine: true,
      name: true,
      state: true,
      message: true,
      host: true,
      agentVersion: true,
      agentPython: true,
      interpreters: true,
      connectedAt: true,
      reconnects: true,
      latencyMs: true,
      forwards: true,
    }),
  },
  [remoteList.method]: {
    kind: "request",
    params: shape<RemoteListParams>({}),
    result: shape<RemoteListResult>({ machines: true }),
  },
  [remoteTrustHost.method]: {
    kind: "request",
    params: shape<RemoteTrustHostParams>({ machine: true, fingerprint: true }),
    result: shape<RemoteMachine>({
      machine: true,
      name: true,
      state: true,
      message: true,
      host: true,
      agentVersion: true,
      agentPython: true,
      interpreters: true,
      connectedAt: true,
      reconnects: true,
      latencyMs: true,
      forwards: true,
    }),
  },
  [remoteSync.method]: {
    kind: "request",
    params: shape<RemoteSyncParams>({ machine: true, localPath: true, remotePath: true, dryRun: true, maxBytes: true }),
    result: shape<RemoteSyncResult>({
      machine: true,
      localPath: true,
      remotePath: true,
      method: true,
      files: true,
      bytes: true,
      sample: true,
      dryRun: true,
      durationMs: true,
    }),
  },
  [remoteForward.method]: {
    kind: "request",
    params: shape<RemoteForwardParams>({ machine: true, remotePort: true, localPort: true }),
    result: shape<RemoteMachine>({
      machine: true,
      name: true,
      state: true,
      message: true,
      host: true,
      agentVersion: true,
      agentPython: true,
      interpreters: true,
      connectedAt: true,
      reconnects: true,
      latencyMs: true,
      forwards: true,
    }),
  },
  [remoteUnforward.method]: {
    kind: "request",
    params: shape<RemoteUnforwardParams>({ machine: true, localPort: true }),
    result: shape<RemoteMachine>({
      machine: true,
      name: true,
      state: true,
      message: true,
      host: true,
      agentVersion: true,
      agentPython: true,
      interpreters: true,
      connectedAt: true,
      reconnects: true,
      latencyMs: true,
      forwards: true,
    }),
  },
  [remoteAutostop.method]: {
    kind: "request",
    params: shape<RemoteAutostopParams>({ machine: true, idleMinutes: true, gpuThreshold: true, command: true }),
    result: shape<RemoteAutostopInfo>({
      machine: true,
      idleMinutes: true,
      idleSince: true,
      actAt: true,
      reason: true,
      running: true,
    }),
  },
  [remoteAutostopInfo.method]: {
    kind: "request",
    params: shape<RemoteRefParams>({ machine: true }),
    result: shape<RemoteAutostopInfo>({
      machine: true,
      idleMinutes: true,
      idleSince: true,
      actAt: true,
      reason: true,
      running: true,
    }),
  },
  [remoteState.method]: {
    kind: "notification",
    params: shape<RemoteMachine>({
      machine: true,
      name: true,
      state: true,
      message: true,
      host: true,
      agentVersion: true,
      agentPython: true,
      interpreters: true,
      connectedAt: true,
      reconnects: true,
      latencyMs: true,
      forwards: true,
    }),
    result: null,
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
