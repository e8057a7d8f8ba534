/**
 * The inspector's summary sections, rendered from a CheckpointSummary: cards, the safety
 * banner, the module tree, metadata, shared storages and warnings.
 */
import { formatBytes, formatCount, formatEpochStep, formatInt, formatName } from "../../../src/checkpoints/format";
import type { CheckpointModule, CheckpointSummary } from "../../../src/protocol";
import { basename, button, el } from "./dom";
import { jsonTree } from "./jsonTree";

function card(label: string, value: string, tip?: string, cls?: string): HTMLElement {
  const c = el("div", `ck-card${cls ? ` ${cls}` : ""}`);
  c.append(el("div", "ck-card-label", label), el("div", "ck-card-value", value));
  if (tip) c.title = tip;
  return c;
}

/** The summary cards: format, size, parameters, tensors, dtypes, epoch/step, safety. */
export function renderCards(cards: HTMLElement, s: CheckpointSummary): void {
  cards.replaceChildren();
  cards.append(card("Format", formatName(s.format), s.formatDetail || undefined));
  if (s.formatDetail) cards.append(card("Detail", s.formatDetail, s.formatDetail, "wide"));
  cards.append(
    card(
      "File size",
      formatBytes(s.fileSize),
      s.files.length > 1 ? `${s.files.length} files, ${formatInt(s.fileSize)} bytes` : `${formatInt(s.fileSize)} bytes`,
    ),
    card("Parameters", formatCount(s.parameterCount), `${formatInt(s.parameterCount)} (weights only)`),
    card("Tensors", formatInt(s.tensorCount), `${formatBytes(s.tensorBytes)} of tensor data`),
  );
  const top = s.dtypes.slice(0, 3).map((d) => d.dtype);
  cards.append(
    card(
      "DTypes",
      top.join(", ") + (s.dtypes.length > 3 ? ` +${s.dtypes.length - 3}` : "") || "—",
      s.dtypes.map((d) => `${d.dtype}: ${formatInt(d.tensors)} tensors, ${formatBytes(d.bytes)}`).join("\n"),
    ),
  );
  const es = formatEpochStep(s.epoch, s.globalStep);
  if (s.epoch !== null) cards.append(card("Epoch", formatInt(s.epoch)));
  if (s.globalStep !== null) cards.append(card("Step", formatInt(s.globalStep)));
  if (!es) cards.append(card("Epoch / step", "—", "The file records no epoch or step."));
  const v = s.safety.verdict;
  cards.append(card("Safety", v, s.safety.summary, `safety-${v}`));
}

/** The safety banner: red for unsafe, amber for unknown, hidden for safe. */
export function renderBanner(banner: HTMLElement, s: CheckpointSummary): void {
  const v = s.safety.verdict;
  banner.replaceChildren();
  banner.className = `ck-banner ${v}`;
  banner.hidden = v === "safe";
  if (v === "safe") return;
  const heading =
    v === "unsafe"
      ? "Unsafe: loading this checkpoint with pickle (torch.load without weights_only) can run code"
      : "Safety unknown: this checkpoint refers to code GPU Workbench does not know";
  banner.append(el("h2", undefined, heading), el("p", undefined, s.safety.summary));
  const globals = s.safety.globals.filter((g) => g.classification !== "allowed");
  if (globals.length) {
    banner.append(el("h3", undefined, "It would import"));
    const ul = el("ul", "ck-globals");
    for (const g of globals) {
      const li = el("li");
      li.append(
        el("code", "ck-global", `${g.module}.${g.name}`),
        el("span", `ck-badge ${g.classification === "unsafe" ? "bad" : "warn"}`, g.classification),
      );
      const extra = [g.count > 1 ? `${g.count}×` : "", g.where ? `in ${g.where}` : "", g.reason].filter(Boolean);
      if (extra.length) li.append(el("span", "ck-muted", ` ${extra.join(" · ")}`));
      ul.append(li);
    }
    banner.append(ul);
  }
  if (s.safety.findings.length) {
    banner.append(el("h3", undefined, "Findings"));
    const ul = el("ul", "ck-findings");
    for (const f of s.safety.findings) ul.append(el("li", undefined, f));
    banner.append(ul);
  }
  banner.append(
    el(
      "p",
      "ck-banner-hint",
      "Nothing was run to show this page. Load the file only if you trust where it came from; prefer torch.load(…, weights_only=True) or safetensors.",
    ),
  );
}

const MODULE_PAGE = 300;

/** The module tree; choosing a module's name calls `onModule` with its path. */
export function renderModules(panel: HTMLElement, s: CheckpointSummary, onModule: (path: string) => void): void {
  panel.replaceChildren();
  if (!s.modules.children.length) {
    panel.append(el("p", "ck-muted", "No module structure: tensor names have no dots."));
    return;
  }
  panel.append(
    el("p", "ck-muted", "Modules from the dotted tensor names, largest first. Choose a name to list its tensors."),
  );
  const tree = el("ul", "ck-modules");
  tree.setAttribute("role", "tree");
  tree.setAttribute("aria-label", "Modules");
  appendModules(tree, s.modules.children, 1, Math.max(1, s.modules.bytes), onModule);
  panel.append(tree);
}

function appendModules(
  list: HTMLElement,
  mods: CheckpointModule[],
  level: number,
  total: number,
  onModule: (path: string) => void,
): void {
  let shown = 0;
  const more = el("li", "ck-more");
  const page = () => {
    for (const m of mods.slice(shown, shown + MODULE_PAGE))
      list.insertBefore(moduleItem(m, level, total, onModule), more.isConnected ? more : null);
    shown = Math.min(mods.length, shown + MODULE_PAGE);
    if (shown < mods.length) {
      more.replaceChildren(
        button(`Show ${Math.min(MODULE_PAGE, mods.length - shown)} more of ${mods.length - shown}`, page, {
          cls: "ck-link",
        }),
      );
      if (!more.isConnected) list.append(more);
    } else more.remove();
  };
  page();
}

function moduleItem(m: CheckpointModule, level: number, total: number, onModule: (path: string) => void): HTMLElement {
  const li = el("li", "ck-module");
  li.setAttribute("role", "treeitem");
  li.setAttribute("aria-level", String(level));
  const line = el("div", "mod-line");
  const twisty = el("button", "mod-twisty");
  twisty.type = "button";
  if (m.children.length) {
    twisty.textContent = "▸";
    twisty.setAttribute("aria-label", `Expand ${m.path}`);
    li.setAttribute("aria-expanded", "false");
  } else {
    twisty.disabled = true;
    twisty.setAttribute("aria-hidden", "true");
  }
  const name = button(
    m.name,
    () => {
      onModule(m.path);
    },
    { cls: "mod-name mono", title: `List the tensors of ${m.path}` },
  );
  const bar = el("span", "mod-bar");
  const fill = el("span", "mod-fill");
  fill.style.width = `${Math.max(0.5, (m.bytes / total) * 100).toFixed(1)}%`;
  bar.append(fill);
  line.append(
    twisty,
    name,
    bar,
    el("span", "mod-num", formatCount(m.parameters)),
    el("span", "mod-num", formatBytes(m.bytes)),
    el("span", "mod-num ck-muted", `${formatInt(m.tensors)} ${m.tensors === 1 ? "tensor" : "tensors"}`),
  );
  line.title = `${m.path}: ${formatInt(m.parameters)} parameters, ${formatBytes(m.bytes)}, ${formatInt(m.tensors)} tensors`;
  li.append(line);
  let group: HTMLElement | undefined;
  twisty.addEventListener("click", () => {
    if (!m.children.length) return;
    const open = li.getAttribute("aria-expanded") !== "true";
    li.setAttribute("aria-expanded", String(open));
    twisty.textContent = open ? "▾" : "▸";
    twisty.setAttribute("aria-label", `${open ? "Collapse" : "Expand"} ${m.path}`);
    if (open && !group) {
      group = el("ul", "ck-modules");
      group.setAttribute("role", "group");
      appendModules(group, m.children, level + 1, total, onModule);
      li.append(group);
    }
    if (group) group.hidden = !open;
  });
  return li;
}

const SECTIONS: { title: string; test: RegExp }[] = [
  { title: "Lightning", test: /lightning/i },
  { title: "Optimizer", test: /optim/i },
  { title: "Learning-rate scheduler", test: /sched/i },
  { title: "Hyperparameters", test: /hyper|hparam/i },
  { title: "Config", test: /config/i },
];

/** Training progress, metadata grouped (Lightning, optimizer, scheduler, …), files, structure. */
export function renderMetadata(panel: HTMLElement, s: CheckpointSummary): void {
  panel.replaceChildren();
  const es = formatEpochStep(s.epoch, s.globalStep);
  panel.append(el("h3", undefined, "Training progress"), el("p", undefined, es || "No epoch or step is recorded."));
  const meta = s.metadata ?? {};
  const rest: Record<string, unknown> = {};
  const grouped = new Map<string, Record<string, unknown>>();
  for (const [k, v] of Object.entries(meta)) {
    const sec = SECTIONS.find((x) => x.test.test(k));
    if (!sec) {
      rest[k] = v;
      continue;
    }
    const g = grouped.get(sec.title) ?? {};
    g[k] = v;
    grouped.set(sec.title, g);
  }
  for (const sec of SECTIONS) {
    const g = grouped.get(sec.title);
    if (g) panel.append(el("h3", undefined, sec.title), jsonTree(g, true));
  }
  if (Object.keys(rest).length)
    panel.append(el("h3", undefined, grouped.size ? "Other metadata" : "Metadata"), jsonTree(rest));
  else if (!grouped.size) panel.append(el("p", "ck-muted", "The file has no metadata."));
  if (s.files.length > 1) {
    panel.append(el("h3", undefined, `Files (${s.files.length})`));
    const ul = el("ul", "ck-files");
    for (const f of s.files) ul.append(el("li", "mono", `${basename(f.path)} · ${formatBytes(f.size)} · ${f.format}`));
    panel.append(ul);
  }
  if (s.structure !== null && s.structure !== undefined) {
    const d = el("details", "ck-structure");
    d.append(el("summary", undefined, "File structure (as stored)"));
    let built = false;
    d.addEventListener("toggle", () => {
      if (d.open && !built) {
        built = true;
        d.append(jsonTree(s.structure));
      }
    });
    panel.append(d);
  }
}

/** Tensors that share storage (tied weights). */
export function renderStorages(panel: HTMLElement, s: CheckpointSummary): void {
  panel.replaceChildren();
  if (!s.sharedStorages.length) {
    panel.append(el("p", "ck-muted", "No tensors share storage."));
    return;
  }
  panel.append(
    el(
      "p",
      "ck-muted",
      `Tensors that are views of the same bytes (tied weights). Stored once: ${formatBytes(s.storageBytes)} of storage for ${formatBytes(s.tensorBytes)} of tensors.`,
    ),
  );
  const ul = el("ul", "ck-storages");
  for (const st of s.sharedStorages) {
    const li = el("li");
    li.append(el("div", "mono", `${st.storage} · ${formatBytes(st.bytes)}`));
    const names = el("ul");
    for (const n of st.tensors.slice(0, 50)) names.append(el("li", "mono", n));
    if (st.tensors.length > 50) names.append(el("li", "ck-muted", `… ${st.tensors.length - 50} more`));
    li.append(names);
    ul.append(li);
  }
  panel.append(ul);
}

export function renderWarnings(panel: HTMLElement, s: CheckpointSummary): void {
  panel.replaceChildren();
  if (!s.warnings.length) {
    panel.append(el("p", "ck-muted", "No warnings."));
    return;
  }
  const ul = el("ul", "ck-warnings");
  for (const w of s.warnings) ul.append(el("li", undefined, w));
  panel.append(ul);
}
