/**
 * What the GPU status item, tooltip, panel and notifications say, computed from the
 * backend's snapshots. Pure (no `vscode`), so unit tests and the webviews can use it.
 */
import type { GpuCheckReport, GpuCheckRow, GpuHistoryPoint, GpuInfo, GpuReason, GpuSnapshot } from "../protocol";
import { parseTarget } from "../remote/format";

export const GIB = 1024 ** 3;
/** How much history the panel keeps and plots. */
export const HISTORY_SECONDS = 15 * 60;

export type GpuLevel = "none" | "ok" | "warn" | "error";

export interface GpuStatusView {
  /** Status bar text (may hold a `$(icon)`). */
  text: string;
  /** none: no GPU (calm, no colour); warn/error: the background colour to use. */
  level: GpuLevel;
  /** Markdown for the tooltip. */
  tooltip: string;
  /** Screen reader label. */
  label: string;
}

/** Gibibytes, one decimal below 10 and whole numbers above. */
export function gib(bytes: number | null | undefined): string {
  if (bytes === null || bytes === undefined || !Number.isFinite(bytes)) return "—";
  const g = bytes / GIB;
  return g < 10 ? trimZero(g.toFixed(1)) : String(Math.round(g));
}

function trimZero(s: string): string {
  return s.endsWith(".0") ? s.slice(0, -2) : s;
}

export function percent(v: number | null | undefined): string {
  return v === null || v === undefined || !Number.isFinite(v) ? "—" : `${Math.round(v)}%`;
}

export function celsius(v: number | null | undefined): string {
  return v === null || v === undefined || !Number.isFinite(v) ? "—" : `${Math.round(v)}°C`;
}

export function watts(v: number | null | undefined): string {
  return v === null || v === undefined || !Number.isFinite(v) ? "—" : `${Math.round(v)} W`;
}

/** "61/80 GiB"; "—" when neither is known. */
export function memory(used: number | null | undefined, total: number | null | undefined): string {
  if ((used === null || used === undefined) && (total === null || total === undefined)) return "—";
  return `${gib(used)}/${gib(total)} GiB`;
}

/** "350/700 W", "350 W", "—". */
export function power(draw: number | null | undefined, limit: number | null | undefined): string {
  if (draw === null || draw === undefined) return limit === null || limit === undefined ? "—" : `—/${watts(limit)}`;
  return limit === null || limit === undefined ? watts(draw) : `${Math.round(draw)}/${watts(limit)}`;
}

function levelOf(snap: GpuSnapshot): GpuLevel {
  if (snap.verdict === "critical") return "error";
  if (snap.verdict === "warn") return "warn";
  return "ok";
}

function memFraction(g: GpuInfo): number {
  return g.memoryUsed !== null && g.memoryTotal ? g.memoryUsed / g.memoryTotal : -1;
}

/** The numbers after "GPU " or "N GPUs ": mean utilization, worst memory, hottest GPU. */
function summaryParts(gpus: GpuInfo[]): string[] {
  const live = gpus.filter((g) => !g.lost);
  const parts: string[] = [];
  const utils = live.map((g) => g.utilization).filter((u): u is number => u !== null && Number.isFinite(u));
  if (utils.length) parts.push(percent(utils.reduce((s, u) => s + u, 0) / utils.length));
  const withMem = live.filter((g) => g.memoryUsed !== null || g.memoryTotal !== null);
  if (withMem.length) {
    const worst = withMem.reduce((a, b) => (memFraction(b) > memFraction(a) ? b : a));
    parts.push(memory(worst.memoryUsed, worst.memoryTotal));
  }
  const temps = live.map((g) => g.temperature).filter((t): t is number => t !== null && Number.isFinite(t));
  if (temps.length) parts.push(celsius(Math.max(...temps)));
  return parts;
}

/** The status item's text for a snapshot. */
export function statusText(snap: GpuSnapshot): string {
  const gpus = snap.gpus;
  if (snap.source === "none" || gpus.length === 0) return "$(circuit-board) No GPU";
  const lost = gpus.filter((g) => g.lost).length;
  const parts = summaryParts(gpus);
  if (gpus.length === 1) {
    if (lost) return "$(error) GPU lost";
    return `GPU ${parts.join(" · ") || "—"}`;
  }
  const head = `${gpus.length} GPUs`;
  if (lost === gpus.length) return `$(error) ${head} lost`;
  const tail = lost ? ` · ${lost} lost` : "";
  return `${head} ${parts.join(" · ") || "—"}${tail}`;
}

/** Markdown text with the characters a table cell or emphasis would misread escaped. */
export function mdEscape(s: string): string {
  return s.replace(/[\\`*_[\]|<>]/g, (c) => `\\${c}`);
}

function verdictWord(v: GpuInfo["verdict"] | GpuSnapshot["verdict"]): string {
  return v === "ok" ? "OK" : v === "warn" ? "Warning" : "Critical";
}

/** A reason as one line; the backend's messages usually name their GPU already. */
export function reasonLine(r: GpuReason): string {
  if (/^(GPU|Machine)\b/i.test(r.message)) return r.message;
  const where = r.gpu === null ? "Machine" : `GPU ${r.gpu}`;
  return `${where}: ${r.message}`;
}

function gpuMessage(g: GpuInfo, message: string): string {
  return /^GPU\b/.test(message) ? message : `GPU ${g.index} (${g.name}): ${message}`;
}

/** Every reason of a snapshot, the machine's first, each once. */
export function allReasons(snap: GpuSnapshot): GpuReason[] {
  const out: GpuReason[] = [];
  const seen = new Set<string>();
  for (const r of [...snap.reasons, ...snap.gpus.flatMap((g) => g.reasons)]) {
    const k = `${r.gpu}|${r.code}|${r.message}`;
    if (seen.has(k)) continue;
    seen.add(k);
    out.push(r);
  }
  return out;
}

/** "box" or, for a connected machine shown by its name, "a100-box (ssh/a100-box)". */
function machineText(snap: GpuSnapshot, machineName?: string): string {
  if (!machineName || machineName === snap.machine) return mdEscape(snap.machine);
  return `${mdEscape(machineName)} (${mdEscape(snap.machine)})`;
}

/**
 * The tooltip: a heading, a table with a row per GPU, and the reasons. `machineName` names
 * a connected machine (its snapshots are named "provider/id").
 */
export function statusTooltip(snap: GpuSnapshot, machineName?: string): string {
  if (snap.source === "none" || snap.gpus.length === 0) {
    const why = snap.message ?? "No NVIDIA GPU was found on this machine.";
    return `**No GPU** on ${machineText(snap, machineName)}\n\n${mdEscape(why)}\n\nClick to open the GPU panel.`;
  }
  const lines: string[] = [];
  const versions = [
    snap.driverVersion ? `driver ${mdEscape(snap.driverVersion)}` : "",
    snap.cudaVersion ? `CUDA ${mdEscape(snap.cudaVersion)}` : "",
  ].filter(Boolean);
  lines.push(
    `**GPU health: ${verdictWord(snap.verdict)}** on ${machineText(snap, machineName)}${versions.length ? ` · ${versions.join(" · ")}` : ""}`,
  );
  lines.push("");
  lines.push("| # | Name | Util | Memory | Temp | Power | Verdict |");
  lines.push("|--:|:--|--:|--:|--:|--:|:--|");
  for (const g of snap.gpus) {
    const cells = g.lost
      ? [String(g.index), mdEscape(g.name), "—", "—", "—", "—", "Lost"]
      : [
          String(g.index),
          mdEscape(g.name),
          percent(g.utilization),
          memory(g.memoryUsed, g.memoryTotal),
          celsius(g.temperature),
          power(g.powerDraw, g.powerLimit),
          verdictWord(g.verdict),
        ];
    lines.push(`| ${cells.join(" | ")} |`);
  }
  const reasons = allReasons(snap);
  if (reasons.length) {
    lines.push("");
    for (const r of reasons) {
      const icon = r.severity === "critical" ? "$(error)" : "$(warning)";
      lines.push(`- ${icon} ${mdEscape(reasonLine(r))}`);
    }
  }
  lines.push("");
  lines.push(snap.sampling ? `Updated every ${trimZero(snap.intervalSeconds.toFixed(1))} s. ` : "");
  lines[lines.length - 1] += "Click to open the GPU panel.";
  return lines.join("\n");
}

/** "nsgpu · GPU 87%", keeping a leading `$(icon)` first: "$(error) nsgpu · GPU lost". */
export function withMachine(text: string, machineName: string | undefined): string {
  if (!machineName) return text;
  const icon = /^\$\([a-z-]+\)\s*/.exec(text)?.[0] ?? "";
  return `${icon}${machineName} · ${text.slice(icon.length)}`;
}

/**
 * Everything the status item shows for a snapshot; `machineName` (a connected machine's
 * name) is put in front of the text and into the tooltip and label.
 */
export function statusView(snap: GpuSnapshot, machineName?: string): GpuStatusView {
  const none = snap.source === "none" || snap.gpus.length === 0;
  const text = withMachine(statusText(snap), machineName);
  const plain = text.replace(/\$\([a-z-]+\)\s*/g, "");
  const on = machineName ? ` on ${machineName}` : "";
  return {
    text,
    level: none ? "none" : levelOf(snap),
    tooltip: statusTooltip(snap, machineName),
    label: none ? `No GPU${on}: ${snap.message ?? "none found"}` : `GPU health ${verdictWord(snap.verdict)}: ${plain}`,
  };
}

// ---- machines ------------------------------------------------------------------------------

/**
 * The monitor's key of a snapshot's machine: "" for this machine, "provider/id" for a
 * connected one (its samples are named so; a host name has no "/").
 */
export function machineKeyOf(snap: Pick<GpuSnapshot, "machine">): string {
  return snap.machine.includes("/") ? snap.machine : "";
}

/** How a watch is listed: "statusBar" on this machine, "statusBar@ssh/box" on a connected one. */
export function watchKey(watcher: string, machine: string): string {
  return machine ? `${watcher}@${machine}` : watcher;
}

/**
 * The machine whose GPUs the status item follows for the active document's kernel target:
 * the target's machine when it is remote and connected, else this machine ("").
 */
export function focusedMachine(target: string | undefined, isConnected: (machine: string) => boolean): string {
  const t = parseTarget(target);
  return t.kind === "remote" && isConnected(t.machine) ? t.machine : "";
}

// ---- critical transitions ------------------------------------------------------------------

export interface CriticalEvent {
  key: string;
  message: string;
}

/** The critical conditions of a snapshot, each keyed by GPU uuid (or "machine") and reason code. */
export function criticalConditions(snap: GpuSnapshot): CriticalEvent[] {
  const out: CriticalEvent[] = [];
  const seen = new Set<string>();
  const add = (key: string, message: string) => {
    if (seen.has(key)) return;
    seen.add(key);
    out.push({ key, message });
  };
  for (const r of snap.reasons) {
    if (r.severity !== "critical") continue;
    const g = r.gpu === null ? undefined : snap.gpus.find((x) => x.index === r.gpu);
    add(`${g ? g.uuid : "machine"}:${r.code}`, g ? gpuMessage(g, r.message) : r.message);
  }
  for (const g of snap.gpus) {
    const crit = g.reasons.filter((r) => r.severity === "critical");
    for (const r of crit) add(`${g.uuid}:${r.code}`, gpuMessage(g, r.message));
    if (g.verdict === "critical" && !crit.length) {
      add(
        `${g.uuid}:${g.lost ? "lost" : "critical"}`,
        `GPU ${g.index} (${g.name}): ${g.lost ? "has fallen off the bus" : "is in a critical state"}.`,
      );
    }
  }
  return out;
}

/**
 * Track conditions across snapshots: returns those that were not critical in the previous
 * snapshot (a notification each), and updates `active` to the current ones.
 */
export function newCriticals(active: Set<string>, snap: GpuSnapshot): CriticalEvent[] {
  const now = criticalConditions(snap);
  const fresh = now.filter((c) => !active.has(c.key));
  active.clear();
  for (const c of now) active.add(c.key);
  return fresh;
}

/** The notification text for conditions that turned critical together (on `machine`, if named). */
export function criticalMessage(events: CriticalEvent[], machine?: string): string {
  const head = machine ? `GPU health on ${machine} is critical` : "GPU health is critical";
  if (events.length === 1) return `${head}. ${events[0]?.message ?? ""}`.trim();
  return `${head}: ${events.map((e) => e.message.replace(/\.$/, "")).join("; ")}.`;
}

// ---- history -------------------------------------------------------------------------------

/** A snapshot as a history point (the numbers the charts plot). */
export function toHistoryPoint(snap: GpuSnapshot): GpuHistoryPoint {
  return {
    time: snap.time,
    gpus: snap.gpus.map((g) => ({
      index: g.index,
      utilization: g.lost ? null : g.utilization,
      memoryUsed: g.lost ? null : g.memoryUsed,
      memoryTotal: g.lost ? null : g.memoryTotal,
      powerDraw: g.lost ? null : g.powerDraw,
      temperature: g.lost ? null : g.temperature,
    })),
  };
}

/** Append a point (unless it repeats the last time) and drop points older than the window. */
export function appendPoint(points: GpuHistoryPoint[], p: GpuHistoryPoint, windowSeconds = HISTORY_SECONDS): void {
  const last = points[points.length - 1];
  if (last && p.time <= last.time) return;
  points.push(p);
  const cutoff = p.time - windowSeconds;
  let drop = 0;
  while (drop < points.length && (points[drop]?.time ?? 0) < cutoff) drop++;
  if (drop) points.splice(0, drop);
}

// ---- check report --------------------------------------------------------------------------

/** "1.23 TFLOPS"; numbers without unit as they are. */
export function measuredText(row: Pick<GpuCheckRow, "measured" | "unit">): string {
  if (row.measured === null) return "—";
  return `${formatNumber(row.measured)}${row.unit ? ` ${row.unit}` : ""}`;
}

export function expectedText(row: Pick<GpuCheckRow, "expected" | "unit">): string {
  if (row.expected === null) return "—";
  return `${formatNumber(row.expected)}${row.unit ? ` ${row.unit}` : ""}`;
}

export function formatNumber(v: number): string {
  if (!Number.isFinite(v)) return String(v);
  if (Number.isInteger(v)) return v.toLocaleString("en-US");
  const abs = Math.abs(v);
  const digits = abs >= 100 ? 0 : abs >= 10 ? 1 : 2;
  return v.toLocaleString("en-US", { maximumFractionDigits: digits, minimumFractionDigits: 0 });
}

/** Counts of rows per status, e.g. {pass: 5, warn: 1, …}. */
export function statusCounts(report: GpuCheckReport): Record<GpuCheckRow["status"], number> {
  const c = { pass: 0, warn: 0, fail: 0, skip: 0, info: 0 };
  for (const r of report.rows) c[r.status]++;
  return c;
}

/** The report's Markdown with a note on top when benchmarks were left out (untrusted folder). */
export function reportMarkdown(report: GpuCheckReport, note: string | null): string {
  return note ? `> ${note}\n\n${report.markdown}` : report.markdown;
}

export const UNTRUSTED_NOTE =
  "This workspace is not trusted, so the benchmarks that run your Python interpreter (torch) were skipped. Trust the folder and run the check again to include them.";
