/**
 * The test "VM" for integration suites: server-python/tests/remote/netns.py's `up` command,
 * a real sshd in a network namespace of its own (prints its JSON, then answers `down` / `up`
 * with `ok`; closing stdin tears it down), and an ssh-agent of the test's own.
 */
import * as assert from "node:assert/strict";
import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import * as readline from "node:readline";

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
