import * as assert from "node:assert/strict";
import * as vscode from "vscode";
import { api, processAlive, ready, waitFor } from "../helpers";

describe("backend restarts", () => {
  it("restarts automatically after the backend process is killed", async () => {
    const a = await api();
    await ready(a);
    const oldPid = a.backendPid();
    assert.ok(oldPid);
    process.kill(oldPid, "SIGKILL");
    await waitFor("a new backend process", () => a.backendState === "ready" && a.backendPid() !== oldPid, 60_000);
    const s = await a.backendStatus();
    assert.notEqual(s.pid, oldPid);
    assert.ok(processAlive(s.pid));
    assert.equal(processAlive(oldPid), false);
  });

  it("the Restart Backend command replaces the process and leaves no orphan", async () => {
    const a = await api();
    await ready(a);
    const oldPid = a.backendPid();
    assert.ok(oldPid);
    await vscode.commands.executeCommand("gpuWorkbench.restartBackend");
    await ready(a);
    assert.notEqual(a.backendPid(), oldPid);
    await waitFor("the old backend to exit", () => !processAlive(oldPid), 10_000);
  });

  it("concurrent restart requests coalesce and end ready", async () => {
    const a = await api();
    await ready(a);
    const states: string[] = [];
    const sub = a.onDidChangeBackendState((s) => states.push(s));
    try {
      await Promise.all([a.restartBackend(), a.restartBackend(), a.restartBackend(), a.restartBackend()]);
      await ready(a);
      const starts = states.filter((s) => s === "starting").length;
      assert.ok(starts >= 1 && starts <= 2, `four requests made ${starts} restarts`);
    } finally {
      sub.dispose();
    }
  });
});
