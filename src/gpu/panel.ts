/**
 * The GPU panel: live charts of utilization, memory, power and temperature per GPU over the
 * last 15 minutes, the processes on each GPU, the health reasons and static information.
 * It shows one machine: the focused one (focus.ts) unless another was picked (this machine
 * or a connected one, from the picker in its header); its title names it. It loads
 * `gpu/history` of that machine when its view (re)loads or the machine changes and then
 * forwards the machine's samples; it watches (so the backend or the machine's agent samples)
 * only while it is visible.
 */
import * as vscode from "vscode";
import type { Ctx } from "../ctx";
import * as proto from "../protocol";
import { remoteOf } from "../remote/model";
import { StateQueries, webviewHtml, webviewOptions } from "../webview/html";
import { GpuCheckPanel } from "./checkReport";
import type { FocusedMachine } from "./focus";
import { HISTORY_SECONDS, machineKeyOf } from "./format";
import type { GpuPanelHostMessage, GpuPanelMachine, GpuPanelRenderedState, GpuPanelViewMessage } from "./messages";
import type { GpuMonitor } from "./monitor";

export const PANEL_VIEW_TYPE = "gpuWorkbench.gpuPanel";
export const PANEL_WATCHER = "panel";

export class GpuPanel implements vscode.Disposable {
  static current: GpuPanel | undefined;

  /** Show the panel; with `machine` ("" this machine, "provider/id"), show that machine. */
  static show(ctx: Ctx, monitor: GpuMonitor, focus: FocusedMachine, machine?: string): GpuPanel {
    if (GpuPanel.current) {
      if (machine !== undefined) GpuPanel.current.pick(machine);
      GpuPanel.current.panel.reveal();
      return GpuPanel.current;
    }
    const panel = vscode.window.createWebviewPanel(
      PANEL_VIEW_TYPE,
      "GPU",
      vscode.ViewColumn.Active,
      webviewOptions(ctx.extension.extensionUri),
    );
    return new GpuPanel(ctx, monitor, focus, panel, machine);
  }

  /** Adopt a panel VS Code restored after a reload. */
  static revive(ctx: Ctx, monitor: GpuMonitor, focus: FocusedMachine, panel: vscode.WebviewPanel): GpuPanel {
    GpuPanel.current?.dispose();
    return new GpuPanel(ctx, monitor, focus, panel);
  }

  private readonly subscriptions: vscode.Disposable[] = [];
  private readonly queries = new StateQueries<GpuPanelRenderedState>("GPU panel");
  private readonly readyWaiters: (() => void)[] = [];
  private viewReady = false;
  /** Samples that arrive while the history loads, sent after it. */
  private pending: proto.GpuSnapshot[] | undefined;
  private loadGeneration = 0;
  private disposed = false;
  /** The machine picked in the panel; undefined: follow the focused machine. */
  private picked: string | undefined;
  /** The machine shown (and watched while visible). */
  private shown: string;
  private watched: string | undefined;

  private constructor(
    private readonly ctx: Ctx,
    private readonly monitor: GpuMonitor,
    private readonly focus: FocusedMachine,
    readonly panel: vscode.WebviewPanel,
    picked?: string,
  ) {
    this.picked = picked;
    this.shown = this.wanted();
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
      focus.onDidChange(() => this.follow()),
      remoteOf(ctx).onDidChange(() => this.follow(true)),
      GpuCheckPanel.onRunning((running) => void this.post({ type: "checking", running })),
      // A restarted backend has a new sampler and history: load it again.
      ctx.backend.onDidChangeState((s) => {
        if (s === "ready" && this.viewReady) void this.load();
      }),
    );
    this.syncWatch();
    this.retitle();
  }

  /** The machine shown now: the picked one while it can be shown, else the focused one. */
  get machine(): string {
    return this.shown;
  }

  private wanted(): string {
    const p = this.picked;
    if (p === "" || (p !== undefined && this.connected().some((m) => m.machine === p))) return p;
    return this.focus.machine;
  }

  private connected(): GpuPanelMachine[] {
    return remoteOf(this.ctx)
      .connected()
      .map((m) => ({
        machine: m.machine,
        label: m.name && m.name !== m.machine ? `${m.name} (${m.machine})` : m.machine,
      }))
      .sort((a, b) => a.label.localeCompare(b.label));
  }

  private choice(machine: string): GpuPanelMachine {
    return machine ? { machine, label: this.monitor.nameOf(machine) ?? machine } : { machine: "", label: "Local" };
  }

  private choices(): GpuPanelMachine[] {
    const list = [this.choice(""), ...this.connected()];
    if (!list.some((m) => m.machine === this.shown)) list.push(this.choice(this.shown));
    return list;
  }

  /** Show `machine` ("" this one) from now on; the picker and the GPU Machines view call this. */
  pick(machine: string): void {
    this.picked = machine;
    this.follow();
  }

  /** The focus, the pick or the connected machines changed: switch machines if needed. */
  private follow(machinesChanged = false): void {
    if (this.disposed) return;
    const next = this.wanted();
    if (next === this.shown) {
      if (machinesChanged) {
        this.retitle();
        void this.post({ type: "machines", machine: this.choice(this.shown), machines: this.choices() });
      }
      return;
    }
    this.ctx.log.debug(`GPU panel: ${this.shown || "this machine"} → ${next || "this machine"}`);
    this.shown = next;
    this.retitle();
    this.syncWatch();
    if (this.viewReady) void this.load();
  }

  private retitle(): void {
    const title = `GPU · ${this.choice(this.shown).label}`;
    if (this.panel.title !== title) this.panel.title = title;
  }

  private syncWatch(): void {
    const visible = this.panel.visible && !this.disposed;
    if (!visible) this.viewReady = false; // a hidden webview is unloaded; it says "ready" again
    const want = visible ? this.shown : undefined;
    if (want === this.watched) return;
    if (want !== undefined) this.monitor.setWatching(PANEL_WATCHER, true, want);
    if (this.watched !== undefined) this.monitor.setWatching(PANEL_WATCHER, false, this.watched);
    this.watched = want;
  }

  private onSample(s: proto.GpuSnapshot): void {
    if (machineKeyOf(s) !== this.shown) return;
    if (this.pending) this.pending.push(s);
    else void this.post({ type: "sample", snapshot: s });
  }

  /** Send the history and the current snapshot, then the samples that came meanwhile. */
  private async load(): Promise<void> {
    const gen = ++this.loadGeneration;
    const machine = this.shown;
    this.pending = [];
    let points: proto.GpuHistoryPoint[] = [];
    let error: string | null = null;
    const client = this.monitor.readyClient;
    if (client) {
      try {
        const params: proto.GpuHistoryParams = { seconds: HISTORY_SECONDS };
        if (machine) params.machine = machine;
        const h = await client.sendRequest(proto.gpuHistory, params);
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
    const snapshot = queued[queued.length - 1] ?? this.monitor.snapshotOf(machine) ?? null;
    const failed = this.monitor.errorOf(machine);
    if (!snapshot && !error && failed) error = failed;
    await this.post({
      type: "init",
      snapshot,
      points,
      error,
      machine: this.choice(machine),
      machines: this.choices(),
    });
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
      case "pickMachine":
        this.pick(m.machine);
        break;
    }
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    if (GpuPanel.current === this) GpuPanel.current = undefined;
    if (this.watched !== undefined) this.monitor.setWatching(PANEL_WATCHER, false, this.watched);
    this.watched = undefined;
    for (const w of this.readyWaiters.splice(0)) w();
    for (const d of this.subscriptions.splice(0)) d.dispose();
    this.panel.dispose();
  }
}

export function registerPanelSerializer(ctx: Ctx, monitor: GpuMonitor, focus: FocusedMachine): vscode.Disposable {
  return vscode.window.registerWebviewPanelSerializer(PANEL_VIEW_TYPE, {
    async deserializeWebviewPanel(panel: vscode.WebviewPanel) {
      GpuPanel.revive(ctx, monitor, focus, panel);
    },
  });
}
