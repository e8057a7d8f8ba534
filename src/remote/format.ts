/**
 * Pure helpers of remote execution (no `vscode`, unit-tested): kernel target strings,
 * remote kernel ids, labels of machines, interpreters, forwards, syncs and autostop.
 */
import type { RemoteAutostopInfo, RemoteForward, RemoteInterpreter, RemoteMachine, RemoteState } from "../protocol";

/** Where a document's kernel runs: this machine, or an interpreter of a connected machine. */
export type KernelTarget = { kind: "local" } | { kind: "remote"; machine: string; python: string };

const REMOTE_PREFIX = "remote:";

/** `remote:<provider>/<id>:<python path>` (the python path may be empty: the agent's). */
export function remoteTarget(machine: string, python: string): string {
  return `${REMOTE_PREFIX}${machine}:${python}`;
}

/** Parse a Binding.target; anything unknown is local. */
export function parseTarget(target: string | undefined): KernelTarget {
  if (!target?.startsWith(REMOTE_PREFIX)) return { kind: "local" };
  const rest = target.slice(REMOTE_PREFIX.length);
  const slash = rest.indexOf("/");
  if (slash <= 0) return { kind: "local" };
  const colon = rest.indexOf(":", slash);
  const machine = colon < 0 ? rest : rest.slice(0, colon);
  const python = colon < 0 ? "" : rest.slice(colon + 1);
  if (machine.length <= slash + 1) return { kind: "local" };
  return { kind: "remote", machine, python };
}

/** The machine ("provider/id") of a remote kernel id `<remoteId>@<provider>/<id>`, else undefined. */
export function parseKernelId(kernelId: string): { remoteId: string; machine: string } | undefined {
  const at = kernelId.indexOf("@");
  if (at <= 0) return undefined;
  const machine = kernelId.slice(at + 1);
  const slash = machine.indexOf("/");
  if (slash <= 0 || slash === machine.length - 1) return undefined;
  return { remoteId: kernelId.slice(0, at), machine };
}

/** "provider/id" → {provider, id}. */
export function splitMachine(machine: string): { provider: string; id: string } {
  const slash = machine.indexOf("/");
  return slash < 0
    ? { provider: machine, id: "" }
    : { provider: machine.slice(0, slash), id: machine.slice(slash + 1) };
}

/** "conda-torch (3.11.4, torch)". */
export function interpreterText(i: RemoteInterpreter): string {
  const extras = [i.version, i.hasTorch ? "torch" : ""].filter(Boolean);
  return `${i.name || i.path}${extras.length ? ` (${extras.join(", ")})` : ""}`;
}

/** "Remote: a100-box / conda-torch (3.11.4, torch)". */
export function remoteTargetLabel(machineName: string, i: RemoteInterpreter | undefined, python = ""): string {
  return `Remote: ${machineName} / ${i ? interpreterText(i) : python || "default Python"}`;
}

/** The interpreter a target names, or the machine's default (the agent's Python, else the first). */
export function interpreterFor(m: RemoteMachine, python: string): RemoteInterpreter | undefined {
  if (python) return m.interpreters.find((i) => i.path === python);
  return m.interpreters.find((i) => i.path === m.agentPython) ?? m.interpreters[0];
}

/** The folder a workspace folder is synced to, and remote kernels run in. */
export function remoteWorkspacePath(folderName: string): string {
  const safe = folderName.replace(/[/\\]+/g, "-").trim() || "workspace";
  return `~/gpu-workbench/${safe}`;
}

export function stateText(state: RemoteState): string {
  switch (state) {
    case "connected":
      return "connected ✓";
    case "connecting":
      return "connecting…";
    case "reconnecting":
      return "reconnecting…";
    case "failed":
      return "connection failed";
    default:
      return "disconnected";
  }
}

/** Codicon id (and theme colour) for a connection state. */
export function stateIconOf(state: RemoteState): { id: string; color?: string } {
  switch (state) {
    case "connected":
      return { id: "vm-active", color: "testing.iconPassed" };
    case "connecting":
    case "reconnecting":
      return { id: "sync~spin" };
    case "failed":
      return { id: "error", color: "errorForeground" };
    default:
      return { id: "vm-outline" };
  }
}

/** The status bar text: "$(remote) a100-box ✓", "$(sync~spin) reconnecting…". */
export function statusBarText(m: Pick<RemoteMachine, "name" | "state">): string {
  switch (m.state) {
    case "connected":
      return `$(remote) ${m.name} ✓`;
    case "connecting":
      return `$(sync~spin) ${m.name} connecting…`;
    case "reconnecting":
      return "$(sync~spin) reconnecting…";
    case "failed":
      return `$(error) ${m.name} failed`;
    default:
      return `$(debug-disconnect) ${m.name}`;
  }
}

/** "localhost:6006 → 6006". */
export function forwardText(f: RemoteForward): string {
  return `localhost:${f.localPort} → ${f.remotePort}`;
}

export function bytesText(n: number): string {
  if (!Number.isFinite(n) || n < 0) return "? B";
  if (n < 1024) return `${n} B`;
  const units = ["KB", "MB", "GB", "TB"];
  let v = n / 1024;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return `${v < 10 ? v.toFixed(1) : Math.round(v)} ${units[u]}`;
}

/** "Send 12 files (3.4 MB) to a100-box:~/gpu-workbench/proj?" */
export function syncQuestion(files: number, bytes: number, machineName: string, remotePath: string): string {
  return `Send ${files} file${files === 1 ? "" : "s"} (${bytesText(bytes)}) to ${machineName}:${remotePath}?`;
}

/** Autostop countdown: "stops in 42 min (idle since 10:03)", "stops after 60 idle minutes". */
export function autostopText(info: RemoteAutostopInfo | undefined, nowMs = Date.now()): string {
  if (!info) return "";
  if (!info.running) return `autostop off${info.reason ? ` (${info.reason})` : ""}`;
  if (info.actAt) {
    const atMs = info.actAt > 1e12 ? info.actAt : info.actAt * 1000;
    const min = Math.round((atMs - nowMs) / 60_000);
    const when = min >= 1 ? `in ${min} min` : "within a minute";
    return `stops ${when} if still idle${info.reason ? ` (${info.reason})` : ""}`;
  }
  return `stops after ${info.idleMinutes} idle minutes${info.reason ? ` (${info.reason})` : ""}`;
}
