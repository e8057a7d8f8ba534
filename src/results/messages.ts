/**
 * Messages between the results panel's host (src/results/panel.ts) and its front end
 * (media/src/results.ts). Type-only and free of `vscode`, so the browser bundle can import it.
 */

export type EntryStatus = "queued" | "running" | "ok" | "error" | "interrupted" | "aborted" | "died";

/** What an entry's header shows. */
export interface EntryHeader {
  executionId: string;
  /** Cell title, or the first line of the code. */
  title: string;
  /** `file:line` (1-based), when the execution came from an editor. */
  location?: string;
  executionCount: number | null;
  status: EntryStatus;
  durationMs: number | null;
  /** For running entries: milliseconds since the start, when the message was sent. */
  elapsedMs?: number;
  stale?: boolean;
}

export type ImageMime = "image/png" | "image/jpeg" | "image/gif" | "image/svg+xml";

export interface ViewFrame {
  label: string;
  /** Whether the host can open this frame's file. */
  openable: boolean;
}

/** One output as the view renders it. Stream text arrives separately, as deltas. */
export type ViewOutput =
  | { kind: "stream"; name: "stdout" | "stderr" }
  | { kind: "image"; mime: ImageMime; base64: string; alt: string; width?: number; height?: number }
  | { kind: "html"; html: string }
  | { kind: "markdown"; markdown: string }
  | { kind: "json"; json: string }
  | { kind: "text"; text: string }
  | { kind: "error"; ename: string; evalue: string; traceback: string; frames: ViewFrame[] };

/** New text of one stream output, with carriage returns already applied. */
export interface StreamDelta {
  /** Index of the output in its entry. */
  index: number;
  /** Complete lines to append (each ends with "\n"). */
  commit: string;
  /** The unfinished last line, replacing the previous one; absent: unchanged. */
  tail?: string;
  /** Set once the view stops showing more of this stream. */
  truncated?: { totalChars: number };
}

export interface EntryUpdate {
  header: EntryHeader;
  /** Outputs to add, starting at index `from` of the entry. */
  outputs?: { from: number; items: ViewOutput[] };
  streams?: StreamDelta[];
}

/** Host → view. */
export type HostMessage =
  | { type: "reset"; entries: EntryUpdate[] }
  | { type: "update"; entries: EntryUpdate[]; removed: string[] }
  | { type: "queryState"; requestId: number };

/** What the view shows, for tests. */
export interface RenderedEntry {
  executionId: string;
  header: string;
  status: string;
  collapsed: boolean;
  /** Text of the outputs (the first 20,000 characters). */
  text: string;
  images: number;
  iframes: { sandbox: string; hasSrcdoc: boolean }[];
  frames: number;
  /** Text of the "Open full output" link, when the stream is cut. */
  truncated: string | null;
}

export interface RenderedState {
  entries: number;
  items: RenderedEntry[];
}

/** View → host. */
export type ViewMessage =
  | { type: "ready" }
  | { type: "openSource"; executionId: string }
  | { type: "openFrame"; executionId: string; outputIndex: number; frameIndex: number }
  | { type: "openFullOutput"; executionId: string; outputIndex: number }
  | { type: "clear" }
  | { type: "state"; requestId: number; state: RenderedState };
