/**
 * Answers a kernel's input() from the terminal: a prompt on stderr and a line from stdin
 * (without echo for getpass when stdin is a terminal). Piped stdin gives one line per request.
 */
import * as readline from "node:readline";

let lines: AsyncIterator<string> | undefined;

function nextLine(): Promise<string | undefined> {
  lines ??= readline.createInterface({ input: process.stdin, terminal: false })[Symbol.asyncIterator]();
  return lines.next().then((r) => (r.done ? undefined : r.value));
}

function readHidden(): Promise<string> {
  return new Promise((resolve) => {
    const stdin = process.stdin;
    let value = "";
    stdin.setRawMode?.(true);
    stdin.resume();
    const onData = (buf: Buffer) => {
      for (const ch of buf.toString("utf8")) {
        if (ch === "\r" || ch === "\n" || ch === "\u0004") {
          stdin.setRawMode?.(false);
          stdin.pause();
          stdin.off("data", onData);
          process.stderr.write("\n");
          resolve(value);
          return;
        }
        if (ch === "\u0003") process.kill(process.pid, "SIGINT");
        else if (ch === "\u007f") value = value.slice(0, -1);
        else value += ch;
      }
    };
    stdin.on("data", onData);
  });
}

/** Read one answer; undefined when stdin has ended. */
export async function promptLine(prompt: string, password: boolean): Promise<string | undefined> {
  process.stderr.write(prompt);
  if (password && process.stdin.isTTY) return readHidden();
  return nextLine();
}
