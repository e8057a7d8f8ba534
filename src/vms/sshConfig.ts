/**
 * A managed ssh config file in the extension's global storage, listing the machines as Host
 * entries. The user's own ssh config (Remote-SSH's `remote.SSH.configFile` when set, else
 * ~/.ssh/config) is never rewritten: once, with consent, an `Include <managed file>` line is
 * added at its top (both Remote - SSH and Open Remote - SSH read only that file).
 */
import * as fs from "node:fs/promises";
import * as os from "node:os";
import * as path from "node:path";
import * as vscode from "vscode";
import type * as proto from "../protocol";
import { sshConfigText } from "./format";
import { confirm } from "./prompts";
import { hasInclude, includeLine, userSshConfigPath, withInclude } from "./sshInclude";

const ASKED_KEY = "gpuWorkbench.vms.sshIncludeAsked";
export const ADD_INCLUDE = "Add Include Line";

export class ManagedSshConfig {
  readonly file: string;
  private last = "";

  constructor(private readonly context: vscode.ExtensionContext) {
    this.file = path.join(context.globalStorageUri.fsPath, "ssh_config");
  }

  async write(vms: proto.VmInfo[]): Promise<void> {
    const text = sshConfigText(vms);
    if (text === this.last) return;
    await fs.mkdir(path.dirname(this.file), { recursive: true });
    // Written aside and renamed, so ssh never reads a half-written file.
    const tmp = `${this.file}.${process.pid}.tmp`;
    await fs.writeFile(tmp, text, { mode: 0o600 });
    await fs.rename(tmp, this.file);
    this.last = text;
  }

  /** The ssh config Remote-SSH reads: `remote.SSH.configFile` when set, else ~/.ssh/config. */
  get userConfig(): string {
    return userSshConfigPath(vscode.workspace.getConfiguration("remote.SSH").get("configFile"), os.homedir());
  }

  async included(): Promise<boolean> {
    const user = this.userConfig;
    // Remote-SSH pointed at the managed file itself needs no Include.
    if (path.resolve(user) === path.resolve(this.file)) return true;
    try {
      return hasInclude(await fs.readFile(user, "utf8"), this.file, os.homedir());
    } catch {
      return false;
    }
  }

  /**
   * Offer (once, unless `force`) to add the Include line at the top of the user's ssh config.
   * Returns whether the line is there afterwards. A missing file is created (0600, its folder
   * 0700); an existing one keeps everything else it has, byte for byte.
   */
  async offerInclude(force = false): Promise<boolean> {
    if (await this.included()) return true;
    if (!force && this.context.globalState.get<boolean>(ASKED_KEY)) return false;
    await this.context.globalState.update(ASKED_KEY, true);
    const user = this.userConfig;
    let exists = true;
    try {
      await fs.access(user);
    } catch {
      exists = false;
    }
    const line = includeLine(this.file);
    const where = exists ? `one line would be added at its top` : `it would be created with one line`;
    const choice = await confirm(
      "Let Remote-SSH see your GPU machines?",
      `GPU Workbench keeps your machines as Host entries in its own file:\n${this.file}\n\nRemote-SSH reads ${user}, so ${where}:\n${line}\n\nNothing else in your file is changed; remove the line to undo.`,
      ADD_INCLUDE,
    );
    if (choice !== ADD_INCLUDE) return false;
    let text: string | undefined;
    try {
      text = await fs.readFile(user, "utf8");
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
    }
    if (text === undefined) {
      await fs.mkdir(path.dirname(user), { recursive: true, mode: 0o700 });
      // "wx": never clobber a file that appeared meanwhile.
      await fs.writeFile(user, withInclude("", this.file), { mode: 0o600, flag: "wx" });
      return true;
    }
    const next = withInclude(text, this.file, os.homedir());
    // Written in place (not renamed over), so a symlinked config and its mode stay as they are.
    if (next !== text) await fs.writeFile(user, next);
    return true;
  }
}
