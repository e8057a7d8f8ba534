/**
 * VM requests to the backend: credentials from SecretStorage added per call, progress after
 * a second (cancellable, sends `$/cancelRequest`), errors carrying the backend's hint. Built
 * on the checkpoint feature's request helper.
 */
import * as vscode from "vscode";
import type { RequestType } from "vscode-jsonrpc";
import { type CallOptions, CheckpointCallError, callCheckpoint } from "../checkpoints/backendCall";
import type { Ctx } from "../ctx";
import type { CredentialStore } from "./credentials";

export class VmCallError extends Error {
  constructor(
    message: string,
    readonly hint: string | null,
    readonly kind: string | null,
    readonly cancelled = false,
  ) {
    super(message);
    this.name = "VmCallError";
  }
}

export async function callVm<P extends object, R>(
  ctx: Ctx,
  creds: CredentialStore | undefined,
  type: RequestType<P, R, void>,
  params: P,
  opts: CallOptions,
): Promise<R> {
  const withCreds = creds ? { ...params, credentials: await creds.all() } : params;
  try {
    return await callCheckpoint(ctx, type, withCreds, opts);
  } catch (err) {
    if (err instanceof CheckpointCallError) {
      if (err.kind === "BackendNotRunning") {
        throw new VmCallError(
          "The GPU Workbench backend is not running, so machines cannot be managed.",
          err.hint,
          err.kind,
        );
      }
      throw new VmCallError(err.message, err.hint, err.kind, err.cancelled);
    }
    throw err;
  }
}

/** Tell the user an action failed, with actions that help: credentials, logs. */
export function reportVmError(ctx: Ctx, err: unknown, provider?: string): void {
  if (err instanceof VmCallError && err.cancelled) return;
  const message = err instanceof Error ? err.message : String(err);
  const hint = err instanceof VmCallError ? err.hint : null;
  const kind = err instanceof VmCallError ? err.kind : null;
  ctx.log.error(`GPU machine action failed: ${message}`);
  const actions = kind === "ProviderAuth" ? ["Set Credentials…", "Show Logs"] : ["Show Logs"];
  void vscode.window.showErrorMessage(hint ? `${message} ${hint}` : message, ...actions).then((c) => {
    if (c === "Show Logs") ctx.log.show();
    if (c === "Set Credentials…") void vscode.commands.executeCommand("gpuWorkbench.vms.setCredentials", provider);
  });
}
