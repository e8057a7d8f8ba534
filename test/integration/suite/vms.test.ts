// GPU machines in a real VS Code: the GPU Machines view over moto's EC2 server and the
// Lambda/Linode contract servers (server-python/tests/vms/fake_clouds.py), create / stop /
// terminate through the real commands (prompts answered by a test-only script), the cost
// status item, and a planted API token that must never reach a log or trace file. Idle
// autostop end to end: the backend's watchdog (ticking fast, GPU utilization read through a
// stand-in `ssh` since moto's machines have no nvidia-smi, its clock moved with debug/clock)
// warns, "Keep Running" is answered, and the machine is then stopped on moto. Kernel rows.
import * as assert from "node:assert/strict";
import { type ChildProcess, execFile, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import * as fs from "node:fs/promises";
import * as net from "node:net";
import * as os from "node:os";
import * as path from "node:path";
import * as readline from "node:readline";
import * as vscode from "vscode";
import type { GpuWorkbenchApi } from "../../../src/extension";
import * as proto from "../../../src/protocol";
import type { VmStatusSnapshot } from "../../../src/vms/status";
import { VM_TEST_COMMANDS as T } from "../../../src/vms/testCommands";
import type { VmTreeRow } from "../../../src/vms/tree";
import { api, ready, waitFor } from "../helpers";

const PYTHON = process.env.GPUWB_TEST_PYTHON || "python3";
const TOKEN = `gpuwb-planted-${randomBytes(12).toString("hex")}`;

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

async function httpUp(url: string): Promise<boolean> {
  try {
    await fetch(url);
    return true;
  } catch {
    return false;
  }
}

function rows(refresh = true): Thenable<VmTreeRow[]> {
  return vscode.commands.executeCommand<VmTreeRow[]>(T.treeItems, refresh);
}

function script(...answers: (string | null)[]): Thenable<void> {
  return vscode.commands.executeCommand(T.script, answers);
}

function statusItem(): Thenable<VmStatusSnapshot> {
  return vscode.commands.executeCommand<VmStatusSnapshot>(T.statusItem);
}

/** An instance's state as moto's EC2 reports it (boto3's describe-instances). */
function motoState(endpoint: string, id: string): Promise<string> {
  const code = [
    "import boto3, sys",
    'ec2 = boto3.client("ec2", endpoint_url=sys.argv[1], region_name="us-east-1")',
    "r = ec2.describe_instances(InstanceIds=[sys.argv[2]])",
    'print(r["Reservations"][0]["Instances"][0]["State"]["Name"])',
  ].join("\n");
  return new Promise((resolve, reject) => {
    execFile(PYTHON, ["-c", code, endpoint, id], { env: process.env }, (err, stdout, stderr) =>
      err ? reject(new Error(`describe-instances: ${stderr || String(err)}`)) : resolve(stdout.trim()),
    );
  });
}

/**
 * A stand-in `ssh` for machines that do not exist (moto's): it answers the watchdog's
 * `nvidia-smi --query-gpu=utilization.gpu` with the number in `utilFile` and refuses anything else.
 */
async function fakeSshDir(utilFile: string): Promise<string> {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), "gpuwb-fake-ssh-"));
  const text = [
    "#!/bin/sh",
    'for a in "$@"; do',
    `  if [ "$a" = nvidia-smi ]; then cat '${utilFile}'; exit 0; fi`,
    "done",
    'echo "fake ssh: only nvidia-smi is answered" >&2',
    "exit 255",
    "",
  ].join("\n");
  await fs.writeFile(path.join(dir, "ssh"), text, { mode: 0o755 });
  return dir;
}

/** The order of a machine's children: GPUs, then kernels, then forwarded ports. */
function order(kind: VmTreeRow["kind"]): number {
  return kind === "gpu" ? 0 : kind === "kernel" ? 1 : 2;
}

async function filesUnder(dir: string, out: string[] = []): Promise<string[]> {
  let entries: import("node:fs").Dirent[];
  try {
    entries = await fs.readdir(dir, { withFileTypes: true });
  } catch {
    return out;
  }
  for (const e of entries) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) await filesUnder(p, out);
    else if (e.isFile()) out.push(p);
  }
  return out;
}

async function grep(files: string[], needle: string): Promise<string[]> {
  const hits: string[] = [];
  for (const f of files) {
    const st = await fs.stat(f).catch(() => undefined);
    if (!st || st.size > 64 * 1024 * 1024) continue;
    const buf = await fs.readFile(f).catch(() => undefined);
    if (buf?.includes(needle)) hits.push(f);
  }
  return hits;
}

describe("vms: GPU machines", function () {
  this.timeout(180_000);
  let a: GpuWorkbenchApi;
  let moto: ChildProcess | undefined;
  let fakes: ChildProcess | undefined;
  let fakeUrls: { lambda: string; linode: string } | undefined;
  let haveBackend = false;
  let haveMoto = false;
  let motoUrl = "";
  const cfg = () => vscode.workspace.getConfiguration("gpuWorkbench.vms");
  const extensionRoot = path.resolve(__dirname, "..", "..", "..", "..");

  before(async () => {
    a = await api();
    await ready(a);
    // The backend must serve vm/* (landing together with this suite).
    try {
      await a.ctx.backend.client?.sendRequest(proto.vmProviders.method, {});
      haveBackend = true;
    } catch (err) {
      haveBackend = false;
      console.log(`vms: the backend does not serve vm/providers (${String(err)}); backend tests are skipped`);
      if (process.env.GPUWB_VMS_DEBUG) await fs.writeFile(process.env.GPUWB_VMS_DEBUG, String(err));
      return;
    }
    // moto's EC2 server on loopback, with dummy AWS credentials in the backend's environment
    // (the extension host's: the backend is restarted to see them).
    const motoPort = await freePort();
    moto = spawn(PYTHON, ["-m", "moto.server", "-H", "127.0.0.1", "-p", String(motoPort)], { stdio: "ignore" });
    motoUrl = `http://127.0.0.1:${motoPort}`;
    haveMoto = await waitFor("moto", () => httpUp(`${motoUrl}/moto-api/`), 30_000).catch(() => false);
    Object.assign(process.env, {
      AWS_ACCESS_KEY_ID: "testing",
      AWS_SECRET_ACCESS_KEY: "testing",
      AWS_DEFAULT_REGION: "us-east-1",
      AWS_EC2_METADATA_DISABLED: "true",
    });
    const fakeScript = path.join(extensionRoot, "server-python", "tests", "vms", "fake_clouds.py");
    if (existsSync(fakeScript)) {
      fakes = spawn(PYTHON, [fakeScript, "--lambda-port", "0", "--linode-port", "0", "--token", TOKEN], {
        stdio: ["ignore", "pipe", "ignore"],
      });
      const out = fakes.stdout;
      if (out) {
        fakeUrls = await new Promise((resolve) => {
          const t = setTimeout(() => resolve(undefined), 20_000);
          readline.createInterface({ input: out }).once("line", (line) => {
            clearTimeout(t);
            try {
              resolve(JSON.parse(line));
            } catch {
              resolve(undefined);
            }
          });
        });
      }
    }
    const G = vscode.ConfigurationTarget.Global;
    if (haveMoto) {
      await cfg().update("aws.endpointUrl", motoUrl, G);
      await cfg().update("aws.regions", ["us-east-1"], G);
    }
    if (fakeUrls) {
      await cfg().update("lambda.apiUrl", fakeUrls.lambda, G);
      await cfg().update("linode.apiUrl", fakeUrls.linode, G);
    }
    await a.restartBackend();
    await ready(a);
  });

  after(async () => {
    await vscode.commands.executeCommand(T.script, null);
    const G = vscode.ConfigurationTarget.Global;
    for (const k of ["aws.endpointUrl", "aws.regions", "lambda.apiUrl", "linode.apiUrl", "dailyBudget"]) {
      await cfg().update(k, undefined, G);
    }
    await script("*");
    await vscode.commands.executeCommand("gpuWorkbench.vms.clearCredentials");
    await vscode.commands.executeCommand(T.script, null);
    moto?.kill();
    fakes?.kill();
  });

  it("the GPU Machines view lists every provider the backend knows", async function () {
    if (!haveBackend) this.skip();
    const r = await rows();
    const providers = r.filter((x) => x.kind === "provider").map((x) => x.provider);
    for (const p of ["aws", "lambda", "linode"]) assert.ok(providers.includes(p), `${p} in ${providers.join(", ")}`);
    // Lambda needs an API key: without one its node offers to set it.
    const lambdaInfo = r.filter((x) => x.provider === "lambda" && x.kind === "info");
    assert.ok(
      lambdaInfo.some((x) => x.label === "Set credentials…"),
      JSON.stringify(r.filter((x) => x.provider === "lambda")),
    );
  });

  it("a planted API token reaches the backend but never a log, trace or file", async function () {
    if (!haveBackend) this.skip();
    if (!fakeUrls) {
      console.log("vms: server-python/tests/vms/fake_clouds.py is missing or did not start; token test skipped");
      this.skip();
    }
    const client = a.ctx.backend.client;
    assert.ok(client);
    // Protocol traces with params, as "Developer: Set Log Level… Trace" turns them on.
    await client.setTrace(2 /* Trace.Verbose */ as never);
    a.ctx.log.channel.trace("vms test: trace on");
    await script("lambda", TOKEN);
    const saved = await vscode.commands.executeCommand<boolean>("gpuWorkbench.vms.setCredentials");
    assert.equal(saved, true);
    assert.equal(await vscode.commands.executeCommand(T.redact, `x ${TOKEN} y`), "x ••• y");
    // The token works: the fake Lambda server accepts it, so the provider lists without errors.
    const r = await waitFor("lambda listed with the token", async () => {
      const x = await rows();
      const lam = x.filter((y) => y.provider === "lambda");
      return lam.some((y) => y.kind === "info" && y.label === "Set credentials…") ? undefined : lam;
    });
    assert.ok(!r.some((y) => y.kind === "info" && /auth|401|credential/i.test(y.label)), JSON.stringify(r));

    // The log files VS Code writes for this window (output channels, traces).
    const logsRoot = path.dirname(path.dirname(a.ctx.extension.logUri.fsPath));
    const status = await a.backendStatus();
    await waitFor(
      "the protocol trace of vm/list to be written",
      async () => (await grep(await filesUnder(logsRoot), "vm/list")).length > 0,
      30_000,
    );
    // The trace of a request with credentials is there, with the value masked.
    const traced = await waitFor(
      "a traced request whose apiKey is masked",
      async () => {
        for (const f of await grep(await filesUnder(logsRoot), "apiKey")) {
          if (/"apiKey":\s*"•••"/.test(await fs.readFile(f, "utf8"))) return f;
        }
        return undefined;
      },
      30_000,
    );
    assert.ok(traced, `no redacted trace found under ${logsRoot}`);
    const leaks = await grep([...(await filesUnder(logsRoot)), ...(await filesUnder(status.dataDirectory))], TOKEN);
    assert.deepEqual(leaks, [], "the token is in these files");
    const settings = JSON.stringify(vscode.workspace.getConfiguration("gpuWorkbench"));
    assert.ok(!settings.includes(TOKEN), "the token is in settings");
    await client.setTrace(0 as never);
  });

  it("create, stop and terminate a machine on moto's EC2, with cost in the status bar", async function () {
    if (!haveBackend || !haveMoto) this.skip();
    const client = a.ctx.backend.client;
    assert.ok(client);
    const offers = await client.sendRequest<proto.VmOfferingsResult>(proto.vmOfferings.method, {
      provider: "aws",
      region: "us-east-1",
    });
    const offer = offers.offerings.find((o) => o.gpuCount > 0 && o.pricePerHour !== null) ?? offers.offerings[0];
    assert.ok(offer, "moto offers instance types");
    const name = `it-${Date.now().toString(36)}`;
    await vscode.commands.executeCommand(T.prompts);
    await script(
      "aws",
      "us-east-1",
      offer.instanceType,
      ...(offer.spotPricePerHour !== null ? ["on-demand"] : []),
      name,
      "Create",
    );
    const vm = await vscode.commands.executeCommand<proto.VmInfo | undefined>("gpuWorkbench.vms.create");
    const prompts = await vscode.commands.executeCommand<string[]>(T.prompts);
    assert.ok(vm, `created (prompts: ${prompts.join(" | ")})`);
    assert.ok(
      prompts.some((p) => p.startsWith("confirm: Create") && /\$[\d.]+\/h/.test(p)),
      `the hourly price was confirmed: ${prompts.join(" | ")}`,
    );
    const row = await waitFor("the new machine in the tree", async () =>
      (await rows()).find((x) => x.kind === "vm" && x.id === vm.id && x.state === "running"),
    );
    assert.equal(row.label, name);
    assert.match(row.description, new RegExp(`^${offer.instanceType} · .* · us-east-1 · \\$`));
    assert.match(row.contextValue, /\.stop\b/);

    const st = await waitFor("the cost status item", async () => {
      const s = await vscode.commands.executeCommand<VmStatusSnapshot>(T.statusItem);
      return s.visible && s.active === `aws/${vm.id}` ? s : undefined;
    });
    assert.match(st.text, new RegExp(`^\\$\\(vm\\) ${name} (\\$[\\d.]+|<\\$0\\.01|\\$\\?) · \\$[\\d.]+/h$`));

    // A budget that is already spent turns the item yellow.
    await cfg().update("dailyBudget", 0.000001, vscode.ConfigurationTarget.Global);
    const warned = await waitFor("the budget warning", async () => {
      const s = await vscode.commands.executeCommand<VmStatusSnapshot>(T.statusItem);
      return s.budgets.some((b) => b.level === "over" || b.level === "warning") ? s : undefined;
    }).catch((err) => {
      console.log(`vms: no budget level from vm/cost (${String(err)})`);
      return undefined;
    });
    if (warned) assert.equal(warned.warning, true);
    await cfg().update("dailyBudget", undefined, vscode.ConfigurationTarget.Global);

    // Idle autostop was sent for the running machine with the default 60 minutes.
    const keep = await vscode.commands.executeCommand<proto.VmAutostopInfo | undefined>(
      "gpuWorkbench.vms.keepRunning",
      "aws",
      vm.id,
    );
    assert.ok(keep, "vm/keepRunning answered");
    assert.equal(keep.idleMinutes, 60, JSON.stringify(keep));

    const stopped = await vscode.commands.executeCommand<proto.VmInfo | undefined>("gpuWorkbench.vms.stop", {
      provider: "aws",
      id: vm.id,
    });
    assert.ok(stopped && (stopped.state === "stopping" || stopped.state === "stopped"), JSON.stringify(stopped));
    await waitFor("stopped in the tree", async () =>
      (await rows()).find((x) => x.id === vm.id && x.state === "stopped" && /\.start\b/.test(x.contextValue)),
    );

    await vscode.commands.executeCommand(T.prompts);
    await script("Terminate");
    const gone = await vscode.commands.executeCommand<proto.VmInfo | undefined>("gpuWorkbench.vms.terminate", {
      provider: "aws",
      id: vm.id,
    });
    const confirmText = (await vscode.commands.executeCommand<string[]>(T.prompts)).join("\n");
    assert.match(confirmText, /has cost (\$[\d.]+|<\$0\.01|\$\?) so far/);
    assert.match(confirmText, /stops \$[\d.]+\/h of charges/);
    assert.ok(gone, "terminated");
    await waitFor("the machine to leave the tree", async () => !(await rows()).some((x) => x.id === vm.id));
  });

  it("a stopped Linode is still billed: stopping warns, terminating states the cost", async function () {
    if (!haveBackend || !fakeUrls) this.skip();
    const client = a.ctx.backend.client;
    assert.ok(client);
    // A scratch home: the wizard generates an SSH key when there is none.
    const home = await fs.mkdtemp(path.join(a.ctx.extension.globalStorageUri.fsPath, "..", "vms-home-"));
    const savedHome = process.env.HOME;
    process.env.HOME = home;
    try {
      await script("linode", TOKEN);
      assert.equal(await vscode.commands.executeCommand("gpuWorkbench.vms.setCredentials"), true);
      const offers = await client.sendRequest<proto.VmOfferingsResult>(proto.vmOfferings.method, {
        provider: "linode",
        credentials: { linode: { apiToken: TOKEN } },
      });
      const offer = offers.offerings.find((o) => o.gpuCount > 0 && o.regions.some((r) => r.available !== false));
      assert.ok(offer, JSON.stringify(offers));
      const region = offer.regions.find((r) => r.available !== false)?.name ?? "";
      await vscode.commands.executeCommand(T.prompts);
      await script("linode", region, offer.instanceType, "lin-it", "Generate Key", "Create");
      const vm = await vscode.commands.executeCommand<proto.VmInfo | undefined>("gpuWorkbench.vms.create");
      const prompts = (await vscode.commands.executeCommand<string[]>(T.prompts)).join(" | ");
      assert.ok(vm, `created (prompts: ${prompts})`);
      assert.match(prompts, /SSH key: .*id_ed25519\.pub/);
      await waitFor("the Linode in the tree", async () => (await rows()).find((x) => x.id === vm.id));
      await waitFor("the Linode running", async () => {
        const r = (await rows()).find((x) => x.id === vm.id);
        return r?.state === "running" ? r : undefined;
      });
      await script("Stop Anyway");
      const stopped = await vscode.commands.executeCommand<proto.VmInfo | undefined>("gpuWorkbench.vms.stop", {
        provider: "linode",
        id: vm.id,
      });
      const stopPrompt = (await vscode.commands.executeCommand<string[]>(T.prompts)).join(" | ");
      assert.match(stopPrompt, /still bills a stopped machine/);
      assert.ok(stopped, "stopped");
      await script("Terminate");
      assert.ok(
        await vscode.commands.executeCommand("gpuWorkbench.vms.terminate", { provider: "linode", id: vm.id }),
        "terminated",
      );
      await waitFor("the Linode to leave the tree", async () => !(await rows()).some((x) => x.id === vm.id));
    } finally {
      process.env.HOME = savedHome;
      await vscode.commands.executeCommand(T.script, null);
    }
  });

  it("idle autostop on moto: the warning's Keep Running postpones it, then the idle machine is stopped", async function () {
    if (!haveBackend || !haveMoto) this.skip();
    // The backend again, with a watchdog that looks 4 times a second, debug/clock, and the
    // stand-in ssh that reports the machine's GPU as 3% busy (under the 10% threshold).
    const utilFile = path.join(await fs.mkdtemp(path.join(os.tmpdir(), "gpuwb-util-")), "util");
    await fs.writeFile(utilFile, "3\n");
    const sshDir = await fakeSshDir(utilFile);
    const saved = {
      PATH: process.env.PATH,
      GPUWB_DEBUG_METHODS: process.env.GPUWB_DEBUG_METHODS,
      GPUWB_VM_AUTOSTOP_TICK_SECONDS: process.env.GPUWB_VM_AUTOSTOP_TICK_SECONDS,
    };
    Object.assign(process.env, {
      PATH: `${sshDir}${path.delimiter}${process.env.PATH ?? ""}`,
      GPUWB_DEBUG_METHODS: "1",
      GPUWB_VM_AUTOSTOP_TICK_SECONDS: "0.25",
    });
    const G = vscode.ConfigurationTarget.Global;
    let vm: proto.VmInfo | undefined;
    try {
      // No listing on a timer meanwhile: the view must learn of the stop from the backend.
      await cfg().update("refreshSeconds", 3600, G);
      await a.restartBackend();
      await ready(a);
      const client = a.ctx.backend.client;
      assert.ok(client);
      const offers = await client.sendRequest<proto.VmOfferingsResult>(proto.vmOfferings.method, {
        provider: "aws",
        region: "us-east-1",
      });
      const offer = offers.offerings.find((o) => o.gpuCount > 0 && o.pricePerHour !== null) ?? offers.offerings[0];
      assert.ok(offer, "moto offers instance types");
      const name = `idle-${Date.now().toString(36)}`;
      await vscode.commands.executeCommand(T.prompts);
      await script(
        "aws",
        "us-east-1",
        offer.instanceType,
        ...(offer.spotPricePerHour !== null ? ["on-demand"] : []),
        name,
        "Create",
      );
      vm = await vscode.commands.executeCommand<proto.VmInfo | undefined>("gpuWorkbench.vms.create");
      assert.ok(vm, `created (prompts: ${(await vscode.commands.executeCommand<string[]>(T.prompts)).join(" | ")})`);
      const id = vm.id;
      const key = `aws/${id}`;
      await waitFor("the new machine running in the tree", async () =>
        (await rows()).find((x) => x.kind === "vm" && x.id === id && x.state === "running"),
      );
      // The status item sent idle autostop with the default 60 minutes: nothing to warn about yet.
      const first = await waitFor("autostop sent with 60 minutes", async () => {
        const s = await statusItem();
        return s.autostop[key]?.idleMinutes === 60 ? s : undefined;
      });
      assert.equal(first.autostop[key]?.action, "stop", JSON.stringify(first.autostop[key]));
      assert.deepEqual(
        first.idleWarnings.filter((w) => w.id === id),
        [],
      );

      // A 1-minute window is under the 2-minute warning lead, so the warning comes at once;
      // the user answers "Keep Running".
      await vscode.commands.executeCommand(T.prompts);
      await script("Keep Running");
      await cfg().update("autostopMinutes", 1, G);
      const stopWarnings = (s: VmStatusSnapshot) => s.idleWarnings.filter((w) => w.id === id && w.action === "stop");
      const warned = await waitFor("the idle warning", async () => {
        const s = await statusItem();
        return stopWarnings(s).length ? s : undefined;
      });
      const w1 = stopWarnings(warned)[0];
      assert.ok(w1);
      assert.equal(w1.name, name);
      const kept = await waitFor("Keep Running to reach the backend", async () => {
        const info = (await statusItem()).autostop[key];
        return info?.idleMinutes === 1 && info.actAt !== null && info.actAt > w1.actAt ? info : undefined;
      });
      assert.equal(kept.action, "stop", JSON.stringify(kept));
      assert.ok(kept.idleSince !== null && kept.idleSince > w1.actAt - 60, JSON.stringify({ kept, w1 }));
      assert.equal(kept.actAt, (kept.idleSince ?? 0) + 60, JSON.stringify(kept));
      // Still idle, so the watchdog warns again, for the new deadline; nobody answers this one.
      const again = await waitFor("the second idle warning", async () => {
        const s = await statusItem();
        return stopWarnings(s).length >= 2 ? s : undefined;
      });
      assert.equal(stopWarnings(again)[1]?.actAt, kept.actAt);
      const prompts = await vscode.commands.executeCommand<string[]>(T.prompts);
      const notes = prompts.filter((p) => p.startsWith(`notify: ${name} will be stopped in `));
      assert.ok(notes.length >= 2, prompts.join(" | "));
      assert.match(notes[0] ?? "", / because it is idle\.$/);
      // Kept running: on moto, in the tree, and the status item names it as idle.
      assert.equal(await motoState(motoUrl, id), "running");
      assert.ok(
        (await rows()).some((x) => x.kind === "vm" && x.id === id && x.state === "running"),
        "running in the tree",
      );
      assert.ok(again.idle.includes(name), JSON.stringify(again.idle));
      assert.ok(!again.idleWarnings.some((w) => w.id === id && w.action === "stopped"), "not stopped yet");

      // Past the deadline (the backend's clock moved on by an hour): the machine is stopped.
      await client.sendRequest("debug/clock", { offsetSeconds: 3600 });
      const done = await waitFor("the backend to stop the idle machine", async () => {
        const s = await statusItem();
        return s.idleWarnings.find((w) => w.id === id && w.action === "stopped");
      });
      assert.equal(done.name, name);
      // The view follows on its own (no forced refresh): stopped, startable, not in the status bar.
      const row = await waitFor("stopped in the tree", async () =>
        (await rows(false)).find((x) => x.kind === "vm" && x.id === id && x.state === "stopped"),
      );
      assert.match(row.contextValue, /\.start\b/);
      assert.equal(await motoState(motoUrl, id), "stopped");
      const st = await waitFor("the status item without the stopped machine", async () => {
        const s = await statusItem();
        return s.active !== key && !s.idle.includes(name) ? s : undefined;
      });
      assert.equal(st.autostop[key], undefined, JSON.stringify(st.autostop));
      const told = await vscode.commands.executeCommand<string[]>(T.prompts);
      assert.ok(told.includes(`notice: ${name} was stopped after 1 idle minute.`), told.join(" | "));
    } finally {
      await a.ctx.backend.client?.sendRequest("debug/clock", { offsetSeconds: 0 }).then(undefined, () => undefined);
      await cfg().update("autostopMinutes", undefined, G);
      await cfg().update("refreshSeconds", undefined, G);
      await vscode.commands.executeCommand(T.script, null);
      if (vm) {
        await a.ctx.backend.client
          ?.sendRequest(proto.vmTerminate.method, { provider: "aws", id: vm.id })
          .then(undefined, (err) => console.log(`vms: could not terminate ${vm?.id}: ${String(err)}`));
      }
      for (const [k, v] of Object.entries(saved)) {
        if (v === undefined) delete process.env[k];
        else process.env[k] = v;
      }
      await a.restartBackend();
      await ready(a);
      await fs.rm(sshDir, { recursive: true, force: true });
      await fs.rm(path.dirname(utilFile), { recursive: true, force: true });
    }
  });

  it("a kernel shows under this machine with its state, and its row's commands act on it", async function () {
    if (!haveBackend || !vscode.workspace.isTrusted) this.skip();
    const kernelName = `vms-row-${Date.now().toString(36)}`;
    const k = await a.kernels.start(undefined, kernelName);
    const replies = new Map<string, string>();
    const sub = a.kernels.onDidReceiveEvent((p) => {
      if (p.kernelId === k.kernelId && p.event.type === "reply") replies.set(p.event.executionId, p.event.status);
    });
    try {
      const ran = await a.kernels.execute({ kernelId: k.kernelId, code: "x = 6 * 7" });
      await waitFor("the cell to run", () => replies.get(ran.executionId));
      const kernelRow = (r: VmTreeRow[]) => r.find((x) => x.kind === "kernel" && x.kernelId === k.kernelId);
      const idle = await waitFor("the kernel's row, idle", async () => {
        const r = await rows(false);
        const row = kernelRow(r);
        return row?.state === "idle" ? { r, row } : undefined;
      });
      // Under this machine, after its GPU rows.
      const machineAt = idle.r.findIndex((x) => x.kind === "vm" && x.provider === "local");
      const machine = idle.r[machineAt];
      assert.ok(machine, "this machine is in the tree");
      const at = idle.r.indexOf(idle.row);
      const machineDepth = machine.depth;
      const end = idle.r.findIndex((x, i) => i > machineAt && x.depth <= machineDepth);
      const children = idle.r.slice(machineAt + 1, end < 0 ? undefined : end);
      assert.ok(children.includes(idle.row), JSON.stringify(idle.r.slice(machineAt, at + 1)));
      assert.equal(idle.row.depth, machineDepth + 1);
      assert.equal(idle.row.machine, "local/local");
      assert.equal(idle.row.provider, "local");
      const kinds = children.filter((x) => x.depth === idle.row.depth).map((x) => x.kind);
      assert.deepEqual(
        kinds,
        [...kinds].sort((p, q) => order(p) - order(q)),
        "GPUs first, then kernels",
      );
      assert.equal(idle.row.label, kernelName);
      assert.match(
        idle.row.description,
        new RegExp(`^idle · Python ${k.pythonVersion.replace(/\./g, "\\.")} · pid ${k.pid}$`),
      );
      assert.equal(idle.row.contextValue, "gpuWorkbench.vmKernel.idle");
      // Busy while a cell runs; the row's Interrupt stops it.
      const sleep = await a.kernels.execute({ kernelId: k.kernelId, code: "import time\ntime.sleep(600)" });
      const busy = await waitFor("the kernel's row, busy", async () => {
        const row = kernelRow(await rows(false));
        return row?.state === "busy" ? row : undefined;
      });
      assert.match(busy.description, /^busy\b/);
      assert.equal(busy.contextValue, "gpuWorkbench.vmKernel.busy");
      const node = { kind: "kernel", kernel: { kernelId: k.kernelId } };
      const interrupted = await vscode.commands.executeCommand<proto.KernelInterruptResult>(
        "gpuWorkbench.vms.interruptKernel",
        node,
      );
      assert.equal(interrupted?.outcome, "interrupted");
      assert.equal(await waitFor("the sleeping cell's reply", () => replies.get(sleep.executionId)), "interrupted");
      await waitFor("the kernel's row, idle again", async () => kernelRow(await rows(false))?.state === "idle");
      // Shut Down from the row: the row goes.
      await vscode.commands.executeCommand("gpuWorkbench.vms.shutdownKernel", node);
      await waitFor("the kernel's row to go", async () => !kernelRow(await rows(false)));
    } finally {
      sub.dispose();
      await a.kernels.shutdown(k.kernelId).then(undefined, () => undefined);
    }
  });

  it("the managed ssh config lives in global storage, and ~/.ssh/config is untouched", async function () {
    if (!haveBackend) this.skip();
    const file = await vscode.commands.executeCommand<string>(T.sshConfigPath);
    assert.ok(file.startsWith(a.ctx.extension.globalStorageUri.fsPath), file);
    await waitFor("the managed ssh config", async () =>
      /^# Managed by GPU Workbench/.test(await fs.readFile(file, "utf8").catch(() => "")),
    );
    // Without consent nothing is added to the user's own config.
    const userConfig = path.join(process.env.HOME ?? "", ".ssh", "config");
    const text = existsSync(userConfig) ? await fs.readFile(userConfig, "utf8") : "";
    assert.ok(!text.includes(file), "the Include line was added without consent");
  });
});
