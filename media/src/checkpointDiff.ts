/**
 * Front end of the checkpoint diff (host: src/checkpoints/diffPanel.ts): the two files, a
 * summary, counts that double as filters by change kind, a searchable virtual-scrolled
 * table with both sides' dtype and shape, and the metadata that changed.
 */
import { formatBytes, formatInt, formatName, formatShape } from "../../src/checkpoints/format";
import type {
  DiffDrive,
  DiffHostMessage,
  DiffRenderedState,
  DiffViewMessage,
  ViewError,
} from "../../src/checkpoints/messages";
import { CHANGES, DiffIndex, type DiffSortKey, type SortDir } from "../../src/checkpoints/tensorTable";
import type {
  CheckpointDiffResult,
  CheckpointDiffTensor,
  CheckpointFile,
  CheckpointTensor,
  TensorChange,
} from "../../src/protocol";
import { basename, button, el, must, shortJson, type VsCodeApi } from "./checkpoint/dom";
import { VirtualTable } from "./checkpoint/virtualTable";

declare function acquireVsCodeApi(): VsCodeApi<DiffViewMessage>;
const vscode = acquireVsCodeApi();

interface UiState {
  /** The pair shown, which the serializer uses to restore the panel after a reload. */
  a?: string;
  b?: string;
  /** The pair the change filter was chosen for (a new pair gets the default filter). */
  filtersFor?: string;
  query: string;
  changes: TensorChange[] | null;
  sort: DiffSortKey;
  dir: SortDir;
}

const saved = (vscode.getState() ?? {}) as Partial<UiState>;
const ui: UiState = {
  ...saved,
  query: saved.query ?? "",
  changes: saved.changes ?? null,
  sort: saved.sort ?? "change",
  dir: saved.dir ?? "asc",
};

function save(): void {
  vscode.setState(ui);
}

function post(m: DiffViewMessage): void {
  vscode.postMessage(m);
}

let status: DiffRenderedState["status"] = "loading";
let result: CheckpointDiffResult | undefined;
let index = new DiffIndex([]);
let shown = new Set<TensorChange>();

const CHANGE_LABEL: Record<TensorChange, string> = {
  added: "Added",
  removed: "Removed",
  reshaped: "Reshaped",
  retyped: "Retyped",
  changed: "Changed",
  unchanged: "Unchanged",
  unknown: "Not compared",
};

// ---- skeleton ------------------------------------------------------------------------

const root = must("gpuwb-checkpoint-diff");
const header = el("header", "ck-header diff-header");
const sideA = el("div", "diff-side");
const sideB = el("div", "diff-side");
const arrow = el("span", "diff-arrow", "↔");
arrow.setAttribute("aria-hidden", "true");
const headerActions = el("div", "ck-actions");
headerActions.append(button("Swap", () => post({ type: "swap" }), { title: "Compare the other way round" }));
header.append(sideA, arrow, sideB, headerActions);

const loading = el("section", "ck-loading");
const loadingText = el("span", "ck-loading-text", "Comparing…");
loading.append(el("span", "ck-spinner"), loadingText);

const errorBox = el("section", "ck-error");
errorBox.setAttribute("role", "alert");
const errorMessage = el("p", "ck-error-message");
const errorHint = el("p", "ck-error-hint");
errorBox.append(
  el("h2", undefined, "The checkpoints could not be compared"),
  errorMessage,
  errorHint,
  button("Show Logs", () => post({ type: "showLogs" })),
);

const content = el("div", "ck-content");
const summaryLine = el("p", "diff-summary");
summaryLine.setAttribute("role", "status");
const chips = el("div", "diff-chips");
chips.setAttribute("role", "group");
chips.setAttribute("aria-label", "Show changes of kind");
const chipButtons = new Map<TensorChange, HTMLButtonElement>();
const allChip = button("All", () => setChanges(null), { cls: "diff-chip", title: "Show every tensor" });
chips.append(allChip);
for (const c of CHANGES) {
  const b = button(CHANGE_LABEL[c], () => toggleChange(c), { cls: `diff-chip change-${c}` });
  chipButtons.set(c, b);
  chips.append(b);
}
const filter = el("input", "ck-filter");
filter.type = "search";
filter.placeholder = "Filter tensors: name, dtype:F16, shape:768x";
filter.setAttribute("aria-label", "Filter tensors");
filter.value = ui.query;
const countLabel = el("span", "ck-count");
countLabel.setAttribute("aria-live", "polite");
const toolbar = el("div", "ck-toolbar");
toolbar.append(filter, countLabel);

function dtypeOf(t: CheckpointTensor | null): string {
  return t ? t.dtype : "—";
}
function shapeOf(t: CheckpointTensor | null): string {
  return t ? formatShape(t.shape) : "—";
}

const table = new VirtualTable<CheckpointDiffTensor>({
  label: "Tensor changes",
  rowHeight: 24,
  columns: [
    {
      key: "change",
      label: "Change",
      width: "minmax(7em, 0.9fr)",
      sortable: true,
      render: (t, cell) => {
        cell.append(el("span", `diff-kind change-${t.change}`, CHANGE_LABEL[t.change]));
      },
    },
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
      label: "DType A",
      width: "minmax(5em, 0.7fr)",
      sortable: true,
      render: (t, cell) => {
        cell.textContent = dtypeOf(t.a);
        if (t.change === "retyped") cell.classList.add("diff-hl");
      },
    },
    {
      key: "shape",
      label: "Shape A",
      width: "minmax(8em, 1.3fr)",
      sortable: true,
      render: (t, cell) => {
        cell.textContent = shapeOf(t.a);
        cell.classList.add("mono");
        if (t.change === "reshaped") cell.classList.add("diff-hl");
      },
    },
    {
      key: "dtypeB",
      label: "DType B",
      width: "minmax(5em, 0.7fr)",
      render: (t, cell) => {
        cell.textContent = dtypeOf(t.b);
        if (t.change === "retyped") cell.classList.add("diff-hl");
      },
    },
    {
      key: "shapeB",
      label: "Shape B",
      width: "minmax(8em, 1.3fr)",
      render: (t, cell) => {
        cell.textContent = shapeOf(t.b);
        cell.classList.add("mono");
        if (t.change === "reshaped") cell.classList.add("diff-hl");
      },
    },
  ],
  onSort: (key) => {
    const k = key as DiffSortKey;
    if (ui.sort === k) ui.dir = ui.dir === "asc" ? "desc" : "asc";
    else {
      ui.sort = k;
      ui.dir = "asc";
    }
    save();
    apply(true);
  },
});

const metaSection = el("section", "diff-meta");
content.append(summaryLine, chips, toolbar, table.root, metaSection);
root.append(header, loading, errorBox, content);

// ---- behaviour -------------------------------------------------------------------------

let filterTimer: number | undefined;
filter.addEventListener("input", () => {
  if (filterTimer) clearTimeout(filterTimer);
  filterTimer = window.setTimeout(() => {
    ui.query = filter.value;
    save();
    apply(false);
  }, 120);
});
filter.addEventListener("keydown", (e) => {
  if (e.key === "ArrowDown") {
    e.preventDefault();
    table.focus();
  }
});

function setChanges(changes: TensorChange[] | null): void {
  ui.changes = changes;
  save();
  apply(false);
}

function toggleChange(c: TensorChange): void {
  const next = new Set(shown.size ? shown : []);
  if (next.has(c)) next.delete(c);
  else next.add(c);
  setChanges(next.size ? CHANGES.filter((x) => next.has(x)) : null);
}

/** By default show what changed; when nothing did, everything. */
function defaultChanges(r: CheckpointDiffResult): TensorChange[] | null {
  const changed = CHANGES.filter((c) => c !== "unchanged" && r.counts[c] > 0);
  return changed.length && r.counts.unchanged > 0 ? changed : null;
}

function apply(keepScroll: boolean): void {
  const rows = result?.tensors ?? [];
  shown = new Set(ui.changes ?? []);
  const order = index.query({ text: ui.query, changes: shown, sort: ui.sort, dir: ui.dir });
  table.setRows(rows, order, keepScroll);
  table.setSort(ui.sort, ui.dir);
  allChip.setAttribute("aria-pressed", String(!shown.size));
  for (const [c, b] of chipButtons) b.setAttribute("aria-pressed", String(shown.has(c)));
  countLabel.textContent =
    order.length === rows.length
      ? `${formatInt(rows.length)} tensors`
      : `${formatInt(order.length)} of ${formatInt(rows.length)} tensors`;
}

function renderSide(box: HTMLElement, label: string, f: CheckpointFile | string, side: "a" | "b"): void {
  box.replaceChildren();
  const path = typeof f === "string" ? f : f.path;
  const name = button(`${label}: ${basename(path)}`, () => post({ type: "open", side }), {
    cls: "diff-open",
    title: `Inspect ${path}`,
  });
  box.append(name);
  const info = typeof f === "string" ? path : `${formatName(f.format)} · ${formatBytes(f.size)} · ${path}`;
  const p = el("div", "ck-subtitle", info);
  p.title = path;
  box.append(p);
}

function renderMetadata(r: CheckpointDiffResult): void {
  metaSection.replaceChildren(el("h3", undefined, `Metadata changes (${r.metadata.length})`));
  if (!r.metadata.length) {
    metaSection.append(el("p", "ck-muted", "No metadata changed."));
    return;
  }
  const t = el("table", "diff-meta-table");
  const head = el("tr");
  for (const h of ["Key", "A", "B"]) {
    const th = el("th", undefined, h);
    th.scope = "col";
    head.append(th);
  }
  t.append(head);
  for (const m of r.metadata) {
    const tr = el("tr");
    const a = shortJson(m.a);
    const b = shortJson(m.b);
    const ta = el("td", "mono", a);
    ta.title = shortJson(m.a, 5000);
    const tb = el("td", "mono", b);
    tb.title = shortJson(m.b, 5000);
    tr.append(el("td", "mono", m.key), ta, tb);
    t.append(tr);
  }
  metaSection.append(t);
}

function showState(next: DiffRenderedState["status"]): void {
  status = next;
  root.setAttribute("aria-busy", String(next === "loading"));
  loading.hidden = next !== "loading";
  errorBox.hidden = next !== "error";
  content.hidden = next !== "ready";
}

function showDiff(r: CheckpointDiffResult): void {
  const key = `${r.a.path}\n${r.b.path}`;
  const pairChanged = ui.filtersFor !== key;
  result = r;
  index = new DiffIndex(r.tensors);
  if (pairChanged) {
    ui.filtersFor = key;
    ui.changes = defaultChanges(r);
    save();
  }
  renderSide(sideA, "A", r.a, "a");
  renderSide(sideB, "B", r.b, "b");
  summaryLine.textContent = r.summary;
  for (const c of CHANGES) {
    const b = chipButtons.get(c);
    if (!b) continue;
    b.textContent = `${CHANGE_LABEL[c]} ${formatInt(r.counts[c])}`;
    b.disabled = r.counts[c] === 0 && !(ui.changes ?? []).includes(c);
  }
  allChip.textContent = `All ${formatInt(r.tensors.length)}`;
  renderMetadata(r);
  showState("ready");
  apply(!pairChanged);
}

function showError(a: string, b: string, e: ViewError): void {
  renderSide(sideA, "A", a, "a");
  renderSide(sideB, "B", b, "b");
  errorMessage.textContent = e.message;
  errorHint.textContent = e.hint ?? "See the logs for details.";
  showState("error");
}

function drive(d: DiffDrive): void {
  if (d.changes) setChanges(d.changes.length ? d.changes : null);
  if (d.filter !== undefined) {
    filter.value = ui.query = d.filter;
    save();
    apply(false);
  }
}

function renderedState(): DiffRenderedState {
  const counts: Record<string, number> = {};
  for (const [c, b] of chipButtons) counts[c] = Number((b.textContent ?? "").replace(/\D/g, "")) || 0;
  const firstRows = [...table.root.querySelectorAll(".vt-row")].slice(0, 20).map((r) => {
    const cells = [...r.querySelectorAll(".vt-cell")].map((c) => c.textContent ?? "");
    return { change: cells[0] ?? "", name: cells[1] ?? "", a: `${cells[2]} ${cells[3]}`, b: `${cells[4]} ${cells[5]}` };
  });
  return {
    status,
    a: result?.a.path ?? ui.a ?? null,
    b: result?.b.path ?? ui.b ?? null,
    summary: summaryLine.textContent ?? "",
    counts,
    changesShown: [...shown],
    query: filter.value,
    rowsMatching: table.matching,
    rowsRendered: table.renderedRows,
    firstRows,
    metadata: [...metaSection.querySelectorAll("tr")].slice(1).map((tr) => {
      const td = [...tr.querySelectorAll("td")].map((c) => c.textContent ?? "");
      return { key: td[0] ?? "", a: td[1] ?? "", b: td[2] ?? "" };
    }),
    error: status === "error" ? { message: errorMessage.textContent ?? "", hint: errorHint.textContent } : null,
  };
}

window.addEventListener("message", (event: MessageEvent<DiffHostMessage>) => {
  const m = event.data;
  switch (m.type) {
    case "loading":
      ui.a = m.a;
      ui.b = m.b;
      result = undefined;
      save();
      renderSide(sideA, "A", m.a, "a");
      renderSide(sideB, "B", m.b, "b");
      loadingText.textContent = `Comparing ${basename(m.a)} with ${basename(m.b)}…`;
      showState("loading");
      break;
    case "diff":
      showDiff(m.result);
      break;
    case "error":
      showError(m.a, m.b, m.error);
      break;
    case "drive":
      drive(m.drive);
      break;
    case "queryState":
      post({ type: "state", requestId: m.requestId, state: renderedState() });
      break;
  }
});

showState("loading");
post({ type: "ready" });
