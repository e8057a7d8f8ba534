// gpuwb ckpt inspect / diff / stats / scan, end to end: the built CLI and the real backend,
// on checkpoints written here byte by byte (safetensors, and hand-assembled pickles).
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { test } from "node:test";

const cli = path.join(process.cwd(), "dist", "cli.js");
const dataDir = mkdtempSync(path.join(tmpdir(), "gpuwb-cli-ckpt-data-"));
const work = mkdtempSync(path.join(tmpdir(), "gpuwb-cli-ckpt-"));

function gpuwb(...args: string[]) {
  const r = spawnSync(process.execPath, [cli, "--data-dir", dataDir, ...args], {
    encoding: "utf8",
    timeout: 60_000,
    cwd: work,
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

type Tensor = { dtype: "F32" | "F16" | "I64"; shape: number[]; values: number[] };

/** A safetensors file: u64 LE header length, JSON header (space-padded to 8), then the data. */
function safetensors(name: string, tensors: Record<string, Tensor>, metadata?: Record<string, string>): string {
  const header: Record<string, unknown> = {};
  const chunks: Buffer[] = [];
  let offset = 0;
  for (const [key, t] of Object.entries(tensors)) {
    const size = t.dtype === "F16" ? 2 : t.dtype === "F32" ? 4 : 8;
    const data = Buffer.alloc(t.values.length * size);
    t.values.forEach((v, i) => {
      if (t.dtype === "F32") data.writeFloatLE(v, i * 4);
      else if (t.dtype === "I64") data.writeBigInt64LE(BigInt(v), i * 8);
      else data.writeUInt16LE(float16Bits(v), i * 2);
    });
    header[key] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + data.length] };
    offset += data.length;
    chunks.push(data);
  }
  if (metadata) header.__metadata__ = metadata;
  let json = JSON.stringify(header);
  json += " ".repeat((8 - (json.length % 8)) % 8);
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(BigInt(json.length));
  const p = path.join(work, name);
  writeFileSync(p, Buffer.concat([len, Buffer.from(json, "utf8"), ...chunks]));
  return p;
}

/** IEEE half precision bits of the few values these tests use (0, ±1, ±2, NaN, ±Inf). */
function float16Bits(v: number): number {
  if (Number.isNaN(v)) return 0x7e00;
  if (v === Number.POSITIVE_INFINITY) return 0x7c00;
  if (v === Number.NEGATIVE_INFINITY) return 0xfc00;
  const table: Record<number, number> = { 0: 0x0000, 1: 0x3c00, 2: 0x4000, "-1": 0xbc00, "-2": 0xc000 };
  const bits = table[v];
  if (bits === undefined) throw new Error(`no F16 bits for ${v} in this test`);
  return bits;
}

/** BINUNICODE: 'X', u32 LE length, UTF-8. */
function binunicode(text: string): Buffer {
  const raw = Buffer.from(text, "utf8");
  const len = Buffer.alloc(4);
  len.writeUInt32LE(raw.length);
  return Buffer.concat([Buffer.from("X"), len, raw]);
}

/** Protocol 2: GLOBAL posix.system, REDUCE with `touch SENTINEL`: what a malicious .pt does. */
function maliciousPickle(name: string, sentinel: string): string {
  const p = path.join(work, name);
  writeFileSync(
    p,
    Buffer.concat([
      Buffer.from([0x80, 0x02]), // PROTO 2
      Buffer.from("cposix\nsystem\n", "latin1"), // GLOBAL
      binunicode(`touch ${sentinel}`),
      Buffer.from([0x85]), // TUPLE1
      Buffer.from("R.", "latin1"), // REDUCE, STOP
    ]),
  );
  return p;
}

/** Protocol 2: an argparse.Namespace built with NEWOBJ: unknown code, not known to be dangerous. */
function unknownPickle(name: string): string {
  const p = path.join(work, name);
  writeFileSync(
    p,
    Buffer.concat([
      Buffer.from([0x80, 0x02]),
      Buffer.from("cargparse\nNamespace\n", "latin1"),
      Buffer.from([0x29, 0x81]), // EMPTY_TUPLE, NEWOBJ
      Buffer.from("}", "latin1"), // EMPTY_DICT
      binunicode("lr"),
      Buffer.from("K\x01sb.", "latin1"), // BININT1 1, SETITEM, BUILD, STOP
    ]),
  );
  return p;
}

const a = safetensors(
  "a.safetensors",
  {
    "fc.weight": { dtype: "F32", shape: [2, 3], values: [1, 2, 3, 4, 5, 6] },
    "fc.bias": { dtype: "F32", shape: [2], values: [0, 0] },
    "emb.weight": { dtype: "F32", shape: [4], values: [1, -1, 2, -2] },
  },
  { format: "pt" },
);
const b = safetensors(
  "b.safetensors",
  {
    "fc.weight": { dtype: "F32", shape: [3, 2], values: [1, 2, 3, 4, 5, 6] },
    "head.bias": { dtype: "F16", shape: [2], values: [1, Number.NaN] },
    "emb.weight": { dtype: "F32", shape: [4], values: [1, -1, 2, 0] },
  },
  { format: "np" },
);

// ---- help and usage ----

test("ckpt --help lists inspect, diff, stats and scan", () => {
  const r = gpuwb("ckpt", "--help");
  assert.equal(r.code, 0);
  for (const c of ["inspect", "diff", "stats", "scan"]) assert.match(r.stdout, new RegExp(`ckpt ${c} `));
  const top = gpuwb("--help");
  assert.match(top.stdout, /\bckpt\b.*checkpoints/);
});

test("ckpt scan --help documents the exit codes a CI pipeline relies on", () => {
  const r = gpuwb("ckpt", "scan", "--help");
  assert.equal(r.code, 0);
  assert.match(r.stdout, /Usage: gpuwb ckpt scan PATH\.\.\./);
  assert.match(r.stdout, /Exit codes.*0 every file is safe; 1 a file is UNSAFE, UNKNOWN or unreadable/s);
  assert.match(r.stdout, /2 usage error; 3 no usable Python/);
  assert.match(r.stdout, /--allow MODULE\.NAME/);
});

test("usage errors exit 2 and say what to do", () => {
  const none = gpuwb("ckpt", "scan");
  assert.equal(none.code, 2);
  assert.match(none.stderr, /missing arguments\. Usage: gpuwb ckpt scan/);
  const extra = gpuwb("ckpt", "inspect", a, b);
  assert.equal(extra.code, 2);
  assert.match(extra.stderr, /unexpected argument .*gpuwb ckpt inspect --help/);
  const bins = gpuwb("ckpt", "stats", a, "--bins", "0");
  assert.equal(bins.code, 2);
  assert.match(bins.stderr, /--bins must be a whole number from 1 to 1000/);
  const tensors = gpuwb("ckpt", "inspect", a, "--tensors", "some");
  assert.equal(tensors.code, 2);
  assert.match(tensors.stderr, /--tensors must be a whole number or all/);
  const allow = gpuwb("ckpt", "scan", a, "--allow", "os");
  assert.equal(allow.code, 2);
  assert.match(allow.stderr, /--allow takes MODULE\.NAME/);
});

test("without a usable Python, ckpt scan exits 3", () => {
  const r = gpuwb("--python", "/nonexistent/python3", "ckpt", "scan", a);
  assert.equal(r.code, 3);
  assert.match(r.stderr, /--python PATH/);
});

// ---- inspect ----

test("ckpt inspect prints the summary and an aligned tensor table", () => {
  const r = gpuwb("ckpt", "inspect", a);
  assert.equal(r.code, 0, r.stderr);
  const out = r.stdout;
  assert.match(out, /^a\.safetensors\n/);
  assert.match(out, /format\s+safetensors/);
  assert.match(out, /parameters\s+12\n/);
  assert.match(out, /tensors\s+3 \(48 B\)/);
  assert.match(out, /dtypes\s+F32 ×3 48 B/);
  assert.match(out, /safety\s+Safe:/);
  const table = out.slice(out.indexOf("NAME"));
  const lines = table.trim().split("\n");
  assert.match(lines[0] as string, /^NAME\s+DTYPE\s+SHAPE\s+PARAMS\s+SIZE$/);
  assert.equal(lines.length, 4);
  const row = lines.find((l) => l.startsWith("fc.weight")) as string;
  assert.match(row, /^fc\.weight\s+F32\s+\(2, 3\)\s+6\s+24 B$/);
  // Aligned: every row's DTYPE column starts where the header's does.
  const col = (lines[0] as string).indexOf("DTYPE");
  for (const l of lines.slice(1)) assert.equal(l.slice(col, col + 3), "F32", l);
  assert.equal(r.stderr, "", "no progress noise when stderr is not a terminal");
});

test("ckpt inspect --tensors N lists N and says how many are left; --json prints the summary", () => {
  const r = gpuwb("ckpt", "inspect", a, "--tensors", "1");
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /… 2 more \(--tensors all lists every tensor\)/);
  const j = gpuwb("ckpt", "inspect", a, "--json");
  assert.equal(j.code, 0, j.stderr);
  const s = JSON.parse(j.stdout);
  assert.equal(s.format, "safetensors");
  assert.equal(s.tensorCount, 3);
  assert.equal(s.tensors.length, 3, "--json lists every tensor by default");
  assert.equal(s.parameterCount, 12);
  assert.equal(s.safety.verdict, "safe");
  assert.deepEqual(s.tensors.map((t: { name: string }) => t.name).sort(), ["emb.weight", "fc.bias", "fc.weight"]);
  const capped = JSON.parse(gpuwb("ckpt", "inspect", a, "--json", "--tensors", "2").stdout);
  assert.equal(capped.tensorsListed, 2);
});

test("ckpt inspect of a missing file exits 1 with the backend's message", () => {
  const r = gpuwb("ckpt", "inspect", path.join(work, "nope.pt"));
  assert.equal(r.code, 1);
  assert.match(r.stderr, /No such file or folder: .*nope\.pt/);
  assert.doesNotMatch(r.stderr, /at .*\.js:\d+/, "no stack trace");
});

// ---- diff ----

test("ckpt diff shows counts, the changed tensors with both dtypes/shapes, and metadata", () => {
  const r = gpuwb("ckpt", "diff", a, b);
  assert.equal(r.code, 0, r.stderr);
  const out = r.stdout;
  assert.match(out, /^a\.safetensors → b\.safetensors\n/);
  assert.match(out, /added 1 · removed 1 · reshaped 1/);
  assert.match(out, /changed 1/);
  assert.match(out, /fc\.weight\s+reshaped\s+F32 \(2, 3\)\s+F32 \(3, 2\)/);
  assert.match(out, /head\.bias\s+added\s+—\s+F16 \(2,\)/);
  assert.match(out, /fc\.bias\s+removed\s+F32 \(2,\)\s+—/);
  assert.match(out, /emb\.weight\s+changed/);
  assert.match(out, /metadata\n.*format.*"pt" → "np"/);
  const j = JSON.parse(gpuwb("ckpt", "diff", a, b, "--json").stdout);
  assert.equal(j.counts.added, 1);
  assert.equal(j.counts.changed, 1);
  const nv = JSON.parse(gpuwb("ckpt", "diff", a, b, "--json", "--no-values").stdout);
  assert.equal(nv.counts.changed, 0, "--no-values compares no bytes");
  assert.equal(nv.counts.unknown, 1);
});

// ---- stats ----

test("ckpt stats prints a table for every tensor", () => {
  const r = gpuwb("ckpt", "stats", b);
  assert.equal(r.code, 0, r.stderr);
  const lines = r.stdout.trim().split("\n");
  assert.match(lines[0] as string, /^NAME\s+DTYPE\s+MIN\s+MAX\s+MEAN\s+STD\s+NAN\s+INF\s+ZERO\s+SAMPLED$/);
  assert.match(r.stdout, /fc\.weight\s+F32\s+1\s+6\s+3\.5\s+1\.708\s+0\s+0\s+0\.0%/);
  assert.match(r.stdout, /head\.bias\s+F16\s+1\s+1\s+1\s+0\s+1\s+0/, "NaN counted, not averaged");
  assert.match(r.stdout, /emb\.weight\s+F32\s+-1\s+2\s+0\.5\s+.*25\.0%/);
  assert.doesNotMatch(r.stdout, /histogram/, "no histogram for several tensors");
});

test("ckpt stats with one tensor adds a text histogram; --json has the numbers", () => {
  const r = gpuwb("ckpt", "stats", a, "fc.weight", "--bins", "5");
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /histogram of fc\.weight \(6 values\)/);
  const bars = r.stdout.split("\n").filter((l) => /[█▏▎▍▌▋▊▉]/.test(l));
  assert.equal(bars.length, 5);
  // Values 1..6 in 5 bins of width 1: one value per bin, the last bin closed (5 and 6).
  assert.match(bars[0] as string, /^\s+1 … 2\s+1\s+█{20}$/);
  assert.match(bars[4] as string, /^\s+5 … 6\s+2\s+█{40}$/);
  const j = JSON.parse(gpuwb("ckpt", "stats", a, "fc.weight", "--json", "--bins", "5").stdout);
  assert.equal(j.stats.length, 1);
  assert.equal(j.stats[0].min, 1);
  assert.equal(j.stats[0].max, 6);
  assert.equal(j.stats[0].histogram.counts.length, 5);
});

// ---- scan ----

test("ckpt scan of safe files exits 0", () => {
  const r = gpuwb("ckpt", "scan", a, b);
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /^safe\s+a\.safetensors$/m);
  assert.match(r.stdout, /2 files: 2 safe, 0 unknown, 0 unsafe\./);
});

test("the hand-written malicious pickle is live (so the scans below could catch a leak)", () => {
  const sentinel = path.join(work, "control.pwned");
  const p = maliciousPickle("control.pkl", sentinel);
  const r = spawnSync("python3", ["-c", "import pickle, sys; pickle.load(open(sys.argv[1], 'rb'))", p]);
  assert.equal(r.status, 0, String(r.stderr));
  assert.ok(existsSync(sentinel), "pickle.load ran posix.system");
});

test("ckpt scan flags a malicious pickle, runs nothing, and exits 1", () => {
  const sentinel = path.join(work, "scan.pwned");
  const bad = maliciousPickle("weights.bin", sentinel);
  const r = gpuwb("ckpt", "scan", a, bad);
  assert.equal(r.code, 1, r.stderr);
  assert.match(r.stdout, /^UNSAFE\s+weights\.bin\s+posix\.system$/m);
  assert.match(r.stdout, /^safe\s+a\.safetensors$/m);
  assert.match(r.stdout, /2 files: 1 safe, 0 unknown, 1 unsafe\./);
  assert.match(r.stdout, /--allow MODULE\.NAME/);
  const j = gpuwb("ckpt", "scan", bad, "--json");
  assert.equal(j.code, 1);
  const entry = JSON.parse(j.stdout).results[0];
  assert.equal(entry.verdict, "unsafe");
  assert.deepEqual(
    entry.globals.map((g: { module: string; name: string }) => `${g.module}.${g.name}`),
    ["posix.system"],
  );
  // inspect shows the same, and neither ran the payload.
  const i = gpuwb("ckpt", "inspect", bad);
  assert.equal(i.code, 0, i.stderr);
  assert.match(i.stdout, /safety\s+Unsafe: .*posix\.system/);
  assert.match(i.stdout, /unsafe\s+posix\.system/);
  assert.ok(!existsSync(sentinel), "the scan must never run pickle code");
});

test("ckpt scan searches folders by content; unknown globals exit 1 unless allowed; posix is never allowed", () => {
  const dir = path.join(work, "models");
  mkdirSync(dir, { recursive: true });
  const sentinel = path.join(work, "folder.pwned");
  maliciousPickle(path.join("models", "model.ckpt.tmp"), sentinel);
  const ns = unknownPickle(path.join("models", "hparams.pkl"));
  const all = gpuwb("ckpt", "scan", dir);
  assert.equal(all.code, 1);
  assert.match(all.stdout, /UNSAFE\s+models[/\\]model\.ckpt\.tmp\s+posix\.system/);
  assert.match(all.stdout, /UNKNOWN\s+models[/\\]hparams\.pkl\s+argparse\.Namespace/);

  assert.equal(gpuwb("ckpt", "scan", ns).code, 1, "unknown code fails the scan");
  const allowed = gpuwb("ckpt", "scan", ns, "--allow", "argparse.Namespace");
  assert.equal(allowed.code, 0, allowed.stdout + allowed.stderr);
  assert.match(allowed.stdout, /^safe\s+models[/\\]hparams\.pkl/m);
  const repeated = gpuwb("ckpt", "scan", ns, "--allow", "collections.Counter", "--allow", "argparse.Namespace");
  assert.equal(repeated.code, 0, "every --allow counts, not only the last");
  const never = gpuwb("ckpt", "scan", path.join(dir, "model.ckpt.tmp"), "--allow", "posix.system,argparse.Namespace");
  assert.equal(never.code, 1, "posix.system stays unsafe even when allowed");
  assert.ok(!existsSync(sentinel));
});

test("ckpt scan exits 1 when a file cannot be read as a checkpoint", () => {
  const junk = path.join(work, "notes.bin");
  writeFileSync(junk, "not a checkpoint at all\n");
  const r = gpuwb("ckpt", "scan", a, junk);
  assert.equal(r.code, 1);
  assert.match(r.stdout, /^ERROR\s+notes\.bin\s+Not a checkpoint format/m);
  assert.match(r.stdout, /1 unreadable/);
});
