#!/usr/bin/env node
// Runs the same integration suites through @vscode/test-electron (desktop VS Code), for
// machines that can download VS Code (or have one: GPUWB_VSCODE_EXECUTABLE=/path/to/code).
//
//   node test/runner/run-electron.mjs [--workspace DIR] [--extension DIR] [--tests FILE]
//        [--vscode-version V]
//
// Same contract as run-integration.mjs: the tests module's run() writes its results JSON
// to $GPUWB_TEST_RESULTS; $GPUWB_TEST_GREP is passed through. Exit 0 iff failed == 0 and
// passed > 0.

import { existsSync } from "node:fs";
import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { printResults, readResults } from "./results.mjs";

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..");
const log = (line) => process.stdout.write(`${line}\n`);

const { values: opts } = parseArgs({
  options: {
    workspace: { type: "string" },
    extension: { type: "string" },
    tests: { type: "string" },
    "vscode-version": { type: "string" },
  },
});
const extension = path.resolve(opts.extension ?? repoRoot);
const workspace = path.resolve(opts.workspace ?? path.join(repoRoot, "examples"));
const tests = path.resolve(extension, opts.tests ?? "out/test/integration/index.js");

const NETWORK_ERROR =
  /ENOTFOUND|EAI_AGAIN|ECONNREFUSED|ECONNRESET|ETIMEDOUT|ENETUNREACH|EHOSTUNREACH|getaddrinfo|socket hang up|certificate|update\.code\.visualstudio\.com|Failed to (download|get)/i;

async function main() {
  for (const [what, p] of [
    ["extension", path.join(extension, "package.json")],
    ["tests module", tests],
    ["workspace", workspace],
  ]) {
    if (!existsSync(p)) throw new Error(`${what} not found: ${p}${what === "tests module" ? " (build first?)" : ""}`);
  }
  const { runTests } = await import("@vscode/test-electron");
  const tmp = await fs.mkdtemp(path.join(os.tmpdir(), "gpuwb-results-"));
  const resultsFile = path.join(tmp, "results.json");
  const t0 = Date.now();
  let exitCode;
  try {
    try {
      exitCode = await runTests({
        extensionDevelopmentPath: extension,
        extensionTestsPath: tests,
        launchArgs: [workspace, "--disable-extensions"],
        extensionTestsEnv: {
          GPUWB_TEST_RESULTS: resultsFile,
          ...(process.env.GPUWB_TEST_GREP ? { GPUWB_TEST_GREP: process.env.GPUWB_TEST_GREP } : {}),
        },
        ...(process.env.GPUWB_VSCODE_EXECUTABLE ? { vscodeExecutablePath: process.env.GPUWB_VSCODE_EXECUTABLE } : {}),
        ...(opts["vscode-version"] ? { version: opts["vscode-version"] } : {}),
      });
    } catch (err) {
      // runTests rejects when VS Code cannot be downloaded or started, and also (with
      // TestRunFailedError) when run() rejects; in the latter case results may exist.
      const results = await readResults(resultsFile);
      if (results) {
        printResults(results, log);
        return false;
      }
      const msg = String(err?.stack ?? err);
      if (!process.env.GPUWB_VSCODE_EXECUTABLE && NETWORK_ERROR.test(msg)) {
        log(
          [
            "[run-electron] @vscode/test-electron could not download VS Code (no internet access to",
            "update.code.visualstudio.com from this machine?).",
            "  - On this kind of machine use the code-server based runner instead:",
            "      node test/runner/run-integration.mjs",
            "  - Or point at an installed VS Code: GPUWB_VSCODE_EXECUTABLE=/path/to/code node test/runner/run-electron.mjs",
            `  cause: ${msg.split("\n")[0]}`,
          ].join("\n"),
        );
        return false;
      }
      throw err;
    }
    const results = await readResults(resultsFile);
    if (!results) {
      log(`[run-electron] VS Code exited with code ${exitCode} without writing ${resultsFile}`);
      return false;
    }
    const ok = printResults(results, log);
    log(`[run-electron] total ${((Date.now() - t0) / 1000).toFixed(1)}s`);
    return ok && exitCode === 0;
  } finally {
    await fs.rm(tmp, { recursive: true, force: true });
  }
}

main().then(
  (ok) => process.exit(ok ? 0 : 1),
  (err) => {
    log(`[run-electron] ${err?.stack ?? err}`);
    process.exit(1);
  },
);
