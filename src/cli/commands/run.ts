import * as fs from "node:fs";
import * as path from "node:path";
import * as proto from "../../protocol";
import { type Command, CommandError, EXIT, JSON_OPTION } from "../command";
import { KernelSession } from "../kernelSession";

export const runCommand: Command = {
  name: "run",
  summary: "Run the # %% cells of a Python file on a kernel, printing their output as it comes.",
  usage: "gpuwb run FILE.py [--cell N | --all] [--kernel ID] [--keep] [--json]",
  positionals: [1, 1],
  options: [
    { name: "cell", takesValue: true, valueName: "N", help: "run only cell N (1-based, in file order)" },
    { name: "all", help: "run every code cell, stopping at the first error (the default)" },
    { name: "kernel", takesValue: true, valueName: "ID", help: "run on this existing kernel (kept afterwards)" },
    { name: "keep", help: "keep the new kernel running afterwards and print its id" },
    JSON_OPTION,
  ],
  async run(backend, args, out) {
    const file = path.resolve(args.positionals[0] as string);
    let text: string;
    try {
      text = fs.readFileSync(file, "utf8");
    } catch (e) {
      throw new CommandError(`cannot read ${file}: ${(e as NodeJS.ErrnoException).code ?? String(e)}`);
    }
    if (args.options.cell !== undefined && args.options.all) {
      throw new CommandError("--cell and --all cannot be combined", EXIT.usage);
    }
    const { cells } = await backend.connection.sendRequest(proto.cellsParse, { text });
    let chosen = cells.filter((c) => c.kind === "code");
    if (args.options.cell !== undefined) {
      const n = Number(args.options.cell);
      const cell = cells[n - 1];
      if (!Number.isInteger(n) || !cell) {
        throw new CommandError(`--cell must be between 1 and ${cells.length} for ${path.basename(file)}`, EXIT.usage);
      }
      if (cell.kind !== "code") throw new CommandError(`cell ${n} is a Markdown cell`, EXIT.usage);
      chosen = [cell];
    }

    const existing = typeof args.options.kernel === "string" ? args.options.kernel : undefined;
    let kernelId: string;
    let session: KernelSession;
    if (existing) {
      kernelId = existing;
      session = new KernelSession(backend, kernelId, out);
      const { kernels } = await backend.connection.sendRequest(proto.kernelList, {});
      const known = kernels.find((k) => k.kernelId === kernelId);
      if (!known) throw new CommandError(`no kernel ${kernelId}. See gpuwb kernels list.`);
      // Attach after the kernel's history: only this run's output is shown.
      await backend.connection.sendRequest(proto.kernelAttach, { kernelId, since: known.lastSeq });
    } else {
      const dir = path.dirname(file);
      const envFile = path.join(dir, ".env");
      const info = await backend.connection.sendRequest(proto.kernelStart, {
        cwd: dir,
        name: path.basename(file),
        ...(fs.existsSync(envFile) ? { envFile } : {}),
      });
      kernelId = info.kernelId;
      // The backend forwards a kernel's events from its start; nothing is executed yet.
      session = new KernelSession(backend, kernelId, out);
    }

    // Ctrl+C interrupts the running cell; a second one leaves.
    let interrupts = 0;
    const onSigint = () => {
      interrupts++;
      if (interrupts > 1) process.exit(130);
      out.stderr.write("\nInterrupting… (Ctrl+C again to leave)\n");
      void backend.connection.sendRequest(proto.kernelInterrupt, { kernelId }).then((r) => {
        if (r.outcome === "killed") out.stderr.write("The kernel did not stop and was killed; its state is lost.\n");
      });
    };
    process.on("SIGINT", onSigint);
    const statuses: { cell: number; status: string }[] = [];
    try {
      // One cell at a time: the next is sent only after this one succeeded, so a failure
      // stops the run however fast the cells are (a queued run would race the error).
      for (const cell of chosen) {
        const r = await backend.connection.sendRequest(proto.kernelExecute, {
          kernelId,
          code: cell.code,
          file,
          line: cell.codeStartLine,
          stopOnError: true,
        });
        const reply = await Promise.race([
          session.waitForReply(r.executionId),
          session.waitForEnd().then(() => undefined),
        ]);
        const status = reply?.status ?? "died";
        statuses.push({ cell: cell.index + 1, status });
        if (status !== "ok") break;
      }
    } finally {
      process.off("SIGINT", onSigint);
      session.close();
      if (!existing && !args.options.keep && !session.ended) {
        await backend.connection.sendRequest(proto.kernelShutdown, { kernelId }).catch(() => undefined);
      }
    }
    const ok = statuses.every((s) => s.status === "ok");
    if (out.json) out.printJsonLine({ type: "summary", kernelId, cells: statuses, ok });
    else if (args.options.keep && !existing) out.stderr.write(`kernel ${kernelId} is still running\n`);
    return ok ? EXIT.ok : EXIT.failed;
  },
};
