// UI test of remote execution, driven like a user against a real sshd in a network namespace
// (server-python/tests/remote/netns.py, the "VM"): Select Kernel Target… → Connect to a
// machine… → the SSH host, a cell that proves it ran on the VM, then a window reload in the
// middle of a long cell on the VM: after the reload the window reconnects by itself, and the
// results panel shows every line of the cell exactly once. Screenshots: test-results/ui/remote-*.png.
import { spawn } from "node:child_process";
import { cpSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import * as readline from "node:readline";
import {
  log,
  openFile,
  poll,
  ROOT,
  reloadWindow,
  runFromPalette,
  STATUS_READY,
  waitForNotes,
  withWorkbench,
} from "./lib.mjs";

export const tests = [];
const test = (title, fn) => tests.push({ title, fn });

const TICKS = 40;
const CODE = `# %% where
import os
print("VM", os.environ.get("GPUWB_VM_MARKER"))

# %% long
import time
for i in range(${TICKS}):
    print("tick", i, flush=True)
    time.sleep(0.25)
`;

/** The namespace host: resolves with its JSON once it is up; close() tears it down. */
function netnsUp() {
  const child = spawn(
    process.env.GPUWB_TEST_PYTHON || "python3",
    [path.join(ROOT, "server-python", "tests", "remote", "netns.py"), "up"],
    {
      stdio: ["pipe", "pipe", "pipe"],
    },
  );
  let stderr = "";
  child.stderr.on("data", (d) => {
    stderr = (stderr + d.toString()).slice(-4000);
  });
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`netns.py up: no answer in 90 s; ${stderr}`)), 90_000);
    readline.createInterface({ input: child.stdout }).once("line", (line) => {
      clearTimeout(t);
      try {
        resolve({ info: JSON.parse(line), close: () => child.stdin.end() });
      } catch {
        child.stdin.end();
        reject(new Error(`netns.py up printed ${line}; ${stderr}`));
      }
    });
    child.once("exit", (code) => reject(new Error(`netns.py exited (${code}): ${stderr}`)));
  });
}

async function pickRow(page, text) {
  const input = page.locator(".quick-input-widget input");
  await input.waitFor({ state: "visible", timeout: 30_000 });
  const row = page.locator(".quick-input-list .monaco-list-row", { hasText: text }).first();
  await row.waitFor({ state: "visible", timeout: 60_000 });
  await row.click();
}

/** The text of the results panel's entries, once its frame exists. */
async function resultsText(page) {
  for (const f of page.frames()) {
    const text = await f
      .evaluate(() => (document.getElementById("gpuwb-results") ? document.getElementById("entries")?.innerText : null))
      .catch(() => null);
    if (typeof text === "string") return text;
  }
  return undefined;
}

test("remote: pick the VM as kernel target, run cells there, reload mid-cell and lose nothing", async (env) => {
  const { info, close } = await netnsUp();
  const workspace = mkdtempSync(path.join(tmpdir(), "gpuwb-remote-ui-"));
  cpSync(env.workspace, workspace, { recursive: true });
  writeFileSync(path.join(workspace, "on_the_vm.py"), CODE);
  const settings = {
    // The VM's host key is already trusted in a known_hosts of the test's own.
    "gpuWorkbench.remote.knownHostsFile": info.knownHosts,
    "gpuWorkbench.vms.ssh.hosts": [
      { name: "nsvm", host: info.address, port: info.port, user: info.user, identityFile: info.identityFile },
    ],
  };
  try {
    await withWorkbench({ ...env, workspace }, settings, async ({ page, screenshot }) => {
      await openFile(page, "on_the_vm.py");
      await page.locator(STATUS_READY).waitFor({ timeout: 90_000 });
      await runFromPalette(page, "GPU Workbench: Select Kernel Target…");
      await pickRow(page, "Connect to a machine…");
      await pickRow(page, "nsvm");
      // More than one Python on the VM: choose the first offered (an interpreter pick).
      const interp = page.locator(".quick-input-list .monaco-list-row", { hasText: "Remote: nsvm" }).first();
      if (
        await interp.waitFor({ state: "visible", timeout: 60_000 }).then(
          () => true,
          () => false,
        )
      )
        await interp.click();
      await page
        .locator('div.statusbar-item[aria-label^="GPU Workbench kernel: "][aria-label*="nsvm"]')
        .first()
        .waitFor({ timeout: 90_000 });

      // The first cell runs on the VM: only its ssh sessions have GPUWB_VM_MARKER.
      await page.locator(".monaco-editor .view-lines").first().click();
      await page.keyboard.press("Control+Home");
      await page.keyboard.press("ArrowDown");
      await page.keyboard.press("Control+Enter");
      await waitForNotes(page, (n) => n.some((t) => /^✓ .*VM 1$/.test(t)), "the VM's marker", 90_000);
      await screenshot("remote-cell");

      // The long cell, then a window reload while it runs on the VM.
      await page.keyboard.press("Control+End");
      await page.keyboard.press("ArrowUp");
      await page.keyboard.press("Control+Enter");
      await waitForNotes(
        page,
        (n) => n.some((t) => /tick \d+$/.test(t) && t.startsWith("⟳")),
        "the long cell to print",
      );
      await reloadWindow(page);
      // The window connects to the machine again by itself and re-attaches the kernel.
      await page
        .locator('div.statusbar-item[aria-label^="GPU Workbench kernel: "][aria-label*="nsvm"]')
        .first()
        .waitFor({ timeout: 90_000 });
      await waitForNotes(
        page,
        (n) => n.some((t) => new RegExp(`^✓ .*tick ${TICKS - 1}$`).test(t)),
        "the long cell's last line after the reload",
        120_000,
      );
      await runFromPalette(page, "GPU Workbench: Show Results Panel");
      const text = await poll("every tick in the results panel", async () => {
        const t = await resultsText(page);
        return t?.includes(`tick ${TICKS - 1}`) ? t : undefined;
      });
      const ticks = text.split("\n").filter((l) => /^tick \d+$/.test(l.trim()));
      const want = Array.from({ length: TICKS }, (_, i) => `tick ${i}`);
      if (JSON.stringify(ticks.map((l) => l.trim())) !== JSON.stringify(want)) {
        throw new Error(`ticks after the reload: ${JSON.stringify(ticks)}`);
      }
      log(`    ${ticks.length} ticks, each once, in order, across the reload`);
      await screenshot("remote-after-reload");
    });
  } finally {
    close();
    rmSync(workspace, { recursive: true, force: true });
  }
});
