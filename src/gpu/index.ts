/**
 * GPU health: the status item, the GPU panel, critical notifications and the health check
 * with its report, plus hidden commands that let integration tests read what they show.
 */
import * as vscode from "vscode";
import { registerReporting } from "../commands";
import type { Ctx } from "../ctx";
import type { GpuSnapshots } from "../vms/tree";
import { exportCheck, exportText, GpuCheckPanel, registerCheckSerializer } from "./checkReport";
import { GpuMonitor } from "./monitor";
import { GpuPanel, registerPanelSerializer } from "./panel";
import { GpuStatusItem } from "./status";
import { GPU_TEST_COMMANDS } from "./testCommands";

export { GPU_TEST_COMMANDS };

/** Entry point of this area, called once from activate(). */
/** Activate GPU health; returns the GPU rows the GPU Machines tree shows under this machine. */
export function activateGpu(ctx: Ctx): GpuSnapshots {
  const monitor = new GpuMonitor(ctx);
  ctx.subscriptions.push(monitor);
  const status = new GpuStatusItem(ctx, monitor);
  // The panels are not disposed on deactivation: closing them then would drop them from the
  // layout a window reload restores (VS Code disposes them with the extension host).
  ctx.subscriptions.push(status, registerPanelSerializer(ctx, monitor), registerCheckSerializer(ctx));

  registerReporting(ctx, "gpuWorkbench.showGpuPanel", () => {
    GpuPanel.show(ctx, monitor);
  });
  registerReporting(ctx, "gpuWorkbench.checkGpuHealth", () => GpuCheckPanel.run(ctx));
  registerReporting(ctx, "gpuWorkbench.exportGpuCheck", async () => {
    await exportCheck(GpuCheckPanel.lastView);
  });

  ctx.subscriptions.push(
    vscode.commands.registerCommand(GPU_TEST_COMMANDS.statusItem, () => status.snapshot()),
    vscode.commands.registerCommand(GPU_TEST_COMMANDS.panelState, () => GpuPanel.current?.renderedState()),
    vscode.commands.registerCommand(GPU_TEST_COMMANDS.checkState, async () => {
      await GpuCheckPanel.whenDone();
      return GpuCheckPanel.current?.renderedState();
    }),
    vscode.commands.registerCommand(GPU_TEST_COMMANDS.notifications, () => monitor.notified.splice(0)),
    vscode.commands.registerCommand(GPU_TEST_COMMANDS.watchers, () => monitor.activeWatchers),
    vscode.commands.registerCommand(GPU_TEST_COMMANDS.cancelCheck, () => GpuCheckPanel.cancel()),
    vscode.commands.registerCommand(GPU_TEST_COMMANDS.exportText, () => exportText(GpuCheckPanel.lastView)),
  );
  return {
    onDidChange: monitor.onDidChange,
    // The sampler reads this machine; VMs' GPUs arrive with their agent (remote execution).
    snapshotOf: (vm) => (vm.provider === "local" && monitor.snapshot?.source !== "none" ? monitor.snapshot : undefined),
  };
}
