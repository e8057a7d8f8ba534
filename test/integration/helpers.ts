/** Shared helpers for integration suites: the extension's API and polling waits. */
import * as vscode from "vscode";
import type { GpuWorkbenchApi } from "../../src/extension";

export const EXTENSION_ID = "gpu-workbench.gpu-workbench";

export async function api(): Promise<GpuWorkbenchApi> {
  const ext = vscode.extensions.getExtension<GpuWorkbenchApi>(EXTENSION_ID);
  if (!ext) throw new Error(`${EXTENSION_ID} is not installed in this VS Code`);
  return ext.isActive ? ext.exports : await ext.activate();
}

/** Poll until `check` returns a truthy value; never a fixed sleep. */
type Falsy = undefined | null | false | 0 | "";

export async function waitFor<T>(
  what: string,
  check: () => T | Falsy | Promise<T | Falsy>,
  timeoutMs = 60_000,
): Promise<T> {
  const start = Date.now();
  let last: unknown;
  while (Date.now() - start < timeoutMs) {
    try {
      const v = await check();
      if (v) return v as T;
    } catch (err) {
      last = err;
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`Timed out after ${timeoutMs} ms waiting for ${what}${last ? `: ${String(last)}` : ""}`);
}

export async function ready(a: GpuWorkbenchApi, timeoutMs = 60_000): Promise<void> {
  await waitFor(
    `the backend to be ready (state ${a.backendState}${a.backendError ? `: ${a.backendError.message}` : ""})`,
    () => a.backendState === "ready",
    timeoutMs,
  );
}

export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
