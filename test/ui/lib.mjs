// Shared helpers for the UI tests (test/ui/*.ui.mjs): a fresh VS Code in Chromium driven
// like a user, with screenshots under test-results/ui/.
import { spawnSync } from "node:child_process";
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { openWorkbench, startVsCodeServer } from "../runner/vscode-server.mjs";

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..", "..");
export const SHOTS = path.join(ROOT, "test-results", "ui");
export const log = (l) => process.stdout.write(`${l}\n`);

export const STATUS_READY = 'div.statusbar-item[aria-label="GPU Workbench backend: ready"]';
export const STATUS_ERROR = 'div.statusbar-item[aria-label="GPU Workbench backend: error"]';

/** Run a command from the Command Palette by its title, as a user would. */
export async function runFromPalette(page, title) {
  await page.keyboard.press("F1");
  const input = page.locator(".quick-input-widget input");
  await input.waitFor({ state: "visible", timeout: 15_000 });
  await input.fill(`>${title}`);
  const row = page.locator(".quick-input-list .monaco-list-row", { hasText: title }).first();
  await row.waitFor({ state: "visible", timeout: 15_000 });
  await page.keyboard.press("Enter");
}

/** The texts of the editor's inline result notes (rendered as ::after content). */
export function inlineNotes(page) {
  return page.evaluate(() => {
    const out = [];
    for (const el of document.querySelectorAll(".monaco-editor .view-lines span")) {
      const c = getComputedStyle(el, "::after").content;
      if (c && c !== "none" && c !== "normal") out.push(c.replace(/^"|"$/g, ""));
    }
    return out;
  });
}

export async function waitForNotes(page, predicate, what, timeoutMs = 60_000) {
  const t0 = Date.now();
  let notes = [];
  while (Date.now() - t0 < timeoutMs) {
    notes = await inlineNotes(page);
    if (predicate(notes)) return notes;
    await page.waitForTimeout(200);
  }
  throw new Error(`timed out waiting for ${what}; inline notes: ${JSON.stringify(notes)}`);
}

/** Poll `fn` until it resolves truthy (not an Error); throws naming `what` after the timeout. */
export async function poll(what, fn, timeoutMs = 90_000) {
  const start = Date.now();
  let last;
  while (Date.now() - start < timeoutMs) {
    last = await fn().catch((e) => e);
    if (last && !(last instanceof Error)) return last;
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`timed out waiting for ${what}${last instanceof Error ? `: ${last.message}` : ""}`);
}

/** Developer: Reload Window, then wait for the workbench and the backend to be ready again. */
export async function reloadWindow(page) {
  await page.keyboard.press("F1");
  await page.locator(".quick-input-widget input").fill(">Developer: Reload Window");
  await page.locator(".quick-input-list .monaco-list-row", { hasText: "Reload Window" }).first().waitFor();
  await page.keyboard.press("Enter");
  await page.waitForTimeout(1000);
  await page.waitForSelector(".monaco-workbench", { timeout: 60_000 });
  await page.locator(STATUS_READY).waitFor({ timeout: 90_000 });
}

/** Open a workspace file through Quick Open. */
export async function openFile(page, name) {
  await page.keyboard.press("Control+P");
  const input = page.locator(".quick-input-widget input");
  await input.waitFor({ state: "visible", timeout: 15_000 });
  await input.fill(name);
  await page.locator(".quick-input-list .monaco-list-row", { hasText: name }).first().waitFor({ timeout: 15_000 });
  await page.keyboard.press("Enter");
  await page.locator(`.tab[aria-label*="${name}"]`).first().waitFor({ timeout: 15_000 });
}

/** A fresh VS Code with the development extension, or with `vsix` installed instead. */
export async function withWorkbench({ vscodeDir, workspace }, userSettings, fn, vsix) {
  // Kernels are detached and outlive the window by design: give each workbench its own data
  // directory and shut its kernels down afterwards, so tests leave no processes behind.
  const dataDir = mkdtempSync(path.join(tmpdir(), "gpuwb-ui-data-"));
  const settings = { "gpuWorkbench.dataDirectory": dataDir, ...userSettings };
  const server = await startVsCodeServer({
    vscodeDir,
    userSettings: settings,
    log,
    installExtensions: vsix ? [vsix] : [],
  });
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
    spawnSync(
      process.execPath,
      [path.join(ROOT, "dist", "cli.js"), "--data-dir", dataDir, "kernels", "kill", "--all"],
      {
        timeout: 60_000,
      },
    );
  }
}
