/**
 * "Browse Checkpoints on Machine…": a connected machine (the GPU Machines row it was run on,
 * else a quick pick, connecting the one chosen if needed) and a folder on it (an input box,
 * the workspace's sync folder by default) make a new root of the Checkpoints view.
 */
import * as vscode from "vscode";
import type { Ctx } from "../ctx";
import type * as proto from "../protocol";
import { chooseVm } from "../remote/commands";
import { remoteWorkspacePath } from "../remote/format";
import { canConnect, remoteOf } from "../remote/model";
import { vmKey } from "../vms/format";
import { input } from "../vms/prompts";
import { folderProblem, type RemoteRoot, tidyFolder } from "./remoteNames";
import { isRemoteNode } from "./remoteTree";

const TITLE = "Browse Checkpoints on Machine";

/** The folder offered first: where the workspace is synced to on machines, else home. */
function defaultFolder(): string {
  const folder = vscode.workspace.workspaceFolders?.[0];
  return folder ? remoteWorkspacePath(folder.name) : "~";
}

/** Ask for a machine (connected, or connected now) and a folder on it; undefined if cancelled. */
export async function browseRemote(ctx: Ctx, arg: unknown): Promise<RemoteRoot | undefined> {
  const remote = remoteOf(ctx);
  const linked = (vm: proto.VmInfo) => {
    const s = remote.get(vmKey(vm))?.state;
    return s === "connected" || s === "reconnecting";
  };
  // From a machine's row its machine; else the connected ones (or any that can connect).
  const anyLinked = remote.connected().length > 0;
  const vm = await chooseVm(ctx, arg, TITLE, (v) => (anyLinked ? linked(v) : canConnect(v)));
  if (!vm) return undefined;
  const machine = vmKey(vm);
  if (!linked(vm)) {
    if (!canConnect(vm)) throw new Error(`${vm.name || machine} cannot be connected to (${vm.state}).`);
    const m = await remote.connect(vm);
    if (!m) return undefined; // the host key was not trusted
  }
  const folder = await input({
    title: `${TITLE}: ${remote.nameOf(machine)}`,
    prompt: "A folder on the machine; its checkpoints are listed and read there",
    value: defaultFolder(),
    validateInput: (v) => folderProblem(v),
  });
  if (folder === undefined) return undefined;
  const problem = folderProblem(folder);
  if (problem) throw new Error(problem);
  return { machine, folder: tidyFolder(folder) };
}

/** The root a command argument names: its row (or a row under it), or {machine, folder}. */
export function remoteRootOf(arg: unknown): RemoteRoot | undefined {
  if (isRemoteNode(arg)) return arg.root;
  const r = arg as Partial<RemoteRoot> | null | undefined;
  if (typeof r?.machine === "string" && typeof r.folder === "string") return { machine: r.machine, folder: r.folder };
  return undefined;
}
