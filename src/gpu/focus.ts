/**
 * The "focused machine" GPU health follows: the machine of the active editor's kernel target
 * when that target is remote and the machine is connected, else this machine (""). An editor
 * losing focus to a webview or a panel (no active editor) keeps the last document's machine,
 * so opening the GPU panel from the status item still shows the machine being worked on.
 */
import * as vscode from "vscode";
import type { Ctx } from "../ctx";
import { remoteOf } from "../remote/model";
import { focusedMachine } from "./format";

export class FocusedMachine implements vscode.Disposable {
  private readonly emitter = new vscode.EventEmitter<string>();
  /** Fires with the new machine key when it changes. */
  readonly onDidChange = this.emitter.event;
  private readonly subs: vscode.Disposable[] = [this.emitter];
  private uri: vscode.Uri | undefined;
  private _machine = "";

  constructor(private readonly ctx: Ctx) {
    this.subs.push(
      vscode.window.onDidChangeActiveTextEditor(() => this.follow()),
      vscode.window.onDidChangeActiveNotebookEditor(() => this.follow()),
      ctx.bindings.onDidChange(() => this.update()),
      remoteOf(ctx).onDidChange(() => this.update()),
    );
    this.follow();
  }

  /** "" (this machine) or "provider/id". */
  get machine(): string {
    return this._machine;
  }

  private follow(): void {
    const notebook = vscode.window.activeNotebookEditor?.notebook.uri;
    const editor = vscode.window.activeTextEditor?.document.uri;
    const uri = notebook ?? editor;
    if (uri) this.uri = uri;
    this.update();
  }

  private update(): void {
    const target = this.uri ? this.ctx.bindings.targetFor(this.uri) : undefined;
    const remote = remoteOf(this.ctx);
    const connected = new Set(remote.connected().map((m) => m.machine));
    const machine = focusedMachine(target, (m) => connected.has(m));
    if (machine === this._machine) return;
    this._machine = machine;
    this.ctx.log.debug(`GPU health follows ${machine || "this machine"}`);
    this.emitter.fire(machine);
  }

  dispose(): void {
    for (const d of this.subs.splice(0)) d.dispose();
  }
}
