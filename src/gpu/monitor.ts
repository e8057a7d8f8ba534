/**
 * The extension's view of the backend's GPU sampler: who watches (the status item, the
 * panel) is told to the backend with `gpu/watch`, so nothing is polled while no one looks;
 * every `gpu/sample` is passed on; active watches are sent again after a backend (re)start;
 * and a GPU (or the machine) turning critical is notified once per transition.
 */
import * as vscode from "vscode";
import type { LanguageClient } from "vscode-languageclient/node";
import type { Ctx } from "../ctx";
import * as proto from "../protocol";
import { criticalMessage, newCriticals } from "./format";

/** JSON-RPC "method not found": a backend without GPU health. */
const METHOD_NOT_FOUND = -32601;

export class GpuMonitor implements vscode.Disposable {
  private readonly changeEmitter = new vscode.EventEmitter<void>();
  /** The snapshot, the error or the watchers changed. */
  readonly onDidChange = this.changeEmitter.event;
  private readonly sampleEmitter = new vscode.EventEmitter<proto.GpuSnapshot>();
  /** Every snapshot received (watch answers and `gpu/sample` notifications). */
  readonly onSample = this.sampleEmitter.event;

  private readonly watchers = new Set<string>();
  private readonly subs: vscode.Disposable[] = [this.changeEmitter, this.sampleEmitter];
  private client: LanguageClient | undefined;
  private readonly critical = new Set<string>();
  private _snapshot: proto.GpuSnapshot | undefined;
  private _error: string | undefined;
  private _unsupported = false;
  /** Critical notifications shown (for tests; drained by the test command). */
  readonly notified: string[] = [];

  constructor(private readonly ctx: Ctx) {
    this.subs.push(
      ctx.backend.onDidChangeState((s) => {
        if (s === "ready") this.attach();
        else if (s === "error" || s === "stopped") this.changeEmitter.fire();
      }),
    );
    if (ctx.backend.state === "ready") this.attach();
  }

  get snapshot(): proto.GpuSnapshot | undefined {
    return this._snapshot;
  }
  /** Why the last request failed, if it did. */
  get error(): string | undefined {
    return this._error;
  }
  /** The backend has no `gpu/*` methods. */
  get unsupported(): boolean {
    return this._unsupported;
  }
  get activeWatchers(): string[] {
    return [...this.watchers].sort();
  }
  /** The running client, if the backend is ready. */
  get readyClient(): LanguageClient | undefined {
    return this.ctx.backend.client;
  }

  /** Start or stop watching for `watcher`; the backend samples while anyone watches. */
  setWatching(watcher: string, watching: boolean): void {
    const had = this.watchers.has(watcher);
    if (had === watching) return;
    if (watching) this.watchers.add(watcher);
    else this.watchers.delete(watcher);
    this.ctx.log.debug(`GPU watchers: ${this.activeWatchers.join(", ") || "none"}`);
    void this.sendWatch(watcher, watching);
    this.changeEmitter.fire();
  }

  /** A fresh snapshot now (e.g. for the panel when it opens). */
  async refresh(): Promise<proto.GpuSnapshot | undefined> {
    const client = this.readyClient;
    if (!client) return this._snapshot;
    try {
      this.accept(await client.sendRequest(proto.gpuStatus, { fresh: true }));
    } catch (err) {
      this.fail("gpu/status", err);
    }
    return this._snapshot;
  }

  /** A new client (or the same one restarted): listen for samples and send the watches again. */
  private attach(): void {
    const client = this.readyClient;
    if (!client) return;
    if (client !== this.client) {
      this.client = client;
      this.subs.push(client.onNotification(proto.gpuSample, (s) => this.accept(s)));
    }
    this._unsupported = false;
    for (const w of this.watchers) void this.sendWatch(w, true);
    this.changeEmitter.fire();
  }

  private async sendWatch(watcher: string, watching: boolean): Promise<void> {
    const client = this.readyClient;
    if (!client) return; // sent again when the backend is ready
    try {
      const snap = await client.sendRequest(proto.gpuWatch, { watcher, watching });
      // An answer to a watch that has ended since must not bring back a stale snapshot.
      if (watching && this.watchers.has(watcher)) this.accept(snap);
    } catch (err) {
      if (watching) this.fail("gpu/watch", err);
      else this.ctx.log.debug(`gpu/watch ${watcher} off failed: ${String(err)}`);
    }
  }

  private accept(snap: proto.GpuSnapshot): void {
    this._snapshot = snap;
    this._error = undefined;
    this._unsupported = false;
    this.sampleEmitter.fire(snap);
    this.changeEmitter.fire();
    const fresh = newCriticals(this.critical, snap);
    if (fresh.length) this.notifyCritical(criticalMessage(fresh));
  }

  private fail(what: string, err: unknown): void {
    const code = (err as { code?: unknown })?.code;
    const message = err instanceof Error ? err.message : String(err);
    if (code === METHOD_NOT_FOUND) {
      this._unsupported = true;
      this.ctx.log.debug(`The backend does not serve ${what}: GPU health is off.`);
    } else {
      this.ctx.log.warn(`${what} failed: ${message}`);
    }
    this._error = message;
    this.changeEmitter.fire();
  }

  private notifyCritical(message: string): void {
    this.notified.push(message);
    this.ctx.log.warn(message);
    void vscode.window.showErrorMessage(message, "Show Details").then((c) => {
      if (c === "Show Details") void vscode.commands.executeCommand("gpuWorkbench.showGpuPanel");
    });
  }

  dispose(): void {
    for (const w of [...this.watchers]) this.setWatching(w, false);
    for (const d of this.subs.splice(0)) d.dispose();
  }
}
