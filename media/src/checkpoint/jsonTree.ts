/**
 * A JSON value as an expandable tree of <details> (keyboard accessible as is). Children are
 * built when a node is first opened, and long lists show the first items with a "more" button.
 */
import { el } from "./dom";

const PAGE = 200;

function preview(v: unknown): string {
  if (Array.isArray(v)) return `[${v.length}]`;
  if (v !== null && typeof v === "object") return `{${Object.keys(v).length}}`;
  return "";
}

function scalar(v: unknown): HTMLElement {
  const cls =
    v === null
      ? "json-null"
      : typeof v === "string"
        ? "json-string"
        : typeof v === "number"
          ? "json-number"
          : "json-other";
  const text = typeof v === "string" ? JSON.stringify(v.length > 2000 ? `${v.slice(0, 2000)}…` : v) : String(v);
  return el("span", cls, text);
}

function isBranch(v: unknown): v is Record<string, unknown> | unknown[] {
  return v !== null && typeof v === "object" && Object.keys(v).length > 0;
}

/** One node: a key and its value. */
export function jsonNode(key: string, value: unknown, open = false): HTMLElement {
  if (!isBranch(value)) {
    const line = el("div", "json-leaf");
    line.append(el("span", "json-key", key), el("span", "json-colon", ": "), scalar(value));
    return line;
  }
  const d = el("details", "json-branch");
  const s = el("summary");
  s.append(el("span", "json-key", key), el("span", "json-preview", ` ${preview(value)}`));
  d.append(s);
  let built = false;
  const build = () => {
    if (built) return;
    built = true;
    const box = el("div", "json-children");
    d.append(box);
    const entries: [string, unknown][] = Array.isArray(value)
      ? value.map((v, i) => [String(i), v])
      : Object.entries(value);
    let shown = 0;
    const more = el("button", "ck-link");
    more.type = "button";
    const page = () => {
      const next = entries.slice(shown, shown + PAGE);
      for (const [k, v] of next) box.insertBefore(jsonNode(k, v), more.isConnected ? more : null);
      shown += next.length;
      if (shown < entries.length) {
        more.textContent = `Show ${Math.min(PAGE, entries.length - shown)} more of ${entries.length - shown}`;
        if (!more.isConnected) box.append(more);
      } else more.remove();
    };
    more.addEventListener("click", page);
    page();
  };
  d.addEventListener("toggle", () => d.open && build());
  if (open) {
    d.open = true;
    build();
  }
  return d;
}

/** A whole value; with `openTop`, its top-level branches start open. */
export function jsonTree(value: unknown, openTop = false): HTMLElement {
  const root = el("div", "json-tree");
  if (!isBranch(value)) {
    root.append(scalar(value));
    return root;
  }
  const entries: [string, unknown][] = Array.isArray(value)
    ? value.map((v, i) => [String(i), v])
    : Object.entries(value);
  for (const [k, v] of entries.slice(0, PAGE)) root.append(jsonNode(k, v, openTop));
  if (entries.length > PAGE)
    root.append(jsonNode(`… ${entries.length - PAGE} more`, Object.fromEntries(entries.slice(PAGE))));
  return root;
}
