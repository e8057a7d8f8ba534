#!/usr/bin/env node
// UI tests: a real VS Code (server build) in Chromium, driven with clicks and keys the way
// a user works, with screenshots under test-results/ui/. Runs every test/ui/*.ui.mjs file
// (each exports `tests`: [{title, fn(env)}]).
//
//   node test/ui/run-ui.mjs [--workspace DIR] [--grep TEXT]
//
// Prints one line per test and closes with "N passed, N failed"; exit 0 iff all passed.
import { cpSync, mkdtempSync, readdirSync } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { pathToFileURL } from "node:url";
import { parseArgs } from "node:util";
import { ensureVsCodeServer } from "../runner/vscode-server.mjs";
import { log, ROOT, SHOTS } from "./lib.mjs";

const { values: opts } = parseArgs({ options: { workspace: { type: "string" }, grep: { type: "string" } } });
// Tests edit and save files: without --workspace they get a scratch copy of examples/.
const workspace = opts.workspace
  ? path.resolve(opts.workspace)
  : (() => {
      const copy = mkdtempSync(path.join(tmpdir(), "gpuwb-ui-ws-"));
      cpSync(path.join(ROOT, "examples"), copy, { recursive: true });
      return copy;
    })();
const dir = path.join(ROOT, "test", "ui");
const tests = [];
for (const f of readdirSync(dir)
  .filter((f) => f.endsWith(".ui.mjs"))
  .sort()) {
  const mod = await import(pathToFileURL(path.join(dir, f)).href);
  tests.push(...mod.tests);
}
const chosen = opts.grep ? tests.filter((t) => t.title.includes(opts.grep)) : tests;

const vscodeDir = await ensureVsCodeServer({ log });
let passed = 0;
let failed = 0;
for (const t of chosen) {
  const t0 = Date.now();
  try {
    await t.fn({ vscodeDir, workspace });
    passed++;
    log(`  ✔ ${t.title} (${((Date.now() - t0) / 1000).toFixed(1)} s)`);
  } catch (err) {
    failed++;
    log(`  ✖ ${t.title}\n    ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`);
  }
}
log(`screenshots: ${path.relative(ROOT, SHOTS)}/`);
log(`${passed} passed, ${failed} failed`);
process.exit(failed === 0 && passed > 0 ? 0 : 1);
