// Shared setup for `npm start` and `npm test`: install npm packages when missing, find a
// Python for the tests, build. Only node built-ins here: it runs before node_modules exists.
import { spawnSync } from "node:child_process";
import { existsSync, readFileSync, statSync } from "node:fs";
import * as path from "node:path";
import { fileURLToPath } from "node:url";

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "..");

export function sh(cmd, args, opts = {}) {
  const r = spawnSync(cmd, args, { stdio: "inherit", cwd: ROOT, ...opts });
  if (r.error) throw r.error;
  return r.status ?? 1;
}

function mustRun(cmd, args, opts) {
  const code = sh(cmd, args, opts);
  if (code !== 0) throw new Error(`${cmd} ${args.join(" ")} failed with exit code ${code}`);
}

/** `npm install` (honouring the lock file) when node_modules is missing or older than it. */
export function ensureNodeModules() {
  const lock = path.join(ROOT, "package-lock.json");
  const marker = path.join(ROOT, "node_modules", ".package-lock.json");
  if (existsSync(marker) && (!existsSync(lock) || statSync(marker).mtimeMs >= statSync(lock).mtimeMs)) return;
  console.log("setup: installing npm packages…");
  mustRun("npm", ["install", "--no-audit", "--no-fund"]);
}

export function build() {
  mustRun(process.execPath, ["esbuild.mjs"]);
}

function pythonHas(python, modules) {
  const r = spawnSync(python, ["-c", `import ${modules.join(", ")}`], { stdio: "ignore" });
  return r.status === 0;
}

/**
 * A Python with pytest and hypothesis for the backend's tests: $GPUWB_TEST_PYTHON, then
 * python3 on PATH, then Debian's /usr/bin/python3 (installing python3-pytest and
 * python3-hypothesis with apt when they are missing).
 */
export function testPython() {
  const wanted = ["pytest", "hypothesis"];
  const candidates = [process.env.GPUWB_TEST_PYTHON, "python3", "/usr/bin/python3"].filter(Boolean);
  for (const c of candidates) if (pythonHas(c, wanted)) return c;
  if (process.getuid?.() === 0 && existsSync("/usr/bin/apt-get")) {
    console.log("setup: installing python3-pytest and python3-hypothesis with apt…");
    const env = { ...process.env, DEBIAN_FRONTEND: "noninteractive" };
    sh("apt-get", ["update", "-q"], { env });
    mustRun("apt-get", ["install", "-y", "-q", "python3-pytest", "python3-hypothesis"], { env });
    if (pythonHas("/usr/bin/python3", wanted)) return "/usr/bin/python3";
  }
  throw new Error(
    "No Python with pytest and hypothesis was found. Install them (apt-get install python3-pytest python3-hypothesis) or set GPUWB_TEST_PYTHON.",
  );
}

/**
 * A Python with torch, for tests and benchmarks that write checkpoints with torch itself:
 * $GPUWB_TORCH_PYTHON, then Debian's /usr/bin/python3 (installing python3-torch with apt when
 * running as root). Returns undefined when none can be had; tests then skip, except under
 * CI=true, where they fail.
 */
export function torchPython() {
  const candidates = [process.env.GPUWB_TORCH_PYTHON, "/usr/bin/python3"].filter(Boolean);
  for (const c of candidates) if (pythonHas(c, ["torch", "numpy"])) return c;
  if (process.getuid?.() === 0 && existsSync("/usr/bin/apt-get")) {
    console.log("setup: installing python3-torch with apt (checkpoint fixtures are written by torch)…");
    const env = { ...process.env, DEBIAN_FRONTEND: "noninteractive" };
    sh("apt-get", ["update", "-q"], { env });
    if (
      sh("apt-get", ["install", "-y", "-q", "--no-install-recommends", "python3-torch", "python3-numpy"], { env }) === 0
    ) {
      if (pythonHas("/usr/bin/python3", ["torch", "numpy"])) return "/usr/bin/python3";
    }
  }
  return undefined;
}

/**
 * OpenSSH's sshd for the SSH-host tests (they start a real one on loopback). Installed with
 * apt when missing and running as root; otherwise those tests skip (and fail under CI=true).
 */
export function ensureSshd() {
  // sshd for the SSH-host and remote tests; rsync for the code-sync tests' rsync path.
  const missing = [];
  if (!existsSync("/usr/sbin/sshd")) missing.push("openssh-server", "openssh-client");
  if (!existsSync("/usr/bin/rsync")) missing.push("rsync");
  // gcc builds the stand-in libnvidia-ml of the GPU tests; iproute2 makes the remote tests' VM.
  if (!existsSync("/usr/bin/gcc")) missing.push("gcc", "libc6-dev");
  if (!existsSync("/usr/sbin/ip") && !existsSync("/usr/bin/ip")) missing.push("iproute2");
  if (missing.length && process.getuid?.() === 0 && existsSync("/usr/bin/apt-get")) {
    console.log(`setup: installing ${missing.join(", ")} with apt (the SSH and remote tests use them)…`);
    const env = { ...process.env, DEBIAN_FRONTEND: "noninteractive" };
    sh("apt-get", ["update", "-q"], { env });
    sh("apt-get", ["install", "-y", "-q", "--no-install-recommends", ...missing], { env });
  }
  return existsSync("/usr/sbin/sshd");
}

export function packageVersion() {
  return JSON.parse(readFileSync(path.join(ROOT, "package.json"), "utf8")).version;
}
