/**
 * Cells of Python documents, parsed by the backend (`cells/parse`, one place for the marker
 * rules) and cached per document version.
 */
import type * as vscode from "vscode";
import type { BackendManager } from "../backend/manager";
import type { Config } from "../config";
import * as proto from "../protocol";

export class CellIndex {
  private readonly cache = new Map<string, { version: number; markers: string; cells: Promise<proto.Cell[]> }>();

  constructor(
    private readonly backend: BackendManager,
    private readonly config: Config,
  ) {}

  /** The document's cells; a file without markers is one cell. */
  cells(doc: vscode.TextDocument): Promise<proto.Cell[]> {
    const key = doc.uri.toString();
    const markers = this.config.cellMarkers;
    const markerKey = markers.join("\n");
    const hit = this.cache.get(key);
    if (hit && hit.version === doc.version && hit.markers === markerKey) return hit.cells;
    const client = this.backend.client;
    if (!client) return Promise.reject(new Error("The GPU Workbench backend is not running."));
    const cells = client.sendRequest(proto.cellsParse, { text: doc.getText(), markers }).then((r) => r.cells);
    cells.catch(() => this.cache.delete(key));
    this.cache.set(key, { version: doc.version, markers: markerKey, cells });
    return cells;
  }

  /** True when the document has at least one marker (so cell commands and keys apply). */
  async hasMarkers(doc: vscode.TextDocument): Promise<boolean> {
    const cells = await this.cells(doc);
    return cells.some((c) => c.codeStartLine > c.startLine);
  }

  /** The cell containing `line` (0-based). */
  async cellAt(doc: vscode.TextDocument, line: number): Promise<proto.Cell | undefined> {
    const cells = await this.cells(doc);
    return (
      cells.find((c) => line >= c.startLine && line <= c.endLine) ?? cells.filter((c) => c.startLine <= line).pop()
    );
  }

  forget(doc: vscode.TextDocument): void {
    this.cache.delete(doc.uri.toString());
  }
}
