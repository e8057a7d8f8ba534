/**
 * The GPU Machines view: one node per provider (with why it is unavailable, or a "Set
 * credentials…" item), its machines below with a state icon and
 * "type · GPU · region · $/h · uptime · $accrued", and under a machine its GPUs, then the
 * kernels running on it (busy/idle, with Interrupt / Restart / Shut Down), then forwarded ports.
 */
import * as vscode from "vscode";
import { celsius, memory, percent } from "../gpu/format";
import type * as proto from "../protocol";
import { autostopText, forwardText, interpreterText, stateIconOf, stateText } from "../remote/format";
import { canConnect } from "../remote/model";
import { describeVm, duration, gpuText, kernelRowText, money, rate, stateIcon, uptimeSeconds, vmKey } from "./format";
import type { KernelRows } from "./kernels";
import type { VmModel } from "./model";

export const VMS_VIEW_ID = "gpuWorkbench.machines";

export type VmNode =
  | { kind: "provider"; provider: proto.VmProviderInfo }
  | { kind: "vm"; vm: proto.VmInfo }
  | { kind: "gpu"; vm: proto.VmInfo; gpu: proto.GpuInfo }
  | { kind: "kernel"; vm: proto.VmInfo; kernel: proto.KernelInfo }
  | { kind: "forward"; vm: proto.VmInfo; forward: proto.RemoteForward }
  | { kind: "info"; provider: string; label: string; detail: string; action?: "credentials" | "logs" | "create" };

/** One row as plain data, for the hidden test command. */
export interface VmTreeRow {
  depth: number;
  kind: VmNode["kind"];
  label: string;
  description: string;
  tooltip: string;
  icon: string;
  contextValue: string;
  provider: string;
  id?: string;
  state?: string;
  /** Kernel rows: the kernel's id and its machine ("provider/id"). */
  kernelId?: string;
  machine?: string;
}

/** Where the tree reads the GPUs of a machine (this machine's from the GPU sampler). */
export interface GpuSnapshots {
  readonly onDidChange: vscode.Event<unknown>;
  snapshotOf(vm: proto.VmInfo): proto.GpuSnapshot | undefined;
}

export class VmTreeProvider implements vscode.TreeDataProvider<VmNode>, vscode.Disposable {
  private readonly changed = new vscode.EventEmitter<VmNode | undefined>();
  readonly onDidChangeTreeData = this.changed.event;
  private readonly sub: vscode.Disposable;
  private nodes = new Map<string, VmNode>();
  private readonly gpuSub: vscode.Disposable | undefined;
  private gpuKey = new Map<string, string>();
  private readonly remoteSub: vscode.Disposable;
  private readonly kernelSub: vscode.Disposable | undefined;

  constructor(
    private readonly model: VmModel,
    private readonly kernelTarget: () => string | undefined,
    private readonly gpus?: GpuSnapshots,
    private readonly kernels?: KernelRows,
  ) {
    this.sub = model.onDidChange(() => this.changed.fire(undefined));
    // A kernel started, ended or turned busy/idle (a machine may gain or lose its children).
    this.kernelSub = kernels?.onDidChange(() => this.changed.fire(undefined));
    // A connection's state or forwards changed: its row (and children) change with it.
    this.remoteSub = model.remote.onDidChange(() => this.changed.fire(undefined));
    // Refresh a machine's row only when what its GPU rows show changes (not every sample).
    this.gpuSub = gpus?.onDidChange(() => {
      for (const vm of this.model.vms) {
        const snap = gpus.snapshotOf(vm);
        if (!snap) continue;
        const key = snap.gpus.map((g) => gpuRowText(g).join("|")).join("\n");
        if (this.gpuKey.get(vmKey(vm)) === key) continue;
        const had = this.gpuKey.has(vmKey(vm));
        this.gpuKey.set(vmKey(vm), key);
        const node = this.nodes.get(`vm:${vmKey(vm)}`);
        // A machine that gains its first GPU rows changes its collapsible state: refresh all.
        this.changed.fire(had && node ? node : undefined);
      }
    });
  }

  refreshView(): void {
    this.changed.fire(undefined);
  }

  /** The node of a machine (for reveal). */
  nodeOf(provider: string, id: string): VmNode | undefined {
    return this.nodes.get(`vm:${provider}/${id}`);
  }

  getParent(node: VmNode): VmNode | undefined {
    if (node.kind === "provider") return undefined;
    if (node.kind === "gpu" || node.kind === "kernel" || node.kind === "forward")
      return this.nodes.get(`vm:${vmKey(node.vm)}`);
    const p = node.kind === "vm" ? node.vm.provider : node.provider;
    return this.nodes.get(`provider:${p}`);
  }

  getChildren(node?: VmNode): VmNode[] {
    if (!node) {
      if (!this.model.loaded && !this.model.failure) return [];
      if (this.model.failure && !this.model.providers.length) {
        return [
          {
            kind: "info",
            provider: "",
            label: "Machines could not be listed",
            detail: this.model.failure,
            action: "logs",
          },
        ];
      }
      return this.model.providers.map((p) => this.remember({ kind: "provider", provider: p }));
    }
    if (node.kind === "vm")
      return [...this.gpuNodes(node.vm), ...this.kernelNodes(node.vm), ...this.forwardNodes(node.vm)];
    if (node.kind !== "provider") return [];
    const p = node.provider;
    const out: VmNode[] = [];
    if (p.credentialFields.length && !p.configured) {
      out.push({
        kind: "info",
        provider: p.name,
        label: "Set credentials…",
        detail: `${p.displayName} needs ${p.credentialFields.join(", ")}; they are kept in VS Code's secret storage.`,
        action: "credentials",
      });
    }
    for (const e of this.model.errors.filter((x) => x.provider === p.name)) {
      out.push({
        kind: "info",
        provider: p.name,
        label: e.message,
        detail: e.hint ?? e.kind,
        action: e.kind === "ProviderAuth" ? "credentials" : "logs",
      });
    }
    const vms = this.model.vms.filter((v) => v.provider === p.name && v.state !== "terminated");
    for (const vm of vms) out.push(this.remember({ kind: "vm", vm }));
    if (!vms.length && p.available && p.capabilities.includes("create") && out.length === 0) {
      out.push({ kind: "info", provider: p.name, label: "No machines. Create one…", detail: "", action: "create" });
    }
    if (!vms.length && p.name === "ssh" && out.length === 0) {
      out.push({
        kind: "info",
        provider: p.name,
        label: "No SSH hosts",
        detail: "Add Host entries to ~/.ssh/config or hosts to gpuWorkbench.vms.ssh.hosts",
      });
    }
    return out;
  }

  private gpuNodes(vm: proto.VmInfo): VmNode[] {
    // A connected machine is up whatever its listing's probe saw (an SSH host whose key only
    // the remote settings' known_hosts holds reads "unknown"); snapshotOf has its GPUs then.
    const snap = vm.state === "running" || vm.provider !== "local" ? this.gpus?.snapshotOf(vm) : undefined;
    return (snap?.gpus ?? []).map((gpu) => ({ kind: "gpu", vm, gpu }));
  }

  /**
   * The kernels running on a machine (this machine's: those with no `machine`). Not gated on
   * the listed state: a remote kernel is listed only while its machine is connected.
   */
  private kernelNodes(vm: proto.VmInfo): VmNode[] {
    return (this.kernels?.kernelsOf(vm) ?? []).map((kernel) => ({ kind: "kernel", vm, kernel }));
  }

  /** Ports forwarded from a connected machine: "localhost:6006 → 6006". */
  private forwardNodes(vm: proto.VmInfo): VmNode[] {
    const r = this.model.remote.get(vmKey(vm));
    if (!r || r.state === "disconnected" || r.state === "failed") return [];
    return r.forwards.map((forward) => ({ kind: "forward", vm, forward }));
  }

  private remember(n: VmNode): VmNode {
    const key = n.kind === "provider" ? `provider:${n.provider.name}` : n.kind === "vm" ? `vm:${vmKey(n.vm)}` : "";
    if (key) this.nodes.set(key, n);
    return n;
  }

  getTreeItem(node: VmNode): vscode.TreeItem {
    if (node.kind === "provider") return this.providerItem(node.provider);
    if (node.kind === "vm") return this.vmItem(node.vm);
    if (node.kind === "gpu") return gpuItem(node.gpu, node.vm);
    if (node.kind === "kernel") return kernelItem(node.vm, node.kernel);
    if (node.kind === "forward") return forwardItem(node.vm, node.forward);
    const item = new vscode.TreeItem(node.label, vscode.TreeItemCollapsibleState.None);
    item.tooltip = node.detail;
    item.description = node.action === "credentials" ? "" : node.detail;
    item.contextValue = "gpuWorkbench.vmInfo";
    if (node.action === "credentials") {
      item.iconPath = new vscode.ThemeIcon("key");
      item.command = {
        command: "gpuWorkbench.vms.setCredentials",
        title: "Set Credentials…",
        arguments: [node.provider],
      };
    } else if (node.action === "create") {
      item.iconPath = new vscode.ThemeIcon("add");
      item.command = { command: "gpuWorkbench.vms.create", title: "Create GPU Machine…", arguments: [node.provider] };
    } else {
      item.iconPath = new vscode.ThemeIcon("warning", new vscode.ThemeColor("problemsWarningIcon.foreground"));
      item.command = { command: "gpuWorkbench.showLogs", title: "Show Logs" };
    }
    return item;
  }

  private providerItem(p: proto.VmProviderInfo): vscode.TreeItem {
    const count = this.model.vms.filter((v) => v.provider === p.name && v.state !== "terminated").length;
    const item = new vscode.TreeItem(p.displayName || p.name, vscode.TreeItemCollapsibleState.Expanded);
    item.id = `provider:${p.name}`;
    const kindIcon = p.name === "local" ? "device-desktop" : p.name === "ssh" ? "remote" : "cloud";
    item.iconPath = new vscode.ThemeIcon(p.available ? kindIcon : "circle-slash");
    item.description = p.available
      ? count
        ? `${count} machine${count === 1 ? "" : "s"}`
        : ""
      : (p.reason ?? "unavailable");
    const md = new vscode.MarkdownString(`**${p.displayName}**\n\n`);
    md.appendText(p.available ? "Available" : `Unavailable: ${p.reason ?? "unknown reason"}`);
    if (p.credentialFields.length) md.appendMarkdown(`\n\nCredentials: ${p.configured ? "set" : "not set"}`);
    if (p.stopKeepsBilling) md.appendMarkdown("\n\n⚠ A stopped machine is still billed by this provider.");
    for (const n of p.notes) md.appendMarkdown(`\n\n${n}`);
    item.tooltip = md;
    const ctx = ["gpuWorkbench.vmProvider"];
    if (p.credentialFields.length) ctx.push("credentials");
    if (p.capabilities.includes("create") && p.available) ctx.push("create");
    item.contextValue = ctx.join(".");
    return item;
  }

  private vmItem(vm: proto.VmInfo): vscode.TreeItem {
    const expandable = this.gpuNodes(vm).length + this.kernelNodes(vm).length + this.forwardNodes(vm).length > 0;
    const item = new vscode.TreeItem(
      vm.name || vm.id,
      expandable ? vscode.TreeItemCollapsibleState.Expanded : vscode.TreeItemCollapsibleState.None,
    );
    item.id = `vm:${vmKey(vm)}`;
    const link = this.model.remote.get(vmKey(vm));
    // The connection's state wins over the machine's once there is one to show.
    const linkShown = link && link.state !== "disconnected" ? link : undefined;
    const icon = linkShown ? stateIconOf(linkShown.state) : stateIcon(vm.state);
    item.iconPath = new vscode.ThemeIcon(icon.id, icon.color ? new vscode.ThemeColor(icon.color) : undefined);
    const target = this.kernelTarget() === vmKey(vm);
    item.description =
      (linkShown ? `${stateText(linkShown.state)} · ` : "") + describeVm(vm) + (target ? " · kernel target" : "");
    item.tooltip = vmTooltip(vm, target);
    if (link)
      appendRemote(item.tooltip, link, this.model.remote.autostop(vmKey(vm)), this.model.remote.errors.get(vmKey(vm)));
    else {
      const err = this.model.remote.errors.get(vmKey(vm));
      if (err) item.tooltip.appendMarkdown(`\n**Connection failed:** ${escapeMd(err)}\n`);
    }
    // contextValue lists what can be done, for menus' `when` clauses (viewItem =~ /\.start\b/).
    const can = (c: string) => vm.capabilities.includes(c);
    const acts = ["gpuWorkbench.vm", vm.state];
    if (can("start") && vm.state === "stopped") acts.push("start");
    if (can("stop") && (vm.state === "running" || vm.state === "pending")) acts.push("stop");
    if (can("terminate") && vm.state !== "terminated") acts.push("terminate");
    if (vm.ssh && vm.state === "running") acts.push("ssh");
    if (vm.address || vm.ssh) acts.push("address");
    // Remote execution: connect a running machine with an SSH target; disconnect a linked one.
    const linked = !!link && link.state !== "disconnected" && link.state !== "failed";
    if (canConnect(vm) && !linked) acts.push("connect");
    if (linked) acts.push("disconnect");
    if (link?.state === "connected") acts.push("connected");
    item.contextValue = acts.join(".");
    item.accessibilityInformation = { label: `${item.label}, ${vm.state}, ${item.description}` };
    return item;
  }

  /** The view's rows, depth-first (for tests). */
  snapshot(): VmTreeRow[] {
    const rows: VmTreeRow[] = [];
    const walk = (nodes: VmNode[], depth: number) => {
      for (const n of nodes) {
        const item = this.getTreeItem(n);
        const icon = item.iconPath instanceof vscode.ThemeIcon ? item.iconPath.id : "";
        const tooltip = item.tooltip instanceof vscode.MarkdownString ? item.tooltip.value : String(item.tooltip ?? "");
        rows.push({
          depth,
          kind: n.kind,
          label: String(item.label),
          description: String(item.description ?? ""),
          tooltip,
          icon,
          contextValue: item.contextValue ?? "",
          provider: n.kind === "provider" ? n.provider.name : n.kind === "info" ? n.provider : n.vm.provider,
          ...(n.kind === "vm" ? { id: n.vm.id, state: n.vm.state } : {}),
          ...(n.kind === "kernel" ? { machine: vmKey(n.vm), kernelId: n.kernel.kernelId, state: n.kernel.state } : {}),
        });
        walk(this.getChildren(n), depth + 1);
      }
    };
    walk(this.getChildren(), 0);
    return rows;
  }

  dispose(): void {
    this.sub.dispose();
    this.gpuSub?.dispose();
    this.kernelSub?.dispose();
    this.remoteSub.dispose();
    this.changed.dispose();
  }
}

/** A GPU row: "GPU 0 · NVIDIA H100 80GB HBM3" and "87% · 61/80 GiB · 71°C". */
export function gpuRowText(gpu: proto.GpuInfo): [string, string] {
  const label = `GPU ${gpu.index} · ${gpu.name || "unknown"}`;
  if (gpu.lost) return [label, "lost (fallen off the bus)"];
  return [
    label,
    [percent(gpu.utilization), memory(gpu.memoryUsed, gpu.memoryTotal), celsius(gpu.temperature)].join(" · "),
  ];
}

function gpuItem(gpu: proto.GpuInfo, vm: proto.VmInfo): vscode.TreeItem {
  const [label, description] = gpuRowText(gpu);
  const item = new vscode.TreeItem(label, vscode.TreeItemCollapsibleState.None);
  item.description = description;
  const color =
    gpu.verdict === "critical"
      ? "errorForeground"
      : gpu.verdict === "warn"
        ? "problemsWarningIcon.foreground"
        : undefined;
  item.iconPath = new vscode.ThemeIcon("circuit-board", color ? new vscode.ThemeColor(color) : undefined);
  const md = new vscode.MarkdownString(`**${escapeMd(label)}** — ${gpu.verdict}\n\n${escapeMd(description)}`);
  for (const r of gpu.reasons)
    md.appendMarkdown(`\n\n${r.severity === "critical" ? "⛔" : "⚠"} ${escapeMd(r.message)}`);
  item.tooltip = md;
  item.contextValue = "gpuWorkbench.gpu";
  // The panel shows this row's machine.
  item.command = {
    command: "gpuWorkbench.showGpuPanel",
    title: "Show GPU Panel",
    arguments: [{ provider: vm.provider, id: vm.id }],
  };
  return item;
}

/**
 * A kernel on a machine: "quickstart.py" and "busy · 1 queued · Python 3.12.1 · pid 4242";
 * Interrupt (while busy), Restart and Shut Down in its context menu.
 */
function kernelItem(vm: proto.VmInfo, k: proto.KernelInfo): vscode.TreeItem {
  const [label, description] = kernelRowText(k);
  const item = new vscode.TreeItem(label, vscode.TreeItemCollapsibleState.None);
  item.id = `kernel:${vmKey(vm)}:${k.kernelId}`;
  item.description = description;
  const busy = k.state === "busy" || k.state === "starting";
  item.iconPath = new vscode.ThemeIcon(
    busy ? "pulse" : "server-process",
    busy ? new vscode.ThemeColor("charts.yellow") : undefined,
  );
  const md = new vscode.MarkdownString(`**Kernel ${escapeMd(label)}** — ${k.state}\n\n`);
  md.appendMarkdown(`ID: ${escapeMd(k.kernelId)}  \n`);
  md.appendMarkdown(`Python ${escapeMd(k.pythonVersion || "?")}: ${escapeMd(k.python)}  \n`);
  if (k.cwd) md.appendMarkdown(`Working directory: ${escapeMd(k.cwd)}  \n`);
  if (k.createdAt) md.appendMarkdown(`Started: ${new Date(k.createdAt * 1000).toLocaleString()}  \n`);
  item.tooltip = md;
  // viewItem =~ /^gpuWorkbench\.vmKernel\.busy\b/ offers Interrupt only while something runs.
  item.contextValue = `gpuWorkbench.vmKernel.${k.state}`;
  item.accessibilityInformation = { label: `Kernel ${label}, ${description}` };
  return item;
}

/** A forwarded port: click opens it in the browser; "Stop Forwarding" in its context menu. */
function forwardItem(vm: proto.VmInfo, f: proto.RemoteForward): vscode.TreeItem {
  const item = new vscode.TreeItem(forwardText(f), vscode.TreeItemCollapsibleState.None);
  item.id = `forward:${vmKey(vm)}:${f.localPort}`;
  item.description = "forwarded port";
  item.iconPath = new vscode.ThemeIcon("plug");
  item.tooltip = `Port ${f.remotePort} of ${vm.name || vm.id} on http://localhost:${f.localPort}/ (click to open)`;
  item.contextValue = "gpuWorkbench.forward";
  item.command = { command: "gpuWorkbench.remote.openForward", title: "Open in Browser", arguments: [f.localPort] };
  return item;
}

/** The connection's part of a machine's tooltip: state, message, agent, Pythons, autostop. */
function appendRemote(
  md: vscode.MarkdownString,
  r: proto.RemoteMachine,
  auto: proto.RemoteAutostopInfo | undefined,
  error: string | undefined,
): void {
  md.appendMarkdown(`\n**Connection:** ${escapeMd(stateText(r.state))}  \n`);
  if (r.message) md.appendMarkdown(`${escapeMd(r.message)}  \n`);
  if (error && r.state !== "connected") md.appendMarkdown(`Last error: ${escapeMd(error)}  \n`);
  if (r.host) md.appendMarkdown(`Host: ${escapeMd(r.host)}  \n`);
  if (r.agentVersion) md.appendMarkdown(`Agent: ${escapeMd(r.agentVersion)}  \n`);
  if (r.latencyMs != null) md.appendMarkdown(`Round trip: ${r.latencyMs.toFixed(1)} ms  \n`);
  if (r.reconnects) md.appendMarkdown(`Reconnects: ${r.reconnects}  \n`);
  for (const i of r.interpreters) md.appendMarkdown(`Python: ${escapeMd(interpreterText(i))}  \n`);
  const a = autostopText(auto);
  if (a) md.appendMarkdown(`Autostop: ${escapeMd(a)}  \n`);
}

function vmTooltip(vm: proto.VmInfo, target: boolean): vscode.MarkdownString {
  const md = new vscode.MarkdownString();
  md.appendMarkdown(`**${escapeMd(vm.name || vm.id)}** — ${vm.state}${target ? " (kernel target)" : ""}\n\n`);
  const row = (k: string, v: string | null | undefined) => {
    if (v) md.appendMarkdown(`${k}: ${escapeMd(v)}  \n`);
  };
  row("Provider", vm.provider);
  row("ID", vm.id);
  row("Type", vm.instanceType);
  row("GPU", gpuText(vm));
  row("Region", vm.region);
  row("Price", rate(vm.pricePerHour) + (vm.spot ? " (spot)" : ""));
  const up = uptimeSeconds(vm);
  if (up !== undefined) row("Uptime", duration(up));
  row("Cost so far", money(vm.accruedCost));
  row("Address", vm.address);
  if (vm.ssh) row("SSH", `${vm.ssh.user ? `${vm.ssh.user}@` : ""}${vm.ssh.host}:${vm.ssh.port}`);
  if (vm.launchedAt)
    row("Launched", new Date(vm.launchedAt > 1e12 ? vm.launchedAt : vm.launchedAt * 1000).toLocaleString());
  row("Created here", vm.managed ? "yes" : "no");
  if (vm.stopKeepsBilling)
    md.appendMarkdown("\n⚠ Stopping does not stop billing on this provider; terminate to stop paying.\n");
  if (vm.detail) md.appendMarkdown(`\n${escapeMd(vm.detail)}\n`);
  return md;
}

function escapeMd(s: string): string {
  return s.replace(/[\\`*_{}[\]()#+\-.!|<>]/g, "\\$&");
}
