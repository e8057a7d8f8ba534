import * as assert from "node:assert/strict";
import * as vscode from "vscode";
import { api, ready, waitFor } from "../helpers";

describe("interpreter selection", () => {
  const cfg = () => vscode.workspace.getConfiguration("gpuWorkbench");

  afterEach(async () => {
    await cfg().update("pythonPath", undefined, vscode.ConfigurationTarget.Global);
    await ready(await api());
  });

  it("an invalid gpuWorkbench.pythonPath gives a clear error and no backend", async () => {
    const a = await api();
    await ready(a);
    await cfg().update("pythonPath", "/nonexistent/bin/python3", vscode.ConfigurationTarget.Global);
    await waitFor("the error state", () => a.backendState === "error", 30_000);
    assert.equal(a.backendError?.reason, "python");
    assert.match(a.backendError?.message ?? "", /"\/nonexistent\/bin\/python3" was not found/);
    assert.equal(a.backendPid(), undefined);
  });

  it("clearing the setting recovers", async () => {
    const a = await api();
    await cfg().update("pythonPath", "/nonexistent/bin/python3", vscode.ConfigurationTarget.Global);
    await waitFor("the error state", () => a.backendState === "error", 30_000);
    await cfg().update("pythonPath", undefined, vscode.ConfigurationTarget.Global);
    await ready(a);
    assert.equal(a.backendError, undefined);
  });

  it("an explicit interpreter path is used", async () => {
    const a = await api();
    await ready(a);
    const exe = (await a.backendStatus()).python.executable;
    await cfg().update("pythonPath", exe, vscode.ConfigurationTarget.Global);
    await waitFor("a restart with the explicit path", async () => {
      return a.backendState === "ready" && (await a.backendStatus()).python.executable === exe;
    });
  });
});
