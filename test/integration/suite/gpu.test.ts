// GPU health in a real VS Code: the status item, the GPU panel's charts, the critical
// notification and the health check report, over the stand-in libnvidia-ml
// (server-python/tests/gpu/fake_nvml.py) whose numbers a script file sets. The backend is
// restarted with LD_LIBRARY_PATH and GPUWB_FAKE_NVML_SCRIPT in its environment (the
// extension host's), and restarted again without them at the end.
import * as assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import * as fs from "node:fs/promises";
import * as os from "node:os";
import * as path from "node:path";
import * as vscode from "vscode";
import type { GpuWorkbenchApi } from "../../../src/extension";
import type { GpuCheckRenderedState, GpuPanelRenderedState } from "../../../src/gpu/messages";
import type { GpuStatusSnapshot } from "../../../src/gpu/status";
import { GPU_TEST_COMMANDS as T } from "../../../src/gpu/testCommands";
import * as proto from "../../../src/protocol";
import { VM_TEST_COMMANDS } from "../../../src/vms/testCommands";
import type { VmTreeRow } from "../../../src/vms/tree";
import { api, processAlive, ready, waitFor } from "../helpers";

const PYTHON = process.env.GPUWB_TEST_PYTHON || "python3";
const ENV_KEYS = ["LD_LIBRARY_PATH", "GPUWB_FAKE_NVML_SCRIPT"] as const;
const EXPECTED_TEXT = "GPU 87% · 61/80 GiB · 71°C";

function gpuLine(over: Record<string, string | number> = {}): string {
  const v: Record<string, string | number> = {
    uuid: "GPU-0000",
    util: 87,
    memutil: 40,
    mem_used: 65498251264,
    mem_total: 85899345920,
    temp: 71,
    slowdown: 90,
    power_mw: 350000,
    limit_mw: 700000,
    reasons: "0x0",
    ecc_cv: 0,
    ecc_uv: 0,
    ecc_ca: 0,
    ecc_ua: 0,
    remap_corr: 0,
    remap_unc: 0,
    remap_pending: 0,
    remap_failure: 0,
    pcie_gen: 5,
    pcie_maxgen: 5,
    pcie_width: 16,
    pcie_maxwidth: 16,
    persistence: 1,
    lost: 0,
    ...over,
  };
  return `gpu 0 ${Object.entries(v)
    .map(([k, x]) => `${k}=${x}`)
    .join(" ")}`;
}

function scriptText(over: Record<string, string | number> = {}): string {
  return [
    "driver 550.54.15",
    "cuda 12040",
    gpuLine(over),
    "name 0 NVIDIA H100 80GB HBM3",
    "proc 0 4242 8589934592",
    "",
  ].join("\n");
}

function run(cmd: string, args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(cmd, args, { timeout: 120_000 }, (err, stdout, stderr) =>
      err ? reject(new Error(`${cmd} ${args.join(" ")}: ${err.message}\n${stderr}`)) : resolve(stdout),
    );
  });
}

/** By method name: the test bundle's RequestType objects are not the client's. */
async function gpuStatus(a: GpuWorkbenchApi): Promise<proto.GpuSnapshot | undefined> {
  return a.ctx.backend.client?.sendRequest<proto.GpuSnapshot>(proto.gpuStatus.method, {});
}

const statusItem = () => vscode.commands.executeCommand<GpuStatusSnapshot>(T.statusItem);
const panelState = () => vscode.commands.executeCommand<GpuPanelRenderedState | undefined>(T.panelState);
const watchers = () => vscode.commands.executeCommand<string[]>(T.watchers);
const notifications = () => vscode.commands.executeCommand<string[]>(T.notifications);

describe("gpu: GPU health", function () {
  this.timeout(180_000);
  let a: GpuWorkbenchApi;
  let haveBackend = false;
  let fakeDir: string | undefined;
  let scriptFile = "";
  const saved: Partial<Record<(typeof ENV_KEYS)[number], string>> = {};
  const extensionRoot = path.resolve(__dirname, "..", "..", "..", "..");
  const cfg = () => vscode.workspace.getConfiguration("gpuWorkbench.gpu");
  const G = vscode.ConfigurationTarget.Global;

  /** Replace the script atomically (a temporary file renamed over), as the library expects. */
  async function writeScript(text: string): Promise<void> {
    const tmp = `${scriptFile}.${process.pid}.tmp`;
    await fs.writeFile(tmp, text);
    await fs.rename(tmp, scriptFile);
  }

  before(async () => {
    a = await api();
    await ready(a);
    for (const k of ENV_KEYS) saved[k] = process.env[k];
    try {
      await gpuStatus(a);
      haveBackend = true;
    } catch (err) {
      console.log(`gpu: the backend does not serve gpu/status (${String(err)}); GPU tests are skipped`);
      if (process.env.GPUWB_GPU_DEBUG) await fs.writeFile(process.env.GPUWB_GPU_DEBUG, String(err));
      return;
    }
    const tmp = await fs.mkdtemp(path.join(os.tmpdir(), "gpuwb-it-gpu-"));
    scriptFile = path.join(tmp, "nvml.script");
    const builder = path.join(extensionRoot, "server-python", "tests", "gpu", "fake_nvml.py");
    if (existsSync(builder)) {
      try {
        const out = path.join(tmp, "lib");
        await run(PYTHON, [builder, "build", "--out", out]);
        if (existsSync(path.join(out, "libnvidia-ml.so.1"))) fakeDir = out;
      } catch (err) {
        console.log(`gpu: could not build the stand-in libnvidia-ml (${String(err)}); its tests are skipped`);
      }
    } else {
      console.log("gpu: server-python/tests/gpu/fake_nvml.py is missing; the stand-in tests are skipped");
    }
  });

  after(async () => {
    for (const p of vscode.window.tabGroups.all.flatMap((g) => g.tabs)) {
      const input = p.input as { viewType?: string } | undefined;
      if (input?.viewType?.includes("gpuWorkbench.gpu")) await vscode.window.tabGroups.close(p);
    }
    for (const k of ENV_KEYS) {
      if (saved[k] === undefined) delete process.env[k];
      else process.env[k] = saved[k];
    }
    await cfg().update("intervalSeconds", undefined, G);
    await cfg().update("statusBar", undefined, G);
    if (haveBackend && fakeDir) {
      await a.restartBackend();
      await ready(a);
    }
  });

  it("without a GPU the status item is a calm “No GPU” with the reason", async function () {
    if (!haveBackend) this.skip();
    const snap = await gpuStatus(a);
    if (snap && snap.source !== "none" && snap.gpus.length) {
      console.log("gpu: this machine has a GPU; the no-GPU test is skipped");
      this.skip();
    }
    const s = await waitFor("the No GPU item", async () => {
      const x = await statusItem();
      return x.visible && x.text.includes("No GPU") ? x : undefined;
    });
    assert.equal(s.text, "$(circuit-board) No GPU");
    assert.equal(s.background, undefined, "no colour without a GPU");
    assert.equal(s.command, "gpuWorkbench.showGpuPanel");
    assert.ok(s.tooltip.length > 20, s.tooltip);
    assert.deepEqual(await watchers(), ["statusBar"]);
  });

  it("the status item shows the scripted GPU", async function () {
    if (!haveBackend || !fakeDir) this.skip();
    await writeScript(scriptText());
    process.env.LD_LIBRARY_PATH = saved.LD_LIBRARY_PATH ? `${fakeDir}:${saved.LD_LIBRARY_PATH}` : fakeDir;
    process.env.GPUWB_FAKE_NVML_SCRIPT = scriptFile;
    await cfg().update("intervalSeconds", 0.5, G);
    await a.restartBackend();
    await ready(a);
    const s = await waitFor(
      "the scripted numbers in the status bar",
      async () => {
        const x = await statusItem();
        return x.text === EXPECTED_TEXT ? x : undefined;
      },
      60_000,
    ).catch(async (err) => {
      throw new Error(`${String(err)}; last: ${JSON.stringify(await statusItem())}`);
    });
    assert.equal(s.background, undefined);
    assert.equal(s.level, "ok");
    assert.match(s.tooltip, /\| 0 \| NVIDIA H100 80GB HBM3 \| 87% \| 61\/80 GiB \| 71°C \| 350\/700 W \| OK \|/);
    assert.match(s.tooltip, /driver 550\.54\.15/);
    const status = await gpuStatus(a);
    assert.equal(status?.sampling, true, "the status item watches, so the backend samples");
    assert.equal(status?.intervalSeconds, 0.5);
  });

  it("the GPU Machines view lists this machine's GPU under it", async function () {
    if (!haveBackend || !fakeDir) this.skip();
    const rows = await waitFor(
      "a GPU row under this machine",
      async () => {
        const r = await vscode.commands.executeCommand<VmTreeRow[]>(VM_TEST_COMMANDS.treeItems, true);
        return r?.some((x) => x.kind === "gpu") ? r : undefined;
      },
      30_000,
    );
    const local = rows.findIndex((r) => r.kind === "vm" && r.provider === "local");
    assert.ok(local >= 0, JSON.stringify(rows));
    const gpu = rows[local + 1];
    assert.equal(gpu?.kind, "gpu", JSON.stringify(rows));
    assert.equal(gpu.depth, (rows[local]?.depth ?? -1) + 1);
    assert.equal(gpu.label, "GPU 0 · NVIDIA H100 80GB HBM3");
    assert.equal(gpu.description, "87% · 61/80 GiB · 71°C");
  });

  it("a hardware slowdown turns it yellow with the reason in the tooltip", async function () {
    if (!haveBackend || !fakeDir) this.skip();
    await writeScript(scriptText({ reasons: "0x8" }));
    const s = await waitFor("the warning colour", async () => {
      const x = await statusItem();
      return x.background === "statusBarItem.warningBackground" ? x : undefined;
    });
    assert.equal(s.level, "warn");
    assert.match(s.tooltip, /\$\(warning\) GPU 0\b.*slow/i);
    assert.match(s.tooltip, /\| Warning \|/);
  });

  it("the GPU panel charts the samples and lists processes, reasons and static info", async function () {
    if (!haveBackend || !fakeDir) this.skip();
    await vscode.commands.executeCommand("gpuWorkbench.showGpuPanel");
    await waitFor("the panel to watch", async () => (await watchers()).includes("panel"));
    const st = await waitFor(
      "charts with points",
      async () => {
        const x = await panelState();
        return x && x.status === "ready" && x.charts.utilization.points >= 3 ? x : undefined;
      },
      60_000,
    );
    for (const m of ["utilization", "memory", "power", "temperature"] as const) {
      assert.equal(st.charts[m].datasets, 1, `${m}: one dataset per GPU`);
      assert.ok(st.charts[m].points >= 3, `${m}: ${st.charts[m].points} points`);
    }
    assert.equal(st.charts.utilization.last[0], 87);
    assert.equal(st.charts.temperature.last[0], 71);
    assert.equal(st.charts.power.last[0], 350);
    assert.ok(Math.abs((st.charts.memory.last[0] ?? 0) - 61) < 0.1, String(st.charts.memory.last[0]));
    assert.deepEqual(st.gpus, ["GPU 0 · NVIDIA H100 80GB HBM3"]);
    assert.equal(st.verdict, "Warning");
    assert.ok(
      st.processes.some((p) => p.pid === 4242 && p.gpu === 0 && p.memory === "8 GiB"),
      JSON.stringify(st.processes),
    );
    assert.ok(
      st.reasons.some((r) => /GPU 0\b.*slow/i.test(r)),
      JSON.stringify(st.reasons),
    );
    assert.equal(st.info.Driver, "550.54.15");
    assert.match(st.info.CUDA ?? "", /12\.4/);
    assert.equal(st.info["GPU 0 PCIe"], "Gen 5 x16 (max Gen 5 x16)");
    assert.equal(st.info["GPU 0 Persistence mode"], "on");
    assert.deepEqual(await watchers(), ["panel", "statusBar"]);
  });

  it("a lost GPU turns it red and notifies once", async function () {
    if (!haveBackend || !fakeDir) this.skip();
    await notifications(); // drain
    await writeScript(scriptText({ lost: 1 }));
    const s = await waitFor("the error colour", async () => {
      const x = await statusItem();
      return x.background === "statusBarItem.errorBackground" ? x : undefined;
    });
    assert.equal(s.level, "error");
    const shown = await waitFor("the critical notification", async () => {
      const n = await notifications();
      return n.length ? n : undefined;
    });
    assert.equal(shown.length, 1, JSON.stringify(shown));
    assert.match(shown[0] ?? "", /GPU 0|critical/i);
    // Several more samples while it stays lost: no second notification.
    const time0 = (await gpuStatus(a))?.time ?? 0;
    await waitFor("three more samples", async () => {
      const t = (await gpuStatus(a))?.time ?? 0;
      return t - time0 >= 1.5;
    });
    assert.deepEqual(await notifications(), []);
    await writeScript(scriptText());
    await waitFor("the GPU back to normal", async () => (await statusItem()).text === EXPECTED_TEXT);
  });

  it("Check GPU Health shows a report with skipped benchmarks and exports it", async function () {
    if (!haveBackend || !fakeDir) this.skip();
    const report = await vscode.commands.executeCommand<proto.GpuCheckReport | undefined>(
      "gpuWorkbench.checkGpuHealth",
    );
    assert.ok(report, "the check returned a report");
    const st = await waitFor("the report view", async () => {
      const x = await vscode.commands.executeCommand<GpuCheckRenderedState | undefined>(T.checkState);
      return x && x.status === "ready" && x.rows.length ? x : undefined;
    });
    assert.equal(st.rows.length, report.rows.length);
    for (const r of st.rows) {
      assert.ok(["pass", "warn", "fail", "skip", "info"].includes(r.status), JSON.stringify(r));
      assert.ok(r.color, `row ${r.id} is coloured`);
    }
    // The image's python3 has no torch: the benchmarks are skipped, not failed.
    assert.ok(
      st.rows.some((r) => r.status === "skip"),
      JSON.stringify(st.rows),
    );
    const pass = st.rows.find((r) => r.status === "pass");
    const skip = st.rows.find((r) => r.status === "skip");
    if (pass && skip) assert.notEqual(pass.color, skip.color, "statuses have different colours");
    assert.equal(st.verdict?.toLowerCase(), report.verdict);
    const md = await vscode.commands.executeCommand<string>(T.exportText);
    assert.ok(md?.includes(report.markdown), "the export is the report's Markdown");
    await vscode.commands.executeCommand("gpuWorkbench.exportGpuCheck");
    const doc = await waitFor("the exported document", () =>
      vscode.window.activeTextEditor?.document.languageId === "markdown"
        ? vscode.window.activeTextEditor.document
        : undefined,
    );
    assert.equal(doc.isUntitled, true);
    assert.ok(doc.getText().includes(report.markdown.trim().split("\n")[0] ?? ""));
    await vscode.commands.executeCommand("workbench.action.revertAndCloseActiveEditor");
  });

  it("cancelling the check cancels the request, and the backend stops its benchmark", async function () {
    if (!haveBackend || !fakeDir) this.skip();
    // A "Python" for the benchmarks that only records its pid and sleeps: the check waits
    // on it until the cancellation reaches the backend, which kills it.
    const dir = path.dirname(scriptFile);
    const pidFile = path.join(dir, "bench.pid");
    const slow = path.join(dir, "slow-python");
    await fs.writeFile(slow, `#!/bin/sh\necho $$ > '${pidFile}'\nexec sleep 120\n`, { mode: 0o755 });
    const kernels = vscode.workspace.getConfiguration("gpuWorkbench.kernels");
    await kernels.update("pythonPath", slow, G);
    try {
      const t0 = Date.now();
      const check = vscode.commands.executeCommand<proto.GpuCheckReport | undefined>("gpuWorkbench.checkGpuHealth");
      const pid = await waitFor("the benchmark process", async () => {
        const text = await fs.readFile(pidFile, "utf8").catch(() => "");
        return Number(text.trim()) || undefined;
      });
      assert.ok(processAlive(pid));
      assert.equal(await vscode.commands.executeCommand(T.cancelCheck), true);
      assert.equal(await check, undefined, "a cancelled check gives no report");
      assert.ok(Date.now() - t0 < 60_000);
      await waitFor("the backend to kill the benchmark", () => !processAlive(pid), 15_000);
      // The report view keeps the previous report.
      const st = await vscode.commands.executeCommand<GpuCheckRenderedState | undefined>(T.checkState);
      assert.equal(st?.status, "ready");
      assert.ok(st?.rows.length);
    } finally {
      await kernels.update("pythonPath", undefined, G);
    }
  });

  it("watches end with the panel and the setting, and are sent again after a restart", async function () {
    if (!haveBackend || !fakeDir) this.skip();
    for (const tab of vscode.window.tabGroups.all.flatMap((g) => g.tabs)) {
      const input = tab.input as { viewType?: string } | undefined;
      if (input?.viewType?.includes("gpuWorkbench.gpuPanel")) await vscode.window.tabGroups.close(tab);
    }
    await waitFor("the panel's watch to end", async () => !(await watchers()).includes("panel"));
    await cfg().update("statusBar", false, G);
    await waitFor("no watchers", async () => (await watchers()).length === 0);
    assert.equal((await statusItem()).visible, false);
    await waitFor("the backend to stop sampling", async () => {
      const s = await gpuStatus(a);
      return s?.sampling === false;
    });
    await cfg().update("statusBar", true, G);
    await waitFor("the item back", async () => (await statusItem()).text === EXPECTED_TEXT);
    const pid = a.backendPid();
    await a.restartBackend();
    await ready(a);
    assert.notEqual(a.backendPid(), pid);
    await waitFor("sampling again after the restart", async () => {
      const s = await gpuStatus(a);
      return s?.sampling === true;
    });
    await waitFor("the item after the restart", async () => (await statusItem()).text === EXPECTED_TEXT);
  });
});
