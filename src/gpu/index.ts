/**
 * GPU health: the status item, the GPU panel, critical notifications and the health check
 * with its report, plus hidden commands that let integration tests read what they show.
 */
import * as vscode from "vscode";
import { registerReporting } from "../commands";
import type { Ctx } from "../ctx";
import { remoteOf } from "../remote/model";
import { vmKey } from "../vms/format";
import type { GpuSnapshots } from "../vms/tree";
import { exportCheck, exportText, GpuCheckPanel, registerCheckSerializer } from "./checkReport";
import { FocusedMachine } from "./focus";
import { GpuMonitor } from "./monitor";
import { GpuPanel, registerPanelSerializer } from "./panel";
import { GpuStatusItem } from "./status";
import { GPU_TEST_COMMANDS } from "./testCommands";

export { GPU_TEST_COMMANDS };

/** Entry point of this area, called once from activate(). */
/** Activate GPU health; returns the GPU rows the GPU Machines tree shows under this machine. */
export function activateGpu(ctx: Ctx): GpuSnapshots {
  const monitor = new GpuMonitor(ctx);
  const focus = new FocusedMachine(ctx);
  ctx.subscriptions.push(monitor, focus);
  const status = new GpuStatusItem(ctx, monitor, focus);
  // The panels are not disposed on deactivation: closing them then would drop them from the
  // layout a window reload restores (VS Code disposes them with the extension host).
  ctx.subscriptions.push(status, registerPanelSerializer(ctx, monitor, focus), registerCheckSerializer(ctx));
  ctx.subscriptions.push(watchConnectedMachines(ctx, monitor));

  // An optional machine ("" this one, "provider/id" a connected one) to show; from a tree row
  // (a VmInfo) or a critical notification's "Show Details".
  registerReporting(ctx, "gpuWorkbench.showGpuPanel", (arg?: unknown) => {
    GpuPanel.show(ctx, monitor, focus, panelMachine(arg));
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
    vscode.commands.registerCommand(GPU_TEST_COMMANDS.pickPanelMachine, (machine: string) => {
      GpuPanel.current?.pick(machine);
      return GpuPanel.current?.machine;
    }),
  );
  return {
    onDidChange: monitor.onDidChange,
    // The sampler reads this machine; a connected VM's GPUs arrive from its agent.
    snapshotOf: (vm) => {
      // Kept only while the machine is connected (the monitor forgets it when it disconnects).
      const snap = monitor.snapshotOf(vm.provider === "local" ? "" : vmKey(vm));
      return snap && snap.source !== "none" ? snap : undefined;
    },
  };
}

/** The machine a showGpuPanel argument names, if any. */
function panelMachine(arg: unknown): string | undefined {
  if (typeof arg === "string") return arg === "local" ? "" : arg;
  const vm = arg as { provider?: unknown; id?: unknown } | undefined;
  if (vm && typeof vm.provider === "string" && typeof vm.id === "string") {
    return vm.provider === "local" ? "" : vmKey({ provider: vm.provider, id: vm.id });
  }
  return undefined;
}

/** The GPU Machines view shows a connected machine's GPUs: watch each while it is connected. */
function watchConnectedMachines(ctx: Ctx, monitor: GpuMonitor): vscode.Disposable {
  const remote = remoteOf(ctx);
  const watched = new Set<string>();
  const sync = () => {
    const now = new Set(remote.connected().map((m) => m.machine));
    for (const m of now) if (!watched.has(m)) monitor.setWatching(TREE_WATCHER, true, m);
    for (const m of watched) if (!now.has(m)) monitor.setWatching(TREE_WATCHER, false, m);
    watched.clear();
    for (const m of now) watched.add(m);
  };
  sync();
  const sub = remote.onDidChange(sync);
  return new vscode.Disposable(() => {
    sub.dispose();
    for (const m of watched) monitor.setWatching(TREE_WATCHER, false, m);
    watched.clear();
  });
}

/** Who watches a connected machine for the GPU Machines view. */
const TREE_WATCHER = "machines";
