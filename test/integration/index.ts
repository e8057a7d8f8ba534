/**
 * Entry point for the integration suites inside a real VS Code extension host. Runner
 * agnostic: the VS Code server harness (test/runner/run-integration.mjs) and
 * @vscode/test-electron both call `run()`. When GPUWB_TEST_RESULTS names a file, the
 * results are written there as JSON for the harness to read.
 */
import { readdirSync, writeFileSync } from "node:fs";
import * as path from "node:path";
import Mocha from "mocha";

interface TestRecord {
  title: string;
  state: "passed" | "failed" | "pending";
  durationMs: number;
}

export function run(): Promise<void> {
  const mocha = new Mocha({ ui: "bdd", color: false, timeout: 90_000, slow: 10_000 });
  const grep = process.env.GPUWB_TEST_GREP;
  if (grep) mocha.grep(grep);
  const dir = path.join(__dirname, "suite");
  for (const f of readdirSync(dir)
    .filter((f) => f.endsWith(".test.js"))
    .sort()) {
    mocha.addFile(path.join(dir, f));
  }
  const tests: TestRecord[] = [];
  const failures: { title: string; error: string }[] = [];
  return new Promise((resolve, reject) => {
    const runner = mocha.run((failed) => {
      const results = {
        passed: tests.filter((t) => t.state === "passed").length,
        failed,
        pending: tests.filter((t) => t.state === "pending").length,
        failures,
        tests,
      };
      if (process.env.GPUWB_TEST_RESULTS) {
        writeFileSync(process.env.GPUWB_TEST_RESULTS, JSON.stringify(results, null, 2));
      }
      if (failed > 0) reject(new Error(`${failed} integration test(s) failed`));
      else resolve();
    });
    runner.on("pass", (t) => tests.push({ title: t.fullTitle(), state: "passed", durationMs: t.duration ?? 0 }));
    runner.on("pending", (t) => tests.push({ title: t.fullTitle(), state: "pending", durationMs: 0 }));
    runner.on("fail", (t, err: Error) => {
      tests.push({ title: t.fullTitle(), state: "failed", durationMs: t.duration ?? 0 });
      failures.push({ title: t.fullTitle(), error: err?.stack ?? String(err) });
    });
  });
}
