import * as assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import * as vscode from "vscode";
import { TEST_COMMANDS } from "../../../src/results";
import type { RenderedEntry, RenderedState } from "../../../src/results/messages";
import { api, ready, waitFor } from "../helpers";

/** A 1x1 PNG. */
const PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==";

/** What the panel's webview shows now: a round trip through it. */
function rendered(): Thenable<RenderedState | undefined> {
  return vscode.commands.executeCommand<RenderedState | undefined>(TEST_COMMANDS.renderedState);
}

async function entryWhen(
  what: string,
  executionId: string,
  check: (e: RenderedEntry) => boolean,
  timeoutMs = 60_000,
): Promise<RenderedEntry> {
  let last: RenderedEntry | undefined;
  try {
    return await waitFor(
      what,
      async () => {
        last = (await rendered())?.items.find((e) => e.executionId === executionId);
        return last && check(last) ? last : undefined;
      },
      timeoutMs,
    );
  } catch (err) {
    throw new Error(`${String(err)}; the entry shows ${JSON.stringify(last)?.slice(0, 1500)}`);
  }
}

describe("results panel", () => {
  if (!vscode.workspace.isTrusted) return;

  it("shows executions with streams, images, errors and truncated floods", async () => {
    const a = await api();
    await ready(a);
    const ctx = a.ctx;
    const folder = vscode.workspace.workspaceFolders?.[0]?.uri;
    assert.ok(folder);
    const file = vscode.Uri.joinPath(folder, "quickstart.py");
    const source = (line: number, title: string) => ({ uri: file.toString(), line, title });
    const k = await a.kernels.start(file, "results-test");
    const run = async (code: string, line: number, title: string): Promise<string> => {
      const id = randomUUID();
      ctx.executions.add(id, k.kernelId, code, source(line, title));
      await a.kernels.execute({ kernelId: k.kernelId, code, executionId: id, file: file.fsPath, line });
      return id;
    };
    try {
      await vscode.commands.executeCommand("gpuWorkbench.showResults");
      const state = await waitFor("the panel", async () => await rendered());
      assert.equal(typeof state.entries, "number");

      // A stream with colours and a progress bar redrawn with carriage returns.
      const hello = await run(
        "import sys\nprint('hello results')\nprint('\\x1b[31mred\\x1b[0m')\nfor i in range(5):\n    sys.stdout.write(f'\\rprogress {i}')\nprint()",
        10,
        "Hello",
      );
      const h = await entryWhen("the stream entry", hello, (e) => e.status === "ok" && e.text.includes("progress 4"));
      assert.match(h.text, /hello results\nred\nprogress 4\n/);
      assert.ok(!h.text.includes("progress 0"), "carriage returns applied");
      assert.match(h.header, /quickstart\.py:11/);
      assert.match(h.header, /Hello/);

      // An image from _repr_png_.
      const image = await run(
        `import base64\nclass Dot:\n    def _repr_png_(self):\n        return base64.b64decode("${PNG}")\nDot()`,
        20,
        "Image",
      );
      await entryWhen("the image", image, (e) => e.status === "ok" && e.images === 1);

      // HTML goes into a sandboxed frame without scripts.
      const html = await run(
        "class H:\n    def _repr_html_(self):\n        return '<b>bold</b><script>window.top.__pwned=1</script>'\nH()",
        30,
        "HTML",
      );
      const hs = await entryWhen("the HTML frame", html, (e) => e.iframes.length === 1);
      assert.deepEqual(hs.iframes, [{ sandbox: "", hasSrcdoc: true }]);

      // An error with frames that point into the file.
      const error = await run("def fail():\n    raise ValueError('boom')\nfail()", 40, "Error");
      const er = await entryWhen("the error", error, (e) => e.status === "error" && e.frames > 0);
      assert.match(er.text, /ValueError/);
      assert.match(er.text, /quickstart\.py:4\d/);

      // A flood: cut in the view, all of it one click away.
      const flood = await run("for i in range(200000):\n    print('line', i)", 50, "Flood");
      const fl = await entryWhen(
        "the truncated flood",
        flood,
        (e) => e.status === "ok" && /MB/.test(e.truncated ?? ""),
        120_000,
      );
      assert.match(fl.truncated ?? "", /^Open full output \(\d+(\.\d+)? MB\)$/);
      assert.ok(fl.text.startsWith("line 0\nline 1\n"));
      assert.ok(!fl.text.includes("line 199999"));
      const record = ctx.executions.get(flood);
      const index = record?.outputs.findIndex((o) => o.kind === "stream") ?? -1;
      const lines = await vscode.commands.executeCommand<number>(TEST_COMMANDS.openFullOutput, flood, index);
      assert.equal(lines, 200_001, "the full output in an editor");
      const doc = vscode.window.activeTextEditor?.document;
      assert.equal(doc?.lineAt(199_999).text, "line 199999");
      await vscode.commands.executeCommand("workbench.action.revertAndCloseActiveEditor");

      // Newest last.
      const order = (await rendered())?.items.map((e) => e.executionId) ?? [];
      const ours = [hello, image, html, error, flood];
      assert.deepEqual(
        order.filter((id) => ours.includes(id)),
        ours,
      );

      // Clearing the file's results empties the view of them.
      ctx.executions.clear(file.toString());
      await waitFor("the cleared view", async () => {
        const s = await rendered();
        return s && !s.items.some((e) => ours.includes(e.executionId));
      });
    } finally {
      await a.kernels.shutdown(k.kernelId);
    }
  });

  it("opens beside the editor by itself when a cell from an editor starts", async () => {
    const a = await api();
    await ready(a);
    await vscode.commands.executeCommand("workbench.action.closeAllEditors");
    await waitFor("the panel to close", async () => !(await rendered()));
    const folder = vscode.workspace.workspaceFolders?.[0]?.uri;
    assert.ok(folder);
    const file = vscode.Uri.joinPath(folder, "quickstart.py");
    const editor = await vscode.window.showTextDocument(file);
    const k = await a.kernels.start(file, "results-open-test");
    try {
      const id = randomUUID();
      a.ctx.executions.add(id, k.kernelId, "print(1)", { uri: file.toString(), line: 0, title: "One" });
      await a.kernels.execute({ kernelId: k.kernelId, code: "print(1)", executionId: id });
      await entryWhen("the entry in the opened panel", id, (e) => e.status === "ok");
      assert.equal(vscode.window.activeTextEditor?.document.uri.toString(), editor.document.uri.toString());
    } finally {
      await a.kernels.shutdown(k.kernelId);
    }
  });
});
