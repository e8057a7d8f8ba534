import type { Ctx } from "../ctx";

/** Entry point of this area, called once from activate(). */
export function activateVariables(_ctx: Ctx): void {}
