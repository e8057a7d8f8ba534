// Restricted Mode. The harness runs this suite a second time with VS Code's trust model on
// (the folder is untrusted) and a workspace setting that tries to choose the interpreter.
import * as assert from "node:assert/strict";
import * as vscode from "vscode";
import { api, ready } from "../helpers";

describe("workspace trust", () => {
  it("in a trusted folder the backend runs with full capabilities", async function () {
    if (!vscode.workspace.isTrusted) this.skip();
    const a = await api();
    await ready(a);
    assert.equal((await a.backendStatus()).trusted, true);
  });

  it("restricted: a workspace cannot pick the interpreter, and the backend knows it is untrusted", async function () {
    if (vscode.workspace.isTrusted) this.skip();
    const folder = vscode.workspace.workspaceFolders?.[0]?.uri;
    assert.ok(folder);
    const fixture = await vscode.workspace.fs.readFile(vscode.Uri.joinPath(folder, ".vscode", "settings.json"));
    assert.match(Buffer.from(fixture).toString("utf8"), /workspace-chosen/, "the fixture sets it");
    // VS Code withholds restricted settings from an untrusted folder.
    assert.equal(vscode.workspace.getConfiguration("gpuWorkbench").get("pythonPath"), "");
    const a = await api();
    await ready(a);
    const s = await a.backendStatus();
    assert.equal(s.trusted, false);
    assert.notEqual(s.python.executable, "/nonexistent/workspace-chosen/python");
  });
});
