// UI test of GPU machines, driven like a user against moto's EC2 server on loopback: the
// GPU Machines activity-bar view, "Create GPU Machine…" through its quick picks and the
// modal price confirmation, the new machine in the tree and its cost in the status bar.
// Screenshots: test-results/ui/vms-*.png.
import { spawn } from "node:child_process";
import * as net from "node:net";
import { log, poll, runFromPalette, withWorkbench } from "./lib.mjs";

export const tests = [];
const test = (title, fn) => tests.push({ title, fn });

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once("error", reject);
    s.listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

async function pick(page, text) {
  const input = page.locator(".quick-input-widget input");
  await input.waitFor({ state: "visible", timeout: 15_000 });
  await input.fill(text);
  await page.locator(".quick-input-list .monaco-list-row", { hasText: text }).first().waitFor({ timeout: 30_000 });
  await page.keyboard.press("Enter");
}

test("vms: the GPU Machines view, a machine created through the wizard, and its cost in the status bar", async (env) => {
  const port = await freePort();
  const moto = spawn(
    process.env.GPUWB_TEST_PYTHON || "python3",
    ["-m", "moto.server", "-H", "127.0.0.1", "-p", String(port)],
    {
      stdio: "ignore",
    },
  );
  const url = `http://127.0.0.1:${port}`;
  const saved = { ...process.env };
  // The VS Code server passes its environment to the extension host and so to the backend.
  Object.assign(process.env, {
    AWS_ACCESS_KEY_ID: "testing",
    AWS_SECRET_ACCESS_KEY: "testing",
    AWS_DEFAULT_REGION: "us-east-1",
    AWS_EC2_METADATA_DISABLED: "true",
  });
  try {
    await poll("moto", () => fetch(`${url}/moto-api/`).then((r) => r.ok || r.status > 0), 30_000);
    const settings = {
      "gpuWorkbench.vms.aws.endpointUrl": url,
      "gpuWorkbench.vms.aws.regions": ["us-east-1"],
      "gpuWorkbench.vms.refreshSeconds": 5,
    };
    await withWorkbench(env, settings, async ({ page, screenshot }) => {
      await page.locator('.activitybar .action-item a[aria-label^="GPU Machines"]').first().click();
      const view = page.locator(".pane", { has: page.locator(".pane-header", { hasText: /GPU Machines/i }) }).first();
      await view.waitFor({ timeout: 30_000 });
      await view.locator(".monaco-list-row", { hasText: "AWS" }).first().waitFor({ timeout: 90_000 });

      await runFromPalette(page, "GPU Workbench: Create GPU Machine");
      await pick(page, "AWS");
      await pick(page, "us-east-1");
      await pick(page, "g4dn.xlarge");
      await pick(page, "On-demand");
      const input = page.locator(".quick-input-widget input");
      await input.waitFor({ state: "visible", timeout: 15_000 });
      await input.fill("ui-t4-box");
      await page.keyboard.press("Enter");
      // The modal states the hourly price before anything is created.
      const dialog = page.locator(".monaco-dialog-box");
      await dialog.waitFor({ timeout: 15_000 });
      const text = await dialog.innerText();
      if (!/\$0\.53\/h/.test(text)) throw new Error(`the confirmation does not show the price: ${text}`);
      await screenshot("vms-create-confirm");
      await dialog.locator(".monaco-button", { hasText: "Create" }).first().click();

      const row = view.locator(".monaco-list-row", { hasText: "ui-t4-box" }).first();
      await row.waitFor({ timeout: 90_000 });
      await poll("the machine's description", async () =>
        /g4dn\.xlarge · NVIDIA T4 · us-east-1 · \$0\.53\/h/.test(await row.innerText()),
      );
      const status = page.locator(".statusbar-item", { hasText: "ui-t4-box" }).first();
      await status.waitFor({ timeout: 60_000 });
      const statusText = await status.innerText();
      log(`status bar: ${statusText}`);
      if (!/ui-t4-box .*· \$0\.53\/h/.test(statusText)) throw new Error(`unexpected status text: ${statusText}`);
      await row.hover();
      await screenshot("vms-tree-status");
    });
  } finally {
    moto.kill();
    for (const k of Object.keys(process.env)) if (!(k in saved)) delete process.env[k];
  }
});
