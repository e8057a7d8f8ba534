/**
 * Cell commands. Each takes its document and line from CodeLens arguments (uri string,
 * line), from an editor title button (a Uri), or from the active editor and its cursor.
 */
import * as vscode from "vscode";
import { registerReporting } from "../commands";
import type { Ctx } from "../ctx";
import { bindDocument, connectForTarget, remoteTargetItems, type TargetPick } from "../remote/commands";
import { remoteTarget } from "../remote/format";
import type { CellIndex } from "./cellIndex";
import type { CellRunner } from "./runner";

interface Target {
  doc: vscode.TextDocument;
  line: number;
  editor?: vscode.TextEditor;
}

async function target(args: unknown[]): Promise<Target | undefined> {
  const [first, second] = args;
  const active = vscode.window.activeTextEditor;
  let uri: vscode.Uri | undefined;
  if (typeof first === "string") uri = vscode.Uri.parse(first);
  else if (first instanceof vscode.Uri) uri = first;
  if (uri && uri.toString() !== active?.document.uri.toString()) {
    const doc = await vscode.workspace.openTextDocument(uri);
    return { doc, line: typeof second === "number" ? second : 0 };
  }
  if (active?.document.languageId !== "python") {
    void vscode.window.showInformationMessage("Open a Python file to run its cells.");
    return undefined;
  }
  const line = typeof second === "number" ? second : active.selection.active.line;
  return { doc: active.document, line, editor: active };
}

export function registerCellCommands(ctx: Ctx, index: CellIndex, runner: CellRunner): void {
  const commands: Record<string, (...args: unknown[]) => Promise<unknown>> = {
    "gpuWorkbench.runCell": async (...args) => {
      const t = await target(args);
      const cell = t && (await runner.cellAt(t.doc, t.line));
      return t && cell ? runner.runCells(t.doc, [cell]) : undefined;
    },
    "gpuWorkbench.runCellAndAdvance": async (...args) => {
      const t = await target(args);
      if (!t) return undefined;
      const cell = await runner.cellAt(t.doc, t.line);
      if (!cell) return undefined;
      const ids = await runner.runCells(t.doc, [cell]);
      const next = (await index.cells(t.doc)).find((c) => c.index === cell.index + 1);
      if (t.editor && next) moveTo(t.editor, next.codeStartLine);
      return ids;
    },
    "gpuWorkbench.runAbove": async (...args) => {
      const t = await target(args);
      return t ? runner.runCells(t.doc, await runner.above(t.doc, t.line)) : undefined;
    },
    "gpuWorkbench.runBelow": async (...args) => {
      const t = await target(args);
      return t ? runner.runCells(t.doc, await runner.below(t.doc, t.line)) : undefined;
    },
    "gpuWorkbench.runAll": async (...args) => {
      const t = await target(args);
      return t ? runner.runCells(t.doc, await runner.all(t.doc)) : undefined;
    },
    "gpuWorkbench.runSelection": async (...args) => {
      const t = await target(args);
      if (!t) return undefined;
      const sel = t.editor?.selection;
      if (sel && !sel.isEmpty) return runner.runText(t.doc, t.doc.getText(sel), sel.start.line);
      const text = t.doc.lineAt(t.line).text;
      const id = await runner.runText(t.doc, text, t.line);
      if (t.editor) moveTo(t.editor, Math.min(t.line + 1, t.doc.lineCount - 1));
      return id;
    },
    "gpuWorkbench.restartAndRunAll": async (...args) => {
      const t = await target(args);
      if (!t) return undefined;
      const kernelId = ctx.bindings.kernelFor(t.doc.uri);
      if (kernelId) await ctx.kernels.restart(kernelId);
      ctx.executions.clear(t.doc.uri.toString());
      return runner.runCells(t.doc, await runner.all(t.doc));
    },
    "gpuWorkbench.clearResults": async (...args) => {
      const t = await target(args);
      ctx.executions.clear(t?.doc.uri.toString());
    },
    "gpuWorkbench.goToNextCell": async () => goTo(index, 1),
    "gpuWorkbench.goToPreviousCell": async () => goTo(index, -1),
    "gpuWorkbench.selectKernelTarget": async (...args) => selectKernelTarget(ctx, args),
  };
  for (const [id, fn] of Object.entries(commands)) registerReporting(ctx, id, fn);
}

function moveTo(editor: vscode.TextEditor, line: number): void {
  const pos = new vscode.Position(line, 0);
  editor.selection = new vscode.Selection(pos, pos);
  editor.revealRange(new vscode.Range(pos, pos), vscode.TextEditorRevealType.InCenterIfOutsideViewport);
}

async function goTo(index: CellIndex, step: 1 | -1): Promise<void> {
  const editor = vscode.window.activeTextEditor;
  if (!editor) return;
  const cells = await index.cells(editor.document);
  const at = await index.cellAt(editor.document, editor.selection.active.line);
  const next = cells.find((c) => c.index === (at?.index ?? 0) + step);
  if (next) moveTo(editor, next.codeStartLine);
}

/**
 * Kernel target: the local interpreter (fresh kernel), an existing kernel to attach to, or
 * an interpreter of a connected machine ("Remote: <machine> / <python>", or "Connect to a
 * machine…" first). A remote choice binds the document (persisted) and starts its kernel
 * there. `args[1]`, a target string, skips the pick (tests, other commands).
 */
async function selectKernelTarget(ctx: Ctx, args: unknown[]): Promise<string | undefined> {
  const editor = vscode.window.activeTextEditor;
  const notebook = vscode.window.activeNotebookEditor;
  const uri =
    args[0] instanceof vscode.Uri
      ? args[0]
      : typeof args[0] === "string"
        ? vscode.Uri.parse(args[0])
        : (notebook?.notebook.uri ?? editor?.document.uri);
  if (!uri) return undefined;
  if (typeof args[1] === "string" && args[1]) {
    const kernelId = await bindDocument(ctx, uri, args[1]);
    return kernelId;
  }
  const current = ctx.bindings.kernelFor(uri);
  const currentTarget = ctx.bindings.targetFor(uri);
  const python = ctx.config.kernelPythonPath || ctx.backend.interpreter?.executable || "python3";
  type Pick = TargetPick & { kernelId?: string; fresh?: boolean };
  const items: Pick[] = [
    {
      label: `$(vm) Local: ${python}`,
      description: current ? "new kernel" : "",
      detail: "A kernel of its own for this file, on this machine",
      fresh: true,
    },
  ];
  items.push(...remoteTargetItems(ctx, currentTarget));
  const running = (await ctx.kernels.list()).filter((k) => k.state !== "dead" && k.state !== "exited");
  if (running.length) items.push({ label: "Running kernels", kind: vscode.QuickPickItemKind.Separator });
  for (const k of running) {
    items.push({
      label: `$(server-process) ${k.name || k.kernelId}`,
      description: `${k.kernelId === current ? "current · " : ""}${k.state} · Python ${k.pythonVersion} · pid ${k.pid}`,
      detail: k.cwd,
      kernelId: k.kernelId,
    });
  }
  const pick = await vscode.window.showQuickPick(items, { title: "Kernel target for this file" });
  if (!pick) return undefined;
  if (pick.kernelId) {
    await ctx.kernels.attach(pick.kernelId, ctx.kernels.lastSeq(pick.kernelId) ?? 0);
    const k = (await ctx.kernels.list()).find((x) => x.kernelId === pick.kernelId);
    await ctx.bindings.bind(uri, pick.kernelId, k?.machine ? remoteTarget(k.machine, k.python) : "local");
    return pick.kernelId;
  }
  if (pick.fresh) {
    await ctx.bindings.unbind(uri);
    return ctx.bindings.ensureKernel(uri);
  }
  const target = pick.connect ? await connectForTarget(ctx) : pick.target;
  return target ? bindDocument(ctx, uri, target) : undefined;
}
