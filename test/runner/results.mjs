// Shared by the runners: printing of the results JSON written by the in-host test runner
// ({passed, failed, pending, failures:[{title, error}], tests:[{title, state, durationMs}]}).

import fs from "node:fs/promises";

/** Parsed results file, or undefined while it is missing or half written. */
export async function readResults(file) {
  try {
    return JSON.parse(await fs.readFile(file, "utf8"));
  } catch {
    return undefined;
  }
}

/**
 * Prints one line per test, the failures, and the closing line
 * `N passed, N failed` (plus `, N skipped` when pending > 0).
 * @returns {boolean} true iff failed == 0 and passed > 0
 */
export function printResults(r, log = (l) => process.stdout.write(`${l}\n`)) {
  for (const t of r.tests ?? []) {
    const mark = t.state === "passed" ? "✓" : t.state === "failed" ? "✗" : "-";
    const dur = typeof t.durationMs === "number" ? ` (${t.durationMs} ms)` : "";
    log(`  ${mark} ${t.title}${t.state === "pending" ? " (skipped)" : dur}`);
  }
  if (r.failures?.length) {
    log("\nFailures:");
    r.failures.forEach((f, i) => {
      log(`  ${i + 1}) ${f.title}\n${String(f.error ?? "").replace(/^/gm, "     ")}`);
    });
  }
  const passed = r.passed ?? 0;
  const failed = r.failed ?? 0;
  const pending = r.pending ?? 0;
  log(`\n${passed} passed, ${failed} failed${pending > 0 ? `, ${pending} skipped` : ""}`);
  if (failed === 0 && passed === 0) log("no test passed: failing the run");
  return failed === 0 && passed > 0;
}
