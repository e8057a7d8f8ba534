/**
 * The remote commands and flows: connect / disconnect, choosing a machine's interpreter as
 * a document's kernel target, sync, port forwarding; and the hooks that start a document's
 * kernel on its remote target (connecting first) and sync before each run when asked to.
 */
import * as vscode from "vscode";
import type { TargetHooks } from "../cells/bindings";
import type { Ctx } from "../ctx";
import * as proto from "../protocol";
import { describeVm, vmKey } from "../vms/format";
import { input, type Pick, pick } from "../vms/prompts";
import {
  forwardText,
  interpreterFor,
  parseTarget,
  remoteTarget,
  remoteTargetLabel,
  remoteWorkspacePath,
  splitMachine,
  stateText,
} from "./format";
import { canConnect, type RemoteModel, remoteOf, syncBeforeRun } from "./model";

type Arg = unknown;

/** The VM an argument names: a tree node ({vm}), {provider,id}, {machine}, "provider/id". */
async function vmFromArg(ctx: Ctx, arg: Arg): Promise<proto.VmInfo | undefined> {
  const remote = remoteOf(ctx);
  const vms = remote.vms;
  if (!vms) return undefined;
  const a = arg as { vm?: proto.VmInfo; provider?: unknown; id?: unknown; machine?: unknown } | string | undefined;
  let key: string | undefined;
  if (typeof a === "string" && a.includes("/")) key = a;
  else if (a && typeof a === "object") {
    if (a.vm) key = vmKey(a.vm);
    else if (typeof a.provider === "string" && typeof a.id === "string") key = `${a.provider}/${a.id}`;
    else if (typeof a.machine === "string") key = a.machine;
  }
  if (!key) return undefined;
  const { provider, id } = splitMachine(key);
  if (!vms.loaded || !vms.find(provider, id)) await vms.refresh();
  return vms.find(provider, id);
}

/** A machine from the argument, else a quick pick of those `filter` allows. */
export async function chooseVm(
  ctx: Ctx,
  arg: Arg,
  title: string,
  filter: (vm: proto.VmInfo) => boolean,
): Promise<proto.VmInfo | undefined> {
  const given = await vmFromArg(ctx, arg);
  if (given) return given;
  const remote = remoteOf(ctx);
  const vms = remote.vms;
  if (!vms) throw new Error("The GPU Machines view is not ready yet.");
  if (!vms.loaded) await vms.refresh();
  const choices = vms.vms.filter(filter);
  if (!choices.length) {
    void vscode.window.showInformationMessage(
      `${title}: no machine fits. Start a machine with an SSH address in GPU Machines, or add an SSH host (gpuWorkbench.vms.ssh.hosts).`,
    );
    return undefined;
  }
  const p = await pick(
    choices.map((vm) => {
      const r = remote.get(vmKey(vm));
      return {
        label: vm.name || vm.id,
        description: `${r ? `${stateText(r.state)} · ` : ""}${describeVm(vm)}`,
        value: vm,
        key: vmKey(vm),
      };
    }),
    { title, placeHolder: "Choose a machine" },
  );
  return p?.value;
}

function isLinked(remote: RemoteModel, vm: proto.VmInfo): boolean {
  const s = remote.get(vmKey(vm))?.state;
  return s === "connected" || s === "reconnecting";
}

/** Connect to a machine (asking about its host key once); undefined when declined. */
export async function connectMachine(ctx: Ctx, arg: Arg): Promise<proto.RemoteMachine | undefined> {
  const remote = remoteOf(ctx);
  const vm = await chooseVm(ctx, arg, "Connect to Machine", canConnect);
  if (!vm) return undefined;
  if (!canConnect(vm)) throw new Error(`${vm.name} cannot be connected to (${vm.state}, no SSH address yet?).`);
  const m = await remote.connect(vm);
  if (m) void vscode.window.setStatusBarMessage(`$(remote) Connected to ${m.name}`, 4000);
  return m;
}

export async function disconnectMachine(ctx: Ctx, arg: Arg): Promise<proto.RemoteMachine | undefined> {
  const remote = remoteOf(ctx);
  const vm = await chooseVm(ctx, arg, "Disconnect Machine", (v) => {
    const s = remote.get(vmKey(v))?.state;
    return !!s && s !== "disconnected";
  });
  if (!vm) return undefined;
  return remote.disconnect(vmKey(vm));
}

/** A connected machine: the argument's (connecting it), the active document's target, else a pick. */
async function linkedMachine(ctx: Ctx, arg: Arg, title: string): Promise<proto.RemoteMachine | undefined> {
  const remote = remoteOf(ctx);
  let vm = await vmFromArg(ctx, arg);
  if (!vm) {
    const uri = activeDocument();
    const t = uri ? parseTarget(ctx.bindings.targetFor(uri)) : undefined;
    if (t?.kind === "remote") vm = await vmFromArg(ctx, t.machine);
  }
  if (!vm) {
    const linked = remote.connected();
    if (linked.length === 1) vm = await vmFromArg(ctx, linked[0]?.machine);
  }
  vm ??= await chooseVm(ctx, undefined, title, canConnect);
  if (!vm) return undefined;
  if (isLinked(remote, vm)) return remote.get(vmKey(vm));
  return remote.connect(vm);
}

/** The document of the active editor or notebook (Python files and notebooks). */
export function activeDocument(): vscode.Uri | undefined {
  const nb = vscode.window.activeNotebookEditor;
  if (nb) return nb.notebook.uri;
  const ed = vscode.window.activeTextEditor;
  return ed?.document.languageId === "python" ? ed.document.uri : undefined;
}

function folderOf(uri: vscode.Uri | undefined): vscode.WorkspaceFolder | undefined {
  return (uri && vscode.workspace.getWorkspaceFolder(uri)) || vscode.workspace.workspaceFolders?.[0];
}

export async function syncWorkspace(ctx: Ctx, arg: Arg): Promise<proto.RemoteSyncResult | undefined> {
  const m = await linkedMachine(ctx, arg, "Sync Workspace to Machine");
  if (!m) return undefined;
  const folder = folderOf(activeDocument());
  if (!folder) throw new Error("Open a folder to sync it to a machine.");
  const r = await remoteOf(ctx).sync(m.machine, folder, true);
  if (r) {
    void vscode.window.setStatusBarMessage(
      `$(cloud-upload) Sent ${r.files} files to ${m.name}:${r.remotePath} in ${(r.durationMs / 1000).toFixed(1)} s`,
      6000,
    );
  }
  return r;
}

export async function forwardPort(ctx: Ctx, arg: Arg, port?: unknown): Promise<proto.RemoteMachine | undefined> {
  const m = await linkedMachine(ctx, arg, "Forward Port from Machine");
  if (!m) return undefined;
  let remotePort = typeof port === "number" ? port : undefined;
  if (remotePort === undefined) {
    const text = await input({
      title: `Forward a port of ${m.name}`,
      prompt: "The port on the machine (TensorBoard: 6006); it is reachable on localhost here",
      value: "6006",
      validateInput: (s) => (/^\d+$/.test(s.trim()) && +s > 0 && +s < 65536 ? undefined : "A port, 1–65535"),
    });
    if (text === undefined) return undefined;
    remotePort = Number(text.trim());
  }
  const after = await remoteOf(ctx).forward(m.machine, remotePort);
  const f = after.forwards.find((x) => x.remotePort === remotePort);
  if (f) {
    void vscode.window
      .showInformationMessage(`Port ${remotePort} of ${m.name} is on ${forwardText(f)}.`, "Open in Browser")
      .then((c) => c && openForward(f.localPort));
  }
  return after;
}

export async function stopForwarding(ctx: Ctx, arg: Arg): Promise<proto.RemoteMachine | undefined> {
  const remote = remoteOf(ctx);
  const a = arg as { vm?: proto.VmInfo; forward?: proto.RemoteForward; machine?: string; localPort?: number };
  let machine = a?.vm ? vmKey(a.vm) : a?.machine;
  let localPort = a?.forward?.localPort ?? a?.localPort;
  if (!machine || !localPort) {
    const items: Pick<{ machine: string; localPort: number }>[] = [];
    for (const m of remote.all()) {
      for (const f of m.forwards) {
        items.push({
          label: forwardText(f),
          description: m.name,
          value: { machine: m.machine, localPort: f.localPort },
          key: `${m.machine}:${f.localPort}`,
        });
      }
    }
    if (!items.length) {
      void vscode.window.showInformationMessage("No port is forwarded.");
      return undefined;
    }
    const p = await pick(items, { title: "Stop Forwarding" });
    if (!p) return undefined;
    machine = p.value.machine;
    localPort = p.value.localPort;
  }
  return remote.unforward(machine, localPort);
}

export function openForward(localPort: unknown): Thenable<boolean> | undefined {
  const port =
    typeof localPort === "number" ? localPort : (localPort as { forward?: proto.RemoteForward })?.forward?.localPort;
  if (!port) return undefined;
  return vscode.env.openExternal(vscode.Uri.parse(`http://localhost:${port}/`));
}

// ---- kernel targets -------------------------------------------------------------------

export interface TargetPick extends vscode.QuickPickItem {
  target?: string;
  connect?: boolean;
}

/** The picker's remote entries: each interpreter of each connected machine, and "Connect…". */
export function remoteTargetItems(ctx: Ctx, current: string): TargetPick[] {
  const remote = remoteOf(ctx);
  const items: TargetPick[] = [];
  const linked = remote.connected();
  if (linked.length) items.push({ label: "Remote machines", kind: vscode.QuickPickItemKind.Separator });
  for (const m of linked) {
    const interps = m.interpreters.length ? m.interpreters : [];
    for (const i of interps) {
      const target = remoteTarget(m.machine, i.path);
      items.push({
        label: `$(remote) ${remoteTargetLabel(m.name, i)}`,
        description: `${target === current ? "current · " : ""}${i.kind} · ${stateText(m.state)}`,
        detail: i.path,
        target,
      });
    }
    if (!interps.length) {
      const target = remoteTarget(m.machine, "");
      items.push({ label: `$(remote) ${remoteTargetLabel(m.name, undefined)}`, detail: m.host, target });
    }
  }
  items.push({
    label: "$(plug) Connect to a machine…",
    detail: "A running GPU machine or SSH host: its Python environments become kernel targets",
    connect: true,
  });
  return items;
}

/** Connect to a chosen machine and pick one of its interpreters; returns the target string. */
export async function connectForTarget(ctx: Ctx, arg?: Arg): Promise<string | undefined> {
  const remote = remoteOf(ctx);
  const vm = await chooseVm(ctx, arg, "Connect to a machine", canConnect);
  if (!vm) return undefined;
  const m = isLinked(remote, vm) ? remote.get(vmKey(vm)) : await remote.connect(vm);
  if (!m) return undefined;
  return chooseInterpreter(m);
}

export async function chooseInterpreter(m: proto.RemoteMachine): Promise<string | undefined> {
  if (m.interpreters.length <= 1) return remoteTarget(m.machine, m.interpreters[0]?.path ?? "");
  const dflt = interpreterFor(m, "");
  const p = await pick(
    m.interpreters.map((i) => ({
      label: remoteTargetLabel(m.name, i),
      description: `${i.kind}${i === dflt ? " · default" : ""}`,
      detail: i.path,
      value: i,
      key: i.path,
    })),
    { title: `Python on ${m.name}`, placeHolder: "Which interpreter runs the kernel?" },
  );
  return p ? remoteTarget(m.machine, p.value.path) : undefined;
}

/** Bind a document to a target and start its kernel there (with progress). */
export async function bindDocument(ctx: Ctx, uri: vscode.Uri, target: string): Promise<string> {
  await ctx.bindings.setTarget(uri, target);
  const t = parseTarget(target);
  const where = t.kind === "remote" ? remoteOf(ctx).nameOf(t.machine) : "this machine";
  return vscode.window.withProgress(
    { location: vscode.ProgressLocation.Notification, title: `Starting a kernel on ${where}…` },
    () => ctx.bindings.ensureKernel(uri),
  );
}

/** "Use Machine as Kernel Target": connect, choose an interpreter, bind the active document. */
export async function useMachineForActiveDocument(ctx: Ctx, vm: proto.VmInfo): Promise<string | undefined> {
  const uri = activeDocument();
  if (!canConnect(vm)) return undefined;
  const target = await connectForTarget(ctx, vm);
  if (!target || !uri) return target;
  await bindDocument(ctx, uri, target);
  return target;
}

/** Start kernels on remote targets (connecting first) and sync before runs when asked. */
export function targetHooks(ctx: Ctx): TargetHooks {
  const remote = remoteOf(ctx);
  const ensureLinked = async (machine: string): Promise<proto.RemoteMachine> => {
    const known = remote.get(machine);
    if (known && (known.state === "connected" || known.state === "reconnecting")) return known;
    const vm = await vmFromArg(ctx, machine);
    if (!vm) throw new Error(`The machine ${machine} is not in GPU Machines (stopped or removed?).`);
    const m = await remote.connect(vm);
    if (!m) throw new Error(`Not connected to ${vm.name}.`);
    return m;
  };
  return {
    recovering(target) {
      const t = parseTarget(target);
      return t.kind === "remote" && remote.get(t.machine)?.state === "reconnecting";
    },
    async reach(target) {
      const t = parseTarget(target);
      if (t.kind !== "remote") return false;
      const known = remote.get(t.machine);
      if (known && (known.state === "connected" || known.state === "reconnecting")) return false;
      await ensureLinked(t.machine);
      return true;
    },
    async start(uri, target) {
      const t = parseTarget(target);
      if (t.kind !== "remote") throw new Error(`Unknown kernel target ${target}`);
      await ensureLinked(t.machine);
      const folder = folderOf(uri);
      const envFile = ctx.config.kernelEnvFile(folder?.uri.fsPath);
      const name = uri.path.split("/").pop() || uri.toString();
      const params: proto.KernelStartParams = {
        machine: t.machine,
        env: ctx.config.kernelEnv,
        idleTimeoutSeconds: ctx.config.kernelIdleTimeoutMinutes * 60,
        name,
        ...(t.python ? { python: t.python } : {}),
        ...(folder ? { cwd: remoteWorkspacePath(folder.name) } : {}),
        ...(envFile && (await exists(envFile)) ? { envFile } : {}),
      };
      const client = ctx.backend.client;
      if (!client) throw new Error("The GPU Workbench backend is not running.");
      return client.sendRequest(proto.kernelStart, params);
    },
    async beforeRun(uri, target) {
      const t = parseTarget(target);
      if (t.kind !== "remote" || !syncBeforeRun()) return;
      const folder = folderOf(uri);
      if (!folder) return;
      await ensureLinked(t.machine);
      try {
        await remote.sync(t.machine, folder, false);
      } catch (err) {
        const msg = err instanceof Error ? err.message : String(err);
        throw new Error(`Sync before run to ${remote.nameOf(t.machine)} failed: ${msg}`);
      }
    },
  };
}

async function exists(p: string): Promise<boolean> {
  try {
    await vscode.workspace.fs.stat(vscode.Uri.file(p));
    return true;
  } catch {
    return false;
  }
}
