// UI tests of notebooks: open examples/notebook.ipynb in the browser VS Code, pick the
// GPU Workbench kernel from the notebook's kernel picker, Run All, and see the outputs.
import { cpSync, mkdtempSync, rmSync } from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { log, openFile, runFromPalette, withWorkbench } from "./lib.mjs";

export const tests = [];
const test = (title, fn) => tests.push({ title, fn });

/** A copy of the workspace, so running the notebook never touches examples/. */
function scratch(env) {
  const dir = mkdtempSync(path.join(os.tmpdir(), "gpuwb-ui-nb-"));
  cpSync(env.workspace, path.join(dir, "ws"), { recursive: true });
  return dir;
}

test("a notebook runs on the GPU Workbench kernel: Run All shows text, an image and the error", async (env) => {
  const dir = scratch(env);
  const settings = {
    // Kernels of this test live in its own data directory and end soon after it.
    "gpuWorkbench.dataDirectory": path.join(dir, "data"),
    "gpuWorkbench.kernels.idleTimeoutMinutes": 1,
  };
  try {
    await withWorkbench({ ...env, workspace: path.join(dir, "ws") }, settings, async ({ page, screenshot }) => {
      await openFile(page, "notebook.ipynb");
      const editor = page.locator(".notebookOverlay");
      await editor.waitFor({ timeout: 30_000 });
      await editor.locator(".cell-list-container").waitFor({ timeout: 30_000 });

      // The kernel picker: the toolbar button, then the GPU Workbench entry.
      // (Without the Jupyter extension it is already suggested; picking it is what a user does.)
      const picker = page.locator(".notebook-toolbar-container .kernel-action-view-item").first();
      await picker.waitFor({ timeout: 30_000 });
      await picker.click();
      const row = page.locator(".quick-input-list .monaco-list-row", { hasText: "GPU Workbench" }).first();
      await row.waitFor({ timeout: 30_000 });
      await row.click();
      const kernelButton = page.locator(".notebook-toolbar-container .kernel-label", { hasText: "GPU Workbench" });
      await kernelButton.first().waitFor({ timeout: 30_000 });
      log("    kernel selected");

      await page.locator('.notebook-toolbar-container a.action-label[aria-label^="Run All"]').first().click();
      await editor
        .locator(".cell-statusbar-container .codicon-notebook-state-success")
        .first()
        .waitFor({ timeout: 90_000 });
      // With the inputs collapsed, every cell's status and output fits on the screen.
      await runFromPalette(page, "Collapse All Cell Inputs");
      // Three cells succeed; the failing cell and the one after it (stopped by Run All) do not.
      await page.waitForFunction(
        ([s, f]) => document.querySelectorAll(s).length === 2 && document.querySelectorAll(f).length === 2,
        [
          ".notebookOverlay .cell-statusbar-container .codicon-notebook-state-success",
          ".notebookOverlay .cell-statusbar-container .codicon-notebook-state-error",
        ],
        { timeout: 90_000 },
      );

      // Outputs render in the notebook's webview: find the text, the image and the error there.
      const outputs = page.frameLocator("iframe.webview.ready").frameLocator("iframe#active-frame");
      await outputs.locator("text=Hello from Python").first().waitFor({ timeout: 30_000 });
      await outputs.locator("img").first().waitFor({ timeout: 30_000 });
      await outputs.locator("text=this error is on purpose").first().waitFor({ timeout: 30_000 });
      log("    outputs: text, image and error shown");
      await screenshot("notebook");
    });
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
