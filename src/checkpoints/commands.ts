/**
 * What the checkpoint commands do: pick checkpoints (from the workspace's list or a file
 * dialog), open the inspector, compare, and scan the workspace for unsafe pickles.
 */
import * as path from "node:path";
import * as vscode from "vscode";
import type { Ctx } from "../ctx";
import * as proto from "../protocol";
import { callCheckpoint } from "./backendCall";
import type { CheckpointEntry } from "./discovery";
import { formatBytes, formatEpochStep } from "./format";
import type { CheckpointsProvider } from "./tree";

interface CheckpointPick extends vscode.QuickPickItem {
  fsPath?: string;
  browse?: "file" | "folder";
}

const DIALOG_FILTERS = {
  Checkpoints: ["safetensors", "pt", "pth", "ckpt", "gguf", "npz", "npy", "bin", "json"],
  "All files": ["*"],
};

/** Pick a checkpoint: one found in the workspace, or a file or folder from a dialog. */
export async function pickCheckpoint(
  provider: CheckpointsProvider,
  title: string,
  except?: string,
): Promise<string | undefined> {
  const entries = (await provider.list()).filter((e) => e.path !== except);
  const items: CheckpointPick[] = entries.map((e) => entryPick(provider, e));
  if (items.length) items.push({ label: "", kind: vscode.QuickPickItemKind.Separator });
  items.push(
    { label: "$(file) Browse for a file…", browse: "file", alwaysShow: true },
    { label: "$(folder) Browse for a folder…", browse: "folder", alwaysShow: true },
  );
  const pick = await vscode.window.showQuickPick(items, {
    title,
    placeHolder: entries.length ? "A checkpoint in this workspace, or browse" : "Browse for a checkpoint",
    matchOnDescription: true,
  });
  if (!pick) return undefined;
  if (pick.fsPath) return pick.fsPath;
  const folder = pick.browse === "folder";
  const chosen = await vscode.window.showOpenDialog({
    title,
    canSelectFiles: !folder,
    canSelectFolders: folder,
    canSelectMany: false,
    openLabel: folder ? "Select Folder" : "Select Checkpoint",
    ...(folder ? {} : { filters: DIALOG_FILTERS }),
    ...(vscode.workspace.workspaceFolders?.[0] ? { defaultUri: vscode.workspace.workspaceFolders[0].uri } : {}),
  });
  return chosen?.[0]?.fsPath;
}

function entryPick(provider: CheckpointsProvider, e: CheckpointEntry): CheckpointPick {
  const d = provider.current(e);
  const parts = [formatBytes(e.size)];
  const es = formatEpochStep(d?.epoch, d?.globalStep);
  if (es) parts.push(es);
  parts.push(`modified ${new Date(e.mtimeMs).toLocaleString()}`);
  const rel = vscode.workspace.asRelativePath(
    path.dirname(e.path),
    (vscode.workspace.workspaceFolders?.length ?? 0) > 1,
  );
  const warn = d?.verdict === "unsafe" || d?.verdict === "unknown";
  return {
    label: `${warn ? "$(warning)" : e.kind === "sharded" ? "$(files)" : "$(file-binary)"} ${e.label}`,
    description: rel === path.dirname(e.path) ? path.dirname(e.path) : rel,
    detail: parts.join(" · "),
    fsPath: e.path,
  };
}

/** A checkpoint path from a command argument: a Uri, a tree entry, or a path string. */
export function pathOf(arg: unknown): string | undefined {
  if (arg instanceof vscode.Uri) return arg.fsPath;
  if (typeof arg === "string" && arg) return arg;
  if (typeof arg === "object" && arg !== null && typeof (arg as CheckpointEntry).path === "string") {
    return (arg as CheckpointEntry).path;
  }
  return undefined;
}

const VERDICT_ORDER: Record<proto.CheckpointScanEntry["verdict"], number> = {
  unsafe: 0,
  unknown: 1,
  error: 2,
  safe: 3,
};

const VERDICT_ICON: Record<proto.CheckpointScanEntry["verdict"], string> = {
  unsafe: "$(error)",
  unknown: "$(warning)",
  error: "$(circle-slash)",
  safe: "$(verified)",
};

/** Scan the workspace's checkpoints; the verdicts go to a quick pick and the log. */
export async function scanWorkspace(
  ctx: Ctx,
  provider: CheckpointsProvider,
  open: (fsPath: string) => void,
): Promise<proto.CheckpointScanResult | undefined> {
  const entries = await provider.list();
  if (!entries.length) {
    void vscode.window.showInformationMessage(
      "No checkpoints were found in this workspace. The setting “gpuWorkbench.checkpoints.include” chooses which files are checkpoints.",
    );
    return undefined;
  }
  const result = await callCheckpoint(
    ctx,
    proto.checkpointScan,
    { paths: entries.map((e) => e.path) },
    { title: `Scanning ${entries.length} checkpoint(s) for unsafe code`, progress: "notification", delayMs: 0 },
  );
  const results = [...result.results].sort(
    (a, b) => VERDICT_ORDER[a.verdict] - VERDICT_ORDER[b.verdict] || a.path.localeCompare(b.path),
  );
  const count = (v: proto.CheckpointScanEntry["verdict"]) => results.filter((r) => r.verdict === v).length;
  const headline = `Checkpoint scan: ${count("unsafe")} unsafe, ${count("unknown")} unknown, ${count("safe")} safe, ${count("error")} unreadable`;
  const report = results.map((r) => {
    const globals = r.globals
      .filter((g) => g.classification !== "allowed")
      .map((g) => `${g.module}.${g.name}`)
      .join(", ");
    return `  ${r.verdict.padEnd(7)} ${r.path}: ${r.summary}${globals ? ` [imports ${globals}]` : ""}`;
  });
  ctx.log.info(`${headline}\n${report.join("\n")}`);
  const items = results.map(
    (r): CheckpointPick => ({
      label: `${VERDICT_ICON[r.verdict]} ${vscode.workspace.asRelativePath(r.path, (vscode.workspace.workspaceFolders?.length ?? 0) > 1)}`,
      description: r.verdict === "error" ? "unreadable" : r.verdict,
      detail:
        r.summary +
        (r.globals.some((g) => g.classification !== "allowed")
          ? ` — imports ${r.globals
              .filter((g) => g.classification !== "allowed")
              .map((g) => `${g.module}.${g.name}`)
              .join(", ")}`
          : ""),
      fsPath: r.path,
    }),
  );
  // Not awaited: the command returns its result while the list is open.
  void vscode.window
    .showQuickPick(items, { title: headline, placeHolder: "Choose a checkpoint to inspect it", matchOnDetail: true })
    .then((pick) => pick?.fsPath && open(pick.fsPath));
  return result;
}
