/**
 * Finding and probing a Python interpreter. No `vscode` import: the CLI uses this too.
 */
import { execa } from "execa";

export const MIN_PYTHON: readonly [number, number] = [3, 9];

export interface PythonProbe {
  /** What the user or the discovery named (a path or a command on PATH). */
  command: string;
  /** `sys.executable` as the interpreter reports it. */
  executable: string;
  version: string;
  implementation: string;
}

/** Why an interpreter cannot run the backend; `message` is for users, `detail` for logs. */
export class PythonError extends Error {
  constructor(
    message: string,
    readonly reason: "missing" | "tooOld" | "broken",
    readonly detail: string = "",
  ) {
    super(message);
    this.name = "PythonError";
  }
}

const PROBE =
  "import json, platform, sys; print(json.dumps({'executable': sys.executable, " +
  "'version': platform.python_version(), 'implementation': platform.python_implementation()}))";

/** Parse a version like "3.11.7" or "3.13.0rc1"; undefined when it is not one. */
export function parseVersion(v: string): [number, number, number] | undefined {
  const m = /^(\d+)\.(\d+)(?:\.(\d+))?/.exec(v.trim());
  if (!m) return undefined;
  return [Number(m[1]), Number(m[2]), Number(m[3] ?? 0)];
}

export function isSupported(version: string): boolean {
  const v = parseVersion(version);
  if (!v) return false;
  return v[0] > MIN_PYTHON[0] || (v[0] === MIN_PYTHON[0] && v[1] >= MIN_PYTHON[1]);
}

/** Run the probe in `command`; throws PythonError with a message that says what to do. */
export async function probePython(command: string, timeoutMs = 15_000): Promise<PythonProbe> {
  let stdout: string;
  try {
    const r = await execa(command, ["-c", PROBE], {
      timeout: timeoutMs,
      reject: true,
      env: { PYTHONIOENCODING: "utf-8" },
      stdin: "ignore",
    });
    stdout = r.stdout;
  } catch (err) {
    const e = err as { code?: string; shortMessage?: string; stderr?: string; timedOut?: boolean };
    if (e.code === "ENOENT" || e.code === "EACCES" || e.code === "ENOTDIR") {
      throw new PythonError(`Python interpreter "${command}" was not found.`, "missing", e.shortMessage ?? String(err));
    }
    const why = e.timedOut ? "it did not answer within 15 s" : "it failed to run";
    throw new PythonError(
      `Python interpreter "${command}" cannot be used: ${why}.`,
      "broken",
      [e.shortMessage, e.stderr].filter(Boolean).join("\n"),
    );
  }
  let info: Omit<PythonProbe, "command">;
  try {
    info = JSON.parse(stdout.trim().split("\n").pop() ?? "");
  } catch {
    throw new PythonError(`"${command}" does not look like a Python interpreter.`, "broken", stdout);
  }
  if (!isSupported(info.version)) {
    throw new PythonError(
      `Python ${info.version} at ${info.executable} is too old; GPU Workbench needs Python ${MIN_PYTHON.join(".")} or later.`,
      "tooOld",
    );
  }
  return { command, ...info };
}

/**
 * Try candidates in order and return the first usable one. When none works, the error of
 * the first candidate that exists (too old or broken) is more useful than "not found".
 */
export async function firstUsablePython(candidates: readonly string[]): Promise<PythonProbe> {
  const errors: PythonError[] = [];
  for (const c of candidates) {
    try {
      return await probePython(c);
    } catch (err) {
      if (err instanceof PythonError) errors.push(err);
      else throw err;
    }
  }
  const informative = errors.find((e) => e.reason !== "missing");
  if (informative) throw informative;
  throw new PythonError(
    `No Python interpreter was found (tried ${candidates.join(", ")}). GPU Workbench needs Python ${MIN_PYTHON.join(".")} or later.`,
    "missing",
    errors.map((e) => e.detail).join("\n"),
  );
}

/** Default commands to look for on PATH, in order. */
export const PATH_CANDIDATES: readonly string[] =
  process.platform === "win32" ? ["python", "py"] : ["python3", "python"];
