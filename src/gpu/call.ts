/**
 * `gpu/check` with a cancellable notification: the backend's `$/progress` reports are shown
 * in it (through a workDoneToken), and Cancel sends `$/cancelRequest`.
 */
import { randomUUID } from "node:crypto";
import * as vscode from "vscode";
import { type LanguageClient, WorkDoneProgress } from "vscode-languageclient/node";
import type { Ctx } from "../ctx";
import * as proto from "../protocol";

export class GpuCheckCancelled extends Error {
  constructor() {
    super("The GPU health check was cancelled.");
    this.name = "GpuCheckCancelled";
  }
}

const BACKEND_WAIT_MS = 60_000;

/** Wait (up to a minute) for a backend that is starting. */
export async function waitForClient(ctx: Ctx, token?: vscode.CancellationToken): Promise<LanguageClient> {
  const deadline = Date.now() + BACKEND_WAIT_MS;
  let graceUntil = Date.now() + 5_000;
  for (;;) {
    const client = ctx.backend.client;
    if (client) return client;
    const state = ctx.backend.state;
    if (state === "starting") graceUntil = deadline;
    const until = state === "starting" || state === "stopped" ? graceUntil : 0;
    if (Date.now() >= until || token?.isCancellationRequested) break;
    await new Promise<void>((resolve) => {
      const t = setTimeout(done, Math.min(500, Math.max(0, until - Date.now())));
      const sub = ctx.backend.onDidChangeState(done);
      function done() {
        clearTimeout(t);
        sub.dispose();
        resolve();
      }
    });
  }
  const why = ctx.backend.lastError?.message;
  throw new Error(
    `The GPU Workbench backend is not running.${why ? ` ${why}` : ""} Run “GPU Workbench: Restart Backend”, or see the logs.`,
  );
}

/** Run the check with progress in a notification; throws GpuCheckCancelled when cancelled. */
export function runCheckWithProgress(
  ctx: Ctx,
  params: proto.GpuCheckParams,
  onProgress?: (message: string | undefined) => void,
  /** Cancels like the notification's Cancel button. */
  cancel?: vscode.CancellationToken,
): Promise<proto.GpuCheckReport> {
  return Promise.resolve(
    vscode.window.withProgress(
      { location: vscode.ProgressLocation.Notification, title: "Checking GPU health", cancellable: true },
      async (progress, token) => {
        const client = await waitForClient(ctx, token);
        if (token.isCancellationRequested) throw new GpuCheckCancelled();
        const workDoneToken = `gpuwb-gpucheck-${randomUUID()}`;
        let last = 0;
        const sub = client.onProgress(WorkDoneProgress.type, workDoneToken, (v) => {
          if (v.kind === "end") return;
          const pct = v.percentage;
          const increment = pct !== undefined && pct > last ? pct - last : undefined;
          if (pct !== undefined) last = Math.max(last, pct);
          progress.report({ message: v.message, ...(increment ? { increment } : {}) });
          onProgress?.(v.message);
        });
        const source = new vscode.CancellationTokenSource();
        const cancelSubs = [token, cancel].map((t) => t?.onCancellationRequested(() => source.cancel()));
        if (token.isCancellationRequested || cancel?.isCancellationRequested) source.cancel();
        // Unknown keys are ignored by the backend's parser; it reads the token from the raw params.
        const request = client.sendRequest(
          proto.gpuCheck,
          { ...params, workDoneToken } as proto.GpuCheckParams,
          source.token,
        );
        request.catch(() => undefined);
        const cancelled = new Promise<never>((_, reject) => {
          source.token.onCancellationRequested(() => reject(new GpuCheckCancelled()));
        });
        cancelled.catch(() => undefined);
        try {
          return await Promise.race([request, cancelled]);
        } catch (err) {
          if (source.token.isCancellationRequested) throw new GpuCheckCancelled();
          const data = proto.errorData(err);
          const message = err instanceof Error ? err.message : String(err);
          ctx.log.error(`gpu/check failed: ${message}${data?.detail ? `\n${data.detail}` : ""}`);
          throw new Error(data?.hint ? `${message} ${data.hint}` : message);
        } finally {
          sub.dispose();
          for (const d of cancelSubs) d?.dispose();
          source.dispose();
        }
      },
    ),
  );
}
