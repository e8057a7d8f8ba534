// GPU machines, the parts without `vscode`: redaction of secrets in logs and traces,
// and how machines are described, reached over SSH and listed in the managed ssh config.
import * as assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { VmInfo } from "../../src/protocol";
import { describeVm, money, sshAlias, sshArgs, sshConfigText, uptimeSeconds } from "../../src/vms/format";
import { MASK, Redactor, redactingChannel } from "../../src/vms/redact";

function vm(over: Partial<VmInfo> = {}): VmInfo {
  return {
    provider: "aws",
    id: "i-0abc",
    name: "train box",
    state: "running",
    instanceType: "g5.xlarge",
    gpuModel: "A10G",
    gpuCount: 1,
    region: "us-east-1",
    pricePerHour: 1.006,
    spot: false,
    launchedAt: 1_000_000,
    address: "10.0.0.5",
    ssh: { host: "10.0.0.5", port: 2222, user: "ubuntu", identityFile: "/k/id ed", alias: null },
    tags: {},
    managed: true,
    capabilities: ["start", "stop", "terminate"],
    stopKeepsBilling: false,
    accruedCost: 2.414,
    detail: null,
    ...over,
  };
}

describe("vms redactor", () => {
  it("masks every secret, raw and JSON-escaped, longest first", () => {
    const r = new Redactor();
    r.setSecrets(["tok-SECRET-123", 'quo"te\\val', "tok-SECRET-123-longer", "ab"]);
    const params = JSON.stringify({ credentials: { lambda: { apiKey: "tok-SECRET-123" }, x: { k: 'quo"te\\val' } } });
    const out = r.redact(`Sending request 'vm/list'. Params: ${params} and tok-SECRET-123-longer`);
    assert.ok(!out.includes("SECRET"), out);
    assert.ok(!out.includes("quo"), out);
    assert.ok(out.includes(MASK));
    assert.ok(out.endsWith(`and ${MASK}`), "the longer secret is masked whole");
    assert.equal(r.redact("ab is too short to be a secret"), "ab is too short to be a secret");
  });

  it("wraps a channel so every writer redacts and the rest passes through", () => {
    const r = new Redactor();
    r.setSecrets(["hunter2hunter2"]);
    const lines: string[] = [];
    const channel = {
      name: "x",
      logLevel: 1,
      append: (s: string) => lines.push(s),
      appendLine: (s: string) => lines.push(s),
      replace: (s: string) => lines.push(s),
      info: (s: string) => lines.push(s),
      error: (s: string) => lines.push(s),
      clear: () => lines.push("cleared"),
    };
    // biome-ignore lint/suspicious/noExplicitAny: a minimal stand-in for an OutputChannel
    const w = redactingChannel(channel as any, r) as unknown as typeof channel;
    w.append("a hunter2hunter2 b");
    w.appendLine(JSON.stringify({ k: "hunter2hunter2" }));
    w.info("hunter2hunter2");
    w.error(new Error("bad hunter2hunter2") as unknown as string);
    w.clear();
    assert.equal(w.logLevel, 1);
    assert.equal(w.name, "x");
    assert.ok(
      lines.every((l) => !l.includes("hunter2")),
      lines.join("\n"),
    );
    assert.equal(lines.at(-1), "cleared");
  });
});

describe("vms format", () => {
  it("describes a machine as type · GPU · region · $/h · uptime · $accrued", () => {
    const now = (1_000_000 + 3 * 3600 + 5 * 60) * 1000;
    assert.equal(describeVm(vm(), now), "g5.xlarge · A10G · us-east-1 · $1.01/h · 3h 5m · $2.41");
    assert.equal(uptimeSeconds(vm({ state: "stopped" }), now), undefined);
    assert.equal(
      describeVm(vm({ pricePerHour: null, accruedCost: null, state: "stopped", gpuCount: 8 }), now),
      "g5.xlarge · 8× A10G · us-east-1 · $?/h · $?",
    );
    assert.equal(money(0.004), "<$0.01");
  });

  it("reaches a machine over ssh and lists it in the managed config", () => {
    assert.deepEqual(sshArgs(vm()), ["-p", "2222", "-i", "/k/id ed", "ubuntu@10.0.0.5"]);
    assert.equal(sshAlias(vm()), "gpuwb-aws-train-box");
    const text = sshConfigText([
      vm(),
      vm({ id: "i-2", name: "gone", state: "terminated" }),
      vm({ ssh: null, name: "n" }),
    ]);
    assert.match(
      text,
      /^Host gpuwb-aws-train-box\n {2}HostName 10\.0\.0\.5\n {2}Port 2222\n {2}User ubuntu\n {2}IdentityFile "\/k\/id ed"$/m,
    );
    assert.ok(!text.includes("gone"));
    assert.equal(text.match(/^Host /gm)?.length, 1);
  });
});
