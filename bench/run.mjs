#!/usr/bin/env node
// Foundation benchmarks: the packaged .vsix's size and contents, activation time and time to
// a ready backend in a real VS Code (fresh server and browser each run), a status round trip
// from the extension, and `gpuwb status` wall time. Prints a Markdown table and writes
// bench/results/foundation.json.
//   npm run bench [-- --runs N]
import { spawnSync } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { ensureVsCodeServer, openWorkbench, startVsCodeServer } from "../test/runner/vscode-server.mjs";

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");
const { values } = parseArgs({ options: { runs: { type: "string", default: "5" } } });
const runs = Number(values.runs);
const quiet = () => {};

function must(cmd, args) {
  const r = spawnSync(cmd, args, { cwd: ROOT, encoding: "utf8" });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(" ")}: ${r.stderr || r.stdout}`);
  return r.stdout;
}

const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)];
};
const p = (xs, q) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(q * xs.length))];

// 1. Package: test modules first (dev build), then the shipped bundles minified.
must(process.execPath, ["esbuild.mjs"]);
must("npm", ["run", "package"]);
const version = JSON.parse(readFileSync(path.join(ROOT, "package.json"), "utf8")).version;
const vsix = path.join(ROOT, `gpu-workbench-${version}.vsix`);
const listing = must("unzip", ["-l", vsix]);
const files = listing
  .split("\n")
  .map((l) => l.trim().split(/\s+/))
  .filter((f) => f.length === 4 && /^\d+$/.test(f[0]))
  .map((f) => f[3]);
const vsixBytes = statSync(vsix).size;

// 2. Activation and time to ready in a real VS Code, fresh each run.
const vscodeDir = await ensureVsCodeServer({ log: quiet });
const ws = mkdtempSync(path.join(os.tmpdir(), "gpuwb-bench-ws-"));
writeFileSync(path.join(ws, "main.py"), "print('hello')\n");
const samples = [];
for (let i = 0; i < runs; i++) {
  const results = path.join(os.tmpdir(), `gpuwb-bench-${process.pid}-${i}.json`);
  rmSync(results, { force: true });
  const server = await startVsCodeServer({ vscodeDir, env: { GPUWB_TEST_RESULTS: results }, log: quiet });
  const wb = await openWorkbench({
    url: server.url,
    folder: ws,
    extensionDevelopmentPath: ROOT,
    extensionTestsPath: path.join(ROOT, "out", "test", "integration", "bench.js"),
    log: quiet,
  });
  const t0 = Date.now();
  while (!existsSync(results) && Date.now() - t0 < 120_000) await new Promise((r) => setTimeout(r, 100));
  await wb.close();
  await server.stop();
  if (!existsSync(results)) throw new Error("the bench module wrote no results");
  samples.push(JSON.parse(readFileSync(results, "utf8")).metrics);
  rmSync(results, { force: true });
}
rmSync(ws, { recursive: true, force: true });

// 3. The CLI from a cold process: start, initialize, status, shutdown.
const cli = [];
for (let i = 0; i < 10; i++) {
  const t0 = performance.now();
  must(process.execPath, [path.join(ROOT, "dist", "cli.js"), "status", "--json"]);
  cli.push(performance.now() - t0);
}

const result = {
  date: new Date().toISOString(),
  machine: `${os.cpus().length} × ${os.cpus()[0]?.model ?? "cpu"}, ${Math.round(os.totalmem() / 2 ** 30)} GiB, ${os.platform()} ${os.release()}, Node ${process.version}`,
  vsix: { bytes: vsixBytes, files: files.length, list: files },
  runs,
  activationMs: {
    median: median(samples.map((s) => s.activationMs)),
    max: Math.max(...samples.map((s) => s.activationMs)),
  },
  firstReadyMs: {
    median: median(samples.map((s) => s.firstReadyMs)),
    max: Math.max(...samples.map((s) => s.firstReadyMs)),
  },
  statusRoundTripMs: { median: median(samples.map((s) => s.statusRoundTripMs)) },
  cliStatusMs: { median: median(cli), p90: p(cli, 0.9) },
};
mkdirSync(path.join(ROOT, "bench", "results"), { recursive: true });
writeFileSync(path.join(ROOT, "bench", "results", "foundation.json"), JSON.stringify(result, null, 2));
const f = (x) => x.toFixed(1);
console.log(`Machine: ${result.machine}\n`);
console.log("| Metric | Value |\n|---|---|");
console.log(`| .vsix size | ${(vsixBytes / 1024).toFixed(0)} KiB, ${files.length} files |`);
console.log(
  `| Activation (bundle load + activate()), median of ${runs} | ${f(result.activationMs.median)} ms (max ${f(result.activationMs.max)}) |`,
);
console.log(
  `| Extension load to backend ready, median of ${runs} | ${f(result.firstReadyMs.median)} ms (max ${f(result.firstReadyMs.max)}) |`,
);
console.log(
  `| workbench/status round trip from the extension host | ${result.statusRoundTripMs.median.toFixed(2)} ms |`,
);
console.log(
  `| \`gpuwb status --json\`, cold process, median of 10 | ${f(result.cliStatusMs.median)} ms (p90 ${f(result.cliStatusMs.p90)}) |`,
);
