// UI tests of the results panel: cells run from the Command Palette show their outputs
// (colours, an image, HTML, an error with frames), and hostile HTML runs no script.
import { cpSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { log, openFile, poll, runFromPalette, STATUS_READY, withWorkbench } from "./lib.mjs";

export const tests = [];
const test = (title, fn) => tests.push({ title, fn });

const DEMO = `# %% Hello
print("\\x1b[32mgreen\\x1b[0m and plain")

# %% Image
import struct
import zlib


def png(w, h):
    rows = b"".join(
        b"\\x00" + bytes(v for x in range(w) for v in (x * 255 // w, y * 255 // h, 160)) for y in range(h)
    )

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return b"\\x89PNG\\r\\n\\x1a\\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


class Gradient:
    def _repr_png_(self):
        return png(160, 60)


Gradient()

# %% Hostile HTML
class Hostile:
    def _repr_html_(self):
        return (
            "<b>hostile html</b>"
            '<img src=x onerror="window.top.__pwned=1">'
            "<script>window.top.__pwned=1; parent.__pwned=1</script>"
        )


Hostile()

# %% Error
def fail():
    raise ValueError("boom")


fail()
`;

/** Frames of the page whose document is the results panel. */
async function resultsFrame(page) {
  for (const f of page.frames()) {
    const found = await f.evaluate(() => !!document.getElementById("gpuwb-results")).catch(() => false);
    if (found) return f;
  }
  return undefined;
}

test("results panel: Run All shows outputs, and hostile HTML runs no script", async (env) => {
  const workspace = mkdtempSync(path.join(tmpdir(), "gpuwb-results-ui-"));
  cpSync(env.workspace, workspace, { recursive: true });
  writeFileSync(path.join(workspace, "results_demo.py"), DEMO);
  try {
    await withWorkbench({ ...env, workspace }, {}, async ({ page, screenshot }) => {
      await openFile(page, "results_demo.py");
      await page.locator(STATUS_READY).waitFor({ timeout: 90_000 });
      await runFromPalette(page, "GPU Workbench: Run All Cells");

      const frame = await poll("the results panel", () => resultsFrame(page));
      const state = await poll("four finished entries", async () => {
        const s = await frame.evaluate(() => {
          const entries = [...document.querySelectorAll(".entry")];
          return {
            entries: entries.length,
            done: entries.filter((e) => /status-(ok|error)/.test(e.className)).length,
            text: document.getElementById("entries")?.innerText ?? "",
            images: document.querySelectorAll(".outputs img").length,
            frames: document.querySelectorAll(".frames li").length,
            iframes: [...document.querySelectorAll("iframe")].map((f) => f.getAttribute("sandbox")),
          };
        });
        return s.done >= 4 && s.frames > 0 ? s : undefined;
      });
      log(`    panel: ${JSON.stringify({ ...state, text: state.text.slice(0, 200) })}`);
      if (!state.text.includes("green and plain")) throw new Error("the stream text is missing");
      if (state.images < 1) throw new Error("the image is missing");
      if (!/ValueError/.test(state.text)) throw new Error("the error is missing");
      if (state.iframes.length !== 1 || state.iframes[0] !== "") {
        throw new Error(`HTML frames: ${JSON.stringify(state.iframes)} (want one, sandbox="")`);
      }
      // The colour class from ansi_up is present (styles come from the theme).
      if ((await frame.locator(".ansi-green-fg").count()) < 1) throw new Error("no ANSI colour span");

      // The hostile HTML is shown, and nothing of it ran anywhere.
      const htmlFrame = await poll("the HTML output's frame", async () => {
        for (const f of page.frames()) {
          const t = await f.evaluate(() => document.body?.innerText ?? "").catch(() => "");
          if (t.includes("hostile html")) return f;
        }
        return undefined;
      });
      await page.waitForTimeout(1000); // give an onerror handler every chance to fire
      for (const f of page.frames()) {
        const pwned = await f.evaluate(() => window.__pwned).catch(() => undefined);
        if (pwned !== undefined) throw new Error(`script ran: __pwned=${pwned} in ${f.url()}`);
      }
      const scripts = await htmlFrame.evaluate(() => document.scripts.length);
      log(`    hostile frame: ${scripts} inert script element(s), no __pwned in ${page.frames().length} frames`);

      // Keyboard: headers are focusable; Space collapses, Enter opens the source.
      const header = frame.locator(".entry .header").first();
      await header.focus();
      await page.keyboard.press("Space");
      await frame.locator(".entry.collapsed").first().waitFor({ timeout: 5_000 });
      await page.keyboard.press("Space");
      await frame.locator(".entry.collapsed").waitFor({ state: "detached", timeout: 5_000 });

      await frame.locator(".entry.status-error .header").scrollIntoViewIfNeeded();
      await screenshot("results-panel");

      // Clicking a stack frame opens the file at that line.
      await frame.locator(".frames button.frame", { hasText: "results_demo.py" }).first().click();
      await page
        .locator(".statusbar-item", { hasText: /Ln 4[25],/ })
        .first()
        .waitFor({ timeout: 15_000 });

      // After a window reload the serializer brings the panel back with the same entries.
      // The execution store saves within a second; the workbench saves its layout on a timer.
      await page.waitForTimeout(4000);
      await page.reload();
      await poll("the restored panel with four entries", async () => {
        const f = await resultsFrame(page);
        const n = await f?.evaluate(() => document.querySelectorAll(".entry").length);
        return n === 4 ? f : undefined;
      });
      await screenshot("results-panel-restored");
    });
  } finally {
    rmSync(workspace, { recursive: true, force: true });
  }
});
