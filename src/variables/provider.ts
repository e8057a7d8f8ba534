/**
 * The Variables view: the names in the namespace of the active editor's kernel (a `# %%`
 * file or a notebook), refreshed when an execution on that kernel ends. Reads are cheap
 * and bounded by the kernel (a limit and a time budget), and never wait on running code.
 */
import * as vscode from "vscode";
import type { Ctx } from "../ctx";
import * as proto from "../protocol";
import { describeVariable } from "./format";

export const VIEW_ID = "gpuWorkbench.variables";
const NO_KERNEL = "Run a cell to see its variables.";
const DEBOUNCE_MS = 300;

/** What the view shows, as plain data (returned by `gpuWorkbench.internal.variablesSnapshot`). */
export interface VariablesSnapshot {
  kernelId: string | undefined;
  message: string | undefined;
  variables: (proto.Variable & { description: string })[];
}

export class VariableItem extends vscode.TreeItem {
  constructor(readonly variable: proto.Variable) {
    super(variable.name, vscode.TreeItemCollapsibleState.None);
    this.description = describeVariable(variable);
    const tip = new vscode.MarkdownString();
    tip.appendMarkdown(`**${variable.name}**: \`${variable.type}\`\n\n`);
    tip.appendCodeblock(variable.repr ?? "", "python");
    this.tooltip = tip;
    this.iconPath = new vscode.ThemeIcon(iconFor(variable));
    this.contextValue = "gpuWorkbench.variable";
  }
}

function iconFor(v: proto.Variable): string {
  if (v.shape) return "symbol-array";
  if (v.type === "dict") return "symbol-namespace";
  if (v.length !== null && v.length !== undefined) return "symbol-array";
  if (v.type === "function" || v.type === "builtin_function_or_method") return "symbol-method";
  if (v.type === "type") return "symbol-class";
  if (v.type === "str") return "symbol-string";
  if (v.type === "int" || v.type === "float" || v.type === "complex") return "symbol-number";
  if (v.type === "bool") return "symbol-boolean";
  return "symbol-variable";
}

export class VariablesProvider implements vscode.TreeDataProvider<VariableItem>, vscode.Disposable {
  private readonly changed = new vscode.EventEmitter<void>();
  readonly onDidChangeTreeData = this.changed.event;
  private readonly subscriptions: vscode.Disposable[] = [this.changed];
  private view: vscode.TreeView<VariableItem> | undefined;
  /** The document whose kernel is shown (the last active editor that is a document). */
  private document: vscode.Uri | undefined;
  private items: VariableItem[] = [];
  private kernelId: string | undefined;
  private message: string | undefined = NO_KERNEL;
  private timer: NodeJS.Timeout | undefined;
  /** Counts fetches, so a slow answer never overwrites a newer one. */
  private generation = 0;
  /** A refresh was skipped while the view was hidden. */
  private stale = false;

  constructor(private readonly ctx: Ctx) {
    this.subscriptions.push(
      vscode.window.onDidChangeActiveTextEditor(() => this.follow()),
      vscode.window.onDidChangeActiveNotebookEditor(() => this.follow()),
      ctx.bindings.onDidChange((uri) => uri === this.document?.toString() && this.schedule(0)),
      ctx.kernels.onDidReceiveEvent((p) => this.onEvent(p)),
      ctx.backend.onDidChangeState((s) => s === "ready" && this.schedule(0)),
    );
    this.follow();
  }

  /** Attach the tree view: its message and visibility. */
  attach(view: vscode.TreeView<VariableItem>): void {
    this.view = view;
    view.message = this.message;
    this.subscriptions.push(view.onDidChangeVisibility((e) => e.visible && this.stale && this.schedule(0)));
  }

  getTreeItem(item: VariableItem): vscode.TreeItem {
    return item;
  }

  getChildren(item?: VariableItem): VariableItem[] {
    return item ? [] : this.items;
  }

  /** What the view shows, for tests and for commands. */
  snapshot(): VariablesSnapshot {
    return {
      kernelId: this.kernelId,
      message: this.message,
      variables: this.items.map((i) => ({ ...i.variable, description: String(i.description ?? "") })),
    };
  }

  private follow(): void {
    const uri = vscode.window.activeNotebookEditor?.notebook.uri ?? documentOf(vscode.window.activeTextEditor);
    // Focus in a panel or on no editor keeps what is shown.
    if (!uri || uri.toString() === this.document?.toString()) return;
    this.document = uri;
    this.schedule(0);
  }

  private onEvent({ kernelId, event }: proto.KernelEventParams): void {
    if (!this.document || kernelId !== this.ctx.bindings.kernelFor(this.document)) return;
    if (event.type === "reply") this.schedule(DEBOUNCE_MS);
    else if (event.type === "died" || event.type === "exit") this.schedule(0);
  }

  private schedule(delayMs: number): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.timer = undefined;
      if (this.view && !this.view.visible) {
        this.stale = true;
        return;
      }
      void this.refresh();
    }, delayMs);
  }

  /** Fetch now, whether or not the view is visible. */
  async refresh(): Promise<void> {
    this.stale = false;
    const gen = ++this.generation;
    const kernelId = this.document ? this.ctx.bindings.kernelFor(this.document) : undefined;
    const client = this.ctx.backend.client;
    let items: VariableItem[] = [];
    let message: string | undefined;
    if (!kernelId) {
      message = NO_KERNEL;
    } else if (!client || this.ctx.backend.state !== "ready") {
      message = "The GPU Workbench backend is not running.";
    } else {
      try {
        const { variables } = await client.sendRequest(proto.kernelVariables, { kernelId });
        items = variables.map((v) => new VariableItem(v));
        if (!items.length) message = "No variables yet.";
      } catch (err) {
        const kind = proto.errorData(err)?.kind;
        if (kind === "KernelDied" || kind === "NotFound") {
          message = `The kernel has ended. ${NO_KERNEL}`;
        } else {
          message = `Could not read the variables: ${err instanceof Error ? err.message : String(err)}`;
          this.ctx.log.warn(message);
        }
      }
    }
    if (gen !== this.generation) return; // a newer refresh is under way
    this.kernelId = kernelId;
    this.items = items;
    this.message = message;
    if (this.view) this.view.message = message;
    this.changed.fire();
  }

  dispose(): void {
    if (this.timer) clearTimeout(this.timer);
    for (const d of this.subscriptions) d.dispose();
  }
}

function documentOf(editor: vscode.TextEditor | undefined): vscode.Uri | undefined {
  const uri = editor?.document.uri;
  if (!uri || uri.scheme === "output" || uri.scheme === "vscode-notebook-cell") return undefined;
  return uri;
}
