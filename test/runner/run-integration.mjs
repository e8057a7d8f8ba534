#!/usr/bin/env node
// Runs an extension's integration suites inside a real VS Code (1.100.3 server + Chromium).
//
//   node test/runner/run-integration.mjs [--workspace DIR] [--extension DIR]
//        [--tests FILE] [--timeout-ms N] [--user-settings JSON] [--workspace-trust] [--headed]
//
// The tests module (default <extension>/out/test/integration/index.js) exports run(), the
// same contract as @vscode/test-electron, and writes its results as JSON to the file named
// by $GPUWB_TEST_RESULTS: {passed, failed, pending, failures:[{title, error}],
// tests:[{title, state, durationMs}]}. $GPUWB_TEST_GREP is passed through to it.
// Exit code: 0 iff failed == 0 and passed > 0.

import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import fs from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { printResults, readResults } from "./results.mjs";
import { ensureVsCodeServer, openWorkbench, startVsCodeServer } from "./vscode-server.mjs";

const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..");
const log = (line) => process.stdout.write(`${line}\n`);

const { values: opts } = parseArgs({
  options: {
    workspace: { type: "string" },
    extension: { type: "string" },
    tests: { type: "string" },
    "timeout-ms": { type: "string" },
    "user-settings": { type: "string" },
    "workspace-trust": { type: "boolean", default: false },
    headed: { type: "boolean", default: false },
    help: { type: "boolean", short: "h", default: false },
  },
});
if (opts.help) {
  log(
    "usage: node test/runner/run-integration.mjs [--workspace DIR] [--extension DIR] [--tests FILE] [--timeout-ms N] [--user-settings JSON] [--workspace-trust] [--headed]",
  );
  process.exit(0);
}

const extension = path.resolve(opts.extension ?? repoRoot);
// Installed next to the extension: a stand-in for the Open Remote - SSH extension's command and
// setting (test/fixtures/remote-ssh-standin/README.md), for the remoteSsh suite. Installed from
// a .vsix packed here, not passed as a second extensionDevelopmentPath: this VS Code web build
// loads only the last `extensionDevelopmentPath` of the workbench payload.
const remoteSshStandIn = path.join(repoRoot, "test", "fixtures", "remote-ssh-standin");
const workspace = path.resolve(opts.workspace ?? path.join(repoRoot, "examples"));
const tests = path.resolve(extension, opts.tests ?? "out/test/integration/index.js");
const timeoutMs = Number(opts["timeout-ms"] ?? 10 * 60_000);
const resultsDir = path.join(repoRoot, "test-results");
const endScreenshot = path.join(resultsDir, "integration-end.png");
let userSettings;
if (opts["user-settings"]) userSettings = JSON.parse(opts["user-settings"]);

function tail(text, lines = 80) {
  return text.split("\n").slice(-lines).join("\n");
}

async function main() {
  for (const [what, p] of [
    ["extension", path.join(extension, "package.json")],
    ["tests module", tests],
    ["workspace", workspace],
    ["Remote-SSH stand-in", path.join(remoteSshStandIn, "package.json")],
  ]) {
    if (!existsSync(p)) throw new Error(`${what} not found: ${p}${what === "tests module" ? " (build first?)" : ""}`);
  }
  const tmp = await fs.mkdtemp(path.join(os.tmpdir(), "gpuwb-results-"));
  const resultsFile = path.join(tmp, "results.json");
  const standInVsix = path.join(tmp, "remote-ssh-standin.vsix");
  execFileSync(
    path.join(repoRoot, "node_modules", ".bin", "vsce"),
    ["package", "--no-dependencies", "--allow-missing-repository", "--skip-license", "--out", standInVsix],
    { cwd: remoteSshStandIn, stdio: ["ignore", "pipe", "pipe"] },
  );
  const t0 = Date.now();
  const vscodeDir = await ensureVsCodeServer({ log });
  let server;
  let wb;
  let ok = false;
  try {
    server = await startVsCodeServer({
      vscodeDir,
      env: { GPUWB_TEST_RESULTS: resultsFile },
      userSettings,
      workspaceTrust: opts["workspace-trust"],
      installExtensions: [standInVsix],
      log,
    });
    const logStart = server.logs().length;
    wb = await openWorkbench({
      url: server.url,
      folder: workspace,
      extensionDevelopmentPath: extension,
      extensionTestsPath: tests,
      screenshotsDir: resultsDir,
      headless: !opts.headed,
      log,
    });
    log(`[run-integration] running ${tests}`);
    const deadline = t0 + timeoutMs;
    let results;
    let exitSeenAt;
    while (Date.now() < deadline) {
      results = await readResults(resultsFile);
      if (results) break;
      const exit = server
        .logs()
        .slice(logStart)
        .match(/Extension Host Process exited with code: (-?\d+|null)/);
      if (exit && !exitSeenAt) exitSeenAt = Date.now();
      // The results file is written before run() settles; allow a moment for the last write.
      if (exitSeenAt && Date.now() - exitSeenAt > 3000) {
        log(`[run-integration] the extension host exited (code ${exit[1]}) without writing ${resultsFile}`);
        log(`--- VS Code server log (tail) ---\n${tail(server.logs())}`);
        break;
      }
      if (server.exited()) {
        log(`[run-integration] the VS Code server exited: ${JSON.stringify(server.exited())}`);
        log(`--- VS Code server log (tail) ---\n${tail(server.logs())}`);
        break;
      }
      await new Promise((r) => setTimeout(r, 250));
    }
    if (results) {
      ok = printResults(results, log);
    } else if (!exitSeenAt && !server.exited()) {
      log(`[run-integration] timed out after ${timeoutMs} ms waiting for ${resultsFile}`);
      log(`--- VS Code server log (tail) ---\n${tail(server.logs())}`);
    }
    log(`[run-integration] total ${((Date.now() - t0) / 1000).toFixed(1)}s`);
  } finally {
    if (wb) {
      const shot = await wb
        .screenshot(path.basename(endScreenshot))
        .catch((e) => log(`screenshot failed: ${e.message}`));
      if (shot) log(`[run-integration] screenshot: ${path.relative(process.cwd(), shot) || shot}`);
      await wb.close();
    }
    if (server) await server.stop();
    await fs.rm(tmp, { recursive: true, force: true });
  }
  return ok;
}

main().then(
  (ok) => process.exit(ok ? 0 : 1),
  (err) => {
    log(`[run-integration] ${err?.stack ?? err}`);
    process.exit(1);
  },
);
