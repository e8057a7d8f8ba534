/**
 * Starts the backend for the CLI and speaks the same protocol as the extension, with
 * vscode-jsonrpc over the child's stdio.
 */
import { type ChildProcess, spawn } from "node:child_process";
import {
  createMessageConnection,
  type MessageConnection,
  StreamMessageReader,
  StreamMessageWriter,
} from "vscode-jsonrpc/node";
import { backendLaunch } from "../backend/launch";
import type { PythonProbe } from "../backend/python";
import type { InitializationOptions } from "../protocol";

export interface Backend {
  connection: MessageConnection;
  process: ChildProcess;
  /** Recent stderr lines, shown when something fails. */
  stderrTail(): string[];
  close(): Promise<void>;
}

export async function startBackend(
  python: PythonProbe,
  serverPythonDir: string,
  init: InitializationOptions,
  verbose: boolean,
): Promise<Backend> {
  const launch = backendLaunch(python.executable, serverPythonDir, process.env, {
    GPUWB_LOG_LEVEL: verbose ? "DEBUG" : "WARNING",
  });
  const child = spawn(launch.command, launch.args, { env: launch.env, stdio: ["pipe", "pipe", "pipe"] });
  const tail: string[] = [];
  child.stderr?.setEncoding("utf8");
  child.stderr?.on("data", (chunk: string) => {
    if (verbose) process.stderr.write(chunk);
    tail.push(...chunk.split("\n").filter(Boolean));
    tail.splice(0, Math.max(0, tail.length - 20));
  });
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  const connection = createMessageConnection(
    new StreamMessageReader(child.stdout as NodeJS.ReadableStream),
    new StreamMessageWriter(child.stdin as NodeJS.WritableStream),
  );
  const died = new Promise<never>((_, reject) =>
    child.once("exit", (code, signal) =>
      reject(new Error(`the backend exited during start (${signal ?? `code ${code}`})`)),
    ),
  );
  died.catch(() => undefined);
  connection.listen();
  await Promise.race([
    connection.sendRequest("initialize", {
      processId: process.pid,
      clientInfo: { name: "gpuwb" },
      rootUri: null,
      capabilities: {},
      initializationOptions: init,
    }),
    died,
  ]);
  await connection.sendNotification("initialized", {});
  return {
    connection,
    process: child,
    stderrTail: () => [...tail],
    close: async () => {
      try {
        await Promise.race([connection.sendRequest("shutdown"), exited]);
        await connection.sendNotification("exit");
      } catch {
        // already gone
      }
      const timer = setTimeout(() => child.kill("SIGKILL"), 2000);
      await exited;
      clearTimeout(timer);
      connection.dispose();
    },
  };
}
