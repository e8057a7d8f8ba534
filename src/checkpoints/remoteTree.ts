/**
 * Remote folder roots of the Checkpoints view: "<machine name>: <folder>", listed by the
 * machine's agent (`checkpoint/list` with `machine`; only the listing crosses the network)
 * and grouped like the workspace's checkpoints. Roots are saved in workspace state; a root
 * whose machine is not connected shows a row that connects it. Opening an entry opens the
 * inspector on a `gpuwb-remote:` URI, which reads the file on the machine.
 */
import * as vscode from "vscode";
import type { Ctx } from "../ctx";
import * as proto from "../protocol";
import { remoteOf } from "../remote/model";
import { CheckpointCallError, callCheckpoint } from "./backendCall";
import type { CheckpointEntry } from "./discovery";
import { formatBytes } from "./format";
import {
  addRoot,
  entriesOfListing,
  loadRoots,
  REMOTE_SCHEME,
  type RemoteRoot,
  remoteUriPath,
  removeRoot,
  rootKey,
  rootLabel,
  whereInRoot,
} from "./remoteNames";

const ROOTS_KEY = "gpuWorkbench.checkpoints.remoteRoots";
export const ROOT_CONTEXT = "gpuWorkbench.remoteCheckpointRoot";
export const REMOTE_ENTRY_CONTEXT = "gpuWorkbench.remoteCheckpoint";

/** A node of the remote part of the tree. */
export type RemoteNode =
  | { type: "remoteRoot"; root: RemoteRoot }
  | { type: "remoteEntry"; root: RemoteRoot; entry: CheckpointEntry; listedFolder: string }
  | { type: "remoteMessage"; root: RemoteRoot; kind: "disconnected" | "error" | "empty" | "truncated"; text: string };

export function isRemoteNode(n: unknown): n is RemoteNode {
  const t = (n as { type?: unknown } | null)?.type;
  return t === "remoteRoot" || t === "remoteEntry" || t === "remoteMessage";
}

/** The URI the inspector opens for a file on a machine. */
export function remoteUri(machine: string, filePath: string): vscode.Uri {
  return vscode.Uri.from({ scheme: REMOTE_SCHEME, path: remoteUriPath({ machine, path: filePath }) });
}

/** One row of a remote root as plain data (returned by the hidden test command). */
export interface RemoteTreeRow {
  label: string;
  description: string;
  tooltip: string;
  contextValue: string;
  icon: string;
  /** For an entry: its path on the machine and the URI it opens. */
  path: string | null;
  uri: string | null;
  children: RemoteTreeRow[];
}

type Listing = { listing: proto.CheckpointListResult } | { error: CheckpointCallError | Error };

export class RemoteRoots implements vscode.Disposable {
  private roots: RemoteRoot[];
  private readonly listings = new Map<string, Promise<Listing>>();
  private readonly subs: vscode.Disposable[] = [];

  constructor(
    private readonly ctx: Ctx,
    /** Tell the tree that a root (or, undefined, everything) changed. */
    private readonly fire: (node: RemoteNode | undefined) => void,
  ) {
    this.roots = loadRoots(ctx.extension.workspaceState.get(ROOTS_KEY));
    const remote = remoteOf(ctx);
    const states = new Map<string, string | undefined>();
    this.subs.push(
      remote.onDidChange((machine) => {
        // A machine that connects or goes away: list its roots again.
        for (const r of this.roots) {
          if (machine !== undefined && r.machine !== machine) continue;
          const state = remote.get(r.machine)?.state;
          if (states.get(rootKey(r)) === state) continue;
          states.set(rootKey(r), state);
          this.listings.delete(rootKey(r));
          this.fire(undefined);
        }
      }),
    );
  }

  list(): readonly RemoteRoot[] {
    return this.roots;
  }

  nodes(): RemoteNode[] {
    return this.roots.map((root) => ({ type: "remoteRoot", root }));
  }

  async add(root: RemoteRoot): Promise<void> {
    this.roots = addRoot(this.roots, root);
    this.listings.delete(rootKey(root));
    await this.save();
    this.fire(undefined);
  }

  async remove(root: RemoteRoot): Promise<void> {
    this.roots = removeRoot(this.roots, root);
    this.listings.delete(rootKey(root));
    await this.save();
    this.fire(undefined);
  }

  /** List the root's folder again (all roots without one). */
  refresh(root?: RemoteRoot): void {
    if (root) this.listings.delete(rootKey(root));
    else this.listings.clear();
    this.fire(undefined);
  }

  private save(): Thenable<void> {
    return this.ctx.extension.workspaceState.update(ROOTS_KEY, this.roots);
  }

  private connected(machine: string): boolean {
    const s = remoteOf(this.ctx).get(machine)?.state;
    return s === "connected" || s === "reconnecting";
  }

  private listing(root: RemoteRoot): Promise<Listing> {
    const key = rootKey(root);
    let p = this.listings.get(key);
    if (!p) {
      p = callCheckpoint(
        this.ctx,
        proto.checkpointList,
        { folder: root.folder, machine: root.machine },
        { title: `Listing ${root.folder} on ${remoteOf(this.ctx).nameOf(root.machine)}`, progress: "window" },
      ).then(
        (listing): Listing => ({ listing }),
        (error: unknown): Listing => ({ error: error instanceof Error ? error : new Error(String(error)) }),
      );
      this.listings.set(key, p);
    }
    return p;
  }

  async children(node: RemoteNode): Promise<RemoteNode[]> {
    if (node.type !== "remoteRoot") return [];
    const root = node.root;
    if (!this.connected(root.machine)) {
      return [{ type: "remoteMessage", root, kind: "disconnected", text: "not connected — connect to browse" }];
    }
    const got = await this.listing(root);
    if ("error" in got) {
      this.listings.delete(rootKey(root)); // a failure is not kept: expanding again retries
      const e = got.error;
      const hint = e instanceof CheckpointCallError && e.hint ? ` ${e.hint}` : "";
      return [{ type: "remoteMessage", root, kind: "error", text: `${e.message}${hint}` }];
    }
    const { listing } = got;
    const entries: RemoteNode[] = entriesOfListing(listing).map((entry) => ({
      type: "remoteEntry",
      root,
      entry,
      listedFolder: listing.folder,
    }));
    if (!entries.length) {
      entries.push({ type: "remoteMessage", root, kind: "empty", text: `No checkpoints in ${listing.folder}` });
    }
    if (listing.truncated) {
      entries.push({
        type: "remoteMessage",
        root,
        kind: "truncated",
        text: "Only the first files are listed: browse a folder further down to see the rest",
      });
    }
    return entries;
  }

  treeItem(node: RemoteNode): vscode.TreeItem {
    const remote = remoteOf(this.ctx);
    const key = rootKey(node.root);
    if (node.type === "remoteRoot") {
      const name = remote.nameOf(node.root.machine);
      const item = new vscode.TreeItem(rootLabel(name, node.root.folder), vscode.TreeItemCollapsibleState.Expanded);
      item.id = `remote:${key}`;
      item.iconPath = new vscode.ThemeIcon("remote");
      item.description = this.connected(node.root.machine) ? "" : "not connected";
      item.tooltip = `${node.root.folder} on ${name} (${node.root.machine}): checkpoints are read there; only summaries and requested statistics cross the network.`;
      item.contextValue = ROOT_CONTEXT;
      return item;
    }
    if (node.type === "remoteMessage") {
      const item = new vscode.TreeItem(node.text, vscode.TreeItemCollapsibleState.None);
      item.id = `remote:${key}:${node.kind}`;
      item.contextValue = `gpuWorkbench.remoteCheckpointMessage.${node.kind}`;
      item.tooltip = node.text;
      if (node.kind === "disconnected") {
        item.iconPath = new vscode.ThemeIcon("plug");
        item.command = {
          command: "gpuWorkbench.remote.connectMachine",
          title: "Connect to Machine",
          arguments: [node.root.machine],
        };
      } else {
        item.iconPath = new vscode.ThemeIcon(node.kind === "error" ? "error" : "info");
      }
      return item;
    }
    const e = node.entry;
    const item = new vscode.TreeItem(e.label, vscode.TreeItemCollapsibleState.None);
    const uri = remoteUri(node.root.machine, e.path);
    item.id = `remote:${key}:${e.path}`;
    const parts = [formatBytes(e.size)];
    if (e.kind === "sharded") parts.push(`${e.files.length - 1} shards`);
    const where = whereInRoot(node.listedFolder, e);
    if (where) parts.push(where);
    item.description = parts.join(" · ");
    item.tooltip = `${e.path} on ${remote.nameOf(node.root.machine)}\n${formatBytes(e.size)} · modified ${new Date(e.mtimeMs).toLocaleString()}`;
    item.iconPath = new vscode.ThemeIcon(e.kind === "sharded" ? "files" : "file-binary");
    item.contextValue = REMOTE_ENTRY_CONTEXT;
    item.command = { command: "gpuWorkbench.openCheckpoint", title: "Inspect Checkpoint", arguments: [uri] };
    item.accessibilityInformation = { label: `${e.label} on ${remote.nameOf(node.root.machine)}, ${item.description}` };
    return item;
  }

  /** Every root with its children, as the view shows them (for tests). */
  async snapshot(): Promise<RemoteTreeRow[]> {
    const row = async (node: RemoteNode): Promise<RemoteTreeRow> => {
      const item = this.treeItem(node);
      const icon = item.iconPath instanceof vscode.ThemeIcon ? item.iconPath.id : "";
      const uri =
        item.command?.command === "gpuWorkbench.openCheckpoint" ? (item.command.arguments?.[0] as vscode.Uri) : null;
      return {
        label: String(item.label),
        description: String(item.description ?? ""),
        tooltip: String(item.tooltip ?? ""),
        contextValue: item.contextValue ?? "",
        icon,
        path: node.type === "remoteEntry" ? node.entry.path : null,
        uri: uri ? uri.toString() : null,
        children: await Promise.all((await this.children(node)).map(row)),
      };
    };
    return Promise.all(this.nodes().map(row));
  }

  dispose(): void {
    for (const s of this.subs.splice(0)) s.dispose();
  }
}
