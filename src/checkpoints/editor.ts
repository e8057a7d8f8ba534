/**
 * The checkpoint editor: a read-only custom editor for checkpoint files (and a plain panel
 * for a model folder without an index), each backed by an Inspector. Documents watch their
 * file, so a checkpoint rewritten by training is read again.
 */
import * as path from "node:path";
import * as vscode from "vscode";
import type { Ctx } from "../ctx";
import { webviewOptions } from "../webview/html";
import { Inspector } from "./inspector";
import { parseRemoteUriPath, REMOTE_SCHEME, type RemoteFile } from "./remoteNames";

export const VIEW_TYPE = "gpuWorkbench.checkpoint";
/**
 * The same editor for files that are often not checkpoints (`.bin`, `*.index.json`), offered
 * in "Reopen With…" only. VS Code keys custom editors by view type, and a view type has one
 * priority, hence a second one.
 */
export const OPTIONAL_VIEW_TYPE = "gpuWorkbench.checkpoint.optional";
const PANEL_VIEW_TYPE = "gpuWorkbench.checkpointPanel";
const DEFAULT_EXTENSIONS = [".safetensors", ".pt", ".pth", ".ckpt", ".gguf", ".npz", ".npy"];

/** The custom editor whose selector matches a file name, if any. */
export function viewTypeFor(fsPath: string): string | undefined {
  const name = path.basename(fsPath).toLowerCase();
  if (DEFAULT_EXTENSIONS.some((e) => name.endsWith(e))) return VIEW_TYPE;
  if (name.endsWith(".bin") || name.endsWith(".index.json")) return OPTIONAL_VIEW_TYPE;
  return undefined;
}
/** Writers append for a while; read once the file has been quiet this long. */
const QUIET_MS = 750;

type DiskChange = "changed" | "deleted";

/** Watches `pattern` and reports, debounced, that `target` changed or is gone. */
class DiskWatch implements vscode.Disposable {
  private readonly emitter = new vscode.EventEmitter<DiskChange>();
  readonly onDidChange = this.emitter.event;
  private readonly watcher: vscode.FileSystemWatcher;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    pattern: vscode.RelativePattern,
    private readonly target: vscode.Uri,
  ) {
    this.watcher = vscode.workspace.createFileSystemWatcher(pattern);
    const poke = () => this.schedule();
    this.watcher.onDidChange(poke);
    this.watcher.onDidCreate(poke);
    this.watcher.onDidDelete(poke);
  }

  private schedule(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.timer = undefined;
      vscode.workspace.fs.stat(this.target).then(
        () => this.emitter.fire("changed"),
        () => this.emitter.fire("deleted"),
      );
    }, QUIET_MS);
  }

  dispose(): void {
    if (this.timer) clearTimeout(this.timer);
    this.watcher.dispose();
    this.emitter.dispose();
  }
}

/** A sharded index is read with its shards: watch its whole folder. */
function watchPattern(uri: vscode.Uri, isFolder: boolean): vscode.RelativePattern {
  if (isFolder) return new vscode.RelativePattern(uri, "*");
  const dir = vscode.Uri.file(path.dirname(uri.fsPath));
  const base = path.basename(uri.fsPath);
  return new vscode.RelativePattern(dir, base.endsWith(".index.json") ? "*" : base);
}

/** The machine file a `gpuwb-remote:` URI names (undefined for any other URI). */
export function remoteFileOf(uri: vscode.Uri): RemoteFile | undefined {
  return uri.scheme === REMOTE_SCHEME ? parseRemoteUriPath(uri.path) : undefined;
}

class CheckpointDocument implements vscode.CustomDocument {
  /** Local files only: a file on a machine is read again when the user reloads it. */
  readonly watch: DiskWatch | undefined;
  readonly remote: RemoteFile | undefined;

  constructor(readonly uri: vscode.Uri) {
    this.remote = remoteFileOf(uri);
    if (uri.scheme === REMOTE_SCHEME && !this.remote) throw new Error(`Not a file on a machine: ${uri.toString()}`);
    this.watch = this.remote ? undefined : new DiskWatch(watchPattern(uri, false), uri);
  }

  dispose(): void {
    this.watch?.dispose();
  }
}

export class CheckpointEditorProvider implements vscode.CustomReadonlyEditorProvider<CheckpointDocument> {
  constructor(
    private readonly ctx: Ctx,
    private readonly compare: (fsPath: string) => void,
  ) {}

  openCustomDocument(uri: vscode.Uri): CheckpointDocument {
    return new CheckpointDocument(uri);
  }

  resolveCustomEditor(document: CheckpointDocument, panel: vscode.WebviewPanel): void {
    panel.webview.options = webviewOptions(this.ctx.extension.extensionUri);
    if (document.remote) {
      new Inspector(this.ctx, panel, document.remote.path, this.compare, document.remote.machine);
      return;
    }
    const inspector = new Inspector(this.ctx, panel, document.uri.fsPath, this.compare);
    const sub = document.watch?.onDidChange((c) =>
      c === "changed" ? inspector.fileChanged() : inspector.fileDeleted(),
    );
    panel.onDidDispose(() => sub?.dispose());
  }
}

export function registerCheckpointEditor(ctx: Ctx, compare: (fsPath: string) => void): vscode.Disposable {
  const provider = new CheckpointEditorProvider(ctx, compare);
  const options = {
    // The view keeps its UI state with setState and gets the summary again when shown.
    webviewOptions: { retainContextWhenHidden: false },
    supportsMultipleEditorsPerDocument: true,
  };
  return vscode.Disposable.from(
    vscode.window.registerCustomEditorProvider(VIEW_TYPE, provider, options),
    vscode.window.registerCustomEditorProvider(OPTIONAL_VIEW_TYPE, provider, options),
  );
}

/**
 * An inspector in a plain panel: for a model folder, or a file whose name no custom editor
 * claims (a checkpoint chosen with "Browse…" can have any name).
 */
function openPanel(ctx: Ctx, target: vscode.Uri, isFolder: boolean, compare: (fsPath: string) => void): void {
  const existing = Inspector.forPath(target.fsPath);
  if (existing) {
    existing.panel.reveal();
    return;
  }
  const panel = vscode.window.createWebviewPanel(
    PANEL_VIEW_TYPE,
    `${path.basename(target.fsPath)}${isFolder ? "/" : ""}`,
    vscode.ViewColumn.Active,
    webviewOptions(ctx.extension.extensionUri),
  );
  panel.iconPath = vscode.Uri.joinPath(ctx.extension.extensionUri, "media", "activity.svg");
  const inspector = new Inspector(ctx, panel, target.fsPath, compare);
  const watch = new DiskWatch(watchPattern(target, isFolder), target);
  watch.onDidChange((c) => (c === "changed" ? inspector.fileChanged() : inspector.fileDeleted()));
  panel.onDidDispose(() => watch.dispose());
}

/**
 * Open the inspector on a file or folder: a folder with one `*.index.json` opens that index
 * (all shards), any other folder opens in a panel; a file opens in the checkpoint editor.
 */
export async function openCheckpoint(ctx: Ctx, uri: vscode.Uri, compare: (fsPath: string) => void): Promise<void> {
  const remote = remoteFileOf(uri);
  if (uri.scheme === REMOTE_SCHEME) {
    // Read on the machine: the same editor, whatever the file's name (the tree lists
    // checkpoint files and indexes only).
    if (!remote) throw new Error(`Not a file on a machine: ${uri.toString()}`);
    const viewType = viewTypeFor(remote.path) ?? OPTIONAL_VIEW_TYPE;
    await vscode.commands.executeCommand("vscode.openWith", uri, viewType, { preview: false });
    return;
  }
  const stat = await vscode.workspace.fs.stat(uri);
  if (stat.type & vscode.FileType.Directory) {
    const names = (await vscode.workspace.fs.readDirectory(uri))
      .filter(([n, t]) => t & vscode.FileType.File && n.endsWith(".index.json"))
      .map(([n]) => n)
      .sort();
    const index = names.find((n) => n.endsWith(".safetensors.index.json")) ?? names[0];
    if (index) {
      await vscode.commands.executeCommand("vscode.openWith", vscode.Uri.joinPath(uri, index), OPTIONAL_VIEW_TYPE);
    } else {
      openPanel(ctx, uri, true, compare);
    }
    return;
  }
  const viewType = viewTypeFor(uri.fsPath);
  if (viewType) await vscode.commands.executeCommand("vscode.openWith", uri, viewType, { preview: false });
  else openPanel(ctx, uri, false, compare);
}
