/**
 * Text forms of kernel events for the terminal: streams as they are, rich outputs by
 * their text/plain form (or a one-line placeholder), errors as tracebacks on stderr.
 */
import type { KernelEvent, MimeBundle } from "../protocol";

export interface Sink {
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream;
}

/** The best terminal form of a mime bundle. */
export function bundleText(data: MimeBundle): string {
  // An image says what it is (a terminal cannot show it); its repr would say nothing.
  for (const mime of ["image/png", "image/jpeg"]) {
    const value = data[mime];
    if (typeof value === "string") return `[${mime}, ${formatBytes(Math.floor((value.length * 3) / 4))}]`;
  }
  const plain = data["text/plain"];
  if (typeof plain === "string") return plain;
  for (const mime of ["image/png", "image/jpeg", "image/svg+xml", "text/html", "text/markdown", "application/json"]) {
    const value = data[mime];
    if (value === undefined) continue;
    if (mime === "image/png" || mime === "image/jpeg") {
      const bytes = typeof value === "string" ? Math.floor((value.length * 3) / 4) : 0;
      return `[${mime}, ${formatBytes(bytes)}]`;
    }
    if (mime === "application/json") return JSON.stringify(value, null, 2);
    return typeof value === "string" ? `[${mime}, ${value.length} characters]` : `[${mime}]`;
  }
  const kinds = Object.keys(data);
  return kinds.length ? `[${kinds.join(", ")}]` : "";
}

export function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1024 / 1024).toFixed(1)} MiB`;
}

/** Write an event's text form; returns nothing for events with none (status, reply…). */
export function renderEvent(event: KernelEvent, sink: Sink): void {
  switch (event.type) {
    case "stream":
      (event.name === "stderr" ? sink.stderr : sink.stdout).write(event.text);
      break;
    case "execute_result":
    case "display_data": {
      const text = bundleText(event.data);
      if (text) sink.stdout.write(text.endsWith("\n") ? text : `${text}\n`);
      break;
    }
    case "error":
      sink.stderr.write(`${event.traceback.join("\n")}\n`);
      break;
    case "died": {
      const how = event.signal ? `signal ${event.signal}` : `exit code ${event.exitCode}`;
      sink.stderr.write(`The kernel died (${how}); its state is lost.\n`);
      if (event.stderrTail.length) sink.stderr.write(`${event.stderrTail.join("\n")}\n`);
      break;
    }
    case "exit":
      sink.stderr.write(`The kernel ended (${event.reason === "idle" ? "idle time to live reached" : "shut down"}).\n`);
      break;
    default:
      break;
  }
}
