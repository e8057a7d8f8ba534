/**
 * The GPU status item: `GPU 87% · 61/80 GiB · 71°C`, coloured by verdict, a table per GPU
 * in its tooltip; a calm "No GPU" without one. It shows the focused machine (focus.ts): a
 * connected machine's GPUs while the active editor's kernel runs there, named in front
 * (`a100-box · GPU 87% · …`), else this machine's. It watches (and so makes the backend, or
 * the machine's agent, sample) only while `gpuWorkbench.gpu.statusBar` is on.
 */
import * as vscode from "vscode";
import type { Ctx } from "../ctx";
import type { FocusedMachine } from "./focus";
import { type GpuLevel, mdEscape, statusView, withMachine } from "./format";
import type { GpuMonitor } from "./monitor";
import { gpuSettings } from "./settings";

export const STATUS_WATCHER = "statusBar";

export interface GpuStatusSnapshot {
  visible: boolean;
  text: string;
  tooltip: string;
  /** The background colour's theme id, if any. */
  background: string | undefined;
  level: GpuLevel | "hidden";
  command: string | undefined;
  label: string;
  /** The machine shown: "" this machine, else "provider/id". */
  machine: string;
}

export class GpuStatusItem implements vscode.Disposable {
  private readonly item = vscode.window.createStatusBarItem("gpuWorkbench.gpu", vscode.StatusBarAlignment.Left, 89);
  private readonly subs: vscode.Disposable[] = [this.item];
  private visible = false;
  private level: GpuLevel | "hidden" = "hidden";
  /** The machine watched now ("" here); undefined while the item does not watch. */
  private watched: string | undefined;

  constructor(
    private readonly ctx: Ctx,
    private readonly monitor: GpuMonitor,
    private readonly focus: FocusedMachine,
  ) {
    this.item.name = "GPU Workbench: GPU health";
    this.item.command = "gpuWorkbench.showGpuPanel";
    this.subs.push(
      monitor.onDidChange(() => this.render()),
      focus.onDidChange(() => this.sync()),
      vscode.workspace.onDidChangeConfiguration((e) => {
        if (e.affectsConfiguration("gpuWorkbench.gpu.statusBar")) this.sync();
      }),
    );
    this.sync();
  }

  /** Watch the focused machine (and stop watching the one before) while the setting is on. */
  private sync(): void {
    const want = gpuSettings.statusBar ? this.focus.machine : undefined;
    if (want !== this.watched) {
      // Watch the new machine first: this machine's sampler does not stop and start again.
      if (want !== undefined) this.monitor.setWatching(STATUS_WATCHER, true, want);
      if (this.watched !== undefined) this.monitor.setWatching(STATUS_WATCHER, false, this.watched);
      this.watched = want;
    }
    this.render();
  }

  private render(): void {
    const state = this.ctx.backend.state;
    const machine = this.focus.machine;
    const name = this.monitor.nameOf(machine);
    const snap = this.monitor.snapshotOf(machine);
    const error = this.monitor.errorOf(machine);
    if (!gpuSettings.statusBar || this.monitor.unsupported || state === "error" || state === "stopped") {
      this.hide();
      return;
    }
    if (!snap) {
      if (!error) {
        this.hide();
        return;
      }
      const on = name ? ` on ${name}` : "";
      this.item.text = withMachine("$(circuit-board) No GPU", name);
      this.item.tooltip = new vscode.MarkdownString(
        `**No GPU data${mdEscape(on)}**\n\n${mdEscape(error)}\n\nClick to open the GPU panel.`,
      );
      this.item.backgroundColor = undefined;
      this.item.accessibilityInformation = { label: `No GPU data${on}: ${error}` };
      this.level = "none";
      this.show();
      return;
    }
    const v = statusView(snap, name);
    this.item.text = v.text;
    const md = new vscode.MarkdownString(v.tooltip, true);
    md.supportHtml = false;
    this.item.tooltip = md;
    this.item.backgroundColor =
      v.level === "error"
        ? new vscode.ThemeColor("statusBarItem.errorBackground")
        : v.level === "warn"
          ? new vscode.ThemeColor("statusBarItem.warningBackground")
          : undefined;
    this.item.accessibilityInformation = { label: v.label };
    this.level = v.level;
    this.show();
  }

  private show(): void {
    this.visible = true;
    this.item.show();
  }

  private hide(): void {
    this.visible = false;
    this.level = "hidden";
    this.item.hide();
  }

  snapshot(): GpuStatusSnapshot {
    const tip = this.item.tooltip;
    const bg = this.item.backgroundColor as (vscode.ThemeColor & { id?: string }) | undefined;
    return {
      visible: this.visible,
      text: this.item.text,
      tooltip: tip instanceof vscode.MarkdownString ? tip.value : String(tip ?? ""),
      background: bg?.id,
      level: this.level,
      command: typeof this.item.command === "string" ? this.item.command : this.item.command?.command,
      label: this.item.accessibilityInformation?.label ?? "",
      machine: this.focus.machine,
    };
  }

  dispose(): void {
    if (this.watched !== undefined) this.monitor.setWatching(STATUS_WATCHER, false, this.watched);
    this.watched = undefined;
    for (const d of this.subs.splice(0)) d.dispose();
  }
}
