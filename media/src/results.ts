/**
 * Front end of the results panel. Renders entries from the host's messages (see
 * src/results/messages.ts). Output markup comes only from ansi_up (HTML escaped) and
 * markdown-it (raw HTML off); HTML outputs go into sandboxed srcdoc iframes without
 * scripts, which also inherit this page's CSP.
 */
import { AnsiUp } from "ansi_up";
import MarkdownIt from "markdown-it";
import type {
  EntryHeader,
  EntryUpdate,
  HostMessage,
  RenderedEntry,
  RenderedState,
  StreamDelta,
  ViewMessage,
  ViewOutput,
} from "../../src/results/messages";

interface VsCodeApi {
  postMessage(m: ViewMessage): void;
  getState(): unknown;
  setState(s: unknown): void;
}
declare function acquireVsCodeApi(): VsCodeApi;

const vscode = acquireVsCodeApi();
const markdown = new MarkdownIt({ html: false, linkify: true });

interface StreamView {
  committed: HTMLElement;
  tail: HTMLElement;
  ansi: AnsiUp;
  pre: HTMLElement;
  note: HTMLElement | undefined;
}

interface Entry {
  id: string;
  el: HTMLElement;
  header: HTMLElement;
  twisty: HTMLButtonElement;
  count: HTMLElement;
  location: HTMLButtonElement;
  title: HTMLElement;
  status: HTMLElement;
  duration: HTMLElement;
  body: HTMLElement;
  outputs: number;
  streams: Map<number, StreamView>;
  collapsed: boolean;
  runningSince: number | undefined;
  last: EntryHeader | undefined;
}

const root = must("gpuwb-results");
const list = must("entries");
const empty = must("empty");
const summary = must("summary");
const collapseButton = must("collapse") as HTMLButtonElement;
const entries = new Map<string, Entry>();
const initialState = vscode.getState() as { collapsed?: string[] } | undefined;
const collapsedIds = new Set<string>(initialState?.collapsed ?? []);

function must(id: string): HTMLElement {
  const el = document.getElementById(id);
  if (!el) throw new Error(`#${id} is missing`);
  return el;
}

function post(m: ViewMessage): void {
  vscode.postMessage(m);
}

function el<K extends keyof HTMLElementTagNameMap>(tag: K, cls?: string, text?: string): HTMLElementTagNameMap[K] {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

/**
 * Parses trusted-shape markup (ansi_up, markdown-it) into nodes. Their inline `style`
 * attributes would be refused by the CSP, so they are applied through the CSSOM instead.
 * Every literal `"` in such markup delimits an attribute: text and values are escaped.
 */
function fragment(html: string): DocumentFragment {
  const t = document.createElement("template");
  t.innerHTML = html.replace(/ style="([^"]*)"/g, ' data-style="$1"');
  for (const node of t.content.querySelectorAll<HTMLElement>("[data-style]")) {
    for (const decl of (node.dataset.style ?? "").split(";")) {
      const i = decl.indexOf(":");
      if (i > 0) node.style.setProperty(decl.slice(0, i).trim(), decl.slice(i + 1).trim());
    }
    node.removeAttribute("data-style");
  }
  return t.content;
}

function newAnsi(): AnsiUp {
  const a = new AnsiUp();
  a.use_classes = true;
  a.escape_html = true;
  return a;
}

function ansiFragment(text: string, ansi = newAnsi()): DocumentFragment {
  return fragment(ansi.ansi_to_html(text));
}

function formatDuration(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)} s`;
  const s = Math.round(ms / 1000);
  return `${Math.floor(s / 60)} min ${s % 60} s`;
}

function formatSize(chars: number): string {
  return `${(chars / 1_000_000).toFixed(chars < 100_000 ? 2 : 1)} MB`;
}

const STATUS_TEXT: Record<EntryHeader["status"], string> = {
  queued: "queued",
  running: "running",
  ok: "done",
  error: "error",
  interrupted: "interrupted",
  aborted: "skipped",
  died: "kernel died",
};

// ---- entries ----

function createEntry(h: EntryHeader): Entry {
  const item = el("section", "entry");
  item.setAttribute("role", "listitem");
  item.dataset.id = h.executionId;
  const header = el("div", "header");
  header.tabIndex = 0;
  const twisty = el("button", "twisty icon");
  twisty.type = "button";
  twisty.tabIndex = -1;
  const count = el("span", "count");
  const location = el("button", "location link");
  location.type = "button";
  location.tabIndex = -1;
  const title = el("span", "title");
  const status = el("span", "status");
  const duration = el("span", "duration");
  header.append(twisty, count, location, title, status, duration);
  const body = el("div", "outputs");
  item.append(header, body);
  const e: Entry = {
    id: h.executionId,
    el: item,
    header,
    twisty,
    count,
    location,
    title,
    status,
    duration,
    body,
    outputs: 0,
    streams: new Map(),
    collapsed: false,
    runningSince: undefined,
    last: undefined,
  };
  twisty.addEventListener("click", (ev) => {
    ev.stopPropagation();
    setCollapsed(e, !e.collapsed);
    saveState();
  });
  location.addEventListener("click", (ev) => {
    ev.stopPropagation();
    post({ type: "openSource", executionId: e.id });
  });
  header.addEventListener("click", () => {
    setCollapsed(e, !e.collapsed);
    saveState();
  });
  header.addEventListener("keydown", (ev) => onHeaderKey(e, ev));
  setCollapsed(e, collapsedIds.has(h.executionId));
  entries.set(h.executionId, e);
  list.append(item);
  return e;
}

function onHeaderKey(e: Entry, ev: KeyboardEvent): void {
  if (ev.key === "Enter") {
    if (e.last?.location) post({ type: "openSource", executionId: e.id });
  } else if (ev.key === " ") {
    setCollapsed(e, !e.collapsed);
    saveState();
  } else if (ev.key === "ArrowDown" || ev.key === "ArrowUp") {
    const headers = [...list.querySelectorAll<HTMLElement>(".entry > .header")];
    const i = headers.indexOf(e.header) + (ev.key === "ArrowDown" ? 1 : -1);
    headers[Math.max(0, Math.min(headers.length - 1, i))]?.focus();
  } else if (ev.key === "Home" || ev.key === "End") {
    const headers = list.querySelectorAll<HTMLElement>(".entry > .header");
    headers[ev.key === "Home" ? 0 : headers.length - 1]?.focus();
  } else {
    return;
  }
  ev.preventDefault();
}

function setCollapsed(e: Entry, collapsed: boolean): void {
  e.collapsed = collapsed;
  e.el.classList.toggle("collapsed", collapsed);
  e.header.setAttribute("aria-expanded", String(!collapsed));
  e.twisty.textContent = collapsed ? "▸" : "▾";
  e.twisty.setAttribute("aria-label", collapsed ? "Expand" : "Collapse");
  if (collapsed) collapsedIds.add(e.id);
  else collapsedIds.delete(e.id);
}

function saveState(): void {
  vscode.setState({ collapsed: [...collapsedIds].filter((id) => entries.has(id)) });
  refreshToolbar();
}

function renderHeader(e: Entry, h: EntryHeader): void {
  e.last = h;
  e.el.className = `entry status-${h.status}${h.stale ? " stale" : ""}${e.collapsed ? " collapsed" : ""}`;
  e.count.textContent = h.executionCount === null ? "[ ]" : `[${h.executionCount}]`;
  e.location.textContent = h.location ?? "";
  e.location.hidden = !h.location;
  e.location.title = h.location ? `Open ${h.location}` : "";
  e.title.textContent = h.title;
  e.status.textContent = STATUS_TEXT[h.status] + (h.stale ? " (edited since)" : "");
  e.runningSince = h.status === "running" ? performance.now() - (h.elapsedMs ?? 0) : undefined;
  updateDuration(e);
  const where = h.location ? `, ${h.location}` : "";
  e.header.setAttribute("aria-label", `${h.title}${where}, ${e.status.textContent}, ${e.duration.textContent}`);
  e.header.title = h.location ? "Enter opens the source; Space collapses" : "Space collapses";
}

function updateDuration(e: Entry): void {
  const h = e.last;
  if (!h) return;
  if (e.runningSince !== undefined) e.duration.textContent = formatDuration(performance.now() - e.runningSince);
  else e.duration.textContent = h.durationMs === null ? "" : formatDuration(h.durationMs);
}

// ---- outputs ----

function renderOutput(e: Entry, index: number, o: ViewOutput): HTMLElement {
  switch (o.kind) {
    case "stream": {
      const pre = el("pre", `output stream ${o.name}`);
      const committed = el("span", "committed");
      const tail = el("span", "tail");
      pre.append(committed, tail);
      e.streams.set(index, { pre, committed, tail, ansi: newAnsi(), note: undefined });
      const wrap = el("div", "stream-wrap");
      wrap.append(pre);
      return wrap;
    }
    case "image": {
      const img = el("img", "output image");
      img.alt = o.alt;
      if (o.width) img.width = o.width;
      if (o.height) img.height = o.height;
      img.src = `data:${o.mime};base64,${o.base64}`;
      return img;
    }
    case "html":
      return htmlFrame(o.html);
    case "markdown": {
      const div = el("div", "output markdown");
      div.append(fragment(markdown.render(o.markdown)));
      return div;
    }
    case "json": {
      let text = o.json;
      try {
        text = JSON.stringify(JSON.parse(o.json), null, 2);
      } catch {
        // not JSON after all: show it as it is
      }
      return el("pre", "output json", text);
    }
    case "text": {
      const pre = el("pre", "output text");
      pre.append(ansiFragment(o.text));
      return pre;
    }
    case "error": {
      const div = el("div", "output error");
      const tb = el("pre", "traceback");
      tb.append(ansiFragment(o.traceback));
      div.append(tb);
      if (o.frames.length) {
        const ul = el("ul", "frames");
        ul.setAttribute("aria-label", "Stack frames");
        o.frames.forEach((f, frameIndex) => {
          const li = el("li");
          if (f.openable) {
            const b = el("button", "link frame", f.label);
            b.type = "button";
            b.title = `Open ${f.label}`;
            b.addEventListener("click", () =>
              post({ type: "openFrame", executionId: e.id, outputIndex: index, frameIndex }),
            );
            li.append(b);
          } else {
            li.append(el("span", "frame", f.label));
          }
          ul.append(li);
        });
        div.append(ul);
      }
      return div;
    }
  }
}

/** An HTML output in a frame that can run no script and reach neither the panel nor VS Code. */
function htmlFrame(html: string): HTMLElement {
  const wrap = el("div", "output html");
  const frame = el("iframe");
  frame.setAttribute("sandbox", "");
  frame.setAttribute("referrerpolicy", "no-referrer");
  frame.setAttribute("loading", "lazy");
  frame.title = "HTML output";
  frame.srcdoc = `<!DOCTYPE html><html><head><meta charset="utf-8"></head><body>${html}</body></html>`;
  // The frame's content cannot report its height (no script), so estimate it from the
  // markup and let the user resize; long content scrolls inside the frame.
  const rows =
    1 + (html.match(/<(tr|br|p|li|div|h[1-6]|pre|table|img)\b/gi)?.length ?? 0) + (html.match(/\n/g)?.length ?? 0) / 4;
  wrap.style.height = `${Math.round(Math.min(400, Math.max(48, rows * 24 + 16)))}px`;
  wrap.append(frame);
  return wrap;
}

function applyStream(e: Entry, d: StreamDelta): void {
  const s = e.streams.get(d.index);
  if (!s) return;
  if (d.commit) s.committed.append(fragment(s.ansi.ansi_to_html(d.commit)));
  if (d.tail !== undefined) s.tail.replaceChildren(ansiFragment(d.tail));
  if (d.truncated) {
    if (!s.note) {
      s.note = el("div", "truncated");
      const parent = s.pre.parentElement;
      parent?.append(s.note);
    }
    const link = el("button", "link open-full", `Open full output (${formatSize(d.truncated.totalChars)})`);
    link.type = "button";
    link.addEventListener("click", () => post({ type: "openFullOutput", executionId: e.id, outputIndex: d.index }));
    s.note.replaceChildren(el("span", undefined, "Output cut here. "), link);
  }
}

function applyEntry(u: EntryUpdate): void {
  const e = entries.get(u.header.executionId) ?? createEntry(u.header);
  renderHeader(e, u.header);
  if (u.outputs) {
    u.outputs.items.forEach((o, i) => {
      const index = u.outputs ? u.outputs.from + i : i;
      if (index < e.outputs) return; // already shown
      const node = renderOutput(e, index, o);
      node.dataset.index = String(index);
      e.body.append(node);
      e.outputs = index + 1;
    });
  }
  for (const d of u.streams ?? []) applyStream(e, d);
}

function removeEntry(id: string): void {
  entries.get(id)?.el.remove();
  entries.delete(id);
}

function refreshToolbar(): void {
  const n = entries.size;
  empty.hidden = n > 0;
  summary.textContent = n === 1 ? "1 execution" : `${n} executions`;
  const allCollapsed = n > 0 && [...entries.values()].every((e) => e.collapsed);
  collapseButton.textContent = allCollapsed ? "Expand all" : "Collapse all";
  collapseButton.disabled = n === 0;
}

// ---- messages ----

function nearBottom(): boolean {
  const s = document.scrollingElement ?? document.documentElement;
  return s.scrollHeight - s.scrollTop - s.clientHeight < 40;
}

function onMessage(m: HostMessage): void {
  switch (m.type) {
    case "reset": {
      list.replaceChildren();
      entries.clear();
      for (const u of m.entries) applyEntry(u);
      saveState(); // a state of its own also marks the panel for restoring after a reload
      window.scrollTo(0, document.body.scrollHeight);
      break;
    }
    case "update": {
      const follow = nearBottom();
      for (const id of m.removed) removeEntry(id);
      for (const u of m.entries) applyEntry(u);
      refreshToolbar();
      if (follow) window.scrollTo(0, document.body.scrollHeight);
      break;
    }
    case "queryState":
      post({ type: "state", requestId: m.requestId, state: renderedState() });
      break;
  }
}

function renderedState(): RenderedState {
  const items: RenderedEntry[] = [...entries.values()].map((e) => ({
    executionId: e.id,
    header: e.header.innerText || (e.header.textContent ?? ""),
    status: e.last?.status ?? "",
    collapsed: e.collapsed,
    text: (e.body.textContent ?? "").slice(0, 20_000),
    images: e.body.querySelectorAll("img").length,
    iframes: [...e.body.querySelectorAll("iframe")].map((f) => ({
      sandbox: f.getAttribute("sandbox") ?? "(none)",
      hasSrcdoc: f.hasAttribute("srcdoc"),
    })),
    frames: e.body.querySelectorAll(".frames li").length,
    truncated: e.body.querySelector(".open-full")?.textContent ?? null,
  }));
  return { entries: items.length, items };
}

must("clear").addEventListener("click", () => post({ type: "clear" }));
collapseButton.addEventListener("click", () => {
  const collapse = ![...entries.values()].every((e) => e.collapsed);
  for (const e of entries.values()) setCollapsed(e, collapse);
  saveState();
});
window.addEventListener("message", (ev: MessageEvent<HostMessage>) => onMessage(ev.data));
setInterval(() => {
  for (const e of entries.values()) if (e.runningSince !== undefined) updateDuration(e);
}, 1000);
root.classList.add("ready");
refreshToolbar();
post({ type: "ready" });
