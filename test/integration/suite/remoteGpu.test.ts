// GPU health of a connected machine in a real VS Code: the test VM (a real sshd in a network
// namespace, server-python/tests/remote/netns.py) gives its ssh sessions the stand-in
// libnvidia-ml (server-python/tests/gpu/fake_nvml.py) with a script of its own, so the agent
// there samples an "NVIDIA H100 80GB HBM3" at 80%, while this machine's backend reads an
// "NVIDIA A10G" at 5%. With a .py bound to the machine in the active editor, the status
// item, the GPU panel and the GPU Machines view show the machine's GPUs, named; an editor
// bound to this machine switches the item back; disconnecting stops the machine's watches.
import * as assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import * as fs from "node:fs/promises";
import * as os from "node:os";
import * as path from "node:path";
import * as vscode from "vscode";
import type { GpuWorkbenchApi } from "../../../src/extension";
import type { GpuPanelRenderedState } from "../../../src/gpu/messages";
import type { GpuStatusSnapshot } from "../../../src/gpu/status";
import { GPU_TEST_COMMANDS as G_T } from "../../../src/gpu/testCommands";
import * as proto from "../../../src/protocol";
import { remoteTarget } from "../../../src/remote/format";
import { VM_TEST_COMMANDS as T } from "../../../src/vms/testCommands";
import type { VmTreeRow } from "../../../src/vms/tree";
import { api, ready, waitFor } from "../helpers";
import { TestVm } from "../netnsHost";

const PYTHON = process.env.GPUWB_TEST_PYTHON || "python3";
const HOST = "nsgpu";
const MACHINE = `ssh/${HOST}`;
const ENV_KEYS = ["LD_LIBRARY_PATH", "GPUWB_FAKE_NVML_SCRIPT"] as const;
const VM_GPU = "NVIDIA H100 80GB HBM3";
const LOCAL_GPU = "NVIDIA A10G";
const VM_TEXT = `${HOST} · GPU 80% · 40/80 GiB · 66°C`;

function vmScript(over = ""): string {
  return [
    "driver 550.54.15",
    "cuda 12040",
    `gpu 0 uuid=GPU-REMOTE-0 util=80 mem_used=42949672960 mem_total=85899345920 temp=66 ${over}`,
    `name 0 ${VM_GPU}`,
    "",
  ].join("\n");
}

const LOCAL_SCRIPT = [
  "driver 535.104.05",
  "cuda 12020",
  "gpu 0 uuid=GPU-LOCAL-0 util=5 mem_used=1073741824 mem_total=25769803776 temp=35",
  `name 0 ${LOCAL_GPU}`,
  "",
].join("\n");

function run(cmd: string, args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { timeout: 120_000 }, (err, stdout, stderr) =>
      err ? reject(new Error(`${cmd} ${args.join(" ")}: ${err.message}\n${stderr}`)) : resolve(stdout),
    );
  });
}

/** Replace a script atomically (a temporary file renamed over), as the library expects. */
async function writeScript(file: string, text: string): Promise<void> {
  const tmp = `${file}.${process.pid}.tmp`;
  await fs.writeFile(tmp, text);
  await fs.rename(tmp, file);
}

const statusItem = () => vscode.commands.executeCommand<GpuStatusSnapshot>(G_T.statusItem);
const panelState = () => vscode.commands.executeCommand<GpuPanelRenderedState | undefined>(G_T.panelState);
const watchers = () => vscode.commands.executeCommand<string[]>(G_T.watchers);
const notifications = () => vscode.commands.executeCommand<string[]>(G_T.notifications);
const rows = (refresh = false) => vscode.commands.executeCommand<VmTreeRow[]>(T.treeItems, refresh);

/** The rows right under the machine's row. */
function childrenOf(all: VmTreeRow[], provider: string, id: string): VmTreeRow[] {
  const at = all.findIndex((r) => r.kind === "vm" && r.provider === provider && r.id === id);
  if (at < 0) return [];
  const depth = all[at]?.depth ?? 0;
  const out: VmTreeRow[] = [];
  for (const r of all.slice(at + 1)) {
    if (r.depth <= depth) break;
    if (r.depth === depth + 1) out.push(r);
  }
  return out;
}

function gpuTabs(): vscode.Tab[] {
  return vscode.window.tabGroups.all
    .flatMap((g) => g.tabs)
    .filter((t) => (t.input as { viewType?: string } | undefined)?.viewType?.includes("gpuWorkbench.gpuPanel"));
}

describe("remote gpu: a connected machine's GPU health", function () {
  this.timeout(240_000);
  let a: GpuWorkbenchApi;
  let vm: TestVm | undefined;
  let why = "";
  let tmp = "";
  let vmScriptFile = "";
  let remoteDoc: vscode.TextDocument | undefined;
  let localDoc: vscode.TextDocument | undefined;
  let envChanged = false;
  const saved: Partial<Record<(typeof ENV_KEYS)[number], string>> = {};
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
      await a.ctx.backend.client?.sendRequest(proto.gpuStatus.method, {});
    } catch (err) {
      why = `the backend does not serve remote/list and gpu/status (${String(err)})`;
      return;
    }
    tmp = await fs.mkdtemp(path.join(os.tmpdir(), "gpuwb-it-rgpu-"));
    const lib = path.join(tmp, "lib");
    try {
      await run(PYTHON, [
        path.join(extensionRoot, "server-python", "tests", "gpu", "fake_nvml.py"),
        "build",
        "--out",
        lib,
      ]);
      if (!existsSync(path.join(lib, "libnvidia-ml.so.1"))) throw new Error("no libnvidia-ml.so.1 was built");
    } catch (err) {
      why = `the stand-in libnvidia-ml could not be built (${String(err)})`;
      return;
    }
    vmScriptFile = path.join(tmp, "vm-nvml.script");
    const localScript = path.join(tmp, "local-nvml.script");
    await writeScript(vmScriptFile, vmScript());
    await writeScript(localScript, LOCAL_SCRIPT);
    // Its key is trusted up front here (remote.test.ts covers the prompt).
    try {
      vm = await TestVm.up(extensionRoot, {
        name: HOST,
        env: { LD_LIBRARY_PATH: lib, GPUWB_FAKE_NVML_SCRIPT: vmScriptFile },
        knownHosts: "trusted",
        dir: tmp,
      });
    } catch (err) {
      why = err instanceof Error ? err.message : String(err);
      return;
    }
    // This machine's backend reads another stand-in GPU (the extension host's environment).
    for (const k of ENV_KEYS) saved[k] = process.env[k];
    process.env.LD_LIBRARY_PATH = saved.LD_LIBRARY_PATH ? `${lib}:${saved.LD_LIBRARY_PATH}` : lib;
    process.env.GPUWB_FAKE_NVML_SCRIPT = localScript;
    envChanged = true;
    await vscode.workspace.getConfiguration("gpuWorkbench.gpu").update("intervalSeconds", 0.5, G);
    await a.restartBackend();
    await ready(a);
  });

  after(async function () {
    this.timeout(90_000);
    if (!a) return;
    for (const tab of gpuTabs()) await vscode.window.tabGroups.close(tab);
    await vm?.down();
    for (const d of [remoteDoc, localDoc]) {
      if (!d) continue;
      await a.ctx.bindings.unbind(d.uri);
      await vscode.workspace.fs.delete(d.uri).then(
        () => undefined,
        () => undefined,
      );
    }
    await vscode.commands.executeCommand("workbench.action.closeAllEditors");
    await vscode.workspace.getConfiguration("gpuWorkbench.gpu").update("intervalSeconds", undefined, G);
    if (envChanged) {
      for (const k of ENV_KEYS) {
        if (saved[k] === undefined) delete process.env[k];
        else process.env[k] = saved[k];
      }
      await a.restartBackend();
      await ready(a);
    }
  });

  beforeEach(function () {
    if (why) {
      console.log(`remote gpu: skipped: ${why}`);
      this.skip();
    }
  });

  async function openBound(name: string, target: string): Promise<vscode.TextDocument> {
    const folder = vscode.workspace.workspaceFolders?.[0]?.uri;
    assert.ok(folder, "a workspace folder");
    const uri = vscode.Uri.joinPath(folder, name);
    await vscode.workspace.fs.writeFile(uri, Buffer.from("# %%\nprint('hello')\n"));
    await a.ctx.bindings.setTarget(uri, target);
    const doc = await vscode.workspace.openTextDocument(uri);
    await vscode.window.showTextDocument(doc);
    return doc;
  }

  it("connects to the machine and this machine shows its own GPU", async () => {
    const local = await waitFor("this machine's stand-in GPU in the status bar", async () => {
      const s = await statusItem();
      return s.machine === "" && /^GPU 5% /.test(s.text) ? s : undefined;
    });
    assert.match(local.tooltip, new RegExp(`\\| 0 \\| ${LOCAL_GPU} \\| 5% \\|`));
    // "unknown" when the listing's reachability probe fails (it uses ~/.ssh/known_hosts);
    // connecting still works then.
    await waitFor(
      `${MACHINE} in GPU Machines with Connect`,
      async () =>
        (await rows(true)).find(
          (r) => r.kind === "vm" && r.provider === "ssh" && r.id === HOST && /\.connect\b/.test(r.contextValue),
        ),
      60_000,
    );
    const m = await vscode.commands.executeCommand<proto.RemoteMachine | undefined>(
      "gpuWorkbench.remote.connectMachine",
      MACHINE,
    );
    assert.equal(m?.state, "connected", JSON.stringify(m));
    // The GPU Machines view watches a connected machine's GPUs.
    await waitFor("the view's watch of the machine", async () => (await watchers()).includes(`machines@${MACHINE}`));
  });

  it("the status item shows the machine's GPU while a .py bound to it is active", async () => {
    remoteDoc = await openBound("remote_gpu_here.py", remoteTarget(MACHINE, ""));
    const s = await waitFor(
      "the machine's numbers in the status bar",
      async () => {
        const x = await statusItem();
        return x.text === VM_TEXT ? x : undefined;
      },
      60_000,
    ).catch(async (err) => {
      throw new Error(`${String(err)}; last: ${JSON.stringify(await statusItem())}`);
    });
    assert.equal(s.machine, MACHINE);
    assert.equal(s.level, "ok");
    assert.match(s.tooltip, new RegExp(`on ${HOST} \\(${MACHINE.replace("/", "\\/")}\\)`));
    assert.match(s.tooltip, new RegExp(`\\| 0 \\| ${VM_GPU} \\| 80% \\| 40\\/80 GiB \\| 66°C \\|`));
    assert.doesNotMatch(s.tooltip, new RegExp(LOCAL_GPU));
    assert.match(s.label, new RegExp(HOST));
    const w = await watchers();
    assert.ok(w.includes(`statusBar@${MACHINE}`), w.join(", "));
    assert.ok(!w.includes("statusBar"), `this machine is not watched for the item: ${w.join(", ")}`);
  });

  it("the GPU panel shows the focused machine's GPUs and history, and can pick this machine", async () => {
    await vscode.commands.executeCommand("gpuWorkbench.showGpuPanel");
    const st = await waitFor(
      "the machine's GPU in the panel",
      async () => {
        const x = await panelState();
        return x && x.status === "ready" && x.machine === MACHINE && x.charts.utilization.points >= 2 ? x : undefined;
      },
      60_000,
    ).catch(async (err) => {
      throw new Error(`${String(err)}; last: ${JSON.stringify(await panelState())}`);
    });
    assert.deepEqual(st.gpus, [`GPU 0 · ${VM_GPU}`]);
    assert.equal(st.heading, `GPU · ${HOST}`);
    assert.equal(st.charts.utilization.last[0], 80);
    assert.equal(st.charts.temperature.last[0], 66);
    assert.equal(st.info.Driver, "550.54.15");
    assert.equal(st.picker.selected, MACHINE);
    assert.deepEqual(
      st.picker.choices.map((c) => c.machine),
      ["", MACHINE],
    );
    assert.equal(gpuTabs()[0]?.label, `GPU · ${HOST}`);
    assert.ok((await watchers()).includes(`panel@${MACHINE}`));
    // The panel has the focus now (no active editor): the item keeps following the machine.
    assert.equal((await statusItem()).machine, MACHINE);

    // Pick this machine, as the panel's picker does.
    assert.equal(await vscode.commands.executeCommand(G_T.pickPanelMachine, ""), "");
    const local = await waitFor("this machine's GPU in the panel", async () => {
      const x = await panelState();
      return x && x.status === "ready" && x.gpus[0] === `GPU 0 · ${LOCAL_GPU}` ? x : undefined;
    });
    assert.notEqual(local.machine, MACHINE);
    assert.equal(local.picker.selected, "");
    assert.equal(local.charts.utilization.last[0], 5);
    assert.equal(gpuTabs()[0]?.label, "GPU · Local");
    const w = await watchers();
    assert.ok(w.includes("panel") && !w.includes(`panel@${MACHINE}`), w.join(", "));

    await vscode.commands.executeCommand(G_T.pickPanelMachine, MACHINE);
    await waitFor("the machine back in the panel", async () => {
      const x = await panelState();
      return x && x.status === "ready" && x.gpus[0] === `GPU 0 · ${VM_GPU}` ? x : undefined;
    });
    for (const tab of gpuTabs()) await vscode.window.tabGroups.close(tab);
    await waitFor("the panel's watch to end", async () => !(await watchers()).some((x) => x.startsWith("panel")));
  });

  it("the GPU Machines view lists the machine's GPU under its row", async () => {
    const gpu = await waitFor(
      "a GPU row under the machine",
      async () => childrenOf(await rows(true), "ssh", HOST).find((r) => r.kind === "gpu"),
      30_000,
    ).catch(async (err) => {
      throw new Error(`${String(err)}; rows: ${JSON.stringify(await rows())}`);
    });
    assert.equal(gpu.label, `GPU 0 · ${VM_GPU}`);
    assert.equal(gpu.description, "80% · 40/80 GiB · 66°C");
  });

  it("a GPU lost on the machine turns the item red and the notification names the machine", async () => {
    await vscode.window.showTextDocument(remoteDoc as vscode.TextDocument);
    await notifications(); // drain
    await writeScript(vmScriptFile, vmScript("lost=1"));
    const s = await waitFor(
      "the error colour",
      async () => {
        const x = await statusItem();
        return x.background === "statusBarItem.errorBackground" ? x : undefined;
      },
      60_000,
    );
    assert.equal(s.text, `$(error) ${HOST} · GPU lost`);
    const shown = await waitFor("the critical notification", async () => {
      const n = await notifications();
      return n.length ? n : undefined;
    });
    assert.equal(shown.length, 1, JSON.stringify(shown));
    assert.match(shown[0] ?? "", new RegExp(`^GPU health on ${HOST} is critical\\. GPU 0\\b`));
    await writeScript(vmScriptFile, vmScript());
    await waitFor("the machine's GPU back to normal", async () => (await statusItem()).text === VM_TEXT, 60_000);
  });

  it("an editor bound to this machine switches the item back, and back again", async () => {
    localDoc = await openBound("local_gpu_here.py", "local");
    const s = await waitFor("this machine's GPU in the status bar", async () => {
      const x = await statusItem();
      return x.machine === "" && /^GPU 5% /.test(x.text) ? x : undefined;
    });
    assert.doesNotMatch(s.text, new RegExp(HOST));
    assert.match(s.tooltip, new RegExp(`\\| 0 \\| ${LOCAL_GPU} \\| 5% \\|`));
    const w = await watchers();
    assert.ok(w.includes("statusBar") && !w.includes(`statusBar@${MACHINE}`), w.join(", "));
    // A GPU row of the machine (its command's argument) opens the panel on that machine.
    await vscode.commands.executeCommand("gpuWorkbench.showGpuPanel", { provider: "ssh", id: HOST });
    const st = await waitFor("the machine's GPU in the panel opened from its row", async () => {
      const x = await panelState();
      return x && x.status === "ready" && x.gpus[0] === `GPU 0 · ${VM_GPU}` ? x : undefined;
    });
    assert.equal(st.picker.selected, MACHINE);
    for (const tab of gpuTabs()) await vscode.window.tabGroups.close(tab);
    await vscode.window.showTextDocument(remoteDoc as vscode.TextDocument);
    await waitFor("the machine again", async () => (await statusItem()).text === VM_TEXT);
  });

  it("after a backend restart the machine's watches are sent again once it is connected", async () => {
    await a.restartBackend();
    await ready(a);
    // The new backend has no connections: this machine until the machine is connected again.
    await waitFor("this machine while not connected", async () => {
      const x = await statusItem();
      return x.machine === "" && /^GPU 5% /.test(x.text) ? x : undefined;
    });
    const m = await vscode.commands.executeCommand<proto.RemoteMachine | undefined>(
      "gpuWorkbench.remote.connectMachine",
      MACHINE,
    );
    assert.equal(m?.state, "connected", JSON.stringify(m));
    await waitFor("the machine's numbers again", async () => (await statusItem()).text === VM_TEXT, 60_000);
    // Samples stream again: a change on the machine reaches the item.
    await writeScript(vmScriptFile, vmScript().replace("util=80", "util=42"));
    await waitFor(
      "the machine's new utilization",
      async () => (await statusItem()).text === `${HOST} · GPU 42% · 40/80 GiB · 66°C`,
      60_000,
    );
    const status = await a.ctx.backend.client?.sendRequest<proto.GpuSnapshot>(proto.gpuStatus.method, {
      machine: MACHINE,
    });
    assert.equal(status?.machine, MACHINE);
    assert.equal(status?.sampling, true, "the machine's agent samples: the watches reached it");
    await writeScript(vmScriptFile, vmScript());
    await waitFor("the machine back to 80%", async () => (await statusItem()).text === VM_TEXT, 60_000);
  });

  it("disconnecting stops watching the machine and the item falls back to this machine", async () => {
    await vscode.commands.executeCommand("gpuWorkbench.remote.disconnectMachine", MACHINE);
    const s = await waitFor("this machine in the status bar", async () => {
      const x = await statusItem();
      return x.machine === "" && /^GPU 5% /.test(x.text) ? x : undefined;
    });
    assert.doesNotMatch(s.text, new RegExp(HOST));
    await waitFor("no watch of the machine", async () => !(await watchers()).some((x) => x.includes(MACHINE)));
    const children = childrenOf(await rows(true), "ssh", HOST);
    assert.ok(!children.some((r) => r.kind === "gpu"), JSON.stringify(children));
  });
});
