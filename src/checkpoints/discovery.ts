/**
 * Which tree entries a set of found files makes: one per checkpoint file, except that the
 * shards a Hugging Face `*.index.json` names fold into one entry for their folder. Pure
 * (paths in, entries out), so the grouping is unit-tested without a workspace.
 */
import * as path from "node:path";

export interface FoundFile {
  path: string;
  size: number;
  mtimeMs: number;
}

/** A `*.index.json` and the shard file names of its `weight_map`. */
export interface FoundIndex extends FoundFile {
  shards: string[];
}

export interface CheckpointEntry {
  /** What is inspected and opened: the file, or the index of a sharded checkpoint. */
  path: string;
  kind: "file" | "sharded";
  label: string;
  /** Total bytes (all shards of a sharded checkpoint). */
  size: number;
  /** Newest modification time among its files. */
  mtimeMs: number;
  /** Every file it consists of (the index first for a sharded one). */
  files: string[];
}

/**
 * The shard names of an index file's JSON text, or undefined when it is not a checkpoint
 * index (no `weight_map` of strings).
 */
export function shardsOfIndex(text: string): string[] | undefined {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    return undefined;
  }
  const map = (json as { weight_map?: unknown } | null)?.weight_map;
  if (typeof map !== "object" || map === null || Array.isArray(map)) return undefined;
  const shards = new Set<string>();
  for (const v of Object.values(map)) if (typeof v === "string") shards.add(v);
  return shards.size ? [...shards].sort() : undefined;
}

/**
 * Entries for the found files and indexes, newest first (then by path). `paths` is the path
 * flavour of the machine the files are on (POSIX for a remote machine's).
 */
export function groupCheckpoints(
  files: readonly FoundFile[],
  indexes: readonly FoundIndex[],
  paths: typeof path.posix = path,
): CheckpointEntry[] {
  const byPath = new Map(files.map((f) => [f.path, f]));
  const consumed = new Set<string>();
  const entries: CheckpointEntry[] = [];
  const perFolder = new Map<string, number>();
  for (const ix of indexes) perFolder.set(paths.dirname(ix.path), (perFolder.get(paths.dirname(ix.path)) ?? 0) + 1);
  for (const ix of indexes) {
    const dir = paths.dirname(ix.path);
    const shardPaths = ix.shards.map((s) => paths.join(dir, s));
    let size = ix.size;
    let mtimeMs = ix.mtimeMs;
    for (const p of shardPaths) {
      const f = byPath.get(p);
      consumed.add(p);
      if (!f) continue;
      size += f.size;
      mtimeMs = Math.max(mtimeMs, f.mtimeMs);
    }
    consumed.add(ix.path);
    entries.push({
      path: ix.path,
      kind: "sharded",
      // Two indexes in one folder (safetensors and .bin variants) are told apart by file name.
      label: (perFolder.get(dir) ?? 0) > 1 ? paths.basename(ix.path) : `${paths.basename(dir)}/`,
      size,
      mtimeMs,
      files: [ix.path, ...shardPaths],
    });
  }
  for (const f of files) {
    if (consumed.has(f.path)) continue;
    entries.push({
      path: f.path,
      kind: "file",
      label: paths.basename(f.path),
      size: f.size,
      mtimeMs: f.mtimeMs,
      files: [f.path],
    });
  }
  return entries.sort((a, b) => b.mtimeMs - a.mtimeMs || (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
}
