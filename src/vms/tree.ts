/**
 * The GPU Machines view: one node per provider (with why it is unavailable, or a "Set
 * credentials…" item), its machines below with a state icon and
 * "type · GPU · region · $/h · uptime · $accrued".
 */
import * as vscode from "vscode";
import type * as proto from "../protocol";
import { describeVm, duration, gpuText, money, rate, stateIcon, uptimeSeconds, vmKey } from "./format";
import type { VmModel } from "./model";

export const VMS_VIEW_ID = "gpuWorkbench.machines";

export type VmNode =
  | { kind: "provider"; provider: proto.VmProviderInfo }
  | { kind: "vm"; vm: proto.VmInfo }
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
}

export class VmTreeProvider implements vscode.TreeDataProvider<VmNode>, vscode.Disposable {
  private readonly changed = new vscode.EventEmitter<VmNode | undefined>();
  readonly onDidChangeTreeData = this.changed.event;
  private readonly sub: vscode.Disposable;
  private nodes = new Map<string, VmNode>();

  constructor(
    private readonly model: VmModel,
    private readonly kernelTarget: () => string | undefined,
  ) {
    this.sub = model.onDidChange(() => this.changed.fire(undefined));
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

  private remember(n: VmNode): VmNode {
    const key = n.kind === "provider" ? `provider:${n.provider.name}` : n.kind === "vm" ? `vm:${vmKey(n.vm)}` : "";
    if (key) this.nodes.set(key, n);
    return n;
  }

  getTreeItem(node: VmNode): vscode.TreeItem {
    if (node.kind === "provider") return this.providerItem(node.provider);
    if (node.kind === "vm") return this.vmItem(node.vm);
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
    const item = new vscode.TreeItem(vm.name || vm.id, vscode.TreeItemCollapsibleState.None);
    item.id = `vm:${vmKey(vm)}`;
    const icon = stateIcon(vm.state);
    item.iconPath = new vscode.ThemeIcon(icon.id, icon.color ? new vscode.ThemeColor(icon.color) : undefined);
    const target = this.kernelTarget() === vmKey(vm);
    item.description = describeVm(vm) + (target ? " · kernel target" : "");
    item.tooltip = vmTooltip(vm, target);
    // contextValue lists what can be done, for menus' `when` clauses (viewItem =~ /\.start\b/).
    const can = (c: string) => vm.capabilities.includes(c);
    const acts = ["gpuWorkbench.vm", vm.state];
    if (can("start") && vm.state === "stopped") acts.push("start");
    if (can("stop") && (vm.state === "running" || vm.state === "pending")) acts.push("stop");
    if (can("terminate") && vm.state !== "terminated") acts.push("terminate");
    if (vm.ssh && vm.state === "running") acts.push("ssh");
    if (vm.address || vm.ssh) acts.push("address");
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
          provider: n.kind === "provider" ? n.provider.name : n.kind === "vm" ? n.vm.provider : n.provider,
          ...(n.kind === "vm" ? { id: n.vm.id, state: n.vm.state } : {}),
        });
        walk(this.getChildren(n), depth + 1);
      }
    };
    walk(this.getChildren(), 0);
    return rows;
  }

  dispose(): void {
    this.sub.dispose();
    this.changed.dispose();
  }
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
