import * as assert from "node:assert/strict";
import * as vscode from "vscode";
import type { KernelEvent, KernelEventParams } from "../../../src/protocol";
import type { VariablesSnapshot } from "../../../src/variables/provider";
import { api, ready, waitFor } from "../helpers";

const snapshot = () => vscode.commands.executeCommand<VariablesSnapshot>("gpuWorkbench.internal.variablesSnapshot");

describe("variables view (kernel namespace)", () => {
  if (!vscode.workspace.isTrusted) return;

  it("lists the variables of the active editor's kernel with their types, after each run", async () => {
    const a = await api();
    await ready(a);
    const doc = await vscode.workspace.openTextDocument({ language: "python", content: "# %%\nx = 1\n" });
    await vscode.window.showTextDocument(doc);
    await vscode.commands.executeCommand("gpuWorkbench.variables.focus");
    const kernelId = await a.ctx.bindings.ensureKernel(doc.uri);
    const docs = [doc];
    const replies = new Set<string>();
    const sub = a.kernels.onDidReceiveEvent((p: KernelEventParams) => {
      const e = p.event as KernelEvent;
      if (p.kernelId === kernelId && e.type === "reply") replies.add(e.executionId);
    });
    try {
      const run = async (code: string) => {
        const { executionId } = await a.kernels.execute({ kernelId, code });
        await waitFor(`the reply of ${executionId}`, () => replies.has(executionId));
      };
      await run("x = 1\nitems = [1, 2, 3]\nconfig = {'lr': 0.1, 'epochs': 3}\n_hidden = 5");
      // Refreshed by the reply alone (the view is visible): no command needed.
      const snap = await waitFor("the view to list x, items and config", async () => {
        const s = await snapshot();
        return s.kernelId === kernelId && s.variables.some((v) => v.name === "config") && s;
      });
      assert.equal(snap.message, undefined);
      const byName = new Map(snap.variables.map((v) => [v.name, v]));
      assert.equal(byName.get("x")?.type, "int");
      assert.equal(byName.get("items")?.type, "list");
      assert.equal(byName.get("items")?.length, 3);
      assert.match(byName.get("items")?.description ?? "", /^list len 3 \d+ B$/);
      assert.equal(byName.get("config")?.type, "dict");
      assert.match(byName.get("config")?.description ?? "", /^dict len 2 /);
      assert.match(byName.get("config")?.repr ?? "", /'lr': 0\.1/);
      assert.ok(!byName.has("_hidden"), "private names are not listed");

      await run("x = 'now a string'");
      await waitFor(
        "x to become a str",
        async () => (await snapshot()).variables.find((v) => v.name === "x")?.type === "str",
      );

      // The refresh command works on demand too.
      await run("extra = 2.5");
      await vscode.commands.executeCommand("gpuWorkbench.refreshVariables");
      assert.equal((await snapshot()).variables.find((v) => v.name === "extra")?.type, "float");

      // Another editor without a kernel: a message instead of items.
      const other = await vscode.workspace.openTextDocument({ language: "python", content: "y = 2\n" });
      docs.push(other);
      await vscode.window.showTextDocument(other);
      const empty = await waitFor("the no-kernel message", async () => {
        const s = await snapshot();
        return s.kernelId === undefined && s;
      });
      assert.equal(empty.variables.length, 0);
      assert.equal(empty.message, "Run a cell to see its variables.");

      // Back to the first editor: its variables again.
      await vscode.window.showTextDocument(doc);
      await waitFor("the first kernel's variables", async () => (await snapshot()).kernelId === kernelId);
    } finally {
      sub.dispose();
      await a.kernels.shutdown(kernelId).catch(() => undefined);
      await a.ctx.bindings.unbind(doc.uri);
      // Untitled and dirty: revert, so closing asks nothing.
      for (const d of docs) {
        await vscode.window.showTextDocument(d);
        await vscode.commands.executeCommand("workbench.action.revertAndCloseActiveEditor");
      }
    }
  });
});
