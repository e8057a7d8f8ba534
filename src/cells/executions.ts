/**
 * Every execution this window knows of (from editor cells, selections, notebooks' are kept
 * by the notebook controller), with its outputs in order, fed by kernel events. Inline
 * results and the results panel both read from here. A bounded summary is persisted so
 * results survive a window reload; executions that finished while the window was gone
 * arrive through the kernel journal's replay.
 */
import * as vscode from "vscode";
import type * as proto from "../protocol";

export type ExecutionStatus = "queued" | "running" | "ok" | "error" | "interrupted" | "aborted" | "died";

export type Output =
  | { kind: "stream"; name: "stdout" | "stderr"; text: string }
  | { kind: "display" | "result"; data: proto.MimeBundle; metadata: Record<string, unknown> }
  | { kind: "error"; ename: string; evalue: string; traceback: string[]; frames: proto.ErrorFrame[] };

/** Where an execution's code came from. */
export interface ExecutionSource {
  /** The document's URI as a string. */
  uri: string;
  /** 0-based line of the code's first line in that document. */
  line: number;
  /** Cell title, or "Selection". */
  title: string;
  /** 0-based index of the cell, when it is one. */
  cellIndex?: number;
}

export interface ExecutionRecord {
  executionId: string;
  kernelId: string;
  source?: ExecutionSource;
  code: string;
  status: ExecutionStatus;
  executionCount: number | null;
  durationMs: number | null;
  queuedAt: number;
  startedAt?: number;
  endedAt?: number;
  outputs: Output[];
  /** Characters of text output in `outputs`, for truncation decisions. */
  textLength: number;
  /** Set when the document changed inside the cell after it ran. */
  stale?: boolean;
  /** Highest kernel event seq applied: a replay that overlaps is applied once. */
  lastSeq?: number;
}

const STATE_KEY = "gpuWorkbench.executions";
/** Per kernel, the seq up to which the persisted records are complete. */
const SEQS_KEY = "gpuWorkbench.executions.kernelSeqs";
/** Execution ids of notebook cells start with this (notebooks/controller.ts). */
export const NOTEBOOK_PREFIX = "nb-";
const KEEP = 200;
/** Text kept per execution in the persisted summary. */
const PERSIST_TEXT = 20_000;

export class ExecutionStore implements vscode.Disposable {
  private readonly records = new Map<string, ExecutionRecord>();
  private readonly emitter = new vscode.EventEmitter<ExecutionRecord>();
  private readonly clearEmitter = new vscode.EventEmitter<string | undefined>();
  /** Fires for each change of a record (an output, a status). Consumers batch their updates. */
  readonly onDidChange = this.emitter.event;
  /** Fires when results are cleared: for one document URI, or all (undefined). */
  readonly onDidClear = this.clearEmitter.event;
  private saveTimer: NodeJS.Timeout | undefined;
  /** Highest seq applied per kernel, saved with the records. */
  private readonly kernelSeqs: Map<string, number>;
  /** What the last window saved: where a replay after a reload must start from. */
  private readonly durable: ReadonlyMap<string, number>;

  constructor(
    private readonly state: vscode.Memento,
    onKernelEvent: vscode.Event<proto.KernelEventParams>,
  ) {
    for (const r of state.get<ExecutionRecord[]>(STATE_KEY, [])) this.records.set(r.executionId, r);
    this.kernelSeqs = new Map(Object.entries(state.get<Record<string, number>>(SEQS_KEY, {})));
    this.durable = new Map(this.kernelSeqs);
    this.subscriptions.push(
      onKernelEvent((p) => this.apply(p.kernelId, p.event)),
      this.emitter,
      this.clearEmitter,
    );
  }

  private readonly subscriptions: vscode.Disposable[] = [];

  /** Record an execution before it is sent, so its first events find it. */
  add(executionId: string, kernelId: string, code: string, source?: ExecutionSource): ExecutionRecord {
    const r: ExecutionRecord = {
      executionId,
      kernelId,
      code,
      ...(source ? { source } : {}),
      status: "queued",
      executionCount: null,
      durationMs: null,
      queuedAt: Date.now(),
      outputs: [],
      textLength: 0,
    };
    this.records.set(executionId, r);
    this.emitter.fire(r);
    // Saved at once (one small write per run, not per output): a reload right after a run
    // starts must still know which cell it belongs to.
    if (source) this.saveNow();
    else this.scheduleSave();
    return r;
  }

  private saveNow(): void {
    if (this.saveTimer) clearTimeout(this.saveTimer);
    this.saveTimer = undefined;
    void this.save();
  }

  get(executionId: string): ExecutionRecord | undefined {
    return this.records.get(executionId);
  }

  /** All records in the order they were queued. */
  all(): ExecutionRecord[] {
    return [...this.records.values()].sort((a, b) => a.queuedAt - b.queuedAt);
  }

  /** The latest execution of each cell of a document, by cell start line. */
  forDocument(uri: string): ExecutionRecord[] {
    return this.all().filter((r) => r.source?.uri === uri);
  }

  clear(uri?: string): void {
    for (const [id, r] of this.records) if (!uri || r.source?.uri === uri) this.records.delete(id);
    this.scheduleSave();
    this.clearEmitter.fire(uri);
  }

  markStale(executionId: string): void {
    const r = this.records.get(executionId);
    if (r && !r.stale) {
      r.stale = true;
      this.changed(r);
    }
  }

  /** The seq up to which this store's saved records were complete when the window opened. */
  durableSeq(kernelId: string): number | undefined {
    return this.durable.get(kernelId);
  }

  private apply(kernelId: string, event: proto.KernelEvent | proto.KernelGap): void {
    if (event.type !== "gap") {
      this.kernelSeqs.set(kernelId, Math.max(event.seq, this.kernelSeqs.get(kernelId) ?? 0));
    }
    if (event.type === "gap" || !("executionId" in event) || !event.executionId) {
      if (event.type === "died") {
        for (const r of this.records.values()) {
          if (r.kernelId === kernelId && (r.status === "running" || r.status === "queued")) {
            r.status = r.status === "running" ? "died" : "aborted";
            this.changed(r);
          }
        }
      }
      return;
    }
    // Notebook cells keep their outputs in the notebook itself (see notebooks/controller).
    if (event.executionId.startsWith(NOTEBOOK_PREFIX)) return;
    // A replayed execution this window never started (the CLI, a reload): keep it too.
    const r = this.records.get(event.executionId) ?? this.add(event.executionId, kernelId, "", undefined);
    if (r.lastSeq !== undefined && event.seq <= r.lastSeq) return;
    r.lastSeq = event.seq;
    switch (event.type) {
      case "status":
        if (event.state === "busy" && r.status === "queued") {
          r.status = "running";
          r.startedAt = Date.now();
        }
        break;
      case "execute_input":
        r.executionCount = event.executionCount;
        // A replayed run this window did not start (or did not save before a reload).
        if (!r.source && event.file) {
          const uri = event.file.includes("://") ? vscode.Uri.parse(event.file) : vscode.Uri.file(event.file);
          r.source = { uri: uri.toString(), line: event.line ?? 0, title: "Cell" };
        }
        break;
      case "stream": {
        const last = r.outputs[r.outputs.length - 1];
        if (last?.kind === "stream" && last.name === event.name) last.text += event.text;
        else r.outputs.push({ kind: "stream", name: event.name, text: event.text });
        r.textLength += event.text.length;
        break;
      }
      case "display_data":
        r.outputs.push({ kind: "display", data: event.data, metadata: event.metadata });
        break;
      case "execute_result":
        r.executionCount = event.executionCount;
        r.outputs.push({ kind: "result", data: event.data, metadata: event.metadata });
        break;
      case "error":
        r.outputs.push({
          kind: "error",
          ename: event.ename,
          evalue: event.evalue,
          traceback: event.traceback,
          frames: event.frames,
        });
        break;
      case "reply":
        r.status = event.status;
        r.executionCount = event.executionCount ?? r.executionCount;
        r.durationMs = event.durationMs;
        r.endedAt = Date.now();
        break;
      default:
        return;
    }
    this.changed(r);
  }

  private changed(r: ExecutionRecord): void {
    this.emitter.fire(r);
    this.scheduleSave();
  }

  private scheduleSave(): void {
    if (this.saveTimer) return;
    this.saveTimer = setTimeout(() => {
      this.saveTimer = undefined;
      void this.save();
    }, 1000);
  }

  /** Persist the newest records, with long text cut, so a reload shows the same results. */
  private save(): Thenable<void> {
    const keep = this.all()
      .slice(-KEEP)
      .map((r) => ({
        ...r,
        outputs: r.outputs.map((o) =>
          o.kind === "stream" && o.text.length > PERSIST_TEXT ? { ...o, text: `…${o.text.slice(-PERSIST_TEXT)}` } : o,
        ),
      }));
    // Records and seqs together: a replay after a reload starts where these records end.
    void this.state.update(SEQS_KEY, Object.fromEntries(this.kernelSeqs));
    return this.state.update(STATE_KEY, keep);
  }

  dispose(): void {
    if (this.saveTimer) clearTimeout(this.saveTimer);
    void this.save();
    for (const d of this.subscriptions) d.dispose();
  }
}

/** The text a terminal would show after carriage returns: progress bars update in place. */
export function applyCarriageReturns(text: string): string {
  if (!text.includes("\r")) return text;
  return text
    .split("\n")
    .map((line) => {
      const parts = line.split("\r");
      let out = "";
      for (const p of parts) out = p + out.slice(p.length);
      return out;
    })
    .join("\n");
}
