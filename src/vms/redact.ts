/**
 * Secret values never reach a log: every text written to the "GPU Workbench" channel
 * (our own log lines and the LanguageClient's protocol traces, which carry request params)
 * passes through one Redactor that knows the current provider credentials and replaces
 * each of them, raw or JSON-escaped, with "•••". Free of `vscode` values so units can test it.
 */
import type * as vscode from "vscode";

export const MASK = "•••";
/** Shorter values are not treated as secrets (they would mask ordinary words). */
const MIN_SECRET_LENGTH = 4;

export class Redactor {
  private patterns: string[] = [];

  /** Replace the known secrets (all values of all providers). */
  setSecrets(values: Iterable<string>): void {
    const set = new Set<string>();
    for (const v of values) {
      if (typeof v !== "string" || v.length < MIN_SECRET_LENGTH) continue;
      set.add(v);
      const escaped = JSON.stringify(v).slice(1, -1);
      set.add(escaped);
      // A trace of a trace: JSON inside a JSON string escapes twice.
      set.add(JSON.stringify(escaped).slice(1, -1));
    }
    // Longest first, so a secret that contains another is masked whole.
    this.patterns = [...set].sort((a, b) => b.length - a.length);
  }

  get size(): number {
    return this.patterns.length;
  }

  redact(text: string): string {
    if (!this.patterns.length || typeof text !== "string") return text;
    let out = text;
    for (const p of this.patterns) if (out.includes(p)) out = out.split(p).join(MASK);
    return out;
  }
}

/** The one redactor of this extension host (credentials feed it; the log channel uses it). */
export const redactor = new Redactor();

const WRITERS = new Set(["append", "appendLine", "replace", "trace", "debug", "info", "warn"]);

/**
 * The channel as a Proxy whose writers redact their text; everything else (logLevel,
 * events, show, dispose) passes through. Errors are redacted by message and stack.
 */
export function redactingChannel<T extends vscode.OutputChannel>(channel: T, r: Redactor = redactor): T {
  return new Proxy(channel, {
    get(target, prop, _receiver) {
      const value: unknown = Reflect.get(target, prop, target);
      if (typeof value !== "function") return value;
      const fn = value as (...args: unknown[]) => unknown;
      if (typeof prop === "string" && WRITERS.has(prop)) {
        return (msg: unknown, ...rest: unknown[]) =>
          fn.call(target, typeof msg === "string" ? r.redact(msg) : msg, ...rest.map((x) => redactArg(r, x)));
      }
      if (prop === "error") {
        return (err: unknown, ...rest: unknown[]) => {
          const text = err instanceof Error ? (err.stack ?? err.message) : String(err);
          return fn.call(target, r.redact(text), ...rest.map((x) => redactArg(r, x)));
        };
      }
      return fn.bind(target);
    },
  });
}

function redactArg(r: Redactor, x: unknown): unknown {
  if (typeof x === "string") return r.redact(x);
  if (x && typeof x === "object") {
    try {
      return r.redact(JSON.stringify(x));
    } catch {
      return x;
    }
  }
  return x;
}
