/**
 * A table that renders only the rows in view, so 100,000 rows scroll smoothly: a spacer as
 * tall as all rows, and a window of row elements moved to the scroll position. A grid in
 * ARIA terms: the body takes focus and arrow keys, Page Up/Down, Home and End move the
 * active row (aria-activedescendant); Enter activates it.
 */
import { moveCursor, type SortDir, scrollToReveal, visibleWindow } from "../../../src/checkpoints/tensorTable";
import { el } from "./dom";

export interface Column<R> {
  key: string;
  label: string;
  /** A CSS grid track, e.g. `minmax(12em, 3fr)`. */
  width: string;
  sortable?: boolean;
  align?: "end";
  render(row: R, cell: HTMLElement, index: number): void;
}

export interface VirtualTableOptions<R> {
  label: string;
  columns: Column<R>[];
  rowHeight: number;
  onSort?: (key: string) => void;
  /** A row got the cursor (click or keys). */
  onSelect?: (row: R, index: number) => void;
  /** Enter or double-click on a row. */
  onActivate?: (row: R, index: number) => void;
}

let tables = 0;

export class VirtualTable<R> {
  readonly root: HTMLElement;
  private readonly body: HTMLElement;
  private readonly spacer: HTMLElement;
  private readonly rowsEl: HTMLElement;
  private readonly headers = new Map<string, HTMLElement>();
  private readonly id = `vt${++tables}`;
  private rows: readonly R[] = [];
  private order: number[] = [];
  private cursor = -1;
  private frame = 0;
  private lastWindow = "";

  constructor(private readonly opts: VirtualTableOptions<R>) {
    this.root = el("div", "vtable");
    this.root.setAttribute("role", "grid");
    this.root.setAttribute("aria-label", opts.label);
    this.root.style.setProperty("--vt-cols", opts.columns.map((c) => c.width).join(" "));
    this.root.style.setProperty("--vt-row", `${opts.rowHeight}px`);
    const head = el("div", "vt-head");
    head.setAttribute("role", "row");
    head.setAttribute("aria-rowindex", "1");
    for (const c of opts.columns) {
      const h = el("div", `vt-cell vt-h${c.align === "end" ? " end" : ""}`);
      h.setAttribute("role", "columnheader");
      h.dataset.key = c.key;
      if (c.sortable && opts.onSort) {
        const b = el("button", "vt-sort", c.label);
        b.type = "button";
        b.title = `Sort by ${c.label.toLowerCase()}`;
        b.addEventListener("click", () => opts.onSort?.(c.key));
        h.append(b);
      } else {
        h.textContent = c.label;
      }
      this.headers.set(c.key, h);
      head.append(h);
    }
    this.body = el("div", "vt-body");
    this.body.tabIndex = 0;
    this.body.setAttribute("role", "rowgroup");
    this.spacer = el("div", "vt-spacer");
    this.rowsEl = el("div", "vt-rows");
    this.spacer.append(this.rowsEl);
    this.body.append(this.spacer);
    this.root.append(head, this.body);
    this.body.addEventListener("scroll", () => this.schedule());
    this.body.addEventListener("keydown", (e) => this.onKey(e));
    // Keyboard users land on a row: the first one in view when none has the cursor yet.
    this.body.addEventListener("focus", () => {
      if (this.cursor < 0 && this.order.length) {
        const first = Math.min(this.order.length - 1, Math.floor(this.body.scrollTop / this.opts.rowHeight));
        this.setCursor(first, true);
      }
    });
    this.rowsEl.addEventListener("click", (e) => {
      const pos = this.positionOf(e.target);
      if (pos !== undefined) this.setCursor(pos, false);
    });
    this.rowsEl.addEventListener("dblclick", (e) => {
      const pos = this.positionOf(e.target);
      if (pos !== undefined) this.activate(pos);
    });
    new ResizeObserver(() => this.schedule()).observe(this.body);
  }

  /** Show `order` (indices into `rows`); keeps the cursor on the same row when it is still shown. */
  setRows(rows: readonly R[], order: number[], keepScroll = false): void {
    const current = this.cursor >= 0 ? this.order[this.cursor] : undefined;
    this.rows = rows;
    this.order = order;
    this.cursor = current === undefined ? -1 : order.indexOf(current);
    this.root.setAttribute("aria-rowcount", String(order.length + 1));
    this.spacer.style.height = `${order.length * this.opts.rowHeight}px`;
    if (!keepScroll) this.body.scrollTop = 0;
    this.lastWindow = "";
    this.render();
  }

  setSort(key: string, dir: SortDir): void {
    for (const [k, h] of this.headers) {
      const on = k === key;
      if (on) h.setAttribute("aria-sort", dir === "asc" ? "ascending" : "descending");
      else h.removeAttribute("aria-sort");
      h.classList.toggle("sorted", on);
      h.classList.toggle("desc", on && dir === "desc");
    }
  }

  /** Row index (into `rows`) under the cursor. */
  get selectedIndex(): number | undefined {
    return this.cursor >= 0 ? this.order[this.cursor] : undefined;
  }

  /** Put the cursor on the row with this index into `rows`, scrolling it into view. */
  select(index: number): boolean {
    const pos = this.order.indexOf(index);
    if (pos < 0) return false;
    this.setCursor(pos, false);
    return true;
  }

  get renderedRows(): number {
    return this.rowsEl.childElementCount;
  }

  get matching(): number {
    return this.order.length;
  }

  get scrollTop(): number {
    return this.body.scrollTop;
  }

  set scrollTop(v: number) {
    this.body.scrollTop = v;
    this.render();
  }

  focus(): void {
    this.body.focus();
  }

  /** Redraw the visible rows (e.g. after cells' content changed). */
  refresh(): void {
    this.lastWindow = "";
    this.render();
  }

  private schedule(): void {
    if (this.frame) return;
    this.frame = requestAnimationFrame(() => {
      this.frame = 0;
      this.render();
    });
  }

  private render(): void {
    const h = this.opts.rowHeight;
    const viewport = this.body.clientHeight || 400;
    const w = visibleWindow(this.body.scrollTop, viewport, h, this.order.length);
    const key = `${w.start}:${w.end}:${this.cursor}`;
    if (key === this.lastWindow) return;
    this.lastWindow = key;
    this.rowsEl.style.transform = `translateY(${w.start * h}px)`;
    const frag = document.createDocumentFragment();
    for (let pos = w.start; pos < w.end; pos++) {
      const index = this.order[pos];
      const row = index === undefined ? undefined : this.rows[index];
      if (row === undefined || index === undefined) continue;
      const r = el("div", "vt-row");
      r.id = `${this.id}-r${pos}`;
      r.setAttribute("role", "row");
      r.setAttribute("aria-rowindex", String(pos + 2));
      r.dataset.pos = String(pos);
      if (pos === this.cursor) {
        r.classList.add("selected");
        r.setAttribute("aria-selected", "true");
      }
      for (const c of this.opts.columns) {
        const cell = el("div", `vt-cell${c.align === "end" ? " end" : ""}`);
        cell.setAttribute("role", "gridcell");
        c.render(row, cell, index);
        r.append(cell);
      }
      frag.append(r);
    }
    this.rowsEl.replaceChildren(frag);
    if (this.cursor >= w.start && this.cursor < w.end) {
      this.body.setAttribute("aria-activedescendant", `${this.id}-r${this.cursor}`);
    } else {
      this.body.removeAttribute("aria-activedescendant");
    }
  }

  private positionOf(target: EventTarget | null): number | undefined {
    const row = target instanceof Element ? target.closest<HTMLElement>(".vt-row") : null;
    const pos = row ? Number(row.dataset.pos) : Number.NaN;
    return Number.isInteger(pos) ? pos : undefined;
  }

  private setCursor(pos: number, reveal: boolean): void {
    this.cursor = pos;
    if (reveal) {
      const h = this.opts.rowHeight;
      this.body.scrollTop = scrollToReveal(pos, this.body.scrollTop, this.body.clientHeight || 400, h);
    }
    this.lastWindow = "";
    this.render();
    const index = this.order[pos];
    const row = index === undefined ? undefined : this.rows[index];
    if (row !== undefined && index !== undefined) this.opts.onSelect?.(row, index);
  }

  private activate(pos: number): void {
    const index = this.order[pos];
    const row = index === undefined ? undefined : this.rows[index];
    if (row !== undefined && index !== undefined) this.opts.onActivate?.(row, index);
  }

  private onKey(e: KeyboardEvent): void {
    if (e.key === "Enter" && this.cursor >= 0) {
      e.preventDefault();
      this.activate(this.cursor);
      return;
    }
    const page = Math.floor((this.body.clientHeight || 400) / this.opts.rowHeight);
    const next = moveCursor(e.key, this.cursor, this.order.length, page);
    if (next === undefined) return;
    e.preventDefault();
    this.setCursor(next, true);
  }
}
