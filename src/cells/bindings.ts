/**
 * Which kernel each document (a .py file or a notebook) runs on, kept across window
 * reloads. A document gets a kernel of its own on its first run, on the document's
 * kernel target ("Local" for now; the VM issues add remote targets).
 */
import * as vscode from "vscode";
import type { KernelService } from "../kernels/service";
import type * as proto from "../protocol";

const STATE_KEY = "gpuWorkbench.kernelBindings";

export interface Binding {
  kernelId: string;
  /** The target the kernel runs on; "local" for now. */
  target: string;
}

export class KernelBindings implements vscode.Disposable {
  private readonly bindings: Map<string, Binding>;
  private readonly starting = new Map<string, Promise<string>>();
  private readonly emitter = new vscode.EventEmitter<string>();
  /** Fires with a document URI whose kernel changed. */
  readonly onDidChange = this.emitter.event;

  constructor(
    private readonly kernels: KernelService,
    private readonly state: vscode.Memento,
  ) {
    this.bindings = new Map(Object.entries(state.get<Record<string, Binding>>(STATE_KEY, {})));
  }

  /** Every kernel a document is bound to. */
  kernelIds(): string[] {
    return [...new Set([...this.bindings.values()].map((b) => b.kernelId))];
  }

  kernelFor(uri: vscode.Uri): string | undefined {
    return this.bindings.get(uri.toString())?.kernelId;
  }

  /** The document that a kernel serves, if any. */
  documentFor(kernelId: string): vscode.Uri | undefined {
    for (const [uri, b] of this.bindings) if (b.kernelId === kernelId) return vscode.Uri.parse(uri);
    return undefined;
  }

  /**
   * The document's kernel, started when it has none or its kernel has ended. Concurrent
   * calls for one document share one start.
   */
  async ensureKernel(uri: vscode.Uri): Promise<string> {
    const key = uri.toString();
    const pending = this.starting.get(key);
    if (pending) return pending;
    const run = this.resolve(uri).finally(() => this.starting.delete(key));
    this.starting.set(key, run);
    return run;
  }

  private async resolve(uri: vscode.Uri): Promise<string> {
    const bound = this.bindings.get(uri.toString());
    if (bound) {
      const k = (await this.kernels.list()).find((x) => x.kernelId === bound.kernelId);
      if (k && k.state !== "dead" && k.state !== "exited") return k.kernelId;
      if (k) {
        // Same kernel id, fresh process: the document keeps its journal and results.
        return (await this.kernels.restart(k.kernelId)).kernelId;
      }
    }
    const info = await this.kernels.start(uri.scheme === "file" ? uri : undefined, nameOf(uri));
    await this.bind(uri, info.kernelId);
    return info.kernelId;
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
