/**
 * Messages between the GPU webviews' hosts (src/gpu/panel.ts, checkReport.ts) and their
 * front ends (media/src/gpu.ts, gpuCheck.ts). Type-only and free of `vscode`.
 */
import type { GpuCheckReport, GpuHistoryPoint, GpuSnapshot } from "../protocol";

export type GpuMetric = "utilization" | "memory" | "power" | "temperature";

// ---- GPU panel -----------------------------------------------------------------------------

/** A machine the panel can show: "" this machine, "provider/id" a connected one. */
export interface GpuPanelMachine {
  machine: string;
  label: string;
}

/** Host → GPU panel view. */
export type GpuPanelHostMessage =
  /** Everything at once: on load, after a reload and when the machine shown changes (history oldest first). */
  | {
      type: "init";
      snapshot: GpuSnapshot | null;
      points: GpuHistoryPoint[];
      error: string | null;
      machine: GpuPanelMachine;
      machines: GpuPanelMachine[];
    }
  /** The machines to pick from changed (the one shown did not). */
  | { type: "machines"; machine: GpuPanelMachine; machines: GpuPanelMachine[] }
  /** A new sample: appended to the charts. */
  | { type: "sample"; snapshot: GpuSnapshot }
  | { type: "error"; message: string }
  | { type: "checking"; running: boolean }
  | { type: "queryState"; requestId: number };

/** GPU panel view → host. */
export type GpuPanelViewMessage =
  | { type: "ready" }
  | { type: "check" }
  | { type: "showLogs" }
  | { type: "openSettings" }
  /** Show another machine ("" this one). */
  | { type: "pickMachine"; machine: string }
  | { type: "state"; requestId: number; state: GpuPanelRenderedState };

export interface GpuChartState {
  /** One dataset per GPU. */
  datasets: number;
  /** Points of the dataset with the most. */
  points: number;
  /** The newest value of each dataset, as plotted (null: a gap). */
  last: (number | null)[];
}

/** What the GPU panel shows, read back from the DOM and the charts (for tests). */
export interface GpuPanelRenderedState {
  status: "loading" | "ready" | "none" | "error";
  /** The snapshot's machine (a host name here, "provider/id" for a connected machine). */
  machine: string | null;
  /** The heading, e.g. "GPU · a100-box". */
  heading: string;
  /** The machine picker: its choices and the one selected. */
  picker: { choices: GpuPanelMachine[]; selected: string };
  verdict: string | null;
  /** The heading line of each GPU card, e.g. "GPU 0 · NVIDIA H100 80GB HBM3". */
  gpus: string[];
  charts: Record<GpuMetric, GpuChartState>;
  processes: { gpu: number; pid: number; name: string; memory: string }[];
  reasons: string[];
  /** Static info, "GPU 0 PCIe" → "Gen 5 x16 (max Gen 5 x16)", "Driver" → "550.54.15", … */
  info: Record<string, string>;
  message: string | null;
  checkRunning: boolean;
}

// ---- check report -----------------------------------------------------------------------

export interface GpuCheckView {
  report: GpuCheckReport;
  /** Shown above the table, e.g. that benchmarks were skipped in an untrusted folder. */
  note: string | null;
  benchmarks: boolean;
  python: string | null;
}

/** Host → check report view. */
export type GpuCheckHostMessage =
  | { type: "running"; message: string | null }
  | { type: "report"; view: GpuCheckView }
  | { type: "error"; message: string }
  | { type: "queryState"; requestId: number };

/** Check report view → host. */
export type GpuCheckViewMessage =
  | { type: "ready" }
  | { type: "export" }
  | { type: "rerun" }
  | { type: "state"; requestId: number; state: GpuCheckRenderedState };

export interface GpuCheckRenderedState {
  status: "running" | "ready" | "error";
  verdict: string | null;
  note: string | null;
  rows: {
    id: string;
    title: string;
    status: string;
    detail: string;
    measured: string;
    expected: string;
    /** The row's computed text colour, to check that statuses are coloured. */
    color: string;
  }[];
  error: string | null;
}
