/**
 * Entry point. Activation builds the context, registers commands and listeners and
 * starts the backend without waiting for it, so activation itself stays fast.
 */
import * as vscode from "vscode";
import { onPythonExtensionChange, resolveInterpreter } from "./backend/interpreter";
import type { BackendError, BackendState } from "./backend/manager";
import { activateCells } from "./cells";
import { activateCheckpoints } from "./checkpoints";
import { registerCommands } from "./commands";
import { Ctx } from "./ctx";
import { activateGpu } from "./gpu";
import type { KernelService } from "./kernels/service";
import { activateNotebooks } from "./notebooks";
import type { StatusResult } from "./protocol";
import { activateRemote } from "./remote";
import { activateResults } from "./results";
import { activateVariables } from "./variables";
import { activateVms } from "./vms";

// Set by the bundle's first line (esbuild.mjs), so bundle evaluation counts too.
const loadedAt: number = (globalThis as { __gpuwbLoadStart?: number }).__gpuwbLoadStart ?? performance.now();

/** What `activate` returns: used by the integration tests and by other extensions. */
export interface GpuWorkbenchApi {
  readonly activationMs: number;
  /** Milliseconds from extension load to the first ready backend; undefined until then. */
  readonly firstReadyMs: number | undefined;
  readonly backendState: BackendState;
  readonly backendError: BackendError | undefined;
  readonly onDidChangeBackendState: vscode.Event<BackendState>;
  backendStatus(): Promise<StatusResult>;
  backendPid(): number | undefined;
  restartBackend(): Promise<void>;
  readonly kernels: KernelService;
  /** The context, for integration tests of the editor features. */
  readonly ctx: Ctx;
}

let ctx: Ctx | undefined;

export function activate(context: vscode.ExtensionContext): GpuWorkbenchApi {
  const c = new Ctx(context);
  ctx = c;
  context.subscriptions.push(c);
  registerCommands(c);
  activateCells(c);
  activateResults(c);
  activateNotebooks(c);
  activateVariables(c);
  activateCheckpoints(c);
  activateVms(c, activateGpu(c));
  activateRemote(c);

  c.subscriptions.push(
    vscode.workspace.onDidChangeConfiguration((e) => {
      if (c.config.needsRestart(e)) {
        c.log.info("A setting that needs a backend restart changed; restarting.");
        void c.backend.restart();
      }
    }),
    vscode.workspace.onDidGrantWorkspaceTrust(() => {
      c.log.info("The workspace is now trusted; restarting the backend with full capabilities.");
      void c.backend.restart();
    }),
  );
  void onPythonExtensionChange(c.log, () => void restartIfInterpreterChanged(c)).then((d) => c.subscriptions.push(d));

  let firstReadyMs: number | undefined;
  const first = c.backend.onDidChangeState((state) => {
    if (state !== "ready") return;
    firstReadyMs = performance.now() - loadedAt;
    c.log.info(`Backend first ready ${firstReadyMs.toFixed(0)} ms after load`);
    first.dispose();
  });
  c.subscriptions.push(first);

  void c.backend.restart();
  const activationMs = performance.now() - loadedAt;
  c.log.info(`GPU Workbench activated in ${activationMs.toFixed(1)} ms`);

  return {
    activationMs,
    get firstReadyMs() {
      return firstReadyMs;
    },
    get backendState() {
      return c.backend.state;
    },
    get backendError() {
      return c.backend.lastError;
    },
    onDidChangeBackendState: c.backend.onDidChangeState,
    backendStatus: () => c.backend.refreshStatus(),
    backendPid: () => c.backend.status?.pid,
    restartBackend: () => c.backend.restart(),
    kernels: c.kernels,
    ctx: c,
  };
}

export function deactivate(): Promise<void> | undefined {
  const c = ctx;
  ctx = undefined;
  return c?.backend.stop();
}

/** The Python extension switched environments: restart only if ours really changed. */
async function restartIfInterpreterChanged(c: Ctx): Promise<void> {
  if (c.config.pythonPath) return; // the setting wins over the Python extension
  try {
    const next = await resolveInterpreter(c.config, c.log, vscode.workspace.isTrusted);
    if (next.executable !== c.backend.interpreter?.executable) {
      c.log.info(`The Python extension's interpreter changed to ${next.executable}; restarting.`);
      await c.backend.restart();
    }
  } catch {
    await c.backend.restart(); // let the restart report the problem
  }
}
