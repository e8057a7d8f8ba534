import * as assert from "node:assert/strict";
import * as vscode from "vscode";
import type { KernelEventParams } from "../../../src/protocol";
import { api, EXTENSION_ID, ready, waitFor } from "../helpers";

const STDOUT = "application/vnd.code.notebook.stdout";
const ERROR = "application/vnd.code.notebook.error";
const text = (data: Uint8Array) => new TextDecoder().decode(data);

function items(cell: vscode.NotebookCell) {
  return cell.outputs.flatMap((o) => o.items);
}

/** Wait until every given cell has ended (its execution summary has a success flag). */
function ended(cells: vscode.NotebookCell[], what: string) {
  return waitFor(what, () => cells.every((c) => typeof c.executionSummary?.success === "boolean"));
}

async function appendCell(nb: vscode.NotebookDocument, source: string): Promise<vscode.NotebookCell> {
  const edit = new vscode.WorkspaceEdit();
  const data = new vscode.NotebookCellData(vscode.NotebookCellKind.Code, source, "python");
  edit.set(nb.uri, [vscode.NotebookEdit.insertCells(nb.cellCount, [data])]);
  assert.ok(await vscode.workspace.applyEdit(edit));
  const cell = nb.cellAt(nb.cellCount - 1);
  assert.equal(cell.document.getText(), source);
  return cell;
}

async function runCell(nb: vscode.NotebookDocument, cell: vscode.NotebookCell): Promise<void> {
  await vscode.commands.executeCommand("notebook.cell.execute", {
    ranges: [{ start: cell.index, end: cell.index + 1 }],
    document: nb.uri,
  });
}

describe("notebooks (GPU Workbench controller)", () => {
  if (!vscode.workspace.isTrusted) return;

  let nb: vscode.NotebookDocument;
  let copy: vscode.Uri;

  before(async () => {
    const a = await api();
    await ready(a);
    const folder = vscode.workspace.workspaceFolders?.[0]?.uri;
    assert.ok(folder);
    // A copy of its own: a fresh kernel binding, and the example stays untouched.
    copy = vscode.Uri.joinPath(folder, `notebook-test-${Date.now()}.ipynb`);
    await vscode.workspace.fs.copy(vscode.Uri.joinPath(folder, "notebook.ipynb"), copy);
    nb = await vscode.workspace.openNotebookDocument(copy);
    assert.equal(nb.notebookType, "jupyter-notebook");
    await vscode.window.showNotebookDocument(nb);
    await vscode.commands.executeCommand("notebook.selectKernel", { id: "gpu-workbench", extension: EXTENSION_ID });
  });

  after(async () => {
    const a = await api();
    const kernelId = a.ctx.bindings.kernelFor(copy);
    if (kernelId) await a.kernels.shutdown(kernelId).catch(() => undefined);
    await a.ctx.bindings.unbind(copy);
    await vscode.commands.executeCommand("workbench.action.revertAndCloseActiveEditor");
    await vscode.workspace.fs.delete(copy).then(undefined, () => undefined);
  });

  it("runs all cells in order: stdout, a PNG, an error that stops the rest", async () => {
    await vscode.commands.executeCommand("notebook.execute");
    const code = nb.getCells().filter((c) => c.kind === vscode.NotebookCellKind.Code);
    assert.equal(code.length, 4);
    const [hello, plot, failing, last] = code as [
      vscode.NotebookCell,
      vscode.NotebookCell,
      vscode.NotebookCell,
      vscode.NotebookCell,
    ];
    await ended(code, "every code cell to end");

    assert.equal(hello.executionSummary?.success, true);
    const out = items(hello).filter((i) => i.mime === STDOUT);
    assert.equal(hello.outputs.length, 1, "consecutive stdout goes to one output");
    assert.match(text(out[0]?.data ?? new Uint8Array()), /^Hello from Python 3\.\d+\.\d+\nstep 0\nstep 1\nstep 2\n$/);

    assert.equal(plot.executionSummary?.success, true);
    const png = items(plot).find((i) => i.mime === "image/png");
    assert.ok(png, `no image/png among ${items(plot).map((i) => i.mime)}`);
    assert.deepEqual([...png.data.subarray(0, 8)], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

    assert.equal(failing.executionSummary?.success, false);
    const err = items(failing).find((i) => i.mime === ERROR);
    assert.ok(err);
    const e = JSON.parse(text(err.data)) as { name: string; message: string; stack: string };
    assert.equal(e.name, "ValueError");
    assert.equal(e.message, "this error is on purpose");
    assert.match(e.stack, /Traceback|raise ValueError/);

    // Run All stops at the error: the last cell ended without running.
    assert.equal(last.executionSummary?.success, false);
    assert.equal(last.executionSummary?.executionOrder, undefined);
    assert.equal(last.outputs.length, 0);

    const orders = [hello, plot, failing].map((c) => c.executionSummary?.executionOrder ?? 0);
    const first = orders[0] ?? 0;
    assert.ok(first > 0, `execution orders ${orders}`);
    assert.deepEqual(orders, [first, first + 1, first + 2]);
    const timing = hello.executionSummary?.timing;
    assert.ok(timing && timing.endTime >= timing.startTime);
  });

  it("runs a single cell on the same kernel: its result and order", async () => {
    const code = nb.getCells().filter((c) => c.kind === vscode.NotebookCellKind.Code);
    const before = code[2]?.executionSummary?.executionOrder ?? 0;
    const last = code[3] as vscode.NotebookCell;
    await runCell(nb, last);
    await ended([last], "the last cell to end");
    await waitFor("its result", () => last.executionSummary?.success === true && last.outputs.length > 0);
    const plain = items(last).find((i) => i.mime === "text/plain");
    assert.equal(text(plain?.data ?? new Uint8Array()), "285");
    assert.equal(last.outputs[0]?.metadata?.outputType, "execute_result");
    assert.equal(last.executionSummary?.executionOrder, before + 1);
  });

  it("shows carriage-return progress as a terminal would", async () => {
    const cell = await appendCell(
      nb,
      "import sys, time\nfor p in (10, 50, 100):\n    sys.stdout.write(f'\\r{p}%')\n    sys.stdout.flush()\n    time.sleep(0.05)\nprint()\nprint('a\\r\\nb')",
    );
    await runCell(nb, cell);
    await ended([cell], "the progress cell to end");
    assert.equal(cell.executionSummary?.success, true);
    const out = items(cell).filter((i) => i.mime === STDOUT);
    assert.equal(out.length, 1);
    assert.equal(text(out[0]?.data ?? new Uint8Array()), "100%\na\nb\n");
  });

  it("interrupts a sleeping cell and keeps the kernel's state", async () => {
    const a = await api();
    const kernelId = a.ctx.bindings.kernelFor(nb.uri);
    assert.ok(kernelId);
    const cell = await appendCell(nb, "import time\nprint('sleeping', flush=True)\ntime.sleep(60)");
    let busy = false;
    const sub = a.kernels.onDidReceiveEvent((p: KernelEventParams) => {
      if (p.kernelId === kernelId && p.event.type === "stream") busy = true;
    });
    try {
      await runCell(nb, cell);
      await waitFor("the cell to start sleeping", () => busy && items(cell).some((i) => i.mime === STDOUT));
      await vscode.commands.executeCommand("notebook.cancelExecution");
      await ended([cell], "the interrupted cell to end");
    } finally {
      sub.dispose();
    }
    assert.equal(cell.executionSummary?.success, false);
    const err = items(cell).find((i) => i.mime === ERROR);
    assert.ok(err, `outputs: ${items(cell).map((i) => i.mime)}`);
    assert.equal((JSON.parse(text(err.data)) as { name: string }).name, "KeyboardInterrupt");

    const after = await appendCell(nb, "len(squares)");
    await runCell(nb, after);
    await ended([after], "the cell after the interrupt to end");
    assert.equal(text(items(after).find((i) => i.mime === "text/plain")?.data ?? new Uint8Array()), "10");
  });
});
