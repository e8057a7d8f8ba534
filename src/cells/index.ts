import type { Ctx } from "../ctx";
import { CellIndex } from "./cellIndex";
import { registerCellCommands } from "./commands";
import { InlineResults } from "./inline";
import { CellRunner } from "./runner";
import { KernelTargetItem } from "./targetItem";

/** Cells in Python files: commands, inline results, the kernel target item and context keys. */
export function activateCells(ctx: Ctx): void {
  const index = new CellIndex(ctx.backend, ctx.config);
  const runner = new CellRunner(ctx, index);
  registerCellCommands(ctx, index, runner);
  ctx.subscriptions.push(new InlineResults(ctx, index), new KernelTargetItem(ctx, index));
}
