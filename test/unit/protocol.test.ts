// The TypeScript protocol declaration and the Python one must agree.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { readFileSync } from "node:fs";
import * as path from "node:path";
import { test } from "node:test";
import { ERROR_KINDS, fieldPaths, PROTOCOL_SPEC } from "../../src/protocol";

const root = process.cwd();

interface PySpec {
  version: string;
  methods: Record<string, { kind: string; params: string[] | null; result: string[] | null }>;
  errorKinds: Record<string, number>;
}

function pythonSpec(): PySpec {
  const out = execFileSync(process.env.GPUWB_TEST_PYTHON ?? "python3", ["-m", "gpu_workbench.protocol"], {
    cwd: path.join(root, "server-python"),
    encoding: "utf8",
  });
  return JSON.parse(out);
}

test("both sides declare the same methods", () => {
  const py = pythonSpec();
  assert.deepEqual(Object.keys(py.methods).sort(), Object.keys(PROTOCOL_SPEC).sort());
});

test("each method has the same kind and field names on both sides", () => {
  const py = pythonSpec();
  for (const [name, ts] of Object.entries(PROTOCOL_SPEC)) {
    const p = py.methods[name];
    assert.ok(p, `${name} missing in protocol.py`);
    assert.equal(p.kind, ts.kind, `${name}: kind`);
    assert.deepEqual(p.params ?? [], fieldPaths(ts.params), `${name}: params`);
    assert.deepEqual(p.result ?? [], fieldPaths(ts.result), `${name}: result`);
  }
});

test("error kinds and codes agree and stay clear of reserved LSP codes", () => {
  const py = pythonSpec();
  assert.deepEqual(py.errorKinds, { ...ERROR_KINDS });
  for (const code of Object.values(ERROR_KINDS) as number[]) {
    assert.ok(code <= -32000 && code > -32100, `${code} is in the server error range`);
    assert.ok(code !== -32001 && code !== -32002, `${code} collides with LSP`);
  }
});

test("the backend's version is the extension's version", () => {
  const pkg = JSON.parse(readFileSync(path.join(root, "package.json"), "utf8"));
  assert.equal(pythonSpec().version, pkg.version);
});

test("fieldPaths flattens nested shapes, sorted", () => {
  assert.deepEqual(fieldPaths({ b: true, a: { y: true, x: true } }), ["a.x", "a.y", "b"]);
  assert.deepEqual(fieldPaths(null), []);
});
