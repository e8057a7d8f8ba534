/**
 * Turns execution records into what the results view needs, as deltas: for each record,
 * the outputs the view has not seen yet and the new text of its streams. Text shown per
 * execution is capped at a budget; past it only the total size is reported.
 * No `vscode` here, so the logic stays testable in plain Node.
 */
import * as path from "node:path";
import type { ExecutionRecord, Output } from "../cells/executions";
import type { EntryHeader, EntryUpdate, ImageMime, StreamDelta, ViewFrame, ViewOutput } from "./messages";
import { TerminalLine } from "./terminalLine";

/** Raw stream text processed per step, so one huge chunk is never split in one go. */
const SLICE = 1 << 20;

interface StreamTrack {
  /** Characters of the record's raw text consumed so far. */
  raw: number;
  term: TerminalLine;
  lastTail: string;
  truncated: boolean;
}

interface RecordTrack {
  outputs: number;
  streams: Map<number, StreamTrack>;
  /** Characters of stream text the view shows for this record. */
  shown: number;
}

export interface TrackerOptions {
  maxChars: () => number;
  /** A short, readable form of a source URI (for the header) or a file path (for frames). */
  describe: (uriOrPath: string) => string;
}

export class EntryTracker {
  private readonly tracks = new Map<string, RecordTrack>();

  constructor(private readonly opts: TrackerOptions) {}

  /** Forget what the view had: the next update of each record is complete. */
  reset(): void {
    this.tracks.clear();
  }

  forget(executionId: string): void {
    this.tracks.delete(executionId);
  }

  known(): IterableIterator<string> {
    return this.tracks.keys();
  }

  /** What changed in `r` since the last call for it (everything on the first call). */
  update(r: ExecutionRecord): EntryUpdate {
    let t = this.tracks.get(r.executionId);
    if (!t) {
      t = { outputs: 0, streams: new Map(), shown: 0 };
      this.tracks.set(r.executionId, t);
    }
    const u: EntryUpdate = { header: this.header(r) };
    if (r.outputs.length > t.outputs) {
      const from = t.outputs;
      const items = r.outputs.slice(from).map((o, i) => {
        if (o.kind === "stream") {
          t.streams.set(from + i, { raw: 0, term: new TerminalLine(), lastTail: "", truncated: false });
        }
        return toViewOutput(o, this.opts.describe);
      });
      u.outputs = { from, items };
      t.outputs = r.outputs.length;
    }
    const streams: StreamDelta[] = [];
    for (const [index, st] of t.streams) {
      const o = r.outputs[index];
      if (o?.kind !== "stream" || o.text.length === st.raw) continue;
      const d = this.advance(t, st, index, o.text);
      if (d) streams.push(d);
    }
    if (streams.length) u.streams = streams;
    return u;
  }

  private advance(t: RecordTrack, st: StreamTrack, index: number, text: string): StreamDelta | undefined {
    if (st.truncated) {
      st.raw = text.length;
      return { index, commit: "", truncated: { totalChars: text.length } };
    }
    const allowed = Math.max(0, this.opts.maxChars() - t.shown);
    let commit = "";
    while (st.raw < text.length && commit.length <= allowed) {
      const chunk = text.slice(st.raw, st.raw + SLICE);
      st.raw += chunk.length;
      commit += st.term.feed(chunk);
    }
    const tail = st.term.tail;
    if (commit.length + tail.length > allowed) {
      st.truncated = true;
      st.raw = text.length;
      const cut = (commit + tail).slice(0, allowed);
      t.shown += cut.length;
      return { index, commit: cut, tail: "", truncated: { totalChars: text.length } };
    }
    t.shown += commit.length;
    const d: StreamDelta = { index, commit };
    if (tail !== st.lastTail) {
      d.tail = tail;
      st.lastTail = tail;
    }
    return d.commit || d.tail !== undefined ? d : undefined;
  }

  private header(r: ExecutionRecord): EntryHeader {
    const h: EntryHeader = {
      executionId: r.executionId,
      title: r.source?.title || firstLine(r.code) || r.executionId,
      executionCount: r.executionCount,
      status: r.status,
      durationMs: r.durationMs,
    };
    if (r.source) h.location = `${this.opts.describe(r.source.uri)}:${r.source.line + 1}`;
    if (r.status === "running" && r.startedAt) h.elapsedMs = Math.max(0, Date.now() - r.startedAt);
    if (r.stale) h.stale = true;
    return h;
  }
}

function firstLine(code: string): string {
  const line = code.split("\n").find((l) => l.trim() && !l.trim().startsWith("#")) ?? "";
  return line.length > 80 ? `${line.slice(0, 79)}…` : line;
}

const IMAGE_MIMES: ImageMime[] = ["image/svg+xml", "image/png", "image/jpeg", "image/gif"];
const BASE64 = /^[A-Za-z0-9+/]*={0,2}$/;

/** Jupyter allows a mime value as a list of lines. */
function asText(v: unknown): string | undefined {
  if (typeof v === "string") return v;
  if (Array.isArray(v) && v.every((x) => typeof x === "string")) return v.join("");
  return undefined;
}

function dimension(v: unknown): number | undefined {
  return typeof v === "number" && Number.isFinite(v) && v > 0 ? v : undefined;
}

/** Whether a frame's file is something the host can open in an editor. */
export function frameOpenable(file: string): boolean {
  return !!file && !file.startsWith("<") && (path.isAbsolute(file) || /^[a-z][a-z0-9+.-]+:\/\//i.test(file));
}

/** The richest form of an output the view can render safely. */
export function toViewOutput(o: Output, describe: (p: string) => string): ViewOutput {
  if (o.kind === "stream") return { kind: "stream", name: o.name };
  if (o.kind === "error") {
    const frames: ViewFrame[] = o.frames.map((f) => ({
      label: `${describe(f.file)}:${f.line}${f.name ? ` in ${f.name}` : ""}`,
      openable: frameOpenable(f.file),
    }));
    const traceback = o.traceback.join("\n") || `${o.ename}: ${o.evalue}`;
    return { kind: "error", ename: o.ename, evalue: o.evalue, traceback, frames };
  }
  const data = o.data;
  const html = asText(data["text/html"]);
  if (html !== undefined) return { kind: "html", html };
  for (const mime of IMAGE_MIMES) {
    const v = asText(data[mime]);
    if (v === undefined) continue;
    const base64 = mime === "image/svg+xml" ? Buffer.from(v, "utf8").toString("base64") : v.replace(/\s+/g, "");
    if (!BASE64.test(base64)) continue;
    const meta = (o.metadata[mime] ?? o.metadata) as Record<string, unknown>;
    const img: ViewOutput = { kind: "image", mime, base64, alt: asText(data["text/plain"]) ?? mime };
    const width = dimension(meta?.width);
    const height = dimension(meta?.height);
    if (width) img.width = width;
    if (height) img.height = height;
    return img;
  }
  const markdown = asText(data["text/markdown"]);
  if (markdown !== undefined) return { kind: "markdown", markdown };
  if ("application/json" in data) {
    const v = data["application/json"];
    return { kind: "json", json: typeof v === "string" ? v : JSON.stringify(v, null, 2) };
  }
  const plain = asText(data["text/plain"]);
  if (plain !== undefined) return { kind: "text", text: plain };
  const first = Object.keys(data)[0];
  return { kind: "text", text: first ? `[${first} output]` : "" };
}
