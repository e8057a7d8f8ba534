/**
 * Carriage-return semantics applied incrementally, chunk by chunk: a progress bar that
 * redraws its line with "\r" ends up as one line, whatever the chunk boundaries were.
 * Same result as `applyCarriageReturns` on the whole text, without keeping the whole text.
 */
export class TerminalLine {
  private line = "";
  private col = 0;

  /** Feed raw text; returns the lines it completed, each ending with "\n". */
  feed(chunk: string): string {
    const done: string[] = [];
    let start = 0;
    for (let i = 0; i < chunk.length; i++) {
      const c = chunk.charCodeAt(i);
      if (c !== 10 && c !== 13) continue;
      this.write(chunk.slice(start, i));
      if (c === 10) {
        done.push(`${this.line}\n`);
        this.line = "";
      }
      this.col = 0;
      start = i + 1;
    }
    this.write(chunk.slice(start));
    return done.join("");
  }

  /** The unfinished last line as a terminal would show it now. */
  get tail(): string {
    return this.line;
  }

  private write(part: string): void {
    if (!part) return;
    if (this.col === this.line.length) this.line += part;
    else this.line = this.line.slice(0, this.col) + part + this.line.slice(this.col + part.length);
    this.col += part.length;
  }
}
