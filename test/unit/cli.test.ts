// The gpuwb CLI, built (dist/cli.js) and run as a user would, against the real backend.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { test } from "node:test";
import { parseOptions, UsageError } from "../../src/cli/args";
import { commandIndex } from "../../src/cli/gpuwb";

const cli = path.join(process.cwd(), "dist", "cli.js");

function gpuwb(...args: string[]) {
  const r = spawnSync(process.execPath, [cli, ...args], {
    encoding: "utf8",
    timeout: 60_000,
    env: { ...process.env, GPUWB_DATA_DIR: mkdtempSync(path.join(tmpdir(), "gpuwb-cli-")) },
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

test("the CLI is built", () => assert.ok(existsSync(cli), "run npm run build first"));

test("--help at the top level lists commands and exits 0", () => {
  const r = gpuwb("--help");
  assert.equal(r.code, 0);
  assert.match(r.stdout, /Usage: gpuwb/);
  assert.match(r.stdout, /Commands:\n\s+status/);
});

test("no command prints help on stderr and exits 2", () => {
  const r = gpuwb();
  assert.equal(r.code, 2);
  assert.match(r.stderr, /Usage: gpuwb/);
});

test("status --help describes status", () => {
  const r = gpuwb("status", "--help");
  assert.equal(r.code, 0);
  assert.match(r.stdout, /Usage: gpuwb status \[--json\]/);
  assert.match(r.stdout, /--json/);
});

test("status --json reports the backend's Python", () => {
  const r = gpuwb("status", "--json");
  assert.equal(r.code, 0, r.stderr);
  const s = JSON.parse(r.stdout);
  assert.equal(s.name, "gpu-workbench");
  assert.match(s.python.version, /^3\.\d+\.\d+/);
  assert.ok(s.pid > 0);
  assert.ok(s.capabilities.includes("workbench/status"));
});

test("status as text, with global options before the command", () => {
  const data = mkdtempSync(path.join(tmpdir(), "gpuwb-data-"));
  const r = gpuwb("--python", "python3", "--data-dir", data, "status");
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stdout, /GPU Workbench backend .*: ready/);
  assert.ok(r.stdout.includes(data), "the data directory option is honoured");
});

test("unknown commands and options are usage errors (exit 2)", () => {
  const a = gpuwb("frobnicate");
  assert.equal(a.code, 2);
  assert.match(a.stderr, /unknown command "frobnicate"/);
  const b = gpuwb("status", "--bogus");
  assert.equal(b.code, 2);
  assert.match(b.stderr, /unknown option: --bogus.*gpuwb status --help/);
});

test("a missing Python exits 3 with a clear message", () => {
  const r = gpuwb("--python", "/nonexistent/python3", "status");
  assert.equal(r.code, 3);
  assert.match(r.stderr, /was not found.*--python PATH/);
  assert.doesNotMatch(r.stderr, /at .*\.js:\d+/, "no stack trace");
});

test("--version prints the version", () => {
  const r = gpuwb("--version");
  assert.equal(r.code, 0);
  assert.match(r.stdout, /^\d+\.\d+\.\d+\n$/);
});

test("parseOptions handles = and separate values, -h, and --", () => {
  const spec = [
    { name: "python", takesValue: true, help: "" },
    { name: "json", help: "" },
  ];
  assert.deepEqual(parseOptions(["--python=py", "--json", "x"], spec), {
    options: { python: "py", json: true },
    positionals: ["x"],
  });
  assert.deepEqual(parseOptions(["--python", "py", "-h", "--", "--json"], spec), {
    options: { python: "py", help: true },
    positionals: ["--json"],
  });
  assert.throws(() => parseOptions(["--python"], spec), UsageError);
  assert.throws(() => parseOptions(["--json=1"], spec), UsageError);
  assert.throws(() => parseOptions(["-x"], spec), UsageError);
});

test("commandIndex skips global options and their values", () => {
  assert.equal(commandIndex(["--python", "python3", "status"]), 2);
  assert.equal(commandIndex(["--verbose", "status", "--json"]), 1);
  assert.equal(commandIndex(["--help"]), -1);
});
