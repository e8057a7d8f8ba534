// UI tests of the foundation: the backend status item, a palette command, the missing-Python
// error, and the packaged .vsix installed into VS Code.
import { spawnSync } from "node:child_process";
import { readFileSync } from "node:fs";
import * as path from "node:path";
import { openFile, ROOT, runFromPalette, STATUS_ERROR, STATUS_READY, withWorkbench } from "./lib.mjs";

export const tests = [];
const test = (title, fn) => tests.push({ title, fn });

test("the backend status item turns ready, and a palette command shows the status", async (env) => {
  await withWorkbench(env, {}, async ({ page, screenshot }) => {
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

test("a missing Python shows one clear error with Select Python… and Show Logs", async (env) => {
  const settings = { "gpuWorkbench.pythonPath": "/nonexistent/bin/python3" };
  await withWorkbench(env, settings, async ({ page, screenshot }) => {
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

test("the packaged .vsix installs into VS Code and its backend starts", async (env) => {
  const build = spawnSync("npm", ["run", "package"], { cwd: ROOT, encoding: "utf8" });
  if (build.status !== 0) throw new Error(`npm run package failed:\n${build.stdout}\n${build.stderr}`);
  const version = JSON.parse(readFileSync(path.join(ROOT, "package.json"), "utf8")).version;
  const vsix = path.join(ROOT, `gpu-workbench-${version}.vsix`);
  try {
    await withWorkbench(
      env,
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
