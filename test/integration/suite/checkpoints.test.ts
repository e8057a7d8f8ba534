// The checkpoint inspector in a real VS Code: the custom editor, the diff panel, the
// Checkpoints view and the scan, read back through hidden commands that ask the webviews
// what they render. Fixtures: examples/checkpoints/ (written by torch), plus files written
// here (a 100,000-tensor safetensors, a corrupt file, one rewritten on disk).
import * as assert from "node:assert/strict";
import { existsSync } from "node:fs";
import * as fs from "node:fs/promises";
import * as path from "node:path";
import * as vscode from "vscode";
import type { DiffRenderedState, InspectorRenderedState } from "../../../src/checkpoints/messages";
import { CHECKPOINT_TEST_COMMANDS as T } from "../../../src/checkpoints/testCommands";
import type { CheckpointTreeRow } from "../../../src/checkpoints/tree";
import type { CheckpointScanResult, CheckpointStatsResult } from "../../../src/protocol";
import { api, ready, waitFor } from "../helpers";

interface SafetensorsSpec {
  name: string;
  dtype: "F32" | "F16" | "I64";
  shape: number[];
}

const ITEM: Record<SafetensorsSpec["dtype"], number> = { F32: 4, F16: 2, I64: 8 };

/** A safetensors file: 8-byte little-endian header length, the JSON header, the data. */
function safetensors(tensors: SafetensorsSpec[], metadata?: Record<string, string>): Buffer {
  const header: Record<string, unknown> = metadata ? { __metadata__: metadata } : {};
  let offset = 0;
  for (const t of tensors) {
    const n = t.shape.reduce((a, b) => a * b, 1) * ITEM[t.dtype];
    header[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + n] };
    offset += n;
  }
  let json = JSON.stringify(header);
  json += " ".repeat((8 - (json.length % 8)) % 8);
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(Buffer.byteLength(json)));
  const data = Buffer.alloc(offset);
  // Deterministic, non-constant values so statistics have something to show.
  for (let i = 0; i + 4 <= offset; i += 4) data.writeFloatLE(Math.sin(i), i);
  return Buffer.concat([len, Buffer.from(json), data]);
}

function editorState(p?: string): Thenable<InspectorRenderedState | undefined> {
  return vscode.commands.executeCommand<InspectorRenderedState | undefined>(T.editorState, p);
}

/** Open a file the way a click does, then wait until its inspector shows a settled state. */
async function openInspector(file: string, want: (s: InspectorRenderedState) => boolean = settled) {
  await vscode.commands.executeCommand("vscode.open", vscode.Uri.file(file));
  return inspectorWhen(file, want);
}

function settled(s: InspectorRenderedState): boolean {
  return s.status === "ready" || s.status === "error";
}

async function inspectorWhen(
  file: string,
  want: (s: InspectorRenderedState) => boolean,
  timeoutMs = 60_000,
): Promise<InspectorRenderedState> {
  let last: InspectorRenderedState | undefined;
  try {
    return await waitFor(
      `the inspector of ${path.basename(file)}`,
      async () => {
        last = await editorState(file);
        return last && want(last) ? last : undefined;
      },
      timeoutMs,
    );
  } catch (err) {
    throw new Error(`${String(err)}; it shows ${JSON.stringify({ ...last, metadataText: undefined })?.slice(0, 2000)}`);
  }
}

async function diffWhen(want: (s: DiffRenderedState) => boolean): Promise<DiffRenderedState> {
  let last: DiffRenderedState | undefined;
  try {
    return await waitFor("the diff view", async () => {
      last = await vscode.commands.executeCommand<DiffRenderedState | undefined>(T.diffState);
      return last && want(last) ? last : undefined;
    });
  } catch (err) {
    throw new Error(`${String(err)}; it shows ${JSON.stringify(last)?.slice(0, 2000)}`);
  }
}

function tree(settle = true): Thenable<CheckpointTreeRow[]> {
  return vscode.commands.executeCommand<CheckpointTreeRow[]>(T.treeItems, settle);
}

async function closeEditors(): Promise<void> {
  await vscode.commands.executeCommand("workbench.action.closeAllEditors");
}

describe("checkpoints", function () {
  this.timeout(180_000);
  const folder = vscode.workspace.workspaceFolders?.[0]?.uri.fsPath ?? "";
  const examples = path.join(folder, "checkpoints");
  const scratch = path.join(folder, "checkpoints-test");
  /** The first fixture that exists (names of the examples may still change). */
  const fixture = (...names: string[]) => names.map((n) => path.join(examples, n)).find((p) => existsSync(p));
  const tinySafetensors = () => fixture("tiny-lm.safetensors", "tiny-mlp.safetensors");
  const tinyPt = () => fixture("tiny-lm.pt", "tiny-mlp.pt");

  before(async () => {
    await fs.mkdir(scratch, { recursive: true });
    const a = await api();
    await ready(a);
  });

  after(async () => {
    await closeEditors();
    await fs.rm(scratch, { recursive: true, force: true });
  });

  it("workspace trust: a .safetensors opens in the inspector, also in Restricted Mode", async () => {
    const file = path.join(scratch, "two.safetensors");
    await fs.writeFile(
      file,
      safetensors([
        { name: "layer.weight", dtype: "F32", shape: [4, 3] },
        { name: "layer.bias", dtype: "F32", shape: [4] },
      ]),
    );
    const s = await openInspector(file);
    assert.equal(s.status, "ready", JSON.stringify(s.error));
    assert.equal(s.format, "safetensors");
    assert.equal(s.tensorCount, 2);
    assert.equal(s.cards.Tensors, "2");
    assert.equal(s.rowsRendered, 2);
    assert.equal(s.banner, null, "a safetensors file is safe");
    const tab = vscode.window.tabGroups.activeTabGroup.activeTab?.input;
    assert.ok(tab instanceof vscode.TabInputCustom, "opened in a custom editor, not as a binary file");
    assert.equal(tab.viewType, "gpuWorkbench.checkpoint");
    assert.equal((await (await api()).backendStatus()).trusted, vscode.workspace.isTrusted);
  });

  it("shows the example safetensors and .pt with their format, tensor count and modules", async function () {
    if (!vscode.workspace.isTrusted) this.skip();
    const st = tinySafetensors();
    const pt = tinyPt();
    assert.ok(st && pt, `example checkpoints are missing in ${examples}`);
    const a = await openInspector(st);
    assert.equal(a.status, "ready", JSON.stringify(a.error));
    assert.equal(a.format, "safetensors");
    assert.ok((a.tensorCount ?? 0) > 5, `tensors: ${a.tensorCount}`);
    assert.equal(a.rowsMatching, a.tensorCount);
    assert.ok(a.modulesShown > 0, "the module tree has entries");
    assert.match(a.cards.Safety ?? "", /safe/);

    const b = await openInspector(pt);
    assert.equal(b.status, "ready", JSON.stringify(b.error));
    assert.equal(b.format, "PyTorch (zip)");
    assert.ok((b.tensorCount ?? 0) > 5);
    assert.ok(b.cards.Parameters, "parameter count card");

    // Back to the first tab: its webview was dropped while hidden and is rebuilt from the host.
    const again = await openInspector(st);
    assert.equal(again.status, "ready");
    assert.equal(again.tensorCount, a.tensorCount);
  });

  it("a Lightning checkpoint shows epoch and step and its training metadata", async function () {
    if (!vscode.workspace.isTrusted) this.skip();
    const ckpt = fixture("lightning-epoch3.ckpt");
    assert.ok(ckpt, "lightning-epoch3.ckpt is missing");
    const s = await openInspector(ckpt);
    assert.equal(s.status, "ready", JSON.stringify(s.error));
    assert.equal(s.cards.Epoch, "3");
    assert.equal(s.cards.Step, "1,200");
    assert.match(s.metadataText, /epoch 3 · step 1,200/);
    assert.match(s.metadataText, /Optimizer/);
  });

  it("Inspect Checkpoint on a sharded model folder opens its index with every shard", async function () {
    if (!vscode.workspace.isTrusted) this.skip();
    const folderPath = path.join(examples, "sharded-tiny-lm");
    assert.ok(existsSync(folderPath), "the sharded example is missing");
    await vscode.commands.executeCommand("gpuWorkbench.inspectCheckpoint", vscode.Uri.file(folderPath));
    const index = path.join(folderPath, "model.safetensors.index.json");
    const s = await inspectorWhen(index, settled);
    assert.equal(s.status, "ready", JSON.stringify(s.error));
    assert.equal(s.format, "Hugging Face sharded");
    assert.ok((s.tensorCount ?? 0) > 0);
    assert.match(s.metadataText, /Files \(2\)/);
    const tab = vscode.window.tabGroups.activeTabGroup.activeTab?.input;
    assert.ok(tab instanceof vscode.TabInputCustom);
    assert.equal(
      tab.viewType,
      "gpuWorkbench.checkpoint.optional",
      "*.index.json opens in the inspector on request only",
    );
  });

  it("100,000 tensors: the table renders only the rows in view, and filters", async function () {
    if (!vscode.workspace.isTrusted) this.skip();
    const file = path.join(scratch, "many.safetensors");
    const specs: SafetensorsSpec[] = [];
    for (let i = 0; i < 10_000; i++) {
      for (const n of ["q", "k", "v", "o", "up", "down", "gate", "n1", "n2", "emb"]) {
        specs.push({ name: `model.layers.${i}.${n}.weight`, dtype: "F16", shape: [1] });
      }
    }
    await fs.writeFile(file, safetensors(specs));
    const s = await openInspector(file);
    assert.equal(s.status, "ready", JSON.stringify(s.error));
    assert.equal(s.tensorCount, 100_000);
    assert.equal(s.rowsMatching, 100_000);
    assert.ok(s.rowsRendered > 0 && s.rowsRendered < 200, `rows in the DOM: ${s.rowsRendered}`);
    assert.equal(s.firstRow, "model.layers.0.q.weight");
    await vscode.commands.executeCommand(T.driveEditor, { filter: "layers.9999." }, file);
    const f = await inspectorWhen(file, (x) => x.query === "layers.9999.");
    assert.equal(f.rowsMatching, 10);
    assert.equal(f.firstRow, "model.layers.9999.q.weight");
  });

  it("statistics on demand draw a histogram", async function () {
    if (!vscode.workspace.isTrusted) this.skip();
    const st = tinySafetensors();
    assert.ok(st);
    const s = await openInspector(st);
    const first = s.firstRow;
    assert.ok(first, "a first tensor");
    const result = await vscode.commands.executeCommand<CheckpointStatsResult | undefined>(T.editorStats, [first], st);
    assert.ok(result, "statistics came back");
    assert.equal(result.stats[0]?.name, first);
    await vscode.commands.executeCommand(T.driveEditor, { select: first }, st);
    const shown = await inspectorWhen(st, (x) => x.histogram !== null && x.stats.length > 0);
    assert.equal(shown.selected, first);
    assert.equal(shown.histogram?.tensor, first);
    assert.ok((shown.histogram?.bars ?? 0) > 1, `bars: ${shown.histogram?.bars}`);
    const row = shown.stats.find((x) => x.name === first);
    assert.ok(row && row.mean !== "—" && row.std !== "—", JSON.stringify(row));

    // "Statistics: All", pressed in the view.
    await vscode.commands.executeCommand(T.driveEditor, { statsAll: true }, st);
    const all = await inspectorWhen(st, (x) => x.stats.length === x.tensorCount);
    assert.match(all.notice ?? "", /Statistics of \d+ tensor/);
  });

  it("Cancel stops a slow reading and offers Retry; the backend keeps serving", async function () {
    if (!vscode.workspace.isTrusted) this.skip();
    const file = path.join(scratch, "slow.safetensors");
    const specs: SafetensorsSpec[] = [];
    for (let i = 0; i < 150_000; i++) specs.push({ name: `slow.block.${i}.weight`, dtype: "F16", shape: [1] });
    await fs.writeFile(file, safetensors(specs));
    await vscode.commands.executeCommand("vscode.open", vscode.Uri.file(file));
    await vscode.commands.executeCommand(T.driveEditor, { cancel: true }, file);
    const s = await inspectorWhen(file, settled);
    // A machine fast enough to read it before the click arrives leaves nothing to cancel.
    if (s.status === "ready") this.skip();
    assert.equal(s.status, "error");
    assert.match(s.error?.message ?? "", /cancelled/);
    assert.ok(s.error?.actions.includes("Retry"));
    const two = path.join(scratch, "two.safetensors");
    const t = await openInspector(two);
    assert.equal(t.status, "ready", "the backend still answers");
  });

  it("an unsafe pickle shows the red banner with the globals it would import", async function () {
    if (!vscode.workspace.isTrusted) this.skip();
    const unsafe = fixture("unsafe-pickle.pt");
    assert.ok(unsafe, "unsafe-pickle.pt is missing");
    const s = await openInspector(unsafe);
    assert.equal(s.status, "ready", JSON.stringify(s.error));
    assert.equal(s.banner?.level, "unsafe");
    assert.ok(s.banner?.globals.includes("os.system"), JSON.stringify(s.banner));
    assert.equal(s.cards.Safety, "unsafe");

    // A pickle of a class nobody vetted: the amber banner, with module.name as written.
    const unknown = path.join(scratch, "unknown-class.pt");
    await fs.writeFile(unknown, Buffer.from("\x80\x02cmypkg.models\nNet\nq\x00)\x81q\x01.", "latin1"));
    const u = await openInspector(unknown);
    assert.equal(u.status, "ready", JSON.stringify(u.error));
    assert.equal(u.banner?.level, "unknown");
    assert.deepEqual(u.banner?.globals, ["mypkg.models.Net"]);
  });

  it("a corrupt file shows a clear error with Show Logs, not a crash", async function () {
    if (!vscode.workspace.isTrusted) this.skip();
    const file = path.join(scratch, "corrupt.safetensors");
    const bad = Buffer.alloc(64, 0x41);
    bad.writeBigUInt64LE(10_000_000_000n); // a header longer than the file
    await fs.writeFile(file, bad);
    const s = await openInspector(file);
    assert.equal(s.status, "error");
    assert.ok(s.error && s.error.message.length > 10, JSON.stringify(s.error));
    assert.ok(s.error.actions.includes("Show Logs"), JSON.stringify(s.error.actions));
    assert.ok(s.error.actions.includes("Retry"));
    const text = path.join(scratch, "notes.pt");
    await fs.writeFile(text, "these are not tensors\n");
    const t = await openInspector(text);
    assert.equal(t.status, "error");
    // The backend is still serving after both.
    assert.equal((await api()).backendState, "ready");
  });

  it("re-inspects when the file changes on disk", async function () {
    if (!vscode.workspace.isTrusted) this.skip();
    const file = path.join(scratch, "growing.safetensors");
    await fs.writeFile(file, safetensors([{ name: "a", dtype: "F32", shape: [2] }]));
    const s = await openInspector(file);
    assert.equal(s.tensorCount, 1);
    await fs.writeFile(
      file,
      safetensors([
        { name: "a", dtype: "F32", shape: [2] },
        { name: "b", dtype: "F32", shape: [3] },
        { name: "c", dtype: "I64", shape: [1] },
      ]),
    );
    const after = await inspectorWhen(file, (x) => x.status === "ready" && x.tensorCount === 3);
    assert.match(after.notice ?? "", /Reloaded/);
  });

  it("Compare Checkpoints opens a diff with counts, filters and metadata changes", async function () {
    if (!vscode.workspace.isTrusted) this.skip();
    const a = path.join(scratch, "diff-a.safetensors");
    const b = path.join(scratch, "diff-b.safetensors");
    await fs.writeFile(
      a,
      safetensors(
        [
          { name: "same", dtype: "F32", shape: [2] },
          { name: "grown", dtype: "F32", shape: [2] },
          { name: "retyped", dtype: "F32", shape: [2] },
          { name: "gone", dtype: "F32", shape: [1] },
        ],
        { step: "1" },
      ),
    );
    await fs.writeFile(
      b,
      safetensors(
        [
          { name: "same", dtype: "F32", shape: [2] },
          { name: "grown", dtype: "F32", shape: [3] },
          { name: "retyped", dtype: "F16", shape: [2] },
          { name: "new", dtype: "F32", shape: [1] },
        ],
        { step: "2" },
      ),
    );
    await vscode.commands.executeCommand("gpuWorkbench.compareCheckpoints", vscode.Uri.file(a), vscode.Uri.file(b));
    const d = await diffWhen((s) => s.status !== "loading" && s.a === a);
    assert.equal(d.status, "ready", JSON.stringify(d.error));
    assert.deepEqual(
      { added: d.counts.added, removed: d.counts.removed, reshaped: d.counts.reshaped, retyped: d.counts.retyped },
      { added: 1, removed: 1, reshaped: 1, retyped: 1 },
    );
    assert.equal(d.counts.unchanged, 1);
    assert.ok(d.summary.length > 0);
    assert.ok(!d.changesShown.includes("unchanged"), "by default only what changed is listed");
    assert.equal(d.rowsMatching, 4);
    assert.ok(
      d.metadata.some((m) => /step/.test(m.key)),
      JSON.stringify(d.metadata),
    );
    await vscode.commands.executeCommand(T.driveDiff, { changes: ["added"] });
    const added = await diffWhen((s) => s.changesShown.join() === "added");
    assert.equal(added.rowsMatching, 1);
    assert.equal(added.firstRows[0]?.name, "new");
  });

  it("the Checkpoints view lists the examples newest first, with epoch/step, safety and one sharded entry", async function () {
    if (!vscode.workspace.isTrusted) this.skip();
    const rows = await tree(true);
    const byLabel = new Map(rows.map((r) => [r.label, r]));
    const lightning = byLabel.get("lightning-epoch3.ckpt");
    assert.ok(lightning, `rows: ${rows.map((r) => r.label).join(", ")}`);
    assert.match(lightning.description, /epoch 3 · step 1,200/);
    assert.equal(lightning.icon, "verified");
    const unsafe = byLabel.get("unsafe-pickle.pt");
    assert.equal(unsafe?.icon, "warning");
    const sharded = rows.filter((r) => r.kind === "sharded");
    assert.equal(sharded.length, 1, JSON.stringify(sharded));
    assert.match(sharded[0]?.description ?? "", /2 shards/);
    assert.ok(!rows.some((r) => /-0000\d-of-/.test(r.label)), "shards are not listed on their own");
    assert.ok(!rows.some((r) => r.label === "make_examples.py"));
    // Written by the corrupt-file test, when it ran.
    const corrupt = byLabel.get("corrupt.safetensors");
    if (corrupt) assert.equal(corrupt.icon, "error");
    const times = rows.map((r) => r.mtimeMs);
    assert.deepEqual(
      times,
      [...times].sort((x, y) => y - x),
      "newest first",
    );
  });

  it("the Checkpoints view follows files being created and deleted", async function () {
    if (!vscode.workspace.isTrusted) this.skip();
    const file = path.join(scratch, "epoch-new.safetensors");
    await fs.writeFile(file, safetensors([{ name: "w", dtype: "F32", shape: [1] }]));
    const rows = await waitFor("the new checkpoint in the view", async () => {
      const r = await tree(false);
      return r.some((x) => x.path === file) ? r : undefined;
    });
    assert.equal(rows[0]?.path, file, "the newest is first");
    await fs.rm(file);
    await waitFor("the deleted checkpoint to leave the view", async () => {
      const r = await tree(false);
      return !r.some((x) => x.path === file);
    });
  });

  it("Scan Checkpoints for Unsafe Code finds the unsafe pickle", async function () {
    if (!vscode.workspace.isTrusted) this.skip();
    const result = await vscode.commands.executeCommand<CheckpointScanResult | undefined>(
      "gpuWorkbench.scanCheckpoints",
    );
    await vscode.commands.executeCommand("workbench.action.closeQuickOpen");
    assert.ok(result, "the scan returned its results");
    const unsafe = result.results.find((r) => r.path.endsWith("unsafe-pickle.pt"));
    assert.equal(unsafe?.verdict, "unsafe");
    assert.ok(unsafe.globals.some((g) => g.module === "os" && g.name === "system"));
    assert.ok(result.results.some((r) => r.verdict === "safe"));
  });
});
