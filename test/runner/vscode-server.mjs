// Runs a real VS Code (the 1.100.3 server build shipped inside the npm package
// code-server@4.100.3) and opens its workbench in Debian's Chromium via playwright-core.
// Used by run-integration.mjs and the UI tests. See docs in the exported functions.

import { spawn, spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import fs from "node:fs/promises";
import net from "node:net";
import os from "node:os";
import path from "node:path";

export const CODE_SERVER_VERSION = "4.100.3";
export const VSCODE_VERSION = "1.100.3";
export const APT_PACKAGES = ["libkrb5-dev", "ripgrep", "chromium"];
export const CHROMIUM_PATH = process.env.GPUWB_CHROMIUM || "/usr/bin/chromium";
export const CHROMIUM_ARGS = [
  "--no-sandbox",
  "--disable-gpu",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
  "--no-first-run",
  "--disable-quic",
];

const NATIVE_MODULES = [
  "kerberos",
  "node-pty",
  "@parcel/watcher",
  "@vscode/spdlog",
  "@vscode/deviceid",
  "native-watchdog",
];
const MARKER = ".gpuwb-install-complete";

/** User settings every started server gets (userSettings override them). */
export const DEFAULT_USER_SETTINGS = {
  "workbench.startupEditor": "none",
  "workbench.tips.enabled": false,
  "workbench.enableExperiments": false,
  "telemetry.telemetryLevel": "off",
  "update.mode": "none",
  "extensions.autoCheckUpdates": false,
  "extensions.autoUpdate": false,
  "extensions.ignoreRecommendations": true,
  "git.enabled": false,
};

const defaultLog = (line) => process.stderr.write(`${line}\n`);

export function cacheDir() {
  return process.env.GPUWB_CACHE_DIR || path.join(os.homedir(), ".cache", "gpu-workbench");
}

function vscodeDirIn(root) {
  return path.join(root, "node_modules", "code-server", "lib", "vscode");
}

function secs(ms) {
  return `${(ms / 1000).toFixed(1)}s`;
}

/**
 * Runs a command, capturing output. Rejects with the output's tail when it fails.
 * @returns {Promise<string>} combined stdout+stderr
 */
function runCommand(cmd, args, { cwd, env, stdio } = {}) {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, {
      cwd,
      env: env ?? process.env,
      stdio: stdio ?? ["ignore", "pipe", "pipe"],
    });
    let out = "";
    child.stdout?.on("data", (d) => {
      out += d;
    });
    child.stderr?.on("data", (d) => {
      out += d;
    });
    child.on("error", reject);
    child.on("close", (code, signal) => {
      if (code === 0) resolve(out);
      else
        reject(
          new Error(
            `${cmd} ${args.join(" ")} (in ${cwd ?? process.cwd()}) failed with ${signal ?? `exit code ${code}`}:\n${out.slice(-4000)}`,
          ),
        );
    });
  });
}

async function step(log, title, fn) {
  const t0 = Date.now();
  log(`[vscode-server] ${title} ...`);
  const result = await fn();
  log(`[vscode-server] ${title}: done in ${secs(Date.now() - t0)}`);
  return result;
}

async function missingAptPackages() {
  const missing = [];
  for (const pkg of APT_PACKAGES) {
    try {
      // biome-ignore lint/suspicious/noTemplateCurlyInString: dpkg-query format string
      const out = await runCommand("dpkg-query", ["-W", "-f=${Status}", pkg]);
      if (!out.includes("install ok installed")) missing.push(pkg);
    } catch {
      missing.push(pkg);
    }
  }
  return missing;
}

async function ensureAptPackages(log) {
  const missing = await missingAptPackages();
  if (missing.length === 0) return;
  const cmd = `apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y ${missing.join(" ")}`;
  if (typeof process.getuid === "function" && process.getuid() !== 0) {
    throw new Error(
      `Debian packages missing: ${missing.join(", ")}. Not running as root, so install them yourself:\n  sudo sh -c '${cmd}'`,
    );
  }
  const env = { ...process.env, DEBIAN_FRONTEND: "noninteractive" };
  // Wait for a concurrently running apt/dpkg instead of failing on the lock.
  const lockWait = ["-o", "DPkg::Lock::Timeout=900"];
  await step(log, "apt-get update", () => runCommand("apt-get", [...lockWait, "update"], { env }));
  await step(log, `apt-get install -y ${missing.join(" ")}`, () =>
    runCommand("apt-get", [...lockWait, "install", "-y", ...missing], { env }),
  );
  const still = await missingAptPackages();
  if (still.length) throw new Error(`apt-get install did not install: ${still.join(", ")}`);
}

function npmEnv() {
  const env = { ...process.env, npm_config_yes: "true", npm_config_audit: "false", npm_config_fund: "false" };
  // node-gyp would otherwise download Node's headers from the internet.
  const prefix = path.dirname(path.dirname(process.execPath));
  if (!env.npm_config_nodedir && existsSync(path.join(prefix, "include", "node", "node.h"))) {
    env.npm_config_nodedir = prefix;
  }
  return env;
}

/**
 * Makes sure the VS Code 1.100.3 server is installed (idempotent) and its Debian
 * dependencies (libkrb5-dev, ripgrep, chromium) are present.
 * Cache: `${GPUWB_CACHE_DIR || ~/.cache/gpu-workbench}/vscode-server-1.100.3/`. The install
 * happens in a sibling temp folder that is renamed into place once complete (with a marker
 * file), so an interrupted install is redone from scratch next time.
 * @param {{log?: (line: string) => void}} [opts]
 * @returns {Promise<string>} absolute path of the VS Code folder (`.../lib/vscode`,
 *   containing `out/server-main.js`).
 */
export async function ensureVsCodeServer({ log = defaultLog } = {}) {
  const t0 = Date.now();
  await ensureAptPackages(log);
  const root = cacheDir();
  const final = path.join(root, `vscode-server-${VSCODE_VERSION}`);
  if (existsSync(path.join(final, MARKER))) {
    return vscodeDirIn(final);
  }
  log(`[vscode-server] installing VS Code ${VSCODE_VERSION} server (code-server@${CODE_SERVER_VERSION}) into ${final}`);
  await fs.mkdir(root, { recursive: true });
  // Leftovers of interrupted installs.
  for (const name of await fs.readdir(root)) {
    if (name.startsWith(`vscode-server-${VSCODE_VERSION}.partial-`) || name === path.basename(final)) {
      await fs
        .rm(path.join(root, name), { recursive: true, force: true, maxRetries: 5 })
        .catch((e) => log(`[vscode-server] warning: could not remove ${name}: ${e.message}`));
    }
  }
  const tmp = path.join(root, `vscode-server-${VSCODE_VERSION}.partial-${process.pid}`);
  await fs.mkdir(tmp, { recursive: true });
  await fs.writeFile(
    path.join(tmp, "package.json"),
    JSON.stringify({ name: "gpuwb-vscode-server-cache", private: true }, null, 2),
  );
  const env = npmEnv();
  await step(log, `npm install --ignore-scripts code-server@${CODE_SERVER_VERSION}`, () =>
    runCommand(
      "npm",
      ["install", "--no-audit", "--no-fund", "--ignore-scripts", "--no-save", `code-server@${CODE_SERVER_VERSION}`],
      { cwd: tmp, env },
    ),
  );
  const vscode = vscodeDirIn(tmp);
  await step(log, "npm install (lib/vscode)", () =>
    runCommand("npm", ["install", "--omit=dev", "--ignore-scripts", "--no-audit", "--no-fund"], { cwd: vscode, env }),
  );
  await step(log, "ripgrep from /usr/bin/rg", async () => {
    const rgBin = path.join(vscode, "node_modules", "@vscode", "ripgrep", "bin");
    await fs.mkdir(rgBin, { recursive: true });
    const rg = (await runCommand("sh", ["-c", "command -v rg"])).trim() || "/usr/bin/rg";
    await fs.copyFile(rg, path.join(rgBin, "rg"));
    await fs.chmod(path.join(rgBin, "rg"), 0o755);
  });
  await step(log, `npm rebuild ${NATIVE_MODULES.join(" ")}`, () =>
    runCommand("npm", ["rebuild", ...NATIVE_MODULES], { cwd: vscode, env }),
  );
  await step(log, "node_modules.asar link + npm install (extensions/)", async () => {
    await fs.rm(path.join(vscode, "node_modules.asar"), { force: true });
    await fs.symlink("node_modules", path.join(vscode, "node_modules.asar"));
    await runCommand("npm", ["install", "--omit=dev", "--ignore-scripts", "--no-audit", "--no-fund"], {
      cwd: path.join(vscode, "extensions"),
      env,
    });
  });
  if (!existsSync(path.join(vscode, "out", "server-main.js"))) {
    throw new Error(`install incomplete: ${path.join(vscode, "out", "server-main.js")} missing`);
  }
  await fs.writeFile(path.join(tmp, MARKER), `${new Date().toISOString()}\n`);
  await fs.rename(tmp, final);
  log(`[vscode-server] installed in ${secs(Date.now() - t0)}`);
  return vscodeDirIn(final);
}

// ---------------------------------------------------------------------------------------
// Server

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

/** All descendants of pid (from `ps`), deepest last. */
async function descendants(pid) {
  let out;
  try {
    out = await runCommand("ps", ["-eo", "pid=,ppid="]);
  } catch {
    return [];
  }
  const children = new Map();
  for (const line of out.split("\n")) {
    const [p, pp] = line.trim().split(/\s+/).map(Number);
    if (!p) continue;
    if (!children.has(pp)) children.set(pp, []);
    children.get(pp).push(p);
  }
  const result = [];
  const queue = [pid];
  while (queue.length) {
    for (const c of children.get(queue.shift()) ?? []) {
      result.push(c);
      queue.push(c);
    }
  }
  return result;
}

function tryKill(pid, signal) {
  try {
    process.kill(pid, signal);
    return true;
  } catch {
    return false;
  }
}

function isAlive(pid) {
  return tryKill(pid, 0);
}

/**
 * Starts the VS Code server on a free port on 127.0.0.1 with fresh temporary
 * server-data / user-data / extensions folders.
 *
 * @param {object} opts
 * @param {string} opts.vscodeDir  from ensureVsCodeServer()
 * @param {Record<string,string>} [opts.env]  added to process.env; the extension host
 *   inherits the server's environment.
 * @param {object} [opts.userSettings]  user settings, written to `<user-data-dir>/User/settings.json`
 *   before start. This VS Code build (code-server's) keeps the browser's user settings on the
 *   server there (not in IndexedDB), so every scope works, including `application`, and
 *   settings changed through the API (ConfigurationTarget.Global) land in the same file.
 *   Merged over DEFAULT_USER_SETTINGS (no welcome page, no telemetry/updates, git off).
 * @param {object} [opts.machineSettings]  remote machine settings, written to
 *   `<user-data-dir>/Machine/settings.json`; they override user settings for non-application
 *   scopes (so a test's ConfigurationTarget.Global update would NOT take effect over them).
 * @param {boolean} [opts.workspaceTrust=false]  false passes --disable-workspace-trust
 *   (every folder trusted); true keeps VS Code's trust model (Restricted Mode tests).
 * @param {string[]} [opts.args]  extra server arguments.
 * @param {number} [opts.startTimeoutMs=60000]
 * @param {(line: string) => void} [opts.log]
 * @param {boolean} [opts.echo=false]  also echo server output lines to log.
 * @param {number} [opts.port]  listen on this port instead of a free one (npm start).
 * @param {string[]} [opts.installExtensions]  .vsix files installed into the fresh
 *   extensions dir before the server starts.
 * @returns {Promise<{port:number, url:string, pid:number, dirs:{root:string, serverData:string, userData:string, extensions:string}, logs:() => string, exited:() => (null|{code:number|null, signal:string|null}), waitForLog:(re:RegExp, timeoutMs?:number) => Promise<string>, stop:() => Promise<void>}>}
 */
export async function startVsCodeServer({
  vscodeDir,
  env = {},
  userSettings,
  machineSettings,
  workspaceTrust = false,
  args = [],
  startTimeoutMs = 60_000,
  log = defaultLog,
  echo = false,
  port: fixedPort,
  installExtensions = [],
} = {}) {
  if (!vscodeDir) throw new Error("startVsCodeServer: vscodeDir is required (from ensureVsCodeServer())");
  const t0 = Date.now();
  const root = await fs.mkdtemp(path.join(os.tmpdir(), "gpuwb-vscode-"));
  const dirs = {
    root,
    serverData: path.join(root, "server-data"),
    userData: path.join(root, "user-data"),
    extensions: path.join(root, "extensions"),
  };
  for (const d of [dirs.serverData, dirs.userData, dirs.extensions]) await fs.mkdir(d, { recursive: true });
  for (const [sub, settings] of [
    ["User", { ...DEFAULT_USER_SETTINGS, ...userSettings }],
    ["Machine", machineSettings],
  ]) {
    if (!settings) continue;
    await fs.mkdir(path.join(dirs.userData, sub), { recursive: true });
    await fs.writeFile(path.join(dirs.userData, sub, "settings.json"), JSON.stringify(settings, null, 2));
  }
  for (const vsix of installExtensions) {
    // The server's own CLI installs a packaged extension into this server's extensions dir.
    const r = spawnSync(
      process.execPath,
      [
        path.join(vscodeDir, "out", "server-main.js"),
        "--install-extension",
        vsix,
        "--extensions-dir",
        dirs.extensions,
        "--server-data-dir",
        dirs.serverData,
        "--user-data-dir",
        dirs.userData,
        "--accept-server-license-terms",
      ],
      { encoding: "utf8", timeout: 120_000 },
    );
    if (r.status !== 0) throw new Error(`installing ${vsix} failed: ${r.stderr || r.stdout}`);
    log(`[vscode-server] installed ${path.basename(vsix)}`);
  }
  const port = fixedPort ?? (await freePort());
  const serverArgs = [
    path.join(vscodeDir, "out", "server-main.js"),
    "--host",
    "127.0.0.1",
    "--port",
    String(port),
    "--without-connection-token",
    "--accept-server-license-terms",
    "--server-data-dir",
    dirs.serverData,
    "--user-data-dir",
    dirs.userData,
    "--extensions-dir",
    dirs.extensions,
    ...(workspaceTrust ? [] : ["--disable-workspace-trust"]),
    ...args,
  ];
  const child = spawn(process.execPath, serverArgs, {
    cwd: root,
    env: { ...process.env, ...env },
    stdio: ["ignore", "pipe", "pipe"],
    detached: true, // own process group, so stop() can kill the whole tree
  });
  let output = "";
  let exitInfo = null;
  const waiters = new Set();
  const onText = (stream) => (d) => {
    const text = d.toString();
    output += text;
    if (output.length > 4_000_000) output = output.slice(-2_000_000);
    if (echo) for (const l of text.split("\n")) if (l.trim()) log(`[server:${stream}] ${l}`);
    for (const w of waiters) w();
  };
  child.stdout.on("data", onText("out"));
  child.stderr.on("data", onText("err"));
  const exitPromise = new Promise((resolve) => {
    child.on("exit", (code, signal) => {
      exitInfo = { code, signal };
      for (const w of waiters) w();
      resolve(exitInfo);
    });
  });

  /** Resolves with the matching line once `re` matches the output (searched from `from`). */
  const waitForLog = (re, timeoutMs = 60_000, from = 0) =>
    new Promise((resolve, reject) => {
      const check = () => {
        const m = output.slice(from).match(re);
        if (m) {
          done();
          resolve(m[0]);
        } else if (exitInfo) {
          done();
          reject(
            new Error(`VS Code server exited (${JSON.stringify(exitInfo)}) before ${re}:\n${output.slice(-3000)}`),
          );
        }
      };
      const timer = setTimeout(() => {
        done();
        reject(
          new Error(
            `timed out after ${timeoutMs} ms waiting for ${re} in VS Code server output:\n${output.slice(-3000)}`,
          ),
        );
      }, timeoutMs);
      const done = () => {
        clearTimeout(timer);
        waiters.delete(check);
      };
      waiters.add(check);
      check();
    });

  let stopped = false;
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    const pids = [...(await descendants(child.pid)), child.pid];
    tryKill(-child.pid, "SIGTERM");
    for (const p of pids) tryKill(p, "SIGTERM");
    const deadline = Date.now() + 5000;
    while (Date.now() < deadline && pids.some(isAlive)) await new Promise((r) => setTimeout(r, 100));
    tryKill(-child.pid, "SIGKILL");
    for (const p of pids) if (isAlive(p)) tryKill(p, "SIGKILL");
    await Promise.race([exitPromise, new Promise((r) => setTimeout(r, 2000))]);
    if (!process.env.GPUWB_KEEP_VSCODE_DIRS) await fs.rm(root, { recursive: true, force: true }).catch(() => {});
  };

  try {
    await waitForLog(/Extension host agent listening on \d+/, startTimeoutMs);
  } catch (e) {
    await stop();
    throw e;
  }
  const url = `http://127.0.0.1:${port}`;
  log(`[vscode-server] server listening at ${url} after ${secs(Date.now() - t0)} (pid ${child.pid})`);
  return {
    port,
    url,
    pid: child.pid,
    dirs,
    logs: () => output,
    exited: () => exitInfo,
    waitForLog,
    stop,
  };
}

// ---------------------------------------------------------------------------------------
// Browser

// Harmless console errors of this setup: missing vsda (closed-source signing module), the
// code-server PWA service worker, the unreachable extension gallery (open-vsx.org), the
// update check. 404s are reported by URL instead (see HTTP_NOISE).
const BROWSER_NOISE = [
  /^Failed to load resource: the server responded with a status of 404/,
  /^A bad HTTP response code \(404\) was received when fetching the script/,
  /\[Service Worker\] registration/,
  /ERR_NAME_NOT_RESOLVED|ENOTFOUND|open-vsx\.org|ERR_INTERNET_DISCONNECTED/,
];
const HTTP_NOISE = [
  /\/vsda\/rust\/web\/vsda/,
  /\/_static\/out\/browser\/serviceWorker\.js/,
  /\/_static\/src\/browser\/media\//,
  /\/update\/check/,
  /open-vsx\.org/,
];

/**
 * The `?folder=...&payload=...` URL that opens `folder` with a development extension (and
 * optionally an extension tests module) loaded from this machine.
 */
export function workbenchUrl({ url, folder, extensionDevelopmentPath, extensionTestsPath }) {
  const authority = new URL(url).host;
  const remote = (p) => `vscode-remote://${authority}${encodeURI(path.resolve(p))}`;
  const payload = [];
  if (extensionDevelopmentPath) payload.push(["extensionDevelopmentPath", remote(extensionDevelopmentPath)]);
  if (extensionTestsPath) payload.push(["extensionTestsPath", remote(extensionTestsPath)]);
  const q = new URLSearchParams();
  if (folder) q.set("folder", path.resolve(folder));
  if (payload.length) q.set("payload", JSON.stringify(payload));
  return `${url.replace(/\/$/, "")}/?${q.toString()}`;
}

/**
 * Launches Chromium (playwright-core, /usr/bin/chromium, fresh profile, 1400x900) on the
 * server's workbench and waits for `.monaco-workbench`.
 *
 * @param {object} opts
 * @param {string} opts.url  server URL from startVsCodeServer()
 * @param {string} [opts.folder]  workspace folder (absolute or relative path on this machine)
 * @param {string} [opts.extensionDevelopmentPath]
 * @param {string} [opts.extensionTestsPath]  omit for UI tests (extension only)
 * @param {string} [opts.screenshotsDir]  where screenshot(name) writes `<name>.png`
 * @param {boolean} [opts.headless=true]
 * @param {number} [opts.timeoutMs=90000]  for `.monaco-workbench` to appear
 * @param {(line: string) => void} [opts.log]
 * @param {boolean} [opts.verbose=$GPUWB_VERBOSE]  log every console message (including the
 *   extension host's console.log, which the workbench forwards as INFO); otherwise only
 *   console errors and HTTP errors, minus known harmless noise.
 * @returns {Promise<{browser, context, page, screenshot:(name:string)=>Promise<string|undefined>, close:()=>Promise<void>}>}
 */
export async function openWorkbench({
  url,
  folder,
  extensionDevelopmentPath,
  extensionTestsPath,
  screenshotsDir,
  headless = true,
  timeoutMs = 90_000,
  log = defaultLog,
  verbose = !!process.env.GPUWB_VERBOSE,
} = {}) {
  const t0 = Date.now();
  const { chromium } = await import("playwright-core");
  const browser = await chromium.launch({ executablePath: CHROMIUM_PATH, headless, args: CHROMIUM_ARGS });
  let closed = false;
  const close = async () => {
    if (closed) return;
    closed = true;
    await browser.close().catch(() => {});
  };
  try {
    const context = await browser.newContext({ viewport: { width: 1400, height: 900 } });
    const page = await context.newPage();
    page.on("console", (msg) => {
      const text = msg.text().replace(/^%c\s*(ERR|INFO|WARN|DEBUG|TRACE)?\s*color: #[0-9a-f]+\s*/i, "");
      if (verbose) log(`[browser:${msg.type()}] ${text}`);
      else if (msg.type() === "error" && !BROWSER_NOISE.some((re) => re.test(text))) log(`[browser:error] ${text}`);
    });
    page.on("response", (res) => {
      if (res.status() >= 400 && !verbose && !HTTP_NOISE.some((re) => re.test(res.url())))
        log(`[browser:http ${res.status()}] ${res.url()}`);
    });
    page.on("pageerror", (err) => log(`[browser:pageerror] ${err?.message ?? err}`));
    const target = workbenchUrl({ url, folder, extensionDevelopmentPath, extensionTestsPath });
    await page.goto(target, { timeout: timeoutMs });
    await page.waitForSelector(".monaco-workbench", { timeout: timeoutMs });
    log(`[vscode-server] workbench loaded after ${secs(Date.now() - t0)}`);
    const screenshot = async (name) => {
      if (!screenshotsDir) return undefined;
      await fs.mkdir(screenshotsDir, { recursive: true });
      const file = path.join(screenshotsDir, name.endsWith(".png") ? name : `${name}.png`);
      await page.screenshot({ path: file });
      return file;
    };
    return { browser, context, page, screenshot, close };
  } catch (e) {
    await close();
    throw e;
  }
}
