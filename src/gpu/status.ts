/**
 * The GPU status item: `GPU 87% · 61/80 GiB · 71°C`, coloured by verdict, a table per GPU
 * in its tooltip; a calm "No GPU" without one. It watches (and so makes the backend sample)
 * only while `gpuWorkbench.gpu.statusBar` is on.
 */
import * as vscode from "vscode";
import type { Ctx } from "../ctx";
import { type GpuLevel, mdEscape, statusView } from "./format";
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
}

export class GpuStatusItem implements vscode.Disposable {
  private readonly item = vscode.window.createStatusBarItem("gpuWorkbench.gpu", vscode.StatusBarAlignment.Left, 89);
  private readonly subs: vscode.Disposable[] = [this.item];
  private visible = false;
  private level: GpuLevel | "hidden" = "hidden";

  constructor(
    private readonly ctx: Ctx,
    private readonly monitor: GpuMonitor,
  ) {
    this.item.name = "GPU Workbench: GPU health";
    this.item.command = "gpuWorkbench.showGpuPanel";
    this.subs.push(
      monitor.onDidChange(() => this.render()),
      vscode.workspace.onDidChangeConfiguration((e) => {
        if (e.affectsConfiguration("gpuWorkbench.gpu.statusBar")) this.sync();
      }),
    );
    this.sync();
  }

  private sync(): void {
    this.monitor.setWatching(STATUS_WATCHER, gpuSettings.statusBar);
    this.render();
  }

  private render(): void {
    const state = this.ctx.backend.state;
    const snap = this.monitor.snapshot;
    if (!gpuSettings.statusBar || this.monitor.unsupported || state === "error" || state === "stopped") {
      this.hide();
      return;
    }
    if (!snap) {
      if (!this.monitor.error) {
        this.hide();
        return;
      }
      this.item.text = "$(circuit-board) No GPU";
      this.item.tooltip = new vscode.MarkdownString(
        `**No GPU data**\n\n${mdEscape(this.monitor.error)}\n\nClick to open the GPU panel.`,
      );
      this.item.backgroundColor = undefined;
      this.item.accessibilityInformation = { label: `No GPU data: ${this.monitor.error}` };
      this.level = "none";
      this.show();
      return;
    }
    const v = statusView(snap);
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
    };
  }

  dispose(): void {
    this.monitor.setWatching(STATUS_WATCHER, false);
    for (const d of this.subs.splice(0)) d.dispose();
  }
}
