/**
 * Names of checkpoints on remote machines, free of `vscode` (unit-tested): the URI path of a
 * file on a machine (`gpuwb-remote:/<provider>/<id>/<absolute path>`), the remote roots of
 * the Checkpoints view as saved in workspace state, and the entries of a root's listing.
 */
import * as path from "node:path";
import type { CheckpointListResult } from "../protocol";
import { type CheckpointEntry, groupCheckpoints } from "./discovery";

/** The URI scheme of checkpoint files on a connected machine (opened by the inspector). */
export const REMOTE_SCHEME = "gpuwb-remote";

/** A file on a machine. */
export interface RemoteFile {
  /** "provider/id". */
  machine: string;
  /** Absolute on the machine (POSIX). */
  path: string;
}

/** A folder on a machine, shown as a root of the Checkpoints view. */
export interface RemoteRoot {
  machine: string;
  /** As the user gave it (absolute or starting with ~). */
  folder: string;
}

/** The URI path naming `file`: the machine's provider and id, then the machine's path. */
export function remoteUriPath(file: RemoteFile): string {
  const slash = file.machine.indexOf("/");
  if (slash <= 0 || slash === file.machine.length - 1) throw new Error(`Not a machine: ${file.machine}`);
  if (!file.path.startsWith("/")) throw new Error(`Not an absolute path on ${file.machine}: ${file.path}`);
  const provider = encodeURIComponent(file.machine.slice(0, slash));
  const id = encodeURIComponent(file.machine.slice(slash + 1));
  return `/${provider}/${id}${path.posix.normalize(file.path)}`;
}

/** The file a URI path names, or undefined when it names none. */
export function parseRemoteUriPath(uriPath: string): RemoteFile | undefined {
  const m = /^\/([^/]+)\/([^/]+)(\/.*)$/.exec(uriPath);
  if (!m?.[1] || !m[2] || !m[3]) return undefined;
  try {
    return { machine: `${decodeURIComponent(m[1])}/${decodeURIComponent(m[2])}`, path: m[3] };
  } catch {
    return undefined;
  }
}

/** The root's label: "<machine name>: <folder>". */
export function rootLabel(machineName: string, folder: string): string {
  return `${machineName}: ${folder}`;
}

/** A stable key of a root (tree item ids, de-duplication). */
export function rootKey(root: RemoteRoot): string {
  return `${root.machine}\u0000${root.folder}`;
}

/** A folder as typed, tidied: trimmed, no trailing slash (except the root and "~"). */
export function tidyFolder(folder: string): string {
  const t = folder.trim();
  if (t === "/" || t === "~" || t === "") return t;
  const n = path.posix.normalize(t);
  return n.length > 1 && n.endsWith("/") ? n.slice(0, -1) : n;
}

/** Why a typed folder cannot be browsed, or undefined when it can. */
export function folderProblem(folder: string): string | undefined {
  const t = folder.trim();
  if (!t) return "Give a folder on the machine.";
  if (!t.startsWith("/") && t !== "~" && !t.startsWith("~/")) {
    return "Give an absolute path (/…) or one in the home folder (~/…).";
  }
  return undefined;
}

/** The saved roots, keeping only well-formed ones, without duplicates. */
export function loadRoots(saved: unknown): RemoteRoot[] {
  if (!Array.isArray(saved)) return [];
  const out: RemoteRoot[] = [];
  for (const r of saved) {
    const root = r as Partial<RemoteRoot> | null;
    if (typeof root?.machine !== "string" || typeof root.folder !== "string") continue;
    if (!root.machine.includes("/") || folderProblem(root.folder)) continue;
    out.push({ machine: root.machine, folder: tidyFolder(root.folder) });
  }
  return out.filter((r, i) => out.findIndex((o) => rootKey(o) === rootKey(r)) === i);
}

/** The roots with `root` added at the end (unless already there). */
export function addRoot(roots: readonly RemoteRoot[], root: RemoteRoot): RemoteRoot[] {
  const tidy = { machine: root.machine, folder: tidyFolder(root.folder) };
  return roots.some((r) => rootKey(r) === rootKey(tidy)) ? [...roots] : [...roots, tidy];
}

export function removeRoot(roots: readonly RemoteRoot[], root: RemoteRoot): RemoteRoot[] {
  return roots.filter((r) => rootKey(r) !== rootKey(root));
}

/** A root's tree entries from its listing: grouped as the workspace's are (POSIX paths). */
export function entriesOfListing(listing: CheckpointListResult): CheckpointEntry[] {
  return groupCheckpoints(listing.files, listing.indexes, path.posix);
}

/** Where an entry lies under its root, for its description ("" at the root itself). */
export function whereInRoot(listedFolder: string, entry: CheckpointEntry): string {
  const dir = path.posix.dirname(entry.kind === "sharded" ? path.posix.dirname(entry.path) : entry.path);
  const rel = path.posix.relative(listedFolder, dir);
  return rel.startsWith("..") ? dir : rel;
}
