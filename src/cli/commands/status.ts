import * as proto from "../../protocol";
import { type Command, EXIT, JSON_OPTION } from "../command";

export const statusCommand: Command = {
  name: "status",
  summary: "Start the backend and show its status: version, Python, pid, data directory.",
  usage: "gpuwb status [--json]",
  options: [JSON_OPTION],
  async run(backend, _args, out) {
    const s = await backend.connection.sendRequest(proto.status);
    if (out.json) {
      out.printJson(s);
      return EXIT.ok;
    }
    const rows: [string, string][] = [
      ["version", s.version],
      ["python", `${s.python.version} (${s.python.implementation}) ${s.python.executable}`],
      ["pid", String(s.pid)],
      ["data", s.dataDirectory],
      ["trusted", s.trusted ? "yes" : "no"],
      ["methods", s.capabilities.join(", ")],
    ];
    out.print(
      [`GPU Workbench backend ${s.version}: ready`, ...rows.map(([k, v]) => `  ${k.padEnd(8)} ${v}`)].join("\n"),
    );
    return EXIT.ok;
  },
};
