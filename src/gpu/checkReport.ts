/**
 * "Check GPU Health": runs `gpu/check` (the kernels' interpreter for the torch benchmarks;
 * none in an untrusted workspace) and shows the report in a webview with pass / warn / fail /
 * skip / info rows, and "Export as Markdown". The view keeps the report in its state, so
 * a reload restores it without running the check again.
 */
import * as vscode from "vscode";
import type { Ctx } from "../ctx";
import type * as proto from "../protocol";
import { StateQueries, webviewHtml, webviewOptions } from "../webview/html";
import { GpuCheckCancelled, runCheckWithProgress } from "./call";
import { reportMarkdown, UNTRUSTED_NOTE } from "./format";
import type { GpuCheckHostMessage, GpuCheckRenderedState, GpuCheckView, GpuCheckViewMessage } from "./messages";
import { gpuSettings } from "./settings";

export const CHECK_VIEW_TYPE = "gpuWorkbench.gpuCheck";

export class GpuCheckPanel implements vscode.Disposable {
  static current: GpuCheckPanel | undefined;
  /** The last report (for the export command, also after the panel is closed). */
  static lastView: GpuCheckView | undefined;
  private static running: Promise<proto.GpuCheckReport | undefined> | undefined;
  private static cancelSource: vscode.CancellationTokenSource | undefined;
  private static readonly runningListeners = new Set<(running: boolean) => void>();

  /** Called with true when a check starts and false when it ends (the GPU panel's button). */
  static onRunning(fn: (running: boolean) => void): vscode.Disposable {
    GpuCheckPanel.runningListeners.add(fn);
    return { dispose: () => GpuCheckPanel.runningListeners.delete(fn) };
  }

  static get isRunning(): boolean {
    return !!GpuCheckPanel.running;
  }

  /** Run the check (or join the one under way) and show its report. */
  static run(ctx: Ctx): Promise<proto.GpuCheckReport | undefined> {
    if (GpuCheckPanel.running) {
      GpuCheckPanel.current?.panel.reveal();
      return GpuCheckPanel.running;
    }
    const p = GpuCheckPanel.doRun(ctx).finally(() => {
      GpuCheckPanel.running = undefined;
      for (const fn of GpuCheckPanel.runningListeners) fn(false);
    });
    GpuCheckPanel.running = p;
    for (const fn of GpuCheckPanel.runningListeners) fn(true);
    return p;
  }

  /** Cancel the check under way (as its notification's Cancel button does); false: none. */
  static cancel(): boolean {
    const source = GpuCheckPanel.cancelSource;
    if (!source) return false;
    source.cancel();
    return true;
  }

  /** Wait for the check under way, if any. */
  static async whenDone(): Promise<void> {
    await GpuCheckPanel.running?.catch(() => undefined);
  }

  private static async doRun(ctx: Ctx): Promise<proto.GpuCheckReport | undefined> {
    const trusted = vscode.workspace.isTrusted;
    const python = ctx.config.kernelPythonPath || undefined;
    const params: proto.GpuCheckParams = { benchmarks: trusted };
    if (python) params.python = python;
    const expected = gpuSettings.expectedCount;
    if (expected !== null) params.expectedGpuCount = expected;
    const panel = GpuCheckPanel.show(ctx);
    panel.state = { kind: "running", message: null };
    panel.send();
    const cancel = new vscode.CancellationTokenSource();
    GpuCheckPanel.cancelSource = cancel;
    try {
      const report = await runCheckWithProgress(
        ctx,
        params,
        (m) => {
          const target = GpuCheckPanel.current ?? panel;
          target.state = { kind: "running", message: m ?? null };
          target.send();
        },
        cancel.token,
      );
      const view: GpuCheckView = {
        report,
        note: trusted ? null : UNTRUSTED_NOTE,
        benchmarks: trusted,
        python: python ?? null,
      };
      GpuCheckPanel.lastView = view;
      ctx.log.info(`GPU health check: ${report.verdict} (${report.rows.length} rows, ${report.durationMs} ms)`);
      const target = GpuCheckPanel.current ?? panel;
      target.state = { kind: "report", view };
      target.send();
      return report;
    } catch (err) {
      const target = GpuCheckPanel.current ?? panel;
      if (err instanceof GpuCheckCancelled) {
        if (GpuCheckPanel.lastView) target.state = { kind: "report", view: GpuCheckPanel.lastView };
        else target.state = { kind: "error", message: err.message };
        target.send();
        return undefined;
      }
      target.state = { kind: "error", message: err instanceof Error ? err.message : String(err) };
      target.send();
      throw err;
    } finally {
      if (GpuCheckPanel.cancelSource === cancel) GpuCheckPanel.cancelSource = undefined;
      cancel.dispose();
    }
  }

  static show(ctx: Ctx): GpuCheckPanel {
    if (GpuCheckPanel.current) {
      GpuCheckPanel.current.panel.reveal(undefined, true);
      return GpuCheckPanel.current;
    }
    const panel = vscode.window.createWebviewPanel(
      CHECK_VIEW_TYPE,
      "GPU Health Check",
      { viewColumn: vscode.ViewColumn.Active, preserveFocus: true },
      webviewOptions(ctx.extension.extensionUri),
    );
    return new GpuCheckPanel(ctx, panel, undefined);
  }

  /** Adopt a panel restored after a reload, with the report its view saved. */
  static revive(ctx: Ctx, panel: vscode.WebviewPanel, state: unknown): GpuCheckPanel {
    GpuCheckPanel.current?.dispose();
    const view = (state as { view?: GpuCheckView } | undefined)?.view;
    const valid = view && typeof view === "object" && Array.isArray(view.report?.rows) ? view : undefined;
    if (valid && !GpuCheckPanel.lastView) GpuCheckPanel.lastView = valid;
    return new GpuCheckPanel(ctx, panel, valid);
  }

  private state:
    | { kind: "running"; message: string | null }
    | { kind: "report"; view: GpuCheckView }
    | { kind: "error"; message: string }
    | { kind: "empty" };
  private readonly subscriptions: vscode.Disposable[] = [];
  private readonly queries = new StateQueries<GpuCheckRenderedState>("GPU check report");
  private readonly readyWaiters: (() => void)[] = [];
  private viewReady = false;
  private disposed = false;

  private constructor(
    ctx: Ctx,
    readonly panel: vscode.WebviewPanel,
    view: GpuCheckView | undefined,
  ) {
    GpuCheckPanel.current = this;
    this.state = view ? { kind: "report", view } : { kind: "empty" };
    panel.iconPath = vscode.Uri.joinPath(ctx.extension.extensionUri, "media", "activity.svg");
    panel.webview.options = webviewOptions(ctx.extension.extensionUri);
    panel.webview.html = webviewHtml(panel.webview, ctx.extension.extensionUri, {
      script: "gpuCheck",
      style: "gpu",
      title: "GPU Health Check",
      body: '<main id="gpuwb-gpu-check" aria-busy="true"></main>',
    });
    this.subscriptions.push(
      panel.webview.onDidReceiveMessage((m: GpuCheckViewMessage) => void this.onMessage(m)),
      panel.onDidChangeViewState(() => {
        if (!panel.visible) this.viewReady = false;
      }),
      panel.onDidDispose(() => this.dispose()),
    );
  }

  private send(): void {
    const s = this.state;
    if (s.kind === "running") void this.post({ type: "running", message: s.message });
    else if (s.kind === "report") void this.post({ type: "report", view: s.view });
    else if (s.kind === "error") void this.post({ type: "error", message: s.message });
  }

  private post(m: GpuCheckHostMessage): Thenable<boolean> {
    if (!this.viewReady || this.disposed) return Promise.resolve(false);
    return this.panel.webview.postMessage(m);
  }

  async renderedState(timeoutMs = 15_000): Promise<GpuCheckRenderedState> {
    if (!this.viewReady) await new Promise<void>((resolve) => this.readyWaiters.push(resolve));
    return this.queries.ask((requestId) => void this.post({ type: "queryState", requestId }), timeoutMs);
  }

  private async onMessage(m: GpuCheckViewMessage): Promise<void> {
    switch (m.type) {
      case "ready":
        this.viewReady = true;
        this.send();
        for (const w of this.readyWaiters.splice(0)) w();
        break;
      case "state":
        this.queries.answer(m.requestId, m.state);
        break;
      case "export":
        await exportCheck(this.state.kind === "report" ? this.state.view : GpuCheckPanel.lastView);
        break;
      case "rerun":
        await vscode.commands.executeCommand("gpuWorkbench.checkGpuHealth");
        break;
    }
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    if (GpuCheckPanel.current === this) GpuCheckPanel.current = undefined;
    for (const w of this.readyWaiters.splice(0)) w();
    for (const d of this.subscriptions.splice(0)) d.dispose();
    this.panel.dispose();
  }
}

/** The Markdown an export writes: the report's, with the header note. */
export function exportText(view: GpuCheckView | undefined): string | undefined {
  return view ? reportMarkdown(view.report, view.note) : undefined;
}

/** Open the report as an untitled Markdown document (the user saves it where they like). */
export async function exportCheck(view: GpuCheckView | undefined): Promise<vscode.TextEditor | undefined> {
  const content = exportText(view);
  if (content === undefined) {
    void vscode.window.showInformationMessage(
      "There is no GPU health report to export yet. Run “GPU Workbench: Check GPU Health” first.",
    );
    return undefined;
  }
  const doc = await vscode.workspace.openTextDocument({ language: "markdown", content });
  return vscode.window.showTextDocument(doc, { preview: false });
}

export function registerCheckSerializer(ctx: Ctx): vscode.Disposable {
  return vscode.window.registerWebviewPanelSerializer(CHECK_VIEW_TYPE, {
    async deserializeWebviewPanel(panel: vscode.WebviewPanel, state: unknown) {
      GpuCheckPanel.revive(ctx, panel, state);
    },
  });
}
