/**
 * Quick picks, input boxes and modal confirmations of the machine commands, with a queue of
 * scripted answers that only tests can fill (the hidden command exists outside Production
 * mode only), so integration tests walk the very same flows a user does.
 */
import * as vscode from "vscode";

const scripted: (string | undefined)[] = [];
/** Every prompt shown (title or message), for tests to assert on. */
export const promptLog: string[] = [];

export function scriptAnswers(answers: (string | null)[]): void {
  scripted.push(...answers.map((a) => a ?? undefined));
}

export function clearScript(): void {
  scripted.length = 0;
}

function next(): { has: boolean; value: string | undefined } {
  if (!scripted.length) return { has: false, value: undefined };
  return { has: true, value: scripted.shift() };
}

export interface Pick<T> extends vscode.QuickPickItem {
  value: T;
  /** The answer a test script names this item by (defaults to the label). */
  key?: string;
}

export async function pick<T>(items: Pick<T>[], opts: vscode.QuickPickOptions): Promise<Pick<T> | undefined> {
  promptLog.push(`pick: ${opts.title ?? opts.placeHolder ?? ""}`);
  const s = next();
  if (s.has) {
    if (s.value === undefined) return undefined;
    const found =
      items.find((i) => (i.key ?? i.label) === s.value) ?? items.find((i) => i.label.includes(s.value ?? ""));
    if (!found)
      throw new Error(`Scripted answer ${s.value} is not among: ${items.map((i) => i.key ?? i.label).join(", ")}`);
    return found;
  }
  return vscode.window.showQuickPick(items, opts);
}

export async function input(opts: vscode.InputBoxOptions): Promise<string | undefined> {
  promptLog.push(`input: ${opts.title ?? opts.prompt ?? ""}`);
  const s = next();
  if (s.has) {
    const err = s.value !== undefined && opts.validateInput ? await opts.validateInput(s.value) : undefined;
    if (err) throw new Error(`Scripted input rejected: ${typeof err === "string" ? err : err.message}`);
    return s.value;
  }
  return vscode.window.showInputBox(opts);
}

/** A modal warning; resolves to the chosen action or undefined (Cancel). */
export async function confirm(message: string, detail: string, ...actions: string[]): Promise<string | undefined> {
  promptLog.push(`confirm: ${message}\n${detail}`);
  const s = next();
  if (s.has) return s.value && actions.includes(s.value) ? s.value : undefined;
  return vscode.window.showWarningMessage(message, { modal: true, detail }, ...actions);
}

/**
 * A non-modal warning with actions (e.g. the idle warning's "Keep Running"); resolves to the
 * chosen action, or undefined when dismissed (it may never resolve: nobody has to answer).
 */
export async function notify(message: string, ...actions: string[]): Promise<string | undefined> {
  promptLog.push(`notify: ${message}`);
  const s = next();
  if (s.has) return s.value && actions.includes(s.value) ? s.value : undefined;
  return vscode.window.showWarningMessage(message, ...actions);
}

/** A plain information message; it takes no scripted answer (there is nothing to choose). */
export function notice(message: string): void {
  promptLog.push(`notice: ${message}`);
  void vscode.window.showInformationMessage(message);
}
