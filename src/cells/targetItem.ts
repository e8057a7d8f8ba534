/**
 * The kernel target of the active Python file or notebook in the status bar (click to
 * switch), and the context keys that enable cell keybindings and title buttons:
 * `gpuWorkbench.hasCells` and `gpuWorkbench.kernelBusy`.
 */
import * as vscode from "vscode";
import type { Ctx } from "../ctx";
import { parseTarget } from "../remote/format";
import { remoteOf } from "../remote/model";
import type { CellIndex } from "./cellIndex";

export class KernelTargetItem implements vscode.Disposable {
  private readonly item = vscode.window.createStatusBarItem(
    "gpuWorkbench.kernelTarget",
    vscode.StatusBarAlignment.Right,
    100,
  );
  private readonly subscriptions: vscode.Disposable[] = [];
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly ctx: Ctx,
    private readonly index: CellIndex,
  ) {
    this.item.name = "GPU Workbench Kernel";
    this.item.command = "gpuWorkbench.selectKernelTarget";
    this.subscriptions.push(
      this.item,
      vscode.window.onDidChangeActiveTextEditor(() => this.schedule()),
      vscode.window.onDidChangeActiveNotebookEditor(() => this.schedule()),
      vscode.workspace.onDidChangeTextDocument((e) => {
        if (e.document === vscode.window.activeTextEditor?.document) this.schedule();
      }),
      ctx.bindings.onDidChange(() => this.schedule()),
      ctx.executions.onDidChange((r) => {
        if (r.status === "running" || r.status !== "queued") this.schedule();
      }),
      ctx.backend.onDidChangeState(() => this.schedule()),
    );
    this.schedule();
  }

  private schedule(): void {
    if (this.timer) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.update();
    }, 150);
  }

  private async update(): Promise<void> {
    const editor = vscode.window.activeTextEditor;
    const notebook = vscode.window.activeNotebookEditor;
    const uri = notebook?.notebook.uri ?? (editor?.document.languageId === "python" ? editor.document.uri : undefined);
    let hasCells = false;
    if (editor && editor.document.languageId === "python" && this.ctx.backend.client) {
      hasCells = await this.index.hasMarkers(editor.document).catch(() => false);
    }
    void vscode.commands.executeCommand("setContext", "gpuWorkbench.hasCells", hasCells);
    if (!uri) {
      this.item.hide();
      void vscode.commands.executeCommand("setContext", "gpuWorkbench.kernelBusy", false);
      return;
    }
    const kernelId = this.ctx.bindings.kernelFor(uri);
    const mine = this.ctx.executions.all().filter((r) => r.kernelId === kernelId);
    const busy = !!kernelId && mine.some((r) => r.status === "running" || r.status === "queued");
    void vscode.commands.executeCommand("setContext", "gpuWorkbench.kernelBusy", busy);
    const state = !kernelId ? "no kernel yet" : busy ? "busy" : "idle";
    const target = parseTarget(this.ctx.bindings.targetFor(uri));
    const icon = busy ? "loading~spin" : target.kind === "remote" ? "remote" : "server-environment";
    if (target.kind === "remote") {
      const name = remoteOf(this.ctx).nameOf(target.machine);
      const python = target.python ? target.python.split("/").pop() : "";
      this.item.text = `$(${icon}) ${name}${python ? ` · ${python}` : ""}`;
      this.item.tooltip = `Kernel target: ${name} (${target.machine}), ${target.python || "the agent's Python"} (${state})${kernelId ? `\nKernel ${kernelId}` : ""}\nClick to switch.`;
      this.item.accessibilityInformation = { label: `GPU Workbench kernel: ${name}, ${state}` };
    } else {
      const python = this.ctx.config.kernelPythonPath || this.ctx.backend.interpreter?.version;
      this.item.text = `$(${icon}) Local${python ? ` · Python ${python}` : ""}`;
      this.item.tooltip = `Kernel target: this machine (${state})${kernelId ? `\nKernel ${kernelId}` : ""}\nClick to switch.`;
      this.item.accessibilityInformation = { label: `GPU Workbench kernel: Local, ${state}` };
    }
    this.item.show();
  }

  dispose(): void {
    if (this.timer) clearTimeout(this.timer);
    for (const d of this.subscriptions) d.dispose();
  }
}
