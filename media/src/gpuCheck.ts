/**
 * Front end of the GPU health check report (host: src/gpu/checkReport.ts): the verdict, a
 * row per check with its status, measured and expected values, coloured by status with the
 * theme's colours, and "Export as Markdown". The report is kept in the view's state, so a
 * reloaded window shows it again without running the check.
 */
import { expectedText, measuredText, statusCounts } from "../../src/gpu/format";
import type {
  GpuCheckHostMessage,
  GpuCheckRenderedState,
  GpuCheckView,
  GpuCheckViewMessage,
} from "../../src/gpu/messages";

interface VsCodeApi {
  postMessage(m: GpuCheckViewMessage): void;
  getState(): unknown;
  setState(s: unknown): void;
}
declare function acquireVsCodeApi(): VsCodeApi;
const vscode = acquireVsCodeApi();
const post = (m: GpuCheckViewMessage) => vscode.postMessage(m);

function el<K extends keyof HTMLElementTagNameMap>(tag: K, cls?: string, text?: string): HTMLElementTagNameMap[K] {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

function button(label: string, onClick: () => void, cls = "gpu-button"): HTMLButtonElement {
  const b = el("button", cls, label);
  b.type = "button";
  b.addEventListener("click", onClick);
  return b;
}

const STATUS_WORD: Record<string, string> = { pass: "Pass", warn: "Warn", fail: "Fail", skip: "Skip", info: "Info" };

let status: GpuCheckRenderedState["status"] = "running";
let view: GpuCheckView | null = ((vscode.getState() as { view?: GpuCheckView } | undefined)?.view ??
  null) as GpuCheckView | null;
let errorText: string | null = null;

const root = document.getElementById("gpuwb-gpu-check") ?? document.body;
const header = el("header", "gpu-header");
const titleBox = el("div", "gpu-title");
const heading = el("h1", undefined, "GPU Health Check");
const verdictBadge = el("span", "gpu-verdict");
const subtitle = el("div", "gpu-muted");
titleBox.append(heading, verdictBadge, subtitle);
const actions = el("div", "gpu-actions");
const exportButton = button("Export as Markdown", () => post({ type: "export" }));
const rerunButton = button("Run Again", () => post({ type: "rerun" }), "gpu-button secondary");
actions.append(exportButton, rerunButton);
header.append(titleBox, actions);
const note = el("div", "gpu-message note");
const progressLine = el("div", "gpu-progress");
progressLine.setAttribute("role", "status");
const errorBox = el("div", "gpu-message error");
const summary = el("div", "gpu-check-summary");
const table = el("table", "gpu-check");
const thead = el("thead");
const headRow = el("tr");
for (const c of ["Status", "Check", "GPU", "Measured", "Expected", "Detail"]) headRow.append(el("th", undefined, c));
thead.append(headRow);
const tbody = el("tbody");
table.append(thead, tbody);
root.append(header, note, progressLine, errorBox, summary, table);

function render(progress: string | null): void {
  const r = view?.report;
  verdictBadge.hidden = !r;
  if (r) {
    verdictBadge.className = `gpu-verdict check-${r.verdict}`;
    verdictBadge.textContent = STATUS_WORD[r.verdict] ?? r.verdict;
    const when = new Date(r.time * 1000).toLocaleString();
    subtitle.textContent = `${r.machine} · ${when} · took ${(r.durationMs / 1000).toFixed(1)} s${
      view?.python ? ` · benchmarks with ${view.python}` : ""
    }`;
  } else {
    subtitle.textContent = "";
  }
  note.hidden = !view?.note;
  note.textContent = view?.note ?? "";
  progressLine.hidden = status !== "running";
  progressLine.textContent = status === "running" ? `Checking… ${progress ?? ""}`.trim() : "";
  errorBox.hidden = !errorText;
  errorBox.textContent = errorText ?? "";
  exportButton.disabled = !r;
  rerunButton.disabled = status === "running";

  tbody.replaceChildren();
  if (r) {
    const c = statusCounts(r);
    summary.textContent = `${c.pass} passed · ${c.warn} warnings · ${c.fail} failed · ${c.skip} skipped · ${c.info} info`;
    for (const row of r.rows) {
      const tr = el("tr", `row-${row.status}`);
      tr.dataset.id = row.id;
      const chip = el("span", `chip chip-${row.status}`, STATUS_WORD[row.status] ?? row.status);
      const statusCell = el("td", "status");
      statusCell.append(chip);
      tr.append(
        statusCell,
        el("td", "title", row.title),
        el("td", "num", row.gpu === null ? "—" : String(row.gpu)),
        el("td", "num", measuredText(row)),
        el("td", "num", expectedText(row)),
        el("td", "detail", row.detail),
      );
      tbody.append(tr);
    }
  } else {
    summary.textContent = status === "ready" ? "No report yet: press Run Again to check this machine's GPUs." : "";
  }
  table.hidden = !r;
  summary.hidden = !summary.textContent;
  root.setAttribute("aria-busy", String(status === "running"));
}

function renderedState(): GpuCheckRenderedState {
  return {
    status,
    verdict: verdictBadge.hidden ? null : verdictBadge.textContent,
    note: note.hidden ? null : note.textContent,
    rows: [...tbody.querySelectorAll<HTMLTableRowElement>("tr")].map((tr) => {
      const cells = [...tr.cells].map((c) => c.textContent ?? "");
      const chip = tr.querySelector(".chip");
      return {
        id: tr.dataset.id ?? "",
        status: (tr.className.match(/row-(\w+)/)?.[1] ?? "").toString(),
        title: cells[1] ?? "",
        measured: cells[3] ?? "",
        expected: cells[4] ?? "",
        detail: cells[5] ?? "",
        color: chip ? getComputedStyle(chip).color : "",
      };
    }),
    error: errorBox.hidden ? null : errorText,
  };
}

window.addEventListener("message", (event: MessageEvent<GpuCheckHostMessage>) => {
  const m = event.data;
  switch (m.type) {
    case "running":
      status = "running";
      errorText = null;
      render(m.message);
      break;
    case "report":
      status = "ready";
      errorText = null;
      view = m.view;
      vscode.setState({ view });
      render(null);
      break;
    case "error":
      status = "error";
      errorText = m.message;
      render(null);
      break;
    case "queryState":
      post({ type: "state", requestId: m.requestId, state: renderedState() });
      break;
  }
});

status = "ready";
render(null);
post({ type: "ready" });
