/**
 * The one context object: config, logger, backend and status items, and the
 * disposables that live as long as the extension.
 */
import type * as vscode from "vscode";
import { BackendManager } from "./backend/manager";
import { BackendStatusItem } from "./backend/statusItem";
import { KernelBindings } from "./cells/bindings";
import { ExecutionStore } from "./cells/executions";
import { Config } from "./config";
import { KernelService } from "./kernels/service";
import { Logger } from "./log";

export class Ctx implements vscode.Disposable {
  readonly config = new Config();
  readonly log = new Logger();
  readonly backend: BackendManager;
  readonly backendItem: BackendStatusItem;
  readonly kernels: KernelService;
  readonly executions: ExecutionStore;
  readonly bindings: KernelBindings;
  /** Disposed when the extension deactivates. */
  readonly subscriptions: vscode.Disposable[] = [];

  constructor(readonly extension: vscode.ExtensionContext) {
    this.backend = new BackendManager(extension.extensionPath, this.config, this.log);
    this.backendItem = new BackendStatusItem(this.backend);
    this.kernels = new KernelService(this.backend, this.config, this.log, extension.workspaceState);
    this.executions = new ExecutionStore(extension.workspaceState, this.kernels.onDidReceiveEvent);
    this.kernels.setDurableFloor((kernelId) => this.executions.durableSeq(kernelId));
    this.bindings = new KernelBindings(this.kernels, extension.workspaceState);
    // Documents' kernels are saved before their first run: after a reload, follow each from
    // where the saved results end, so output produced meanwhile is replayed.
    for (const id of this.bindings.kernelIds()) this.kernels.follow(id, this.executions.durableSeq(id) ?? 0);
    // So are the kernels of runs saved unfinished: in the browser a reload can lose the
    // newest state writes, and a run must not stay "queued" because its kernel was forgotten.
    for (const r of this.executions.all()) {
      if (r.status === "queued" || r.status === "running") {
        this.kernels.follow(r.kernelId, this.executions.durableSeq(r.kernelId) ?? 0);
      }
    }
    this.subscriptions.push(this.bindings, this.executions, this.kernels, this.backendItem, this.backend, this.log);
  }

  dispose(): void {
    for (const d of this.subscriptions.splice(0).reverse()) d.dispose();
  }
}
