/**
 * The kernels each machine runs, for the GPU Machines view's kernel rows: listed with
 * kernel/list (this machine's and connected machines', each with its `machine`), again
 * when a kernel starts, dies or exits and whenever the machines are listed; a kernel's
 * busy/idle comes from its status events without listing again.
 */
import * as vscode from "vscode";
import type { Ctx } from "../ctx";
import type * as proto from "../protocol";
import { kernelLive, kernelMachineKey, vmKey } from "./format";
import type { VmModel } from "./model";

/** Where the tree reads the kernels of a machine. */
export interface KernelRows {
  readonly onDidChange: vscode.Event<unknown>;
  kernelsOf(vm: proto.VmInfo): proto.KernelInfo[];
}

const RELIST_DELAY_MS = 250;

export class VmKernels implements KernelRows, vscode.Disposable {
  private readonly changed = new vscode.EventEmitter<void>();
  readonly onDidChange = this.changed.event;
  private kernels: proto.KernelInfo[] = [];
  private timer: NodeJS.Timeout | undefined;
  private listing: Promise<void> | undefined;
  private again = false;
  private readonly subs: vscode.Disposable[] = [this.changed];

  constructor(
    private readonly ctx: Ctx,
    model: VmModel,
  ) {
    this.subs.push(
      ctx.kernels.onDidReceiveEvent((p) => this.onEvent(p)),
      model.onDidChange(() => this.schedule()),
      ctx.backend.onDidChangeState((s) => {
        if (s === "ready") this.schedule();
        else if (this.kernels.length) {
          // The backend is gone: what it listed may be stale; list again once it is back.
          this.kernels = [];
          this.changed.fire();
        }
      }),
    );
    this.schedule();
  }

  kernelsOf(vm: proto.VmInfo): proto.KernelInfo[] {
    const key = vm.provider === "local" ? "local/local" : vmKey(vm);
    return this.kernels.filter((k) => kernelMachineKey(k) === key);
  }

  private onEvent(p: proto.KernelEventParams): void {
    const e = p.event;
    if (e.type === "status") {
      const k = this.kernels.find((x) => x.kernelId === p.kernelId);
      // Unknown, or listed while starting (before its pid and Python were known): list again.
      if (!k || k.state === "starting") this.schedule();
      else if (k.state !== e.state || k.queue.length !== e.queue.length) {
        k.state = e.state;
        k.queue = e.queue;
        this.changed.fire();
      }
    } else if (e.type === "start" || e.type === "died" || e.type === "exit") {
      this.schedule();
    }
  }

  /** List again shortly (a burst of events lists once). */
  schedule(): void {
    if (this.timer) return;
    this.timer = setTimeout(() => {
      this.timer = undefined;
      void this.list();
    }, RELIST_DELAY_MS);
  }

  /** List now; a call while listing lists once more after it. */
  list(): Promise<void> {
    if (this.listing) {
      this.again = true;
      return this.listing;
    }
    this.listing = this.doList().finally(() => {
      this.listing = undefined;
      if (this.again) {
        this.again = false;
        this.schedule();
      }
    });
    return this.listing;
  }

  private async doList(): Promise<void> {
    if (!this.ctx.backend.client) return;
    let listed: proto.KernelInfo[];
    try {
      listed = (await this.ctx.kernels.list()).filter(kernelLive);
    } catch (err) {
      this.ctx.log.debug(`kernel/list for GPU Machines failed: ${err instanceof Error ? err.message : String(err)}`);
      return;
    }
    const sig = (ks: proto.KernelInfo[]) =>
      JSON.stringify(ks.map((k) => [k.kernelId, k.name, k.state, k.queue.length, k.machine ?? null, k.pid]));
    if (sig(listed) === sig(this.kernels)) return;
    this.kernels = listed;
    this.changed.fire();
  }

  dispose(): void {
    if (this.timer) clearTimeout(this.timer);
    for (const d of this.subs) d.dispose();
  }
}
