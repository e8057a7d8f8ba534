/**
 * Argument parsing for `gpuwb`: a command table with options, usage and help at every
 * level. No dependencies, no `vscode`.
 */

export interface OptionSpec {
  name: string; // long name without dashes
  takesValue?: boolean;
  help: string;
  valueName?: string;
  /** May be given several times; every value is kept in `Parsed.lists`. */
  repeatable?: boolean;
}

export interface CommandSpec {
  name: string;
  summary: string;
  usage: string;
  options: OptionSpec[];
}

export type Parsed = {
  options: Record<string, string | boolean>;
  positionals: string[];
  /** All values of repeatable options, in order (`options` keeps the last). */
  lists?: Record<string, string[]>;
};

export class UsageError extends Error {
  constructor(
    message: string,
    readonly command?: CommandSpec,
  ) {
    super(message);
    this.name = "UsageError";
  }
}

/** Parse `--name`, `--name=value` and `--name value`; `-h` is `--help`. */
export function parseOptions(argv: readonly string[], spec: readonly OptionSpec[], cmd?: CommandSpec): Parsed {
  const options: Record<string, string | boolean> = {};
  const lists: Record<string, string[]> = {};
  const positionals: string[] = [];
  const byName = new Map(spec.map((o) => [o.name, o]));
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i] as string;
    if (arg === "--") {
      positionals.push(...argv.slice(i + 1));
      break;
    }
    if (arg === "-h") {
      options.help = true;
      continue;
    }
    if (!arg.startsWith("--")) {
      if (arg.startsWith("-") && arg.length > 1) throw new UsageError(`unknown option: ${arg}`, cmd);
      positionals.push(arg);
      continue;
    }
    const eq = arg.indexOf("=");
    const name = arg.slice(2, eq < 0 ? undefined : eq);
    const o = byName.get(name);
    if (!o) throw new UsageError(`unknown option: --${name}`, cmd);
    if (!o.takesValue) {
      if (eq >= 0) throw new UsageError(`option --${name} takes no value`, cmd);
      options[name] = true;
      continue;
    }
    const value = eq >= 0 ? arg.slice(eq + 1) : argv[++i];
    if (value === undefined || value === "") throw new UsageError(`option --${name} needs a value`, cmd);
    options[name] = value;
    if (o.repeatable) lists[name] = [...(lists[name] ?? []), value];
  }
  return Object.keys(lists).length ? { options, positionals, lists } : { options, positionals };
}

/** Help text for one command (or the top level when `commands` is given). */
export function formatHelp(cmd: CommandSpec, commands?: readonly CommandSpec[]): string {
  const lines = [`Usage: ${cmd.usage}`, "", cmd.summary, ""];
  if (commands?.length) {
    lines.push("Commands:");
    const w = Math.max(...commands.map((c) => c.name.length));
    for (const c of commands) lines.push(`  ${c.name.padEnd(w)}  ${c.summary}`);
    lines.push("");
  }
  if (cmd.options.length) {
    lines.push("Options:");
    const labels = cmd.options.map((o) => `--${o.name}${o.takesValue ? ` ${o.valueName ?? "VALUE"}` : ""}`);
    const w = Math.max(...labels.map((l) => l.length));
    cmd.options.forEach((o, i) => {
      lines.push(`  ${(labels[i] as string).padEnd(w)}  ${o.help}`);
    });
    lines.push("");
  }
  return lines.join("\n");
}
