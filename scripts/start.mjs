// `npm start`: build, then open the examples workspace in VS Code with GPU Workbench
// loaded. A desktop `code` on PATH is used when there is one; otherwise the VS Code server
// (installed on first use) serves the workbench to a browser and the URL is printed.
//   GPUWB_PORT=8765 npm start     choose the port (default 8765)
import { spawnSync } from "node:child_process";
import * as path from "node:path";
import { build, ensureNodeModules, ROOT } from "./setup.mjs";

ensureNodeModules();
build();
const examples = path.join(ROOT, "examples");

const desktop = spawnSync("code", ["--version"], { stdio: "ignore" });
if (desktop.status === 0 && !process.env.GPUWB_USE_SERVER) {
  console.log("Opening the examples workspace in desktop VS Code…");
  spawnSync("code", ["--new-window", `--extensionDevelopmentPath=${ROOT}`, examples], { stdio: "inherit" });
  process.exit(0);
}

const { ensureVsCodeServer, startVsCodeServer, workbenchUrl } = await import("../test/runner/vscode-server.mjs");
const log = (l) => console.log(l);
const vscodeDir = await ensureVsCodeServer({ log });
const port = Number(process.env.GPUWB_PORT ?? 8765);
const server = await startVsCodeServer({ vscodeDir, log, port });
const url = workbenchUrl({ url: server.url, folder: examples, extensionDevelopmentPath: ROOT });
console.log("\nGPU Workbench is running in VS Code. Open this URL in a browser:\n");
console.log(`  ${url}\n`);
console.log("Open quickstart.py: the GPU Workbench item in the status bar (bottom left) turns ✓ when");
console.log("the backend is ready. From a terminal: node dist/cli.js run examples/quickstart.py");
console.log("Press Ctrl+C to stop.");
const stop = async () => {
  await server.stop();
  process.exit(0);
};
process.on("SIGINT", stop);
process.on("SIGTERM", stop);
await new Promise(() => {});
