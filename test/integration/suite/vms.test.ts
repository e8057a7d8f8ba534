// GPU machines in a real VS Code: the GPU Machines view over moto's EC2 server and the
// Lambda/Linode contract servers (server-python/tests/vms/fake_clouds.py), create / stop /
// terminate through the real commands (prompts answered by a test-only script), the cost
// status item, and a planted API token that must never reach a log or trace file.
import * as assert from "node:assert/strict";
import { type ChildProcess, spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import * as fs from "node:fs/promises";
import * as net from "node:net";
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
    const motoUrl = `http://127.0.0.1:${motoPort}`;
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
