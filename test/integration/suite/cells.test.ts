import * as assert from "node:assert/strict";
import * as vscode from "vscode";
import type { ExecutionRecord } from "../../../src/cells/executions";
import { noteText } from "../../../src/cells/inline";
import { api, ready, waitFor } from "../helpers";

async function openScratch(name: string, text: string): Promise<vscode.TextEditor> {
  const folder = vscode.workspace.workspaceFolders?.[0]?.uri;
  assert.ok(folder);
  const uri = vscode.Uri.joinPath(folder, name);
  await vscode.workspace.fs.writeFile(uri, Buffer.from(text));
  const doc = await vscode.workspace.openTextDocument(uri);
  return vscode.window.showTextDocument(doc);
}

async function records(uri: vscode.Uri, n: number, done = true): Promise<ExecutionRecord[]> {
  const { ctx } = await api();
  return waitFor(`${n} finished executions of ${uri.path}`, () => {
    const rs = ctx.executions.forDocument(uri.toString());
    const finished = rs.filter((r) => !done || (r.status !== "queued" && r.status !== "running"));
    return finished.length >= n ? rs : undefined;
  });
}

describe("cells in Python files", () => {
  if (!vscode.workspace.isTrusted) return;

  afterEach(async () => {
    const { ctx } = await api();
    for (const editor of vscode.window.visibleTextEditors) {
      const id = ctx.bindings.kernelFor(editor.document.uri);
      if (id) await ctx.kernels.shutdown(id).catch(() => undefined);
      await ctx.bindings.unbind(editor.document.uri);
    }
    await vscode.commands.executeCommand("workbench.action.closeAllEditors");
  });

  it("Run Cell runs the cell under the cursor and records its result with file and line", async () => {
    const a = await api();
    await ready(a);
    const editor = await openScratch("run_cell.py", "# %% setup\nx = 40\n\n# %% answer\nx + 2\n");
    editor.selection = new vscode.Selection(4, 0, 4, 0);
    await vscode.commands.executeCommand("gpuWorkbench.runCell");
    const [r] = await records(editor.document.uri, 1);
    assert.ok(r);
    assert.equal(r.status, "error", "x is not defined yet: only the answer cell ran");
    await vscode.commands.executeCommand("gpuWorkbench.runAll", editor.document.uri.toString());
    const all = await records(editor.document.uri, 3);
    const last = all[all.length - 1];
    assert.equal(last?.status, "ok");
    assert.equal(last?.source?.line, 4);
    assert.equal(last?.source?.title, "answer");
    assert.match(noteText(last as ExecutionRecord), /^✓ \[\d+\] .*→ 42$/);
  });

  it("Run All stops at an error: later cells are skipped, the error becomes a diagnostic", async () => {
    const a = await api();
    await ready(a);
    const text = "# %%\nprint('one')\n# %%\na = 1\nb = 0\na / b\n# %%\nprint('never')\n";
    const editor = await openScratch("run_all_error.py", text);
    await vscode.commands.executeCommand("gpuWorkbench.runAll");
    const rs = await records(editor.document.uri, 3);
    assert.deepEqual(
      rs.map((r) => r.status),
      ["ok", "error", "aborted"],
    );
    assert.match(noteText(rs[1] as ExecutionRecord), /✗ \[\d+\] ZeroDivisionError: division by zero/);
    const diags = await waitFor("a diagnostic", () => {
      const d = vscode.languages.getDiagnostics(editor.document.uri);
      return d.length ? d : undefined;
    });
    assert.equal(diags[0]?.range.start.line, 5, "points at `a / b` (line 6)");
    assert.match(diags[0]?.message ?? "", /ZeroDivisionError/);
  });

  it("Run Cell and Advance moves to the next cell; Run Selection runs just the line", async () => {
    const a = await api();
    await ready(a);
    const editor = await openScratch("advance.py", "# %%\nv = 5\n# %%\nv * 2\nv * 3\n");
    editor.selection = new vscode.Selection(1, 0, 1, 0);
    await vscode.commands.executeCommand("gpuWorkbench.runCellAndAdvance");
    assert.equal(editor.selection.active.line, 3);
    await records(editor.document.uri, 1);
    editor.selection = new vscode.Selection(4, 0, 4, 0);
    await vscode.commands.executeCommand("gpuWorkbench.runSelection");
    const rs = await records(editor.document.uri, 2);
    const sel = rs.find((r) => r.source?.title === "Selection");
    const result = sel?.outputs.find((o) => o.kind === "result");
    assert.equal(result?.kind === "result" && result.data["text/plain"], "15");
  });

  it("Interrupt stops a sleeping cell; Restart clears the kernel's variables", async () => {
    const a = await api();
    await ready(a);
    const editor = await openScratch("interrupt.py", "# %%\nkeep = 1\n# %%\nimport time\ntime.sleep(100)\n");
    await vscode.commands.executeCommand("gpuWorkbench.runAll");
    await waitFor("the sleep to run", () =>
      a.ctx.executions
        .forDocument(editor.document.uri.toString())
        .some((r) => r.status === "running" && r.source?.line === 3),
    );
    await vscode.commands.executeCommand("gpuWorkbench.interruptKernel");
    const rs = await records(editor.document.uri, 2);
    assert.equal(rs[1]?.status, "interrupted");
    await vscode.commands.executeCommand("gpuWorkbench.restartKernel");
    const id = await a.ctx.kernels.execute({
      kernelId: a.ctx.bindings.kernelFor(editor.document.uri) as string,
      code: "'keep' in globals()",
      executionId: "check-restart",
    });
    const check = await waitFor("the check", () => {
      const r = a.ctx.executions.get(id.executionId);
      return r && r.status !== "queued" && r.status !== "running" ? r : undefined;
    });
    const out = check.outputs.find((o) => o.kind === "result");
    assert.equal(out?.kind === "result" && out.data["text/plain"], "False");
  });

  it("editing inside a cell marks its result stale; editing above moves it", async () => {
    const a = await api();
    await ready(a);
    const editor = await openScratch("stale.py", "# %%\nx = 1\n# %%\nx + 1\n");
    await vscode.commands.executeCommand("gpuWorkbench.runAll");
    const rs = await records(editor.document.uri, 2);
    await editor.edit((b) => b.insert(new vscode.Position(0, 0), "# a comment\n"));
    assert.equal(rs[1]?.source?.line, 4, "moved down with its cell");
    await editor.edit((b) => b.insert(new vscode.Position(4, 0), "# changed\n"));
    assert.equal(a.ctx.executions.get(rs[1]?.executionId as string)?.stale, true);
    assert.equal(a.ctx.executions.get(rs[0]?.executionId as string)?.stale, undefined);
  });
});
