import * as vscode from "vscode";
import type { Ctx } from "../ctx";
import { VariablesProvider, VIEW_ID } from "./provider";

/** The provider of the Variables view (module state, for in-bundle callers). */
export let variablesProvider: VariablesProvider | undefined;

/** Entry point of this area, called once from activate(). */
export function activateVariables(ctx: Ctx): void {
  const provider = new VariablesProvider(ctx);
  variablesProvider = provider;
  const view = vscode.window.createTreeView(VIEW_ID, { treeDataProvider: provider, showCollapseAll: false });
  provider.attach(view);
  ctx.subscriptions.push(
    provider,
    view,
    vscode.commands.registerCommand("gpuWorkbench.refreshVariables", () => provider.refresh()),
    // Not contributed (no palette entry): lets integration tests, which run in their own
    // bundle, read what the view shows.
    vscode.commands.registerCommand("gpuWorkbench.internal.variablesSnapshot", () => provider.snapshot()),
  );
}
