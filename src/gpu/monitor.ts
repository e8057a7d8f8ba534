/**
 * The extension's view of the backend's GPU sampler, for this machine and for every
 * connected remote machine (whose agent samples its GPUs): who watches which machine (the
 * status item, the panel, the GPU Machines view) is told to the backend with `gpu/watch`,
 * so nothing is polled while no one looks; every `gpu/sample` is kept per machine and passed
 * on; watches are sent again after a backend (re)start, and a machine's when it (re)connects;
 * a machine that disconnects loses its snapshot; and a GPU (or a machine) turning critical is
 * notified once per transition, naming the machine.
 *
 * Machines are keyed "" (this machine) or "provider/id" (a connected one).
 */
import * as vscode from "vscode";
import type { LanguageClient } from "vscode-languageclient/node";
import type { Ctx } from "../ctx";
import * as proto from "../protocol";
import { remoteOf } from "../remote/model";
import { criticalMessage, machineKeyOf, newCriticals, watchKey } from "./format";

/** JSON-RPC "method not found": a backend without GPU health. */
const METHOD_NOT_FOUND = -32601;

interface Watch {
  watcher: string;
  machine: string;
}

export class GpuMonitor implements vscode.Disposable {
  private readonly changeEmitter = new vscode.EventEmitter<void>();
  /** A snapshot, an error, the watchers or the connected machines changed. */
  readonly onDidChange = this.changeEmitter.event;
  private readonly sampleEmitter = new vscode.EventEmitter<proto.GpuSnapshot>();
  /** Every snapshot received (watch answers and `gpu/sample` notifications), of any machine. */
  readonly onSample = this.sampleEmitter.event;

  /** By watchKey(watcher, machine). */
  private readonly watches = new Map<string, Watch>();
  private readonly subs: vscode.Disposable[] = [this.changeEmitter, this.sampleEmitter];
  private client: LanguageClient | undefined;
  private readonly critical = new Map<string, Set<string>>();
  private readonly snapshots = new Map<string, proto.GpuSnapshot>();
  private readonly errors = new Map<string, string>();
  /** Remote machines that were connected when last looked at (to see them (re)connect). */
  private readonly live = new Set<string>();
  private _unsupported = false;
  /** Critical notifications shown (for tests; drained by the test command). */
  readonly notified: string[] = [];

  constructor(private readonly ctx: Ctx) {
    const remote = remoteOf(ctx);
    this.subs.push(
      ctx.backend.onDidChangeState((s) => {
        if (s === "ready") this.attach();
        else this.live.clear(); // a restarted backend has no connections: wait for the remote model
        if (s === "error" || s === "stopped") this.changeEmitter.fire();
      }),
      remote.onDidChange(() => this.syncMachines()),
    );
    this.syncMachines();
    if (ctx.backend.state === "ready") this.attach();
  }

  /** This machine's snapshot. */
  get snapshot(): proto.GpuSnapshot | undefined {
    return this.snapshots.get("");
  }
  /** Why the last request for this machine failed, if it did. */
  get error(): string | undefined {
    return this.errors.get("");
  }
  /** The latest snapshot of a machine ("" here, "provider/id" a connected one). */
  snapshotOf(machine: string): proto.GpuSnapshot | undefined {
    return this.snapshots.get(machine);
  }
  /** Why the last request for a machine failed, if it did. */
  errorOf(machine: string): string | undefined {
    return this.errors.get(machine);
  }
  /** The backend has no `gpu/*` methods. */
  get unsupported(): boolean {
    return this._unsupported;
  }
  /** "statusBar", "panel@ssh/box", … sorted. */
  get activeWatchers(): string[] {
    return [...this.watches.keys()].sort();
  }
  /** The running client, if the backend is ready. */
  get readyClient(): LanguageClient | undefined {
    return this.ctx.backend.client;
  }

  /** Whether a machine can be asked now: this one, or a remote one that is connected. */
  isLive(machine: string): boolean {
    return !machine || this.live.has(machine);
  }

  /** The name to show for a machine: undefined for this one, the remote record's name else. */
  nameOf(machine: string): string | undefined {
    return machine ? remoteOf(this.ctx).nameOf(machine) : undefined;
  }

  /**
   * Start or stop watching `machine` ("" here) for `watcher`; the backend (or the machine's
   * agent) samples while anyone watches. A remote machine's watch is sent while it is connected.
   */
  setWatching(watcher: string, watching: boolean, machine = ""): void {
    const key = watchKey(watcher, machine);
    if (this.watches.has(key) === watching) return;
    if (watching) this.watches.set(key, { watcher, machine });
    else this.watches.delete(key);
    this.ctx.log.debug(`GPU watchers: ${this.activeWatchers.join(", ") || "none"}`);
    if (this.isLive(machine)) void this.sendWatch({ watcher, machine }, watching);
    this.changeEmitter.fire();
  }

  /** A fresh snapshot of a machine now (e.g. for the panel when it opens). */
  async refresh(machine = ""): Promise<proto.GpuSnapshot | undefined> {
    const client = this.readyClient;
    if (!client || !this.isLive(machine)) return this.snapshots.get(machine);
    try {
      const params: proto.GpuStatusParams = machine ? { fresh: true, machine } : { fresh: true };
      this.accept(await client.sendRequest(proto.gpuStatus, params), machine);
    } catch (err) {
      this.fail("gpu/status", err, machine);
    }
    return this.snapshots.get(machine);
  }

  /** A new client (or the same one restarted): listen for samples and send the watches again. */
  private attach(): void {
    const client = this.readyClient;
    if (!client) return;
    if (client !== this.client) {
      this.client = client;
      this.subs.push(client.onNotification(proto.gpuSample, (s) => this.onNotified(s)));
    }
    this._unsupported = false;
    // Remote machines are connected again (and their watches sent) when the remote model
    // says so: a restarted backend has no connections yet.
    for (const w of this.watches.values()) if (this.isLive(w.machine)) void this.sendWatch(w, true);
    this.changeEmitter.fire();
  }

  /** Follow the remote model: send a machine's watches when it connects, forget it when it goes. */
  private syncMachines(): void {
    const remote = remoteOf(this.ctx);
    const now = new Set(
      remote
        .all()
        .filter((m) => m.state === "connected")
        .map((m) => m.machine),
    );
    const kept = new Set(remote.connected().map((m) => m.machine)); // reconnecting keeps its data
    let changed = false;
    for (const machine of now) {
      if (this.live.has(machine)) continue;
      this.live.add(machine);
      changed = true;
      for (const w of this.watches.values()) if (w.machine === machine) void this.sendWatch(w, true);
    }
    for (const machine of [...this.live]) {
      if (now.has(machine)) continue;
      this.live.delete(machine);
      changed = true;
    }
    for (const machine of [...this.snapshots.keys(), ...this.errors.keys()]) {
      if (!machine || kept.has(machine)) continue;
      this.snapshots.delete(machine);
      this.errors.delete(machine);
      this.critical.delete(machine);
      changed = true;
    }
    if (changed) this.changeEmitter.fire();
  }

  private async sendWatch(w: Watch, watching: boolean): Promise<void> {
    const client = this.readyClient;
    if (!client) return; // sent again when the backend is ready
    const key = watchKey(w.watcher, w.machine);
    try {
      const params: proto.GpuWatchParams = { watcher: w.watcher, watching };
      if (w.machine) params.machine = w.machine;
      const snap = await client.sendRequest(proto.gpuWatch, params);
      // An answer to a watch that has ended since must not bring back a stale snapshot.
      if (watching && this.watches.has(key) && this.isLive(w.machine)) this.accept(snap, w.machine);
    } catch (err) {
      if (watching && this.isLive(w.machine)) this.fail("gpu/watch", err, w.machine);
      else this.ctx.log.debug(`gpu/watch ${key} ${watching ? "on" : "off"} failed: ${String(err)}`);
    }
  }

  private onNotified(snap: proto.GpuSnapshot): void {
    const machine = machineKeyOf(snap);
    const state = machine ? remoteOf(this.ctx).get(machine)?.state : undefined;
    if (machine && state !== "connected" && state !== "reconnecting") return; // disconnected since
    this.accept(snap, machine);
  }

  private accept(snap: proto.GpuSnapshot, machine: string): void {
    this.snapshots.set(machine, snap);
    this.errors.delete(machine);
    this._unsupported = false;
    this.sampleEmitter.fire(snap);
    this.changeEmitter.fire();
    let active = this.critical.get(machine);
    if (!active) {
      active = new Set<string>();
      this.critical.set(machine, active);
    }
    const fresh = newCriticals(active, snap);
    if (fresh.length) this.notifyCritical(criticalMessage(fresh, this.nameOf(machine) ?? snap.machine), machine);
  }

  private fail(what: string, err: unknown, machine: string): void {
    const code = (err as { code?: unknown })?.code;
    const message = err instanceof Error ? err.message : String(err);
    if (code === METHOD_NOT_FOUND && !machine) {
      this._unsupported = true;
      this.ctx.log.debug(`The backend does not serve ${what}: GPU health is off.`);
    } else {
      this.ctx.log.warn(`${what}${machine ? ` (${machine})` : ""} failed: ${message}`);
    }
    this.errors.set(machine, message);
    this.changeEmitter.fire();
  }

  private notifyCritical(message: string, machine: string): void {
    this.notified.push(message);
    this.ctx.log.warn(message);
    void vscode.window.showErrorMessage(message, "Show Details").then((c) => {
      if (c === "Show Details") void vscode.commands.executeCommand("gpuWorkbench.showGpuPanel", machine);
    });
  }

  dispose(): void {
    for (const w of [...this.watches.values()]) this.setWatching(w.watcher, false, w.machine);
    for (const d of this.subs.splice(0)) d.dispose();
  }
}
