import * as assert from "node:assert/strict";
import * as vscode from "vscode";
import { api, EXTENSION_ID, ready } from "../helpers";

describe("activation", () => {
  it("activates in the workspace and reports its activation time", async () => {
    const a = await api();
    assert.ok(vscode.extensions.getExtension(EXTENSION_ID)?.isActive);
    assert.ok(a.activationMs > 0);
    console.log(`[metric] activationMs=${a.activationMs.toFixed(1)}`);
  });

  it("starts the backend, which reaches ready", async () => {
    const a = await api();
    await ready(a);
  });

  it("workbench/status reports the backend's Python version", async () => {
    const a = await api();
    await ready(a);
    const s = await a.backendStatus();
    assert.equal(s.name, "gpu-workbench");
    assert.match(s.python.version, /^3\.(9|[1-9]\d)\.\d+/);
    assert.equal(s.trusted, vscode.workspace.isTrusted);
    assert.ok(s.capabilities.includes("workbench/ping"));
    assert.ok(s.pid > 0 && s.pid !== process.pid);
  });

  it("contributes every command to the palette under the GPU Workbench category", async () => {
    const pkg = vscode.extensions.getExtension(EXTENSION_ID)?.packageJSON;
    const contributed: { command: string; category: string }[] = pkg.contributes.commands;
    assert.ok(contributed.length >= 4);
    const registered = new Set(await vscode.commands.getCommands(true));
    for (const c of contributed) {
      assert.equal(c.category, "GPU Workbench", c.command);
      assert.ok(registered.has(c.command), `${c.command} is registered`);
    }
  });

  it("the Show Backend Status command returns the live status", async () => {
    const a = await api();
    await ready(a);
    const s = (await vscode.commands.executeCommand("gpuWorkbench.showStatus")) as { pid: number } | undefined;
    assert.equal(s?.pid, a.backendPid());
  });
});
