// gpuwb run / kernels, end to end: the built CLI, the real backend and real kernel workers.
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { after, test } from "node:test";

const cli = path.join(process.cwd(), "dist", "cli.js");
const dataDir = mkdtempSync(path.join(tmpdir(), "gpuwb-cli-kernels-"));
const work = mkdtempSync(path.join(tmpdir(), "gpuwb-cli-work-"));

function gpuwb(args: string[], input?: string) {
  const r = spawnSync(process.execPath, [cli, "--data-dir", dataDir, ...args], {
    encoding: "utf8",
    timeout: 90_000,
    input,
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

function file(name: string, text: string): string {
  const p = path.join(work, name);
  writeFileSync(p, text);
  return p;
}

after(() => {
  gpuwb(["kernels", "kill", "--all"]);
});

test("run executes every cell in order on one kernel and prints results", () => {
  const f = file(
    "ok.py",
    "# %% first\nx = 20\nprint('hello from cell 1')\n# %% [markdown]\n# notes\n# %% second\nx + 22\n",
  );
  const r = gpuwb(["run", f]);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout, "hello from cell 1\n42\n");
});

test("run --cell N runs only that cell", () => {
  const f = file("pick.py", "# %%\nprint('one')\n# %%\nprint('two')\n");
  const r = gpuwb(["run", f, "--cell", "2"]);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout, "two\n");
  const bad = gpuwb(["run", f, "--cell", "9"]);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /--cell must be between 1 and 2/);
});

test("an error stops the run, exits 1 and points at the file's line", () => {
  const f = file("err.py", "# %%\nprint('before')\n\n# %%\na = 1\nb = 0\na / b\n# %%\nprint('never')\n");
  const r = gpuwb(["run", f]);
  assert.equal(r.code, 1);
  assert.equal(r.stdout, "before\n");
  assert.match(r.stderr, /ZeroDivisionError/);
  assert.match(r.stderr, new RegExp(`${path.basename(f)}", line 7`));
  assert.doesNotMatch(r.stdout + r.stderr, /never/);
});

test("run --json streams events as JSON lines and ends with a summary", () => {
  const f = file("json.py", "# %%\nprint('a')\n# %%\n{'k': 1}\n");
  const r = gpuwb(["run", f, "--json"]);
  assert.equal(r.code, 0, r.stderr);
  const lines = r.stdout
    .trim()
    .split("\n")
    .map((l) => JSON.parse(l));
  const summary = lines.at(-1);
  assert.equal(summary.type, "summary");
  assert.deepEqual(
    summary.cells.map((c: { status: string }) => c.status),
    ["ok", "ok"],
  );
  const events = lines.slice(0, -1).map((l) => l.event);
  assert.ok(events.some((e) => e.type === "stream" && e.text === "a\n"));
  assert.ok(events.some((e) => e.type === "execute_result" && e.data["text/plain"] === "{'k': 1}"));
  const seqs = events.map((e) => e.seq);
  assert.deepEqual(
    seqs,
    [...seqs].sort((a, b) => a - b),
    "in seq order",
  );
});

test("input() in a cell reads a line from stdin", () => {
  const f = file("input.py", "# %%\nname = input('Name? ')\nprint('hi', name)\n");
  const r = gpuwb(["run", f], "Ada\n");
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stderr, /Name\? /);
  assert.equal(r.stdout, "hi Ada\n");
});

test("run --keep leaves the kernel; --kernel reuses its state; kernels list and kill", () => {
  const a = file("keep.py", "# %%\nanswer = 41\n");
  const r1 = gpuwb(["run", a, "--keep"]);
  assert.equal(r1.code, 0, r1.stderr);
  const id = /kernel ([0-9a-f]+) is still running/.exec(r1.stderr)?.[1];
  assert.ok(id, r1.stderr);
  const b = file("reuse.py", "# %%\nanswer + 1\n");
  const r2 = gpuwb(["run", b, "--kernel", id]);
  assert.equal(r2.code, 0, r2.stderr);
  assert.equal(r2.stdout, "42\n");

  const list = gpuwb(["kernels", "list", "--json"]);
  assert.equal(list.code, 0, list.stderr);
  const kernels = JSON.parse(list.stdout);
  const mine = kernels.find((k: { kernelId: string }) => k.kernelId === id);
  assert.ok(mine);
  assert.equal(mine.state, "idle");
  assert.match(gpuwb(["kernels", "list"]).stdout, new RegExp(`${id}\\s+keep\\.py\\s+idle`));

  const kill = gpuwb(["kernels", "kill", id]);
  assert.equal(kill.code, 0, kill.stderr);
  const after = JSON.parse(gpuwb(["kernels", "list", "--json"]).stdout);
  const state = after.find((k: { kernelId: string }) => k.kernelId === id)?.state;
  assert.ok(state === undefined || state === "exited", `state after kill: ${state}`);
});

test("kernels attach replays what a kernel printed while nobody watched", async () => {
  const f = file("bg.py", "# %%\nimport time\nfor i in range(3):\n    print('tick', i, flush=True)\n");
  const r = gpuwb(["run", f, "--keep"]);
  assert.equal(r.code, 0, r.stderr);
  const id = /kernel ([0-9a-f]+) is still running/.exec(r.stderr)?.[1];
  assert.ok(id);
  // attach follows until the kernel ends: end it from a second CLI once the replay is in.
  const child = spawn(process.execPath, [cli, "--data-dir", dataDir, "kernels", "attach", id]);
  let out = "";
  child.stdout.on("data", (d) => {
    out += d;
    if (out.includes("tick 2")) gpuwb(["kernels", "kill", id]);
  });
  const code = await new Promise<number | null>((resolve) => child.on("close", resolve));
  assert.equal(code, 0);
  assert.match(out, /tick 0\ntick 1\ntick 2\n/);
});

test("kernels with no subcommand shows its help; unknown kernel ids fail clearly", () => {
  const h = gpuwb(["kernels", "--help"]);
  assert.equal(h.code, 0);
  assert.match(h.stdout, /list\s+List kernels/);
  assert.match(h.stdout, /attach\s+Follow/);
  assert.equal(gpuwb(["kernels"]).code, 2);
  const k = gpuwb(["kernels", "kill", "000000000000"]);
  assert.equal(k.code, 1);
  assert.match(k.stderr, /000000000000/);
  const r = gpuwb(["run", file("x.py", "1\n"), "--kernel", "000000000000"]);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /no kernel 000000000000/);
});
