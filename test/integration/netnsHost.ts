/**
 * The test "VM" for integration suites: server-python/tests/remote/netns.py's `up` command,
 * a real sshd in a network namespace of its own (prints its JSON, then answers `down` / `up`
 * with `ok`; closing stdin tears it down), and an ssh-agent of the test's own. `TestVm`
 * puts them together as the SSH host a suite connects to, with its settings, and undoes it.
 */
import * as assert from "node:assert/strict";
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import * as fs from "node:fs/promises";
import * as path from "node:path";
import * as readline from "node:readline";
import * as vscode from "vscode";

const PYTHON = process.env.GPUWB_TEST_PYTHON || "python3";

export interface NetnsInfo {
  address: string;
  port: number;
  user: string;
  identityFile: string;
  knownHosts: string;
  sshConfig: string;
  tmp: string;
  vmHome: string;
  veth: string;
}

/** The namespace host: its JSON line, then `down` / `up` answered `ok`; closing stdin tears it down. */
export class Netns {
  private readonly lines: string[] = [];
  private waiters: ((line: string) => void)[] = [];
  stderr = "";

  private constructor(readonly child: ChildProcess) {
    const out = child.stdout;
    if (out) {
      readline.createInterface({ input: out }).on("line", (line) => {
        const w = this.waiters.shift();
        if (w) w(line);
        else this.lines.push(line);
      });
    }
    child.stderr?.on("data", (d: Buffer) => {
      this.stderr = (this.stderr + d.toString()).slice(-4000);
    });
  }

  /** Start a host; `env` is added to its ssh sessions' environment (`--env NAME=VALUE`). */
  static async up(script: string, env: Record<string, string> = {}): Promise<{ netns: Netns; info: NetnsInfo }> {
    const args = [script, "up", ...Object.entries(env).flatMap(([k, v]) => ["--env", `${k}=${v}`])];
    const child = spawn(PYTHON, args, { stdio: ["pipe", "pipe", "pipe"] });
    const netns = new Netns(child);
    const line = await netns.next(90_000);
    try {
      return { netns, info: JSON.parse(line) as NetnsInfo };
    } catch {
      child.stdin?.end();
      throw new Error(`netns.py up printed ${line}; stderr: ${netns.stderr}`);
    }
  }

  next(timeoutMs: number): Promise<string> {
    const ready = this.lines.shift();
    if (ready !== undefined) return Promise.resolve(ready);
    return new Promise((resolve, reject) => {
      const t = setTimeout(
        () => reject(new Error(`netns.py: no answer in ${timeoutMs} ms; ${this.stderr}`)),
        timeoutMs,
      );
      this.waiters.push((l) => {
        clearTimeout(t);
        resolve(l);
      });
      this.child.once("exit", (code) => reject(new Error(`netns.py exited (${code}): ${this.stderr}`)));
    });
  }

  async command(cmd: "down" | "up"): Promise<void> {
    this.child.stdin?.write(`${cmd}\n`);
    const answer = await this.next(60_000);
    assert.equal(answer, "ok", `netns ${cmd}: ${answer}`);
  }

  close(): void {
    this.child.stdin?.end();
  }
}

/** An ssh-agent of the test's own holding `key` (undefined when there is no ssh-agent). */
export function startAgent(key: string): { sock: string; pid: number } | undefined {
  const out = spawnSync("ssh-agent", ["-s"], { encoding: "utf8" });
  const sock = /SSH_AUTH_SOCK=([^;]+);/.exec(out.stdout ?? "")?.[1];
  const pid = Number(/SSH_AGENT_PID=(\d+);/.exec(out.stdout ?? "")?.[1]);
  if (!sock || !pid) return undefined;
  spawnSync("ssh-add", [key], { env: { ...process.env, SSH_AUTH_SOCK: sock }, stdio: "ignore" });
  return { sock, pid };
}

export interface TestVmOptions {
  /** The SSH host's name in `gpuWorkbench.vms.ssh.hosts`; the machine is "ssh/<name>". */
  name: string;
  /** Added to the VM's ssh sessions' environment. */
  env?: Record<string, string>;
  /**
   * `gpuWorkbench.remote.knownHostsFile`, a file of the test's own in `dir`: "empty" (the
   * host key is asked about on connect), "trusted" (the VM's key already in it) or "unset".
   */
  knownHosts: "empty" | "trusted" | "unset";
  /** A folder of the suite's for the known_hosts file. */
  dir: string;
}

const G = vscode.ConfigurationTarget.Global;

/**
 * The namespace VM as an SSH host of the GPU Machines view: `up()` starts it and sets the
 * settings (the host, its known_hosts) and an ssh-agent holding its key (the SSH hosts
 * provider's reachability probe runs plain `ssh`); the caller then restarts the backend.
 * `down()` disconnects, stops everything and restores settings and SSH_AUTH_SOCK.
 */
export class TestVm {
  readonly machine: string;
  private agent: { sock: string; pid: number } | undefined;
  private savedAuthSock: string | undefined;

  private constructor(
    readonly netns: Netns,
    readonly info: NetnsInfo,
    private readonly opts: TestVmOptions,
  ) {
    this.machine = `ssh/${opts.name}`;
  }

  /** Start it; throws an Error saying why it cannot (the suite then skips with that reason). */
  static async up(extensionRoot: string, opts: TestVmOptions): Promise<TestVm> {
    const script = path.join(extensionRoot, "server-python", "tests", "remote", "netns.py");
    let vm: TestVm;
    try {
      await fs.access(script);
      const { netns, info } = await Netns.up(script, opts.env);
      vm = new TestVm(netns, info, opts);
    } catch (err) {
      throw new Error(`the namespace host did not start (${String(err)})`);
    }
    if (opts.knownHosts !== "unset") {
      const knownHosts = path.join(opts.dir, "known_hosts");
      if (opts.knownHosts === "trusted") await fs.copyFile(vm.info.knownHosts, knownHosts);
      else await fs.writeFile(knownHosts, "");
      await vscode.workspace.getConfiguration("gpuWorkbench.remote").update("knownHostsFile", knownHosts, G);
    }
    await vm.setHosts();
    vm.agent = startAgent(vm.info.identityFile);
    if (vm.agent) {
      vm.savedAuthSock = process.env.SSH_AUTH_SOCK;
      process.env.SSH_AUTH_SOCK = vm.agent.sock;
    }
    return vm;
  }

  /** Its `gpuWorkbench.vms.ssh.hosts` entry, with `extra` keys (e.g. autostopMinutes). */
  hostEntry(extra: Record<string, unknown> = {}): Record<string, unknown> {
    const i = this.info;
    return {
      name: this.opts.name,
      host: i.address,
      port: i.port,
      user: i.user,
      identityFile: i.identityFile,
      ...extra,
    };
  }

  /** Set the hosts setting to this VM alone (its entry with `extra`). */
  setHosts(extra: Record<string, unknown> = {}): Thenable<void> {
    return vscode.workspace.getConfiguration("gpuWorkbench.vms").update("ssh.hosts", [this.hostEntry(extra)], G);
  }

  async down(): Promise<void> {
    await vscode.commands.executeCommand("gpuWorkbench.remote.disconnectMachine", this.machine).then(
      () => undefined,
      () => undefined,
    );
    this.netns.close();
    if (this.agent) {
      try {
        process.kill(this.agent.pid);
      } catch {
        // already gone
      }
      if (this.savedAuthSock === undefined) delete process.env.SSH_AUTH_SOCK;
      else process.env.SSH_AUTH_SOCK = this.savedAuthSock;
      this.agent = undefined;
    }
    await vscode.workspace.getConfiguration("gpuWorkbench.vms").update("ssh.hosts", undefined, G);
    if (this.opts.knownHosts !== "unset") {
      await vscode.workspace.getConfiguration("gpuWorkbench.remote").update("knownHostsFile", undefined, G);
    }
  }
}
