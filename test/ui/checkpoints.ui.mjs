// UI tests of the checkpoint inspector, driven like a user: the Checkpoints view in the
// GPU Workbench sidebar, a click that opens the inspector, statistics with a histogram from
// the keyboard, the unsafe banner, and a comparison picked from the Command Palette.
// Screenshots: test-results/ui/checkpoints-*.png.
import { log, poll, runFromPalette, withWorkbench } from "./lib.mjs";

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

/** The Checkpoints view's pane in the GPU Workbench sidebar. */
function checkpointsPane(page) {
  return page.locator(".pane", { has: page.locator(".pane-header", { hasText: /^Checkpoints/ }) });
}

async function showSidebar(page) {
  await page.locator('.activitybar .action-item a[aria-label^="GPU Workbench"]').first().click();
  const pane = checkpointsPane(page);
  await pane.waitFor({ timeout: 30_000 });
  // Expand the pane if it starts collapsed.
  const header = pane.locator(".pane-header").first();
  if ((await header.getAttribute("aria-expanded")) === "false") await header.click();
  return pane;
}

async function pick(page, text) {
  const input = page.locator(".quick-input-widget input");
  await input.waitFor({ state: "visible", timeout: 15_000 });
  await input.fill(text);
  await page.locator(".quick-input-list .monaco-list-row", { hasText: text }).first().waitFor({ timeout: 30_000 });
  await page.keyboard.press("Enter");
}

test("checkpoints: the view lists checkpoints, a click inspects one, statistics draw a histogram, a diff compares two", async (env) => {
  await withWorkbench(env, {}, async ({ page, screenshot }) => {
    const pane = await showSidebar(page);
    // Lazily read details arrive: the Lightning checkpoint shows its epoch and step.
    const lightning = pane.locator(".monaco-list-row", { hasText: "lightning-epoch3.ckpt" }).first();
    await lightning.waitFor({ timeout: 90_000 });
    await pane.locator(".monaco-list-row", { hasText: "epoch 3 · step 1,200" }).first().waitFor({ timeout: 90_000 });
    await pane.locator(".monaco-list-row", { hasText: "sharded-tiny-lm/" }).first().waitFor({ timeout: 30_000 });
    const rows = await pane.locator(".monaco-list-row").allInnerTexts();
    log(`    tree: ${rows.map((r) => r.replace(/\s+/g, " ")).join(" | ")}`);
    if (rows.some((r) => /-00001-of-/.test(r))) throw new Error("a shard is listed on its own");
    // A tree tooltip shows after the hover delay, and not at all when the pointer was already
    // resting on the row (or the row re-rendered under it): move away and hover again.
    const hover = page
      .locator(".monaco-hover", { hasText: "Lightning" })
      .or(page.locator(".monaco-hover", { hasText: "1,200" }))
      .first();
    for (let attempt = 1; ; attempt++) {
      await page.mouse.move(5, 5);
      await lightning.hover();
      try {
        await hover.waitFor({ timeout: 10_000 });
        break;
      } catch (err) {
        if (attempt === 3) throw err;
      }
    }
    await screenshot("checkpoints-tree");

    // A click opens the inspector.
    await pane.locator(".monaco-list-row", { hasText: "tiny-lm.safetensors" }).first().click();
    const inspector = await webviewFrame(
      page,
      "the inspector of tiny-lm.safetensors",
      () =>
        document.title === "tiny-lm.safetensors" &&
        document.querySelectorAll(".ck-card").length > 3 &&
        document.querySelectorAll(".vt-row").length > 3,
    );
    const cards = await inspector.locator(".ck-card").allInnerTexts();
    log(`    cards: ${cards.map((c) => c.replace(/\s+/g, " ")).join(" | ")}`);
    if (!cards.some((c) => /FORMAT\s+safetensors/i.test(c))) throw new Error(`format card: ${cards.join(" / ")}`);
    await screenshot("checkpoints-inspector");

    // Keyboard: filter, arrow into the table, Enter computes statistics of that tensor.
    await inspector.locator("input.ck-filter").click();
    await page.keyboard.type("embed");
    await poll("the filter to apply", async () =>
      (await inspector.locator(".vt-row").count()) === 1 ? true : undefined,
    );
    await page.keyboard.press("ArrowDown");
    await page.keyboard.press("Enter");
    await inspector.locator(".ck-stats dd").first().waitFor({ timeout: 60_000 });
    await poll("the histogram", async () =>
      (await inspector.locator(".ck-chart canvas").evaluate((c) => c.width > 0 && !c.closest("[hidden]")))
        ? true
        : undefined,
    );
    await inspector.locator(".ck-chart").scrollIntoViewIfNeeded();
    const stats = await inspector.locator(".ck-stats").innerText();
    log(`    stats: ${stats.replace(/\s+/g, " ")}`);
    await screenshot("checkpoints-histogram");

    // The Lightning checkpoint: its training metadata, and the module tree expanded with keys.
    await pane.locator(".monaco-list-row", { hasText: "lightning-epoch3.ckpt" }).first().click();
    const lightningView = await webviewFrame(
      page,
      "the inspector of lightning-epoch3.ckpt",
      () => document.title === "lightning-epoch3.ckpt" && document.querySelectorAll(".ck-card").length > 3,
    );
    await lightningView.locator("#tab-metadata").click();
    await lightningView.locator("#panel-metadata h3", { hasText: "Optimizer" }).waitFor({ timeout: 15_000 });
    await screenshot("checkpoints-metadata");
    await lightningView.locator("#tab-modules").click();
    const twisty = lightningView.locator(".mod-twisty:not([disabled])").first();
    await twisty.focus();
    await page.keyboard.press("Enter");
    await lightningView
      .locator('.ck-module[aria-expanded="true"] .ck-modules .mod-line')
      .first()
      .waitFor({ timeout: 15_000 });
    await screenshot("checkpoints-modules");

    // The unsafe pickle: a red banner naming what it would import.
    await pane.locator(".monaco-list-row", { hasText: "unsafe-pickle.pt" }).first().click();
    const unsafe = await webviewFrame(page, "the unsafe banner", () => {
      const b = document.querySelector(".ck-banner.unsafe");
      return !!b && !b.hidden;
    });
    const banner = await unsafe.locator(".ck-banner.unsafe").innerText();
    if (!banner.includes("os.system")) throw new Error(`banner: ${banner}`);
    await screenshot("checkpoints-unsafe");

    // Compare from the Command Palette: two picks from the workspace's checkpoints.
    await runFromPalette(page, "GPU Workbench: Compare Checkpoints…");
    await pick(page, "tiny-lm.safetensors");
    await pick(page, "tiny-lm-step2000.safetensors");
    const diff = await webviewFrame(
      page,
      "the diff view",
      () =>
        !!document.getElementById("gpuwb-checkpoint-diff") && !!document.querySelector(".diff-summary")?.textContent,
    );
    const summary = await diff.locator(".diff-summary").innerText();
    const chips = await diff.locator(".diff-chip").allInnerTexts();
    log(`    diff: ${summary} | ${chips.join(" | ")}`);
    if (!chips.some((c) => /Added 1/.test(c))) throw new Error(`chips: ${chips.join(", ")}`);
    await screenshot("checkpoints-diff");
  });
});
