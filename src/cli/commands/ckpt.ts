/**
 * `gpuwb ckpt …`: checkpoints from the terminal. The backend reads them statically (it never
 * runs pickle code), so these commands are safe on files from anywhere; `scan` exits 1 on
 * anything torch.load would run code for, to guard a CI pipeline.
 */
import * as path from "node:path";
import type { RequestType } from "vscode-jsonrpc";
import { ProgressType } from "vscode-jsonrpc/node";
import {
  formatBytes,
  formatCount,
  formatEpochStep,
  formatInt,
  formatName,
  formatPercent,
  formatShape,
  formatStat,
} from "../../checkpoints/format";
import * as proto from "../../protocol";
import type { Parsed } from "../args";
import { type Command, CommandError, EXIT, JSON_OPTION, type Output } from "../command";
import type { Backend } from "../connection";

// ---- shared ----

type ProgressValue = { kind: "begin" | "report" | "end"; title?: string; message?: string; percentage?: number };
const PROGRESS = new ProgressType<ProgressValue>();
let nextToken = 0;

/**
 * Send a checkpoint request; while it runs, show the backend's progress on one stderr line
 * (only when stderr is a terminal, so pipes and CI logs stay clean).
 */
async function request<P extends object, R>(
  backend: Backend,
  type: RequestType<P, R, void>,
  params: P,
  out: Output,
): Promise<R> {
  const stderr = out.stderr as NodeJS.WriteStream;
  if (stderr.isTTY !== true) return backend.connection.sendRequest(type, params);
  const workDoneToken = `gpuwb-cli-${process.pid}-${++nextToken}`;
  let title = "";
  let shown = false;
  const sub = backend.connection.onProgress(PROGRESS, workDoneToken, (v) => {
    if (v.kind === "begin") title = v.title ?? "";
    if (v.kind === "end") return;
    const pct = v.percentage !== undefined ? ` ${v.percentage}%` : "";
    const text = `${title}${v.message ? `: ${v.message}` : ""}${pct}…`;
    const width = Math.max(20, (stderr.columns || 80) - 1);
    stderr.write(`\r\x1b[K${text.length > width ? `${text.slice(0, width - 1)}…` : text}`);
    shown = true;
  });
  try {
    // The backend reads the token from the raw params; other keys are its declared ones.
    return await backend.connection.sendRequest(type, { ...params, workDoneToken } as P);
  } finally {
    sub.dispose();
    if (shown) stderr.write("\r\x1b[K");
  }
}

/** Rows as aligned columns; `right` marks the columns to right-align (numbers). */
function table(rows: string[][], right: ReadonlySet<number> = new Set()): string {
  const widths = rows[0]?.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? "").length))) ?? [];
  return rows
    .map((r) =>
      r
        .map((c, i) => (right.has(i) ? c.padStart(widths[i] ?? 0) : c.padEnd(widths[i] ?? 0)))
        .join("  ")
        .trimEnd(),
    )
    .join("\n");
}

/** A path as the user would type it: relative when under the working directory. */
function shown(p: string): string {
  const rel = path.relative(process.cwd(), p);
  return rel && !rel.startsWith("..") && !path.isAbsolute(rel) ? rel : p;
}

function positiveInt(
  value: string | boolean | undefined,
  option: string,
  max: number,
  expected = `a whole number from 1 to ${max}`,
): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (typeof value !== "string" || !Number.isInteger(n) || n < 1 || n > max) {
    throw new CommandError(`${option} must be ${expected}`, EXIT.usage);
  }
  return n;
}

function dtypeShape(t: proto.CheckpointTensor | null): string {
  return t ? `${t.dtype} ${formatShape(t.shape)}` : "—";
}

function globalName(g: proto.CheckpointGlobal): string {
  return `${g.module}.${g.name}`;
}

function oneLine(value: unknown, max = 60): string {
  const text = value === undefined ? "—" : (JSON.stringify(value) ?? String(value));
  return text.length > max ? `${text.slice(0, max - 1)}…` : text;
}

// ---- inspect ----

function renderSafety(safety: proto.CheckpointSafety): string[] {
  const lines = [`  safety      ${safety.summary}`];
  if (safety.verdict === "safe") return lines;
  const risky = safety.globals.filter((g) => g.classification !== "allowed");
  if (risky.length) {
    const counted = risky.some((g) => g.count > 1);
    const rows = risky.map((g) => [
      g.classification,
      globalName(g),
      g.where,
      ...(counted ? [g.count > 1 ? `×${g.count}` : ""] : []),
      g.reason,
    ]);
    lines.push(
      ...table(rows)
        .split("\n")
        .map((l) => `                ${l}`),
    );
  }
  const allowed = safety.globals.length - risky.length;
  if (allowed > 0) lines.push(`                (and ${allowed} allowed global${allowed === 1 ? "" : "s"})`);
  for (const f of safety.findings) lines.push(`                - ${f}`);
  return lines;
}

function renderSummary(s: proto.CheckpointSummary): string {
  const lines = [shown(s.path)];
  lines.push(`  format      ${formatName(s.format)}${s.formatDetail ? ` — ${s.formatDetail}` : ""}`);
  lines.push(`  size        ${formatBytes(s.fileSize)}${s.files.length > 1 ? ` in ${s.files.length} files` : ""}`);
  lines.push(
    `  parameters  ${formatInt(s.parameterCount)}${s.parameterCount >= 1000 ? ` (${formatCount(s.parameterCount)})` : ""}`,
  );
  const disk = s.storageBytes !== s.tensorBytes ? `, ${formatBytes(s.storageBytes)} stored` : "";
  lines.push(`  tensors     ${formatInt(s.tensorCount)} (${formatBytes(s.tensorBytes)}${disk})`);
  if (s.dtypes.length) {
    const parts = s.dtypes.map((d) => `${d.dtype} ×${formatInt(d.tensors)} ${formatBytes(d.bytes)}`);
    lines.push(`  dtypes      ${parts.join(", ")}`);
  }
  const training = formatEpochStep(s.epoch, s.globalStep);
  if (training) lines.push(`  training    ${training}`);
  lines.push(...renderSafety(s.safety));
  s.warnings.forEach((w, i) => {
    lines.push(`  ${i === 0 ? "warnings" : "        "}    ${w}`);
  });
  return lines.join("\n");
}

function renderTensors(s: proto.CheckpointSummary): string {
  if (s.tensorCount === 0) return "No tensors.";
  if (!s.tensors.length) return `${formatInt(s.tensorCount)} tensors not listed (--tensors N lists them).`;
  const rows = [["NAME", "DTYPE", "SHAPE", "PARAMS", "SIZE"]];
  for (const t of s.tensors) {
    rows.push([
      t.name,
      t.dtype,
      formatShape(t.shape),
      formatInt(t.numel),
      t.nbytes === null ? "—" : formatBytes(t.nbytes),
    ]);
  }
  let text = table(rows, new Set([3, 4]));
  const more = s.tensorCount - s.tensors.length;
  if (more > 0) text += `\n… ${formatInt(more)} more (--tensors all lists every tensor)`;
  return text;
}

export const ckptInspectCommand: Command = {
  name: "ckpt inspect",
  summary: "Show what a checkpoint holds (format, parameters, dtypes, safety, tensors) without running its code.",
  usage: "gpuwb ckpt inspect PATH [--tensors N|all] [--json]",
  positionals: [1, 1],
  options: [
    {
      name: "tensors",
      takesValue: true,
      valueName: "N|all",
      help: "list the first N tensors (default 20; every tensor with --json)",
    },
    JSON_OPTION,
  ],
  async run(backend, args, out) {
    const file = path.resolve(args.positionals[0] as string);
    const opt = args.options.tensors;
    const maxTensors =
      opt === "all"
        ? undefined
        : opt === "0"
          ? 0
          : (positiveInt(opt, "--tensors", Number.MAX_SAFE_INTEGER, "a whole number or all") ??
            (out.json ? undefined : 20));
    const summary = await request(
      backend,
      proto.checkpointInspect,
      { path: file, ...(maxTensors !== undefined ? { maxTensors } : {}) },
      out,
    );
    if (out.json) {
      out.printJson(summary);
      return EXIT.ok;
    }
    out.print(`${renderSummary(summary)}\n\n${renderTensors(summary)}`);
    return EXIT.ok;
  },
};

// ---- diff ----

function renderDiff(d: proto.CheckpointDiffResult): string {
  const c = d.counts;
  const lines = [`${shown(d.a.path)} → ${shown(d.b.path)}`, d.summary];
  const order: (keyof proto.CheckpointDiffCounts)[] = [
    "added",
    "removed",
    "reshaped",
    "retyped",
    "changed",
    "unchanged",
    "unknown",
  ];
  const counts = order
    .filter((k) => c[k] > 0 || k === "added" || k === "removed" || k === "changed")
    .map((k) => `${k} ${formatInt(c[k])}`);
  lines.push(`  ${counts.join(" · ")}`);
  const changed = d.tensors.filter((t) => t.change !== "unchanged" && t.change !== "unknown");
  if (changed.length) {
    const rows = [["NAME", "CHANGE", "A", "B"]];
    for (const t of changed) rows.push([t.name, t.change, dtypeShape(t.a), dtypeShape(t.b)]);
    lines.push("", table(rows));
  }
  if (d.metadata.length) {
    lines.push("", "metadata");
    for (const m of d.metadata) lines.push(`  ${m.key}: ${oneLine(m.a)} → ${oneLine(m.b)}`);
  }
  return lines.join("\n");
}

export const ckptDiffCommand: Command = {
  name: "ckpt diff",
  summary: "Compare two checkpoints: tensors added, removed, reshaped, retyped or changed, and metadata.",
  usage: "gpuwb ckpt diff A B [--no-values] [--json]",
  positionals: [2, 2],
  options: [
    { name: "no-values", help: "compare names, dtypes and shapes only (do not hash tensor bytes)" },
    JSON_OPTION,
  ],
  async run(backend, args, out) {
    const [a, b] = args.positionals.map((p) => path.resolve(p)) as [string, string];
    const result = await request(
      backend,
      proto.checkpointDiff,
      { a, b, compareValues: args.options["no-values"] !== true },
      out,
    );
    if (out.json) out.printJson(result);
    else out.print(renderDiff(result));
    return EXIT.ok;
  },
};

// ---- stats ----

const EIGHTHS = ["", "▏", "▎", "▍", "▌", "▋", "▊", "▉"];

/** A bar of `value / max` of `width` cells, in eighths of a cell. */
function bar(value: number, max: number, width: number): string {
  const eighths = max > 0 ? Math.round((value / max) * width * 8) : 0;
  return "█".repeat(Math.floor(eighths / 8)) + (EIGHTHS[eighths % 8] ?? "");
}

function renderHistogram(s: proto.CheckpointTensorStats): string {
  const h = s.histogram;
  if (!h?.counts.length) return "";
  const max = Math.max(...h.counts);
  const total = h.counts.reduce((x, y) => x + y, 0);
  const lows = h.counts.map((_, i) => formatStat(h.edges[i]));
  const highs = h.counts.map((_, i) => formatStat(h.edges[i + 1]));
  const wl = Math.max(...lows.map((x) => x.length));
  const wh = Math.max(...highs.map((x) => x.length));
  const wc = Math.max(...h.counts.map((n) => formatInt(n).length));
  const lines = [`histogram of ${s.name} (${formatInt(total)} values${s.sampled ? ", sampled" : ""})`];
  h.counts.forEach((n, i) => {
    const range = `${(lows[i] ?? "").padStart(wl)} … ${(highs[i] ?? "").padEnd(wh)}`;
    lines.push(`  ${range}  ${formatInt(n).padStart(wc)}  ${bar(n, max, 40)}`);
  });
  return lines.join("\n");
}

function renderStats(r: proto.CheckpointStatsResult, withHistogram: boolean): string {
  if (!r.stats.length) return "No tensors.";
  const rows = [["NAME", "DTYPE", "MIN", "MAX", "MEAN", "STD", "NAN", "INF", "ZERO", "SAMPLED"]];
  const errors: string[] = [];
  for (const s of r.stats) {
    if (s.error) {
      rows.push([s.name, s.dtype, "—", "—", "—", "—", "—", "—", "—", ""]);
      errors.push(`${s.name}: ${s.error}`);
      continue;
    }
    rows.push([
      s.name,
      s.dtype,
      formatStat(s.min),
      formatStat(s.max),
      formatStat(s.mean),
      formatStat(s.std),
      formatInt(s.nanCount),
      formatInt(s.infCount),
      formatPercent(s.zeroFraction),
      s.sampled ? `${formatCount(s.count)} of ${formatCount(s.numel)}` : "",
    ]);
  }
  let text = table(rows, new Set([2, 3, 4, 5, 6, 7, 8]));
  if (errors.length) text += `\n\n${errors.join("\n")}`;
  const only = r.stats[0];
  if (withHistogram && r.stats.length === 1 && only?.histogram) text += `\n\n${renderHistogram(only)}`;
  return text;
}

export const ckptStatsCommand: Command = {
  name: "ckpt stats",
  summary: "Tensor statistics (min, max, mean, std, NaN/Inf, zeros) read from the file; a histogram for one tensor.",
  usage: "gpuwb ckpt stats PATH [TENSOR...] [--bins N] [--json]",
  positionals: [1, 100_000],
  options: [{ name: "bins", takesValue: true, valueName: "N", help: "histogram bins (default 16)" }, JSON_OPTION],
  async run(backend, args, out) {
    const [first, ...names] = args.positionals as [string, ...string[]];
    const bins = positiveInt(args.options.bins, "--bins", 1000) ?? 16;
    const result = await request(
      backend,
      proto.checkpointStats,
      { path: path.resolve(first), tensors: names.length ? names : null, bins },
      out,
    );
    if (out.json) {
      out.printJson(result);
      return EXIT.ok;
    }
    out.print(renderStats(result, names.length === 1));
    return EXIT.ok;
  },
};

// ---- scan ----

/** `--allow a.B,c.D`, also given several times. */
function allowList(args: Parsed): string[] {
  const values = args.lists?.allow ?? [];
  const names = values.flatMap((v) => v.split(",")).map((v) => v.trim());
  for (const n of names) {
    if (!/^[^.\s]+(\.[^.\s]+)+$/.test(n)) {
      throw new CommandError(
        `--allow takes MODULE.NAME, e.g. omegaconf.dictconfig.DictConfig (got "${n}")`,
        EXIT.usage,
      );
    }
  }
  return names;
}

const VERDICT_LABEL: Record<proto.CheckpointScanEntry["verdict"], string> = {
  safe: "safe",
  unknown: "UNKNOWN",
  unsafe: "UNSAFE",
  error: "ERROR",
};

function scanReason(r: proto.CheckpointScanEntry): string {
  if (r.verdict === "error") return r.error ?? r.summary;
  if (r.verdict === "safe") return "";
  const named = (c: string) => [...new Set(r.globals.filter((g) => g.classification === c).map(globalName))];
  const main = named(r.verdict);
  if (!main.length) return r.summary; // flagged for something other than a named global
  let text = main.length > 6 ? `${main.slice(0, 6).join(", ")} and ${main.length - 6} more` : main.join(", ");
  const unknown = r.verdict === "unsafe" ? named("unknown").length : 0;
  if (unknown) text += ` (and ${unknown} unknown)`;
  return text;
}

function renderScan(results: proto.CheckpointScanEntry[]): string {
  if (!results.length) return "No checkpoint files found.";
  const rows = results.map((r) => [VERDICT_LABEL[r.verdict], shown(r.path), scanReason(r)]);
  const n = (v: string) => results.filter((r) => r.verdict === v).length;
  const parts = [`${n("safe")} safe`, `${n("unknown")} unknown`, `${n("unsafe")} unsafe`];
  if (n("error")) parts.push(`${n("error")} unreadable`);
  const lines = [table(rows), "", `${results.length} file${results.length === 1 ? "" : "s"}: ${parts.join(", ")}.`];
  if (n("unsafe") || n("unknown")) {
    lines.push(
      "Loading an UNSAFE or UNKNOWN file with torch.load(weights_only=False) or pickle runs the code listed. " +
        "Prefer safetensors; allow globals you trust with --allow MODULE.NAME.",
    );
  }
  return lines.join("\n");
}

export const ckptScanCommand: Command = {
  name: "ckpt scan",
  summary: "Safety-scan checkpoints (files or folders): would torch.load run code? Exits 1 if any would.",
  usage: [
    "gpuwb ckpt scan PATH... [--allow MODULE.NAME[,MODULE.NAME…]] [--json]",
    "",
    "Every pickle is read statically, never executed. Per file: safe (weights-only allowlist),",
    "UNKNOWN (imports globals torch's weights-only loader refuses), UNSAFE (would call known",
    "dangerous code such as os.system or eval), or ERROR (not readable as a checkpoint).",
    "Folders are searched recursively; files are recognized by content, not by extension.",
    "",
    "Exit codes (for CI): 0 every file is safe; 1 a file is UNSAFE, UNKNOWN or unreadable;",
    "2 usage error; 3 no usable Python or the backend could not start.",
  ].join("\n"),
  positionals: [1, 100_000],
  options: [
    {
      name: "allow",
      takesValue: true,
      valueName: "MODULE.NAME",
      repeatable: true,
      help: "treat these globals as safe (repeatable or comma-separated), e.g. argparse.Namespace",
    },
    JSON_OPTION,
  ],
  async run(backend, args, out) {
    const allow = allowList(args);
    const paths = args.positionals.map((p) => path.resolve(p));
    const result = await request(backend, proto.checkpointScan, { paths, ...(allow.length ? { allow } : {}) }, out);
    if (out.json) out.printJson(result);
    else out.print(renderScan(result.results));
    return result.results.every((r) => r.verdict === "safe") ? EXIT.ok : EXIT.failed;
  },
};

export const ckptCommands: Command[] = [ckptInspectCommand, ckptDiffCommand, ckptStatsCommand, ckptScanCommand];
