import type { Ctx } from "../ctx";

/** Entry point of this area, called once from activate(). */
export function activateResults(_ctx: Ctx): void {}
