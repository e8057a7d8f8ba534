/**
 * Front end of the checkpoint inspector (host: src/checkpoints/inspector.ts). Shows the
 * summary the host sends: cards, a safety banner, a virtual-scrolled tensor table that
 * stays smooth at 100,000 tensors, the module tree, metadata, shared storages, warnings,
 * and statistics with histograms on demand. No inline script or style; theme colours only.
 */
import {
  formatBytes,
  formatCount,
  formatInt,
  formatPercent,
  formatShape,
  formatStat,
} from "../../src/checkpoints/format";
import type {
  InspectorDrive,
  InspectorHostMessage,
  InspectorRenderedState,
  InspectorTab,
  InspectorViewMessage,
  RenderedStats,
  ViewError,
} from "../../src/checkpoints/messages";
import { decodeTensors } from "../../src/checkpoints/tensorCodec";
import { type SortDir, TensorIndex, type TensorSortKey } from "../../src/checkpoints/tensorTable";
import type { CheckpointSummary, CheckpointTensor, CheckpointTensorStats } from "../../src/protocol";
import { basename, button, el, must, type VsCodeApi } from "./checkpoint/dom";
import { HistogramPlot } from "./checkpoint/histogram";
import {
  renderBanner,
  renderCards,
  renderMetadata,
  renderModules,
  renderStorages,
  renderWarnings,
} from "./checkpoint/sections";
import { VirtualTable } from "./checkpoint/virtualTable";

declare function acquireVsCodeApi(): VsCodeApi<InspectorViewMessage>;
const vscode = acquireVsCodeApi();

interface UiState {
  tab: InspectorTab;
  query: string;
  sort: TensorSortKey;
  dir: SortDir;
  selected: string | null;
  scrollTop: number;
  log: boolean;
}

const saved = (vscode.getState() ?? {}) as Partial<UiState>;
const ui: UiState = {
  tab: saved.tab ?? "tensors",
  query: saved.query ?? "",
  sort: saved.sort ?? "order",
  dir: saved.dir ?? "asc",
  selected: saved.selected ?? null,
  scrollTop: saved.scrollTop ?? 0,
  log: saved.log ?? false,
};

function save(): void {
  vscode.setState(ui);
}

function post(m: InspectorViewMessage): void {
  vscode.postMessage(m);
}

let status: InspectorRenderedState["status"] = "loading";
let summary: CheckpointSummary | undefined;
let index = new TensorIndex([]);
let byName = new Map<string, number>();
const stats = new Map<string, CheckpointTensorStats>();
/** Tensors whose statistics are being computed; "all" for the whole file. */
let statsPending: Set<string> | "all" | undefined;

// ---- skeleton ------------------------------------------------------------------------

const root = must("gpuwb-checkpoint");
const title = el("h1", "ck-title");
const subtitle = el("div", "ck-subtitle");
const compareButton = button("Compare with…", () => post({ type: "compare" }), {
  title: "Compare this checkpoint with another one",
});
const statsAllButton = button("Statistics: All", () => requestStats(null), {
  title: "Compute min, max, mean, std, NaN/Inf counts and histograms for every tensor",
});
const reloadButton = button("Reload", () => post({ type: "reload" }), { title: "Read the file again" });
const header = el("header", "ck-header");
/** Where the file is read, for a file on a connected machine (hidden for this computer's). */
const source = el("div", "ck-source");
source.hidden = true;
const titles = el("div", "ck-titles");
titles.append(title, subtitle, source);
const actions = el("div", "ck-actions");
actions.setAttribute("role", "toolbar");
actions.setAttribute("aria-label", "Checkpoint actions");
actions.append(compareButton, statsAllButton, reloadButton);
header.append(titles, actions);

const notice = el("div", "ck-notice");
notice.setAttribute("role", "status");
notice.setAttribute("aria-live", "polite");
const noticeText = el("span");
const noticeCancel = button("Cancel", () => post({ type: "cancel" }), { cls: "ck-link" });
noticeCancel.hidden = true;
notice.append(noticeText, noticeCancel);

const loading = el("section", "ck-loading");
const loadingText = el("span", "ck-loading-text");
const loadingProgress = el("div", "ck-progress");
const loadingCancel = button("Cancel", () => post({ type: "cancel" }), { title: "Stop reading the file" });
loading.append(el("span", "ck-spinner"), loadingText, loadingCancel, loadingProgress);

const errorBox = el("section", "ck-error");
errorBox.setAttribute("role", "alert");
const errorTitle = el("h2");
const errorMessage = el("p", "ck-error-message");
const errorHint = el("p", "ck-error-hint");
const errorActions = el("div", "ck-error-actions");
errorActions.append(
  button("Retry", () => post({ type: "reload" })),
  button("Show Logs", () => post({ type: "showLogs" })),
  button("Reopen With…", () => post({ type: "reopenWith" }), { title: "Open the file in another editor" }),
);
errorBox.append(errorTitle, errorMessage, errorHint, errorActions);

const content = el("div", "ck-content");
const banner = el("section", "ck-banner");
banner.setAttribute("role", "alert");
const cards = el("section", "ck-cards");
cards.setAttribute("aria-label", "Summary");

const TABS: { id: InspectorTab; label: string }[] = [
  { id: "tensors", label: "Tensors" },
  { id: "modules", label: "Modules" },
  { id: "metadata", label: "Metadata" },
  { id: "storages", label: "Shared storages" },
  { id: "warnings", label: "Warnings" },
];
const tablist = el("div", "ck-tabs");
tablist.setAttribute("role", "tablist");
tablist.setAttribute("aria-label", "Checkpoint contents");
const tabButtons = new Map<InspectorTab, HTMLButtonElement>();
const panels = new Map<InspectorTab, HTMLElement>();
for (const t of TABS) {
  const b = el("button", "ck-tab", t.label);
  b.type = "button";
  b.id = `tab-${t.id}`;
  b.setAttribute("role", "tab");
  b.setAttribute("aria-controls", `panel-${t.id}`);
  b.addEventListener("click", () => selectTab(t.id, true));
  tabButtons.set(t.id, b);
  tablist.append(b);
  const p = el("section", "ck-panel");
  p.id = `panel-${t.id}`;
  p.setAttribute("role", "tabpanel");
  p.setAttribute("aria-labelledby", b.id);
  panels.set(t.id, p);
}
tablist.addEventListener("keydown", (e) => {
  const i = TABS.findIndex((t) => t.id === ui.tab);
  let next: number | undefined;
  if (e.key === "ArrowRight") next = (i + 1) % TABS.length;
  if (e.key === "ArrowLeft") next = (i - 1 + TABS.length) % TABS.length;
  if (e.key === "Home") next = 0;
  if (e.key === "End") next = TABS.length - 1;
  const t = next === undefined ? undefined : TABS[next];
  if (!t) return;
  e.preventDefault();
  selectTab(t.id, true);
});

// Tensors panel: search, table, details of the selected tensor.
const filter = el("input", "ck-filter");
filter.type = "search";
filter.placeholder = "Filter tensors: name, dtype:BF16, shape:768x, role:state";
filter.setAttribute("aria-label", "Filter tensors");
filter.value = ui.query;
const countLabel = el("span", "ck-count");
countLabel.setAttribute("aria-live", "polite");
const toolbar = el("div", "ck-toolbar");
toolbar.append(filter, countLabel);

const table = new VirtualTable<CheckpointTensor>({
  label: "Tensors",
  rowHeight: 24,
  columns: [
    {
      key: "name",
      label: "Name",
      width: "minmax(14em, 4fr)",
      sortable: true,
      render: (t, cell) => {
        cell.textContent = t.name;
        cell.title = t.name;
        cell.classList.add("mono");
      },
    },
    {
      key: "dtype",
      label: "DType",
      width: "minmax(5em, 0.7fr)",
      sortable: true,
      render: (t, cell) => {
        cell.textContent = t.dtype;
      },
    },
    {
      key: "shape",
      label: "Shape",
      width: "minmax(8em, 1.4fr)",
      sortable: true,
      render: (t, cell) => {
        cell.textContent = formatShape(t.shape);
        cell.classList.add("mono");
      },
    },
    {
      key: "numel",
      label: "Elements",
      width: "minmax(6em, 0.8fr)",
      sortable: true,
      align: "end",
      render: (t, cell) => {
        cell.textContent = formatCount(t.numel);
        cell.title = formatInt(t.numel);
      },
    },
    {
      key: "nbytes",
      label: "Size",
      width: "minmax(6em, 0.8fr)",
      sortable: true,
      align: "end",
      render: (t, cell) => {
        cell.textContent = t.nbytes === null ? "—" : formatBytes(t.nbytes);
      },
    },
    {
      key: "stats",
      label: "Statistics",
      width: "minmax(11em, 1.6fr)",
      render: (t, cell) => renderStatsCell(t, cell),
    },
  ],
  onSort: (key) => cycleSort(key as TensorSortKey),
  onSelect: (t) => {
    ui.selected = t.name;
    save();
    renderDetails();
  },
  onActivate: (t) => {
    ui.selected = t.name;
    save();
    renderDetails();
    if (!stats.has(t.name)) requestStats([t.name]);
  },
});
const listedNote = el("p", "ck-muted");
const details = el("section", "ck-details");
details.setAttribute("aria-label", "Selected tensor");
const tensorsPanel = must2(panels.get("tensors"));
tensorsPanel.classList.add("ck-panel-tensors");
const tableBox = el("div", "ck-table-box");
tableBox.append(toolbar, listedNote, table.root);
tensorsPanel.append(tableBox, details);

// Details of the selected tensor: fixed parts, filled in by renderDetails().
const detailsTitle = el("h3", "mono");
const detailsList = el("dl", "ck-dl");
const detailsActions = el("div", "ck-detail-actions");
const statsButton = button("Statistics", () => {
  if (ui.selected) requestStats([ui.selected]);
});
const logLabel = el("label", "ck-check");
const logBox = el("input");
logBox.type = "checkbox";
logBox.checked = ui.log;
logBox.addEventListener("change", () => {
  ui.log = logBox.checked;
  save();
  renderDetails();
});
logLabel.append(logBox, document.createTextNode(" Log scale"));
detailsActions.append(statsButton, logLabel);
const statsGrid = el("dl", "ck-stats");
const sampledNote = el("p", "ck-sampled");
const chartBox = el("div", "ck-chart");
const canvas = el("canvas");
canvas.setAttribute("role", "img");
chartBox.append(canvas);
const plot = new HistogramPlot(canvas);
details.append(detailsTitle, detailsList, detailsActions, sampledNote, statsGrid, chartBox);

content.append(banner, cards, tablist, ...TABS.map((t) => must2(panels.get(t.id))));
root.append(header, notice, loading, errorBox, content);

function must2<T>(v: T | undefined): T {
  if (v === undefined) throw new Error("missing element");
  return v;
}

// ---- behaviour -------------------------------------------------------------------------

let filterTimer: number | undefined;
filter.addEventListener("input", () => {
  if (filterTimer) clearTimeout(filterTimer);
  filterTimer = window.setTimeout(() => {
    ui.query = filter.value;
    save();
    applyQuery(false);
  }, 120);
});
filter.addEventListener("keydown", (e) => {
  if (e.key === "ArrowDown") {
    e.preventDefault();
    table.focus();
  }
});

function cycleSort(key: TensorSortKey): void {
  if (ui.sort !== key) {
    ui.sort = key;
    ui.dir = key === "numel" || key === "nbytes" ? "desc" : "asc";
  } else if (ui.dir === (key === "numel" || key === "nbytes" ? "desc" : "asc")) {
    ui.dir = ui.dir === "asc" ? "desc" : "asc";
  } else {
    ui.sort = "order";
    ui.dir = "asc";
  }
  save();
  applyQuery(true);
}

function applyQuery(keepScroll: boolean): void {
  const rows = summary?.tensors ?? [];
  const order = index.query({ text: ui.query, sort: ui.sort, dir: ui.dir });
  table.setRows(rows, order, keepScroll);
  table.setSort(ui.sort === "order" ? "" : ui.sort, ui.dir);
  countLabel.textContent =
    order.length === rows.length
      ? `${formatInt(rows.length)} tensors`
      : `${formatInt(order.length)} of ${formatInt(rows.length)} tensors`;
}

function selectTab(tab: InspectorTab, focus: boolean): void {
  ui.tab = tab;
  save();
  for (const t of TABS) {
    const b = must2(tabButtons.get(t.id));
    const on = t.id === tab;
    b.setAttribute("aria-selected", String(on));
    b.tabIndex = on ? 0 : -1;
    must2(panels.get(t.id)).hidden = !on;
  }
  if (focus) tabButtons.get(tab)?.focus();
}

function requestStats(tensors: string[] | null): void {
  statsPending = tensors === null ? "all" : new Set(tensors);
  post({ type: "stats", tensors });
}

function renderStatsCell(t: CheckpointTensor, cell: HTMLElement): void {
  const s = stats.get(t.name);
  if (s) {
    if (s.error) {
      cell.textContent = "unavailable";
      cell.title = s.error;
      cell.classList.add("ck-muted");
      return;
    }
    cell.textContent = `μ ${formatStat(s.mean)}  σ ${formatStat(s.std)}${s.sampled ? " ~" : ""}`;
    cell.title = `min ${formatStat(s.min)}, max ${formatStat(s.max)}${s.sampled ? " (sampled)" : ""}`;
    if (s.nanCount || s.infCount) {
      const bad = el("span", "ck-badge bad", s.nanCount ? "NaN" : "Inf");
      bad.title = `${formatInt(s.nanCount)} NaN, ${formatInt(s.infCount)} Inf`;
      cell.append(" ", bad);
    }
    return;
  }
  if (statsPending === "all" || statsPending?.has(t.name)) {
    cell.textContent = "computing…";
    cell.classList.add("ck-muted");
    return;
  }
  const b = el("button", "ck-link", "Statistics");
  b.type = "button";
  b.tabIndex = -1; // rows are reached with the arrow keys; Enter computes
  b.title = `Compute statistics of ${t.name}`;
  b.addEventListener("click", (e) => {
    e.stopPropagation();
    ui.selected = t.name;
    const i = byName.get(t.name);
    if (i !== undefined) table.select(i);
    requestStats([t.name]);
  });
  cell.append(b);
}

function dlRow(dl: HTMLElement, label: string, value: string, mono = false): void {
  dl.append(el("dt", undefined, label), el("dd", mono ? "mono" : undefined, value));
}

function renderDetails(): void {
  const i = ui.selected === null ? undefined : byName.get(ui.selected);
  const t = i === undefined ? undefined : summary?.tensors[i];
  details.hidden = !t;
  if (!t) {
    plot.clear();
    return;
  }
  detailsTitle.textContent = t.name;
  detailsList.replaceChildren();
  dlRow(detailsList, "DType", t.dtype);
  dlRow(detailsList, "Shape", formatShape(t.shape), true);
  dlRow(detailsList, "Elements", formatInt(t.numel));
  dlRow(detailsList, "Size", t.nbytes === null ? "unknown" : `${formatBytes(t.nbytes)} (${formatInt(t.nbytes)} B)`);
  dlRow(detailsList, "Role", t.role === "weight" ? "weight (parameter)" : "training state");
  if (t.stride) dlRow(detailsList, "Stride", formatShape(t.stride), true);
  if (t.storage) dlRow(detailsList, "Storage", `${t.storage} + ${formatInt(t.storageOffset)} elements`, true);
  if (t.offset !== null) dlRow(detailsList, "Offset", `${formatInt(t.offset)} B`);
  if (t.file || t.member)
    dlRow(detailsList, "In", [t.file ? basename(t.file) : "", t.member ?? ""].filter(Boolean).join(" › "), true);
  if (t.byteOrder === "big") dlRow(detailsList, "Byte order", "big-endian");
  if (t.detail) dlRow(detailsList, "Note", t.detail);

  const s = stats.get(t.name);
  const pending = statsPending === "all" || statsPending?.has(t.name);
  statsButton.disabled = !!pending;
  statsButton.textContent = pending ? "Computing…" : s ? "Recompute statistics" : "Statistics";
  statsGrid.replaceChildren();
  sampledNote.hidden = true;
  if (!s) {
    plot.clear();
    chartBox.hidden = true;
    return;
  }
  if (s.error) {
    dlRow(statsGrid, "Statistics", s.error);
    plot.clear();
    chartBox.hidden = true;
    return;
  }
  dlRow(statsGrid, "Min", formatStat(s.min));
  dlRow(statsGrid, "Max", formatStat(s.max));
  dlRow(statsGrid, "Mean", formatStat(s.mean));
  dlRow(statsGrid, "Std", formatStat(s.std));
  dlRow(statsGrid, "NaN", formatInt(s.nanCount));
  dlRow(statsGrid, "Inf", formatInt(s.infCount));
  dlRow(statsGrid, "Zeros", formatPercent(s.zeroFraction));
  if (s.sampled) {
    sampledNote.hidden = false;
    sampledNote.textContent = `Sampled: ${formatInt(s.count)} of ${formatInt(s.numel)} values were read.`;
  }
  if (s.histogram?.counts.length) {
    chartBox.hidden = false;
    canvas.setAttribute(
      "aria-label",
      `Histogram of ${t.name}: ${s.histogram.counts.length} bins from ${formatStat(s.min)} to ${formatStat(s.max)}`,
    );
    plot.draw(t.name, s.histogram, s.sampled, ui.log);
  } else {
    plot.clear();
    chartBox.hidden = true;
  }
}

function setTabCounts(s: CheckpointSummary): void {
  const label = (id: InspectorTab, text: string) => {
    const b = tabButtons.get(id);
    if (b) b.textContent = text;
  };
  label("tensors", `Tensors (${formatInt(s.tensorCount)})`);
  label("storages", `Shared storages (${s.sharedStorages.length})`);
  label("warnings", `Warnings (${s.warnings.length})`);
}

function showState(next: InspectorRenderedState["status"]): void {
  status = next;
  root.setAttribute("aria-busy", String(next === "loading"));
  loading.hidden = next !== "loading";
  errorBox.hidden = next !== "error";
  content.hidden = !summary || next === "error";
  statsAllButton.disabled = !summary || next !== "ready";
  compareButton.disabled = !summary;
}

function setNotice(text: string, cancellable = false): void {
  noticeText.textContent = text;
  noticeCancel.hidden = !cancellable;
  notice.hidden = !text;
}

function showSummary(s: CheckpointSummary, reloaded: boolean): void {
  summary = s;
  index = new TensorIndex(s.tensors);
  byName = new Map(s.tensors.map((t, i) => [t.name, i]));
  stats.clear();
  statsPending = undefined;
  title.textContent = basename(s.path);
  subtitle.textContent = s.path;
  subtitle.title = s.path;
  showState("ready");
  renderCards(cards, s);
  renderBanner(banner, s);
  setTabCounts(s);
  listedNote.hidden = s.tensorsListed >= s.tensorCount;
  listedNote.textContent = `Listing the first ${formatInt(s.tensorsListed)} of ${formatInt(s.tensorCount)} tensors.`;
  applyQuery(true);
  if (!reloaded && ui.scrollTop) table.scrollTop = ui.scrollTop;
  if (ui.selected !== null && !byName.has(ui.selected)) ui.selected = null;
  if (ui.selected !== null) table.select(byName.get(ui.selected) ?? -1);
  renderDetails();
  renderModules(must2(panels.get("modules")), s, (modulePath) => {
    ui.query = `${modulePath}.`;
    filter.value = ui.query;
    save();
    selectTab("tensors", false);
    applyQuery(false);
  });
  renderMetadata(must2(panels.get("metadata")), s);
  renderStorages(must2(panels.get("storages")), s);
  renderWarnings(must2(panels.get("warnings")), s);
  selectTab(ui.tab, false);
  // Sorting 100,000 names takes a moment: have the order ready before the header is clicked.
  const warm = index;
  requestIdleCallback(() => warm.order("name", "asc"));
  setNotice(reloaded ? `Reloaded at ${new Date().toLocaleTimeString()}: the file changed on disk.` : "");
}

function showError(path: string, e: ViewError): void {
  title.textContent = basename(path);
  subtitle.textContent = path;
  summary = undefined;
  const notCheckpoint = e.kind === "CheckpointFormat";
  errorTitle.textContent = notCheckpoint
    ? "This file is not a checkpoint GPU Workbench can read, or it is damaged"
    : "The checkpoint could not be read";
  errorMessage.textContent = e.message;
  errorHint.textContent = e.hint ?? "See the logs for details.";
  showState("error");
  setNotice("");
}

// ---- messages --------------------------------------------------------------------------

function drive(d: InspectorDrive): void {
  if (d.cancel) loadingCancel.click();
  if (d.statsAll) statsAllButton.click();
  if (d.tab) selectTab(d.tab, false);
  if (d.filter !== undefined) {
    filter.value = d.filter;
    ui.query = d.filter;
    save();
    applyQuery(false);
  }
  if (d.select !== undefined) {
    const i = byName.get(d.select);
    if (i !== undefined && !table.select(i)) {
      filter.value = ui.query = "";
      applyQuery(false);
      table.select(i);
    }
  }
}

function renderedState(): InspectorRenderedState {
  const cardMap: Record<string, string> = {};
  for (const c of cards.querySelectorAll(".ck-card")) {
    const label = c.querySelector(".ck-card-label")?.textContent ?? "";
    cardMap[label] = c.querySelector(".ck-card-value")?.textContent ?? "";
  }
  const firstName = table.root.querySelector(".vt-row .vt-cell")?.textContent ?? null;
  const bannerShown = !banner.hidden && summary && summary.safety.verdict !== "safe";
  const statsList: RenderedStats[] = [...stats.values()].map((s) => ({
    name: s.name,
    sampled: s.sampled,
    min: formatStat(s.min),
    max: formatStat(s.max),
    mean: formatStat(s.mean),
    std: formatStat(s.std),
    nanCount: s.nanCount,
    infCount: s.infCount,
    zeroFraction: formatPercent(s.zeroFraction),
    histogramBins: s.histogram?.counts.length ?? 0,
    error: s.error,
  }));
  return {
    status,
    path: subtitle.textContent || null,
    machine: source.hidden ? null : source.textContent,
    format: cardMap.Format ?? null,
    cards: cardMap,
    tensorCount: summary?.tensorCount ?? null,
    tensorsListed: summary?.tensorsListed ?? null,
    tab: ui.tab,
    query: filter.value,
    sort: `${ui.sort} ${ui.dir}`,
    rowsMatching: table.matching,
    rowsRendered: table.renderedRows,
    firstRow: firstName,
    selected: details.hidden ? null : detailsTitle.textContent,
    banner:
      bannerShown && summary
        ? {
            level: summary.safety.verdict === "unsafe" ? "unsafe" : "unknown",
            text: banner.textContent ?? "",
            globals: [...banner.querySelectorAll(".ck-global")].map((g) => g.textContent ?? ""),
            findings: [...banner.querySelectorAll(".ck-findings li")].map((f) => f.textContent ?? ""),
          }
        : null,
    error:
      status === "error"
        ? {
            message: errorMessage.textContent ?? "",
            hint: errorHint.textContent,
            actions: [...errorActions.querySelectorAll("button")].map((b) => b.textContent ?? ""),
          }
        : null,
    notice: notice.hidden ? null : noticeText.textContent,
    modulesShown: must2(panels.get("modules")).querySelectorAll(".mod-line").length,
    metadataText: (must2(panels.get("metadata")).textContent ?? "").slice(0, 5000),
    sharedStorages: summary?.sharedStorages.length ?? 0,
    warnings: [...must2(panels.get("warnings")).querySelectorAll("li")].map((l) => l.textContent ?? ""),
    stats: statsList,
    histogram: plot.tensor && !chartBox.hidden ? { tensor: plot.tensor, bars: plot.bars, sampled: plot.sampled } : null,
  };
}

window.addEventListener("message", (event: MessageEvent<InspectorHostMessage>) => {
  const m = event.data;
  switch (m.type) {
    case "source":
      source.hidden = m.machine === null;
      source.textContent = m.machine
        ? `Read on ${m.machineName ?? m.machine} (${m.machine}): only the summary and requested statistics cross the network.`
        : "";
      // Comparing takes two files on one disk: not offered for a machine's file.
      compareButton.hidden = m.machine !== null;
      break;
    case "loading":
      title.textContent = basename(m.path);
      subtitle.textContent = m.path;
      loadingText.textContent = m.reload ? `Reading ${basename(m.path)} again…` : `Reading ${basename(m.path)}…`;
      loadingProgress.textContent = "";
      // A reload keeps the old content on screen under the progress line.
      showState("loading");
      content.hidden = !summary;
      break;
    case "progress": {
      const text = [m.message, m.percentage !== null ? `${m.percentage}%` : null].filter(Boolean).join(" · ");
      if (status === "loading") loadingProgress.textContent = text;
      else if (statsPending) noticeText.textContent = `Computing statistics… ${text}`;
      break;
    }
    case "summary":
      showSummary({ ...m.summary, tensors: decodeTensors(m.tensors) }, m.reloaded);
      break;
    case "error":
      showError(m.path, m.error);
      break;
    case "deleted":
      status = "deleted";
      loading.hidden = true;
      setNotice(`${basename(m.path)} was deleted or moved. What is shown is the last version read.`);
      break;
    case "statsPending":
      statsPending = m.tensors === null ? "all" : new Set(m.tensors);
      setNotice(m.tensors === null ? "Computing statistics of all tensors…" : "Computing statistics…", true);
      table.refresh();
      renderDetails();
      break;
    case "stats": {
      for (const s of m.result.stats) stats.set(s.name, s);
      statsPending = undefined;
      const sampled = m.result.stats.filter((s) => s.sampled).length;
      setNotice(
        `Statistics of ${formatInt(m.result.stats.length)} tensor(s) in ${(m.result.elapsedMs / 1000).toFixed(1)} s` +
          (sampled ? `; ${formatInt(sampled)} sampled.` : "."),
      );
      table.refresh();
      renderDetails();
      break;
    }
    case "statsError":
      statsPending = undefined;
      setNotice(`Statistics failed: ${m.error.message}${m.error.hint ? ` ${m.error.hint}` : ""}`);
      table.refresh();
      renderDetails();
      break;
    case "drive":
      drive(m.drive);
      break;
    case "queryState":
      post({ type: "state", requestId: m.requestId, state: renderedState() });
      break;
  }
});

table.root.addEventListener(
  "scroll",
  () => {
    ui.scrollTop = table.scrollTop;
    save();
  },
  { capture: true, passive: true },
);

showState("loading");
setNotice("");
details.hidden = true;
selectTab(ui.tab, false);
post({ type: "ready" });
