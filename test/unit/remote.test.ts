// Remote execution, the parts without `vscode`: kernel target strings, remote kernel ids,
// and how machines, interpreters, forwards, syncs and autostop are labelled.
import * as assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { RemoteInterpreter } from "../../src/protocol";
import {
  autostopText,
  bytesText,
  forwardText,
  interpreterFor,
  parseKernelId,
  parseTarget,
  remoteTarget,
  remoteTargetLabel,
  remoteWorkspacePath,
  splitMachine,
  stateText,
  statusBarText,
  syncQuestion,
} from "../../src/remote/format";

const torch: RemoteInterpreter = {
  path: "/opt/conda/envs/torch/bin/python",
  version: "3.11.4",
  kind: "conda",
  name: "torch",
  hasTorch: true,
};
const sys: RemoteInterpreter = {
  path: "/usr/bin/python3",
  version: "3.10.12",
  kind: "system",
  name: "python3",
  hasTorch: false,
};

describe("remote: kernel targets", () => {
  it("round-trips machine and python through the target string", () => {
    const t = remoteTarget("aws/i-0abc", torch.path);
    assert.equal(t, "remote:aws/i-0abc:/opt/conda/envs/torch/bin/python");
    assert.deepEqual(parseTarget(t), { kind: "remote", machine: "aws/i-0abc", python: torch.path });
  });

  it("keeps an empty python (the machine's default) and ssh host ids", () => {
    assert.deepEqual(parseTarget(remoteTarget("ssh/nsvm", "")), { kind: "remote", machine: "ssh/nsvm", python: "" });
    assert.deepEqual(parseTarget("remote:ssh/nsvm"), { kind: "remote", machine: "ssh/nsvm", python: "" });
  });

  it("treats local, missing and malformed targets as local", () => {
    for (const t of [undefined, "", "local", "remote:", "remote:nomachine", "remote:/x:/p", "remote:aws/:/p"]) {
      assert.deepEqual(parseTarget(t), { kind: "local" }, String(t));
    }
  });

  it("parses remote kernel ids <remoteId>@<provider>/<id>", () => {
    assert.deepEqual(parseKernelId("k-12ab@ssh/nsvm"), { remoteId: "k-12ab", machine: "ssh/nsvm" });
    assert.deepEqual(parseKernelId("k1@aws/i-0abc"), { remoteId: "k1", machine: "aws/i-0abc" });
    for (const id of ["k-12ab", "@ssh/nsvm", "k@nslash", "k@ssh/", "k@/x"])
      assert.equal(parseKernelId(id), undefined, id);
  });

  it("splits machines", () => {
    assert.deepEqual(splitMachine("lambda/abc/def"), { provider: "lambda", id: "abc/def" });
  });
});

describe("remote: labels", () => {
  it("labels a remote interpreter as the picker shows it", () => {
    assert.equal(remoteTargetLabel("a100-box", torch), "Remote: a100-box / torch (3.11.4, torch)");
    assert.equal(remoteTargetLabel("a100-box", sys), "Remote: a100-box / python3 (3.10.12)");
    assert.equal(remoteTargetLabel("a100-box", undefined), "Remote: a100-box / default Python");
  });

  it("chooses the named interpreter, else the agent's, else the first", () => {
    const m = { interpreters: [sys, torch], agentPython: torch.path } as never;
    assert.equal(interpreterFor(m, sys.path), sys);
    assert.equal(interpreterFor(m, ""), torch);
    assert.equal(interpreterFor({ interpreters: [sys], agentPython: null } as never, ""), sys);
  });

  it("shows connection states in the tree and the status bar", () => {
    assert.equal(stateText("connected"), "connected ✓");
    assert.equal(stateText("reconnecting"), "reconnecting…");
    assert.equal(statusBarText({ name: "a100-box", state: "connected" }), "$(remote) a100-box ✓");
    assert.equal(statusBarText({ name: "a100-box", state: "reconnecting" }), "$(sync~spin) reconnecting…");
  });

  it("describes forwards, sync sizes and the remote workspace", () => {
    assert.equal(forwardText({ localPort: 6006, remotePort: 6006 }), "localhost:6006 → 6006");
    assert.equal(bytesText(512), "512 B");
    assert.equal(bytesText(3.4 * 1024 * 1024), "3.4 MB");
    assert.equal(bytesText(120 * 1024 * 1024), "120 MB");
    assert.equal(
      syncQuestion(12, 3.4 * 1024 * 1024, "a100-box", "~/gpu-workbench/proj"),
      "Send 12 files (3.4 MB) to a100-box:~/gpu-workbench/proj?",
    );
    assert.equal(syncQuestion(1, 10, "b", "~/x"), "Send 1 file (10 B) to b:~/x?");
    assert.equal(remoteWorkspacePath("examples"), "~/gpu-workbench/examples");
    assert.equal(remoteWorkspacePath("a/b"), "~/gpu-workbench/a-b");
  });

  it("counts down autostop", () => {
    const now = 1_700_000_000_000;
    const base = { machine: "aws/i", idleMinutes: 60, idleSince: null, actAt: null, reason: "", running: true };
    assert.equal(autostopText(undefined), "");
    assert.equal(autostopText(base, now), "stops after 60 idle minutes");
    assert.equal(
      autostopText({ ...base, actAt: now / 1000 + 42 * 60, reason: "GPU idle" }, now),
      "stops in 42 min if still idle (GPU idle)",
    );
    assert.equal(
      autostopText({ ...base, running: false, reason: "no stop command" }, now),
      "autostop off (no stop command)",
    );
    assert.equal(
      autostopText({ ...base, actAt: now / 1000 + 20, reason: "" }, now),
      "stops within a minute if still idle",
    );
    assert.equal(
      autostopText({ ...base, actAt: now / 1000 - 5, reason: "" }, now),
      "stops within a minute if still idle",
    );
  });
});
