/**
 * Owns the backend's lifetime: resolves the interpreter, starts the LanguageClient over
 * a child process it spawns itself (so it sees exit codes and stderr), restarts after
 * crashes within a budget, and serializes manual restarts.
 */
import { type ChildProcess, spawn } from "node:child_process";
import * as os from "node:os";
import * as path from "node:path";
import * as readline from "node:readline";
import * as vscode from "vscode";
import {
  CloseAction,
  type CloseHandlerResult,
  ErrorAction,
  LanguageClient,
  type LanguageClientOptions,
  State,
  type StreamInfo,
  Trace,
} from "vscode-languageclient/node";
import type { Config } from "../config";
import { gpuInitOptions } from "../gpu/settings";
import type { Logger } from "../log";
import * as proto from "../protocol";
import { vmInitOptions } from "../vms/settings";
import { type ResolvedInterpreter, resolveInterpreter } from "./interpreter";
import { backendLaunch } from "./launch";
import { PythonError } from "./python";
import { RestartBudget, SerialRunner } from "./serial";

export type BackendState = "stopped" | "starting" | "ready" | "error";

export interface BackendError {
  message: string;
  /** What went wrong, for tests and the status item: python | start | crash. */
  reason: "python" | "start" | "crash";
}

const START_TIMEOUT_MS = 30_000;
const STOP_TIMEOUT_MS = 3_000;
const RESTART_WINDOW_MS = 3 * 60_000;

export class BackendManager implements vscode.Disposable {
  private readonly stateEmitter = new vscode.EventEmitter<BackendState>();
  readonly onDidChangeState = this.stateEmitter.event;

  private _state: BackendState = "stopped";
  private _client: LanguageClient | undefined;
  private _process: ChildProcess | undefined;
  private _interpreter: ResolvedInterpreter | undefined;
  private _status: proto.StatusResult | undefined;
  private _lastError: BackendError | undefined;
  private stopping = false;
  private notified = "";
  private readonly budget: RestartBudget;
  private readonly runner = new SerialRunner(() => this.doRestart());
  /** Disposables that live for one backend session, cleared at each restart. */
  private session: vscode.Disposable[] = [];

  constructor(
    private readonly extensionPath: string,
    private readonly config: Config,
    private readonly log: Logger,
  ) {
    this.budget = new RestartBudget(config.maxRestarts, RESTART_WINDOW_MS);
  }

  get state(): BackendState {
    return this._state;
  }
  get client(): LanguageClient | undefined {
    return this._state === "ready" ? this._client : undefined;
  }
  get interpreter(): ResolvedInterpreter | undefined {
    return this._interpreter;
  }
  get status(): proto.StatusResult | undefined {
    return this._status;
  }
  get lastError(): BackendError | undefined {
    return this._lastError;
  }

  /** Start or restart; concurrent calls coalesce (one in flight, at most one queued). */
  restart(): Promise<void> {
    return this.runner.run();
  }

  /** Ask the backend for a fresh status record. */
  async refreshStatus(): Promise<proto.StatusResult> {
    const client = this._client;
    if (!client || this._state === "stopped") throw new Error("The GPU Workbench backend is not running.");
    this._status = await client.sendRequest(proto.status);
    return this._status;
  }

  async stop(): Promise<void> {
    this.stopping = true;
    try {
      const client = this._client;
      this._client = undefined;
      this.clearSession();
      if (client) {
        try {
          await client.stop(STOP_TIMEOUT_MS);
        } catch (err) {
          this.log.debug(`Backend did not stop cleanly: ${String(err)}`);
        }
      }
      this.killProcess();
      this.setState("stopped");
    } finally {
      this.stopping = false;
    }
  }

  dispose(): void {
    void this.stop();
    this.stateEmitter.dispose();
  }

  // ---- internals ---------------------------------------------------------------------

  private setState(s: BackendState): void {
    if (this._state === s) return;
    this._state = s;
    this.log.debug(`Backend state: ${s}`);
    this.stateEmitter.fire(s);
  }

  private clearSession(): void {
    for (const d of this.session.splice(0)) d.dispose();
  }

  private killProcess(): void {
    const p = this._process;
    this._process = undefined;
    if (p && p.exitCode === null && p.signalCode === null) p.kill("SIGKILL");
  }

  private async doRestart(): Promise<void> {
    await this.stop();
    this._status = undefined;
    this._lastError = undefined;
    this.budget.setMax(this.config.maxRestarts);
    this.setState("starting");
    const trusted = vscode.workspace.isTrusted;
    try {
      this._interpreter = await resolveInterpreter(this.config, this.log, trusted);
    } catch (err) {
      this.fail("python", err);
      return;
    }
    const client = this.createClient(this._interpreter, trusted);
    this._client = client;
    let s: proto.StatusResult;
    try {
      await withTimeout(client.start(), START_TIMEOUT_MS, "The backend did not answer `initialize`");
      this.applyTrace();
      s = await this.refreshStatus();
    } catch (err) {
      if (this._client === client) this.fail("start", err);
      return;
    }
    this.log.info(
      `Backend ready: gpu-workbench ${s.version} on Python ${s.python.version} (pid ${s.pid}), data in ${s.dataDirectory}`,
    );
    this.notified = "";
    this.setState("ready");
  }

  private createClient(interp: ResolvedInterpreter, trusted: boolean): LanguageClient {
    const serverPython = path.join(this.extensionPath, "server-python");
    const options: LanguageClientOptions = {
      documentSelector: [{ scheme: "file", language: "python" }],
      outputChannel: this.log.channel,
      traceOutputChannel: this.log.channel,
      revealOutputChannelOn: 4 /* RevealOutputChannelOn.Never */,
      // workspace/didChangeConfiguration with {gpuWorkbench: {...}} when a setting changes.
      synchronize: { configurationSection: "gpuWorkbench" },
      initializationOptions: (): proto.InitializationOptions => ({
        trusted,
        logLevel: backendLogLevel(this.log.channel.logLevel),
        cellMarkers: this.config.cellMarkers,
        vms: vmInitOptions(),
        gpu: gpuInitOptions(),
        remote: { knownHostsFile: remoteKnownHostsFile() },
        ...(this.config.dataDirectory ? { dataDirectory: this.config.dataDirectory } : {}),
      }),
      errorHandler: {
        error: () => ({ action: ErrorAction.Continue, handled: true }),
        closed: () => this.onClosed(),
      },
      initializationFailedHandler: (err) => {
        this.log.error(`Backend initialization failed: ${String(err)}`);
        return false;
      },
    };
    const serverOptions = async (): Promise<StreamInfo> => {
      const launch = backendLaunch(interp.executable, serverPython);
      const child = spawn(launch.command, launch.args, {
        env: launch.env,
        stdio: ["pipe", "pipe", "pipe"],
        windowsHide: true,
      });
      this._process = child;
      this.log.info(`Started backend: ${interp.executable} ${launch.args.join(" ")} (pid ${child.pid})`);
      readline.createInterface({ input: child.stderr }).on("line", (line) => this.log.info(`[backend] ${line}`));
      child.on("error", (err) => this.log.error(`Backend process error: ${err.message}`));
      child.on("exit", (code, signal) => {
        const how = signal ? `signal ${signal}` : `exit code ${code}`;
        const msg = `Backend process ${child.pid} ended with ${how}`;
        if (this.stopping || code === 0) this.log.info(msg);
        else this.log.warn(msg);
      });
      return { reader: child.stdout, writer: child.stdin };
    };
    const client = new LanguageClient("gpuWorkbench", "GPU Workbench", serverOptions, options);
    this.session.push(
      client.onDidChangeState((e) => {
        if (e.newState === State.Starting && !this.stopping) this.setState("starting");
        if (e.newState === State.Running && this._state !== "ready" && this.runner.busy === false) {
          // An automatic restart by the client after a crash: re-read status, then ready.
          void this.refreshStatus().then(
            () => {
              this.applyTrace();
              this.setState("ready");
            },
            (err) => this.fail("start", err),
          );
        }
      }),
      this.log.channel.onDidChangeLogLevel(() => this.applyTrace()),
    );
    return client;
  }

  private onClosed(): CloseHandlerResult {
    if (this.stopping) return { action: CloseAction.DoNotRestart, handled: true };
    this._status = undefined;
    if (this.config.autoRestart && this.budget.tryTake()) {
      this.log.warn("The backend stopped unexpectedly; restarting it.");
      this.setState("starting");
      return { action: CloseAction.Restart, handled: true };
    }
    const why = this.config.autoRestart
      ? `it crashed more than ${this.config.maxRestarts} times in three minutes`
      : "automatic restart is off";
    this.fail("crash", new Error(`The GPU Workbench backend stopped and was not restarted: ${why}.`));
    return { action: CloseAction.DoNotRestart, handled: true };
  }

  private applyTrace(): void {
    const client = this._client;
    if (!client?.isRunning()) return;
    const verbose = this.log.channel.logLevel === vscode.LogLevel.Trace;
    void client.setTrace(verbose ? Trace.Verbose : Trace.Off);
  }

  private fail(reason: BackendError["reason"], err: unknown): void {
    const message = err instanceof Error ? err.message : String(err);
    this._lastError = { message, reason };
    if (err instanceof PythonError && err.detail) this.log.error(`${message}\n${err.detail}`);
    else this.log.error(message);
    this.killProcess();
    this.setState("error");
    this.notify(reason, message);
  }

  /** One clear notification per distinct failure, with actions that fix it. */
  private notify(reason: BackendError["reason"], message: string): void {
    if (this.notified === message) return;
    this.notified = message;
    const actions = reason === "python" ? ["Select Python…", "Show Logs"] : ["Restart Backend", "Show Logs"];
    void vscode.window.showErrorMessage(message, ...actions).then((choice) => {
      if (choice === "Select Python…") void vscode.commands.executeCommand("gpuWorkbench.selectPython");
      if (choice === "Show Logs") this.log.show();
      if (choice === "Restart Backend") void this.restart();
    });
  }
}

/** gpuWorkbench.remote.knownHostsFile ("" = the backend uses ~/.ssh/known_hosts). */
function remoteKnownHostsFile(): string {
  const v = vscode.workspace.getConfiguration("gpuWorkbench.remote").get<unknown>("knownHostsFile", "");
  return typeof v === "string" ? v.trim().replace(/^~(?=$|\/)/, os.homedir()) : "";
}

function backendLogLevel(level: vscode.LogLevel): proto.InitializationOptions["logLevel"] {
  switch (level) {
    case vscode.LogLevel.Trace:
      return "trace";
    case vscode.LogLevel.Debug:
      return "debug";
    case vscode.LogLevel.Warning:
      return "warning";
    case vscode.LogLevel.Error:
      return "error";
    default:
      return "info";
  }
}

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`${what} within ${ms / 1000} s.`)), ms);
    p.then(
      (v) => {
        clearTimeout(t);
        resolve(v);
      },
      (e) => {
        clearTimeout(t);
        reject(e);
      },
    );
  });
}
