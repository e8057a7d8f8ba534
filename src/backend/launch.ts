/**
 * How the backend process is started: the same for the extension and the CLI.
 * No `vscode` import.
 */
import * as path from "node:path";

export interface BackendLaunch {
  command: string;
  args: string[];
  env: NodeJS.ProcessEnv;
}

/**
 * The backend is `python -m gpu_workbench` with the bundled `server-python` first on
 * PYTHONPATH (the user's PYTHONPATH kept after it). `-u` keeps stderr logs unbuffered.
 */
export function backendLaunch(
  python: string,
  serverPythonDir: string,
  baseEnv: NodeJS.ProcessEnv = process.env,
  extraEnv: Record<string, string> = {},
): BackendLaunch {
  const existing = baseEnv.PYTHONPATH;
  const pythonPath = existing ? `${serverPythonDir}${path.delimiter}${existing}` : serverPythonDir;
  return {
    command: python,
    args: ["-u", "-m", "gpu_workbench"],
    env: { ...baseEnv, ...extraEnv, PYTHONPATH: pythonPath, PYTHONIOENCODING: "utf-8" },
  };
}
