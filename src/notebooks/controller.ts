/**
 * The "GPU Workbench" notebook controller: runs .ipynb cells on the notebook's persistent
 * kernel (the same kernels as `# %%` cells, see cells/bindings.ts) and turns kernel events
 * into cell outputs. Works with or without the Jupyter extension: VS Code's built-in ipynb
 * serializer provides the `jupyter-notebook` type.
 *
 * Cells of one run are queued on the kernel at once, in order; when several run together
 * they carry stopOnError, so after a failure the kernel aborts the rest (each ends
 * unsuccessful without running).
 */
import { randomUUID } from "node:crypto";
import * as vscode from "vscode";
import { NOTEBOOK_PREFIX } from "../cells/executions";
import type { Ctx } from "../ctx";
import type * as proto from "../protocol";
import { errorOutput, richOutput, StreamText, streamItem } from "./outputs";

export const CONTROLLER_ID = "gpu-workbench";
export const NOTEBOOK_TYPE = "jupyter-notebook";
const JUPYTER_EXTENSION_ID = "ms-toolsai.jupyter";

/** One cell execution, from queued to ended. */
interface CellRun {
  readonly executionId: string;
  readonly notebook: string;
  readonly exec: vscode.NotebookCellExecution;
  kernelId?: string;
  submitted: boolean;
  started: boolean;
  ended: boolean;
  /** The stream output being appended to, while stream messages are consecutive. */
  stream?: { name: "stdout" | "stderr"; text: StreamText; output: vscode.NotebookCellOutput };
}

export class NotebookKernelController implements vscode.Disposable {
  readonly controller: vscode.NotebookController;
  private readonly runs = new Map<string, CellRun>();
  private readonly subscriptions: vscode.Disposable[] = [];

  constructor(private readonly ctx: Ctx) {
    const c = vscode.notebooks.createNotebookController(CONTROLLER_ID, NOTEBOOK_TYPE, "GPU Workbench");
    this.controller = c;
    c.supportedLanguages = ["python"];
    c.supportsExecutionOrder = true;
    c.detail = "Persistent kernel: outlives window reloads";
    c.executeHandler = (cells, notebook) => this.execute(cells, notebook);
    c.interruptHandler = (notebook) => this.interrupt(notebook);
    this.describe();
    this.subscriptions.push(
      c,
      ctx.kernels.onDidReceiveEvent((p) => this.onEvent(p)),
      ctx.backend.onDidChangeState(() => this.describe()),
      vscode.workspace.onDidChangeConfiguration((e) => e.affectsConfiguration("gpuWorkbench") && this.describe()),
      vscode.workspace.onDidOpenNotebookDocument((nb) => this.prefer(nb)),
    );
    for (const nb of vscode.workspace.notebookDocuments) this.prefer(nb);
  }

  /** The interpreter kernels start with, shown next to the controller's name. */
  private describe(): void {
    const configured = this.ctx.config.kernelPythonPath;
    const interp = this.ctx.backend.interpreter;
    if (configured) this.controller.description = configured;
    else if (interp) this.controller.description = `Python ${interp.version} · ${interp.executable}`;
    else this.controller.description = "Python (resolving…)";
  }

  /**
   * Without the Jupyter extension this is the only Python kernel there is: suggest it for
   * Python notebooks. With it, leave the choice to the user.
   */
  private prefer(nb: vscode.NotebookDocument): void {
    if (nb.notebookType !== NOTEBOOK_TYPE || vscode.extensions.getExtension(JUPYTER_EXTENSION_ID)) return;
    const languages = new Set(
      nb
        .getCells()
        .filter((c) => c.kind === vscode.NotebookCellKind.Code)
        .map((c) => c.document.languageId),
    );
    if (languages.size === 0 || languages.has("python")) {
      this.controller.updateNotebookAffinity(nb, vscode.NotebookControllerAffinity.Preferred);
    }
  }

  private async execute(cells: vscode.NotebookCell[], notebook: vscode.NotebookDocument): Promise<void> {
    const code = cells.filter((c) => c.kind === vscode.NotebookCellKind.Code);
    if (!code.length) return;
    const notebookKey = notebook.uri.toString();
    // Every cell shows as queued at once, as in Jupyter.
    const batch: CellRun[] = code.map((cell) => {
      const run: CellRun = {
        executionId: `${NOTEBOOK_PREFIX}${randomUUID()}`,
        notebook: notebookKey,
        exec: this.controller.createNotebookCellExecution(cell),
        submitted: false,
        started: false,
        ended: false,
      };
      this.runs.set(run.executionId, run);
      return run;
    });
    let kernelId: string;
    try {
      kernelId = await this.ctx.bindings.ensureKernel(notebook.uri);
    } catch (err) {
      this.failBatch(batch, err, "Could not start a kernel");
      return;
    }
    const stopOnError = batch.length > 1;
    // Each submitted cell runs only if the one before it ended ok (`after`), so a failure
    // stops the rest however fast it was.
    let previous: string | undefined;
    for (const [i, run] of batch.entries()) {
      if (run.ended) continue; // interrupted before it was queued
      const source = run.exec.cell.document.getText();
      run.kernelId = kernelId;
      if (!source.trim()) {
        // Nothing to run: an empty cell succeeds at once, as in Jupyter.
        run.exec.start(Date.now());
        void run.exec.clearOutput();
        this.end(run, true);
        continue;
      }
      run.submitted = true;
      try {
        await this.ctx.kernels.execute({
          kernelId,
          code: source,
          stopOnError,
          executionId: run.executionId,
          ...(stopOnError && previous ? { after: previous } : {}),
        });
        previous = run.executionId;
      } catch (err) {
        this.failBatch(batch.slice(i), err, "Could not run the cell");
        return;
      }
    }
  }

  /** Show why a run could not start on its first cell; end the rest unsuccessful. */
  private failBatch(runs: CellRun[], err: unknown, what: string): void {
    const message = err instanceof Error ? err.message : String(err);
    this.ctx.log.error(`${what}: ${message}`);
    const first = runs.find((r) => !r.ended);
    if (first && !first.started) {
      first.exec.start(Date.now());
      first.started = true;
      void first.exec.replaceOutput(errorOutput("GPU Workbench", `${what}: ${message}`, []));
    }
    for (const r of runs) this.end(r, false);
  }

  private async interrupt(notebook: vscode.NotebookDocument): Promise<void> {
    const key = notebook.uri.toString();
    // Cells not yet handed to the kernel (it may still be starting) end here.
    for (const r of this.runs.values()) if (r.notebook === key && !r.submitted) this.end(r, false);
    const kernelId = this.ctx.bindings.kernelFor(notebook.uri);
    if (!kernelId) return;
    try {
      await this.ctx.kernels.interrupt(kernelId);
    } catch (err) {
      this.ctx.log.warn(`Interrupt of kernel ${kernelId} failed: ${String(err)}`);
      void vscode.window.showErrorMessage(
        `Could not interrupt the kernel: ${err instanceof Error ? err.message : err}`,
      );
    }
  }

  private onEvent({ kernelId, event }: proto.KernelEventParams): void {
    if (event.type === "gap") return;
    if (event.type === "died" || event.type === "exit") {
      // Replies for the running and queued executions come first; this catches the rest.
      for (const r of this.runs.values()) if (r.kernelId === kernelId && r.submitted) this.end(r, false);
      return;
    }
    if (!("executionId" in event) || !event.executionId) return;
    const run = this.runs.get(event.executionId);
    if (!run || run.ended) return;
    switch (event.type) {
      case "status":
        if (event.state === "busy") this.start(run);
        break;
      case "execute_input":
        this.start(run);
        run.exec.executionOrder = event.executionCount;
        break;
      case "stream":
        this.start(run);
        this.appendStream(run, event.name, event.text);
        break;
      case "display_data":
        this.start(run);
        run.stream = undefined;
        void run.exec.appendOutput(richOutput("display_data", event.data, event.metadata));
        break;
      case "execute_result":
        this.start(run);
        run.stream = undefined;
        run.exec.executionOrder = event.executionCount;
        void run.exec.appendOutput(richOutput("execute_result", event.data, event.metadata, event.executionCount));
        break;
      case "error":
        this.start(run);
        run.stream = undefined;
        void run.exec.appendOutput(errorOutput(event.ename, event.evalue, event.traceback));
        break;
      case "reply":
        if (event.executionCount !== null) run.exec.executionOrder = event.executionCount;
        // ok: success; error, interrupted, died: failure; aborted: it never ran.
        this.end(run, event.status === "ok");
        break;
    }
  }

  private start(run: CellRun): void {
    if (run.started) return;
    run.started = true;
    run.exec.start(Date.now());
    void run.exec.clearOutput();
  }

  private appendStream(run: CellRun, name: "stdout" | "stderr", text: string): void {
    const s = run.stream;
    if (s && s.name === name) {
      s.text.append(text);
      void run.exec.replaceOutputItems(streamItem(name, s.text.text), s.output);
      return;
    }
    const st = new StreamText();
    st.append(text);
    const output = new vscode.NotebookCellOutput([streamItem(name, st.text)], { outputType: "stream" });
    run.stream = { name, text: st, output };
    void run.exec.appendOutput(output);
  }

  private end(run: CellRun, success: boolean): void {
    if (run.ended) return;
    run.ended = true;
    this.runs.delete(run.executionId);
    run.exec.end(success, run.started ? Date.now() : undefined);
  }

  dispose(): void {
    for (const r of [...this.runs.values()]) this.end(r, false);
    for (const d of this.subscriptions) d.dispose();
  }
}
