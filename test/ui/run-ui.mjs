#!/usr/bin/env node
// UI tests: a real VS Code (server build) in Chromium, driven with clicks and keys the way
// a user works, with screenshots under test-results/ui/.
//
//   node test/ui/run-ui.mjs [--workspace DIR]
//
// Prints one line per test and closes with "N passed, N failed"; exit 0 iff all passed.
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { ensureVsCodeServer, openWorkbench, startVsCodeServer } from "../runner/vscode-server.mjs";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..");
const SHOTS = path.join(ROOT, "test-results", "ui");
const { values: opts } = parseArgs({ options: { workspace: { type: "string" } } });
const workspace = path.resolve(opts.workspace ?? path.join(ROOT, "examples"));
const log = (l) => process.stdout.write(`${l}\n`);

const STATUS_READY = 'div.statusbar-item[aria-label="GPU Workbench backend: ready"]';
const STATUS_ERROR = 'div.statusbar-item[aria-label="GPU Workbench backend: error"]';

/** Run a command from the Command Palette by its title, as a user would. */
async function runFromPalette(page, title) {
  await page.keyboard.press("F1");
  const input = page.locator(".quick-input-widget input");
  await input.waitFor({ state: "visible", timeout: 15_000 });
  await input.fill(`>${title}`);
  const row = page.locator(".quick-input-list .monaco-list-row", { hasText: title }).first();
  await row.waitFor({ state: "visible", timeout: 15_000 });
  await page.keyboard.press("Enter");
}

/** Open a workspace file through Quick Open. */
async function openFile(page, name) {
  await page.keyboard.press("Control+P");
  const input = page.locator(".quick-input-widget input");
  await input.waitFor({ state: "visible", timeout: 15_000 });
  await input.fill(name);
  await page.locator(".quick-input-list .monaco-list-row", { hasText: name }).first().waitFor({ timeout: 15_000 });
  await page.keyboard.press("Enter");
  await page.locator(`.tab[aria-label*="${name}"]`).first().waitFor({ timeout: 15_000 });
}

const tests = [];
const test = (title, fn) => tests.push({ title, fn });

/** A fresh VS Code with the development extension, or with `vsix` installed instead. */
async function withWorkbench(vscodeDir, userSettings, fn, vsix) {
  const server = await startVsCodeServer({ vscodeDir, userSettings, log, installExtensions: vsix ? [vsix] : [] });
  let wb;
  try {
    wb = await openWorkbench({
      url: server.url,
      folder: workspace,
      extensionDevelopmentPath: vsix ? undefined : ROOT,
      screenshotsDir: SHOTS,
      log,
    });
    return await fn(wb);
  } catch (err) {
    await wb?.screenshot(`failure-${Date.now()}`).catch(() => {});
    log(server.logs().split("\n").slice(-40).join("\n"));
    throw err;
  } finally {
    await wb?.close();
    await server.stop();
  }
}

test("the backend status item turns ready, and a palette command shows the status", async (vscodeDir) => {
  await withWorkbench(vscodeDir, {}, async ({ page, screenshot }) => {
    await openFile(page, "quickstart.py");
    await page.locator(STATUS_READY).waitFor({ timeout: 90_000 });
    const text = await page.locator(STATUS_READY).first().innerText();
    if (!/GPU Workbench/.test(text)) throw new Error(`status item text: ${text}`);
    await runFromPalette(page, "GPU Workbench: Show Backend Status");
    const toast = page.locator(".notification-toast", { hasText: "GPU Workbench backend" });
    await toast.waitFor({ timeout: 30_000 });
    const message = await toast.innerText();
    if (!/is ready on Python 3\.\d+/.test(message)) throw new Error(`notification says: ${message}`);
    await page.locator(STATUS_READY).first().hover();
    await page.locator(".monaco-hover", { hasText: "GPU Workbench backend: ready" }).waitFor({ timeout: 15_000 });
    await screenshot("backend-ready");
  });
});

test("a missing Python shows one clear error with Select Python… and Show Logs", async (vscodeDir) => {
  const settings = { "gpuWorkbench.pythonPath": "/nonexistent/bin/python3" };
  await withWorkbench(vscodeDir, settings, async ({ page, screenshot }) => {
    await openFile(page, "quickstart.py");
    await page.locator(STATUS_ERROR).waitFor({ timeout: 90_000 });
    const toast = page.locator(".notification-toast", { hasText: "was not found" });
    await toast.waitFor({ timeout: 30_000 });
    for (const label of ["Select Python…", "Show Logs"]) {
      await toast.locator(".monaco-button", { hasText: label }).waitFor({ timeout: 5_000 });
    }
    if ((await page.locator(".notification-toast", { hasText: "was not found" }).count()) !== 1) {
      throw new Error("expected exactly one error notification");
    }
    const text = await toast.innerText();
    if (/at .*\.js:\d+|Traceback/.test(text)) throw new Error(`stack trace in the notification: ${text}`);
    await screenshot("python-missing");
    // The action opens the interpreter picker.
    await toast.locator(".monaco-button", { hasText: "Select Python…" }).click();
    await page.locator(".quick-input-widget", { hasText: "Enter interpreter path" }).waitFor({ timeout: 15_000 });
    await screenshot("select-python");
  });
});

test("the packaged .vsix installs into VS Code and its backend starts", async (vscodeDir) => {
  const build = spawnSync("npm", ["run", "package"], { cwd: ROOT, encoding: "utf8" });
  if (build.status !== 0) throw new Error(`npm run package failed:\n${build.stdout}\n${build.stderr}`);
  const version = JSON.parse(readFileSync(path.join(ROOT, "package.json"), "utf8")).version;
  const vsix = path.join(ROOT, `gpu-workbench-${version}.vsix`);
  try {
    await withWorkbench(
      vscodeDir,
      {},
      async ({ page, screenshot }) => {
        await openFile(page, "quickstart.py");
        await page.locator(STATUS_READY).waitFor({ timeout: 90_000 });
        await runFromPalette(page, "GPU Workbench: Show Backend Status");
        await page.locator(".notification-toast", { hasText: "is ready on Python" }).waitFor({ timeout: 30_000 });
        await screenshot("vsix-installed");
      },
      vsix,
    );
  } finally {
    // Leave development bundles (with test modules and source maps) for later layers.
    spawnSync(process.execPath, ["esbuild.mjs"], { cwd: ROOT });
  }
});

const vscodeDir = await ensureVsCodeServer({ log });
let passed = 0;
let failed = 0;
for (const t of tests) {
  const t0 = Date.now();
  try {
    await t.fn(vscodeDir);
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
