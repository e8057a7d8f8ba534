/**
 * `gpuwb gpu …`: the GPUs of this machine from the terminal.
 *
 * `gpu status` shows one row per GPU (utilization, memory, temperature, power, throttle
 * reasons, verdict) and, with --watch, redraws on every sample the backend sends until
 * Ctrl+C. A machine without a GPU is a calm state ("No GPU: …", exit 0), not an error.
 *
 * `gpu check` runs the backend's health checks (and, with torch, short benchmarks) and
 * exits 0 when the verdict is pass or warn, 1 when it is fail, so a CI job or a provisioning
 * script can gate on it.
 */
import * as path from "node:path";
import type { RequestType } from "vscode-jsonrpc";
import * as proto from "../../protocol";
import { type Command, CommandError, EXIT, JSON_OPTION, type Output } from "../command";
import type { Backend } from "../connection";
import { BackendGone, backendClosed, cliRequest } from "../request";

// ---- requests ----

/** A backend error the user can act on as a CommandError with its hint; a bug as it is. */
function asCommandError(e: unknown): unknown {
  const data = proto.errorData(e);
  if (!data || data.kind === "Internal") return e;
  const message = e instanceof Error ? e.message : String(e);
  return new CommandError(`${message.replace(/\.?$/, ".")}${data.hint ? ` ${data.hint}` : ""}`, EXIT.failed);
}

/**
 * Send a request; with `progress`, show the backend's progress on one stderr line (only on
 * a terminal); with `cancellable`, Ctrl+C sends $/cancelRequest (twice leaves at once).
 */
function request<P extends object, R>(
  backend: Backend,
  type: RequestType<P, R, void>,
  params: P,
  out: Output,
  opts: { progress?: boolean; cancellable?: string } = {},
): Promise<R> {
  return cliRequest(backend, type, params, out, { ...opts, watchClose: true, asError: asCommandError });
}

// ---- formatting ----

/** Colour on a terminal only (and never with NO_COLOR or TERM=dumb). */
export function colorsFor(stream: NodeJS.WritableStream, env: NodeJS.ProcessEnv = process.env): boolean {
  if (env.NO_COLOR !== undefined && env.NO_COLOR !== "") return false;
  if (env.TERM === "dumb") return false;
  return (stream as NodeJS.WriteStream).isTTY === true;
}

type Paint = (text: string, tone: string) => string;

const TONES: Record<string, string> = {
  ok: "32",
  pass: "32",
  warn: "33",
  critical: "31",
  fail: "31",
  skip: "2",
  info: "36",
};

function painter(color: boolean): Paint {
  return (text, tone) => {
    const code = TONES[tone];
    return color && code ? `\x1b[${code}m${text}\x1b[0m` : text;
  };
}

// biome-ignore lint/suspicious/noControlCharactersInRegex: ANSI colour sequences
const ANSI = /\x1b\[[0-9;]*m/g;
const visible = (s: string) => s.replace(ANSI, "").length;

/** Rows as aligned columns (colour codes take no width); `right` marks number columns. */
function table(rows: string[][], right: ReadonlySet<number> = new Set()): string {
  const widths = rows[0]?.map((_, i) => Math.max(...rows.map((r) => visible(r[i] ?? "")))) ?? [];
  return rows
    .map((r) =>
      r
        .map((c, i) => {
          const pad = " ".repeat(Math.max(0, (widths[i] ?? 0) - visible(c)));
          return right.has(i) ? pad + c : c + pad;
        })
        .join("  ")
        .trimEnd(),
    )
    .join("\n");
}

const GIB = 1024 ** 3;
const gib = (n: number) => (n / GIB).toFixed(1);

/** `61.0/80.0 GiB`; an unknown side is "—". */
export function memoryCell(used: number | null, total: number | null): string {
  if (used === null && total === null) return "—";
  return `${used === null ? "—" : gib(used)}/${total === null ? "—" : gib(total)} GiB`;
}

/** `350/700 W`, `350 W` without a limit. */
export function powerCell(draw: number | null, limit: number | null): string {
  if (draw === null && limit === null) return "—";
  if (limit === null) return `${Math.round(draw as number)} W`;
  return `${draw === null ? "—" : Math.round(draw)}/${Math.round(limit)} W`;
}

function unitCell(v: number | null, unit: string): string {
  return v === null ? "—" : `${v} ${unit}`;
}

function where(gpu: number | null): string {
  return gpu === null ? "machine" : `GPU ${gpu}`;
}

function clock(t: number): string {
  return new Date(t * 1000).toTimeString().slice(0, 8);
}

/** No GPU data at all: the calm "No GPU" state. */
export function noGpu(s: proto.GpuSnapshot): boolean {
  return s.gpus.length === 0;
}

export function renderSnapshot(s: proto.GpuSnapshot, color: boolean): string {
  const paint = painter(color);
  if (noGpu(s)) return `No GPU: ${s.message ?? "no GPU was found on this machine."}`;
  const rows = [["GPU", "NAME", "UTIL", "MEMORY", "TEMP", "POWER", "THROTTLE", "VERDICT"]];
  for (const g of s.gpus) {
    rows.push([
      String(g.index),
      `${g.name || "unknown"}${g.lost ? " (lost)" : ""}`,
      unitCell(g.utilization, "%"),
      memoryCell(g.memoryUsed, g.memoryTotal),
      unitCell(g.temperature, "°C"),
      powerCell(g.powerDraw, g.powerLimit),
      g.lost ? "—" : g.throttle.join(",") || "none",
      paint(g.verdict, g.verdict),
    ]);
  }
  const lines = [table(rows, new Set([0, 2, 3, 4, 5]))];
  const procs = s.gpus.flatMap((g) => g.processes.map((p) => ({ gpu: g.index, ...p })));
  if (procs.length) {
    lines.push("", "Processes:");
    const prow = [["GPU", "PID", "NAME", "MEMORY"]];
    for (const p of procs) {
      prow.push([
        String(p.gpu),
        String(p.pid),
        p.name ?? "—",
        p.usedMemory === null ? "—" : `${gib(p.usedMemory)} GiB`,
      ]);
    }
    lines.push(
      ...table(prow, new Set([0, 1, 3]))
        .split("\n")
        .map((l) => `  ${l}`),
    );
  }
  if (s.reasons.length) {
    lines.push("", "Reasons:");
    for (const r of s.reasons) {
      // Messages name their GPU ("GPU 1 is …"); only say where when they do not.
      const named = r.gpu !== null && r.message.startsWith(`GPU ${r.gpu}`);
      lines.push(`  ${paint(r.severity.padEnd(8), r.severity)}  ${named ? "" : `${where(r.gpu)}: `}${r.message}`);
    }
  }
  const facts = [
    `Driver ${s.driverVersion ?? "unknown"}`,
    `CUDA ${s.cudaVersion ?? "unknown"}`,
    `via ${s.source}`,
    `verdict ${paint(s.verdict, s.verdict)}`,
  ];
  lines.push("", facts.join(", "));
  return lines.join("\n");
}

/** gpu/status or gpu/watch (no GPU is a snapshot with source "none", not an error). */
async function snapshotRequest<P extends object>(
  backend: Backend,
  type: RequestType<P, proto.GpuSnapshot, void>,
  params: P,
): Promise<proto.GpuSnapshot> {
  const gone = backendClosed(backend);
  try {
    return await Promise.race([backend.connection.sendRequest(type, params), gone.closed]);
  } catch (e) {
    if (e instanceof BackendGone) throw new CommandError(e.message, EXIT.failed);
    throw asCommandError(e);
  } finally {
    gone.dispose();
  }
}

// ---- status ----

async function watch(backend: Backend, out: Output): Promise<number> {
  const tty = (out.stdout as NodeJS.WriteStream).isTTY === true && !out.json;
  const color = colorsFor(out.stdout);
  const watcher = `gpuwb-cli-${process.pid}`;
  let count = 0;
  const show = (s: proto.GpuSnapshot) => {
    if (out.json) {
      out.printJsonLine(s);
      return;
    }
    const body = renderSnapshot(s, color);
    if (tty) {
      const every = s.intervalSeconds > 0 ? `every ${s.intervalSeconds} s` : "live";
      out.stdout.write(`\x1b[H\x1b[2J${clock(s.time)}  ${every}, Ctrl+C to stop\n\n${body}\n`);
    } else {
      out.print(`${count > 0 ? "\n" : ""}${body}`);
    }
    count++;
  };
  let stop: (why: "sigint" | "closed") => void = () => undefined;
  const stopped = new Promise<"sigint" | "closed">((resolve) => {
    stop = resolve;
  });
  let interrupted = false;
  let backendGone = false;
  const onSigint = () => {
    if (interrupted) process.exit(130);
    interrupted = true;
    stop("sigint");
  };
  process.on("SIGINT", onSigint);
  const closed = backend.connection.onClose(() => {
    backendGone = true;
    stop("closed");
  });
  let live = false;
  const samples = backend.connection.onNotification(proto.gpuSample, (s) => {
    if (live && !interrupted) show(s);
  });
  try {
    const first = await Promise.race([snapshotRequest(backend, proto.gpuWatch, { watcher, watching: true }), stopped]);
    if (first === "sigint") return EXIT.ok;
    if (first === "closed") throw new CommandError("the backend ended while starting to watch.", EXIT.failed);
    show(first);
    // No GPU and no sampler: the backend re-probes only when asked, so nothing would come.
    if (noGpu(first) && !first.sampling) return EXIT.ok;
    live = true;
    const why = await stopped;
    if (why === "closed") throw new CommandError("the backend ended; no more samples.", EXIT.failed);
    return EXIT.ok;
  } finally {
    live = false;
    samples.dispose();
    closed.dispose();
    if (!backendGone) {
      // Stop sampling for this watcher. The backend may be going (Ctrl+C in a terminal
      // reaches its whole process group): wait briefly, and never fail over it.
      const timeout = new Promise((resolve) => setTimeout(resolve, 2000).unref());
      try {
        await Promise.race([
          backend.connection.sendRequest(proto.gpuWatch, { watcher, watching: false }).catch(() => undefined),
          timeout,
        ]);
      } catch {
        // the connection is already closed
      }
    }
    process.off("SIGINT", onSigint);
  }
}

export const gpuStatusCommand: Command = {
  name: "gpu status",
  summary: "Every GPU of this machine: utilization, memory, temperature, power, throttling, verdict.",
  usage: [
    "gpuwb gpu status [--watch] [--json]",
    "",
    'Without a GPU (no driver, no device) it prints "No GPU: <why>" and exits 0.',
    "The exit code does not depend on the verdict; use gpuwb gpu check to gate on health.",
    "--watch redraws on every sample (the backend's interval, gpuWorkbench.gpu settings)",
    "until Ctrl+C; with --json it prints one JSON snapshot per line.",
  ].join("\n"),
  options: [{ name: "watch", help: "keep sampling and redraw on every sample until Ctrl+C" }, JSON_OPTION],
  async run(backend, args, out) {
    if (args.options.watch === true) return watch(backend, out);
    const snapshot = await snapshotRequest(backend, proto.gpuStatus, { fresh: true });
    if (out.json) out.printJson(snapshot);
    else out.print(renderSnapshot(snapshot, colorsFor(out.stdout)));
    return EXIT.ok;
  },
};

// ---- check ----

function numberCell(v: number | null, unit: string | null): string {
  if (v === null) return "—";
  const a = Math.abs(v);
  const n = Number.isInteger(v) ? String(v) : String(Number(v.toFixed(a >= 100 ? 0 : a >= 10 ? 1 : 2)));
  return unit ? `${n} ${unit}` : n;
}

export function renderCheck(r: proto.GpuCheckReport, color: boolean): string {
  const paint = painter(color);
  const rows = [["STATUS", "CHECK", "GPU", "MEASURED", "EXPECTED", "DETAIL"]];
  for (const row of r.rows) {
    rows.push([
      paint(row.status, row.status),
      row.title || row.id,
      row.gpu === null ? "—" : String(row.gpu),
      numberCell(row.measured, row.unit),
      numberCell(row.expected, row.unit),
      // The extension's setting means nothing here; the CLI has an option for it.
      row.detail.replace(
        /set gpuWorkbench\.gpu\.expectedCount to check the count/,
        "--expected-gpus N checks the count",
      ),
    ]);
  }
  const counts = (["pass", "warn", "fail", "skip", "info"] as const)
    .map((s) => [s, r.rows.filter((x) => x.status === s).length] as const)
    .filter(([, n]) => n > 0)
    .map(([s, n]) => `${n} ${s}`);
  const verdict = `Verdict: ${paint(r.verdict.toUpperCase(), r.verdict)}${counts.length ? ` (${counts.join(", ")})` : ""} in ${(r.durationMs / 1000).toFixed(1)} s`;
  return [r.rows.length ? table(rows, new Set([2, 3, 4])) : "No checks ran.", "", verdict].join("\n");
}

function expectedGpus(value: string | boolean | undefined): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (typeof value !== "string" || !Number.isInteger(n) || n < 0 || n > 1024) {
    throw new CommandError("--expected-gpus must be a whole number from 0 to 1024", EXIT.usage);
  }
  return n;
}

export const gpuCheckCommand: Command = {
  name: "gpu check",
  summary: "Health checks of every GPU (ECC, remapped rows, XIDs, PCIe, throttling, count) and short benchmarks.",
  usage: [
    "gpuwb gpu check [--no-benchmarks] [--expected-gpus N] [--python PATH] [--json | --markdown]",
    "",
    "Exit code: 0 when the verdict is pass or warn (warnings are reported, not fatal),",
    "1 when it is fail or the check could not run; Ctrl+C cancels it (exit 1).",
    "--python PATH (also $GPUWB_PYTHON) is the interpreter whose torch runs the benchmarks;",
    "without torch there, the benchmark rows are skipped.",
  ].join("\n"),
  options: [
    { name: "no-benchmarks", help: "only the health checks: no torch benchmarks" },
    {
      name: "expected-gpus",
      takesValue: true,
      valueName: "N",
      help: "the GPUs the machine should have: fewer (or a lost one) fails, more warns",
    },
    { name: "markdown", help: "print the report as Markdown (for an issue or a CI summary)" },
    JSON_OPTION,
  ],
  async run(backend, args, out) {
    if (out.json && args.options.markdown === true) {
      throw new CommandError("give --json or --markdown, not both", EXIT.usage);
    }
    const expectedGpuCount = expectedGpus(args.options["expected-gpus"]);
    const named = typeof args.options.python === "string" ? args.options.python : process.env.GPUWB_PYTHON;
    // A path is the user's, relative to here; a bare name is looked up on PATH by the backend.
    const python = named && /[\\/]/.test(named) ? path.resolve(named) : named;
    const params: proto.GpuCheckParams = {
      ...(python ? { python } : {}),
      ...(args.options["no-benchmarks"] === true ? { benchmarks: false } : {}),
      ...(expectedGpuCount !== undefined ? { expectedGpuCount } : {}),
    };
    const report = await request(backend, proto.gpuCheck, params, out, {
      progress: true,
      cancellable: "Cancelled; the check did not finish.",
    });
    if (out.json) out.printJson(report);
    else if (args.options.markdown === true) out.print(report.markdown.replace(/\n+$/, ""));
    else out.print(renderCheck(report, colorsFor(out.stdout)));
    return report.verdict === "fail" ? EXIT.failed : EXIT.ok;
  },
};

export const gpuCommands: Command[] = [gpuStatusCommand, gpuCheckCommand];
