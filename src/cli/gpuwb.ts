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
import { type Command, CommandError, EXIT, type Output } from "./command";
import { ckptCommands } from "./commands/ckpt";
import { gpuCommands } from "./commands/gpu";
import { kernelsAttachCommand, kernelsKillCommand, kernelsListCommand } from "./commands/kernels";
import { runCommand } from "./commands/run";
import { statusCommand } from "./commands/status";
import { vmCommands } from "./commands/vm";
import { type Backend, startBackend } from "./connection";

export { EXIT } from "./command";

const GLOBAL_OPTIONS: OptionSpec[] = [
  {
    name: "python",
    takesValue: true,
    valueName: "PATH",
    help: "Python (3.9+) for the backend and new kernels; default $GPUWB_PYTHON, then python3/python on PATH",
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

const TOP: CommandSpec = {
  name: "gpuwb",
  summary: "GPU Workbench from the command line: the same backend as the VS Code extension.",
  usage: "gpuwb [--python PATH] [--data-dir DIR] [--verbose] <command> [options]",
  options: [...GLOBAL_OPTIONS, { name: "version", help: "print the version" }],
};

const COMMANDS: Command[] = [
  statusCommand,
  runCommand,
  kernelsListCommand,
  kernelsAttachCommand,
  kernelsKillCommand,
  ...ckptCommands,
  ...vmCommands,
  ...gpuCommands,
];

/** Groups of subcommands (`gpuwb kernels …`) get their own help. */
const GROUPS: Record<string, string> = {
  kernels: "List, follow and end kernels.",
  ckpt: "Inspect, compare and safety-scan model checkpoints without running their code.",
  vm: "GPU machines: providers, offerings and prices, create/start/stop/terminate, cost.",
  gpu: "This machine's GPUs: live status (utilization, memory, temperature, power, throttling) and health checks.",
};

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

/** The command named by the words at argv[idx…], longest match first. */
function findCommand(argv: readonly string[], idx: number): { cmd?: Command; words: number } {
  for (const words of [2, 1]) {
    const name = argv.slice(idx, idx + words).join(" ");
    const cmd = COMMANDS.find((c) => c.name === name);
    if (cmd) return { cmd, words };
  }
  return { words: 0 };
}

export async function main(
  argv: readonly string[],
  stdout: NodeJS.WritableStream = process.stdout,
  stderr: NodeJS.WritableStream = process.stderr,
): Promise<number> {
  const err = (msg: string) => stderr.write(`gpuwb: ${msg}\n`);
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
  const topLevel = COMMANDS.filter((c) => !c.name.includes(" "));
  const groupSpecs = Object.entries(GROUPS).map(([name, summary]) => ({ name, summary, usage: "", options: [] }));
  if (idx < 0) {
    const help = formatHelp(TOP, [...topLevel, ...groupSpecs]);
    (top.options.help ? stdout : stderr).write(`${help}\n`);
    return top.options.help ? EXIT.ok : EXIT.usage;
  }
  const { cmd, words } = findCommand(argv, idx);
  const first = argv[idx] as string;
  if (!cmd) {
    if (first in GROUPS) {
      const sub = argv[idx + 1];
      const members = COMMANDS.filter((c) => c.name.startsWith(`${first} `));
      const group: CommandSpec = {
        name: first,
        summary: GROUPS[first] as string,
        usage: `gpuwb ${first} <${members.map((c) => c.name.split(" ")[1]).join("|")}> [options]`,
        options: [],
      };
      const wantsHelp = sub === undefined || sub === "--help" || sub === "-h";
      if (!wantsHelp) err(`unknown command "${first} ${sub}". See gpuwb ${first} --help.`);
      const helpText = `${formatHelp(group, members)}\n`;
      if (sub === "--help" || sub === "-h") {
        stdout.write(helpText);
        return EXIT.ok;
      }
      stderr.write(helpText);
      return EXIT.usage;
    }
    err(
      `unknown command "${first}". Commands: ${[...topLevel, ...groupSpecs].map((c) => c.name).join(", ")}. See gpuwb --help.`,
    );
    return EXIT.usage;
  }
  let args: Parsed;
  try {
    args = parseOptions(argv.slice(idx + words), [...cmd.options, ...GLOBAL_OPTIONS], cmd);
  } catch (e) {
    return usage(e, err);
  }
  const options = { ...top.options, ...args.options };
  if (options.help) {
    stdout.write(`${formatHelp({ ...cmd, options: [...cmd.options, ...GLOBAL_OPTIONS] })}\n`);
    return EXIT.ok;
  }
  const [min, max] = cmd.positionals ?? [0, 0];
  if (args.positionals.length < min || args.positionals.length > max) {
    err(
      args.positionals.length < min
        ? `missing arguments. Usage: ${cmd.usage}`
        : `unexpected argument "${args.positionals[max]}". See gpuwb ${cmd.name} --help.`,
    );
    return EXIT.usage;
  }
  const out: Output = {
    json: options.json === true,
    stdout,
    stderr,
    print: (t) => stdout.write(`${t}\n`),
    printJson: (v) => stdout.write(`${JSON.stringify(v, null, 2)}\n`),
    printJsonLine: (v) => stdout.write(`${JSON.stringify(v)}\n`),
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
    return await cmd.run(backend, { ...args, options }, out);
  } catch (e) {
    if (e instanceof CommandError) {
      err(e.message);
      return e.exitCode;
    }
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

function usage(e: unknown, err: (m: string) => void): number {
  if (!(e instanceof UsageError)) throw e;
  err(`${e.message}. See ${e.command && e.command !== TOP ? `gpuwb ${e.command.name}` : "gpuwb"} --help.`);
  return EXIT.usage;
}
