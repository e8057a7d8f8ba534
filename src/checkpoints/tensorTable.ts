/**
 * The table logic of the checkpoint webviews, kept free of the DOM and `vscode` so it is
 * unit-tested: query parsing, filtering and sorting (into index arrays, so 100,000 rows are
 * never copied), and the window of rows a virtual scroller renders.
 */
import type { CheckpointDiffTensor, CheckpointTensor, TensorChange } from "../protocol";

export type SortDir = "asc" | "desc";

/** Compare strings with digit runs as numbers: `layers.2` sorts before `layers.10`. */
export function naturalCompare(a: string, b: string): number {
  let i = 0;
  let j = 0;
  while (i < a.length && j < b.length) {
    const ca = a.charCodeAt(i);
    const cb = b.charCodeAt(j);
    if (isDigit(ca) && isDigit(cb)) {
      let si = i;
      while (si < a.length && a.charCodeAt(si) === 48) si++;
      let sj = j;
      while (sj < b.length && b.charCodeAt(sj) === 48) sj++;
      let ei = si;
      while (ei < a.length && isDigit(a.charCodeAt(ei))) ei++;
      let ej = sj;
      while (ej < b.length && isDigit(b.charCodeAt(ej))) ej++;
      if (ei - si !== ej - sj) return ei - si - (ej - sj);
      for (let k = 0; k < ei - si; k++) {
        const d = a.charCodeAt(si + k) - b.charCodeAt(sj + k);
        if (d) return d;
      }
      i = ei;
      j = ej;
    } else {
      if (ca !== cb) return ca - cb;
      i++;
      j++;
    }
  }
  return a.length - i - (b.length - j);
}

function isDigit(c: number): boolean {
  return c >= 48 && c <= 57;
}

/** A search: free words match the name; `field:value` terms match a column. */
export interface ParsedQuery {
  words: string[];
  fields: { field: string; value: string }[];
}

const FIELDS = new Set(["dtype", "shape", "role", "change", "file"]);

/** Split a search box's text into lower-case words and `field:value` terms. */
export function parseQuery(text: string): ParsedQuery {
  const out: ParsedQuery = { words: [], fields: [] };
  for (const raw of text.trim().toLowerCase().split(/\s+/)) {
    if (!raw) continue;
    const colon = raw.indexOf(":");
    const field = colon > 0 ? raw.slice(0, colon) : "";
    if (FIELDS.has(field) && colon < raw.length - 1) out.fields.push({ field, value: raw.slice(colon + 1) });
    else out.words.push(raw);
  }
  return out;
}

/** `768x3072`: the shape as the table's search matches it (`shape:768x`). */
export function shapeKey(shape: readonly number[]): string {
  return shape.length ? shape.join("x") : "scalar";
}

function tensorField(t: CheckpointTensor, field: string): string {
  switch (field) {
    case "dtype":
      return t.dtype.toLowerCase();
    case "shape":
      return shapeKey(t.shape);
    case "role":
      return t.role;
    case "file":
      return (t.file ?? "").toLowerCase();
    default:
      return "";
  }
}

/** dtype is matched exactly (`dtype:f32` is not `dtype:f32_e4m3`), other fields as substrings. */
function fieldMatches(field: string, have: string, want: string): boolean {
  return field === "dtype" || field === "role" || field === "change" ? have === want : have.includes(want);
}

function tensorMatches(t: CheckpointTensor, lowerName: string, q: ParsedQuery): boolean {
  for (const w of q.words) if (!lowerName.includes(w)) return false;
  for (const f of q.fields) if (!fieldMatches(f.field, tensorField(t, f.field), f.value)) return false;
  return true;
}

export type TensorSortKey = "order" | "name" | "dtype" | "shape" | "numel" | "nbytes";

export interface TensorQuery {
  text: string;
  sort: TensorSortKey;
  dir: SortDir;
}

/** Lower-case names, computed once per summary and passed to every query. */
export function lowerNames(rows: readonly { name: string }[]): string[] {
  return rows.map((r) => r.name.toLowerCase());
}

/**
 * A string whose plain order is the natural order of `s` (digit runs padded to a fixed
 * width), so 100,000 names sort with native string comparison instead of a slow comparator.
 */
export function naturalKey(s: string): string {
  // A hand-written scan: a regex with a replacer function is several times slower here.
  let out = "";
  let i = 0;
  const n = s.length;
  while (i < n) {
    let e = i;
    const digits = isDigit(s.charCodeAt(i));
    while (e < n && isDigit(s.charCodeAt(e)) === digits) e++;
    const run = s.slice(i, e);
    out += digits && run.length < PAD.length ? PAD.slice(run.length) + run : run;
    i = e;
  }
  return out;
}

const PAD = "0000000000000000";

function byKey(keys: readonly string[]): (i: number, j: number) => number {
  return (i, j) => {
    const a = keys[i] ?? "";
    const b = keys[j] ?? "";
    return a < b ? -1 : a > b ? 1 : 0;
  };
}

function shapeSortKey(shape: readonly number[]): string {
  return String(shape.length).padStart(3, "0") + shape.map((d) => String(d).padStart(16, "0")).join(",");
}

/**
 * The rows of one summary with their sort orders computed once each: a search then only
 * walks a sorted order and keeps the matches (linear), so typing stays fast at 100,000 rows.
 */
export class TensorIndex {
  readonly names: string[];
  private readonly orders = new Map<string, number[]>();

  constructor(readonly rows: readonly CheckpointTensor[]) {
    this.names = lowerNames(rows);
  }

  /** Row indices sorted by `key`; ties keep file order in both directions. */
  order(key: TensorSortKey, dir: SortDir): number[] {
    const id = `${key}:${dir}`;
    const hit = this.orders.get(id);
    if (hit) return hit;
    const idx = this.rows.map((_, i) => i);
    let cmp: (i: number, j: number) => number;
    const rows = this.rows;
    switch (key) {
      case "name":
        cmp = byKey(rows.map((r) => naturalKey(r.name)));
        break;
      case "dtype":
        cmp = byKey(rows.map((r) => r.dtype));
        break;
      case "shape":
        cmp = byKey(rows.map((r) => shapeSortKey(r.shape)));
        break;
      case "numel":
        cmp = (i, j) => (rows[i]?.numel ?? 0) - (rows[j]?.numel ?? 0);
        break;
      case "nbytes":
        cmp = (i, j) => (rows[i]?.nbytes ?? -1) - (rows[j]?.nbytes ?? -1);
        break;
      default:
        cmp = () => 0;
    }
    const sign = dir === "desc" && key !== "order" ? -1 : 1;
    if (key !== "order") idx.sort((i, j) => sign * cmp(i, j) || i - j);
    else if (dir === "desc") idx.reverse();
    this.orders.set(id, idx);
    return idx;
  }

  /** The rows to show, as indices into `rows`, filtered by `q.text` in `q.sort` order. */
  query(q: TensorQuery): number[] {
    const order = this.order(q.sort, q.dir);
    const parsed = parseQuery(q.text);
    if (!parsed.words.length && !parsed.fields.length) return order.slice();
    const out: number[] = [];
    for (const i of order) {
      const row = this.rows[i];
      if (row && tensorMatches(row, this.names[i] ?? "", parsed)) out.push(i);
    }
    return out;
  }
}

/** One-off query (tests, small tables); views keep a TensorIndex. */
export function queryTensors(rows: readonly CheckpointTensor[], q: TensorQuery): number[] {
  return new TensorIndex(rows).query(q);
}

// ---- diff rows -------------------------------------------------------------------------

export const CHANGES: readonly TensorChange[] = [
  "added",
  "removed",
  "reshaped",
  "retyped",
  "changed",
  "unchanged",
  "unknown",
];

export type DiffSortKey = "change" | "name" | "dtype" | "shape";

export interface DiffQuery {
  text: string;
  /** Kinds to show; empty shows all. */
  changes: ReadonlySet<TensorChange>;
  sort: DiffSortKey;
  dir: SortDir;
}

/** What matters first when comparing: structural changes before value changes. */
const CHANGE_RANK: Record<TensorChange, number> = {
  removed: 0,
  added: 1,
  reshaped: 2,
  retyped: 3,
  changed: 4,
  unknown: 5,
  unchanged: 6,
};

function side(t: CheckpointDiffTensor): CheckpointTensor | null {
  return t.b ?? t.a;
}

function diffMatches(t: CheckpointDiffTensor, lowerName: string, q: ParsedQuery): boolean {
  for (const w of q.words) if (!lowerName.includes(w)) return false;
  for (const f of q.fields) {
    if (f.field === "change") {
      if (t.change !== f.value) return false;
      continue;
    }
    const a = t.a ? tensorField(t.a, f.field) : null;
    const b = t.b ? tensorField(t.b, f.field) : null;
    const ok = (a !== null && fieldMatches(f.field, a, f.value)) || (b !== null && fieldMatches(f.field, b, f.value));
    if (!ok) return false;
  }
  return true;
}

/** Diff rows with memoized sort orders, like TensorIndex. */
export class DiffIndex {
  readonly names: string[];
  private readonly orders = new Map<string, number[]>();

  constructor(readonly rows: readonly CheckpointDiffTensor[]) {
    this.names = lowerNames(rows);
  }

  order(key: DiffSortKey, dir: SortDir): number[] {
    const id = `${key}:${dir}`;
    const hit = this.orders.get(id);
    if (hit) return hit;
    const rows = this.rows;
    const keys = rows.map((r): string => {
      if (key === "change") return `${CHANGE_RANK[r.change]}${naturalKey(r.name)}`;
      if (key === "dtype") return side(r)?.dtype ?? "";
      if (key === "shape") return shapeSortKey(side(r)?.shape ?? []);
      return naturalKey(r.name);
    });
    const cmp = byKey(keys);
    const sign = dir === "desc" ? -1 : 1;
    const idx = rows.map((_, i) => i).sort((i, j) => sign * cmp(i, j) || i - j);
    this.orders.set(id, idx);
    return idx;
  }

  query(q: DiffQuery): number[] {
    const parsed = parseQuery(q.text);
    const out: number[] = [];
    for (const i of this.order(q.sort, q.dir)) {
      const row = this.rows[i];
      if (!row) continue;
      if (q.changes.size && !q.changes.has(row.change)) continue;
      if (diffMatches(row, this.names[i] ?? "", parsed)) out.push(i);
    }
    return out;
  }
}

/** One-off diff query (tests); views keep a DiffIndex. */
export function queryDiff(rows: readonly CheckpointDiffTensor[], q: DiffQuery): number[] {
  return new DiffIndex(rows).query(q);
}

// ---- virtual scrolling -------------------------------------------------------------------

export interface RowWindow {
  /** First row to render. */
  start: number;
  /** One past the last row to render. */
  end: number;
}

/** Rows a viewport shows at `scrollTop`, plus `overscan` rows on each side. */
export function visibleWindow(
  scrollTop: number,
  viewportHeight: number,
  rowHeight: number,
  total: number,
  overscan = 10,
): RowWindow {
  if (total <= 0 || rowHeight <= 0) return { start: 0, end: 0 };
  const first = Math.floor(Math.max(0, scrollTop) / rowHeight);
  const count = Math.ceil(Math.max(0, viewportHeight) / rowHeight) + 1;
  const start = Math.max(0, Math.min(first, total - 1) - overscan);
  const end = Math.min(total, first + count + overscan);
  return { start, end: Math.max(start, end) };
}

/** The scrollTop that brings `row` into view, moving as little as possible. */
export function scrollToReveal(row: number, scrollTop: number, viewportHeight: number, rowHeight: number): number {
  const top = row * rowHeight;
  const bottom = top + rowHeight;
  if (top < scrollTop) return top;
  if (bottom > scrollTop + viewportHeight) return Math.max(0, bottom - viewportHeight);
  return scrollTop;
}

/** The row a key moves the cursor to, within [0, total). */
export function moveCursor(key: string, cursor: number, total: number, pageRows: number): number | undefined {
  if (total <= 0) return undefined;
  const page = Math.max(1, pageRows - 1);
  let next: number;
  switch (key) {
    case "ArrowDown":
      next = cursor + 1;
      break;
    case "ArrowUp":
      next = cursor - 1;
      break;
    case "PageDown":
      next = cursor + page;
      break;
    case "PageUp":
      next = cursor - page;
      break;
    case "Home":
      next = 0;
      break;
    case "End":
      next = total - 1;
      break;
    default:
      return undefined;
  }
  return Math.max(0, Math.min(total - 1, next));
}
