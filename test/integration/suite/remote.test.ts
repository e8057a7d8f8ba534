// Remote execution in a real VS Code against a real sshd in a network namespace (the "VM",
// server-python/tests/remote/netns.py): connect through the GPU Machines command (the
// unknown host key asked about once, answered by the test-only prompt queue), bind a .py
// file to the machine's Python, run a cell that proves it ran there, then cut the link in
// the middle of a cell that prints a numbered line every 50 ms and assert that every line
// arrived exactly once, in order, after the link came back.
import * as assert from "node:assert/strict";
import * as fs from "node:fs/promises";
import * as os from "node:os";
import * as path from "node:path";
import * as vscode from "vscode";
import type { Binding } from "../../../src/cells/bindings";
import type { ExecutionRecord } from "../../../src/cells/executions";
import type { GpuWorkbenchApi } from "../../../src/extension";
import * as proto from "../../../src/protocol";
import { parseKernelId, remoteTarget } from "../../../src/remote/format";
import { REMOTE_TEST_COMMANDS as R, type RemoteTestState } from "../../../src/remote/testCommands";
import { VM_TEST_COMMANDS as T } from "../../../src/vms/testCommands";
import type { VmTreeRow } from "../../../src/vms/tree";
import { api, ready, waitFor } from "../helpers";
import type { Netns, NetnsInfo } from "../netnsHost";
import { TestVm } from "../netnsHost";

const MACHINE = "ssh/nsvm";

function rows(refresh = false): Thenable<VmTreeRow[]> {
  return vscode.commands.executeCommand<VmTreeRow[]>(T.treeItems, refresh);
}

function remoteState(): Thenable<RemoteTestState> {
  return vscode.commands.executeCommand<RemoteTestState>(R.state);
}

/** The remote state once the machine is connected (again). */
function connectedAgain(): Promise<RemoteTestState> {
  return waitFor("connected again", async () => {
    const s = await remoteState();
    return s.machines.find((m) => m.machine === MACHINE)?.state === "connected" ? s : undefined;
  });
}

function stdout(r: ExecutionRecord | undefined): string {
  return (r?.outputs ?? []).map((o) => (o.kind === "stream" && o.name === "stdout" ? o.text : "")).join("");
}

function allText(r: ExecutionRecord | undefined): string {
  return JSON.stringify(r?.outputs ?? []);
}

describe("remote: kernels on a machine over SSH", function () {
  this.timeout(240_000);
  let a: GpuWorkbenchApi;
  let vm: TestVm | undefined;
  let netns: Netns | undefined;
  let info: NetnsInfo | undefined;
  let why = "";
  let knownHosts = "";
  let doc: vscode.TextDocument | undefined;
  const extensionRoot = path.resolve(__dirname, "..", "..", "..", "..");
  const G = vscode.ConfigurationTarget.Global;

  before(async function () {
    this.timeout(180_000);
    if (!vscode.workspace.isTrusted) {
      why = "the workspace is not trusted";
      return;
    }
    a = await api();
    await ready(a);
    try {
      await a.ctx.backend.client?.sendRequest(proto.remoteList.method, {});
    } catch (err) {
      why = `the backend does not serve remote/list (${String(err)})`;
      return;
    }
    // A known_hosts of our own, empty: the VM's key is unknown, root's real one untouched.
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), "gpuwb-remote-it-"));
    try {
      vm = await TestVm.up(extensionRoot, { name: "nsvm", knownHosts: "empty", dir });
    } catch (err) {
      why = err instanceof Error ? err.message : String(err);
      return;
    }
    ({ netns, info } = vm);
    knownHosts = path.join(dir, "known_hosts");
    await a.restartBackend();
    await ready(a);
  });

  after(async function () {
    this.timeout(60_000);
    await vscode.commands.executeCommand(T.script, null);
    if (!vm) return;
    if (doc) await a.ctx.bindings.unbind(doc.uri);
    await vm.down();
  });

  /** The execution once it has ended (the long cells take up to two minutes). */
  function finished(executionId: string, what: string): Promise<ExecutionRecord> {
    return waitFor(
      what,
      () => {
        const x = a.ctx.executions.get(executionId);
        return x && x.status !== "queued" && x.status !== "running" ? x : undefined;
      },
      120_000,
    );
  }

  beforeEach(function () {
    if (why) {
      console.log(`remote: skipped: ${why}`);
      if (process.env.GPUWB_REMOTE_DEBUG) void fs.writeFile(process.env.GPUWB_REMOTE_DEBUG, why);
      this.skip();
    }
  });

  it("connects to the namespace host after trusting its unknown host key once", async () => {
    let seen: VmTreeRow[] = [];
    const row = await waitFor(
      "ssh/nsvm in GPU Machines, running, with Connect",
      async () => {
        seen = await rows(true);
        return seen.find((r) => r.provider === "ssh" && r.id === "nsvm" && /\.connect\b/.test(r.contextValue));
      },
      60_000,
    ).catch((err) => {
      throw new Error(`${String(err)}; ssh rows: ${JSON.stringify(seen.filter((r) => r.provider === "ssh"))}`);
    });
    // "unknown" when the backend's reachability probe fails; connecting still works then.
    assert.ok(row.state === "running" || row.state === "unknown", row.state);
    await vscode.commands.executeCommand(T.prompts); // forget earlier prompts
    await vscode.commands.executeCommand(T.script, ["Trust"]);
    const m = await vscode.commands.executeCommand<proto.RemoteMachine | undefined>(
      "gpuWorkbench.remote.connectMachine",
      MACHINE,
    );
    const st = await remoteState();
    assert.ok(m, `connected (errors: ${JSON.stringify(st.errors)}; log: ${st.log.join(" | ")})`);
    assert.equal(m.state, "connected");
    assert.ok(m.interpreters.length > 0, "the agent lists the machine's interpreters");
    const prompts = await vscode.commands.executeCommand<string[]>(T.prompts);
    const trust = prompts.filter((p) => p.startsWith("confirm: Trust the SSH host key of"));
    assert.equal(trust.length, 1, prompts.join("\n"));
    assert.match(trust[0] ?? "", /SHA256:/);
    assert.ok(st.log.includes(`${MACHINE}: host key trusted`), st.log.join("\n"));
    assert.match(await fs.readFile(knownHosts, "utf8"), /\S/, "the key went to the test's known_hosts");
    const after = await waitFor("the machine's row to show the connection", async () =>
      (await rows()).find((r) => r.id === "nsvm" && r.description.startsWith("connected ✓")),
    );
    assert.match(after.contextValue, /\.disconnect\b/);
    assert.doesNotMatch(after.contextValue, /\.connect\b/);
    assert.match(after.tooltip, /Connection:\*\* connected/);
    // A second connect is answered at once, with no prompt.
    await vscode.commands.executeCommand("gpuWorkbench.remote.connectMachine", MACHINE);
    assert.deepEqual(
      (await vscode.commands.executeCommand<string[]>(T.prompts)).filter((p) => p.includes("Trust")),
      [],
    );
  });

  it("runs a .py cell bound to the machine's Python on the VM", async () => {
    const folder = vscode.workspace.workspaceFolders?.[0]?.uri;
    assert.ok(folder);
    const uri = vscode.Uri.joinPath(folder, "remote_cells.py");
    const text = [
      "# %% where",
      "import os, socket",
      'print("HOST", socket.gethostname())',
      'print("MARKER", os.environ.get("GPUWB_VM_MARKER"))',
      "# %% lines",
      "import time",
      "for i in range(120):",
      '    print(f"line {i:03d}", flush=True)',
      "    time.sleep(0.05)",
      "# %% rows",
      "import time",
      "for i in range(240):",
      '    print(f"row {i:03d}", flush=True)',
      "    time.sleep(0.05)",
      "",
    ].join("\n");
    await vscode.workspace.fs.writeFile(uri, Buffer.from(text));
    doc = await vscode.workspace.openTextDocument(uri);
    await vscode.window.showTextDocument(doc);
    const kernelId = await vscode.commands.executeCommand<string>(
      "gpuWorkbench.selectKernelTarget",
      uri,
      remoteTarget(MACHINE, ""),
    );
    assert.ok(kernelId, "a kernel started on the machine");
    assert.equal(parseKernelId(kernelId)?.machine, MACHINE, kernelId);
    const binding = await vscode.commands.executeCommand<Binding | undefined>(R.binding, uri.toString());
    assert.equal(binding?.kernelId, kernelId);
    assert.ok(binding?.target.startsWith(`remote:${MACHINE}:`), binding?.target);
    const k = (await a.ctx.kernels.list()).find((x) => x.kernelId === kernelId);
    assert.equal(k?.machine, MACHINE);
    const st = await remoteState();
    assert.equal(st.status.text, "$(remote) nsvm ✓");

    await vscode.commands.executeCommand("gpuWorkbench.runCell", uri.toString(), 1);
    const r = await waitFor(
      "the marker cell to finish",
      () => {
        const x = a.ctx.executions.forDocument(uri.toString()).find((e) => e.source?.line === 1);
        return x && x.status !== "queued" && x.status !== "running" ? x : undefined;
      },
      60_000,
    );
    assert.equal(r.status, "ok", allText(r));
    assert.match(stdout(r), /MARKER 1\n/, "GPUWB_VM_MARKER is set only in the VM's sessions");
    assert.equal(r.kernelId, kernelId);
  });

  it("a link cut in the middle of a cell loses no line and shows none twice", async () => {
    assert.ok(doc && netns);
    const uri = doc.uri.toString();
    await vscode.commands.executeCommand("gpuWorkbench.runCell", uri, 6);
    const running = await waitFor(
      "the counting cell to print",
      () => {
        const x = a.ctx.executions.forDocument(uri).find((e) => e.source?.line === 5);
        return x && /line 000/.test(stdout(x)) ? x : undefined;
      },
      30_000,
    );
    await new Promise((r) => setTimeout(r, 1000));
    await netns.command("down");
    const cutAt = Date.now();
    await new Promise((r) => setTimeout(r, 3000));
    await netns.command("up");
    const downMs = Date.now() - cutAt;
    const done = await finished(running.executionId, "the counting cell to finish after the link came back");
    assert.equal(done.status, "ok", allText(done));
    const expected = Array.from({ length: 120 }, (_, i) => `line ${String(i).padStart(3, "0")}`);
    const got = stdout(done).split("\n").filter(Boolean);
    assert.deepEqual(got, expected, `link down ${downMs} ms`);
    const st = await connectedAgain();
    const states = `link down ${downMs} ms; states: ${st.log.filter((l) => l.startsWith(MACHINE)).join(" | ")}`;
    console.log(`remote: ${states}`);
    if (process.env.GPUWB_REMOTE_DEBUG) await fs.writeFile(process.env.GPUWB_REMOTE_DEBUG, states);
  });

  it("a link down long enough to drop the connection: reconnects, replays, no line lost or doubled", async () => {
    assert.ok(doc && netns);
    const uri = doc.uri.toString();
    const before = (await remoteState()).log.length;
    await vscode.commands.executeCommand("gpuWorkbench.runCell", uri, 11);
    const running = await waitFor(
      "the long counting cell to print",
      () => {
        const x = a.ctx.executions.forDocument(uri).find((e) => e.source?.line === 10);
        return x && /row 000/.test(stdout(x)) ? x : undefined;
      },
      30_000,
    );
    await new Promise((r) => setTimeout(r, 1000));
    await netns.command("down");
    // The client's keepalives give up after about 6 s: wait until the window shows it.
    const seen = await waitFor(
      "the connection to be reported lost",
      async () => {
        const s = await remoteState();
        const m = s.machines.find((x) => x.machine === MACHINE);
        return m && m.state !== "connected" ? s : undefined;
      },
      30_000,
    );
    assert.equal(seen.status.text, "$(sync~spin) reconnecting…", JSON.stringify(seen.status));
    await netns.command("up");
    const done = await finished(running.executionId, "the long cell to finish after reconnecting");
    assert.equal(done.status, "ok", allText(done));
    const expected = Array.from({ length: 240 }, (_, i) => `row ${String(i).padStart(3, "0")}`);
    assert.deepEqual(stdout(done).split("\n").filter(Boolean), expected);
    const st = await connectedAgain();
    const log = st.log.slice(before).join(" | ");
    assert.match(log, /reconnecting/, log);
    if (process.env.GPUWB_REMOTE_DEBUG) await fs.appendFile(process.env.GPUWB_REMOTE_DEBUG, `\nlong cut: ${log}`);
  });

  it("a backend restart mid-cell (what a window reload does): reconnects by itself, the output is whole", async () => {
    assert.ok(doc);
    const uri = doc.uri.toString();
    const before = (await remoteState()).log.length;
    await vscode.commands.executeCommand("gpuWorkbench.runCell", uri, 11);
    const running = await waitFor(
      "the long counting cell to print",
      () => {
        const x = a.ctx.executions.forDocument(uri).find((e) => e.source?.line === 10 && e.status === "running");
        return x && /row 000/.test(stdout(x)) ? x : undefined;
      },
      30_000,
    );
    // The backend (and with it the ssh master and the agent's channel) goes away; the
    // kernel on the machine keeps running and journaling.
    await a.restartBackend();
    await ready(a);
    const done = await finished(running.executionId, "the long cell to finish after the restart");
    assert.equal(done.status, "ok", allText(done));
    const expected = Array.from({ length: 240 }, (_, i) => `row ${String(i).padStart(3, "0")}`);
    assert.deepEqual(stdout(done).split("\n").filter(Boolean), expected);
    const log = (await remoteState()).log.slice(before).join(" | ");
    assert.match(log, new RegExp(`${MACHINE}: restored \\d+ kernel`), log);
    const st = await remoteState();
    assert.equal(st.machines.find((m) => m.machine === MACHINE)?.state, "connected");
  });

  it("an SSH host that opts into idle autostop shows the countdown and warns with Keep Running", async () => {
    assert.ok(info);
    const marker = path.join(info.tmp, "autostop-acted");
    assert.ok(vm);
    // A workspace's settings cannot turn it on (nor choose the command the machine runs).
    const cfg = vscode.workspace.getConfiguration("gpuWorkbench.vms");
    const W = vscode.ConfigurationTarget.Workspace;
    await cfg.update("ssh.hosts", [vm.hostEntry({ autostopMinutes: 1, autostopCommand: `touch ${marker}` })], W);
    try {
      const before = (await remoteState()).log.length;
      await vscode.commands.executeCommand("gpuWorkbench.remote.disconnectMachine", MACHINE);
      const m = await vscode.commands.executeCommand<proto.RemoteMachine | undefined>(
        "gpuWorkbench.remote.connectMachine",
        MACHINE,
      );
      assert.equal(m?.state, "connected");
      const st = await remoteState();
      assert.equal(st.autostop[MACHINE], undefined, JSON.stringify(st.autostop));
      assert.ok(!st.log.slice(before).some((l) => l.includes("autostop after")), st.log.slice(before).join(" | "));
    } finally {
      await cfg.update("ssh.hosts", undefined, W);
    }
    await vm.setHosts({ autostopMinutes: 1, autostopCommand: `touch ${marker}` });
    try {
      await vscode.commands.executeCommand("gpuWorkbench.remote.disconnectMachine", MACHINE);
      await vscode.commands.executeCommand(T.prompts);
      await vscode.commands.executeCommand(T.script, ["Keep Running"]);
      const m = await vscode.commands.executeCommand<proto.RemoteMachine | undefined>(
        "gpuWorkbench.remote.connectMachine",
        MACHINE,
      );
      assert.equal(m?.state, "connected");
      // The watchdog runs on the machine; the window reads its countdown and, within two
      // minutes of acting, warns once; "Keep Running" starts the idle time again.
      const st = await waitFor(
        "the warning to be answered with Keep Running",
        async () => {
          const s = await remoteState();
          return s.log.includes(`${MACHINE}: keep running`) ? s : undefined;
        },
        90_000,
      );
      const auto = st.autostop[MACHINE];
      assert.ok(auto?.running, JSON.stringify(st.autostop));
      assert.equal(auto.idleMinutes, 1);
      const prompts = await vscode.commands.executeCommand<string[]>(T.prompts);
      assert.ok(
        prompts.some((p) => /^notify: nsvm has been idle and stops itself (in|within)/.test(p)),
        prompts.join("\n"),
      );
      let seen = "";
      const shown = await waitFor("the countdown in the status item and the machine's row", async () => {
        const s = await remoteState();
        const row = (await rows()).find((r) => r.id === "nsvm");
        const status = s.status.tooltip.replace(/&nbsp;/g, " ");
        seen = `status: ${status}; row: ${row?.tooltip}`;
        return /Autostop: stops (in \d+ min|within a minute) if still idle/.test(status) &&
          /Autostop: stops (in \d+ min|within a minute) if still idle/.test(row?.tooltip ?? "")
          ? s
          : undefined;
      }).catch((err) => {
        throw new Error(`${String(err)}; ${seen}`);
      });
      assert.ok(shown);
    } finally {
      await vscode.commands.executeCommand(T.script, null);
      await vm.setHosts();
      // Reconnecting without the rule sends none; the old watchdog is stopped explicitly.
      await a.ctx.backend.client?.sendRequest(proto.remoteAutostop.method, { machine: MACHINE, idleMinutes: 0 });
    }
  });

  it("syncs the workspace after the confirmation, and forwards a port listed in the tree", async () => {
    await vscode.commands.executeCommand(T.prompts);
    await vscode.commands.executeCommand(T.script, ["Send"]);
    const r = await vscode.commands.executeCommand<proto.RemoteSyncResult | undefined>(
      "gpuWorkbench.remote.syncWorkspace",
      MACHINE,
    );
    const prompts = await vscode.commands.executeCommand<string[]>(T.prompts);
    assert.ok(r, `synced (prompts: ${prompts.join(" | ")}; ${JSON.stringify((await remoteState()).errors)})`);
    assert.ok(r.files > 0);
    assert.match(r.remotePath, /gpu-workbench\//);
    assert.ok(
      prompts.some((p) => /^confirm: Send \d+ files? \(.+\) to nsvm:.*gpu-workbench/.test(p)),
      prompts.join("\n"),
    );
    const m = await vscode.commands.executeCommand<proto.RemoteMachine | undefined>(
      "gpuWorkbench.remote.forwardPort",
      MACHINE,
      6006,
    );
    const f = m?.forwards[0];
    assert.ok(f, JSON.stringify(m));
    const row = await waitFor("the forward's row", async () =>
      (await rows()).find((x) => x.kind === "forward" && x.label === `localhost:${f.localPort} → ${f.remotePort}`),
    );
    assert.equal(row.contextValue, "gpuWorkbench.forward");
    await vscode.commands.executeCommand("gpuWorkbench.remote.stopForwarding", {
      machine: MACHINE,
      localPort: f.localPort,
    });
    await waitFor("the forward's row to go", async () => !(await rows()).some((x) => x.kind === "forward"));
    // With gpuWorkbench.remote.syncBeforeRun, a run syncs first (no prompt).
    const cfg = vscode.workspace.getConfiguration("gpuWorkbench.remote");
    await cfg.update("syncBeforeRun", true, G);
    try {
      const before = (await remoteState()).log.filter((l) => l.includes("synced")).length;
      assert.ok(doc);
      await vscode.commands.executeCommand("gpuWorkbench.runCell", doc.uri.toString(), 1);
      const synced = await waitFor("a sync before the run", async () => {
        const l = (await remoteState()).log.filter((x) => x.includes("synced"));
        return l.length > before ? l : undefined;
      });
      assert.match(synced[synced.length - 1] ?? "", /gpu-workbench/);
    } finally {
      await cfg.update("syncBeforeRun", undefined, G);
    }
    // What the screenshot at the end shows: the file with its results, GPU Machines open.
    await vscode.commands.executeCommand("gpuWorkbench.machines.focus");
  });
});
