/**
 * Histogram plots with Chart.js, tree-shaken: only the bar chart, its two scales (linear
 * and logarithmic counts) and the tooltip are registered. Colours come from the theme.
 */
import {
  BarController,
  BarElement,
  CategoryScale,
  Chart,
  type ChartConfiguration,
  LinearScale,
  LogarithmicScale,
  Tooltip,
} from "chart.js";
import { formatInt, formatStat } from "../../../src/checkpoints/format";
import type { CheckpointHistogram } from "../../../src/protocol";

Chart.register(BarController, BarElement, CategoryScale, LinearScale, LogarithmicScale, Tooltip);

function themeColor(name: string, fallback: string): string {
  const v = getComputedStyle(document.body).getPropertyValue(name).trim();
  return v || fallback;
}

export class HistogramPlot {
  private chart: Chart<"bar", number[], string> | undefined;
  tensor: string | undefined;
  sampled = false;

  constructor(private readonly canvas: HTMLCanvasElement) {}

  get bars(): number {
    return this.chart?.data.datasets[0]?.data.length ?? 0;
  }

  /** Draw the histogram of `tensor`; `log` plots counts on a logarithmic axis. */
  draw(tensor: string, h: CheckpointHistogram, sampled: boolean, log: boolean): void {
    this.tensor = tensor;
    this.sampled = sampled;
    const labels = h.counts.map((_, i) => {
      const lo = h.edges[i] ?? 0;
      const hi = h.edges[i + 1] ?? lo;
      return formatStat((lo + hi) / 2);
    });
    const fg = themeColor("--vscode-foreground", "#ccc");
    const grid = themeColor("--vscode-editorWidget-border", "rgba(128,128,128,0.3)");
    const bar = themeColor("--vscode-charts-blue", "#3794ff");
    const config: ChartConfiguration<"bar", number[], string> = {
      type: "bar",
      data: {
        labels,
        datasets: [
          {
            label: "count",
            data: h.counts.map((c) => (log && c === 0 ? Number.NaN : c)),
            backgroundColor: bar,
            borderWidth: 0,
            barPercentage: 1,
            categoryPercentage: 1,
          },
        ],
      },
      options: {
        animation: false,
        responsive: true,
        maintainAspectRatio: false,
        plugins: {
          tooltip: {
            callbacks: {
              title: (items) => {
                const i = items[0]?.dataIndex ?? 0;
                return `[${formatStat(h.edges[i])}, ${formatStat(h.edges[i + 1])})`;
              },
              label: (item) => `${formatInt(h.counts[item.dataIndex] ?? 0)} values`,
            },
          },
        },
        scales: {
          x: {
            ticks: { color: fg, maxRotation: 0, autoSkipPadding: 12 },
            grid: { display: false },
            title: { display: true, text: "value", color: fg },
          },
          y: {
            type: log ? "logarithmic" : "linear",
            ticks: { color: fg },
            grid: { color: grid },
            title: { display: true, text: sampled ? "count (sampled)" : "count", color: fg },
            beginAtZero: !log,
          },
        },
      },
    };
    this.chart?.destroy();
    this.chart = new Chart(this.canvas, config);
  }

  clear(): void {
    this.chart?.destroy();
    this.chart = undefined;
    this.tensor = undefined;
  }
}
