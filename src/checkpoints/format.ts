/**
 * Text for checkpoint numbers, shared by the tree, the commands and both webviews: no
 * `vscode` and no DOM, so it is unit-testable and bundles into the browser too.
 */
import { formatBytes, formatShape } from "../variables/format";

export { formatBytes, formatShape };

/** `950`, `12.3K`, `7.24M`, `1.05B`: parameter and element counts. */
export function formatCount(n: number): string {
  const abs = Math.abs(n);
  const units: [number, string][] = [
    [1e12, "T"],
    [1e9, "B"],
    [1e6, "M"],
    [1e3, "K"],
  ];
  for (const [scale, suffix] of units) {
    if (abs >= scale) {
      const v = n / scale;
      return `${Math.abs(v) >= 100 ? v.toFixed(0) : Math.abs(v) >= 10 ? v.toFixed(1) : v.toFixed(2)}${suffix}`;
    }
  }
  return String(n);
}

/** `1,234,567`: exact integers, grouped (locale-independent so tests can compare). */
export function formatInt(n: number): string {
  const sign = n < 0 ? "-" : "";
  const digits = String(Math.trunc(Math.abs(n)));
  return sign + digits.replace(/\B(?=(\d{3})+(?!\d))/g, ",");
}

/** A statistic: four significant digits, exponents for very large or small values. */
export function formatStat(v: number | null | undefined): string {
  if (v === null || v === undefined) return "—";
  if (Number.isNaN(v)) return "NaN";
  if (!Number.isFinite(v)) return v > 0 ? "+Inf" : "-Inf";
  if (v === 0) return "0";
  const abs = Math.abs(v);
  if (abs >= 1e5 || abs < 1e-3) return v.toExponential(3);
  return String(Number(v.toPrecision(4)));
}

/** `42.0%` of a fraction in [0, 1]. */
export function formatPercent(f: number | null | undefined): string {
  if (f === null || f === undefined || !Number.isFinite(f)) return "—";
  return `${(f * 100).toFixed(f > 0 && f < 0.001 ? 3 : 1)}%`;
}

/** `epoch 3 · step 1,200`, leaving out what is unknown; empty when both are. */
export function formatEpochStep(epoch: number | null | undefined, step: number | null | undefined): string {
  const parts: string[] = [];
  if (epoch !== null && epoch !== undefined) parts.push(`epoch ${formatInt(epoch)}`);
  if (step !== null && step !== undefined) parts.push(`step ${formatInt(step)}`);
  return parts.join(" · ");
}

/** Human names of the formats the backend reports. */
const FORMAT_NAMES: Record<string, string> = {
  safetensors: "safetensors",
  "pytorch-zip": "PyTorch (zip)",
  "pytorch-legacy": "PyTorch (legacy)",
  "pytorch-tar": "PyTorch (tar)",
  torchscript: "TorchScript",
  pickle: "Pickle",
  npy: "NumPy .npy",
  npz: "NumPy .npz",
  gguf: "GGUF",
  "hf-index": "Hugging Face sharded",
  "hf-folder": "Hugging Face folder",
};

export function formatName(format: string): string {
  return FORMAT_NAMES[format] ?? format;
}
