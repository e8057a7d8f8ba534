/**
 * The Checkpoints view: checkpoints in the workspace (settings `gpuWorkbench.checkpoints.
 * include` / `exclude`), newest first, with size, epoch/step and a safety icon. Details come
 * from `checkpoint/inspect` with no tensors listed, a few at a time, only for what the view
 * shows, and are cached by modification time and size (also across reloads).
 */
import * as fs from "node:fs/promises";
import * as path from "node:path";
import * as vscode from "vscode";
import type { Ctx } from "../ctx";
import * as proto from "../protocol";
import { CheckpointCallError, callCheckpoint } from "./backendCall";
import { type CheckpointEntry, type FoundFile, type FoundIndex, groupCheckpoints, shardsOfIndex } from "./discovery";
import { formatBytes, formatCount, formatEpochStep, formatInt, formatName } from "./format";
import { isRemoteNode, type RemoteNode, RemoteRoots } from "./remoteTree";

/** A node of the view: a workspace checkpoint, or a remote root and what it holds. */
export type CheckpointNode = CheckpointEntry | RemoteNode;

export const VIEW_ID = "gpuWorkbench.checkpoints";
const CACHE_KEY = "gpuWorkbench.checkpoints.details";
const CACHE_MAX = 1000;
const CONCURRENCY = 3;
const RESCAN_MS = 500;
const MAX_FILES = 5000;
/** Index files bigger than this are not read to find their shards. */
const MAX_INDEX_BYTES = 64 * 1024 * 1024;

/** What the tree knows of a checkpoint from its inspection. */
export interface CheckpointDetails {
  mtimeMs: number;
  size: number;
  format: string | null;
  formatDetail: string | null;
  epoch: number | null;
  globalStep: number | null;
  parameterCount: number | null;
  tensorCount: number | null;
  verdict: proto.SafetyVerdict | null;
  safetySummary: string | null;
  error: string | null;
}

/** One row of the view as plain data (returned by the hidden test command). */
export interface CheckpointTreeRow {
  path: string;
  kind: CheckpointEntry["kind"];
  label: string;
  size: number;
  mtimeMs: number;
  description: string;
  tooltip: string;
  icon: string;
  contextValue: string;
  details: CheckpointDetails | null;
}

function relativeDir(p: string): string {
  const many = (vscode.workspace.workspaceFolders?.length ?? 0) > 1;
  const rel = vscode.workspace.asRelativePath(path.dirname(p), many);
  return rel === path.dirname(p) || rel === "" ? "" : rel;
}

export class CheckpointsProvider implements vscode.TreeDataProvider<CheckpointNode>, vscode.Disposable {
  private readonly changed = new vscode.EventEmitter<CheckpointNode | undefined>();
  readonly onDidChangeTreeData = this.changed.event;
  private readonly subscriptions: vscode.Disposable[] = [this.changed];
  /** Folders on connected machines, shown above the workspace's checkpoints. */
  readonly remote: RemoteRoots;
  private watchers: vscode.Disposable[] = [];
  private entries: CheckpointEntry[] = [];
  /** How many folders the entries are in. */
  private folders = 0;
  private scanned: Promise<void> | undefined;
  private details: Map<string, CheckpointDetails>;
  private readonly queue: CheckpointEntry[] = [];
  private readonly queued = new Set<string>();
  private readonly inFlight = new Set<string>();
  private readonly idleWaiters: (() => void)[] = [];
  private rescanTimer: NodeJS.Timeout | undefined;
  private fireTimer: NodeJS.Timeout | undefined;
  private saveTimer: NodeJS.Timeout | undefined;
  private generation = 0;

  constructor(private readonly ctx: Ctx) {
    const saved = ctx.extension.workspaceState.get<Record<string, CheckpointDetails>>(CACHE_KEY, {});
    this.details = new Map(Object.entries(saved ?? {}));
    this.remote = new RemoteRoots(ctx, (node) => this.changed.fire(node));
    this.subscriptions.push(this.remote);
    this.watch();
    this.subscriptions.push(
      vscode.workspace.onDidChangeConfiguration((e) => {
        if (e.affectsConfiguration("gpuWorkbench.checkpoints")) {
          this.watch();
          this.refresh();
        }
      }),
      vscode.workspace.onDidChangeWorkspaceFolders(() => this.refresh()),
      // Entries that could not be read while the backend was down are read when it is back.
      ctx.backend.onDidChangeState((s) => s === "ready" && this.entries.length && this.enqueueMissing()),
    );
  }

  /** Find the checkpoints again (keeps cached details of unchanged files). */
  refresh(): void {
    this.scanned = undefined;
    this.changed.fire(undefined);
  }

  /** Read every entry's details again, ignoring the cache. */
  async refreshAll(): Promise<void> {
    this.details.clear();
    this.remote.refresh();
    this.refresh();
    await this.snapshot(true);
  }

  getTreeItem(node: CheckpointNode): vscode.TreeItem {
    if (isRemoteNode(node)) return this.remote.treeItem(node);
    const entry = node;
    const d = this.current(entry);
    const item = new vscode.TreeItem(entry.label, vscode.TreeItemCollapsibleState.None);
    item.id = entry.path;
    item.resourceUri = vscode.Uri.file(entry.kind === "sharded" ? path.dirname(entry.path) : entry.path);
    item.description = this.describe(entry, d);
    item.tooltip = this.tooltip(entry, d);
    item.iconPath = this.icon(entry, d);
    item.contextValue = entry.kind === "sharded" ? "gpuWorkbench.checkpoint.sharded" : "gpuWorkbench.checkpoint";
    item.command = {
      command: "gpuWorkbench.openCheckpoint",
      title: "Inspect Checkpoint",
      arguments: [vscode.Uri.file(entry.path)],
    };
    item.accessibilityInformation = { label: `${entry.label}, ${item.description}` };
    return item;
  }

  async getChildren(node?: CheckpointNode): Promise<CheckpointNode[]> {
    if (node) return isRemoteNode(node) ? this.remote.children(node) : [];
    return [...this.remote.nodes(), ...(await this.workspaceEntries())];
  }

  getParent(node: CheckpointNode): CheckpointNode | undefined {
    return isRemoteNode(node) && node.type !== "remoteRoot" ? { type: "remoteRoot", root: node.root } : undefined;
  }

  private async workspaceEntries(): Promise<CheckpointEntry[]> {
    if (!this.scanned) this.scanned = this.scan();
    await this.scanned;
    this.enqueueMissing();
    return this.entries;
  }

  /** The entries, as the view shows them; with `settle`, after every pending inspection. */
  async snapshot(settle = false): Promise<CheckpointTreeRow[]> {
    await this.workspaceEntries();
    if (settle) await this.idle();
    return this.entries.map((e) => {
      const item = this.getTreeItem(e);
      const icon = item.iconPath instanceof vscode.ThemeIcon ? item.iconPath.id : "";
      const tooltip = item.tooltip instanceof vscode.MarkdownString ? item.tooltip.value : String(item.tooltip ?? "");
      return {
        path: e.path,
        kind: e.kind,
        label: String(item.label),
        size: e.size,
        mtimeMs: e.mtimeMs,
        description: String(item.description ?? ""),
        tooltip,
        icon,
        contextValue: item.contextValue ?? "",
        details: this.current(e) ?? null,
      };
    });
  }

  /** The current entries (scanning first if needed). */
  async list(): Promise<CheckpointEntry[]> {
    return this.workspaceEntries();
  }

  /** Details for an entry, when its files have not changed since they were read. */
  current(entry: CheckpointEntry): CheckpointDetails | undefined {
    const d = this.details.get(entry.path);
    return d && d.mtimeMs === entry.mtimeMs && d.size === entry.size ? d : undefined;
  }

  private idle(): Promise<void> {
    if (!this.queue.length && !this.inFlight.size) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  private watch(): void {
    for (const w of this.watchers.splice(0)) w.dispose();
    const poke = () => this.scheduleRescan();
    for (const glob of [this.ctx.config.checkpointsInclude, "**/*.index.json"]) {
      const w = vscode.workspace.createFileSystemWatcher(glob);
      this.watchers.push(w, w.onDidCreate(poke), w.onDidChange(poke), w.onDidDelete(poke));
    }
  }

  private scheduleRescan(): void {
    if (this.rescanTimer) clearTimeout(this.rescanTimer);
    this.rescanTimer = setTimeout(() => {
      this.rescanTimer = undefined;
      this.refresh();
    }, RESCAN_MS);
  }

  private async scan(): Promise<void> {
    const gen = ++this.generation;
    const include = this.ctx.config.checkpointsInclude;
    const exclude = this.ctx.config.checkpointsExclude || null;
    let uris: vscode.Uri[] = [];
    let indexUris: vscode.Uri[] = [];
    if (vscode.workspace.workspaceFolders?.length) {
      try {
        [uris, indexUris] = await Promise.all([
          vscode.workspace.findFiles(include, exclude, MAX_FILES),
          vscode.workspace.findFiles("**/*.index.json", exclude, MAX_FILES),
        ]);
      } catch (err) {
        this.ctx.log.warn(`Checkpoints: could not search the workspace: ${String(err)}`);
      }
    }
    const files = (await Promise.all(uris.map((u) => statFile(u.fsPath)))).filter((f): f is FoundFile => !!f);
    const indexes = (await Promise.all(indexUris.map((u) => readIndex(u.fsPath)))).filter((f): f is FoundIndex => !!f);
    if (gen !== this.generation) return;
    this.entries = groupCheckpoints(files, indexes);
    this.folders = new Set(
      this.entries.map((e) => path.dirname(e.kind === "sharded" ? path.dirname(e.path) : e.path)),
    ).size;
  }

  private enqueueMissing(): void {
    for (const e of this.entries) {
      if (this.current(e) || this.queued.has(e.path) || this.inFlight.has(e.path)) continue;
      this.queued.add(e.path);
      this.queue.push(e);
    }
    this.pump();
  }

  private pump(): void {
    while (this.inFlight.size < CONCURRENCY && this.queue.length) {
      const e = this.queue.shift();
      if (!e) break;
      this.queued.delete(e.path);
      this.inFlight.add(e.path);
      void this.inspect(e).finally(() => {
        this.inFlight.delete(e.path);
        this.pump();
        if (!this.queue.length && !this.inFlight.size) for (const w of this.idleWaiters.splice(0)) w();
      });
    }
    if (!this.queue.length && !this.inFlight.size) for (const w of this.idleWaiters.splice(0)) w();
  }

  private async inspect(e: CheckpointEntry): Promise<void> {
    const base: CheckpointDetails = {
      mtimeMs: e.mtimeMs,
      size: e.size,
      format: null,
      formatDetail: null,
      epoch: null,
      globalStep: null,
      parameterCount: null,
      tensorCount: null,
      verdict: null,
      safetySummary: null,
      error: null,
    };
    try {
      const s = await callCheckpoint(
        this.ctx,
        proto.checkpointInspect,
        { path: e.path, maxTensors: 0 },
        { title: `Reading ${e.label}`, progress: "window", delayMs: 1500 },
      );
      this.details.set(e.path, {
        ...base,
        format: s.format,
        formatDetail: s.formatDetail,
        epoch: s.epoch,
        globalStep: s.globalStep,
        parameterCount: s.parameterCount,
        tensorCount: s.tensorCount,
        verdict: s.safety.verdict,
        safetySummary: s.safety.summary,
      });
    } catch (err) {
      // A backend that is down says nothing about the file: try again when it is back.
      if (err instanceof CheckpointCallError && (err.kind === "BackendNotRunning" || err.cancelled)) return;
      const msg = err instanceof Error ? err.message : String(err);
      this.details.set(e.path, { ...base, error: msg });
    }
    this.scheduleFire();
    this.scheduleSave();
  }

  private scheduleFire(): void {
    if (this.fireTimer) return;
    this.fireTimer = setTimeout(() => {
      this.fireTimer = undefined;
      this.changed.fire(undefined);
    }, 150);
  }

  private scheduleSave(): void {
    if (this.saveTimer) return;
    this.saveTimer = setTimeout(() => {
      this.saveTimer = undefined;
      const keep = [...this.details.entries()].slice(-CACHE_MAX);
      void this.ctx.extension.workspaceState.update(CACHE_KEY, Object.fromEntries(keep));
    }, 2000);
  }

  private describe(e: CheckpointEntry, d: CheckpointDetails | undefined): string {
    const parts = [formatBytes(e.size)];
    if (e.kind === "sharded") parts.push(`${e.files.length - 1} shards`);
    const es = formatEpochStep(d?.epoch, d?.globalStep);
    if (es) parts.push(es);
    if (d?.error) parts.push("unreadable");
    // The folder only tells entries apart when they live in more than one.
    if (this.folders > 1) {
      const where = relativeDir(e.kind === "sharded" ? path.dirname(e.path) : e.path);
      if (where) parts.push(where);
    }
    return parts.join(" · ");
  }

  private tooltip(e: CheckpointEntry, d: CheckpointDetails | undefined): vscode.MarkdownString {
    const md = new vscode.MarkdownString(undefined, true);
    md.appendMarkdown(`**${escapeMd(e.label)}**\n\n`);
    md.appendText(`${e.path}\n`);
    md.appendMarkdown(`\n${formatBytes(e.size)} · modified ${new Date(e.mtimeMs).toLocaleString()}\n\n`);
    if (d?.error) {
      md.appendMarkdown("$(error) ");
      md.appendText(d.error);
    } else if (d) {
      const rows = [
        d.formatDetail || (d.format ? formatName(d.format) : null),
        d.parameterCount !== null ? `${formatCount(d.parameterCount)} parameters` : null,
        d.tensorCount !== null ? `${formatInt(d.tensorCount)} tensors` : null,
        formatEpochStep(d.epoch, d.globalStep) || null,
      ].filter((r): r is string => !!r);
      md.appendText(rows.join(" · "));
      md.appendMarkdown(`\n\n${safetyIcon(d.verdict)} `);
      md.appendText(d.safetySummary ?? "");
    } else {
      md.appendMarkdown("$(loading~spin) Reading…");
    }
    return md;
  }

  private icon(e: CheckpointEntry, d: CheckpointDetails | undefined): vscode.ThemeIcon {
    if (!d) return new vscode.ThemeIcon(e.kind === "sharded" ? "files" : "file-binary");
    if (d.error) return new vscode.ThemeIcon("error", new vscode.ThemeColor("list.errorForeground"));
    if (d.verdict === "unsafe") return new vscode.ThemeIcon("warning", new vscode.ThemeColor("list.errorForeground"));
    if (d.verdict === "unknown") {
      return new vscode.ThemeIcon("warning", new vscode.ThemeColor("list.warningForeground"));
    }
    return new vscode.ThemeIcon("verified");
  }

  dispose(): void {
    for (const t of [this.rescanTimer, this.fireTimer, this.saveTimer]) if (t) clearTimeout(t);
    for (const w of this.watchers.splice(0)) w.dispose();
    for (const d of this.subscriptions.splice(0)) d.dispose();
    for (const w of this.idleWaiters.splice(0)) w();
  }
}

function safetyIcon(v: proto.SafetyVerdict | null): string {
  return v === "safe" ? "$(verified)" : "$(warning)";
}

function escapeMd(s: string): string {
  return s.replace(/[\\`*_{}[\]()#+\-.!|<>]/g, "\\$&");
}

async function statFile(p: string): Promise<FoundFile | undefined> {
  try {
    const st = await fs.stat(p);
    return st.isFile() ? { path: p, size: st.size, mtimeMs: Math.trunc(st.mtimeMs) } : undefined;
  } catch {
    return undefined;
  }
}

async function readIndex(p: string): Promise<FoundIndex | undefined> {
  const f = await statFile(p);
  if (!f || f.size > MAX_INDEX_BYTES) return undefined;
  try {
    const shards = shardsOfIndex(await fs.readFile(p, "utf8"));
    return shards ? { ...f, shards } : undefined;
  } catch {
    return undefined;
  }
}
