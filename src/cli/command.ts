/** The shape of a `gpuwb` command and what it is given to run. */
import type { CommandSpec, OptionSpec, Parsed } from "./args";
import type { Backend } from "./connection";

export const EXIT = { ok: 0, failed: 1, usage: 2, backend: 3 } as const;

export interface Output {
  json: boolean;
  stdout: NodeJS.WritableStream;
  stderr: NodeJS.WritableStream;
  print(text: string): void;
  printJson(value: unknown): void;
  /** One JSON value per line (streams of events). */
  printJsonLine(value: unknown): void;
}

export interface Command extends CommandSpec {
  /** Positional arguments: [min, max]. */
  positionals?: [number, number];
  run(backend: Backend, args: Parsed, out: Output): Promise<number>;
}

export const JSON_OPTION: OptionSpec = { name: "json", help: "print machine-readable JSON on stdout" };

export class CommandError extends Error {
  constructor(
    message: string,
    readonly exitCode: number = EXIT.failed,
  ) {
    super(message);
  }
}
