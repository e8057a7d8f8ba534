/**
 * Which kernel each document (a .py file or a notebook) runs on, kept across window
 * reloads. A document gets a kernel of its own on its first run, on the document's
 * kernel target: "local", or `remote:<provider>/<id>:<python path>` (a connected machine's
 * interpreter, started through the hooks src/remote sets). A document can be bound to a
 * target before it has a kernel (kernelId "").
 */
import * as vscode from "vscode";
import type { KernelService } from "../kernels/service";
import type * as proto from "../protocol";

const STATE_KEY = "gpuWorkbench.kernelBindings";

export interface Binding {
  /** The document's kernel; "" while it has a target but no kernel yet. */
  kernelId: string;
  /** The target the kernel runs on: "local" or "remote:<provider>/<id>:<python path>". */
  target: string;
}

/** How kernels on other targets are started (set by src/remote). */
export interface TargetHooks {
  /** Start a kernel for the document on a non-local target. */
  start(uri: vscode.Uri, target: string): Promise<proto.KernelInfo>;
  /** Before each run on a non-local target (e.g. sync the workspace); may throw to stop the run. */
  beforeRun?(uri: vscode.Uri, target: string): Promise<void>;
  /**
   * Make the target reachable before its kernels are listed (connect a machine the backend
   * is not connected to, e.g. after a reload); true when it had to connect now.
   */
  reach?(target: string): Promise<boolean>;
  /** Whether the target is coming back by itself (a machine reconnecting): keep its kernel. */
  recovering?(target: string): boolean;
}

export class KernelBindings implements vscode.Disposable {
  private readonly bindings: Map<string, Binding>;
  private readonly starting = new Map<string, Promise<string>>();
  private readonly emitter = new vscode.EventEmitter<string>();
  /** Fires with a document URI whose kernel changed. */
  readonly onDidChange = this.emitter.event;
  /** Starts kernels on remote targets; without it every document runs locally. */
  hooks: TargetHooks | undefined;

  constructor(
    private readonly kernels: KernelService,
    private readonly state: vscode.Memento,
  ) {
    this.bindings = new Map(Object.entries(state.get<Record<string, Binding>>(STATE_KEY, {})));
  }

  /** Every kernel a document is bound to. */
  kernelIds(): string[] {
    return [...new Set([...this.bindings.values()].map((b) => b.kernelId).filter(Boolean))];
  }

  kernelFor(uri: vscode.Uri): string | undefined {
    return this.bindings.get(uri.toString())?.kernelId || undefined;
  }

  /** The document's kernel target ("local" when it has none). */
  targetFor(uri: vscode.Uri): string {
    return this.bindings.get(uri.toString())?.target || "local";
  }

  /** Every document bound to a target, with its binding. */
  entries(): [string, Binding][] {
    return [...this.bindings.entries()];
  }

  /** The document that a kernel serves, if any. */
  documentFor(kernelId: string): vscode.Uri | undefined {
    for (const [uri, b] of this.bindings) if (kernelId && b.kernelId === kernelId) return vscode.Uri.parse(uri);
    return undefined;
  }

  /**
   * The document's kernel, started when it has none or its kernel has ended, after the
   * target's preparation for a run (hooks.beforeRun). Concurrent calls for one document
   * share one start.
   */
  async ensureKernel(uri: vscode.Uri): Promise<string> {
    const key = uri.toString();
    const pending = this.starting.get(key);
    if (pending) return pending;
    const run = this.prepare(uri)
      .then(() => this.resolve(uri))
      .finally(() => this.starting.delete(key));
    this.starting.set(key, run);
    return run;
  }

  /** Every run asks for its kernel first: a remote target's preparation (a sync) goes here. */
  private async prepare(uri: vscode.Uri): Promise<void> {
    const target = this.targetFor(uri);
    if (target !== "local" && this.hooks?.beforeRun) await this.hooks.beforeRun(uri, target);
  }

  private async resolve(uri: vscode.Uri): Promise<string> {
    const bound = this.bindings.get(uri.toString());
    const target = bound?.target || "local";
    if (bound?.kernelId) {
      // Its kernel is not listed while the link is down, yet it runs on: do not start another.
      if (target !== "local" && this.hooks?.recovering?.(target)) return bound.kernelId;
      const reconnected = target !== "local" && this.hooks?.reach ? await this.hooks.reach(target) : false;
      const k = (await this.kernels.list()).find((x) => x.kernelId === bound.kernelId);
      if (k && k.state !== "dead" && k.state !== "exited") {
        // A fresh connection knows nothing of what this window has seen: attach from there.
        if (reconnected) await this.kernels.attach(k.kernelId, this.kernels.lastSeq(k.kernelId) ?? 0);
        return k.kernelId;
      }
      if (k) {
        // Same kernel id, fresh process: the document keeps its journal and results.
        return (await this.kernels.restart(k.kernelId)).kernelId;
      }
    }
    if (target !== "local") {
      if (!this.hooks) throw new Error(`The kernel target ${target} is not available in this window.`);
      const info = await this.hooks.start(uri, target);
      this.kernels.follow(info.kernelId, 0);
      await this.bind(uri, info.kernelId, target);
      return info.kernelId;
    }
    const info = await this.kernels.start(uri.scheme === "file" ? uri : undefined, nameOf(uri));
    await this.bind(uri, info.kernelId);
    return info.kernelId;
  }

  /** Bind a document to a target; its kernel starts there on the next run (or ensureKernel). */
  async setTarget(uri: vscode.Uri, target: string): Promise<void> {
    await this.bind(uri, "", target);
  }

  async bind(uri: vscode.Uri, kernelId: string, target = "local"): Promise<void> {
    this.bindings.set(uri.toString(), { kernelId, target });
    await this.state.update(STATE_KEY, Object.fromEntries(this.bindings));
    this.emitter.fire(uri.toString());
  }

  async unbind(uri: vscode.Uri): Promise<void> {
    this.bindings.delete(uri.toString());
    await this.state.update(STATE_KEY, Object.fromEntries(this.bindings));
    this.emitter.fire(uri.toString());
  }

  /** Kernel info for the document's kernel, or undefined when it has none running. */
  async info(uri: vscode.Uri): Promise<proto.KernelInfo | undefined> {
    const id = this.kernelFor(uri);
    if (!id) return undefined;
    return (await this.kernels.list()).find((k) => k.kernelId === id);
  }

  dispose(): void {
    this.emitter.dispose();
  }
}

function nameOf(uri: vscode.Uri): string {
  const parts = uri.path.split("/");
  return parts[parts.length - 1] || uri.toString();
}
