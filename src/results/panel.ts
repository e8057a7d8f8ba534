/**
 * The results panel: one entry per execution, newest last, fed from the execution store.
 * Changes are coalesced and sent at most ~20 times a second as deltas (new outputs, new
 * stream text); the view asks for a full snapshot whenever it (re)loads.
 */
import * as path from "node:path";
import * as vscode from "vscode";
import { applyCarriageReturns, type ExecutionRecord } from "../cells/executions";
import type { Ctx } from "../ctx";
import { StateQueries, webviewHtml, webviewOptions } from "../webview/html";
import { EntryTracker, frameOpenable } from "./entryTracker";
import type { EntryUpdate, HostMessage, RenderedState, ViewMessage } from "./messages";

export const VIEW_TYPE = "gpuWorkbench.results";
/** Minimum milliseconds between two updates sent to the view. */
const FLUSH_MS = 50;

export class ResultsPanel implements vscode.Disposable {
  /** The open panel, if any. */
  static current: ResultsPanel | undefined;

  /** Show the panel (creating it beside the active editor if needed). */
  static show(ctx: Ctx, preserveFocus: boolean): ResultsPanel {
    if (ResultsPanel.current) {
      ResultsPanel.current.panel.reveal(undefined, preserveFocus);
      return ResultsPanel.current;
    }
    const panel = vscode.window.createWebviewPanel(
      VIEW_TYPE,
      "Results",
      { viewColumn: vscode.ViewColumn.Beside, preserveFocus },
      ResultsPanel.options(ctx),
    );
    return new ResultsPanel(ctx, panel);
  }

  /** Adopt a panel VS Code restored after a reload. */
  static revive(ctx: Ctx, panel: vscode.WebviewPanel): ResultsPanel {
    ResultsPanel.current?.dispose();
    panel.webview.options = ResultsPanel.options(ctx);
    return new ResultsPanel(ctx, panel);
  }

  private static options(ctx: Ctx): vscode.WebviewPanelOptions & vscode.WebviewOptions {
    return webviewOptions(ctx.extension.extensionUri);
  }

  private readonly tracker: EntryTracker;
  private readonly dirty = new Set<string>();
  private readonly removed = new Set<string>();
  private readonly subscriptions: vscode.Disposable[] = [];
  private readonly queries = new StateQueries<RenderedState>("results view");
  private readonly readyWaiters: (() => void)[] = [];
  private viewReady = false;
  private timer: NodeJS.Timeout | undefined;
  private lastFlush = 0;
  private disposed = false;

  private constructor(
    private readonly ctx: Ctx,
    readonly panel: vscode.WebviewPanel,
  ) {
    ResultsPanel.current = this;
    this.tracker = new EntryTracker({
      maxChars: () => ctx.config.maxOutputCharacters,
      describe: (p) => describe(p),
    });
    panel.iconPath = vscode.Uri.joinPath(ctx.extension.extensionUri, "media", "activity.svg");
    panel.webview.html = this.html();
    this.subscriptions.push(
      panel.onDidDispose(() => this.dispose()),
      panel.onDidChangeViewState(() => this.schedule()),
      panel.webview.onDidReceiveMessage((m: ViewMessage) => void this.onMessage(m)),
      ctx.executions.onDidChange((r) => this.markDirty(r)),
      ctx.executions.onDidClear(() => this.onClear()),
    );
  }

  /** Asks the view what it shows (for tests): a round trip through the webview. */
  async renderedState(timeoutMs = 15_000): Promise<RenderedState> {
    if (!this.viewReady) await new Promise<void>((resolve) => this.readyWaiters.push(resolve));
    this.flush();
    return this.queries.ask((requestId) => void this.post({ type: "queryState", requestId }), timeoutMs);
  }

  /** Opens the whole text of a stream output in an untitled editor. */
  async openFullOutput(executionId: string, outputIndex: number): Promise<vscode.TextEditor | undefined> {
    const o = this.ctx.executions.get(executionId)?.outputs[outputIndex];
    if (o?.kind !== "stream") return undefined;
    const content = stripAnsi(applyCarriageReturns(o.text));
    const doc = await vscode.workspace.openTextDocument({ content, language: "log" });
    return vscode.window.showTextDocument(doc, { viewColumn: this.editorColumn(), preview: false });
  }

  private markDirty(r: ExecutionRecord): void {
    this.dirty.add(r.executionId);
    this.schedule();
  }

  private onClear(): void {
    for (const id of [...this.tracker.known()]) {
      if (!this.ctx.executions.get(id)) {
        this.tracker.forget(id);
        this.dirty.delete(id);
        this.removed.add(id);
      }
    }
    this.schedule();
  }

  private schedule(): void {
    if (this.timer || !this.viewReady || this.disposed) return;
    const wait = Math.max(0, FLUSH_MS - (Date.now() - this.lastFlush));
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.flush();
    }, wait);
  }

  /** Sends what changed since the last flush, one message for all records. */
  private flush(): void {
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = undefined;
    }
    if (!this.viewReady || this.disposed || (!this.dirty.size && !this.removed.size)) return;
    // A hidden view is rebuilt when shown again and then asks for everything (see "ready").
    if (!this.panel.visible) return;
    this.lastFlush = Date.now();
    const entries: EntryUpdate[] = [];
    const ids = [...this.dirty];
    this.dirty.clear();
    const records = ids.map((id) => this.ctx.executions.get(id)).filter((r): r is ExecutionRecord => !!r);
    records.sort((a, b) => a.queuedAt - b.queuedAt);
    for (const r of records) entries.push(this.tracker.update(r));
    const removed = [...this.removed];
    this.removed.clear();
    void this.post({ type: "update", entries, removed });
  }

  /** The view (re)loaded: send everything. */
  private sendAll(): void {
    this.tracker.reset();
    this.dirty.clear();
    this.removed.clear();
    const entries = this.ctx.executions.all().map((r) => this.tracker.update(r));
    void this.post({ type: "reset", entries });
    this.lastFlush = Date.now();
  }

  private post(m: HostMessage): Thenable<boolean> {
    return this.panel.webview.postMessage(m);
  }

  private async onMessage(m: ViewMessage): Promise<void> {
    try {
      switch (m.type) {
        case "ready":
          this.viewReady = true;
          this.sendAll();
          for (const w of this.readyWaiters.splice(0)) w();
          break;
        case "state":
          this.queries.answer(m.requestId, m.state);
          break;
        case "clear":
          this.ctx.executions.clear();
          break;
        case "openSource":
          await this.openSource(m.executionId);
          break;
        case "openFrame":
          await this.openFrame(m.executionId, m.outputIndex, m.frameIndex);
          break;
        case "openFullOutput":
          await this.openFullOutput(m.executionId, m.outputIndex);
          break;
      }
    } catch (err) {
      this.ctx.log.error(`Results panel: ${err instanceof Error ? err.message : String(err)}`);
      void vscode.window.showErrorMessage(`Could not open it: ${err instanceof Error ? err.message : String(err)}`);
    }
  }

  private async openSource(executionId: string): Promise<void> {
    const source = this.ctx.executions.get(executionId)?.source;
    if (source) await this.openAt(vscode.Uri.parse(source.uri), source.line);
  }

  private async openFrame(executionId: string, outputIndex: number, frameIndex: number): Promise<void> {
    const o = this.ctx.executions.get(executionId)?.outputs[outputIndex];
    const f = o?.kind === "error" ? o.frames[frameIndex] : undefined;
    if (!f || !frameOpenable(f.file)) return;
    const uri = path.isAbsolute(f.file) ? vscode.Uri.file(f.file) : vscode.Uri.parse(f.file);
    await this.openAt(uri, Math.max(0, f.line - 1));
  }

  private async openAt(uri: vscode.Uri, line: number): Promise<void> {
    const pos = new vscode.Position(line, 0);
    await vscode.window.showTextDocument(uri, {
      selection: new vscode.Range(pos, pos),
      viewColumn: this.editorColumn(uri),
      preview: false,
    });
  }

  /** A column for editors opened from the panel: where the file is shown, else not the panel's. */
  private editorColumn(uri?: vscode.Uri): vscode.ViewColumn {
    const shown = uri && vscode.window.visibleTextEditors.find((e) => e.document.uri.toString() === uri.toString());
    if (shown?.viewColumn) return shown.viewColumn;
    return this.panel.viewColumn === vscode.ViewColumn.One ? vscode.ViewColumn.Two : vscode.ViewColumn.One;
  }

  private html(): string {
    return webviewHtml(this.panel.webview, this.ctx.extension.extensionUri, {
      script: "results",
      style: "results",
      title: "Results",
      body: `<div id="gpuwb-results">
  <div class="toolbar" role="toolbar" aria-label="Results">
    <button type="button" id="clear" title="Clear all results">Clear</button>
    <button type="button" id="collapse" title="Collapse all entries">Collapse all</button>
    <span id="summary" class="summary" aria-live="polite"></span>
  </div>
  <div id="entries" role="list" aria-label="Executions"></div>
  <p id="empty" class="empty">No results yet. Run a cell to see its output here.</p>
</div>`,
    });
  }

  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    if (ResultsPanel.current === this) ResultsPanel.current = undefined;
    if (this.timer) clearTimeout(this.timer);
    for (const w of this.readyWaiters.splice(0)) w();
    for (const d of this.subscriptions.splice(0)) d.dispose();
    this.panel.dispose();
  }
}

/** A workspace-relative path for a URI string or a file path. */
function describe(uriOrPath: string): string {
  if (!uriOrPath || uriOrPath.startsWith("<")) return uriOrPath;
  try {
    const uri = path.isAbsolute(uriOrPath) ? vscode.Uri.file(uriOrPath) : vscode.Uri.parse(uriOrPath, true);
    return vscode.workspace.asRelativePath(uri, false);
  } catch {
    return uriOrPath;
  }
}

const ANSI = new RegExp(
  `${String.fromCharCode(27)}(?:\\[[0-?]*[ -/]*[@-~]|\\][^${String.fromCharCode(7)}]*(?:${String.fromCharCode(7)}|${String.fromCharCode(27)}\\\\))`,
  "g",
);

function stripAnsi(text: string): string {
  return text.replace(ANSI, "");
}
