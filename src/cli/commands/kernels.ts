import * as proto from "../../protocol";
import { type Command, CommandError, EXIT, JSON_OPTION } from "../command";
import { KernelSession } from "../kernelSession";

function age(createdAt: number): string {
  const s = Math.max(0, Date.now() / 1000 - createdAt);
  if (s < 60) return `${Math.round(s)}s`;
  if (s < 3600) return `${Math.round(s / 60)}m`;
  if (s < 86400) return `${(s / 3600).toFixed(1)}h`;
  return `${(s / 86400).toFixed(1)}d`;
}

function table(rows: string[][]): string {
  const widths = rows[0]?.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? "").length))) ?? [];
  return rows
    .map((r) =>
      r
        .map((c, i) => c.padEnd(widths[i] ?? 0))
        .join("  ")
        .trimEnd(),
    )
    .join("\n");
}

export const kernelsListCommand: Command = {
  name: "kernels list",
  summary: "List kernels started by any window or CLI on this machine, running or ended.",
  usage: "gpuwb kernels list [--json]",
  options: [JSON_OPTION],
  async run(backend, _args, out) {
    const { kernels } = await backend.connection.sendRequest(proto.kernelList, {});
    if (out.json) {
      out.printJson(kernels);
      return EXIT.ok;
    }
    if (!kernels.length) {
      out.print("No kernels.");
      return EXIT.ok;
    }
    const rows = [["ID", "NAME", "STATE", "PID", "PYTHON", "AGE", "QUEUE", "CWD"]];
    for (const k of kernels) {
      rows.push([
        k.kernelId,
        k.name,
        k.state,
        String(k.pid),
        k.pythonVersion,
        age(k.createdAt),
        String(k.queue.length),
        k.cwd,
      ]);
    }
    out.print(table(rows));
    return EXIT.ok;
  },
};

export const kernelsAttachCommand: Command = {
  name: "kernels attach",
  summary: "Follow a kernel's output: replay what it printed since --since, then stream live until it ends.",
  usage: "gpuwb kernels attach ID [--since SEQ] [--json]",
  positionals: [1, 1],
  options: [
    { name: "since", takesValue: true, valueName: "SEQ", help: "replay events after this seq (default 0: all)" },
    JSON_OPTION,
  ],
  async run(backend, args, out) {
    const kernelId = args.positionals[0] as string;
    const since = args.options.since === undefined ? 0 : Number(args.options.since);
    if (!Number.isInteger(since) || since < 0) throw new CommandError("--since must be a whole number", EXIT.usage);
    const session = new KernelSession(backend, kernelId, out);
    const info = await backend.connection.sendRequest(proto.kernelAttach, { kernelId, since });
    if (info.state === "dead" || info.state === "exited") return EXIT.ok;
    const interrupted = new Promise<void>((resolve) => process.once("SIGINT", () => resolve()));
    await Promise.race([session.waitForEnd(), interrupted]);
    return EXIT.ok;
  },
};

export const kernelsKillCommand: Command = {
  name: "kernels kill",
  summary: "Shut kernels down (their state is lost).",
  usage: "gpuwb kernels kill ID... | --all [--json]",
  positionals: [0, 100],
  options: [{ name: "all", help: "every running kernel" }, JSON_OPTION],
  async run(backend, args, out) {
    let ids = args.positionals;
    if (args.options.all) {
      const { kernels } = await backend.connection.sendRequest(proto.kernelList, {});
      ids = kernels.filter((k) => k.state !== "dead" && k.state !== "exited").map((k) => k.kernelId);
    } else if (!ids.length) {
      throw new CommandError("name the kernels to kill, or pass --all. See gpuwb kernels list.", EXIT.usage);
    }
    const killed: string[] = [];
    for (const kernelId of ids) {
      await backend.connection.sendRequest(proto.kernelShutdown, { kernelId });
      killed.push(kernelId);
    }
    if (out.json) out.printJson({ killed });
    else out.print(killed.length ? `Shut down: ${killed.join(", ")}` : "No running kernels.");
    return EXIT.ok;
  },
};
