/**
 * Results under each cell of a Python file: an inline note after the cell's last line
 * (queued, running with its time ticking, ✓ with the result, ✗ with the error), the running
 * cell highlighted, a hover with the full text output, and runtime errors as diagnostics
 * so the Problems view jumps to the failing line. Edits move results with their cells and
 * mark a cell's result stale instead of deleting it.
 */
import * as vscode from "vscode";
import type { Ctx } from "../ctx";
import type * as proto from "../protocol";
import type { CellIndex } from "./cellIndex";
import { applyCarriageReturns, type ExecutionRecord } from "./executions";

const HOVER_CHARS = 20_000;
// ANSI escape sequences (ESC [ … letter); built from a string so the source has no raw ESC.
const ANSI = new RegExp(`${String.fromCharCode(27)}\\[[0-9;]*[A-Za-z]`, "g");
const NOTE_CHARS = 80;

export class InlineResults implements vscode.Disposable {
  private readonly note = vscode.window.createTextEditorDecorationType({
    after: { margin: "0 0 0 2em", color: new vscode.ThemeColor("editorCodeLens.foreground") },
  });
  private readonly noteError = vscode.window.createTextEditorDecorationType({
    after: { margin: "0 0 0 2em", color: new vscode.ThemeColor("errorForeground") },
  });
  private readonly running = vscode.window.createTextEditorDecorationType({
    isWholeLine: true,
    backgroundColor: new vscode.ThemeColor("editor.rangeHighlightBackground"),
    overviewRulerColor: new vscode.ThemeColor("editorOverviewRuler.rangeHighlightForeground"),
  });
  private readonly diagnostics = vscode.languages.createDiagnosticCollection("GPU Workbench");
  private readonly subscriptions: vscode.Disposable[] = [];
  private timer: NodeJS.Timeout | undefined;
  private ticker: NodeJS.Timeout | undefined;

  constructor(
    private readonly ctx: Ctx,
    private readonly index: CellIndex,
  ) {
    this.subscriptions.push(
      this.note,
      this.noteError,
      this.running,
      this.diagnostics,
      ctx.executions.onDidChange(() => this.schedule()),
      ctx.executions.onDidClear(() => this.schedule()),
      vscode.window.onDidChangeVisibleTextEditors(() => this.schedule()),
      vscode.workspace.onDidChangeTextDocument((e) => this.onEdit(e)),
      vscode.commands.registerCommand("gpuWorkbench.openLocation", (file: string, line: number) =>
        openLocation(file, line),
      ),
    );
    this.schedule();
  }

  /** Render at most ten times a second, however fast outputs arrive. */
  private schedule(): void {
    if (this.timer) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.render();
    }, 100);
  }

  private async render(): Promise<void> {
    const anyRunning = this.ctx.executions.all().some((r) => r.status === "running");
    if (anyRunning && !this.ticker) this.ticker = setInterval(() => this.schedule(), 1000);
    if (!anyRunning && this.ticker) {
      clearInterval(this.ticker);
      this.ticker = undefined;
    }
    this.updateDiagnostics();
    for (const editor of vscode.window.visibleTextEditors) {
      if (editor.document.languageId !== "python") continue;
      try {
        await this.renderEditor(editor);
      } catch {
        // The backend is restarting: the next change renders again.
      }
    }
  }

  private async renderEditor(editor: vscode.TextEditor): Promise<void> {
    const doc = editor.document;
    const records = this.ctx.executions.forDocument(doc.uri.toString());
    if (!records.length) {
      editor.setDecorations(this.note, []);
      editor.setDecorations(this.noteError, []);
      editor.setDecorations(this.running, []);
      return;
    }
    const cells = await this.index.cells(doc);
    const notes: vscode.DecorationOptions[] = [];
    const errors: vscode.DecorationOptions[] = [];
    const running: vscode.Range[] = [];
    for (const cell of cells) {
      // The newest execution that started at this cell's first code line.
      const r = [...records]
        .reverse()
        .find((x) => x.source?.line === cell.codeStartLine && x.source.title !== "Selection");
      if (!r) continue;
      const last = Math.max(cell.codeStartLine, lastCodeLine(doc, cell));
      if (last >= doc.lineCount) continue;
      // Under the cell when a blank line follows it (visible however long the code's lines
      // are), else after its last line.
      const noteLine = last + 1 < doc.lineCount && doc.lineAt(last + 1).isEmptyOrWhitespace ? last + 1 : last;
      const end = doc.lineAt(noteLine).range.end;
      const opts: vscode.DecorationOptions = {
        range: new vscode.Range(end, end),
        renderOptions: { after: { contentText: noteText(r) } },
        hoverMessage: hover(r),
      };
      (r.status === "error" || r.status === "died" ? errors : notes).push(opts);
      if (r.status === "running") running.push(new vscode.Range(cell.startLine, 0, last, 0));
    }
    editor.setDecorations(this.note, notes);
    editor.setDecorations(this.noteError, errors);
    editor.setDecorations(this.running, running);
  }

  private updateDiagnostics(): void {
    const byFile = new Map<string, vscode.Diagnostic[]>();
    const latest = new Map<string, ExecutionRecord>();
    for (const r of this.ctx.executions.all()) {
      if (r.source) latest.set(`${r.source.uri}#${r.source.line}`, r);
    }
    for (const r of latest.values()) {
      const err = r.outputs.find((o) => o.kind === "error");
      if (err?.kind !== "error" || r.stale) continue;
      const frame = [...err.frames].reverse().find((f) => f.file && f.line > 0);
      if (!frame) continue;
      const diag = new vscode.Diagnostic(
        new vscode.Range(frame.line - 1, 0, frame.line - 1, 1000),
        `${err.ename}: ${err.evalue}${r.executionCount ? ` (run [${r.executionCount}])` : ""}`,
        vscode.DiagnosticSeverity.Error,
      );
      diag.source = "GPU Workbench";
      const list = byFile.get(frame.file) ?? [];
      list.push(diag);
      byFile.set(frame.file, list);
    }
    this.diagnostics.clear();
    for (const [file, diags] of byFile) this.diagnostics.set(vscode.Uri.file(file), diags);
  }

  /** Edits move results with their cells; an edit inside a cell marks its result stale. */
  private onEdit(e: vscode.TextDocumentChangeEvent): void {
    if (e.document.languageId !== "python" || !e.contentChanges.length) return;
    const uri = e.document.uri.toString();
    const records = this.ctx.executions.forDocument(uri);
    if (!records.length) return;
    for (const change of e.contentChanges) {
      const added = change.text.split("\n").length - 1;
      const removed = change.range.end.line - change.range.start.line;
      const delta = added - removed;
      for (const r of records) {
        const src = r.source;
        if (!src) continue;
        const lastLine = src.line + Math.max(0, r.code.split("\n").length - 1);
        if (change.range.start.line > lastLine) continue;
        if (change.range.end.line < src.line) src.line += delta;
        else this.ctx.executions.markStale(r.executionId);
      }
    }
    this.index.forget(e.document);
    this.schedule();
  }

  dispose(): void {
    if (this.timer) clearTimeout(this.timer);
    if (this.ticker) clearInterval(this.ticker);
    for (const d of this.subscriptions) d.dispose();
  }
}

function lastCodeLine(doc: vscode.TextDocument, cell: proto.Cell): number {
  let line = Math.min(cell.endLine, doc.lineCount - 1);
  while (line > cell.codeStartLine && doc.lineAt(line).isEmptyOrWhitespace) line--;
  return line;
}

function seconds(ms: number | null | undefined): string {
  if (ms === null || ms === undefined) return "";
  return ms < 1000 ? `${Math.round(ms)} ms` : `${(ms / 1000).toFixed(1)} s`;
}

function clip(text: string, n = NOTE_CHARS): string {
  const one = text.replace(ANSI, "").replace(/\s+/g, " ").trim();
  return one.length > n ? `${one.slice(0, n - 1)}…` : one;
}

/** The one-line summary: the result, else the last line of output. */
function summary(r: ExecutionRecord): string {
  const result = [...r.outputs].reverse().find((o) => o.kind === "result");
  if (result?.kind === "result") {
    const plain = result.data["text/plain"];
    if (typeof plain === "string") return clip(plain);
    return `[${Object.keys(result.data)[0] ?? "result"}]`;
  }
  const display = [...r.outputs].reverse().find((o) => o.kind === "display");
  const stream = [...r.outputs].reverse().find((o) => o.kind === "stream");
  if (stream?.kind === "stream") {
    const lines = applyCarriageReturns(stream.text)
      .split("\n")
      .filter((l) => l.trim());
    if (lines.length) return clip(lines[lines.length - 1] as string);
  }
  if (display?.kind === "display") return `[${Object.keys(display.data).find((k) => k !== "text/plain") ?? "display"}]`;
  return "";
}

export function noteText(r: ExecutionRecord): string {
  const count = r.executionCount ? `[${r.executionCount}] ` : "";
  const stale = r.stale ? " (edited since)" : "";
  switch (r.status) {
    case "queued":
      return "⏳ queued";
    case "running": {
      const s = r.startedAt ? Math.floor((Date.now() - r.startedAt) / 1000) : 0;
      const last = summary(r);
      return `⟳ running ${s} s${last ? `  ${last}` : ""}`;
    }
    case "ok": {
      const s = summary(r);
      return `✓ ${count}${seconds(r.durationMs)}${s ? `  → ${s}` : ""}${stale}`;
    }
    case "error": {
      const err = r.outputs.find((o) => o.kind === "error");
      const what = err?.kind === "error" ? clip(`${err.ename}: ${err.evalue}`) : "error";
      return `✗ ${count}${what}${stale}`;
    }
    case "interrupted":
      return `■ ${count}interrupted after ${seconds(r.durationMs)}${stale}`;
    case "aborted":
      return "– skipped: an earlier cell failed or was interrupted";
    case "died":
      return "✗ the kernel died; its variables are lost";
  }
}

function hover(r: ExecutionRecord): vscode.MarkdownString {
  const md = new vscode.MarkdownString(undefined, true);
  md.isTrusted = { enabledCommands: ["gpuWorkbench.showResults", "gpuWorkbench.openLocation"] };
  md.appendMarkdown(`**${noteText(r)}**\n\n`);
  let text = "";
  for (const o of r.outputs) {
    if (o.kind === "stream") text += applyCarriageReturns(o.text);
    else if (o.kind === "error") text += `${o.traceback.join("\n")}\n`;
    else {
      const plain = o.data["text/plain"];
      text += typeof plain === "string" ? `${plain}\n` : `[${Object.keys(o.data).join(", ")}]\n`;
    }
  }
  // ANSI colours do not render in hovers: strip them.
  text = text.replace(ANSI, "");
  if (text.length > HOVER_CHARS) text = `…${text.slice(-HOVER_CHARS)}`;
  if (text.trim()) md.appendCodeblock(text, "text");
  const err = r.outputs.find((o) => o.kind === "error");
  const frame = err?.kind === "error" ? [...err.frames].reverse().find((f) => f.line > 0) : undefined;
  if (frame) {
    const args = encodeURIComponent(JSON.stringify([frame.file, frame.line]));
    md.appendMarkdown(`[Go to line ${frame.line}](command:gpuWorkbench.openLocation?${args}) · `);
  }
  md.appendMarkdown("[Show in results panel](command:gpuWorkbench.showResults)");
  return md;
}

async function openLocation(file: string, line: number): Promise<void> {
  const uri = file.includes("://") ? vscode.Uri.parse(file) : vscode.Uri.file(file);
  const pos = new vscode.Position(Math.max(0, line - 1), 0);
  await vscode.window.showTextDocument(uri, { selection: new vscode.Range(pos, pos) });
}
