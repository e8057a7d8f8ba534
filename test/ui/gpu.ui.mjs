// UI test of GPU health over the stand-in libnvidia-ml (server-python/tests/gpu/fake_nvml.py),
// driven like a user: the status item and its tooltip, a click that opens the GPU panel with
// live charts, and "Run Health Checks" in it, which shows the report.
// Screenshots: test-results/ui/gpu-*.png.
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, renameSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { log, poll, ROOT, runFromPalette, withWorkbench } from "./lib.mjs";

export const tests = [];
const test = (title, fn) => tests.push({ title, fn });

/** The frame (webviews are nested iframes) in which `predicate` holds; it runs in the frame. */
async function webviewFrame(page, what, predicate) {
  return poll(what, async () => {
    for (const f of page.frames()) {
      if (await f.evaluate(predicate).catch(() => false)) return f;
    }
    return undefined;
  });
}

function gpuLine(index, values) {
  return `gpu ${index} ${Object.entries(values)
    .map(([k, v]) => `${k}=${v}`)
    .join(" ")}`;
}

const SCRIPT = [
  "driver 550.54.15",
  "cuda 12040",
  gpuLine(0, {
    uuid: "GPU-0000",
    util: 87,
    memutil: 40,
    mem_used: 65498251264,
    mem_total: 85899345920,
    temp: 71,
    power_mw: 350000,
    limit_mw: 700000,
  }),
  gpuLine(1, {
    uuid: "GPU-0001",
    util: 39,
    memutil: 20,
    mem_used: 80530636800,
    mem_total: 85899345920,
    temp: 82,
    power_mw: 610000,
    limit_mw: 700000,
    reasons: "0x8",
  }),
  "name 0 NVIDIA H100 80GB HBM3",
  "name 1 NVIDIA H100 80GB HBM3",
  "proc 0 4242 8589934592",
  "proc 1 5151 75161927680",
  "",
].join("\n");

test("gpu: the status item and its tooltip, the GPU panel's charts, and the health check report", async (env) => {
  const dir = mkdtempSync(path.join(tmpdir(), "gpuwb-ui-gpu-"));
  const python = process.env.GPUWB_TEST_PYTHON || "python3";
  const lib = path.join(dir, "lib");
  const built = spawnSync(
    python,
    [path.join(ROOT, "server-python", "tests", "gpu", "fake_nvml.py"), "build", "--out", lib],
    {
      encoding: "utf8",
      timeout: 120_000,
    },
  );
  if (built.status !== 0 || !existsSync(path.join(lib, "libnvidia-ml.so.1"))) {
    throw new Error(`could not build the stand-in libnvidia-ml: ${built.stderr}`);
  }
  const script = path.join(dir, "nvml.script");
  writeFileSync(`${script}.tmp`, SCRIPT);
  renameSync(`${script}.tmp`, script);
  const saved = { ...process.env };
  // The VS Code server passes its environment to the extension host and so to the backend.
  process.env.LD_LIBRARY_PATH = saved.LD_LIBRARY_PATH ? `${lib}:${saved.LD_LIBRARY_PATH}` : lib;
  process.env.GPUWB_FAKE_NVML_SCRIPT = script;
  try {
    await withWorkbench(env, { "gpuWorkbench.gpu.intervalSeconds": 1 }, async ({ page, screenshot }) => {
      const item = page.locator(".statusbar-item", { hasText: /2 GPUs \d+% · / }).first();
      await item.waitFor({ timeout: 90_000 });
      const text = await item.innerText();
      log(`status bar: ${text}`);
      if (!/2 GPUs 63% · 75\/80 GiB · 82°C/.test(text)) throw new Error(`unexpected status text: ${text}`);
      await item.hover();
      const hover = page.locator(".monaco-hover", { hasText: "GPU health" }).first();
      await hover.waitFor({ timeout: 15_000 });
      const tip = await hover.innerText();
      if (!/NVIDIA H100 80GB HBM3/.test(tip) || !/slow/i.test(tip)) throw new Error(`unexpected tooltip: ${tip}`);
      await screenshot("gpu-status-tooltip");

      await page.mouse.move(600, 300);
      await item.click();
      const panel = await webviewFrame(page, "the GPU panel with two GPUs", () => {
        const cards = document.querySelectorAll(".gpu-card");
        return cards.length === 2 && document.querySelectorAll(".gpu-chart canvas").length === 4;
      });
      // A few samples, so the charts draw lines.
      await new Promise((r) => setTimeout(r, 6000));
      await screenshot("gpu-panel");

      await panel.locator("button", { hasText: "Run Health Checks" }).click();
      await webviewFrame(
        page,
        "the health check report",
        () => document.querySelectorAll(".gpu-check tbody tr").length > 0,
      );
      await new Promise((r) => setTimeout(r, 500));
      await screenshot("gpu-check");

      // A window reload restores both panels: the report from the view's saved state, the
      // charts from the backend's history. (Reload Window saves the layout first; a bare
      // page reload in the browser may not.)
      await page.waitForTimeout(1000);
      await runFromPalette(page, "Developer: Reload Window");
      await page.waitForTimeout(1000);
      await page.locator(".monaco-workbench").waitFor({ timeout: 60_000 });
      await page.locator(".tab", { hasText: "GPU Health Check" }).first().click({ timeout: 60_000 });
      await webviewFrame(
        page,
        "the report after a reload",
        () => document.querySelectorAll(".gpu-check tbody tr").length > 0,
      );
      await page
        .locator(".tab", { hasText: /^GPU · Local$/ })
        .first()
        .click({ timeout: 30_000 });
      await webviewFrame(
        page,
        "the GPU panel after a reload",
        () => document.querySelectorAll(".gpu-card").length === 2,
      );
    });
  } finally {
    for (const k of Object.keys(process.env)) if (!(k in saved)) delete process.env[k];
    for (const [k, v] of Object.entries(saved)) process.env[k] = v;
  }
});
