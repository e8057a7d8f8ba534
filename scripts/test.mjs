// `npm test`: every layer in order — TypeScript units, Python (real backend), integration
// suites in a real VS Code, UI tests in Chromium. `npm test -- unit python` runs a subset.
// It installs what it needs first (npm packages, apt packages, the VS Code server).
import { spawn } from "node:child_process";
import { cpSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import * as path from "node:path";
import { build, ensureNodeModules, ensureSshd, ROOT, testPython, torchPython } from "./setup.mjs";

const LAYERS = ["unit", "python", "integration", "ui"];
const asked = process.argv.slice(2).filter((a) => LAYERS.includes(a));
const bad = process.argv.slice(2).filter((a) => !LAYERS.includes(a));
if (bad.length) {
  console.error(`unknown layer(s): ${bad.join(", ")}; choose from ${LAYERS.join(", ")}`);
  process.exit(2);
}
const layers = asked.length ? asked : LAYERS;

/**
 * Run a command, echo its output, and return exit code and output for counting. With
 * `quiet`, the output is only collected (the caller prints it when the run ends).
 */
function run(cmd, args, opts = {}) {
  const { quiet, ...spawnOpts } = opts;
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"], ...spawnOpts });
    let out = "";
    child.stdout.on("data", (d) => {
      out += d;
      if (!quiet) process.stdout.write(d);
    });
    child.stderr.on("data", (d) => {
      out += d;
      if (!quiet) process.stderr.write(d);
    });
    child.on("close", (code, signal) => resolve({ code: code ?? (signal ? 1 : 0), out }));
  });
}

/** Pull pass/fail counts out of each runner's closing lines. */
function counts(layer, out) {
  const num = (re) => {
    const all = [...out.matchAll(re)];
    return all.length ? Number(all[all.length - 1][1]) : 0;
  };
  if (layer === "unit") return { passed: num(/^(?:#|ℹ) pass (\d+)/gm), failed: num(/^(?:#|ℹ) fail (\d+)/gm) };
  if (layer === "python") {
    // Each pytest run's closing line ("12 passed, 1 failed, 2 skipped in 3.4s"), summed.
    const lines = [...out.matchAll(/^=*\s*(.*\bin [\d.]+s\b.*)$/gm)].map((m) => m[1]);
    const total = (re) => lines.reduce((a, l) => a + Number(re.exec(l)?.[1] ?? 0), 0);
    return { passed: total(/(\d+) passed/), failed: total(/(\d+) failed/) + total(/(\d+) errors?/) };
  }
  const sum = (re) => [...out.matchAll(re)].reduce((a, m) => a + Number(m[1]), 0);
  return { passed: sum(/^(\d+) passed, \d+ failed/gm), failed: sum(/^\d+ passed, (\d+) failed/gm) };
}

async function workspaceCopy() {
  const dir = mkdtempSync(path.join(tmpdir(), "gpuwb-ws-"));
  cpSync(path.join(ROOT, "examples"), dir, { recursive: true });
  return dir;
}

const steps = {
  unit: (opts = {}) => run(process.execPath, ["--test", "--test-reporter=spec", "out/test/unit/"], opts),
  python: async () => {
    const python = testPython();
    const torch = torchPython();
    ensureSshd();
    const opts = {
      cwd: path.join(ROOT, "server-python"),
      env: { ...process.env, PYTHONDONTWRITEBYTECODE: "1", ...(torch ? { GPUWB_TORCH_PYTHON: torch } : {}) },
    };
    const pytest = ["-m", "pytest", "-q", "-p", "no:cacheprovider"];
    // Most tests wait (on kernels, an sshd in a network namespace, cells that print for
    // seconds, HTTP servers): three pytest runs side by side, the others printed as they end.
    const beside = ["tests/remote", "tests/vms tests/gpu"];
    const others = beside.map((dirs) => run(python, [...pytest, ...dirs.split(" ")], { ...opts, quiet: true }));
    const rest = await run(
      python,
      [...pytest, ...beside.flatMap((d) => d.split(" ")).map((d) => `--ignore=${d}`)],
      opts,
    );
    let code = rest.code;
    let out = rest.out;
    for (const [i, p] of others.entries()) {
      const r = await p;
      console.log(`\n--- python: ${beside[i]} (ran beside the rest) ---`);
      process.stdout.write(r.out);
      code ||= r.code;
      out += `\n${r.out}`;
    }
    return { code, out };
  },
  integration: async () => {
    const ws = await workspaceCopy();
    // The extension host inherits the server's environment: kernels go to a scratch data
    // directory and are shut down afterwards (they are detached and would outlive the run).
    const dataDir = mkdtempSync(path.join(tmpdir(), "gpuwb-it-data-"));
    process.env.GPUWB_DATA_DIR = dataDir;
    try {
      const trusted = await run(process.execPath, ["test/runner/run-integration.mjs", "--workspace", ws]);
      // Again in Restricted Mode, in a folder whose settings try to choose the interpreter.
      mkdirSync(path.join(ws, ".vscode"), { recursive: true });
      writeFileSync(
        path.join(ws, ".vscode", "settings.json"),
        JSON.stringify({ "gpuWorkbench.pythonPath": "/nonexistent/workspace-chosen/python" }),
      );
      const restricted = await run(
        process.execPath,
        ["test/runner/run-integration.mjs", "--workspace", ws, "--workspace-trust"],
        { env: { ...process.env, GPUWB_TEST_GREP: "workspace trust" } },
      );
      return { code: trusted.code || restricted.code, out: `${trusted.out}\n${restricted.out}` };
    } finally {
      delete process.env.GPUWB_DATA_DIR;
      await run(process.execPath, ["dist/cli.js", "--data-dir", dataDir, "kernels", "kill", "--all"]);
      rmSync(ws, { recursive: true, force: true });
    }
  },
  ui: async () => {
    const ws = await workspaceCopy();
    try {
      return await run(process.execPath, ["test/ui/run-ui.mjs", "--workspace", ws]);
    } finally {
      rmSync(ws, { recursive: true, force: true });
    }
  },
};

ensureNodeModules();
build();
const summary = [];
function record(layer, r, t0, t1 = Date.now()) {
  const c = counts(layer, r.out);
  if (r.code !== 0 && c.failed === 0) c.failed = 1; // a runner that crashed counts as a failure
  summary.push({ layer, ...c, ok: r.code === 0, seconds: (t1 - t0) / 1000 });
}
async function attempt(layer, opts) {
  try {
    return await steps[layer](opts);
  } catch (err) {
    console.error(`${layer}: ${err instanceof Error ? err.message : String(err)}`);
    return { code: 1, out: "" };
  }
}
// The unit layer (mostly CLI runs waiting on backends) runs beside the Python layer, which
// waits on processes and sockets too: together they take the time of the longer one.
// Its output is printed when it ends, so the two do not interleave.
let unitRun;
if (layers.includes("unit") && layers.includes("python")) {
  const t0 = Date.now();
  unitRun = attempt("unit", { quiet: true }).then((r) => ({ r, t0, t1: Date.now() }));
}
for (const layer of layers) {
  if (layer === "unit" && unitRun) continue;
  console.log(`\n=== npm test: ${layer} ===`);
  const t0 = Date.now();
  record(layer, await attempt(layer), t0);
  if (layer === "python" && unitRun) {
    const { r, t0: unitStart, t1: unitEnd } = await unitRun;
    console.log("\n=== npm test: unit (ran beside python) ===");
    process.stdout.write(r.out);
    record("unit", r, unitStart, unitEnd);
  }
}
console.log("\n=== npm test: summary ===");
for (const s of summary) {
  console.log(
    `${s.ok ? "ok  " : "FAIL"} ${s.layer.padEnd(12)} ${s.passed} passed, ${s.failed} failed (${s.seconds.toFixed(1)} s)`,
  );
}
const passed = summary.reduce((a, s) => a + s.passed, 0);
const failed = summary.reduce((a, s) => a + s.failed, 0);
console.log(`total: ${passed} passed, ${failed} failed`);
process.exit(summary.every((s) => s.ok) ? 0 : 1);
