/**
 * The one typed surface of the backend protocol, mirrored by
 * server-python/gpu_workbench/protocol.py. Every custom method is a constant with its
 * param and result types; `PROTOCOL_SPEC` lists their field names at run time so a test
 * can compare both sides (test/unit/protocol.test.ts).
 *
 * This module must not import `vscode`: the CLI and unit tests use it too.
 */
import { RequestType, RequestType0 } from "vscode-jsonrpc";

// ---- records -------------------------------------------------------------------------

export interface PythonInfo {
  executable: string;
  version: string;
  implementation: string;
}

export interface StatusResult {
  name: string;
  version: string;
  pid: number;
  uptimeSeconds: number;
  python: PythonInfo;
  dataDirectory: string;
  trusted: boolean;
  capabilities: string[];
}

export interface PingParams {
  payload?: string;
}

export interface PingResult {
  payload: string | null;
  serverTime: number;
}

/** Options sent in `initialize`'s `initializationOptions`. */
export interface InitializationOptions {
  dataDirectory?: string;
  trusted?: boolean;
  logLevel?: "trace" | "debug" | "info" | "warning" | "error";
}

// ---- methods -------------------------------------------------------------------------

export const status = new RequestType0<StatusResult, void>("workbench/status");
export const ping = new RequestType<PingParams, PingResult, void>("workbench/ping");

// ---- errors --------------------------------------------------------------------------

/** Application error kinds and their JSON-RPC codes (from -32000 down, clear of LSP's). */
export const ERROR_KINDS = {
  Internal: -32000,
  InvalidState: -32010,
  NotFound: -32011,
  Unsupported: -32012,
  Untrusted: -32013,
  KernelDied: -32020,
  ProviderAuth: -32030,
  ProviderUnavailable: -32031,
  CheckpointFormat: -32040,
  UnsafePickle: -32041,
} as const;

export type ErrorKind = keyof typeof ERROR_KINDS;

/** The `data` of an application error. */
export interface ErrorData {
  kind: ErrorKind;
  detail?: string | null;
  hint?: string | null;
}

/** Narrow an unknown error (a vscode-jsonrpc ResponseError) to its application data. */
export function errorData(err: unknown): ErrorData | undefined {
  if (typeof err !== "object" || err === null) return undefined;
  const data = (err as { data?: unknown }).data;
  if (typeof data !== "object" || data === null) return undefined;
  const kind = (data as { kind?: unknown }).kind;
  if (typeof kind !== "string" || !(kind in ERROR_KINDS)) return undefined;
  return data as ErrorData;
}

// ---- run-time spec for the cross-language check --------------------------------------

/**
 * A shape lists every key of T exactly once: `true` for a leaf, a nested shape for a
 * record. The compiler rejects a missing or an extra key, so the spec cannot drift from
 * the interfaces above.
 */
export type Shape<T> = {
  [K in keyof Required<T>]-?: NonNullable<T[K]> extends readonly unknown[]
    ? true
    : NonNullable<T[K]> extends object
      ? Shape<NonNullable<T[K]>>
      : true;
};

function shape<T>(s: Shape<T>): Shape<T> {
  return s;
}

interface MethodSpec {
  kind: "request" | "notification";
  params: object | null;
  result: object | null;
}

/** Every custom method, keyed by name, with the shapes of its params and result. */
export const PROTOCOL_SPEC: Record<string, MethodSpec> = {
  [status.method]: {
    kind: "request",
    params: null,
    result: shape<StatusResult>({
      name: true,
      version: true,
      pid: true,
      uptimeSeconds: true,
      python: { executable: true, version: true, implementation: true },
      dataDirectory: true,
      trusted: true,
      capabilities: true,
    }),
  },
  [ping.method]: {
    kind: "request",
    params: shape<PingParams>({ payload: true }),
    result: shape<PingResult>({ payload: true, serverTime: true }),
  },
};

/** Flatten a shape into sorted dotted field paths, the form protocol.py prints. */
export function fieldPaths(s: object | null, prefix = ""): string[] {
  if (s === null) return [];
  const out: string[] = [];
  for (const [key, value] of Object.entries(s)) {
    if (value === true) out.push(prefix + key);
    else out.push(...fieldPaths(value as object, `${prefix}${key}.`));
  }
  return out.sort();
}
