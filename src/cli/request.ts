/**
 * One backend request from a CLI command: the backend's `$/progress` on one stderr line
 * (only on a terminal), Ctrl+C as `$/cancelRequest` (twice leaves at once), and a backend
 * that ends before answering reported instead of leaving Node to exit 0. Shared by the
 * commands that run long requests (`vm`, `gpu`).
 */
import { CancellationTokenSource, type RequestType, ResponseError } from "vscode-jsonrpc";
import { ProgressType } from "vscode-jsonrpc/node";
import { CommandError, EXIT, type Output } from "./command";
import type { Backend } from "./connection";

type ProgressValue = { kind: "begin" | "report" | "end"; title?: string; message?: string; percentage?: number };
const PROGRESS = new ProgressType<ProgressValue>();
let nextToken = 0;
/** LSP's RequestCancelled (vscode-jsonrpc 8 does not export it). */
const REQUEST_CANCELLED = -32800;

export interface RequestOptions {
  /** Show the backend's progress on one stderr line (only when stderr is a terminal). */
  progress?: boolean;
  /** Ctrl+C sends $/cancelRequest; the request then fails with this message. */
  cancellable?: string;
  /** Fail with a CommandError when the backend's connection closes before the answer. */
  watchClose?: boolean;
  /** Applied to every progress line (e.g. to mask credentials). */
  redact?: (text: string) => string;
  /** A backend error as what the command throws (a CommandError with a hint, or as it is). */
  asError: (e: unknown) => unknown;
}

export class BackendGone extends Error {
  constructor() {
    super("the backend ended before it answered.");
  }
}

/**
 * A promise that rejects when the backend's connection closes. vscode-jsonrpc leaves
 * pending requests unsettled then, and with nothing else to wait for Node would exit 0
 * (Ctrl+C in a terminal may reach the backend too).
 */
export function backendClosed(backend: Backend): { closed: Promise<never>; dispose(): void } {
  let sub: { dispose(): void } | undefined;
  const closed = new Promise<never>((_, reject) => {
    sub = backend.connection.onClose(() => reject(new BackendGone()));
  });
  closed.catch(() => undefined);
  return { closed, dispose: () => sub?.dispose() };
}

export async function cliRequest<P extends object, R>(
  backend: Backend,
  type: RequestType<P, R, void>,
  params: P,
  out: Output,
  opts: RequestOptions,
): Promise<R> {
  const stderr = out.stderr as NodeJS.WriteStream;
  const redact = opts.redact ?? ((s: string) => s);
  const source = opts.cancellable !== undefined ? new CancellationTokenSource() : undefined;
  let cancelled = false;
  const onSigint = () => {
    if (cancelled) process.exit(130);
    cancelled = true;
    out.stderr.write("\nCancelling… (Ctrl+C again to leave at once)\n");
    source?.cancel();
  };
  if (source) process.on("SIGINT", onSigint);
  let sent: P = params;
  let shown = false;
  let sub: { dispose(): void } | undefined;
  if (opts.progress && stderr.isTTY === true) {
    const workDoneToken = `gpuwb-cli-${process.pid}-${++nextToken}`;
    let title = "";
    sub = backend.connection.onProgress(PROGRESS, workDoneToken, (v) => {
      if (v.kind === "begin") title = v.title ?? "";
      if (v.kind === "end") return;
      const pct = v.percentage !== undefined ? ` ${v.percentage}%` : "";
      const text = redact(`${title}${v.message ? `: ${v.message}` : ""}${pct}…`);
      const width = Math.max(20, (stderr.columns || 80) - 1);
      stderr.write(`\r\x1b[K${text.length > width ? `${text.slice(0, width - 1)}…` : text}`);
      shown = true;
    });
    // The backend reads the token from the raw params; other keys are its declared ones.
    sent = { ...params, workDoneToken } as P;
  }
  const gone = opts.watchClose ? backendClosed(backend) : undefined;
  try {
    const answer = source
      ? backend.connection.sendRequest(type, sent, source.token)
      : backend.connection.sendRequest(type, sent);
    return await (gone ? Promise.race([answer, gone.closed]) : answer);
  } catch (e) {
    if (cancelled || (e instanceof ResponseError && e.code === REQUEST_CANCELLED)) {
      throw new CommandError(opts.cancellable ?? "Cancelled.", EXIT.failed);
    }
    if (e instanceof BackendGone) throw new CommandError(e.message, EXIT.failed);
    throw opts.asError(e);
  } finally {
    gone?.dispose();
    if (source) process.off("SIGINT", onSigint);
    source?.dispose();
    sub?.dispose();
    if (shown) stderr.write("\r\x1b[K");
  }
}
