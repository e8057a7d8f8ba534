/**
 * Typed access to `gpuWorkbench.*` settings, and which of them need a backend restart.
 */
import * as vscode from "vscode";

export const SECTION = "gpuWorkbench";

/** Settings whose change restarts the backend. */
export const RESTART_SETTINGS = [`${SECTION}.pythonPath`, `${SECTION}.dataDirectory`] as const;

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
