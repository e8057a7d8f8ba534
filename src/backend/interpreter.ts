/**
 * Which interpreter runs the backend: the `gpuWorkbench.pythonPath` setting; else the
 * Python extension's active environment (optional, never a hard dependency); else
 * `python3`/`python` on PATH.
 */
import * as vscode from "vscode";
import type { Config } from "../config";
import type { Logger } from "../log";
import { firstUsablePython, PATH_CANDIDATES, PythonError, type PythonProbe, probePython } from "./python";

export type InterpreterSource = "setting" | "pythonExtension" | "path";

export interface ResolvedInterpreter extends PythonProbe {
  source: InterpreterSource;
}

const PYTHON_EXTENSION_ID = "ms-python.python";

interface PythonEnvironmentsApi {
  getActiveEnvironmentPath(resource?: vscode.Uri): { path: string };
  resolveEnvironment(env: { path: string } | string): Promise<{ executable: { uri?: vscode.Uri } } | undefined>;
  onDidChangeActiveEnvironmentPath: vscode.Event<unknown>;
}

/** The Python extension's environments API, when that extension is installed. */
async function pythonExtensionApi(log: Logger): Promise<PythonEnvironmentsApi | undefined> {
  const ext = vscode.extensions.getExtension(PYTHON_EXTENSION_ID);
  if (!ext) return undefined;
  try {
    const api = ext.isActive ? ext.exports : await ext.activate();
    return (api as { environments?: PythonEnvironmentsApi })?.environments;
  } catch (err) {
    log.warn(`The Python extension did not activate: ${String(err)}`);
    return undefined;
  }
}

/** The Python extension's active interpreter for the first workspace folder, if any. */
async function pythonExtensionInterpreter(log: Logger): Promise<string | undefined> {
  const api = await pythonExtensionApi(log);
  if (!api) return undefined;
  try {
    const folder = vscode.workspace.workspaceFolders?.[0]?.uri;
    const active = api.getActiveEnvironmentPath(folder);
    const env = await api.resolveEnvironment(active);
    return env?.executable.uri?.fsPath ?? active.path;
  } catch (err) {
    log.warn(`Could not read the Python extension's interpreter: ${String(err)}`);
    return undefined;
  }
}

/**
 * Resolve and probe the interpreter. In an untrusted workspace the Python extension's
 * choice is skipped: it may be a virtual environment inside the untrusted folder.
 */
export async function resolveInterpreter(config: Config, log: Logger, trusted: boolean): Promise<ResolvedInterpreter> {
  const setting = config.pythonPath;
  if (setting) {
    log.info(`Using the interpreter from gpuWorkbench.pythonPath: ${setting}`);
    try {
      return { ...(await probePython(setting)), source: "setting" };
    } catch (err) {
      if (err instanceof PythonError) {
        throw new PythonError(`${err.message} (set in gpuWorkbench.pythonPath)`, err.reason, err.detail);
      }
      throw err;
    }
  }
  if (trusted) {
    const fromExt = await pythonExtensionInterpreter(log);
    if (fromExt) {
      try {
        log.info(`Using the Python extension's interpreter: ${fromExt}`);
        return { ...(await probePython(fromExt)), source: "pythonExtension" };
      } catch (err) {
        log.warn(`The Python extension's interpreter is not usable (${String(err)}); trying PATH.`);
      }
    }
  }
  const found = await firstUsablePython(PATH_CANDIDATES);
  log.info(`Using ${found.command} from PATH: ${found.executable}`);
  return { ...found, source: "path" };
}

/** Fires when the Python extension's active environment changes (no-op without it). */
export async function onPythonExtensionChange(log: Logger, listener: () => void): Promise<vscode.Disposable> {
  const api = await pythonExtensionApi(log);
  return api ? api.onDidChangeActiveEnvironmentPath(listener) : new vscode.Disposable(() => {});
}
