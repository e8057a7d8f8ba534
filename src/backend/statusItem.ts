/**
 * The backend's status bar item: starting / ready / error, with the interpreter, version
 * and pid in its tooltip; a click shows the logs.
 */
import * as vscode from "vscode";
import type { BackendManager, BackendState } from "./manager";

const ICONS: Record<BackendState, string> = {
  stopped: "$(circle-slash)",
  starting: "$(loading~spin)",
  ready: "$(check)",
  error: "$(error)",
};

export class BackendStatusItem implements vscode.Disposable {
  private readonly item: vscode.StatusBarItem;
  private readonly subscriptions: vscode.Disposable[] = [];

  constructor(private readonly backend: BackendManager) {
    this.item = vscode.window.createStatusBarItem("gpuWorkbench.backend", vscode.StatusBarAlignment.Left, 10);
    this.item.name = "GPU Workbench Backend";
    this.item.command = "gpuWorkbench.showLogs";
    this.subscriptions.push(
      backend.onDidChangeState(() => this.update()),
      vscode.workspace.onDidGrantWorkspaceTrust(() => this.update()),
    );
    this.update();
    this.item.show();
  }

  update(): void {
    const state = this.backend.state;
    const restricted = !vscode.workspace.isTrusted;
    this.item.text = `${ICONS[state]} GPU Workbench${restricted ? " (Restricted)" : ""}`;
    this.item.backgroundColor = state === "error" ? new vscode.ThemeColor("statusBarItem.errorBackground") : undefined;
    this.item.accessibilityInformation = { label: `GPU Workbench backend: ${state}` };
    this.item.tooltip = this.tooltip(state, restricted);
  }

  private tooltip(state: BackendState, restricted: boolean): vscode.MarkdownString {
    const md = new vscode.MarkdownString(undefined, true);
    md.appendMarkdown(`**GPU Workbench backend: ${state}**\n\n`);
    const s = this.backend.status;
    const interp = this.backend.interpreter;
    if (s) {
      md.appendMarkdown(`- Version ${s.version}, pid ${s.pid}\n`);
      md.appendMarkdown(`- Python ${s.python.version} (${s.python.implementation}): ${code(s.python.executable)}\n`);
      md.appendMarkdown(`- Data: ${code(s.dataDirectory)}\n`);
    } else if (interp) {
      md.appendMarkdown(`- Python ${interp.version}: ${code(interp.executable)}\n`);
    }
    const err = this.backend.lastError;
    if (state === "error" && err) {
      md.appendMarkdown("\n");
      md.appendText(err.message);
      md.appendMarkdown("\n");
    }
    if (restricted) {
      md.appendMarkdown(
        "\n$(shield) Restricted Mode: this folder is not trusted, so GPU Workbench runs none of its code.\n",
      );
    }
    md.appendMarkdown("\nClick to show the logs.");
    return md;
  }

  dispose(): void {
    for (const d of this.subscriptions) d.dispose();
    this.item.dispose();
  }
}

/** A path as inline code; backticks cannot appear inside, so they are dropped. */
function code(text: string): string {
  return `\`${text.replace(/`/g, "")}\``;
}
