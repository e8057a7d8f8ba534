/**
 * What this window knows of remote machines: their connection (remote/state notifications
 * and remote/list), the autostop rule sent to each, and the flows that talk to the backend:
 * connect (asking once about an unknown host key), disconnect, sync, forward, autostop.
 * One per extension context (`remoteOf`), shared by the GPU Machines view, the kernel target
 * picker and the document bindings.
 */
import * as vscode from "vscode";
import type { LanguageClient } from "vscode-languageclient/node";
import { type CallOptions, CheckpointCallError, callCheckpoint } from "../checkpoints/backendCall";
import type { Ctx } from "../ctx";
import * as proto from "../protocol";
import type { CredentialStore } from "../vms/credentials";
import { vmKey } from "../vms/format";
import { confirm, notify } from "../vms/prompts";
import { NO_AUTOSTOP_PROVIDERS, vmSettings } from "../vms/settings";
import { parseKernelId, remoteWorkspacePath, splitMachine, syncQuestion } from "./format";

/** How often a connected machine's autostop countdown is read from its watchdog. */
const AUTOSTOP_POLL_MS = 20_000;
/** The warning with "Keep Running" comes this long before the watchdog acts. */
const AUTOSTOP_WARN_MS = 120_000;

/**
 * The idle rule for a machine: the `autostopMinutes` setting for cloud machines; for an SSH
 * host only when its entry in `gpuWorkbench.vms.ssh.hosts` opts in with `autostopMinutes`
 * (and, optionally, its own `autostopCommand`): it is the user's own box. Only the user's
 * own (global) settings can do that: a workspace must not make a machine run a command or
 * shut down.
 */
export function autostopRule(vm: proto.VmInfo): { minutes: number; command?: string } | undefined {
  if (vm.provider === "ssh") {
    const hosts = vscode.workspace.getConfiguration("gpuWorkbench.vms").inspect<unknown>("ssh.hosts")?.globalValue;
    const entry = Array.isArray(hosts)
      ? (hosts as unknown[]).find(
          (h): h is Record<string, unknown> =>
            typeof h === "object" && h !== null && (h as { name?: unknown }).name === vm.id,
        )
      : undefined;
    const minutes = entry?.autostopMinutes;
    if (typeof minutes !== "number" || !Number.isFinite(minutes) || minutes <= 0) return undefined;
    const command = typeof entry?.autostopCommand === "string" && entry.autostopCommand.trim();
    return { minutes: Math.ceil(minutes), ...(command ? { command } : {}) };
  }
  const minutes = vmSettings.autostopMinutes;
  if (NO_AUTOSTOP_PROVIDERS.has(vm.provider) || minutes <= 0) return undefined;
  return { minutes };
}

/** What the remote flows need of the GPU Machines model (set by VmModel itself). */
export interface MachineSource {
  readonly vms: proto.VmInfo[];
  readonly loaded: boolean;
  readonly creds: CredentialStore;
  refresh(): Promise<void>;
  find(provider: string, id: string): proto.VmInfo | undefined;
}

/** A remote call that failed: the backend's message, hint and error kind. */
export class RemoteError extends Error {
  constructor(
    message: string,
    readonly kind: string | null,
    readonly hint: string | null = null,
    readonly cancelled = false,
  ) {
    super(message);
    this.name = "RemoteError";
  }
}

const models = new WeakMap<Ctx, RemoteModel>();

/** The context's remote model (made on first use). */
export function remoteOf(ctx: Ctx): RemoteModel {
  let m = models.get(ctx);
  if (!m) {
    m = new RemoteModel(ctx);
    models.set(ctx, m);
    ctx.subscriptions.push(m);
  }
  return m;
}

/**
 * Whether a machine can be connected to: running, with an SSH target, not this computer.
 * An SSH host's state is only what its probe saw ("unknown" when the probe failed): trying
 * to connect is how the user learns why, so it is offered too.
 */
export function canConnect(vm: proto.VmInfo): boolean {
  if (!vm.ssh || vm.provider === "local") return false;
  return vm.state === "running" || (vm.provider === "ssh" && vm.state === "unknown");
}

export class RemoteModel implements vscode.Disposable {
  private readonly changed = new vscode.EventEmitter<string | undefined>();
  /** Fires with the machine ("provider/id") whose record changed, or undefined for all. */
  readonly onDidChange = this.changed.event;
  private readonly machines = new Map<string, proto.RemoteMachine>();
  private readonly autostops = new Map<string, proto.RemoteAutostopInfo>();
  /** The last error of a flow per machine (for tests and tooltips). */
  readonly errors = new Map<string, string>();
  /** Every flow event, for the hidden test command. */
  readonly log: string[] = [];
  private readonly clients = new WeakSet<LanguageClient>();
  private readonly connecting = new Map<string, Promise<proto.RemoteMachine | undefined>>();
  private readonly subs: vscode.Disposable[] = [this.changed];
  /** The actAt each machine was last warned about ("Keep Running"), so it is warned once. */
  private readonly warnedAt = new Map<string, number>();
  private readonly poll: NodeJS.Timeout;
  vms: MachineSource | undefined;

  constructor(private readonly ctx: Ctx) {
    this.subs.push(ctx.backend.onDidChangeState((s) => s === "ready" && this.listen()));
    this.listen();
    this.poll = setInterval(() => void this.refreshAutostops(), AUTOSTOP_POLL_MS);
  }

  private listen(): void {
    const client = this.ctx.backend.client;
    if (!client) return;
    if (!this.clients.has(client)) {
      this.clients.add(client);
      client.onNotification(proto.remoteState, (m) => this.put(m));
    }
    void this.refresh().then(() => this.restore());
  }

  /**
   * After a window reload or backend restart the backend has no connections, while
   * documents are still bound to kernels running on machines: connect those machines again
   * (without prompts: a host key not trusted yet waits for the user) and re-attach their
   * kernels from the last seq this window has, so what ran meanwhile is replayed.
   */
  private async restore(): Promise<void> {
    const byMachine = new Map<string, Set<string>>();
    const add = (kernelId: string) => {
      const k = parseKernelId(kernelId);
      if (!k) return;
      const set = byMachine.get(k.machine) ?? new Set<string>();
      set.add(kernelId);
      byMachine.set(k.machine, set);
    };
    for (const id of this.ctx.bindings.kernelIds()) add(id);
    for (const r of this.ctx.executions.all()) if (r.status === "queued" || r.status === "running") add(r.kernelId);
    for (const [machine, kernels] of byMachine) {
      const known = this.machines.get(machine)?.state;
      if (known === "connected" || known === "reconnecting" || known === "connecting") continue;
      const { provider, id } = splitMachine(machine);
      if (this.vms && !this.vms.loaded) await this.vms.refresh().catch(() => undefined);
      const vm = this.vms?.find(provider, id);
      if (!vm || !canConnect(vm)) continue;
      try {
        const m = await this.connect(vm, undefined, true);
        if (!m) continue;
        for (const kernelId of kernels) {
          await this.ctx.kernels.attach(kernelId, this.ctx.kernels.lastSeq(kernelId) ?? 0).catch((err) => {
            this.ctx.log.warn(`Could not re-attach to ${kernelId}: ${String(err)}`);
          });
        }
        this.log.push(`${machine}: restored ${kernels.size} kernel(s)`);
      } catch (err) {
        this.ctx.log.info(`Not reconnecting ${machine} after the restart: ${String(err)}`);
      }
    }
  }

  /** Ask the backend for every connection (after a backend restart all are gone). */
  async refresh(): Promise<void> {
    const client = this.ctx.backend.client;
    if (!client) return;
    try {
      const r = await client.sendRequest(proto.remoteList, {});
      this.machines.clear();
      for (const m of r.machines) this.machines.set(m.machine, m);
      this.changed.fire(undefined);
    } catch (err) {
      this.ctx.log.debug(`remote/list failed: ${String(err)}`);
    }
  }

  private put(m: proto.RemoteMachine): void {
    const before = this.machines.get(m.machine)?.state;
    this.machines.set(m.machine, m);
    if (before !== m.state) {
      this.log.push(`${m.machine}: ${m.state}${m.message ? ` (${m.message})` : ""}`);
      this.ctx.log.info(`Remote ${m.machine}: ${m.state}${m.message ? ` — ${m.message}` : ""}`);
    }
    if (m.state === "connected") this.errors.delete(m.machine);
    this.changed.fire(m.machine);
  }

  get(machine: string): proto.RemoteMachine | undefined {
    return this.machines.get(machine);
  }

  all(): proto.RemoteMachine[] {
    return [...this.machines.values()];
  }

  connected(): proto.RemoteMachine[] {
    return this.all().filter((m) => m.state === "connected" || m.state === "reconnecting");
  }

  autostop(machine: string): proto.RemoteAutostopInfo | undefined {
    return this.autostops.get(machine);
  }

  /** The machine's display name: the remote record's, the VM's, else "provider/id". */
  nameOf(machine: string): string {
    const r = this.machines.get(machine);
    if (r?.name) return r.name;
    const { provider, id } = splitMachine(machine);
    const vm = this.vms?.find(provider, id);
    return vm?.name || machine;
  }

  private async call<P extends object, R>(
    type: import("vscode-jsonrpc").RequestType<P, R, void>,
    params: P,
    opts: CallOptions,
  ): Promise<R> {
    try {
      return await callCheckpoint(this.ctx, type, params, opts);
    } catch (err) {
      if (err instanceof CheckpointCallError) {
        const e = new RemoteError(err.message, err.kind, err.hint, err.cancelled);
        (e as RemoteError & { detail?: string | null }).detail = err.detail;
        throw e;
      }
      throw err;
    }
  }

  // ---- connect -----------------------------------------------------------------------

  /**
   * Connect to a machine (shared while in flight). An unknown host key is asked about once
   * (modal); a changed one is an error. Returns undefined when the user declined; throws
   * RemoteError on failure. Sends the autostop rule on success.
   */
  connect(vm: proto.VmInfo, python?: string, quiet = false): Promise<proto.RemoteMachine | undefined> {
    const key = vmKey(vm);
    const known = this.machines.get(key);
    if (known?.state === "connected") return Promise.resolve(known);
    let p = this.connecting.get(key);
    if (!p) {
      p = this.doConnect(vm, python, quiet).finally(() => this.connecting.delete(key));
      this.connecting.set(key, p);
    }
    return p;
  }

  private async doConnect(vm: proto.VmInfo, python?: string, quiet = false): Promise<proto.RemoteMachine | undefined> {
    const key = vmKey(vm);
    const host = vm.ssh ? `${vm.ssh.host}${vm.ssh.port && vm.ssh.port !== 22 ? `:${vm.ssh.port}` : ""}` : vm.name;
    const params = async (): Promise<proto.RemoteConnectParams> => ({
      provider: vm.provider,
      id: vm.id,
      ...(python ? { python } : {}),
      ...(this.vms ? { credentials: await this.vms.creds.all() } : {}),
    });
    const opts: CallOptions = quiet
      ? { title: `Reconnecting to ${vm.name || vm.id}`, progress: "window" }
      : { title: `Connecting to ${vm.name || vm.id}`, progress: "notification", delayMs: 300 };
    this.log.push(`${key}: connect`);
    let m: proto.RemoteMachine;
    try {
      try {
        m = await this.call(proto.remoteConnect, await params(), opts);
      } catch (err) {
        if (!(err instanceof RemoteError) || err.kind !== "HostKeyUnknown" || quiet) throw err;
        const fingerprint = (err as RemoteError & { detail?: string | null }).detail ?? "";
        this.log.push(`${key}: host key unknown ${fingerprint}`);
        const ok = await confirm(
          `Trust the SSH host key of ${host}? ${fingerprint}`,
          `The key of ${vm.name || vm.id} is not in known_hosts yet. Compare the fingerprint with the one the provider or the machine's owner shows before you trust it; it is then added to known_hosts.`,
          "Trust",
        );
        if (ok !== "Trust") {
          this.log.push(`${key}: host key declined`);
          return undefined;
        }
        await this.call(proto.remoteTrustHost, { machine: key, fingerprint }, { ...opts, progress: "none" });
        this.log.push(`${key}: host key trusted`);
        m = await this.call(proto.remoteConnect, await params(), opts);
      }
    } catch (err) {
      const msg = err instanceof Error ? err.message : String(err);
      this.errors.set(key, msg);
      this.log.push(`${key}: connect failed: ${msg}`);
      this.changed.fire(key);
      throw err;
    }
    this.put(m);
    await this.sendAutostop(vm);
    return m;
  }

  /** Send the idle rule to the machine's agent, so it stops itself even with no one connected. */
  async sendAutostop(vm: proto.VmInfo): Promise<proto.RemoteAutostopInfo | undefined> {
    const rule = autostopRule(vm);
    if (!rule) return undefined;
    const key = vmKey(vm);
    try {
      const info = await this.call(
        proto.remoteAutostop,
        {
          machine: key,
          idleMinutes: rule.minutes,
          gpuThreshold: vmSettings.autostopGpuThreshold,
          ...(rule.command ? { command: rule.command } : {}),
        },
        { title: "Setting up autostop", progress: "none" },
      );
      this.autostops.set(key, info);
      this.log.push(`${key}: autostop after ${rule.minutes} idle minute(s)`);
      this.changed.fire(key);
      this.warnIfDue(key, info);
      return info;
    } catch (err) {
      this.ctx.log.warn(`Could not set autostop on ${key}: ${err instanceof Error ? err.message : String(err)}`);
      return undefined;
    }
  }

  /**
   * Read the countdown of every connected machine with autostop from its watchdog (the
   * tree, the status item) and warn once, with "Keep Running", shortly before it acts.
   */
  async refreshAutostops(): Promise<void> {
    const client = this.ctx.backend.client;
    if (!client) return;
    for (const machine of [...this.autostops.keys()]) {
      if (this.machines.get(machine)?.state !== "connected") continue;
      try {
        const info = await client.sendRequest(proto.remoteAutostopInfo, { machine });
        if (!this.autostops.has(machine)) continue; // disconnected meanwhile
        this.autostops.set(machine, info);
        this.changed.fire(machine);
        this.warnIfDue(machine, info);
      } catch (err) {
        this.ctx.log.debug(`remote/autostopInfo ${machine}: ${String(err)}`);
      }
    }
  }

  private warnIfDue(machine: string, info: proto.RemoteAutostopInfo): void {
    if (!info.running || info.actAt == null) return;
    const atMs = info.actAt * 1000;
    if (atMs - Date.now() > AUTOSTOP_WARN_MS || this.warnedAt.get(machine) === info.actAt) return;
    this.warnedAt.set(machine, info.actAt);
    const name = this.nameOf(machine);
    const mins = Math.max(0, Math.round((atMs - Date.now()) / 60_000));
    const when = mins <= 0 ? "in less than a minute" : `in ${mins} minute${mins === 1 ? "" : "s"}`;
    const msg = `${name} has been idle and stops itself ${when} (no kernel busy, GPUs idle).`;
    this.log.push(`${machine}: autostop warning`);
    void notify(msg, "Keep Running").then(async (choice) => {
      if (choice !== "Keep Running") return;
      const { provider, id } = splitMachine(machine);
      const vm = this.vms?.find(provider, id);
      // Sending the rule again starts a fresh watchdog: the idle time counts from now.
      const fresh = vm ? await this.sendAutostop(vm) : undefined;
      this.log.push(`${machine}: keep running${fresh?.running ? "" : " failed"}`);
    });
  }

  async disconnect(machine: string): Promise<proto.RemoteMachine> {
    const m = await this.call(
      proto.remoteDisconnect,
      { machine },
      { title: `Disconnecting ${this.nameOf(machine)}`, progress: "window" },
    );
    this.put(m);
    this.autostops.delete(machine);
    this.warnedAt.delete(machine);
    return m;
  }

  // ---- sync --------------------------------------------------------------------------

  /**
   * Sync a workspace folder to `~/gpu-workbench/<folder name>` on the machine. With `ask`:
   * a dry run first and a modal "Send N files (X MB)…?" (with Show Files). Returns the real
   * sync's result, or undefined when declined or cancelled.
   */
  async sync(
    machine: string,
    folder: vscode.WorkspaceFolder,
    ask: boolean,
  ): Promise<proto.RemoteSyncResult | undefined> {
    const name = this.nameOf(machine);
    const base: proto.RemoteSyncParams = {
      machine,
      localPath: folder.uri.fsPath,
      remotePath: remoteWorkspacePath(folder.name),
      maxBytes: Math.round(syncMaxMegabytes() * 1024 * 1024),
    };
    if (ask) {
      const dry = await this.call(
        proto.remoteSync,
        { ...base, dryRun: true },
        { title: `Listing what to send to ${name}`, progress: "notification", delayMs: 500 },
      );
      for (;;) {
        const choice = await confirm(
          syncQuestion(dry.files, dry.bytes, name, dry.remotePath),
          `From ${dry.localPath} (respecting .gitignore, by ${dry.method}).`,
          "Send",
          "Show Files",
        );
        if (choice === "Show Files") {
          const more = dry.files > dry.sample.length ? `\n… and ${dry.files - dry.sample.length} more` : "";
          const doc = await vscode.workspace.openTextDocument({
            content: `${dry.sample.join("\n")}${more}\n`,
            language: "plaintext",
          });
          await vscode.window.showTextDocument(doc, { preview: true });
          continue;
        }
        if (choice !== "Send") {
          this.log.push(`${machine}: sync declined`);
          return undefined;
        }
        break;
      }
    }
    const r = await this.call(proto.remoteSync, base, {
      title: `Syncing ${folder.name} to ${name}`,
      progress: "notification",
      delayMs: ask ? 0 : 300,
    });
    this.log.push(`${machine}: synced ${r.files} files to ${r.remotePath}`);
    return r;
  }

  // ---- tunnels -----------------------------------------------------------------------

  async forward(machine: string, remotePort: number, localPort?: number): Promise<proto.RemoteMachine> {
    const m = await this.call(
      proto.remoteForward,
      { machine, remotePort, ...(localPort ? { localPort } : {}) },
      { title: `Forwarding port ${remotePort} of ${this.nameOf(machine)}`, progress: "window" },
    );
    this.put(m);
    return m;
  }

  async unforward(machine: string, localPort: number): Promise<proto.RemoteMachine> {
    const m = await this.call(
      proto.remoteUnforward,
      { machine, localPort },
      { title: `Stopping forwarding of localhost:${localPort}`, progress: "window" },
    );
    this.put(m);
    return m;
  }

  dispose(): void {
    clearInterval(this.poll);
    for (const d of this.subs) d.dispose();
  }
}

export function syncMaxMegabytes(): number {
  const v = vscode.workspace.getConfiguration("gpuWorkbench.remote").get<unknown>("syncMaxMegabytes", 500);
  return typeof v === "number" && Number.isFinite(v) && v > 0 ? v : 500;
}

export function syncBeforeRun(): boolean {
  return vscode.workspace.getConfiguration("gpuWorkbench.remote").get<boolean>("syncBeforeRun", false) === true;
}
