import type { Ctx } from "../ctx";

/** Entry point of this area, called once from activate(). */
export function activateNotebooks(_ctx: Ctx): void {}
