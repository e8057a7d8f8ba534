/** Pure formatting of machines and money (no `vscode`, unit-tested). */
import type { KernelInfo, VmIdleWarningParams, VmInfo } from "../protocol";

export function money(n: number | null | undefined): string {
  if (n === null || n === undefined || !Number.isFinite(n)) return "$?";
  if (n > 0 && n < 0.01) return "<$0.01";
  return `$${n.toFixed(2)}`;
}

export function rate(n: number | null | undefined): string {
  return n === null || n === undefined ? "$?/h" : `${money(n)}/h`;
}

export function duration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return "";
  const m = Math.floor(seconds / 60);
  if (m < 60) return `${m}m`;
  const h = Math.floor(m / 60);
  if (h < 48) return `${h}h ${m % 60}m`;
  return `${Math.floor(h / 24)}d ${h % 24}h`;
}

export function gpuText(vm: Pick<VmInfo, "gpuModel" | "gpuCount">): string {
  if (!vm.gpuModel && !vm.gpuCount) return "no GPU";
  const model = vm.gpuModel ?? "GPU";
  return vm.gpuCount > 1 ? `${vm.gpuCount}× ${model}` : model;
}

/** Seconds since launch, for running machines only. */
export function uptimeSeconds(vm: VmInfo, nowMs = Date.now()): number | undefined {
  if (vm.state !== "running" || !vm.launchedAt) return undefined;
  // launchedAt is seconds since the epoch (the backend's time.time()).
  const launchedMs = vm.launchedAt > 1e12 ? vm.launchedAt : vm.launchedAt * 1000;
  return Math.max(0, (nowMs - launchedMs) / 1000);
}

/** "type · GPU · region · $/h · uptime · $accrued" (parts that are unknown are left out). */
export function describeVm(vm: VmInfo, nowMs = Date.now()): string {
  const parts: string[] = [];
  if (vm.instanceType) parts.push(vm.instanceType);
  parts.push(gpuText(vm));
  if (vm.region) parts.push(vm.region);
  parts.push(rate(vm.pricePerHour) + (vm.spot ? " spot" : ""));
  const up = uptimeSeconds(vm, nowMs);
  if (up !== undefined) parts.push(duration(up));
  parts.push(money(vm.accruedCost));
  return parts.join(" · ");
}

export function stateIcon(state: string): { id: string; color?: string } {
  switch (state) {
    case "running":
      return { id: "vm-running", color: "testing.iconPassed" };
    case "pending":
    case "stopping":
      return { id: "loading~spin" };
    case "stopped":
      return { id: "debug-stop", color: "disabledForeground" };
    case "terminated":
      return { id: "trash", color: "disabledForeground" };
    default:
      return { id: "question" };
  }
}

/** Whether a machine costs money now (running, starting, or stopped on a provider that bills it). */
export function isBilling(vm: VmInfo): boolean {
  if (vm.state === "running" || vm.state === "pending" || vm.state === "stopping") return true;
  return vm.state === "stopped" && vm.stopKeepsBilling;
}

export function vmKey(vm: Pick<VmInfo, "provider" | "id">): string {
  return `${vm.provider}/${vm.id}`;
}

/** A Host alias safe for ssh_config. */
export function sshAlias(vm: Pick<VmInfo, "provider" | "name" | "id" | "ssh">): string {
  if (vm.ssh?.alias) return vm.ssh.alias;
  const base = `${vm.name || vm.id}`.replace(/[^A-Za-z0-9._-]+/g, "-").replace(/^-+|-+$/g, "") || "vm";
  return `gpuwb-${vm.provider}-${base}`;
}

/** The managed ssh config text: one Host entry per machine with an SSH target. */
export function sshConfigText(vms: VmInfo[]): string {
  const lines = [
    "# Managed by GPU Workbench: rewritten whenever the GPU Machines view refreshes.",
    "# Edits here are lost; add your own Host entries to ~/.ssh/config instead.",
    "",
  ];
  const seen = new Set<string>();
  for (const vm of vms) {
    if (!vm.ssh || vm.state === "terminated") continue;
    const alias = sshAlias(vm);
    if (seen.has(alias)) continue;
    seen.add(alias);
    lines.push(`Host ${alias}`);
    lines.push(`  HostName ${vm.ssh.host}`);
    if (vm.ssh.port && vm.ssh.port !== 22) lines.push(`  Port ${vm.ssh.port}`);
    if (vm.ssh.user) lines.push(`  User ${vm.ssh.user}`);
    if (vm.ssh.identityFile) lines.push(`  IdentityFile ${quoteSsh(vm.ssh.identityFile)}`);
    lines.push("");
  }
  return `${lines.join("\n")}\n`;
}

export function quoteSsh(p: string): string {
  return /\s/.test(p) ? `"${p}"` : p;
}

/** ssh arguments that reach a machine without any config file. */
export function sshArgs(vm: VmInfo): string[] {
  const t = vm.ssh;
  if (!t) return [];
  const args: string[] = [];
  if (t.port && t.port !== 22) args.push("-p", String(t.port));
  if (t.identityFile) args.push("-i", t.identityFile);
  args.push(t.user ? `${t.user}@${t.host}` : t.host);
  return args;
}

/** The machine a kernel runs on, as a machine key: "provider/id"; "local/local" for this one. */
export function kernelMachineKey(k: Pick<KernelInfo, "machine">): string {
  return k.machine || "local/local";
}

/** Whether a kernel is still there to show (dead and exited ones are not). */
export function kernelLive(k: Pick<KernelInfo, "state">): boolean {
  return k.state !== "dead" && k.state !== "exited";
}

/**
 * A kernel row under its machine: ["quickstart.py", "busy · 2 queued · Python 3.12.1 · pid 4242"].
 * The name is the file or notebook it was started for (else its id).
 */
export function kernelRowText(
  k: Pick<KernelInfo, "kernelId" | "name" | "state" | "queue" | "pythonVersion" | "pid">,
): [string, string] {
  const parts: string[] = [k.state];
  if (k.queue.length) parts.push(`${k.queue.length} queued`);
  if (k.pythonVersion) parts.push(`Python ${k.pythonVersion}`);
  if (k.pid) parts.push(`pid ${k.pid}`);
  return [k.name || k.kernelId, parts.join(" · ")];
}

/** Idle-warning actions that report what was done (the others announce what will be). */
export const DONE_ACTIONS = new Set(["stopped", "terminated"]);

/** The idle warning's text: before acting, or once done (`action` "stopped"/"terminated"). */
export function idleWarningText(
  p: Pick<VmIdleWarningParams, "name" | "action" | "actAt">,
  nowMs: number,
  pricePerHour?: number | null,
  idleMinutes?: number,
): string {
  if (DONE_ACTIONS.has(p.action)) {
    const after = idleMinutes ? ` after ${idleMinutes} idle minute${idleMinutes === 1 ? "" : "s"}` : " while idle";
    return `${p.name} was ${p.action}${after}.`;
  }
  const actAtMs = p.actAt > 1e12 ? p.actAt : p.actAt * 1000;
  const minutes = Math.max(1, Math.round((actAtMs - nowMs) / 60_000));
  const when = `in ${minutes} minute${minutes === 1 ? "" : "s"}`;
  if (p.action === "stop" || p.action === "terminate")
    return `${p.name} will be ${p.action === "stop" ? "stopped" : "terminated"} ${when} because it is idle.`;
  return `${p.name} is idle and still costs ${rate(pricePerHour)}; it is not stopped automatically.`;
}
