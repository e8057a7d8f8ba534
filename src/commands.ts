/**
 * Commands as a table. Those that need the backend get a client that is known to be
 * running; without one the user is told the backend is not running, with actions.
 */
import * as vscode from "vscode";
import type { LanguageClient } from "vscode-languageclient/node";
import { PATH_CANDIDATES, probePython } from "./backend/python";
import type { Ctx } from "./ctx";
import * as proto from "./protocol";

type Handler = (ctx: Ctx, ...args: unknown[]) => unknown;
type ClientHandler = (ctx: Ctx, client: LanguageClient, ...args: unknown[]) => unknown;

const COMMANDS: Record<string, { run: Handler } | { withClient: ClientHandler }> = {
  "gpuWorkbench.restartBackend": {
    run: async (ctx) => {
      await vscode.window.withProgress(
        { location: vscode.ProgressLocation.Window, title: "Restarting GPU Workbench backend…" },
        () => ctx.backend.restart(),
      );
    },
  },
  "gpuWorkbench.showLogs": { run: (ctx) => ctx.log.show() },
  "gpuWorkbench.showStatus": {
    withClient: async (ctx, client) => {
      const s = await client.sendRequest(proto.status);
      ctx.log.info(`Backend status: ${JSON.stringify(s)}`);
      const up = formatDuration(s.uptimeSeconds);
      // Not awaited: the promise settles only when the notification is dismissed.
      void vscode.window
        .showInformationMessage(
          `GPU Workbench backend ${s.version} is ready on Python ${s.python.version} (pid ${s.pid}, up ${up}).`,
          "Show Logs",
        )
        .then((choice) => choice === "Show Logs" && ctx.log.show());
      return s;
    },
  },
  "gpuWorkbench.selectPython": { run: (ctx) => selectPython(ctx) },
  "gpuWorkbench.listKernels": { withClient: (ctx) => listKernels(ctx) },
  "gpuWorkbench.interruptKernel": {
    withClient: async (ctx, _client, kernelId) => {
      const id = kernelOf(ctx, kernelId) ?? (await ctx.kernels.pick("Interrupt kernel"))?.kernelId;
      if (!id) return undefined;
      // A kill after the grace period is reported by the kernel service, with Restart.
      return ctx.kernels.interrupt(id);
    },
  },
  "gpuWorkbench.restartKernel": {
    withClient: async (ctx, _client, kernelId) => {
      const id = kernelOf(ctx, kernelId) ?? (await ctx.kernels.pick("Restart kernel"))?.kernelId;
      return id ? ctx.kernels.restart(id) : undefined;
    },
  },
  "gpuWorkbench.shutdownKernel": {
    withClient: async (ctx, _client, kernelId) => {
      const id = kernelOf(ctx, kernelId) ?? (await ctx.kernels.pick("Shut down kernel"))?.kernelId;
      return id ? ctx.kernels.shutdown(id) : undefined;
    },
  },
};

/**
 * The kernel an argument names: a kernel id, or a document (an editor title button passes
 * its Uri); without one, the active editor's or notebook's kernel.
 */
function kernelOf(ctx: Ctx, arg: unknown): string | undefined {
  if (typeof arg === "string") return arg;
  const uri =
    arg instanceof vscode.Uri
      ? arg
      : (vscode.window.activeNotebookEditor?.notebook.uri ?? vscode.window.activeTextEditor?.document.uri);
  return uri ? ctx.bindings.kernelFor(uri) : undefined;
}

/** List kernels; picking one offers what can be done with it. */
async function listKernels(ctx: Ctx): Promise<void> {
  const kernel = await ctx.kernels.pick("GPU Workbench kernels");
  if (!kernel) return;
  const action = await vscode.window.showQuickPick(["Interrupt", "Restart", "Shut Down"], {
    title: `Kernel ${kernel.name || kernel.kernelId} (pid ${kernel.pid})`,
  });
  if (action === "Interrupt") await vscode.commands.executeCommand("gpuWorkbench.interruptKernel", kernel.kernelId);
  if (action === "Restart") await ctx.kernels.restart(kernel.kernelId);
  if (action === "Shut Down") await ctx.kernels.shutdown(kernel.kernelId);
}

export function registerCommands(ctx: Ctx): void {
  for (const [id, spec] of Object.entries(COMMANDS)) {
    const handler =
      "run" in spec
        ? (...args: unknown[]) => spec.run(ctx, ...args)
        : (...args: unknown[]) => {
            const client = ctx.backend.client;
            if (!client) return backendNotRunning(ctx);
            return spec.withClient(ctx, client, ...args);
          };
    registerReporting(ctx, id, handler);
  }
}

/**
 * Register a command whose failures are reported once: the message and the backend's hint
 * to the user with "Show Logs", the detail to the log. The notification is not awaited, so
 * the command's promise settles at once.
 */
export function registerReporting(ctx: Ctx, id: string, fn: (...args: unknown[]) => unknown): void {
  ctx.subscriptions.push(
    vscode.commands.registerCommand(id, async (...args: unknown[]) => {
      try {
        return await fn(...args);
      } catch (err) {
        const data = proto.errorData(err);
        const msg = err instanceof Error ? err.message : String(err);
        ctx.log.error(`Command ${id} failed: ${msg}${data?.detail ? `\n${data.detail}` : ""}`);
        const text = data?.hint ? `${msg} ${data.hint}` : msg;
        void vscode.window.showErrorMessage(text, "Show Logs").then((c) => c && ctx.log.show());
        return undefined;
      }
    }),
  );
}

async function backendNotRunning(ctx: Ctx): Promise<undefined> {
  const state = ctx.backend.state;
  const msg =
    state === "starting"
      ? "The GPU Workbench backend is still starting; try again in a moment."
      : "The GPU Workbench backend is not running.";
  const choice = await vscode.window.showWarningMessage(msg, "Restart Backend", "Show Logs");
  if (choice === "Restart Backend") await ctx.backend.restart();
  if (choice === "Show Logs") ctx.log.show();
  return undefined;
}

function formatDuration(seconds: number): string {
  if (seconds < 60) return `${Math.round(seconds)} s`;
  if (seconds < 3600) return `${Math.round(seconds / 60)} min`;
  return `${(seconds / 3600).toFixed(1)} h`;
}

interface PythonPick extends vscode.QuickPickItem {
  value?: string;
  action?: "browse" | "enter" | "pythonExtension" | "clear";
}

/** Pick the backend's interpreter: ones found on PATH, the Python extension's, or a path. */
async function selectPython(ctx: Ctx): Promise<void> {
  const items: PythonPick[] = [];
  const probes = await Promise.allSettled(PATH_CANDIDATES.map((c) => probePython(c)));
  const seen = new Set<string>();
  for (const p of probes) {
    if (p.status !== "fulfilled" || seen.has(p.value.executable)) continue;
    seen.add(p.value.executable);
    items.push({ label: `Python ${p.value.version}`, description: p.value.executable, value: p.value.executable });
  }
  if (vscode.extensions.getExtension("ms-python.python")) {
    items.push({ label: "$(symbol-namespace) Use the Python extension's interpreter", action: "pythonExtension" });
  }
  items.push(
    { label: "$(folder-opened) Browse…", action: "browse" },
    { label: "$(edit) Enter interpreter path…", action: "enter" },
  );
  if (ctx.config.pythonPath) items.push({ label: "$(discard) Clear the setting (automatic)", action: "clear" });
  const pick = await vscode.window.showQuickPick(items, {
    title: "GPU Workbench: Python interpreter for the backend",
    placeHolder: ctx.config.pythonPath ? `Current: ${ctx.config.pythonPath}` : "Current: automatic",
  });
  if (!pick) return;
  let value = pick.value;
  if (pick.action === "clear") value = "";
  if (pick.action === "pythonExtension") {
    await vscode.commands.executeCommand("python.setInterpreter");
    value = "";
  }
  if (pick.action === "browse") {
    const uri = await vscode.window.showOpenDialog({ canSelectMany: false, title: "Python interpreter" });
    if (!uri?.[0]) return;
    value = uri[0].fsPath;
  }
  if (pick.action === "enter") {
    value = await vscode.window.showInputBox({
      title: "Python interpreter path",
      prompt: "An absolute path or a command on PATH (Python 3.9 or later)",
      value: ctx.config.pythonPath,
    });
    if (value === undefined) return;
  }
  if (value) {
    // Check before saving so a typo is reported here, not by a failed restart.
    try {
      await probePython(value);
    } catch (err) {
      void vscode.window.showErrorMessage(err instanceof Error ? err.message : String(err));
      return;
    }
  }
  if ((value ?? "") === ctx.config.pythonPath) {
    await ctx.backend.restart();
    return;
  }
  // The configuration listener restarts the backend.
  await ctx.config.setPythonPath(value ?? "");
}
