// "Open in Remote-SSH" from the GPU Machines view, end to end against the namespace "VM"
// (server-python/tests/remote/netns.py): with Remote-SSH's own `remote.SSH.configFile` pointed
// at a temporary file, the command asks once (answered by the test-only prompt queue), adds
// `Include <managed file>` at the top of that file and nothing else, and opens a window on the
// remote authority `ssh-remote+<alias>` (recorded by a dry run here; the Open Remote - SSH
// stand-in in test/fixtures/remote-ssh-standin only makes Remote-SSH count as installed).
// The proof that Remote-SSH would reach the machine: plain `ssh -F <that file> <alias>` does.
// The real ~/.ssh/config is never written (checked before and after).
import * as assert from "node:assert/strict";
import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import * as fs from "node:fs/promises";
import * as os from "node:os";
import * as path from "node:path";
import * as vscode from "vscode";
import type { GpuWorkbenchApi } from "../../../src/extension";
import { VM_TEST_COMMANDS as T } from "../../../src/vms/testCommands";
import type { VmTreeRow } from "../../../src/vms/tree";
import { api, ready, waitFor } from "../helpers";
import { type NetnsInfo, TestVm } from "../netnsHost";

const MACHINE = "ssh/nsrssh";
/** sshAlias() of a settings host named "nsrssh" (no alias of its own). */
const ALIAS = "gpuwb-ssh-nsrssh";
const STANDIN_ID = "jeanp413.open-remote-ssh";
const CONSENT = "confirm: Let Remote-SSH see your GPU machines?";
const USER_ENTRIES = [
  "# the user's own entries: they must stay exactly as they are",
  "Host mybox",
  "  HostName 192.0.2.7",
  "  User me",
  "",
].join("\n");

function runSsh(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile("ssh", args, { timeout: 60_000 }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === "number" ? err.code : 1) : 0;
      resolve({ code, stdout: String(stdout), stderr: String(stderr) });
    });
  });
}

async function mode(p: string): Promise<number> {
  return (await fs.stat(p)).mode & 0o777;
}

describe("remoteSsh: Open in Remote-SSH from GPU Machines", function () {
  this.timeout(180_000);
  let a: GpuWorkbenchApi;
  let vm: TestVm | undefined;
  let info: NetnsInfo | undefined;
  let why = "";
  let tmp = "";
  let userConfig = "";
  let managed = "";
  /** Remote authorities opened since the last call (recorded, not opened: dry run). */
  const opened = () => vscode.commands.executeCommand<string[]>(T.remoteWindows, true);
  const AUTHORITY = `ssh-remote+${ALIAS}`;
  const realConfig = path.join(os.homedir(), ".ssh", "config");
  let realBefore: string | undefined;
  const extensionRoot = path.resolve(__dirname, "..", "..", "..", "..");
  const G = vscode.ConfigurationTarget.Global;
  const prompts = () => vscode.commands.executeCommand<string[]>(T.prompts);
  const open = () => vscode.commands.executeCommand<boolean>("gpuWorkbench.vms.openRemote", MACHINE);
  const setConfigFile = (p: string | undefined) =>
    vscode.workspace.getConfiguration("remote.SSH").update("configFile", p, G);

  before(async function () {
    this.timeout(180_000);
    if (!vscode.workspace.isTrusted) {
      why = "the workspace is not trusted";
      return;
    }
    const standIn = vscode.extensions.getExtension(STANDIN_ID);
    if (!standIn) {
      why = `the Remote-SSH stand-in (${STANDIN_ID}) is not loaded; test/runner/run-integration.mjs installs it`;
      return;
    }
    await opened(); // dry run from here on: record the window instead of opening it
    a = await api();
    await ready(a);
    realBefore = existsSync(realConfig) ? await fs.readFile(realConfig, "utf8") : undefined;
    tmp = await fs.mkdtemp(path.join(os.tmpdir(), "gpuwb-rssh-it-"));
    userConfig = path.join(tmp, "ssh", "config");
    await fs.mkdir(path.dirname(userConfig), { mode: 0o700 });
    await fs.writeFile(userConfig, USER_ENTRIES, { mode: 0o600 });
    await setConfigFile(userConfig);
    try {
      vm = await TestVm.up(extensionRoot, { name: "nsrssh", knownHosts: "unset", dir: tmp });
    } catch (err) {
      why = err instanceof Error ? err.message : String(err);
      return;
    }
    info = vm.info;
    await a.restartBackend();
    await ready(a);
    managed = await vscode.commands.executeCommand<string>(T.sshConfigPath);
  });

  after(async function () {
    this.timeout(60_000);
    await vscode.commands.executeCommand(T.script, null);
    if (!a) return;
    await vscode.commands.executeCommand(T.remoteWindows, false);
    await setConfigFile(undefined);
    await vm?.down();
    if (tmp) await fs.rm(tmp, { recursive: true, force: true });
  });

  beforeEach(function () {
    if (why) {
      console.log(`remoteSsh: skipped: ${why}`);
      this.skip();
    }
  });

  afterEach(async () => {
    // Nothing may ever write the real ~/.ssh/config.
    const now = existsSync(realConfig) ? await fs.readFile(realConfig, "utf8") : undefined;
    assert.equal(now, realBefore, `${realConfig} changed`);
  });

  it("asks once, puts the Include at the top of remote.SSH.configFile, and the alias reaches the VM", async () => {
    let seen: VmTreeRow[] = [];
    await waitFor(
      `${MACHINE} in GPU Machines`,
      async () => {
        seen = await vscode.commands.executeCommand<VmTreeRow[]>(T.treeItems, true);
        return seen.find((r) => r.provider === "ssh" && r.id === "nsrssh");
      },
      60_000,
    ).catch((err) => {
      throw new Error(`${String(err)}; ssh rows: ${JSON.stringify(seen.filter((r) => r.provider === "ssh"))}`);
    });
    await prompts(); // forget earlier prompts
    await vscode.commands.executeCommand(T.script, ["Add Include Line"]);
    assert.equal(await open(), true, "Open in Remote-SSH reports success");

    const asked = (await prompts()).filter((p) => p.startsWith(CONSENT));
    assert.equal(asked.length, 1, "the consent was asked exactly once");
    assert.ok(asked[0]?.includes(userConfig), `the consent names the file it changes: ${asked[0]}`);
    assert.ok(asked[0]?.includes(`Include ${managed}`), asked[0]);

    assert.equal(await fs.readFile(userConfig, "utf8"), `Include ${managed}\n\n${USER_ENTRIES}`);
    assert.equal(await mode(userConfig), 0o600, "an existing file keeps its mode");
    assert.match(await fs.readFile(managed, "utf8"), new RegExp(`^Host ${ALIAS}$`, "m"));
    assert.deepEqual(await opened(), [AUTHORITY], "a window on the machine's alias");

    // What Remote-SSH would do with that file: ssh reads it, follows the Include, reaches the VM.
    assert.ok(info);
    const r = await runSsh([
      "-F",
      userConfig,
      "-o",
      "BatchMode=yes",
      "-o",
      `UserKnownHostsFile=${info.knownHosts}`,
      "-o",
      "GlobalKnownHostsFile=/dev/null",
      "-o",
      "StrictHostKeyChecking=yes",
      "-o",
      "ConnectTimeout=20",
      ALIAS,
      "echo",
      "ok",
    ]);
    assert.equal(r.code, 0, `ssh -F ${userConfig} ${ALIAS} failed: ${r.stderr}`);
    assert.equal(r.stdout.trim(), "ok");
  });

  it("a second Open neither asks again nor adds a second Include", async () => {
    const before = await fs.readFile(userConfig, "utf8");
    assert.ok(before.startsWith(`Include ${managed}\n`), before);
    await prompts();
    // An answer is queued anyway: a second consent prompt would take it and show in the log.
    await vscode.commands.executeCommand(T.script, ["Add Include Line"]);
    try {
      assert.equal(await open(), true);
      assert.deepEqual(
        (await prompts()).filter((p) => p.startsWith(CONSENT)),
        [],
      );
    } finally {
      await vscode.commands.executeCommand(T.script, null);
    }
    assert.equal(await fs.readFile(userConfig, "utf8"), before);
    assert.equal(before.split(managed).length - 1, 1, "one Include of the managed file");
    assert.deepEqual(await opened(), [AUTHORITY]);
  });

  it("declined: nothing is written and nothing opens; accepted: a missing file is created 0600 in a 0700 folder", async () => {
    const fresh = path.join(tmp, "made", "by-open", "config");
    await setConfigFile(fresh);
    try {
      await prompts();
      await vscode.commands.executeCommand(T.script, [null]);
      assert.equal(await open(), false, "declined: not opened");
      assert.ok(!existsSync(fresh), "declined: the file was not created");
      assert.ok(!existsSync(path.dirname(fresh)), "declined: the folder was not created");
      assert.deepEqual(await opened(), [], "declined: no window");
      const asked = (await prompts()).filter((p) => p.startsWith(CONSENT));
      assert.equal(asked.length, 1);
      assert.ok(asked[0]?.includes(fresh), asked[0]);

      await vscode.commands.executeCommand(T.script, ["Add Include Line"]);
      assert.equal(await open(), true);
      assert.equal(await fs.readFile(fresh, "utf8"), `Include ${managed}\n`);
      assert.equal(await mode(fresh), 0o600);
      assert.equal(await mode(path.dirname(fresh)), 0o700);
      assert.equal(await mode(path.dirname(path.dirname(fresh))), 0o700);
      assert.deepEqual(await opened(), [AUTHORITY]);
      // The earlier file is left as it was.
      assert.equal(await fs.readFile(userConfig, "utf8"), `Include ${managed}\n\n${USER_ENTRIES}`);
    } finally {
      await vscode.commands.executeCommand(T.script, null);
      await setConfigFile(userConfig);
    }
  });
});
