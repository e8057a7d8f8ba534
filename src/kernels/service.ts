/**
 * The extension's side of kernels that is not tied to an editor: starting one with the
 * user's settings, answering input() with an input box, telling the user when a kernel
 * dies or is killed (with a Restart action), and listing or ending kernels.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import * as vscode from "vscode";
import type { LanguageClient } from "vscode-languageclient/node";
import type { BackendManager } from "../backend/manager";
import type { Config } from "../config";
import type { Logger } from "../log";
import * as proto from "../protocol";

const TRACKED_KEY = "gpuWorkbench.kernels.tracked";

export class KernelService implements vscode.Disposable {
  private readonly clients = new WeakSet<LanguageClient>();
  /** Kernels this window follows, with the last seq it has seen (kept across reloads). */
  private readonly tracked: Map<string, number>;
  private saveTimer: NodeJS.Timeout | undefined;
  private readonly subscriptions: vscode.Disposable[] = [];
  private readonly eventEmitter = new vscode.EventEmitter<proto.KernelEventParams>();
  /** Every kernel event the backend forwards (re-registered on each backend client). */
  readonly onDidReceiveEvent = this.eventEmitter.event;

  constructor(
    private readonly backend: BackendManager,
    private readonly config: Config,
    private readonly log: Logger,
    private readonly state: vscode.Memento,
  ) {
    this.tracked = new Map(Object.entries(state.get<Record<string, number>>(TRACKED_KEY, {})));
    this.subscriptions.push(
      this.eventEmitter,
      backend.onDidChangeState((s) => s === "ready" && this.listen()),
    );
    this.listen();
  }

  /**
   * On every backend (re)start: follow kernel events (once per client object: after a crash
   * the LanguageClient restarts the same object and keeps its handlers), then re-attach to
   * the kernels this window follows so they replay what the dead backend did not deliver.
   */
  private listen(): void {
    const client = this.backend.client;
    if (!client) return;
    if (!this.clients.has(client)) {
      this.clients.add(client);
      this.handleEvents(client);
    }
    this.reattach(client);
  }

  private handleEvents(client: LanguageClient): void {
    client.onNotification(proto.kernelEvent, (p) => {
      if (p.event.type !== "gap") {
        const seen = this.tracked.get(p.kernelId);
        // A replay may overlap what this window already has: deliver each seq once.
        if (seen !== undefined && p.event.seq <= seen) return;
        this.track(p.kernelId, p.event.seq);
        if (p.event.type === "died" || p.event.type === "exit") this.untrack(p.kernelId);
      }
      this.eventEmitter.fire(p);
      void this.onEvent(p.kernelId, p.event);
    });
  }

  private reattach(client: LanguageClient): void {
    for (const [kernelId, since] of this.tracked) {
      client.sendRequest(proto.kernelAttach, { kernelId, since }).then(
        (info) => {
          this.log.info(`Re-attached to kernel ${kernelId} (${info.state}) from seq ${since}`);
          if (info.state === "dead" || info.state === "exited") this.untrack(kernelId);
        },
        (err) => {
          this.log.warn(`Could not re-attach to kernel ${kernelId}: ${String(err)}`);
          if (proto.errorData(err)?.kind === "NotFound") this.untrack(kernelId);
        },
      );
    }
  }

  private track(kernelId: string, seq: number): void {
    this.tracked.set(kernelId, Math.max(seq, this.tracked.get(kernelId) ?? 0));
    this.scheduleSave();
  }

  private untrack(kernelId: string): void {
    this.tracked.delete(kernelId);
    this.scheduleSave();
  }

  /** Persist at most every 500 ms: a flood of output must not flood the state store. */
  private scheduleSave(): void {
    if (this.saveTimer) return;
    this.saveTimer = setTimeout(() => {
      this.saveTimer = undefined;
      void this.state.update(TRACKED_KEY, Object.fromEntries(this.tracked));
    }, 500);
  }

  /**
   * After a window reload, replay from where the consumers' saved state ends, not from
   * where this service last saw (its state and theirs are saved at different moments).
   * Records ignore seqs they already have, so replaying a little more is harmless.
   */
  setDurableFloor(floor: (kernelId: string) => number | undefined): void {
    for (const [kernelId, seen] of this.tracked) this.tracked.set(kernelId, Math.min(seen, floor(kernelId) ?? 0));
  }

  /** Follow a kernel from `since` unless already followed (re-attached when the backend is ready). */
  follow(kernelId: string, since: number): void {
    if (!this.tracked.has(kernelId)) this.tracked.set(kernelId, since);
  }

  /** The last seq this window has seen of a kernel it follows. */
  lastSeq(kernelId: string): number | undefined {
    return this.tracked.get(kernelId);
  }

  private client(): LanguageClient {
    const c = this.backend.client;
    if (!c) throw new Error("The GPU Workbench backend is not running.");
    return c;
  }

  private async onEvent(kernelId: string, event: proto.KernelEvent | proto.KernelGap): Promise<void> {
    if (event.type === "input_request") {
      const value = await vscode.window.showInputBox({
        title: "Input requested by the kernel",
        prompt: event.prompt || "input()",
        password: event.password,
        ignoreFocusOut: true,
      });
      // Escape answers an empty line, as pressing Enter in a terminal would.
      await this.client().sendRequest(proto.kernelInputReply, {
        kernelId,
        executionId: event.executionId,
        value: value ?? "",
      });
    }
    if (event.type === "died") {
      const how = event.signal ? `was killed (${event.signal})` : `exited with code ${event.exitCode}`;
      this.log.warn(`Kernel ${kernelId} ${how}. Last stderr:\n${event.stderrTail.join("\n")}`);
      const ending = this.ending.get(kernelId);
      if (ending === "restart" || ending === "shutdown") return; // the user asked for it
      const message =
        ending === "interrupt"
          ? "The kernel did not stop after the interrupt and was killed; its variables are lost."
          : `The kernel ${how}; its variables are lost.`;
      const choice = await vscode.window.showWarningMessage(message, "Restart Kernel", "Show Logs");
      if (choice === "Restart Kernel") await this.restart(kernelId);
      if (choice === "Show Logs") this.log.show();
    }
  }

  /** Start a kernel for `file` with the user's settings (working directory, env, .env). */
  async start(file?: vscode.Uri, name?: string): Promise<proto.KernelInfo> {
    const folder = file ? vscode.workspace.getWorkspaceFolder(file) : vscode.workspace.workspaceFolders?.[0];
    const cwd =
      this.config.kernelWorkingDirectory === "workspace" && folder
        ? folder.uri.fsPath
        : file
          ? path.dirname(file.fsPath)
          : folder?.uri.fsPath;
    const envFile = this.config.kernelEnvFile(folder?.uri.fsPath);
    const params: proto.KernelStartParams = {
      env: this.config.kernelEnv,
      idleTimeoutSeconds: this.config.kernelIdleTimeoutMinutes * 60,
      ...(cwd ? { cwd } : {}),
      ...(envFile && fs.existsSync(envFile) ? { envFile } : {}),
      ...(name || file ? { name: name ?? path.basename(file?.fsPath ?? "") } : {}),
      ...(this.kernelPython() ? { python: this.kernelPython() } : {}),
    };
    const info = await this.client().sendRequest(proto.kernelStart, params);
    if (!this.tracked.has(info.kernelId)) this.track(info.kernelId, 0);
    return info;
  }

  /** Follow a kernel started elsewhere (the CLI, another window) from `since`. */
  async attach(kernelId: string, since = 0): Promise<proto.KernelInfo> {
    this.track(kernelId, since);
    return this.client().sendRequest(proto.kernelAttach, { kernelId, since });
  }

  /** Queue code on a kernel; outputs arrive through onDidReceiveEvent. */
  execute(params: proto.KernelExecuteParams): Promise<proto.KernelExecuteResult> {
    return this.client().sendRequest(proto.kernelExecute, params);
  }

  private kernelPython(): string | undefined {
    return this.config.kernelPythonPath || this.backend.interpreter?.executable;
  }

  /**
   * Interrupt: SIGINT, then SIGKILL after the grace period. A kill is reported by the
   * kernel's `died` event, worded for the interrupt (see onEvent), with a Restart action.
   */
  async interrupt(kernelId: string): Promise<proto.KernelInterruptResult> {
    const r = await this.during(kernelId, "interrupt", () =>
      this.client().sendRequest(proto.kernelInterrupt, {
        kernelId,
        graceSeconds: this.config.kernelInterruptGraceSeconds,
      }),
    );
    if (r.outcome === "killed") this.log.warn(`Kernel ${kernelId} ignored the interrupt and was killed.`);
    return r;
  }

  restart(kernelId: string): Promise<proto.KernelInfo> {
    return this.during(kernelId, "restart", () => this.client().sendRequest(proto.kernelRestart, { kernelId }));
  }

  shutdown(kernelId: string): Promise<proto.KernelRef> {
    return this.during(kernelId, "shutdown", () => this.client().sendRequest(proto.kernelShutdown, { kernelId }));
  }

  /** What this window is doing to a kernel, so its `died` event is worded (or hidden) right. */
  private readonly ending = new Map<string, "interrupt" | "restart" | "shutdown">();

  private async during<T>(kernelId: string, what: "interrupt" | "restart" | "shutdown", fn: () => Promise<T>) {
    this.ending.set(kernelId, what);
    try {
      return await fn();
    } finally {
      // The died event may trail the reply a little: forget the reason shortly after.
      setTimeout(() => this.ending.get(kernelId) === what && this.ending.delete(kernelId), 2000);
    }
  }

  async list(): Promise<proto.KernelInfo[]> {
    return (await this.client().sendRequest(proto.kernelList, {})).kernels;
  }

  /** Pick a running kernel; undefined when there is none or the user cancels. */
  async pick(title: string): Promise<proto.KernelInfo | undefined> {
    const running = (await this.list()).filter((k) => k.state !== "dead" && k.state !== "exited");
    if (!running.length) {
      void vscode.window.showInformationMessage("No kernels are running.");
      return undefined;
    }
    const items = running.map((k) => ({
      label: `$(server-process) ${k.name || k.kernelId}`,
      description: `${k.state} · pid ${k.pid} · Python ${k.pythonVersion}`,
      detail: `${k.kernelId} · ${k.cwd} · started ${new Date(k.createdAt * 1000).toLocaleString()}`,
      kernel: k,
    }));
    return (await vscode.window.showQuickPick(items, { title, matchOnDetail: true }))?.kernel;
  }

  dispose(): void {
    if (this.saveTimer) clearTimeout(this.saveTimer);
    void this.state.update(TRACKED_KEY, Object.fromEntries(this.tracked));
    for (const d of this.subscriptions) d.dispose();
  }
}
