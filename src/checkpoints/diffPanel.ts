/**
 * The checkpoint diff: a webview panel per pair of checkpoints showing `checkpoint/diff`'s
 * result (summary, counts, a filterable table, metadata changes). A serializer brings it
 * back after a window reload by comparing again.
 */
import * as path from "node:path";
import * as vscode from "vscode";
import type { Ctx } from "../ctx";
import * as proto from "../protocol";
import { StateQueries, webviewHtml, webviewOptions } from "../webview/html";
import { CheckpointCallError, callCheckpoint } from "./backendCall";
import type { DiffDrive, DiffHostMessage, DiffRenderedState, DiffViewMessage, ViewError } from "./messages";

export const DIFF_VIEW_TYPE = "gpuWorkbench.checkpointDiff";

export class DiffPanel implements vscode.Disposable {
  static readonly all: DiffPanel[] = [];

  static active(): DiffPanel | undefined {
    return DiffPanel.all.find((p) => p.panel.active) ?? DiffPanel.all[DiffPanel.all.length - 1];
  }

  /** Show the comparison of a and b, reusing a panel that shows the same pair. */
  static show(ctx: Ctx, a: string, b: string, open: (fsPath: string) => void): DiffPanel {
    const same = DiffPanel.all.find((p) => p.a === a && p.b === b);
    if (same) {
      same.panel.reveal();
      void same.run();
      return same;
    }
    const panel = vscode.window.createWebviewPanel(
      DIFF_VIEW_TYPE,
      title(a, b),
      vscode.ViewColumn.Active,
      webviewOptions(ctx.extension.extensionUri),
    );
    return new DiffPanel(ctx, panel, a, b, open);
  }

  private result: proto.CheckpointDiffResult | undefined;
  private error: ViewError | undefined;
  private running: vscode.CancellationTokenSource | undefined;
  private readonly subscriptions: vscode.Disposable[] = [];
  private readonly queries = new StateQueries<DiffRenderedState>("diff view");
  private readonly readyWaiters: (() => void)[] = [];
  private readonly doneWaiters: (() => void)[] = [];
  private viewReady = false;
  private generation = 0;
  private disposed = false;

  constructor(
    private readonly ctx: Ctx,
    readonly panel: vscode.WebviewPanel,
    public a: string,
    public b: string,
    private readonly open: (fsPath: string) => void,
  ) {
    DiffPanel.all.push(this);
    panel.iconPath = vscode.Uri.joinPath(ctx.extension.extensionUri, "media", "activity.svg");
    panel.webview.options = webviewOptions(ctx.extension.extensionUri);
    panel.webview.html = webviewHtml(panel.webview, ctx.extension.extensionUri, {
      script: "checkpointDiff",
      style: "checkpoint",
      title: title(a, b),
      body: '<main id="gpuwb-checkpoint-diff" aria-busy="true"></main>',
    });
    this.subscriptions.push(
      panel.webview.onDidReceiveMessage((m: DiffViewMessage) => void this.onMessage(m)),
      panel.onDidDispose(() => this.dispose()),
    );
    void this.run();
  }

  /** Compare (again). */
  async run(): Promise<void> {
    this.running?.cancel();
    const source = new vscode.CancellationTokenSource();
    this.running = source;
    const gen = ++this.generation;
    this.result = undefined;
    this.error = undefined;
    this.panel.title = title(this.a, this.b);
    void this.post({ type: "loading", a: this.a, b: this.b });
    try {
      const result = await callCheckpoint(
        this.ctx,
        proto.checkpointDiff,
        { a: this.a, b: this.b },
        {
          title: `Comparing ${path.basename(this.a)} with ${path.basename(this.b)}`,
          token: source.token,
          progress: "notification",
        },
      );
      if (gen !== this.generation || this.disposed) return;
      this.result = result;
      this.ctx.log.info(`Compared ${this.a} with ${this.b}: ${result.summary}`);
      void this.post({ type: "diff", result });
    } catch (err) {
      if (gen !== this.generation || this.disposed) return;
      this.error =
        err instanceof CheckpointCallError
          ? err.toView()
          : { message: err instanceof Error ? err.message : String(err), hint: null, kind: null };
      void this.post({ type: "error", a: this.a, b: this.b, error: this.error });
    } finally {
      if (gen === this.generation) {
        if (this.running === source) this.running = undefined;
        for (const w of this.doneWaiters.splice(0)) w();
      }
      source.dispose();
    }
  }

  whenDone(): Promise<void> {
    if (!this.running) return Promise.resolve();
    return new Promise((resolve) => this.doneWaiters.push(resolve));
  }

  drive(drive: DiffDrive): void {
    void this.post({ type: "drive", drive });
  }

  async renderedState(timeoutMs = 15_000): Promise<DiffRenderedState> {
    if (!this.viewReady) await new Promise<void>((resolve) => this.readyWaiters.push(resolve));
    return this.queries.ask((requestId) => void this.post({ type: "queryState", requestId }), timeoutMs);
  }

  private post(m: DiffHostMessage): Thenable<boolean> {
    if (!this.viewReady || this.disposed) return Promise.resolve(false);
    return this.panel.webview.postMessage(m);
  }

  private async onMessage(m: DiffViewMessage): Promise<void> {
    switch (m.type) {
      case "ready":
        this.viewReady = true;
        if (this.result) void this.post({ type: "diff", result: this.result });
        else if (this.error) void this.post({ type: "error", a: this.a, b: this.b, error: this.error });
        else void this.post({ type: "loading", a: this.a, b: this.b });
        for (const w of this.readyWaiters.splice(0)) w();
        break;
      case "state":
        this.queries.answer(m.requestId, m.state);
        break;
      case "open":
        this.open(m.side === "a" ? this.a : this.b);
        break;
      case "swap":
        [this.a, this.b] = [this.b, this.a];
        await this.run();
        break;
      case "showLogs":
        this.ctx.log.show();
        break;
    }
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.running?.cancel();
    const i = DiffPanel.all.indexOf(this);
    if (i >= 0) DiffPanel.all.splice(i, 1);
    for (const w of this.readyWaiters.splice(0)) w();
    for (const w of this.doneWaiters.splice(0)) w();
    for (const d of this.subscriptions.splice(0)) d.dispose();
    this.panel.dispose();
  }
}

function title(a: string, b: string): string {
  return `${path.basename(a)} ↔ ${path.basename(b)}`;
}

/** Restores diff panels after a reload from the pair the view saved with setState. */
export function registerDiffSerializer(ctx: Ctx, open: (fsPath: string) => void): vscode.Disposable {
  return vscode.window.registerWebviewPanelSerializer(DIFF_VIEW_TYPE, {
    async deserializeWebviewPanel(panel: vscode.WebviewPanel, state: unknown) {
      const s = state as { a?: unknown; b?: unknown } | undefined;
      if (typeof s?.a === "string" && typeof s?.b === "string") new DiffPanel(ctx, panel, s.a, s.b, open);
      else panel.dispose();
    },
  });
}
