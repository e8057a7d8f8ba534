/**
 * The inspector's host side: one per webview (a custom editor or, for a folder, a plain
 * panel). It asks the backend for the summary (with progress, cancellable), keeps it so a
 * view that reloads gets it again, re-inspects when the file changes on disk, and runs
 * statistics on demand.
 */
import * as path from "node:path";
import * as vscode from "vscode";
import type { Ctx } from "../ctx";
import * as proto from "../protocol";
import { remoteOf } from "../remote/model";
import { StateQueries, webviewHtml } from "../webview/html";
import { CheckpointCallError, callCheckpoint } from "./backendCall";
import type {
  InspectorDrive,
  InspectorHostMessage,
  InspectorRenderedState,
  InspectorViewMessage,
  ViewError,
} from "./messages";
import { encodeTensors } from "./tensorCodec";

const STATS_BINS = 64;
/** Time the backend may spend on "Statistics: All" before it samples or stops. */
const STATS_ALL_BUDGET_MS = 30_000;

export class Inspector implements vscode.Disposable {
  /** Every live inspector, newest last (for commands and tests). */
  static readonly all: Inspector[] = [];

  /** The inspector whose panel is active, else the newest. */
  static active(): Inspector | undefined {
    return Inspector.all.find((i) => i.panel.active) ?? Inspector.all[Inspector.all.length - 1];
  }

  /** The newest inspector of a file: of this machine's disk, or with `machine`, of that machine's. */
  static forPath(fsPath: string, machine?: string): Inspector | undefined {
    if (machine) {
      const want = path.posix.normalize(fsPath);
      return [...Inspector.all].reverse().find((i) => i.machine === machine && path.posix.normalize(i.fsPath) === want);
    }
    const want = path.resolve(fsPath);
    return [...Inspector.all].reverse().find((i) => !i.machine && path.resolve(i.fsPath) === want);
  }

  private summary: proto.CheckpointSummary | undefined;
  private error: ViewError | undefined;
  private deleted = false;
  private loading: { reload: boolean } | undefined;
  private inspection: vscode.CancellationTokenSource | undefined;
  private statsRun: vscode.CancellationTokenSource | undefined;
  /** Statistics results so far, re-sent when the view reloads. */
  private statsResults: { tensors: string[] | null; result: proto.CheckpointStatsResult }[] = [];
  private readonly subscriptions: vscode.Disposable[] = [];
  private readonly queries = new StateQueries<InspectorRenderedState>("checkpoint view");
  private readonly readyWaiters: (() => void)[] = [];
  private readonly loadWaiters: (() => void)[] = [];
  private viewReady = false;
  private generation = 0;
  private disposed = false;

  constructor(
    private readonly ctx: Ctx,
    readonly panel: vscode.WebviewPanel,
    readonly fsPath: string,
    private readonly onCompare: (fsPath: string) => void,
    /** The connected machine ("provider/id") the file is on and is read on; fsPath is its path. */
    readonly machine?: string,
  ) {
    Inspector.all.push(this);
    panel.webview.html = webviewHtml(panel.webview, ctx.extension.extensionUri, {
      script: "checkpoint",
      style: "checkpoint",
      title: path.basename(fsPath),
      body: '<main id="gpuwb-checkpoint" aria-busy="true"></main>',
    });
    this.subscriptions.push(
      panel.webview.onDidReceiveMessage((m: InspectorViewMessage) => void this.onMessage(m)),
      panel.onDidDispose(() => this.dispose()),
      // A reading that failed because the backend was down or restarting is retried when it is back.
      ctx.backend.onDidChangeState((state) => {
        const transient = this.error && (this.error.kind === null || this.error.kind === "BackendNotRunning");
        if (state === "ready" && transient && !this.loading) void this.load(true);
      }),
    );
    if (machine) {
      // A machine that (re)connects: a reading that failed for want of it is tried again.
      this.subscriptions.push(
        remoteOf(ctx).onDidChange((m) => {
          if (m !== undefined && m !== machine) return;
          const connected = remoteOf(ctx).get(machine)?.state === "connected";
          if (connected && this.error?.kind === "RemoteUnavailable" && !this.loading) void this.load(true);
        }),
      );
    }
    void this.load(false);
  }

  private get machineName(): string | null {
    return this.machine ? remoteOf(this.ctx).nameOf(this.machine) : null;
  }

  /** For a file on a machine, what to do about an error, in the view's words. */
  private remoteHint(e: ViewError): ViewError {
    if (!this.machine) return e;
    const name = this.machineName ?? this.machine;
    if (e.kind === "RemoteUnavailable") {
      return {
        ...e,
        hint: `Connect to ${name} (GPU Machines view, or the "not connected" row in Checkpoints); the file is read again once it is connected. ${e.hint ?? ""}`.trim(),
      };
    }
    if (e.kind === "NotFound" || /no such file|not found/i.test(e.message)) {
      return {
        ...e,
        hint: `The file is not on ${name} at ${this.fsPath} (moved or deleted?). Refresh its folder in the Checkpoints view, then open it again.`,
      };
    }
    return e;
  }

  /** The file changed on disk (a new checkpoint was written): read it again. */
  fileChanged(): void {
    this.deleted = false;
    void this.load(true);
  }

  fileDeleted(): void {
    this.inspection?.cancel();
    this.deleted = true;
    void this.post({ type: "deleted", path: this.fsPath });
  }

  /** Read the checkpoint (again); the view shows progress and can cancel. */
  async load(reload: boolean): Promise<void> {
    this.inspection?.cancel();
    this.statsRun?.cancel();
    const source = new vscode.CancellationTokenSource();
    this.inspection = source;
    const gen = ++this.generation;
    this.loading = { reload };
    void this.post({ type: "loading", path: this.fsPath, reload, cancellable: true });
    const started = performance.now();
    try {
      const summary = await callCheckpoint(
        this.ctx,
        proto.checkpointInspect,
        { path: this.fsPath, ...(this.machine ? { machine: this.machine } : {}) },
        {
          title: `Inspecting ${path.basename(this.fsPath)}${this.machine ? ` on ${this.machineName}` : ""}`,
          token: source.token,
          progress: "notification",
          onProgress: (message, percentage) =>
            void this.post({ type: "progress", message: message ?? null, percentage: percentage ?? null }),
        },
      );
      if (gen !== this.generation || this.disposed) return;
      this.summary = summary;
      this.error = undefined;
      this.statsResults = [];
      this.ctx.log.info(
        `Inspected ${this.fsPath}: ${summary.format}, ${summary.tensorCount} tensors in ${Math.round(summary.elapsedMs)} ms (${Math.round(performance.now() - started)} ms with the transfer)`,
      );
      this.sendSummary(reload);
    } catch (err) {
      if (gen !== this.generation || this.disposed) return;
      const e =
        err instanceof CheckpointCallError
          ? err.toView()
          : { message: err instanceof Error ? err.message : String(err), hint: null, kind: null };
      if (err instanceof CheckpointCallError && err.cancelled) {
        e.message = `Reading ${path.basename(this.fsPath)} was cancelled.`;
        e.hint = "Choose Retry to read it again.";
      }
      this.summary = undefined;
      this.error = this.remoteHint(e);
      void this.post({ type: "error", path: this.fsPath, error: this.error });
    } finally {
      if (gen === this.generation) {
        this.loading = undefined;
        if (this.inspection === source) this.inspection = undefined;
        for (const w of this.loadWaiters.splice(0)) w();
      }
      source.dispose();
    }
  }

  /** Statistics for some tensors (null: all), shown in the view with histograms. */
  async stats(tensors: string[] | null): Promise<proto.CheckpointStatsResult | undefined> {
    this.statsRun?.cancel();
    const source = new vscode.CancellationTokenSource();
    this.statsRun = source;
    void this.post({ type: "statsPending", tensors });
    const what = tensors?.length === 1 ? tensors[0] : tensors ? `${tensors.length} tensors` : "all tensors";
    try {
      const result = await callCheckpoint(
        this.ctx,
        proto.checkpointStats,
        {
          path: this.fsPath,
          tensors,
          bins: STATS_BINS,
          ...(tensors === null ? { timeBudgetMs: STATS_ALL_BUDGET_MS } : {}),
          ...(this.machine ? { machine: this.machine } : {}),
        },
        {
          title: `Statistics of ${what}`,
          token: source.token,
          progress: "notification",
          onProgress: (message, percentage) =>
            void this.post({ type: "progress", message: message ?? null, percentage: percentage ?? null }),
        },
      );
      this.statsResults.push({ tensors, result });
      void this.post({ type: "stats", tensors, result });
      return result;
    } catch (err) {
      const e =
        err instanceof CheckpointCallError
          ? err.toView()
          : { message: err instanceof Error ? err.message : String(err), hint: null, kind: null };
      void this.post({ type: "statsError", tensors, error: this.remoteHint(e) });
      return undefined;
    } finally {
      if (this.statsRun === source) this.statsRun = undefined;
      source.dispose();
    }
  }

  /** Resolves when no inspection is under way (tests wait on it). */
  whenLoaded(): Promise<void> {
    if (!this.loading) return Promise.resolve();
    return new Promise((resolve) => this.loadWaiters.push(resolve));
  }

  get currentSummary(): proto.CheckpointSummary | undefined {
    return this.summary;
  }

  /** Drive the view as a user would (tests); waits for the view to be there. */
  async drive(drive: InspectorDrive): Promise<void> {
    if (!this.viewReady) await new Promise<void>((resolve) => this.readyWaiters.push(resolve));
    await this.post({ type: "drive", drive });
  }

  /** Asks the view what it shows (for tests): a round trip through the webview. */
  async renderedState(timeoutMs = 15_000): Promise<InspectorRenderedState> {
    if (!this.viewReady) await new Promise<void>((resolve) => this.readyWaiters.push(resolve));
    return this.queries.ask((requestId) => void this.post({ type: "queryState", requestId }), timeoutMs);
  }

  private post(m: InspectorHostMessage): Thenable<boolean> {
    if (!this.viewReady || this.disposed) return Promise.resolve(false);
    return this.panel.webview.postMessage(m);
  }

  private sendSummary(reloaded: boolean): void {
    const s = this.summary;
    if (!s) return;
    void this.post({ type: "summary", summary: { ...s, tensors: [] }, tensors: encodeTensors(s.tensors), reloaded });
  }

  /** The view (re)loaded: send what there is. */
  private sendAll(): void {
    void this.post({ type: "source", machine: this.machine ?? null, machineName: this.machineName });
    if (this.deleted) void this.post({ type: "deleted", path: this.fsPath });
    else if (this.summary) {
      this.sendSummary(false);
      for (const s of this.statsResults) void this.post({ type: "stats", ...s });
    } else if (this.error) void this.post({ type: "error", path: this.fsPath, error: this.error });
    if (this.loading) {
      void this.post({ type: "loading", path: this.fsPath, reload: this.loading.reload, cancellable: true });
    }
  }

  private async onMessage(m: InspectorViewMessage): Promise<void> {
    switch (m.type) {
      case "ready":
        this.viewReady = true;
        this.sendAll();
        for (const w of this.readyWaiters.splice(0)) w();
        break;
      case "state":
        this.queries.answer(m.requestId, m.state);
        break;
      case "stats":
        await this.stats(m.tensors);
        break;
      case "cancel":
        this.inspection?.cancel();
        this.statsRun?.cancel();
        break;
      case "reload":
        await this.load(true);
        break;
      case "compare":
        if (!this.machine) this.onCompare(this.fsPath); // the view offers no Compare for a machine's file
        break;
      case "showLogs":
        this.ctx.log.show();
        break;
      case "reopenWith":
        await vscode.commands.executeCommand("workbench.action.reopenWithEditor");
        break;
    }
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.inspection?.cancel();
    this.statsRun?.cancel();
    const i = Inspector.all.indexOf(this);
    if (i >= 0) Inspector.all.splice(i, 1);
    for (const w of this.readyWaiters.splice(0)) w();
    for (const w of this.loadWaiters.splice(0)) w();
    for (const d of this.subscriptions.splice(0)) d.dispose();
  }
}
