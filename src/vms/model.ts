/**
 * What is known of the machines: providers (vm/providers) and machines (vm/list), refreshed
 * on demand and on an interval while the GPU Machines view is visible (or a machine is
 * running, so the cost in the status bar stays current).
 */
import * as vscode from "vscode";
import type { Ctx } from "../ctx";
import * as proto from "../protocol";
import { type RemoteModel, remoteOf } from "../remote/model";
import { callVm } from "./calls";
import type { CredentialStore } from "./credentials";
import { vmKey } from "./format";
import { vmSettings } from "./settings";

export class VmModel implements vscode.Disposable {
  private readonly changed = new vscode.EventEmitter<void>();
  readonly onDidChange = this.changed.event;
  providers: proto.VmProviderInfo[] = [];
  vms: proto.VmInfo[] = [];
  errors: proto.VmProviderError[] = [];
  /** Why the last refresh failed as a whole (backend down, method missing), else null. */
  failure: string | null = null;
  loaded = false;
  lastRefresh = 0;
  private inFlight: Promise<void> | undefined;
  private again: Promise<void> | undefined;
  private timer: NodeJS.Timeout | undefined;
  private viewVisible = false;
  private readonly subs: vscode.Disposable[] = [this.changed];
  /** Connections to these machines (remote execution); the remote flows list machines here. */
  readonly remote: RemoteModel;

  constructor(
    private readonly ctx: Ctx,
    readonly creds: CredentialStore,
  ) {
    this.remote = remoteOf(ctx);
    this.remote.vms = this;
    this.subs.push(
      ctx.backend.onDidChangeState((s) => s === "ready" && void this.refresh()),
      vscode.workspace.onDidChangeConfiguration((e) => {
        if (e.affectsConfiguration("gpuWorkbench.vms.refreshSeconds")) this.schedule();
        // Endpoints and hosts reach the backend through didChangeConfiguration; list again.
        if (e.affectsConfiguration("gpuWorkbench.vms")) setTimeout(() => void this.refresh(), 300);
      }),
    );
  }

  setViewVisible(visible: boolean): void {
    this.viewVisible = visible;
    if (visible && Date.now() - this.lastRefresh > 5000) void this.refresh();
    this.schedule();
  }

  /** Whether any machine is running (then the status bar keeps refreshing). */
  get anyRunning(): boolean {
    return this.vms.some((v) => v.state === "running" || v.state === "pending");
  }

  private schedule(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    if (!this.viewVisible && !this.anyRunning) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.refresh().finally(() => this.schedule());
    }, vmSettings.refreshSeconds * 1000);
  }

  /**
   * List again. A call during a refresh gets a new one after it (what changed meanwhile,
   * e.g. credentials, is seen); concurrent calls share one in flight and at most one queued.
   */
  refresh(): Promise<void> {
    if (this.inFlight) {
      this.again ??= this.inFlight.then(() => {
        this.again = undefined;
        return this.refresh();
      });
      return this.again;
    }
    this.inFlight = this.doRefresh().finally(() => {
      this.inFlight = undefined;
    });
    return this.inFlight;
  }

  private async doRefresh(): Promise<void> {
    if (!this.ctx.backend.client) return; // refreshed when the backend is ready
    try {
      const [p, l] = await Promise.all([
        callVm(this.ctx, this.creds, proto.vmProviders, {}, { title: "Listing providers", progress: "none" }),
        callVm(this.ctx, this.creds, proto.vmList, {}, { title: "Listing GPU machines", progress: "window" }),
      ]);
      this.providers = p.providers;
      this.vms = l.vms;
      this.errors = l.errors;
      this.failure = null;
    } catch (err) {
      this.failure = err instanceof Error ? err.message : String(err);
      this.ctx.log.warn(`Could not list GPU machines: ${this.failure}`);
    }
    this.loaded = true;
    this.lastRefresh = Date.now();
    this.changed.fire();
    this.schedule();
  }

  /** Put a machine record the backend returned (after start/stop/create) in place. */
  upsert(vm: proto.VmInfo): void {
    const i = this.vms.findIndex((v) => vmKey(v) === vmKey(vm));
    if (i >= 0) this.vms[i] = vm;
    else this.vms.push(vm);
    this.changed.fire();
    this.schedule();
  }

  find(provider: string, id: string): proto.VmInfo | undefined {
    return this.vms.find((v) => v.provider === provider && v.id === id);
  }

  provider(name: string): proto.VmProviderInfo | undefined {
    return this.providers.find((p) => p.name === name);
  }

  dispose(): void {
    if (this.timer) clearTimeout(this.timer);
    for (const d of this.subs) d.dispose();
  }
}
