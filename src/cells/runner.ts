/**
 * Running code from editors: cells, ranges of cells, selections. Each run is recorded in
 * the execution store before it is sent, so inline results and the panel see it queued.
 */
import { randomUUID } from "node:crypto";
import * as vscode from "vscode";
import type { Ctx } from "../ctx";
import type * as proto from "../protocol";
import type { CellIndex } from "./cellIndex";

export class CellRunner {
  constructor(
    private readonly ctx: Ctx,
    private readonly index: CellIndex,
  ) {}

  /** Queue cells in order on the document's kernel; several at once stop at an error. */
  async runCells(doc: vscode.TextDocument, cells: proto.Cell[]): Promise<string[]> {
    const code = cells.filter((c) => c.kind === "code" && hasCode(c.code));
    if (!code.length) return [];
    const kernelId = await this.kernelFor(doc);
    const stopOnError = code.length > 1 && this.ctx.config.stopOnError;
    const ids = code.map(() => randomUUID());
    code.forEach((cell, i) => {
      this.ctx.executions.add(ids[i] as string, kernelId, cell.code, {
        uri: doc.uri.toString(),
        line: cell.codeStartLine,
        title: cell.title || `Cell ${cell.index + 1}`,
        cellIndex: cell.index,
      });
    });
    // Sent back to back (not one after another's reply): the kernel queues them in order and
    // drops the rest when one fails with stopOnError.
    await Promise.all(
      code.map((cell, i) =>
        this.ctx.kernels.execute({
          kernelId,
          code: cell.code,
          file: doc.uri.scheme === "file" ? doc.uri.fsPath : doc.uri.toString(),
          line: cell.codeStartLine,
          stopOnError,
          executionId: ids[i] as string,
          ...(stopOnError && i > 0 ? { after: ids[i - 1] as string } : {}),
        }),
      ),
    );
    return ids;
  }

  /** Run arbitrary text that starts at `line` of the document (a selection). */
  async runText(doc: vscode.TextDocument, code: string, line: number): Promise<string> {
    const kernelId = await this.kernelFor(doc);
    const id = randomUUID();
    this.ctx.executions.add(id, kernelId, code, { uri: doc.uri.toString(), line, title: "Selection" });
    await this.ctx.kernels.execute({
      kernelId,
      code,
      file: doc.uri.scheme === "file" ? doc.uri.fsPath : doc.uri.toString(),
      line,
      executionId: id,
    });
    return id;
  }

  private async kernelFor(doc: vscode.TextDocument): Promise<string> {
    if (!vscode.workspace.isTrusted) {
      throw new Error("GPU Workbench runs no code in Restricted Mode. Trust this folder to run cells.");
    }
    return vscode.window.withProgress({ location: vscode.ProgressLocation.Window, title: "Starting kernel…" }, () =>
      this.ctx.bindings.ensureKernel(doc.uri),
    );
  }

  // ---- choosing cells ----------------------------------------------------------------

  async cellAt(doc: vscode.TextDocument, line: number): Promise<proto.Cell | undefined> {
    return this.index.cellAt(doc, line);
  }

  async above(doc: vscode.TextDocument, line: number): Promise<proto.Cell[]> {
    const at = await this.index.cellAt(doc, line);
    return (await this.index.cells(doc)).filter((c) => at && c.index < at.index);
  }

  async below(doc: vscode.TextDocument, line: number): Promise<proto.Cell[]> {
    const at = await this.index.cellAt(doc, line);
    return (await this.index.cells(doc)).filter((c) => at && c.index >= at.index);
  }

  async all(doc: vscode.TextDocument): Promise<proto.Cell[]> {
    return this.index.cells(doc);
  }
}

/** A cell of only blank lines and comments has nothing to run. */
function hasCode(code: string): boolean {
  return code.split("\n").some((l) => {
    const t = l.trim();
    return t !== "" && !t.startsWith("#");
  });
}
