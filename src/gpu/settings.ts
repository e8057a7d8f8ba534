/** Typed access to the `gpuWorkbench.gpu.*` settings, and what of them the backend gets. */
import * as vscode from "vscode";
import type { GpuInitOptions } from "../protocol";

const cfg = () => vscode.workspace.getConfiguration("gpuWorkbench.gpu");

function num(key: string, fallback: number, min: number): number {
  const v = cfg().get<unknown>(key, fallback);
  return typeof v === "number" && Number.isFinite(v) && v >= min ? v : fallback;
}

export const gpuSettings = {
  get intervalSeconds(): number {
    return num("intervalSeconds", 2, 0.5);
  },
  get temperatureWarning(): number {
    return num("temperatureWarning", 85, 0);
  },
  get idleMemoryMinutes(): number {
    return num("idleMemoryMinutes", 10, 0);
  },
  get expectedCount(): number | null {
    const v = cfg().get<unknown>("expectedCount", null);
    return typeof v === "number" && Number.isInteger(v) && v >= 0 ? v : null;
  },
  get statusBar(): boolean {
    return cfg().get<boolean>("statusBar", true) !== false;
  },
};

/** Sent as initializationOptions.gpu (the whole section also follows with didChangeConfiguration). */
export function gpuInitOptions(): GpuInitOptions {
  return {
    intervalSeconds: gpuSettings.intervalSeconds,
    temperatureWarning: gpuSettings.temperatureWarning,
    idleMemoryMinutes: gpuSettings.idleMemoryMinutes,
    expectedCount: gpuSettings.expectedCount,
  };
}
