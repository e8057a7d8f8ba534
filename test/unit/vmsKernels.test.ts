// GPU machines: the pure text of kernel rows under a machine and of idle-autostop warnings.
import * as assert from "node:assert/strict";
import { describe, it } from "node:test";
import type { KernelInfo } from "../../src/protocol";
import { idleWarningText, kernelLive, kernelMachineKey, kernelRowText } from "../../src/vms/format";

function kernel(over: Partial<KernelInfo> = {}): KernelInfo {
  return {
    kernelId: "k-1a2b",
    name: "quickstart.py",
    pid: 4242,
    python: "/usr/bin/python3",
    pythonVersion: "3.12.1",
    cwd: "/w",
    state: "idle",
    createdAt: 1_700_000_000,
    lastSeq: 3,
    queue: [],
    idleTimeoutSeconds: 0,
    ...over,
  };
}

describe("vms: kernel rows", () => {
  it("shows the kernel's name, state, queue, Python and pid", () => {
    assert.deepEqual(kernelRowText(kernel()), ["quickstart.py", "idle · Python 3.12.1 · pid 4242"]);
    assert.deepEqual(kernelRowText(kernel({ state: "busy", queue: ["e1", "e2"] })), [
      "quickstart.py",
      "busy · 2 queued · Python 3.12.1 · pid 4242",
    ]);
  });

  it("falls back to the kernel id and leaves unknown parts out", () => {
    assert.deepEqual(kernelRowText(kernel({ name: "", pythonVersion: "", pid: 0, state: "starting" })), [
      "k-1a2b",
      "starting",
    ]);
  });

  it("puts a kernel under its machine: remote ones by key, the others under this machine", () => {
    assert.equal(kernelMachineKey(kernel({ machine: "aws/i-0abc" })), "aws/i-0abc");
    assert.equal(kernelMachineKey(kernel({ machine: null })), "local/local");
    assert.equal(kernelMachineKey(kernel()), "local/local");
  });

  it("shows live kernels only", () => {
    assert.deepEqual(
      (["starting", "idle", "busy", "dead", "exited"] as const).map((state) => kernelLive({ state })),
      [true, true, true, false, false],
    );
  });
});

describe("vms: idle warning text", () => {
  const now = 1_700_000_000_000;
  it("announces a stop or terminate with the minutes left (at least 1)", () => {
    const actAt = now / 1000 + 120;
    assert.equal(
      idleWarningText({ name: "box", action: "stop", actAt }, now),
      "box will be stopped in 2 minutes because it is idle.",
    );
    assert.equal(
      idleWarningText({ name: "box", action: "terminate", actAt: now / 1000 + 5 }, now),
      "box will be terminated in 1 minute because it is idle.",
    );
  });

  it("warns with the price when it cannot act", () => {
    assert.equal(
      idleWarningText({ name: "lin", action: "warn", actAt: now / 1000 }, now, 1.5),
      "lin is idle and still costs $1.50/h; it is not stopped automatically.",
    );
  });

  it("reports what was done once the backend acted", () => {
    assert.equal(
      idleWarningText({ name: "box", action: "stopped", actAt: now / 1000 }, now, 1, 1),
      "box was stopped after 1 idle minute.",
    );
    assert.equal(
      idleWarningText({ name: "box", action: "terminated", actAt: now / 1000 }, now, 1, 30),
      "box was terminated after 30 idle minutes.",
    );
    assert.equal(idleWarningText({ name: "box", action: "stopped", actAt: 0 }, now), "box was stopped while idle.");
  });
});
