import * as assert from "node:assert/strict";
import * as vscode from "vscode";
import type { KernelEvent, KernelEventParams } from "../../../src/protocol";
import { api, ready, waitFor } from "../helpers";

/** Collect a kernel's events from the extension's own notification stream. */
function collect(a: Awaited<ReturnType<typeof api>>, kernelId: string) {
  const events: KernelEvent[] = [];
  const sub = a.kernels.onDidReceiveEvent((p: KernelEventParams) => {
    if (p.kernelId === kernelId && p.event.type !== "gap") events.push(p.event);
  });
  type Reply = Extract<KernelEvent, { type: "reply" }>;
  const reply = (executionId: string): Promise<Reply> =>
    waitFor(`the reply of ${executionId}`, () =>
      events.find((e): e is Reply => e.type === "reply" && e.executionId === executionId),
    );
  return { events, reply, dispose: () => sub.dispose() };
}

describe("kernels from the extension", () => {
  if (!vscode.workspace.isTrusted) return;

  it("starts a kernel in the file's folder and streams its output", async () => {
    const a = await api();
    await ready(a);
    const folder = vscode.workspace.workspaceFolders?.[0]?.uri;
    assert.ok(folder);
    const file = vscode.Uri.joinPath(folder, "quickstart.py");
    const k = await a.kernels.start(file);
    const c = collect(a, k.kernelId);
    try {
      assert.equal(k.cwd, folder.fsPath);
      assert.equal(k.name, "quickstart.py");
      const { executionId } = await a.kernels.execute({ kernelId: k.kernelId, code: "import os\nprint(os.getcwd())" });
      const r = await c.reply(executionId);
      assert.equal(r.status, "ok");
      const out = c.events.filter((e) => e.type === "stream").map((e) => (e.type === "stream" ? e.text : ""));
      assert.equal(out.join(""), `${folder.fsPath}\n`);
    } finally {
      c.dispose();
      await a.kernels.shutdown(k.kernelId);
    }
  });

  it("interrupts a sleeping cell and keeps the kernel's state", async () => {
    const a = await api();
    await ready(a);
    const k = await a.kernels.start(undefined, "interrupt-test");
    const c = collect(a, k.kernelId);
    try {
      await a.kernels.execute({ kernelId: k.kernelId, code: "x = 7" });
      const { executionId } = await a.kernels.execute({ kernelId: k.kernelId, code: "import time\ntime.sleep(100)" });
      await waitFor("busy", () => c.events.some((e) => e.type === "status" && e.executionId === executionId));
      const r = await a.kernels.interrupt(k.kernelId);
      assert.equal(r.outcome, "interrupted");
      const reply = await c.reply(executionId);
      assert.equal(reply.status, "interrupted");
      const after = await a.kernels.execute({ kernelId: k.kernelId, code: "x * 6" });
      await c.reply(after.executionId);
      const result = c.events.find((e) => e.type === "execute_result" && e.executionId === after.executionId);
      assert.equal(result?.type === "execute_result" && result.data["text/plain"], "42");
    } finally {
      c.dispose();
      await a.kernels.shutdown(k.kernelId);
    }
  });

  it("loses no output when the backend is killed mid-cell: it re-attaches and replays", async () => {
    const a = await api();
    await ready(a);
    const k = await a.kernels.start(undefined, "durability-test");
    const c = collect(a, k.kernelId);
    try {
      const code = "import time\nfor i in range(40):\n    print('line', i, flush=True)\n    time.sleep(0.05)";
      const { executionId } = await a.kernels.execute({ kernelId: k.kernelId, code });
      await waitFor("some output", () => c.events.some((e) => e.type === "stream"));
      const oldPid = a.backendPid();
      assert.ok(oldPid);
      process.kill(oldPid, "SIGKILL");
      const reply = await c.reply(executionId);
      assert.equal(reply.status, "ok");
      assert.notEqual(a.backendPid(), oldPid, "a new backend delivered the end");
      const text = c.events.map((e) => (e.type === "stream" ? e.text : "")).join("");
      const expected = Array.from({ length: 40 }, (_, i) => `line ${i}\n`).join("");
      assert.equal(text, expected);
      const seqs = c.events.map((e) => e.seq);
      const first = seqs[0] ?? 0;
      assert.deepEqual(
        seqs,
        seqs.map((_, i) => first + i),
        "every seq once, in order",
      );
    } finally {
      c.dispose();
      await ready(a);
      await a.kernels.shutdown(k.kernelId);
    }
  });

  it("input() in a cell is answered through VS Code's input box", async () => {
    const a = await api();
    await ready(a);
    const k = await a.kernels.start(undefined, "input-test");
    const c = collect(a, k.kernelId);
    try {
      const { executionId } = await a.kernels.execute({
        kernelId: k.kernelId,
        code: "answer = input('Your name? ')\nprint(repr(answer))",
      });
      await waitFor("the input request", () => c.events.some((e) => e.type === "input_request"));
      // Accept the input box as a user pressing Enter would (empty answer), until it is gone.
      const reply = await waitFor("the reply after answering", async () => {
        await vscode.commands.executeCommand("workbench.action.acceptSelectedQuickOpenItem");
        return c.events.find((e) => e.type === "reply" && e.executionId === executionId);
      });
      assert.equal(reply.type === "reply" && reply.status, "ok");
      const out = c.events.filter((e) => e.type === "stream").map((e) => (e.type === "stream" ? e.text : ""));
      assert.equal(out.join(""), "''\n");
    } finally {
      c.dispose();
      await a.kernels.shutdown(k.kernelId);
    }
  });

  it("code that ignores the interrupt is killed after the grace period and reported dead", async () => {
    const a = await api();
    await ready(a);
    const cfg = vscode.workspace.getConfiguration("gpuWorkbench");
    await cfg.update("kernels.interruptGraceSeconds", 0.5, vscode.ConfigurationTarget.Global);
    const k = await a.kernels.start(undefined, "kill-test");
    const c = collect(a, k.kernelId);
    try {
      const code = "import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\nwhile True: pass";
      const { executionId } = await a.kernels.execute({ kernelId: k.kernelId, code });
      await waitFor("busy", () => c.events.some((e) => e.type === "status" && e.executionId === executionId));
      const r = await a.kernels.interrupt(k.kernelId);
      assert.equal(r.outcome, "killed");
      const died = await waitFor("the died event", () => c.events.find((e) => e.type === "died"));
      assert.equal(died.type === "died" && died.signal, "SIGKILL");
      assert.equal((await c.reply(executionId)).status, "died");
      const after = await a.kernels.restart(k.kernelId);
      assert.equal(after.state === "idle" || after.state === "starting", true);
    } finally {
      c.dispose();
      await cfg.update("kernels.interruptGraceSeconds", undefined, vscode.ConfigurationTarget.Global);
      await a.kernels.shutdown(k.kernelId).catch(() => undefined);
    }
  });

  it("lists kernels and ends one", async () => {
    const a = await api();
    await ready(a);
    const k = await a.kernels.start(undefined, "list-test");
    assert.ok((await a.kernels.list()).some((x) => x.kernelId === k.kernelId && x.state !== "dead"));
    await vscode.commands.executeCommand("gpuWorkbench.shutdownKernel", k.kernelId);
    await waitFor("the kernel to end", async () => {
      const found = (await a.kernels.list()).find((x) => x.kernelId === k.kernelId);
      return !found || found.state === "exited";
    });
  });
});
