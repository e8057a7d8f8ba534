import assert from "node:assert/strict";
import { chmodSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { test } from "node:test";
import { firstUsablePython, isSupported, PythonError, parseVersion, probePython } from "../../src/backend/python";

function fakePython(body: string): string {
  const dir = mkdtempSync(path.join(tmpdir(), "gpuwb-fake-"));
  const p = path.join(dir, "python");
  writeFileSync(p, `#!/bin/sh\n${body}\n`);
  chmodSync(p, 0o755);
  return p;
}

test("parseVersion reads release and pre-release versions", () => {
  assert.deepEqual(parseVersion("3.11.7"), [3, 11, 7]);
  assert.deepEqual(parseVersion("3.13.0rc1"), [3, 13, 0]);
  assert.deepEqual(parseVersion("3.9"), [3, 9, 0]);
  assert.equal(parseVersion("banana"), undefined);
});

test("isSupported draws the line at 3.9", () => {
  assert.equal(isSupported("3.8.18"), false);
  assert.equal(isSupported("3.9.0"), true);
  assert.equal(isSupported("3.12.1"), true);
  assert.equal(isSupported("4.0.0"), true);
  assert.equal(isSupported("2.7.18"), false);
  assert.equal(isSupported(""), false);
});

test("probePython reports the real interpreter", async () => {
  const p = await probePython("python3");
  assert.ok(isSupported(p.version), p.version);
  assert.equal(p.implementation, "CPython");
  assert.ok(path.isAbsolute(p.executable));
});

test("a missing interpreter is reported as missing", async () => {
  await assert.rejects(probePython("/nonexistent/bin/python3"), (e: unknown) => {
    assert.ok(e instanceof PythonError);
    assert.equal(e.reason, "missing");
    assert.match(e.message, /was not found/);
    return true;
  });
});

test("a too old interpreter is reported with its version", async () => {
  const old = fakePython(
    `echo '{"executable": "/opt/py38/bin/python", "version": "3.8.18", "implementation": "CPython"}'`,
  );
  await assert.rejects(probePython(old), (e: unknown) => {
    assert.ok(e instanceof PythonError);
    assert.equal(e.reason, "tooOld");
    assert.match(e.message, /3\.8\.18.*too old.*3\.9 or later/);
    return true;
  });
});

test("something that is not Python is reported as broken", async () => {
  const notPython = fakePython("echo hello");
  await assert.rejects(probePython(notPython), (e: unknown) => e instanceof PythonError && e.reason === "broken");
  const failing = fakePython("echo boom >&2; exit 3");
  await assert.rejects(probePython(failing), (e: unknown) => e instanceof PythonError && e.reason === "broken");
});

test("firstUsablePython skips missing ones and prefers an informative error", async () => {
  const ok = await firstUsablePython(["/nonexistent/python", "python3"]);
  assert.ok(isSupported(ok.version));
  const old = fakePython(`echo '{"executable": "/x", "version": "3.7.0", "implementation": "CPython"}'`);
  await assert.rejects(firstUsablePython(["/nonexistent/a", old]), (e: unknown) => {
    return e instanceof PythonError && e.reason === "tooOld";
  });
  await assert.rejects(firstUsablePython(["/nonexistent/a", "/nonexistent/b"]), /No Python interpreter was found/);
});
