// Checkpoints on a remote machine in a real VS Code, against a real sshd in a network
// namespace (server-python/tests/remote/netns.py; the "VM" shares this disk, so a file
// written here is at the same path there). Connect the machine, browse a folder on it with
// "Browse Checkpoints on Machine…" (its prompts answered by the test-only prompt queue),
// find the root and its entry in the Checkpoints view, open the entry and check that the
// inspector shows what local inspection of the same file shows, read on the machine.
import * as assert from "node:assert/strict";
import * as fs from "node:fs/promises";
import * as os from "node:os";
import * as path from "node:path";
import * as vscode from "vscode";
import type { InspectorRenderedState } from "../../../src/checkpoints/messages";
import type { RemoteTreeRow } from "../../../src/checkpoints/remoteTree";
import { CHECKPOINT_TEST_COMMANDS as C } from "../../../src/checkpoints/testCommands";
import type { GpuWorkbenchApi } from "../../../src/extension";
import type * as proto from "../../../src/protocol";
import { VM_TEST_COMMANDS as T } from "../../../src/vms/testCommands";
import type { VmTreeRow } from "../../../src/vms/tree";
import { api, ready, waitFor } from "../helpers";
import { TestVm } from "../netnsHost";

const HOST = "nsckpt";
const MACHINE = `ssh/${HOST}`;

/** A safetensors file: 8-byte little-endian header length, the JSON header, F32 data. */
function safetensors(tensors: { name: string; shape: number[] }[]): Buffer {
  const header: Record<string, unknown> = { __metadata__: { format: "pt", step: "7" } };
  let offset = 0;
  for (const t of tensors) {
    const n = t.shape.reduce((a, b) => a * b, 1) * 4;
    header[t.name] = { dtype: "F32", shape: t.shape, data_offsets: [offset, offset + n] };
    offset += n;
  }
  let json = JSON.stringify(header);
  json += " ".repeat((8 - (json.length % 8)) % 8);
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(Buffer.byteLength(json)));
  const data = Buffer.alloc(offset);
  for (let i = 0; i + 4 <= offset; i += 4) data.writeFloatLE(i / 4 - 10, i);
  return Buffer.concat([len, Buffer.from(json), data]);
}

function editorState(p: string): Thenable<InspectorRenderedState | undefined> {
  return vscode.commands.executeCommand<InspectorRenderedState | undefined>(C.editorState, p);
}

async function inspectorWhen(
  key: string,
  want: (s: InspectorRenderedState) => boolean,
  timeoutMs = 60_000,
): Promise<InspectorRenderedState> {
  let last: InspectorRenderedState | undefined;
  try {
    return await waitFor(
      `the inspector of ${key}`,
      async () => {
        last = await editorState(key);
        return last && want(last) ? last : undefined;
      },
      timeoutMs,
    );
  } catch (err) {
    throw new Error(`${String(err)}; it shows ${JSON.stringify({ ...last, metadataText: undefined })?.slice(0, 2000)}`);
  }
}

const settled = (s: InspectorRenderedState) => s.status === "ready" || s.status === "error";

function remoteTree(): Thenable<RemoteTreeRow[]> {
  return vscode.commands.executeCommand<RemoteTreeRow[]>(C.remoteTree);
}

describe("remote checkpoints: browsing and inspecting on a machine", function () {
  this.timeout(240_000);
  let a: GpuWorkbenchApi;
  let vm: TestVm | undefined;
  let why = "";
  let dir = "";
  let file = "";
  const extensionRoot = path.resolve(__dirname, "..", "..", "..", "..");

  before(async function () {
    this.timeout(180_000);
    if (!vscode.workspace.isTrusted) {
      why = "the workspace is not trusted";
      return;
    }
    a = await api();
    await ready(a);
    // The checkpoint, outside the workspace: the "VM" shares this disk.
    dir = await fs.mkdtemp(path.join(os.tmpdir(), "gpuwb-remote-ckpt-"));
    await fs.mkdir(path.join(dir, "run1"));
    file = path.join(dir, "run1", "model.safetensors");
    await fs.writeFile(
      file,
      safetensors([
        { name: "encoder.weight", shape: [8, 4] },
        { name: "encoder.bias", shape: [8] },
        { name: "head.weight", shape: [3, 8] },
      ]),
    );
    await fs.writeFile(path.join(dir, "notes.txt"), "not a checkpoint");
    try {
      vm = await TestVm.up(extensionRoot, { name: HOST, knownHosts: "empty", dir });
    } catch (err) {
      why = err instanceof Error ? err.message : String(err);
      return;
    }
    await a.restartBackend();
    await ready(a);
  });

  after(async function () {
    this.timeout(60_000);
    await vscode.commands.executeCommand(T.script, null);
    await vscode.commands.executeCommand("workbench.action.closeAllEditors");
    if (dir) {
      await vscode.commands.executeCommand("gpuWorkbench.checkpoints.removeRemoteRoot", {
        machine: MACHINE,
        folder: dir,
      });
    }
    await vm?.down();
    if (dir) await fs.rm(dir, { recursive: true, force: true });
  });

  beforeEach(function () {
    if (why) {
      console.log(`remote checkpoints: skipped: ${why}`);
      this.skip();
    }
  });

  it("browses a folder on the machine and inspects a checkpoint there, as locally", async () => {
    // The machine is listed (the SSH hosts provider) before it can be chosen.
    await waitFor(
      `${MACHINE} in GPU Machines`,
      async () =>
        (await vscode.commands.executeCommand<VmTreeRow[]>(T.treeItems, true)).find(
          (r) => r.provider === "ssh" && r.id === HOST,
        ),
      60_000,
    );
    await vscode.commands.executeCommand(T.prompts); // forget earlier prompts
    // Not connected yet: the command offers machines that can connect, connects the one
    // chosen (trusting its unknown host key once), then asks for the folder.
    await vscode.commands.executeCommand(T.script, [MACHINE, "Trust", dir]);
    const root = await vscode.commands.executeCommand<{ machine: string; folder: string } | undefined>(
      "gpuWorkbench.checkpoints.browseRemote",
    );
    const prompts = await vscode.commands.executeCommand<string[]>(T.prompts);
    assert.deepEqual(root, { machine: MACHINE, folder: dir }, `prompts: ${JSON.stringify(prompts)}`);
    assert.ok(
      prompts.some((p) => p.startsWith("pick: Browse Checkpoints on Machine")),
      JSON.stringify(prompts),
    );
    assert.ok(
      prompts.some((p) => p.startsWith("input: Browse Checkpoints on Machine")),
      JSON.stringify(prompts),
    );

    // The root "<machine name>: <folder>", and under it the checkpoint (not notes.txt).
    const rows = await waitFor("the remote root with its entry", async () => {
      const r = await remoteTree();
      return r.find((x) => x.label === `${HOST}: ${dir}` && x.children.some((c) => c.path === file)) ? r : undefined;
    });
    const rootRow = rows.find((x) => x.label === `${HOST}: ${dir}`) ?? assert.fail("no root");
    assert.equal(rootRow.contextValue, "gpuWorkbench.remoteCheckpointRoot");
    assert.deepEqual(
      rootRow.children.map((c) => [c.label, c.description.split(" · ").slice(-1)[0], c.contextValue]),
      [["model.safetensors", "run1", "gpuWorkbench.remoteCheckpoint"]],
    );
    const entry = rootRow.children[0] ?? assert.fail("no entry");
    assert.equal(entry.uri, `gpuwb-remote:/ssh/${HOST}${file}`);

    // Local inspection of the same file, for comparison.
    await vscode.commands.executeCommand("vscode.open", vscode.Uri.file(file));
    const local = await inspectorWhen(file, settled);
    assert.equal(local.status, "ready", JSON.stringify(local.error));
    assert.equal(local.machine, null);

    // Open the entry as a click does: the inspector reads it on the machine.
    await vscode.commands.executeCommand("gpuWorkbench.openCheckpoint", vscode.Uri.parse(entry.uri ?? ""));
    const remote = await inspectorWhen(entry.uri ?? "", settled);
    assert.equal(remote.status, "ready", JSON.stringify(remote.error));
    assert.match(remote.machine ?? "", new RegExp(`^Read on ${HOST} \\(${MACHINE}\\)`));
    for (const key of [
      "path",
      "format",
      "cards",
      "tensorCount",
      "tensorsListed",
      "rowsMatching",
      "warnings",
    ] as const) {
      assert.deepEqual(remote[key], local[key], key);
    }
    assert.equal(remote.tensorCount, 3);

    // Statistics are computed there too, equal to the local ones.
    const localStats = await vscode.commands.executeCommand<proto.CheckpointStatsResult>(
      C.editorStats,
      ["encoder.weight"],
      file,
    );
    const remoteStats = await vscode.commands.executeCommand<proto.CheckpointStatsResult>(
      C.editorStats,
      ["encoder.weight"],
      entry.uri,
    );
    assert.ok(remoteStats?.stats[0], "no remote statistics");
    assert.deepEqual(remoteStats.stats, localStats.stats);
    assert.equal(remoteStats.stats[0]?.min, -10);
  });

  it("shows a missing file on the machine as an error saying what to do", async () => {
    const gone = path.join(dir, "run1", "gone.safetensors");
    const uri = `gpuwb-remote:/ssh/${HOST}${gone}`;
    await vscode.commands.executeCommand("gpuWorkbench.openCheckpoint", vscode.Uri.parse(uri));
    const s = await inspectorWhen(uri, settled);
    assert.equal(s.status, "error");
    assert.match(s.error?.hint ?? "", new RegExp(`not on ${HOST} at .*gone\\.safetensors.*Refresh its folder`));
  });

  it("shows a calm row for a root whose machine is not connected", async () => {
    await vscode.commands.executeCommand("gpuWorkbench.remote.disconnectMachine", MACHINE);
    const rows = await waitFor("the root's not-connected row", async () => {
      const r = await remoteTree();
      const root = r.find((x) => x.label === `${HOST}: ${dir}`);
      return root?.children.length === 1 && root.children[0]?.contextValue.endsWith(".disconnected") ? root : undefined;
    });
    assert.equal(rows.children[0]?.label, "not connected — connect to browse");
    assert.equal(rows.description, "not connected");
    // Removing the root takes it out of the view (and of the saved roots).
    await vscode.commands.executeCommand("gpuWorkbench.checkpoints.removeRemoteRoot", {
      machine: MACHINE,
      folder: dir,
    });
    assert.equal((await remoteTree()).filter((x) => x.label === `${HOST}: ${dir}`).length, 0);
  });
});
