/** Compact text for a kernel variable: no vscode import, so it is unit-testable. */
import type { Variable } from "../protocol";

/** `(3, 224, 224)`; a 1-d shape keeps its comma as in Python: `(5,)`. */
export function formatShape(shape: number[]): string {
  return shape.length === 1 ? `(${shape[0]},)` : `(${shape.join(", ")})`;
}

/** Bytes in binary units: `512 B`, `1.5 KiB`, `588 MiB`. */
export function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  const units = ["KiB", "MiB", "GiB", "TiB", "PiB"];
  let v = n;
  let u = -1;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return `${v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2).replace(/\.?0+$/, "")} ${units[u]}`;
}

/** `type shape/len dtype size`, leaving out what the variable does not have. */
export function describeVariable(v: Variable): string {
  const parts = [v.type];
  if (v.shape) parts.push(formatShape(v.shape));
  else if (v.length !== null && v.length !== undefined) parts.push(`len ${v.length}`);
  if (v.dtype) parts.push(v.dtype);
  if (v.size !== null && v.size !== undefined) parts.push(formatBytes(v.size));
  return parts.join(" ");
}
