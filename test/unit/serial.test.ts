import assert from "node:assert/strict";
import { test } from "node:test";
import { RestartBudget, SerialRunner } from "../../src/backend/serial";

function deferred() {
  let resolve!: () => void;
  const promise = new Promise<void>((r) => {
    resolve = r;
  });
  return { promise, resolve };
}

test("one run in flight, at most one queued, later requests join the queued run", async () => {
  const gates = [deferred(), deferred(), deferred()];
  let started = 0;
  let active = 0;
  let maxActive = 0;
  const runner = new SerialRunner(async () => {
    const gate = gates[started++];
    active++;
    maxActive = Math.max(maxActive, active);
    await gate?.promise;
    active--;
  });
  const a = runner.run();
  const b = runner.run();
  const c = runner.run();
  const d = runner.run();
  assert.equal(b, c);
  assert.equal(c, d);
  assert.equal(started, 1);
  gates[0]?.resolve();
  await a;
  gates[1]?.resolve();
  await b;
  assert.equal(started, 2, "four requests made two runs");
  assert.equal(maxActive, 1, "never two at once");
  assert.equal(runner.busy, false);
});

test("a failed run does not block the next", async () => {
  let n = 0;
  const runner = new SerialRunner(async () => {
    n++;
    if (n === 1) throw new Error("first fails");
  });
  const first = runner.run();
  const second = runner.run();
  await assert.rejects(first, /first fails/);
  await second;
  assert.equal(n, 2);
});

test("RestartBudget allows max within the window and recovers after it", () => {
  let now = 0;
  const b = new RestartBudget(2, 1000, () => now);
  assert.equal(b.tryTake(), true);
  assert.equal(b.tryTake(), true);
  assert.equal(b.tryTake(), false);
  now = 1500;
  assert.equal(b.tryTake(), true);
  b.setMax(0);
  assert.equal(b.tryTake(), false);
});
