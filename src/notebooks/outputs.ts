/**
 * Kernel messages (Jupyter's shapes) to notebook outputs, with the output metadata that
 * VS Code's built-in ipynb serializer reads back when it saves the notebook.
 */
import * as vscode from "vscode";
import type * as proto from "../protocol";

/** Mime types whose values arrive as base64 text. */
const BINARY_MIMES = new Set(["image/png", "image/jpeg", "image/gif", "image/bmp", "image/webp"]);

/** One output per display_data / execute_result, with an item per mime type. */
export function richOutput(
  kind: "display_data" | "execute_result",
  data: proto.MimeBundle,
  metadata: Record<string, unknown>,
  executionCount?: number,
): vscode.NotebookCellOutput {
  const items: vscode.NotebookCellOutputItem[] = [];
  for (const [mime, value] of Object.entries(data)) {
    const item = outputItem(mime, value);
    if (item) items.push(item);
  }
  const meta: Record<string, unknown> = { outputType: kind, metadata };
  if (kind === "execute_result") meta.executionCount = executionCount ?? null;
  return new vscode.NotebookCellOutput(items, meta);
}

export function outputItem(mime: string, value: unknown): vscode.NotebookCellOutputItem | undefined {
  if (value === undefined || value === null) return undefined;
  if (BINARY_MIMES.has(mime)) {
    const b64 = Array.isArray(value) ? value.join("") : String(value);
    return new vscode.NotebookCellOutputItem(Buffer.from(b64.replace(/\s+/g, ""), "base64"), mime);
  }
  if (mime === "application/json" || mime.endsWith("+json")) {
    return vscode.NotebookCellOutputItem.json(value, mime);
  }
  // Jupyter allows multi-line strings as arrays of lines.
  const text = Array.isArray(value) ? value.join("") : typeof value === "string" ? value : JSON.stringify(value);
  return vscode.NotebookCellOutputItem.text(text, mime);
}

export function errorOutput(ename: string, evalue: string, traceback: string[]): vscode.NotebookCellOutput {
  return new vscode.NotebookCellOutput(
    [vscode.NotebookCellOutputItem.error({ name: ename, message: evalue, stack: traceback.join("\n") })],
    { outputType: "error", originalError: { output_type: "error", ename, evalue, traceback } },
  );
}

export function streamItem(name: "stdout" | "stderr", text: string): vscode.NotebookCellOutputItem {
  return name === "stderr" ? vscode.NotebookCellOutputItem.stderr(text) : vscode.NotebookCellOutputItem.stdout(text);
}

/**
 * A stream's text as a terminal would show it: `\r` returns to the start of the line and
 * what follows overwrites it (progress bars), `\n` ends the line. Appends incrementally, so
 * a long stream of chunks is not re-parsed from its start each time.
 */
export class StreamText {
  /** Finished lines, each ending with `\n`. */
  private done = "";
  /** The line being written and the cursor in it. */
  private line = "";
  private cursor = 0;

  append(chunk: string): void {
    let i = 0;
    while (i < chunk.length) {
      // Copy runs of plain characters at once.
      let j = i;
      while (j < chunk.length && chunk[j] !== "\r" && chunk[j] !== "\n") j++;
      if (j > i) this.write(chunk.slice(i, j));
      if (j >= chunk.length) break;
      if (chunk[j] === "\n") {
        this.done += `${this.line}\n`;
        this.line = "";
        this.cursor = 0;
      } else if (chunk[j + 1] === "\n") {
        // \r\n is a plain line end.
        this.done += `${this.line}\n`;
        this.line = "";
        this.cursor = 0;
        j++;
      } else {
        this.cursor = 0;
      }
      i = j + 1;
    }
  }

  private write(s: string): void {
    if (this.cursor === this.line.length) this.line += s;
    else this.line = this.line.slice(0, this.cursor) + s + this.line.slice(this.cursor + s.length);
    this.cursor += s.length;
  }

  get text(): string {
    return this.done + this.line;
  }
}
