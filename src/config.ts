/**
 * Typed access to `gpuWorkbench.*` settings, and which of them need a backend restart.
 */
import * as vscode from "vscode";

export const SECTION = "gpuWorkbench";

/** VS Code's variable in settings, expanded by us (it is not a template literal). */
// biome-ignore lint/suspicious/noTemplateCurlyInString: the literal VS Code variable
const WORKSPACE_FOLDER = "${workspaceFolder}";

/** Settings whose change restarts the backend. */
export const RESTART_SETTINGS = [`${SECTION}.pythonPath`, `${SECTION}.dataDirectory`] as const;

export const CHECKPOINTS_INCLUDE = "**/*.{safetensors,pt,pth,ckpt,gguf,npz,npy,bin}";
export const CHECKPOINTS_EXCLUDE = "**/{node_modules,.git,.venv,venv,__pycache__}/**";

export class Config {
  private get cfg(): vscode.WorkspaceConfiguration {
    return vscode.workspace.getConfiguration(SECTION);
  }

  /**
   * The interpreter setting. In Restricted Mode VS Code itself ignores workspace values
   * (it is listed in `restrictedConfigurations`), so a folder cannot pick the binary.
   */
  get pythonPath(): string {
    return expandHome(this.cfg.get<string>("pythonPath", "").trim());
  }

  get dataDirectory(): string {
    return expandHome(this.cfg.get<string>("dataDirectory", "").trim());
  }

  get autoRestart(): boolean {
    return this.cfg.get<boolean>("backend.autoRestart", true);
  }

  get maxRestarts(): number {
    const n = this.cfg.get<number>("backend.maxRestarts", 5);
    return Number.isInteger(n) && n >= 0 ? n : 5;
  }

  get cellMarkers(): string[] {
    const m = this.cfg.get<unknown>("cells.markers");
    return Array.isArray(m) && m.every((x) => typeof x === "string") && m.length
      ? m
      : ["^#\\s*%%", "^#\\s*In\\[[^\\]]*\\]:"];
  }

  get stopOnError(): boolean {
    return this.cfg.get<boolean>("cells.stopOnError", true);
  }

  get maxOutputCharacters(): number {
    const n = this.cfg.get<number>("results.maxOutputCharacters", 200_000);
    return Number.isFinite(n) && n >= 1000 ? n : 200_000;
  }

  /** Glob of the files the Checkpoints view lists. */
  get checkpointsInclude(): string {
    return this.cfg.get<string>("checkpoints.include", "").trim() || CHECKPOINTS_INCLUDE;
  }

  /** Glob of files and folders the Checkpoints view leaves out; empty leaves out none. */
  get checkpointsExclude(): string {
    return this.cfg.get<string>("checkpoints.exclude", CHECKPOINTS_EXCLUDE).trim();
  }

  /** Interpreter for kernels; empty means the backend's. Restricted like pythonPath. */
  get kernelPythonPath(): string {
    return expandHome(this.cfg.get<string>("kernels.pythonPath", "").trim());
  }

  get kernelIdleTimeoutMinutes(): number {
    const n = this.cfg.get<number>("kernels.idleTimeoutMinutes", 720);
    return Number.isFinite(n) && n >= 0 ? n : 720;
  }

  get kernelInterruptGraceSeconds(): number {
    const n = this.cfg.get<number>("kernels.interruptGraceSeconds", 3);
    return Number.isFinite(n) && n > 0 ? n : 3;
  }

  get kernelWorkingDirectory(): "file" | "workspace" {
    return this.cfg.get<string>("kernels.workingDirectory", "file") === "workspace" ? "workspace" : "file";
  }

  get kernelEnv(): Record<string, string> {
    const env = this.cfg.get<Record<string, unknown>>("kernels.env", {});
    const out: Record<string, string> = {};
    for (const [k, v] of Object.entries(env ?? {})) if (typeof v === "string") out[k] = v;
    return out;
  }

  /** The .env file for kernels, with `${workspaceFolder}` expanded; undefined when unset. */
  kernelEnvFile(workspaceFolder: string | undefined): string | undefined {
    const raw = this.cfg.get<string>("kernels.envFile", `${WORKSPACE_FOLDER}/.env`).trim();
    if (!raw) return undefined;
    if (raw.includes(WORKSPACE_FOLDER) && !workspaceFolder) return undefined;
    return expandHome(raw.replace(WORKSPACE_FOLDER, workspaceFolder ?? ""));
  }

  /** Persist an interpreter choice in user settings (never workspace: it is machine-specific). */
  async setPythonPath(value: string): Promise<void> {
    await this.cfg.update("pythonPath", value, vscode.ConfigurationTarget.Global);
  }

  needsRestart(e: vscode.ConfigurationChangeEvent): boolean {
    return RESTART_SETTINGS.some((s) => e.affectsConfiguration(s));
  }
}

function expandHome(p: string): string {
  if (p === "~" || p.startsWith("~/")) {
    const home = process.env.HOME ?? process.env.USERPROFILE ?? "";
    return home + p.slice(1);
  }
  return p;
}
