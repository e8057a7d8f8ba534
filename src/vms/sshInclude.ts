/**
 * The pure parts of adding `Include <managed file>` to the user's ssh config (no `vscode`,
 * unit-tested): which file is "the user's ssh config" (Remote-SSH's `remote.SSH.configFile`
 * when set, else ~/.ssh/config), whether it already includes the managed file, and the text
 * with the line added at the top (everything else kept byte for byte).
 */
import * as path from "node:path";
import { quoteSsh } from "./format";

/** `~` and `~/…` expanded against `home`; other paths as given. */
export function expandHome(p: string, home: string): string {
  if (p === "~") return home;
  if (p.startsWith("~/") || p.startsWith(`~${path.sep}`)) return path.join(home, p.slice(2));
  return p;
}

/**
 * The ssh config file Remote-SSH reads: `remote.SSH.configFile` when it is a non-empty string
 * (`~` expanded, made absolute against `home`), else `<home>/.ssh/config`.
 */
export function userSshConfigPath(setting: unknown, home: string): string {
  const s = typeof setting === "string" ? setting.trim() : "";
  if (!s) return path.join(home, ".ssh", "config");
  return path.resolve(home, expandHome(s, home));
}

/** The Include line for `file` (absolute; quoted when it has spaces). */
export function includeLine(file: string): string {
  return `Include ${quoteSsh(path.resolve(file))}`;
}

/** The arguments of an ssh_config line (`Keyword args`, `Keyword=args`), quotes removed. */
function directive(line: string): { keyword: string; args: string[] } | undefined {
  const m = /^\s*([A-Za-z]+)(?:\s*=\s*|\s+)(.*)$/.exec(line);
  if (!m?.[1] || m[2] === undefined) return undefined;
  const args: string[] = [];
  const re = /"([^"]*)"|(\S+)/g;
  for (let t = re.exec(m[2]); t; t = re.exec(m[2])) {
    const arg = t[1] ?? t[2] ?? "";
    if (arg.startsWith("#")) break;
    args.push(arg);
  }
  return { keyword: m[1].toLowerCase(), args };
}

/** Whether `text` (an ssh config) has an Include directive naming `file` (`~` is `home`). */
export function hasInclude(text: string, file: string, home?: string): boolean {
  const want = path.resolve(file);
  return text.split(/\r?\n/).some((line) => {
    const d = directive(line);
    return d?.keyword === "include" && d.args.some((a) => (home ? expandHome(a, home) : a) === want);
  });
}

/**
 * `text` with the Include line for `file` added at its top (before any Host or Match block,
 * so it applies to every host), or `text` unchanged when it already includes `file`.
 */
export function withInclude(text: string, file: string, home?: string): string {
  if (hasInclude(text, file, home)) return text;
  const eol = text.includes("\r\n") ? "\r\n" : "\n";
  const line = includeLine(file);
  return text ? `${line}${eol}${eol}${text}` : `${line}${eol}`;
}
