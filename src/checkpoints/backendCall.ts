/**
 * Checkpoint requests to the backend, the way users need them: waits for a backend that is
 * still starting, shows progress once a request takes over a second (cancellable, which
 * sends `$/cancelRequest`), forwards the backend's `$/progress` reports, and turns
 * JSON-RPC errors into a message with the backend's hint.
 */
import { randomUUID } from "node:crypto";
import * as vscode from "vscode";
import type { RequestType } from "vscode-jsonrpc";
import { type LanguageClient, WorkDoneProgress } from "vscode-languageclient/node";
import type { Ctx } from "../ctx";
import * as proto from "../protocol";
import type { ViewError } from "./messages";

/** A failed checkpoint request: the backend's message and hint, or that it was cancelled. */
export class CheckpointCallError extends Error {
  constructor(
    message: string,
    readonly hint: string | null,
    readonly kind: string | null,
    readonly detail: string | null = null,
    readonly cancelled = false,
  ) {
    super(message);
    this.name = "CheckpointCallError";
  }

  toView(): ViewError {
    return { message: this.message, hint: this.hint, kind: this.kind };
  }
}

export interface CallOptions {
  /** Progress title, e.g. "Inspecting model.safetensors". */
  title: string;
  token?: vscode.CancellationToken;
  /**
   * notification: a cancellable notification after `delayMs`; window: the status bar (for
   * background work such as the tree's); none: only `onProgress`.
   */
  progress: "notification" | "window" | "none";
  delayMs?: number;
  /** Each progress report of the backend (e.g. to show it inside a webview). */
  onProgress?: (message: string | undefined, percentage: number | undefined) => void;
}

const BACKEND_WAIT_MS = 60_000;
const STOPPED_GRACE_MS = 5_000;

/** Send a checkpoint request with progress and cancellation; throws CheckpointCallError. */
export async function callCheckpoint<P extends object, R>(
  ctx: Ctx,
  type: RequestType<P, R, void>,
  params: P,
  opts: CallOptions,
): Promise<R> {
  const client = await readyClient(ctx, opts.token);
  const source = new vscode.CancellationTokenSource();
  const disposables: vscode.Disposable[] = [source];
  if (opts.token) disposables.push(opts.token.onCancellationRequested(() => source.cancel()));
  if (opts.token?.isCancellationRequested) source.cancel();

  const workDoneToken = `gpuwb-checkpoint-${randomUUID()}`;
  let reporter: vscode.Progress<{ message?: string; increment?: number }> | undefined;
  let lastMessage: string | undefined;
  let lastPercent = 0;
  const forward = (message: string | undefined, percentage: number | undefined) => {
    if (message !== undefined) lastMessage = message;
    const increment = percentage !== undefined && percentage > lastPercent ? percentage - lastPercent : undefined;
    if (percentage !== undefined) lastPercent = Math.max(lastPercent, percentage);
    reporter?.report({ message: lastMessage, ...(increment ? { increment } : {}) });
    opts.onProgress?.(lastMessage, percentage);
  };
  disposables.push(
    client.onProgress(WorkDoneProgress.type, workDoneToken, (v) => {
      if (v.kind !== "end") forward(v.message, v.percentage);
    }),
  );

  // Unknown keys are ignored by the backend's parser; the token is read from the raw params.
  const request = client.sendRequest(type, { ...params, workDoneToken } as P, source.token);
  let settle!: () => void;
  const settled = new Promise<void>((r) => {
    settle = r;
  });
  const timer =
    opts.progress === "none"
      ? undefined
      : setTimeout(() => {
          const location =
            opts.progress === "notification" ? vscode.ProgressLocation.Notification : vscode.ProgressLocation.Window;
          void vscode.window.withProgress(
            { location, title: opts.title, cancellable: opts.progress === "notification" },
            (progress, cancel) => {
              reporter = progress;
              if (lastMessage || lastPercent) progress.report({ message: lastMessage, increment: lastPercent });
              disposables.push(cancel.onCancellationRequested(() => source.cancel()));
              return settled;
            },
          );
        }, opts.delayMs ?? 1000);
  // Settle at once on cancel: the backend's reply to $/cancelRequest may take a moment.
  request.catch(() => undefined);
  const cancelled = new Promise<never>((_, reject) => {
    const fail = () => reject(new CheckpointCallError(`${opts.title}: cancelled.`, null, "Cancelled", null, true));
    if (source.token.isCancellationRequested) fail();
    else disposables.push(source.token.onCancellationRequested(fail));
  });
  cancelled.catch(() => undefined);
  try {
    return await Promise.race([request, cancelled]);
  } catch (err) {
    if (source.token.isCancellationRequested) {
      throw new CheckpointCallError(`${opts.title}: cancelled.`, null, "Cancelled", null, true);
    }
    throw toCallError(ctx, opts.title, err);
  } finally {
    if (timer) clearTimeout(timer);
    settle();
    for (const d of disposables) d.dispose();
  }
}

/** The running client; waits while the backend starts, and says what to do when it is down. */
async function readyClient(ctx: Ctx, token: vscode.CancellationToken | undefined): Promise<LanguageClient> {
  const deadline = Date.now() + BACKEND_WAIT_MS;
  // "stopped" is also the moment between activation and the first start: give it a moment.
  let stoppedGrace = Date.now() + STOPPED_GRACE_MS;
  for (;;) {
    const client = ctx.backend.client;
    if (client) return client;
    const state = ctx.backend.state;
    const waitUntil = state === "starting" ? deadline : state === "stopped" ? stoppedGrace : 0;
    if (Date.now() >= waitUntil || token?.isCancellationRequested) break;
    await stateChange(ctx, waitUntil - Date.now(), token);
    if (ctx.backend.state === "starting") stoppedGrace = deadline;
  }
  const why = ctx.backend.lastError?.message;
  throw new CheckpointCallError(
    "The GPU Workbench backend is not running, so the checkpoint cannot be read.",
    `${why ? `${why} ` : ""}Run “GPU Workbench: Restart Backend”, or see the logs.`,
    "BackendNotRunning",
  );
}

/** Resolves at the backend's next state change, after `ms`, or on cancellation. */
function stateChange(ctx: Ctx, ms: number, token: vscode.CancellationToken | undefined): Promise<void> {
  return new Promise<void>((resolve) => {
    const done = () => {
      clearTimeout(timer);
      sub.dispose();
      cancel?.dispose();
      resolve();
    };
    const timer = setTimeout(done, Math.max(0, ms));
    const sub = ctx.backend.onDidChangeState(done);
    const cancel = token?.onCancellationRequested(done);
  });
}

function toCallError(ctx: Ctx, what: string, err: unknown): CheckpointCallError {
  if (err instanceof CheckpointCallError) return err;
  const data = proto.errorData(err);
  const message = err instanceof Error ? err.message : String(err);
  ctx.log.error(`${what} failed: ${message}${data?.detail ? `\n${data.detail}` : ""}`);
  return new CheckpointCallError(message, data?.hint ?? null, data?.kind ?? null, data?.detail ?? null);
}

/** Tell the user a checkpoint action failed, with the hint and "Show Logs". */
export function reportCallError(ctx: Ctx, err: unknown): void {
  if (err instanceof CheckpointCallError && err.cancelled) return;
  const message = err instanceof Error ? err.message : String(err);
  const hint = err instanceof CheckpointCallError ? err.hint : null;
  if (!(err instanceof CheckpointCallError)) ctx.log.error(`Checkpoint action failed: ${message}`);
  void vscode.window
    .showErrorMessage(hint ? `${message} ${hint}` : message, "Show Logs")
    .then((c) => c && ctx.log.show());
}
