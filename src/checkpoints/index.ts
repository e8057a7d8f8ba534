/**
 * The checkpoint inspector: its custom editor, the Checkpoints view, the diff panel and the
 * commands, plus hidden commands that let integration tests read what the views show.
 */
import * as path from "node:path";
import * as vscode from "vscode";
import { registerReporting } from "../commands";
import type { Ctx } from "../ctx";
import { reportCallError } from "./backendCall";
import { pathOf, pickCheckpoint, scanWorkspace } from "./commands";
import { DiffPanel, registerDiffSerializer } from "./diffPanel";
import { openCheckpoint, registerCheckpointEditor, remoteFileOf } from "./editor";
import { Inspector } from "./inspector";
import type { DiffDrive, InspectorDrive } from "./messages";
import { browseRemote, remoteRootOf } from "./remoteCommands";
import { REMOTE_SCHEME } from "./remoteNames";
import { isRemoteNode, remoteUri } from "./remoteTree";
import { CHECKPOINT_TEST_COMMANDS } from "./testCommands";
import { CheckpointsProvider, VIEW_ID } from "./tree";

export { CHECKPOINT_TEST_COMMANDS };

/** Entry point of this area, called once from activate(). */
export function activateCheckpoints(ctx: Ctx): void {
  const provider = new CheckpointsProvider(ctx);
  const view = vscode.window.createTreeView(VIEW_ID, { treeDataProvider: provider, showCollapseAll: false });

  const open = (fsPath: string) =>
    void openCheckpoint(ctx, vscode.Uri.file(fsPath), compareWith).catch((err) => reportCallError(ctx, err));
  const compare = (a: string, b: string) => DiffPanel.show(ctx, a, b, open);
  const compareWith = (a: string) =>
    void pickCheckpoint(provider, `Compare ${path.basename(a)} with…`, a).then((b) => b && compare(a, b));

  const inspectorFor = (p: unknown) => {
    if (typeof p !== "string") return Inspector.active();
    // A `gpuwb-remote:` URI names a file on a machine.
    const remote = p.startsWith(`${REMOTE_SCHEME}:`) ? remoteFileOf(vscode.Uri.parse(p)) : undefined;
    return remote ? Inspector.forPath(remote.path, remote.machine) : Inspector.forPath(p);
  };
  /** The URI of a file on a machine an argument names (its URI, or its row in the view). */
  const remoteArg = (arg: unknown): vscode.Uri | undefined => {
    if (arg instanceof vscode.Uri && arg.scheme === REMOTE_SCHEME) return arg;
    if (isRemoteNode(arg) && arg.type === "remoteEntry") return remoteUri(arg.root.machine, arg.entry.path);
    return undefined;
  };

  ctx.subscriptions.push(
    provider,
    view,
    registerCheckpointEditor(ctx, compareWith),
    registerDiffSerializer(ctx, open),
    {
      dispose: () => {
        for (const i of [...Inspector.all]) i.dispose();
        for (const p of [...DiffPanel.all]) p.dispose();
      },
    },
  );

  registerReporting(ctx, "gpuWorkbench.inspectCheckpoint", async (arg) => {
    const remote = remoteArg(arg);
    if (remote) return openCheckpoint(ctx, remote, compareWith);
    const p = pathOf(arg) ?? (await pickCheckpoint(provider, "Inspect checkpoint"));
    if (p) await openCheckpoint(ctx, vscode.Uri.file(p), compareWith);
  });
  registerReporting(ctx, "gpuWorkbench.openCheckpoint", async (arg) => {
    const remote = remoteArg(arg);
    if (remote) return openCheckpoint(ctx, remote, compareWith);
    const p = pathOf(arg) ?? vscode.window.activeTextEditor?.document.uri.fsPath;
    if (p) await openCheckpoint(ctx, vscode.Uri.file(p), compareWith);
  });
  registerReporting(ctx, "gpuWorkbench.compareCheckpoints", async (a0, b0) => {
    const a = pathOf(a0) ?? (await pickCheckpoint(provider, "Compare checkpoints (1/2): the first, or older"));
    if (!a) return undefined;
    const b = pathOf(b0) ?? (await pickCheckpoint(provider, `Compare ${path.basename(a)} (2/2) with…`, a));
    if (!b) return undefined;
    compare(a, b);
    return undefined;
  });
  registerReporting(ctx, "gpuWorkbench.compareCheckpointWith", async (arg, second) => {
    // From the Explorer with two files selected, the second argument lists both: compare them.
    const selected = Array.isArray(second) ? second.map(pathOf).filter((p): p is string => !!p) : [];
    if (selected.length === 2 && selected[0] && selected[1]) {
      compare(selected[0], selected[1]);
      return;
    }
    const a = pathOf(arg) ?? Inspector.active()?.fsPath ?? (await pickCheckpoint(provider, "Compare checkpoint"));
    if (!a) return;
    const b = pathOf(second) ?? (await pickCheckpoint(provider, `Compare ${path.basename(a)} with…`, a));
    if (b) compare(a, b);
  });
  registerReporting(ctx, "gpuWorkbench.refreshCheckpoints", () =>
    vscode.window.withProgress({ location: { viewId: VIEW_ID } }, () => provider.refreshAll()),
  );
  registerReporting(ctx, "gpuWorkbench.checkpoints.browseRemote", async (arg) => {
    const root = await browseRemote(ctx, arg);
    if (!root) return undefined;
    await provider.remote.add(root);
    await view.reveal({ type: "remoteRoot", root }, { expand: true, focus: false }).then(
      () => undefined,
      () => undefined, // the view may be hidden: the root is there when it is shown
    );
    return root;
  });
  registerReporting(ctx, "gpuWorkbench.checkpoints.removeRemoteRoot", async (arg) => {
    const root = remoteRootOf(arg);
    if (root) await provider.remote.remove(root);
  });
  registerReporting(ctx, "gpuWorkbench.checkpoints.refreshRemoteRoot", (arg) => {
    provider.remote.refresh(remoteRootOf(arg));
  });
  registerReporting(ctx, "gpuWorkbench.scanCheckpoints", () => scanWorkspace(ctx, provider, open));
  registerReporting(ctx, "gpuWorkbench.revealCheckpoint", async (arg) => {
    const p = pathOf(arg);
    if (!p) return;
    // A sharded checkpoint is its folder.
    const target = p.endsWith(".index.json") ? path.dirname(p) : p;
    await vscode.commands.executeCommand("revealInExplorer", vscode.Uri.file(target));
  });

  ctx.subscriptions.push(
    vscode.commands.registerCommand(CHECKPOINT_TEST_COMMANDS.editorState, async (p?: string) => {
      const i = await waitForInspector(inspectorFor, p);
      if (!i) return undefined;
      await i.whenLoaded();
      return i.renderedState();
    }),
    vscode.commands.registerCommand(CHECKPOINT_TEST_COMMANDS.driveEditor, async (drive: InspectorDrive, p?: string) => {
      await (await waitForInspector(inspectorFor, p))?.drive(drive);
    }),
    vscode.commands.registerCommand(
      CHECKPOINT_TEST_COMMANDS.editorStats,
      async (tensors: string[] | null, p?: string) => {
        const i = inspectorFor(p);
        if (!i) return undefined;
        await i.whenLoaded();
        return i.stats(tensors);
      },
    ),
    vscode.commands.registerCommand(CHECKPOINT_TEST_COMMANDS.diffState, async () => {
      const d = DiffPanel.active();
      if (!d) return undefined;
      await d.whenDone();
      return d.renderedState();
    }),
    vscode.commands.registerCommand(CHECKPOINT_TEST_COMMANDS.driveDiff, (drive: DiffDrive) => {
      DiffPanel.active()?.drive(drive);
    }),
    vscode.commands.registerCommand(CHECKPOINT_TEST_COMMANDS.treeItems, (settle?: boolean) =>
      provider.snapshot(settle === true),
    ),
    vscode.commands.registerCommand(CHECKPOINT_TEST_COMMANDS.remoteTree, () => provider.remote.snapshot()),
  );
}

/** The inspector for a path, giving a just-opened editor a moment to be resolved. */
async function waitForInspector(
  find: (p: unknown) => Inspector | undefined,
  p: string | undefined,
): Promise<Inspector | undefined> {
  for (let i = 0; i < 50; i++) {
    const found = find(p);
    if (found) return found;
    await new Promise((r) => setTimeout(r, 100));
  }
  return undefined;
}
