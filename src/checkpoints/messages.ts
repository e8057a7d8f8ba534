/**
 * Messages between the checkpoint webviews' hosts (src/checkpoints/inspector.ts,
 * diffPanel.ts) and their front ends (media/src/checkpoint.ts, checkpointDiff.ts).
 * Type-only and free of `vscode`, so the browser bundles can import it.
 */
import type { CheckpointDiffResult, CheckpointStatsResult, CheckpointSummary, TensorChange } from "../protocol";
import type { TensorColumns } from "./tensorCodec";

/** An error as a view shows it: what happened and what to do. */
export interface ViewError {
  message: string;
  hint: string | null;
  /** The backend's error kind (CheckpointFormat, UnsafePickle, …), when it gave one. */
  kind: string | null;
}

// ---- inspector ---------------------------------------------------------------------------

export type InspectorTab = "tensors" | "modules" | "metadata" | "storages" | "warnings";

/** What tests can make the inspector do, as a user would with clicks and keys. */
export interface InspectorDrive {
  filter?: string;
  tab?: InspectorTab;
  /** Select the tensor with this name (and show its details). */
  select?: string;
  /** Press the Cancel button of the progress line. */
  cancel?: boolean;
  /** Press "Statistics: All". */
  statsAll?: boolean;
}

/** Host → inspector view. */
export type InspectorHostMessage =
  /** Where the file is read: null for this computer, else the connected machine. */
  | { type: "source"; machine: string | null; machineName: string | null }
  | { type: "loading"; path: string; reload: boolean; cancellable: boolean }
  /** The backend's progress report for the reading or statistics under way. */
  | { type: "progress"; message: string | null; percentage: number | null }
  /** The summary without its tensors, which come as columns (tensorCodec.ts). */
  | { type: "summary"; summary: CheckpointSummary; tensors: TensorColumns; reloaded: boolean }
  | { type: "error"; path: string; error: ViewError }
  | { type: "deleted"; path: string }
  | { type: "statsPending"; tensors: string[] | null }
  | { type: "stats"; tensors: string[] | null; result: CheckpointStatsResult }
  | { type: "statsError"; tensors: string[] | null; error: ViewError }
  | { type: "drive"; drive: InspectorDrive }
  | { type: "queryState"; requestId: number };

/** Inspector view → host. */
export type InspectorViewMessage =
  | { type: "ready" }
  /** Statistics for these tensors; null: all of them. */
  | { type: "stats"; tensors: string[] | null }
  | { type: "cancel" }
  | { type: "compare" }
  | { type: "reload" }
  | { type: "showLogs" }
  | { type: "reopenWith" }
  | { type: "state"; requestId: number; state: InspectorRenderedState };

export interface RenderedStats {
  name: string;
  sampled: boolean;
  min: string;
  max: string;
  mean: string;
  std: string;
  nanCount: number;
  infCount: number;
  zeroFraction: string;
  histogramBins: number;
  error: string | null;
}

/** What the inspector shows, for tests: read back from the DOM, not from the data sent. */
export interface InspectorRenderedState {
  status: "loading" | "ready" | "error" | "deleted";
  path: string | null;
  /** The line saying which machine the file is read on; null for this computer's files. */
  machine: string | null;
  format: string | null;
  /** Summary cards, label → text shown. */
  cards: Record<string, string>;
  tensorCount: number | null;
  tensorsListed: number | null;
  tab: InspectorTab;
  query: string;
  sort: string;
  /** Rows matching the search; rows in the DOM (the virtual window); the first row's name. */
  rowsMatching: number;
  rowsRendered: number;
  firstRow: string | null;
  selected: string | null;
  banner: { level: "unsafe" | "unknown"; text: string; globals: string[]; findings: string[] } | null;
  error: { message: string; hint: string | null; actions: string[] } | null;
  /** A notice line (reloaded, deleted on disk, statistics running…). */
  notice: string | null;
  modulesShown: number;
  metadataText: string;
  sharedStorages: number;
  warnings: string[];
  stats: RenderedStats[];
  /** Name of the tensor whose histogram chart is drawn, and its bar count. */
  histogram: { tensor: string; bars: number; sampled: boolean } | null;
}

// ---- diff --------------------------------------------------------------------------------

export interface DiffDrive {
  filter?: string;
  changes?: TensorChange[];
}

/** Host → diff view. */
export type DiffHostMessage =
  | { type: "loading"; a: string; b: string }
  | { type: "diff"; result: CheckpointDiffResult }
  | { type: "error"; a: string; b: string; error: ViewError }
  | { type: "drive"; drive: DiffDrive }
  | { type: "queryState"; requestId: number };

/** Diff view → host. */
export type DiffViewMessage =
  | { type: "ready" }
  | { type: "open"; side: "a" | "b" }
  | { type: "swap" }
  | { type: "showLogs" }
  | { type: "state"; requestId: number; state: DiffRenderedState };

export interface DiffRenderedState {
  status: "loading" | "ready" | "error";
  a: string | null;
  b: string | null;
  summary: string;
  /** Counts as the filter buttons show them. */
  counts: Record<string, number>;
  /** Kinds whose filter button is on (empty: all shown). */
  changesShown: string[];
  query: string;
  rowsMatching: number;
  rowsRendered: number;
  firstRows: { name: string; change: string; a: string; b: string }[];
  metadata: { key: string; a: string; b: string }[];
  error: { message: string; hint: string | null } | null;
}
