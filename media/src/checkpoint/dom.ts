/** Small DOM helpers shared by the checkpoint webviews. */

export interface VsCodeApi<M> {
  postMessage(m: M): void;
  getState(): unknown;
  setState(s: unknown): void;
}

export function el<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  cls?: string,
  text?: string,
): HTMLElementTagNameMap[K] {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

export function button(
  label: string,
  onClick: () => void,
  opts: { cls?: string; title?: string } = {},
): HTMLButtonElement {
  const b = el("button", opts.cls ?? "ck-button", label);
  b.type = "button";
  if (opts.title) b.title = opts.title;
  b.addEventListener("click", onClick);
  return b;
}

export function must(id: string): HTMLElement {
  const e = document.getElementById(id);
  if (!e) throw new Error(`#${id} is missing`);
  return e;
}

export function basename(p: string): string {
  const parts = p.split(/[\\/]/).filter(Boolean);
  return parts[parts.length - 1] ?? p;
}

/** Short one-line JSON for a value in a table cell. */
export function shortJson(v: unknown, max = 200): string {
  let s: string;
  try {
    s = v === undefined ? "—" : typeof v === "string" ? v : JSON.stringify(v);
  } catch {
    s = String(v);
  }
  return s.length > max ? `${s.slice(0, max - 1)}…` : s;
}
