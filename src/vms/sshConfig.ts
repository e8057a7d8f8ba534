/**
 * A managed ssh config file in the extension's global storage, listing the machines as Host
 * entries. The user's ~/.ssh/config is never rewritten: once, with consent, an
 * `Include <managed file>` line is added at its top (Remote-SSH reads only that file).
 */
import * as fs from "node:fs/promises";
import * as os from "node:os";
import * as path from "node:path";
import type * as vscode from "vscode";
import type * as proto from "../protocol";
import { quoteSsh, sshConfigText } from "./format";
import { confirm } from "./prompts";

const ASKED_KEY = "gpuWorkbench.vms.sshIncludeAsked";

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

  get userConfig(): string {
    return path.join(os.homedir(), ".ssh", "config");
  }

  async included(): Promise<boolean> {
    try {
      const text = await fs.readFile(this.userConfig, "utf8");
      return text.split(/\r?\n/).some((l) => /^\s*Include\s/i.test(l) && l.includes(this.file));
    } catch {
      return false;
    }
  }

  /**
   * Offer (once, unless `force`) to add the Include line at the top of ~/.ssh/config.
   * Returns whether the line is there afterwards.
   */
  async offerInclude(force = false): Promise<boolean> {
    if (await this.included()) return true;
    if (!force && this.context.globalState.get<boolean>(ASKED_KEY)) return false;
    await this.context.globalState.update(ASKED_KEY, true);
    const line = `Include ${quoteSsh(this.file)}`;
    const choice = await confirm(
      "Let Remote-SSH see your GPU machines?",
      `GPU Workbench keeps your machines as Host entries in its own file:\n${this.file}\n\nRemote-SSH reads ${this.userConfig}, so one line would be added at its top:\n${line}\n\nNothing else in your file is changed; remove the line to undo.`,
      "Add Include Line",
    );
    if (choice !== "Add Include Line") return false;
    let text = "";
    try {
      text = await fs.readFile(this.userConfig, "utf8");
    } catch {
      await fs.mkdir(path.dirname(this.userConfig), { recursive: true, mode: 0o700 });
    }
    await fs.writeFile(this.userConfig, `${line}\n\n${text}`, { mode: 0o600 });
    return true;
  }
}
