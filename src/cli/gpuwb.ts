/**
 * `gpuwb`: the command line face of GPU Workbench. It starts the same backend as the
 * extension and speaks the same protocol.
 *
 * Exit codes: 0 success, 1 the operation failed, 2 usage error, 3 no usable Python or
 * the backend could not start.
 */
import * as fs from "node:fs";
import * as path from "node:path";
import { firstUsablePython, PATH_CANDIDATES, PythonError, type PythonProbe, probePython } from "../backend/python";
import * as proto from "../protocol";
import { type CommandSpec, formatHelp, type OptionSpec, type Parsed, parseOptions, UsageError } from "./args";
import { type Backend, startBackend } from "./connection";

export const EXIT = { ok: 0, failed: 1, usage: 2, backend: 3 } as const;

const GLOBAL_OPTIONS: OptionSpec[] = [
  {
    name: "python",
    takesValue: true,
    valueName: "PATH",
    help: "Python (3.9+) for the backend; default $GPUWB_PYTHON, then python3/python on PATH",
  },
  {
    name: "data-dir",
    takesValue: true,
    valueName: "DIR",
    help: "data directory; default $GPUWB_DATA_DIR or ~/.local/share/gpu-workbench",
  },
  { name: "verbose", help: "show the backend's log on stderr" },
  { name: "help", help: "show help" },
];

const JSON_OPTION: OptionSpec = { name: "json", help: "print machine-readable JSON on stdout" };

const TOP: CommandSpec = {
  name: "gpuwb",
  summary: "GPU Workbench from the command line: the same backend as the VS Code extension.",
  usage: "gpuwb [--python PATH] [--data-dir DIR] [--verbose] <command> [options]",
  options: [...GLOBAL_OPTIONS, { name: "version", help: "print the version" }],
};

interface Command extends CommandSpec {
  run(backend: Backend, args: Parsed, out: Output): Promise<number>;
}

interface Output {
  json: boolean;
  print(text: string): void;
  printJson(value: unknown): void;
}

const COMMANDS: Command[] = [
  {
    name: "status",
    summary: "Start the backend and show its status: version, Python, pid, data directory.",
    usage: "gpuwb status [--json]",
    options: [JSON_OPTION, ...GLOBAL_OPTIONS],
    async run(backend, _args, out) {
      const s = await backend.connection.sendRequest(proto.status);
      if (out.json) out.printJson(s);
      else out.print(formatStatus(s));
      return EXIT.ok;
    },
  },
];

function formatStatus(s: proto.StatusResult): string {
  const rows: [string, string][] = [
    ["version", s.version],
    ["python", `${s.python.version} (${s.python.implementation}) ${s.python.executable}`],
    ["pid", String(s.pid)],
    ["data", s.dataDirectory],
    ["trusted", s.trusted ? "yes" : "no"],
    ["methods", s.capabilities.join(", ")],
  ];
  return [`GPU Workbench backend ${s.version}: ready`, ...rows.map(([k, v]) => `  ${k.padEnd(8)} ${v}`)].join("\n");
}

function readVersion(): string {
  try {
    const pkg = JSON.parse(fs.readFileSync(path.join(__dirname, "..", "package.json"), "utf8"));
    return String(pkg.version);
  } catch {
    return "unknown";
  }
}

/** Where the bundled backend lives: next to dist/ in the repository and in the .vsix. */
function serverPythonDir(): string {
  return process.env.GPUWB_SERVER_DIR ?? path.join(__dirname, "..", "server-python");
}

async function resolvePython(opt: string | boolean | undefined): Promise<PythonProbe> {
  const named = typeof opt === "string" ? opt : process.env.GPUWB_PYTHON;
  return named ? probePython(named) : firstUsablePython(PATH_CANDIDATES);
}

export async function main(argv: readonly string[], stdout = process.stdout, stderr = process.stderr): Promise<number> {
  const err = (msg: string) => stderr.write(`gpuwb: ${msg}\n`);
  // Split at the command name: global options before it, the command's after.
  const idx = commandIndex(argv);
  const head = idx < 0 ? argv : argv.slice(0, idx);
  let top: Parsed;
  try {
    top = parseOptions(head, TOP.options, TOP);
  } catch (e) {
    return usage(e, err);
  }
  if (top.options.version) {
    stdout.write(`${readVersion()}\n`);
    return EXIT.ok;
  }
  if (idx < 0) {
    const help = formatHelp(TOP, COMMANDS);
    (top.options.help ? stdout : stderr).write(`${help}\n`);
    return top.options.help ? EXIT.ok : EXIT.usage;
  }
  const name = argv[idx] as string;
  const cmd = COMMANDS.find((c) => c.name === name);
  if (!cmd) {
    err(`unknown command "${name}". Commands: ${COMMANDS.map((c) => c.name).join(", ")}. See gpuwb --help.`);
    return EXIT.usage;
  }
  let args: Parsed;
  try {
    args = parseOptions(argv.slice(idx + 1), cmd.options, cmd);
  } catch (e) {
    return usage(e, err);
  }
  const options = { ...top.options, ...args.options };
  if (options.help) {
    stdout.write(`${formatHelp(cmd)}\n`);
    return EXIT.ok;
  }
  if (args.positionals.length) {
    err(`unexpected argument "${args.positionals[0]}". See gpuwb ${cmd.name} --help.`);
    return EXIT.usage;
  }
  const out: Output = {
    json: options.json === true,
    print: (t) => stdout.write(`${t}\n`),
    printJson: (v) => stdout.write(`${JSON.stringify(v, null, 2)}\n`),
  };

  let python: PythonProbe;
  try {
    python = await resolvePython(options.python);
  } catch (e) {
    if (e instanceof PythonError) {
      err(`${e.message} Pass --python PATH or set GPUWB_PYTHON.`);
      return EXIT.backend;
    }
    throw e;
  }
  let backend: Backend;
  try {
    const dataDir = typeof options["data-dir"] === "string" ? path.resolve(options["data-dir"]) : undefined;
    backend = await startBackend(
      python,
      serverPythonDir(),
      { trusted: true, ...(dataDir ? { dataDirectory: dataDir } : {}) },
      options.verbose === true,
    );
  } catch (e) {
    err(`the backend could not start with ${python.executable}: ${e instanceof Error ? e.message : String(e)}`);
    return EXIT.backend;
  }
  try {
    return await cmd.run(backend, args, out);
  } catch (e) {
    const data = proto.errorData(e);
    err(`${e instanceof Error ? e.message : String(e)}${data?.hint ? ` ${data.hint}` : ""}`);
    if (options.verbose !== true) {
      const tail = backend.stderrTail();
      if (tail.length) stderr.write(`backend log (last lines):\n${tail.join("\n")}\n`);
    }
    return EXIT.failed;
  } finally {
    await backend.close();
  }
}

/** Index of the command name, skipping global options and their values (`--python python3`). */
export function commandIndex(argv: readonly string[]): number {
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i] as string;
    if (!a.startsWith("-")) return i;
    const o = TOP.options.find((x) => `--${x.name}` === a);
    if (o?.takesValue) i++;
  }
  return -1;
}

function usage(e: unknown, err: (m: string) => void): number {
  if (!(e instanceof UsageError)) throw e;
  err(`${e.message}. See ${e.command && e.command !== TOP ? `gpuwb ${e.command.name}` : "gpuwb"} --help.`);
  return EXIT.usage;
}
