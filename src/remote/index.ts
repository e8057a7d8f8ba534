/**
 * Remote execution, the VS Code side: connect / disconnect machines of the GPU Machines
 * view, kernels of documents bound to a machine's interpreter, workspace sync, port
 * forwarding, the connection status item, and hidden commands for tests.
 */
import * as vscode from "vscode";
import { registerReporting } from "../commands";
import type { Ctx } from "../ctx";
import {
  activeDocument,
  connectMachine,
  disconnectMachine,
  forwardPort,
  openForward,
  stopForwarding,
  syncWorkspace,
  targetHooks,
} from "./commands";
import { autostopText, parseTarget, stateText, statusBarText } from "./format";
import { remoteOf } from "./model";
import { REMOTE_TEST_COMMANDS, type RemoteTestState } from "./testCommands";

export { REMOTE_TEST_COMMANDS };

export function activateRemote(ctx: Ctx): void {
  const remote = remoteOf(ctx);
  ctx.bindings.hooks = targetHooks(ctx);
  const status = new RemoteStatusItem(ctx);
  ctx.subscriptions.push(status);

  const reg = (id: string, fn: (...args: unknown[]) => unknown) => registerReporting(ctx, id, fn);
  reg("gpuWorkbench.remote.connectMachine", (a) => connectMachine(ctx, a));
  reg("gpuWorkbench.remote.disconnectMachine", (a) => disconnectMachine(ctx, a));
  reg("gpuWorkbench.remote.syncWorkspace", (a) => syncWorkspace(ctx, a));
  reg("gpuWorkbench.remote.forwardPort", (a, port) => forwardPort(ctx, a, port));
  reg("gpuWorkbench.remote.stopForwarding", (a) => stopForwarding(ctx, a));
  reg("gpuWorkbench.remote.openForward", (a) => openForward(a));
  // (machine: "provider/id") — focuses GPU Machines (revealing the row needs the view, in vms/index.ts).
  reg("gpuWorkbench.remote.showMachine", async () => {
    await vscode.commands.executeCommand("gpuWorkbench.machines.focus");
  });

  ctx.subscriptions.push(
    vscode.commands.registerCommand(REMOTE_TEST_COMMANDS.state, (): RemoteTestState => {
      status.update();
      return {
        machines: remote.all(),
        autostop: Object.fromEntries(
          remote
            .all()
            .map((m) => [m.machine, remote.autostop(m.machine)] as const)
            .filter((e) => !!e[1]),
        ) as RemoteTestState["autostop"],
        errors: Object.fromEntries(remote.errors),
        log: [...remote.log],
        status: status.snapshot(),
      };
    }),
    vscode.commands.registerCommand(
      REMOTE_TEST_COMMANDS.binding,
      (uri: string) => ctx.bindings.entries().find(([u]) => u === uri)?.[1],
    ),
  );
}

/** `$(remote) a100-box ✓` for the active document's remote target; click shows GPU Machines. */
class RemoteStatusItem implements vscode.Disposable {
  private readonly item = vscode.window.createStatusBarItem(
    "gpuWorkbench.remoteConnection",
    vscode.StatusBarAlignment.Right,
    101,
  );
  private readonly subs: vscode.Disposable[] = [this.item];
  private machine: string | undefined;

  constructor(private readonly ctx: Ctx) {
    this.item.name = "GPU Workbench: remote connection";
    this.item.command = "gpuWorkbench.remote.showMachine";
    const remote = remoteOf(ctx);
    this.subs.push(
      remote.onDidChange(() => this.update()),
      ctx.bindings.onDidChange(() => this.update()),
      vscode.window.onDidChangeActiveTextEditor(() => this.update()),
      vscode.window.onDidChangeActiveNotebookEditor(() => this.update()),
    );
    this.update();
  }

  update(): void {
    const remote = remoteOf(this.ctx);
    const uri = activeDocument();
    const t = uri ? parseTarget(this.ctx.bindings.targetFor(uri)) : undefined;
    if (t?.kind !== "remote") {
      this.machine = undefined;
      this.item.hide();
      return;
    }
    this.machine = t.machine;
    this.item.command = {
      command: "gpuWorkbench.remote.showMachine",
      title: "Show in GPU Machines",
      arguments: [t.machine],
    };
    const m = remote.get(t.machine);
    const name = remote.nameOf(t.machine);
    const state = m?.state ?? "disconnected";
    this.item.text = statusBarText({ name, state });
    const md = new vscode.MarkdownString(`**${name}** — ${stateText(state)}\n\n`);
    if (m?.message) md.appendText(`${m.message}\n\n`);
    if (m?.host) md.appendText(`Host: ${m.host}\n\n`);
    if (m?.latencyMs != null) md.appendText(`Round trip: ${m.latencyMs.toFixed(1)} ms\n\n`);
    if (m?.reconnects) md.appendText(`Reconnected ${m.reconnects} time${m.reconnects === 1 ? "" : "s"}\n\n`);
    const auto = autostopText(remote.autostop(t.machine));
    if (auto) md.appendText(`Autostop: ${auto}\n\n`);
    const err = remote.errors.get(t.machine);
    if (err && state !== "connected") md.appendText(`Last error: ${err}\n\n`);
    md.appendMarkdown("Click to show it in GPU Machines.");
    this.item.tooltip = md;
    this.item.backgroundColor =
      state === "failed" || state === "disconnected"
        ? new vscode.ThemeColor("statusBarItem.errorBackground")
        : state === "reconnecting"
          ? new vscode.ThemeColor("statusBarItem.warningBackground")
          : undefined;
    this.item.accessibilityInformation = { label: `Remote machine ${name}: ${stateText(state)}` };
    this.item.show();
  }

  snapshot(): RemoteTestState["status"] {
    const tip = this.item.tooltip;
    return {
      visible: !!this.machine,
      text: this.item.text,
      tooltip: tip instanceof vscode.MarkdownString ? tip.value : String(tip ?? ""),
      machine: this.machine,
    };
  }

  dispose(): void {
    for (const d of this.subs) d.dispose();
  }
}
