/**
 * A compact, columnar form of a tensor list for the trip from the extension host to the
 * webview: 100,000 tensor objects as JSON are ~40 MB, the same as columns ~5 MB, and far
 * cheaper to serialize and clone. Columns whose values are all the default are left out.
 * Pure (no `vscode`, no DOM): the host encodes, the view decodes, the unit tests round-trip.
 */
import type { CheckpointTensor } from "../protocol";

export interface TensorColumns {
  count: number;
  name: string[];
  /** Index into `dtypes`. */
  dtype: number[];
  dtypes: string[];
  shape: number[][];
  numel: number[];
  nbytes: (number | null)[];
  offset: (number | null)[];
  storage?: (string | null)[];
  storageOffset?: number[];
  stride?: (number[] | null)[];
  /** Index into `files`; -1 for none. */
  file?: number[];
  files?: string[];
  member?: (string | null)[];
  bigEndian?: number[];
  /** 1 for training state, 0 for a weight. */
  state?: number[];
  detail?: (string | null)[];
}

/** A column, or undefined when every value equals `empty`. */
function sparse<T>(values: T[], empty: T): T[] | undefined {
  return values.some((v) => v !== empty) ? values : undefined;
}

export function encodeTensors(tensors: readonly CheckpointTensor[]): TensorColumns {
  const dtypes: string[] = [];
  const dtypeIndex = new Map<string, number>();
  const files: string[] = [];
  const fileIndex = new Map<string, number>();
  const intern = (table: string[], index: Map<string, number>, v: string): number => {
    let i = index.get(v);
    if (i === undefined) {
      i = table.length;
      table.push(v);
      index.set(v, i);
    }
    return i;
  };
  const cols: TensorColumns = {
    count: tensors.length,
    name: tensors.map((t) => t.name),
    dtype: tensors.map((t) => intern(dtypes, dtypeIndex, t.dtype)),
    dtypes,
    shape: tensors.map((t) => t.shape),
    numel: tensors.map((t) => t.numel),
    nbytes: tensors.map((t) => t.nbytes),
    offset: tensors.map((t) => t.offset),
  };
  const storage = sparse<string | null>(
    tensors.map((t) => t.storage),
    null,
  );
  if (storage) cols.storage = storage;
  const storageOffset = sparse(
    tensors.map((t) => t.storageOffset),
    0,
  );
  if (storageOffset) cols.storageOffset = storageOffset;
  if (tensors.some((t) => t.stride !== null)) cols.stride = tensors.map((t) => t.stride);
  if (tensors.some((t) => t.file !== null)) {
    cols.file = tensors.map((t) => (t.file === null ? -1 : intern(files, fileIndex, t.file)));
    cols.files = files;
  }
  const member = sparse<string | null>(
    tensors.map((t) => t.member),
    null,
  );
  if (member) cols.member = member;
  const bigEndian = sparse(
    tensors.map((t) => (t.byteOrder === "big" ? 1 : 0)),
    0,
  );
  if (bigEndian) cols.bigEndian = bigEndian;
  const state = sparse(
    tensors.map((t) => (t.role === "state" ? 1 : 0)),
    0,
  );
  if (state) cols.state = state;
  const detail = sparse<string | null>(
    tensors.map((t) => t.detail),
    null,
  );
  if (detail) cols.detail = detail;
  return cols;
}

export function decodeTensors(c: TensorColumns): CheckpointTensor[] {
  const out: CheckpointTensor[] = new Array(c.count);
  for (let i = 0; i < c.count; i++) {
    const f = c.file?.[i] ?? -1;
    out[i] = {
      name: c.name[i] ?? "",
      dtype: c.dtypes[c.dtype[i] ?? 0] ?? "",
      shape: c.shape[i] ?? [],
      numel: c.numel[i] ?? 0,
      nbytes: c.nbytes[i] ?? null,
      storage: c.storage?.[i] ?? null,
      storageOffset: c.storageOffset?.[i] ?? 0,
      stride: c.stride?.[i] ?? null,
      offset: c.offset[i] ?? null,
      file: f >= 0 ? (c.files?.[f] ?? null) : null,
      member: c.member?.[i] ?? null,
      byteOrder: c.bigEndian?.[i] ? "big" : "little",
      role: c.state?.[i] ? "state" : "weight",
      detail: c.detail?.[i] ?? null,
    };
  }
  return out;
}
