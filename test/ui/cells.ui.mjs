// UI tests of cells in a Python file: Shift+Enter through the quickstart with results shown
// under each cell, and a window reload during a long cell that loses none of its output.
import { openFile, reloadWindow, STATUS_READY, waitForNotes, withWorkbench } from "./lib.mjs";

export const tests = [];
const test = (title, fn) => tests.push({ title, fn });

test("Shift+Enter through the quickstart shows a result under each cell", async (env) => {
  await withWorkbench(env, {}, async ({ page, screenshot }) => {
    await openFile(page, "quickstart.py");
    await page.locator(STATUS_READY).waitFor({ timeout: 90_000 });
    // Cursor at the top: the comment-only header, then each cell in turn.
    await page.locator(".monaco-editor .view-lines").first().click();
    await page.keyboard.press("Control+Home");
    // Each Shift+Enter moves the cursor to the next cell: wait for that before the next
    // press, so a busy machine cannot make two presses run the same cell.
    const cursor = page.locator(".statusbar-item", { hasText: /^Ln \d+, Col \d+/ }).first();
    for (let i = 0; i < 5; i++) {
      const before = await cursor.textContent({ timeout: 5_000 }).catch(() => null);
      await page.keyboard.press("Shift+Enter");
      const t0 = Date.now();
      while (before !== null && Date.now() - t0 < 15_000) {
        const now = await cursor.textContent({ timeout: 5_000 }).catch(() => null);
        if (now !== before) break;
        await page.waitForTimeout(100);
      }
      await page.waitForTimeout(200);
    }
    // The editor renders only the lines in view: check the last cells, then the first.
    await waitForNotes(
      page,
      (n) => n.some((t) => /→ 285$/.test(t)) && n.some((t) => /^✓ .*→ \[image\/png\]/.test(t)),
      "the plot and the final result (285)",
    );
    await screenshot("cells-inline");
    await page.keyboard.press("Control+Home");
    await waitForNotes(page, (n) => n.some((t) => /^✓ .*Python 3\.\d+/.test(t)), "the first cell's printed line");
  });
});

test("a window reload during a long cell loses none of its output", async (env) => {
  // Typed code keeps exactly the indentation typed here.
  const settings = { "editor.autoIndent": "none", "editor.acceptSuggestionOnEnter": "off" };
  await withWorkbench(env, settings, async ({ page, screenshot }) => {
    await openFile(page, "quickstart.py");
    await page.locator(STATUS_READY).waitFor({ timeout: 90_000 });
    // A new long cell at the end of the file.
    await page.locator(".monaco-editor .view-lines").first().click();
    await page.keyboard.press("Control+End");
    await page.keyboard.type("\n# %% long\nimport time\nfor i in range(25):\n", { delay: 5 });
    await page.keyboard.type("    print('tick', i, flush=True)\n    time.sleep(0.2)\n", { delay: 5 });
    await page.keyboard.press("Control+s");
    await page.keyboard.press("ArrowUp");
    await page.keyboard.press("Control+Enter");
    await waitForNotes(page, (n) => n.some((t) => t.startsWith("⟳ running")), "the long cell to run");
    // Reload the window while it runs.
    await reloadWindow(page);
    const notes = await waitForNotes(
      page,
      (n) => n.some((t) => /^✓ .*tick 24$/.test(t)),
      "the long cell's result after the reload",
    );
    await screenshot("cells-after-reload");
    if (!notes.length) throw new Error("no notes");
  });
});
