/**
 * GPU machines: the GPU Machines view, its commands, the cost status item, idle autostop
 * and credentials (SecretStorage only). Hidden commands let integration tests read the view.
 */
import * as vscode from "vscode";
import { registerReporting } from "../commands";
import type { Ctx } from "../ctx";
import { remoteWindows, VmCommands } from "./commands";
import { CredentialStore } from "./credentials";
import { VmKernels } from "./kernels";
import { VmModel } from "./model";
import { clearScript, promptLog, scriptAnswers } from "./prompts";
import { redactor } from "./redact";
import { ManagedSshConfig } from "./sshConfig";
import { costsMoney, VmStatus } from "./status";
import { VM_TEST_COMMANDS } from "./testCommands";
import { type GpuSnapshots, VMS_VIEW_ID, type VmNode, VmTreeProvider } from "./tree";

export { VM_TEST_COMMANDS };

export function activateVms(ctx: Ctx, gpus?: GpuSnapshots): void {
  const creds = new CredentialStore(ctx.extension.secrets);
  const model = new VmModel(ctx, creds);
  const ssh = new ManagedSshConfig(ctx.extension);
  const cmds = new VmCommands(ctx, model, ssh);
  const target = () => cmds.kernelTarget();
  const kernels = new VmKernels(ctx, model);
  const tree = new VmTreeProvider(model, target, gpus, kernels);
  const view = vscode.window.createTreeView(VMS_VIEW_ID, { treeDataProvider: tree, showCollapseAll: false });
  const status = new VmStatus(ctx, model, target);
  const refreshTitle = () => {
    const running = model.vms.filter(costsMoney).length;
    view.badge = running
      ? { value: running, tooltip: `${running} machine${running === 1 ? "" : "s"} running` }
      : undefined;
  };

  ctx.subscriptions.push(
    creds,
    model,
    kernels,
    tree,
    view,
    status,
    view.onDidChangeVisibility((e) => model.setViewVisible(e.visible)),
    model.onDidChange(() => {
      refreshTitle();
      void ssh.write(model.vms).catch((err) => ctx.log.debug(`Could not write ${ssh.file}: ${String(err)}`));
    }),
  );
  model.setViewVisible(view.visible);

  const reg = (id: string, fn: (...args: unknown[]) => unknown) => registerReporting(ctx, id, fn);
  reg("gpuWorkbench.vms.setCredentials", (p) => cmds.setCredentials(p));
  reg("gpuWorkbench.vms.clearCredentials", (p) => cmds.clearCredentials(p));
  reg("gpuWorkbench.vms.create", (p) => cmds.create(p));
  reg("gpuWorkbench.vms.start", (a) => cmds.start(a));
  reg("gpuWorkbench.vms.stop", (a) => cmds.stop(a));
  reg("gpuWorkbench.vms.terminate", (a) => cmds.terminate(a));
  reg("gpuWorkbench.vms.openSsh", (a) => cmds.openSsh(a));
  reg("gpuWorkbench.vms.openRemote", (a) => cmds.openRemote(a));
  reg("gpuWorkbench.vms.setKernelTarget", async (a) => {
    const key = await cmds.setKernelTarget(a);
    tree.refreshView();
    await status.update();
    return key;
  });
  reg("gpuWorkbench.vms.copyAddress", (a) => cmds.copyAddress(a));
  reg("gpuWorkbench.vms.refresh", () =>
    vscode.window.withProgress({ location: { viewId: VMS_VIEW_ID } }, () => model.refresh()),
  );
  reg("gpuWorkbench.vms.keepRunning", (p, id) =>
    typeof p === "string" && typeof id === "string" ? status.keepRunning(p, id) : undefined,
  );
  // A kernel row's context menu: the kernels area's own commands, for the row's kernel.
  for (const [id, kernelCommand] of [
    ["gpuWorkbench.vms.interruptKernel", "gpuWorkbench.interruptKernel"],
    ["gpuWorkbench.vms.restartKernel", "gpuWorkbench.restartKernel"],
    ["gpuWorkbench.vms.shutdownKernel", "gpuWorkbench.shutdownKernel"],
  ] as const) {
    reg(id, async (node) => {
      const kernelId = kernelIdOf(node);
      if (!kernelId) return undefined;
      const result = await vscode.commands.executeCommand(kernelCommand, kernelId);
      void kernels.list();
      return result;
    });
  }
  reg("gpuWorkbench.vms.revealActive", async () => {
    await vscode.commands.executeCommand(`${VMS_VIEW_ID}.focus`);
    const vm = status.active;
    const node = vm ? tree.nodeOf(vm.provider, vm.id) : undefined;
    if (node) await view.reveal(node, { select: true, focus: true });
  });

  ctx.subscriptions.push(
    vscode.commands.registerCommand(VM_TEST_COMMANDS.treeItems, async (refresh?: boolean) => {
      if (refresh || !model.loaded) await model.refresh();
      return tree.snapshot();
    }),
    vscode.commands.registerCommand(VM_TEST_COMMANDS.statusItem, async () => {
      await status.update();
      return status.snapshot();
    }),
    vscode.commands.registerCommand(VM_TEST_COMMANDS.prompts, () => promptLog.splice(0)),
    vscode.commands.registerCommand(VM_TEST_COMMANDS.sshConfigPath, () => ssh.file),
    vscode.commands.registerCommand(VM_TEST_COMMANDS.redact, (text: string) => redactor.redact(text)),
  );
  // Scripted answers skip confirmations, so they exist only for tests and development.
  if (ctx.extension.extensionMode !== vscode.ExtensionMode.Production) {
    ctx.subscriptions.push(
      vscode.commands.registerCommand(VM_TEST_COMMANDS.script, (answers: (string | null)[] | null) => {
        if (answers === null) clearScript();
        else scriptAnswers(answers);
      }),
      vscode.commands.registerCommand(VM_TEST_COMMANDS.remoteWindows, (dryRun?: boolean) => {
        if (typeof dryRun === "boolean") remoteWindows.dryRun = dryRun;
        return remoteWindows.opened.splice(0);
      }),
    );
  }
}

/** The kernel a command was given: a kernel row of the view, or a kernel id. */
function kernelIdOf(arg: unknown): string | undefined {
  if (typeof arg === "string") return arg;
  const node = arg as Partial<VmNode> | undefined;
  return node?.kind === "kernel" && node.kernel ? node.kernel.kernelId : undefined;
}
