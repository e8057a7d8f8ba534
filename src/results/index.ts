/**
 * The results panel: registration of its command, its serializer (restores the panel after
 * a reload) and the automatic opening when a cell from an editor starts.
 */
import * as vscode from "vscode";
import type { Ctx } from "../ctx";
import type { RenderedState } from "./messages";
import { ResultsPanel, VIEW_TYPE } from "./panel";

/** Hidden commands for the integration tests (the test bundle has its own module copies). */
export const TEST_COMMANDS = {
  renderedState: "_gpuWorkbench.results.renderedState",
  openFullOutput: "_gpuWorkbench.results.openFullOutput",
} as const;

/** Entry point of this area, called once from activate(). */
export function activateResults(ctx: Ctx): void {
  // Executions that exist already (persisted, replayed) never open the panel by themselves.
  const seen = new Set(ctx.executions.all().map((r) => r.executionId));
  ctx.subscriptions.push(
    vscode.commands.registerCommand("gpuWorkbench.showResults", () => {
      ResultsPanel.show(ctx, false);
    }),
    vscode.window.registerWebviewPanelSerializer(VIEW_TYPE, {
      async deserializeWebviewPanel(panel: vscode.WebviewPanel) {
        ResultsPanel.revive(ctx, panel);
      },
    }),
    ctx.executions.onDidChange((r) => {
      if (seen.has(r.executionId)) return;
      seen.add(r.executionId);
      if (!ResultsPanel.current && r.source && (r.status === "queued" || r.status === "running")) {
        ResultsPanel.show(ctx, true);
      }
    }),
    ctx.executions.onDidClear(() => {
      for (const id of seen) if (!ctx.executions.get(id)) seen.delete(id);
    }),
    vscode.commands.registerCommand(TEST_COMMANDS.renderedState, (): Promise<RenderedState | undefined> => {
      return ResultsPanel.current ? ResultsPanel.current.renderedState() : Promise.resolve(undefined);
    }),
    vscode.commands.registerCommand(TEST_COMMANDS.openFullOutput, async (executionId: string, index: number) => {
      const editor = await ResultsPanel.current?.openFullOutput(executionId, index);
      return editor?.document.lineCount;
    }),
  );
}
