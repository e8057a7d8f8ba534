import type { Ctx } from "../ctx";

/** Cells in Python files: commands, inline results, the kernel target item. */
export function activateCells(_ctx: Ctx): void {}
