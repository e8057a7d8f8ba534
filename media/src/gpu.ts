/**
 * Front end of the GPU panel (host: src/gpu/panel.ts): live line charts of utilization,
 * memory, power and temperature per GPU over the last 15 minutes (Chart.js, tree-shaken),
 * the health reasons, a card per GPU with its static information and processes, and
 * "Run Health Checks". Everything arrives by postMessage; nothing is fetched.
 */
import {
  Chart,
  type ChartConfiguration,
  Legend,
  LinearScale,
  LineController,
  LineElement,
  PointElement,
  Tooltip,
} from "chart.js";
import {
  allReasons,
  appendPoint,
  celsius,
  GIB,
  gib,
  HISTORY_SECONDS,
  memory,
  percent,
  power,
  reasonLine,
  toHistoryPoint,
} from "../../src/gpu/format";
import type {
  GpuChartState,
  GpuMetric,
  GpuPanelHostMessage,
  GpuPanelMachine,
  GpuPanelRenderedState,
  GpuPanelViewMessage,
} from "../../src/gpu/messages";
import type { GpuHistoryGpu, GpuHistoryPoint, GpuInfo, GpuSnapshot } from "../../src/protocol";

Chart.register(LineController, LineElement, PointElement, LinearScale, Legend, Tooltip);

interface VsCodeApi {
  postMessage(m: GpuPanelViewMessage): void;
  getState(): unknown;
  setState(s: unknown): void;
}
declare function acquireVsCodeApi(): VsCodeApi;
const vscode = acquireVsCodeApi();
const post = (m: GpuPanelViewMessage) => vscode.postMessage(m);
// The serializer needs no data: the panel loads the history again after a reload.
vscode.setState({ view: "gpu" });

function el<K extends keyof HTMLElementTagNameMap>(tag: K, cls?: string, text?: string): HTMLElementTagNameMap[K] {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined) e.textContent = text;
  return e;
}

function button(label: string, onClick: () => void, title?: string): HTMLButtonElement {
  const b = el("button", "gpu-button", label);
  b.type = "button";
  if (title) b.title = title;
  b.addEventListener("click", onClick);
  return b;
}

function themeColor(name: string, fallback: string): string {
  const v = getComputedStyle(document.body).getPropertyValue(name).trim();
  return v || fallback;
}

const SERIES_COLORS: [string, string][] = [
  ["--vscode-charts-blue", "#3794ff"],
  ["--vscode-charts-orange", "#d18616"],
  ["--vscode-charts-green", "#89d185"],
  ["--vscode-charts-purple", "#b180d7"],
  ["--vscode-charts-red", "#f14c4c"],
  ["--vscode-charts-yellow", "#cca700"],
];

function seriesColor(i: number): string {
  const [name, fallback] = SERIES_COLORS[i % SERIES_COLORS.length] ?? SERIES_COLORS[0] ?? ["", "#3794ff"];
  return themeColor(name, fallback);
}

// ---- state -----------------------------------------------------------------------------

let status: GpuPanelRenderedState["status"] = "loading";
let snapshot: GpuSnapshot | null = null;
let points: GpuHistoryPoint[] = [];
let errorText: string | null = null;
let checkRunning = false;
/** The machine shown ("" this one) and those the picker offers. */
let shown: GpuPanelMachine = { machine: "", label: "Local" };
let choices: GpuPanelMachine[] = [];

// ---- skeleton ------------------------------------------------------------------------------

const root = document.getElementById("gpuwb-gpu") ?? document.body;
const header = el("header", "gpu-header");
const titleBox = el("div", "gpu-title");
const heading = el("h1", undefined, "GPU");
const verdictBadge = el("span", "gpu-verdict");
const subtitle = el("div", "gpu-muted");
titleBox.append(heading, verdictBadge, subtitle);
const actions = el("div", "gpu-actions");
const checkButton = button("Run Health Checks", () => post({ type: "check" }), "Run GPU Workbench: Check GPU Health");
const settingsButton = el("button", "gpu-button secondary", "Settings");
settingsButton.type = "button";
settingsButton.addEventListener("click", () => post({ type: "openSettings" }));
// The machine shown: this one or a connected one (the host watches and loads the one picked).
const machinePicker = el("select", "gpu-machine-picker");
machinePicker.title = "The machine whose GPUs are shown";
machinePicker.setAttribute("aria-label", "Machine");
machinePicker.addEventListener("change", () => post({ type: "pickMachine", machine: machinePicker.value }));
actions.append(machinePicker, checkButton, settingsButton);
header.append(titleBox, actions);

const messageBox = el("div", "gpu-message");
messageBox.hidden = true;
const reasonsBox = el("ul", "gpu-reasons");
reasonsBox.setAttribute("aria-label", "Health reasons");
const machineInfo = el("dl", "gpu-info gpu-machine-info");

const chartsBox = el("section", "gpu-charts");
chartsBox.setAttribute("aria-label", "Charts of the last 15 minutes");

interface MetricSpec {
  metric: GpuMetric;
  title: string;
  unit: string;
  value: (g: GpuHistoryGpu) => number | null;
  max?: (snap: GpuSnapshot | null) => number | undefined;
}

const METRICS: MetricSpec[] = [
  { metric: "utilization", title: "Utilization", unit: "%", value: (g) => g.utilization, max: () => 100 },
  {
    metric: "memory",
    title: "Memory",
    unit: "GiB",
    value: (g) => (g.memoryUsed === null ? null : g.memoryUsed / GIB),
    max: (s) => {
      const totals = (s?.gpus ?? []).map((g) => g.memoryTotal ?? 0);
      const m = Math.max(0, ...totals);
      return m > 0 ? Math.ceil(m / GIB) : undefined;
    },
  },
  { metric: "power", title: "Power", unit: "W", value: (g) => g.powerDraw },
  { metric: "temperature", title: "Temperature", unit: "°C", value: (g) => g.temperature },
];

interface ChartBox {
  spec: MetricSpec;
  chart: Chart<"line", { x: number; y: number | null }[], unknown>;
}

const charts: ChartBox[] = [];

function clock(t: number): string {
  return new Date(t * 1000).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit", second: "2-digit" });
}

function makeChart(spec: MetricSpec): ChartBox {
  const card = el("div", "gpu-chart-card");
  const h = el("h2", undefined, `${spec.title} (${spec.unit})`);
  const box = el("div", "gpu-chart");
  const canvas = el("canvas");
  canvas.setAttribute("role", "img");
  canvas.setAttribute("aria-label", `${spec.title} per GPU over the last 15 minutes`);
  box.append(canvas);
  card.append(h, box);
  chartsBox.append(card);
  const fg = themeColor("--vscode-foreground", "#ccc");
  const grid = themeColor("--vscode-editorWidget-border", "rgba(128,128,128,0.3)");
  const config: ChartConfiguration<"line", { x: number; y: number | null }[], unknown> = {
    type: "line",
    data: { datasets: [] },
    options: {
      animation: false,
      responsive: true,
      maintainAspectRatio: false,
      parsing: false,
      normalized: true,
      spanGaps: false,
      interaction: { mode: "nearest", axis: "x", intersect: false },
      elements: { point: { radius: 0, hitRadius: 6 }, line: { borderWidth: 1.5, tension: 0 } },
      plugins: {
        legend: { display: true, labels: { color: fg, boxWidth: 12 } },
        tooltip: {
          callbacks: {
            title: (items) => clock(items[0]?.parsed.x ?? 0),
            label: (item) => {
              const y = item.parsed.y;
              return `${item.dataset.label}: ${y === null ? "—" : y.toFixed(spec.metric === "memory" ? 1 : 0)} ${spec.unit}`;
            },
          },
        },
      },
      scales: {
        x: {
          type: "linear",
          ticks: { color: fg, maxTicksLimit: 6, callback: (v) => clock(Number(v)) },
          grid: { color: grid },
        },
        y: { type: "linear", beginAtZero: true, ticks: { color: fg, maxTicksLimit: 6 }, grid: { color: grid } },
      },
    },
  };
  return { spec, chart: new Chart(canvas, config) };
}

const gpusBox = el("section", "gpu-cards");
gpusBox.setAttribute("aria-label", "GPUs");

root.append(header, messageBox, reasonsBox, machineInfo, chartsBox, gpusBox);
for (const spec of METRICS) charts.push(makeChart(spec));

// ---- rendering -------------------------------------------------------------------------------

function gpuLabel(index: number): string {
  const g = snapshot?.gpus.find((x) => x.index === index);
  return g ? `GPU ${index} · ${g.name}` : `GPU ${index}`;
}

function drawCharts(): void {
  const indexes = new Set<number>();
  for (const p of points) for (const g of p.gpus) indexes.add(g.index);
  const order = [...indexes].sort((a, b) => a - b);
  const last = points[points.length - 1];
  const now = last?.time ?? Date.now() / 1000;
  // The last 15 minutes; while the history is shorter, what there is (at least a minute).
  const first = points[0]?.time ?? now;
  const start = Math.max(now - HISTORY_SECONDS, Math.min(first, now - 60));
  for (const { spec, chart } of charts) {
    chart.data.datasets = order.map((index, i) => {
      const color = seriesColor(i);
      return {
        label: order.length > 1 ? `GPU ${index}` : gpuLabel(index),
        data: points.map((p) => {
          const g = p.gpus.find((x) => x.index === index);
          return { x: p.time, y: g ? spec.value(g) : null };
        }),
        borderColor: color,
        backgroundColor: color,
      };
    });
    const x = chart.options.scales?.x;
    if (x) {
      x.min = start;
      x.max = now;
    }
    const y = chart.options.scales?.y;
    if (y) y.suggestedMax = spec.max?.(snapshot);
    chart.update("none");
  }
}

function verdictWord(v: string): string {
  return v === "ok" ? "OK" : v === "warn" ? "Warning" : v === "critical" ? "Critical" : v;
}

function dlRow(dl: HTMLElement, key: string, value: string): void {
  const dt = el("dt", undefined, key);
  const dd = el("dd", undefined, value);
  dl.append(dt, dd);
}

function pcieText(g: GpuInfo): string {
  const p = g.pcie;
  if (p.gen === null && p.width === null) return "—";
  const cur = `Gen ${p.gen ?? "?"} x${p.width ?? "?"}`;
  const max = p.maxGen !== null || p.maxWidth !== null ? ` (max Gen ${p.maxGen ?? "?"} x${p.maxWidth ?? "?"})` : "";
  return cur + max;
}

function eccText(g: GpuInfo): string {
  const e = g.ecc;
  const vals = [e.correctedVolatile, e.uncorrectedVolatile, e.correctedAggregate, e.uncorrectedAggregate];
  if (vals.every((v) => v === null)) return "not reported";
  const n = (v: number | null) => (v === null ? "—" : String(v));
  return `volatile ${n(e.correctedVolatile)} corrected / ${n(e.uncorrectedVolatile)} uncorrected; aggregate ${n(e.correctedAggregate)} / ${n(e.uncorrectedAggregate)}`;
}

function remapText(g: GpuInfo): string {
  const r = g.remappedRows;
  if (!r) return "not supported";
  const n = (v: number | null) => (v === null ? "—" : String(v));
  const flags = [r.pending ? "remap pending (reset needed)" : "", r.failure ? "remap failure" : ""].filter(Boolean);
  return `${n(r.correctable)} correctable, ${n(r.uncorrectable)} uncorrectable${flags.length ? `; ${flags.join(", ")}` : ""}`;
}

function gpuCard(g: GpuInfo): HTMLElement {
  const card = el("article", `gpu-card verdict-${g.verdict}`);
  const h = el("h2");
  h.append(el("span", "gpu-card-title", `GPU ${g.index} · ${g.name}`));
  h.append(
    el("span", `gpu-verdict verdict-${g.lost ? "critical" : g.verdict}`, g.lost ? "Lost" : verdictWord(g.verdict)),
  );
  card.append(h);
  const dl = el("dl", "gpu-info");
  if (g.lost) {
    dlRow(dl, "State", "Fallen off the bus: no values can be read.");
  } else {
    dlRow(dl, "Utilization", `${percent(g.utilization)} (memory controller ${percent(g.memoryUtilization)})`);
    dlRow(dl, "Memory", memory(g.memoryUsed, g.memoryTotal));
    dlRow(
      dl,
      "Temperature",
      `${celsius(g.temperature)}${g.temperatureSlowdown !== null ? ` (slowdown at ${celsius(g.temperatureSlowdown)})` : ""}`,
    );
    dlRow(dl, "Power", power(g.powerDraw, g.powerLimit));
    dlRow(dl, "Throttling", g.throttle.length ? g.throttle.join(", ") : "none");
  }
  dlRow(dl, "UUID", g.uuid);
  dlRow(dl, "PCIe", pcieText(g));
  dlRow(dl, "ECC errors", eccText(g));
  dlRow(dl, "Remapped rows", remapText(g));
  dlRow(dl, "Persistence mode", g.persistenceMode === null ? "—" : g.persistenceMode ? "on" : "off");
  if (g.xids.length) {
    dlRow(dl, "Xid events", g.xids.map((x) => `Xid ${x.xid} at ${clock(x.time)}: ${x.meaning}`).join("; "));
  }
  card.append(dl);

  const procTitle = el("h3", undefined, `Processes (${g.processes.length})`);
  card.append(procTitle);
  if (g.processes.length) {
    const table = el("table", "gpu-procs");
    const head = el("tr");
    for (const c of ["PID", "Name", "Memory"]) head.append(el("th", undefined, c));
    table.append(el("thead"));
    table.tHead?.append(head);
    const body = el("tbody");
    for (const p of g.processes) {
      const tr = el("tr");
      tr.dataset.gpu = String(g.index);
      tr.append(
        el("td", "num", String(p.pid)),
        el("td", "mono", p.name ?? "—"),
        el("td", "num", p.usedMemory === null ? "—" : `${gib(p.usedMemory)} GiB`),
      );
      body.append(tr);
    }
    table.append(body);
    card.append(table);
  } else {
    card.append(el("p", "gpu-muted", "No processes use this GPU."));
  }
  return card;
}

function renderPicker(): void {
  const list = choices.some((c) => c.machine === shown.machine) ? choices : [shown, ...choices];
  machinePicker.replaceChildren(
    ...list.map((c) => {
      const o = el("option", undefined, c.label);
      o.value = c.machine;
      o.selected = c.machine === shown.machine;
      return o;
    }),
  );
  machinePicker.value = shown.machine;
  machinePicker.hidden = list.length < 2;
}

function renderDetails(): void {
  const s = snapshot;
  // A connected machine by its name; this one by its host name once known.
  heading.textContent = `GPU · ${shown.machine || !s ? shown.label : s.machine}`;
  renderPicker();
  verdictBadge.hidden = !s || s.source === "none" || !s.gpus.length;
  if (s) {
    verdictBadge.className = `gpu-verdict verdict-${s.verdict}`;
    verdictBadge.textContent = verdictWord(s.verdict);
  }
  const bits: string[] = [];
  if (s?.time) bits.push(`updated ${clock(s.time)}`);
  if (s?.sampling) bits.push(`every ${s.intervalSeconds} s`);
  if (s && s.source !== "none") bits.push(`via ${s.source === "nvml" ? "NVML" : "nvidia-smi"}`);
  subtitle.textContent = bits.join(" · ");

  const none = !!s && (s.source === "none" || !s.gpus.length);
  const msg = errorText ?? (none ? `No GPU: ${s?.message ?? "no NVIDIA GPU was found on this machine."}` : null);
  messageBox.hidden = !msg;
  messageBox.textContent = msg ?? "";
  messageBox.className = `gpu-message${errorText ? " error" : ""}`;
  chartsBox.hidden = none || (!s && !points.length);

  reasonsBox.replaceChildren();
  for (const r of s ? allReasons(s) : []) {
    const li = el("li", `reason-${r.severity}`, reasonLine(r));
    reasonsBox.append(li);
  }
  reasonsBox.hidden = !reasonsBox.childElementCount;

  machineInfo.replaceChildren();
  if (s && !none) {
    dlRow(machineInfo, "Driver", s.driverVersion ?? "—");
    dlRow(machineInfo, "CUDA", s.cudaVersion ?? "—");
    dlRow(machineInfo, "GPUs", String(s.gpus.length));
  }
  machineInfo.hidden = !machineInfo.childElementCount;

  gpusBox.replaceChildren(...(s && !none ? s.gpus.map(gpuCard) : []));
  checkButton.disabled = checkRunning;
  checkButton.textContent = checkRunning ? "Checking…" : "Run Health Checks";
  status = errorText && !s ? "error" : !s ? "loading" : none ? "none" : "ready";
  root.setAttribute("aria-busy", String(status === "loading"));
}

// ---- state for tests --------------------------------------------------------------------------

function chartState(metric: GpuMetric): GpuChartState {
  const box = charts.find((c) => c.spec.metric === metric);
  const sets = box?.chart.data.datasets ?? [];
  return {
    datasets: sets.length,
    points: Math.max(0, ...sets.map((d) => d.data.length)),
    last: sets.map((d) => d.data[d.data.length - 1]?.y ?? null),
  };
}

function renderedState(): GpuPanelRenderedState {
  const info: Record<string, string> = {};
  const read = (dl: Element, prefix: string) => {
    const dts = dl.querySelectorAll("dt");
    for (const dt of dts) info[`${prefix}${dt.textContent ?? ""}`] = dt.nextElementSibling?.textContent ?? "";
  };
  read(machineInfo, "");
  for (const card of gpusBox.querySelectorAll(".gpu-card")) {
    const title = card.querySelector(".gpu-card-title")?.textContent ?? "";
    const dl = card.querySelector("dl");
    if (dl) read(dl, `${title.split(" · ")[0]} `);
  }
  const processes: GpuPanelRenderedState["processes"] = [];
  for (const tr of gpusBox.querySelectorAll<HTMLTableRowElement>("tbody tr")) {
    const cells = [...tr.cells].map((c) => c.textContent ?? "");
    processes.push({
      gpu: Number(tr.dataset.gpu),
      pid: Number(cells[0]),
      name: cells[1] ?? "",
      memory: cells[2] ?? "",
    });
  }
  return {
    status,
    machine: snapshot?.machine ?? null,
    heading: heading.textContent ?? "",
    picker: {
      choices: [...machinePicker.options].map((o) => ({ machine: o.value, label: o.textContent ?? "" })),
      selected: machinePicker.value,
    },
    verdict: verdictBadge.hidden ? null : (verdictBadge.textContent ?? null),
    gpus: [...gpusBox.querySelectorAll(".gpu-card-title")].map((e) => e.textContent ?? ""),
    charts: {
      utilization: chartState("utilization"),
      memory: chartState("memory"),
      power: chartState("power"),
      temperature: chartState("temperature"),
    },
    processes,
    reasons: [...reasonsBox.querySelectorAll("li")].map((e) => e.textContent ?? ""),
    info,
    message: messageBox.hidden ? null : messageBox.textContent,
    checkRunning,
  };
}

// ---- messages -----------------------------------------------------------------------------------

function accept(s: GpuSnapshot): void {
  snapshot = s;
  if (s.source !== "none" && s.gpus.length) appendPoint(points, toHistoryPoint(s));
}

window.addEventListener("message", (event: MessageEvent<GpuPanelHostMessage>) => {
  const m = event.data;
  switch (m.type) {
    case "init":
      shown = m.machine;
      choices = m.machines;
      points = [...m.points].sort((a, b) => a.time - b.time);
      errorText = m.error;
      snapshot = null;
      if (m.snapshot) accept(m.snapshot);
      renderDetails();
      drawCharts();
      break;
    case "sample":
      errorText = null;
      accept(m.snapshot);
      renderDetails();
      drawCharts();
      break;
    case "error":
      errorText = m.message;
      renderDetails();
      break;
    case "machines":
      shown = m.machine;
      choices = m.machines;
      renderDetails();
      break;
    case "checking":
      checkRunning = m.running;
      renderDetails();
      break;
    case "queryState":
      post({ type: "state", requestId: m.requestId, state: renderedState() });
      break;
  }
});

renderDetails();
post({ type: "ready" });
