import type { Ctx } from "../ctx";
import { NotebookKernelController } from "./controller";

/** The notebook controller, for integration tests. */
export let notebookController: NotebookKernelController | undefined;

/** Entry point of this area, called once from activate(). */
export function activateNotebooks(ctx: Ctx): void {
  notebookController = new NotebookKernelController(ctx);
  ctx.subscriptions.push(notebookController);
}
