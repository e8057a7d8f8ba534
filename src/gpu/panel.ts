/**
 * The GPU panel: live charts of utilization, memory, power and temperature per GPU over the
 * last 15 minutes, the processes on each GPU, the health reasons and static information.
 * It loads `gpu/history` when its view (re)loads and then forwards every sample; it watches
 * (so the backend samples) only while it is visible.
 */
import * as vscode from "vscode";
import type { Ctx } from "../ctx";
import * as proto from "../protocol";
import { StateQueries, webviewHtml, webviewOptions } from "../webview/html";
import { GpuCheckPanel } from "./checkReport";
import { HISTORY_SECONDS } from "./format";
import type { GpuPanelHostMessage, GpuPanelRenderedState, GpuPanelViewMessage } from "./messages";
import type { GpuMonitor } from "./monitor";

export const PANEL_VIEW_TYPE = "gpuWorkbench.gpuPanel";
export const PANEL_WATCHER = "panel";

export class GpuPanel implements vscode.Disposable {
  static current: GpuPanel | undefined;

  static show(ctx: Ctx, monitor: GpuMonitor): GpuPanel {
    if (GpuPanel.current) {
      GpuPanel.current.panel.reveal();
      return GpuPanel.current;
    }
    const panel = vscode.window.createWebviewPanel(
      PANEL_VIEW_TYPE,
      "GPU",
      vscode.ViewColumn.Active,
      webviewOptions(ctx.extension.extensionUri),
    );
    return new GpuPanel(ctx, monitor, panel);
  }

  /** Adopt a panel VS Code restored after a reload. */
  static revive(ctx: Ctx, monitor: GpuMonitor, panel: vscode.WebviewPanel): GpuPanel {
    GpuPanel.current?.dispose();
    return new GpuPanel(ctx, monitor, panel);
  }

  private readonly subscriptions: vscode.Disposable[] = [];
  private readonly queries = new StateQueries<GpuPanelRenderedState>("GPU panel");
  private readonly readyWaiters: (() => void)[] = [];
  private viewReady = false;
  /** Samples that arrive while the history loads, sent after it. */
  private pending: proto.GpuSnapshot[] | undefined;
  private loadGeneration = 0;
  private disposed = false;

  private constructor(
    private readonly ctx: Ctx,
    private readonly monitor: GpuMonitor,
    readonly panel: vscode.WebviewPanel,
  ) {
    GpuPanel.current = this;
    panel.iconPath = vscode.Uri.joinPath(ctx.extension.extensionUri, "media", "activity.svg");
    panel.webview.options = webviewOptions(ctx.extension.extensionUri);
    panel.webview.html = webviewHtml(panel.webview, ctx.extension.extensionUri, {
      script: "gpu",
      style: "gpu",
      title: "GPU",
      body: '<main id="gpuwb-gpu" aria-busy="true"></main>',
    });
    this.subscriptions.push(
      panel.webview.onDidReceiveMessage((m: GpuPanelViewMessage) => void this.onMessage(m)),
      panel.onDidChangeViewState(() => this.syncWatch()),
      panel.onDidDispose(() => this.dispose()),
      monitor.onSample((s) => this.onSample(s)),
      GpuCheckPanel.onRunning((running) => void this.post({ type: "checking", running })),
      // A restarted backend has a new sampler and history: load it again.
      ctx.backend.onDidChangeState((s) => {
        if (s === "ready" && this.viewReady) void this.load();
      }),
    );
    this.syncWatch();
  }

  private syncWatch(): void {
    const visible = this.panel.visible && !this.disposed;
    if (!visible) this.viewReady = false; // a hidden webview is unloaded; it says "ready" again
    this.monitor.setWatching(PANEL_WATCHER, visible);
  }

  private onSample(s: proto.GpuSnapshot): void {
    if (this.pending) this.pending.push(s);
    else void this.post({ type: "sample", snapshot: s });
  }

  /** Send the history and the current snapshot, then the samples that came meanwhile. */
  private async load(): Promise<void> {
    const gen = ++this.loadGeneration;
    this.pending = [];
    let points: proto.GpuHistoryPoint[] = [];
    let error: string | null = null;
    const client = this.monitor.readyClient;
    if (client) {
      try {
        const h = await client.sendRequest(proto.gpuHistory, { seconds: HISTORY_SECONDS });
        points = h.points;
      } catch (err) {
        error = err instanceof Error ? err.message : String(err);
        this.ctx.log.debug(`gpu/history failed: ${error}`);
      }
    } else {
      error = this.ctx.backend.lastError?.message ?? "The GPU Workbench backend is not running.";
    }
    if (gen !== this.loadGeneration || this.disposed) return;
    const queued = this.pending ?? [];
    this.pending = undefined;
    const snapshot = queued[queued.length - 1] ?? this.monitor.snapshot ?? null;
    if (!snapshot && !error && this.monitor.error) error = this.monitor.error;
    await this.post({ type: "init", snapshot, points, error });
    await this.post({ type: "checking", running: GpuCheckPanel.isRunning });
    for (const s of queued) await this.post({ type: "sample", snapshot: s });
  }

  async renderedState(timeoutMs = 15_000): Promise<GpuPanelRenderedState> {
    if (!this.viewReady) await new Promise<void>((resolve) => this.readyWaiters.push(resolve));
    return this.queries.ask((requestId) => void this.post({ type: "queryState", requestId }), timeoutMs);
  }

  private post(m: GpuPanelHostMessage): Thenable<boolean> {
    if (!this.viewReady || this.disposed) return Promise.resolve(false);
    return this.panel.webview.postMessage(m);
  }

  private async onMessage(m: GpuPanelViewMessage): Promise<void> {
    switch (m.type) {
      case "ready":
        this.viewReady = true;
        this.syncWatch();
        await this.load();
        for (const w of this.readyWaiters.splice(0)) w();
        break;
      case "state":
        this.queries.answer(m.requestId, m.state);
        break;
      case "check":
        await vscode.commands.executeCommand("gpuWorkbench.checkGpuHealth");
        break;
      case "showLogs":
        this.ctx.log.show();
        break;
      case "openSettings":
        await vscode.commands.executeCommand("workbench.action.openSettings", "gpuWorkbench.gpu");
        break;
    }
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    if (GpuPanel.current === this) GpuPanel.current = undefined;
    this.monitor.setWatching(PANEL_WATCHER, false);
    for (const w of this.readyWaiters.splice(0)) w();
    for (const d of this.subscriptions.splice(0)) d.dispose();
    this.panel.dispose();
  }
}

export function registerPanelSerializer(ctx: Ctx, monitor: GpuMonitor): vscode.Disposable {
  return vscode.window.registerWebviewPanelSerializer(PANEL_VIEW_TYPE, {
    async deserializeWebviewPanel(panel: vscode.WebviewPanel) {
      GpuPanel.revive(ctx, monitor, panel);
    },
  });
}
