// GPU health, the parts without `vscode`: the status item's text, colours and tooltip for
// 0, 1 and 8 GPUs, lost GPUs and values the driver does not report; critical transitions;
// the charts' history window; the check report's numbers; and which machine is shown (this
// one or a connected one, named in the item, tooltip and notifications).
import * as assert from "node:assert/strict";
import { describe, it } from "node:test";
import {
  appendPoint,
  criticalMessage,
  expectedText,
  focusedMachine,
  GIB,
  gib,
  machineKeyOf,
  measuredText,
  newCriticals,
  reportMarkdown,
  statusCounts,
  statusText,
  statusTooltip,
  statusView,
  toHistoryPoint,
  watchKey,
  withMachine,
} from "../../src/gpu/format";
import type { GpuCheckReport, GpuHistoryPoint, GpuInfo, GpuReason, GpuSnapshot } from "../../src/protocol";

function gpu(over: Partial<GpuInfo> = {}): GpuInfo {
  return {
    index: 0,
    uuid: "GPU-0000",
    name: "NVIDIA H100 80GB HBM3",
    lost: false,
    utilization: 87,
    memoryUtilization: 40,
    memoryUsed: 65498251264,
    memoryTotal: 85899345920,
    temperature: 71,
    temperatureSlowdown: 90,
    powerDraw: 350,
    powerLimit: 700,
    clocksEventReasons: 0,
    throttle: [],
    ecc: { correctedVolatile: 0, uncorrectedVolatile: 0, correctedAggregate: 0, uncorrectedAggregate: 0 },
    remappedRows: { correctable: 0, uncorrectable: 0, pending: false, failure: false },
    pcie: { gen: 5, maxGen: 5, width: 16, maxWidth: 16 },
    persistenceMode: true,
    processes: [{ pid: 4242, name: "python", usedMemory: 8589934592 }],
    xids: [],
    verdict: "ok",
    reasons: [],
    ...over,
  };
}

function snap(gpus: GpuInfo[], over: Partial<GpuSnapshot> = {}): GpuSnapshot {
  const reasons = over.reasons ?? [];
  const all = [...reasons, ...gpus.flatMap((g) => g.reasons)];
  const verdict = all.some((r) => r.severity === "critical")
    ? "critical"
    : all.some((r) => r.severity === "warn")
      ? "warn"
      : "ok";
  return {
    machine: "box",
    source: "nvml",
    time: 1_700_000_000,
    driverVersion: "550.54.15",
    cudaVersion: "12.4",
    gpus,
    verdict,
    reasons,
    message: null,
    intervalSeconds: 2,
    sampling: true,
    ...over,
  };
}

const lostReason = (i: number): GpuReason => ({
  gpu: i,
  severity: "critical",
  code: "lost",
  message: "has fallen off the bus",
});

describe("gpu: status text", () => {
  it("no GPU: a calm item with the reason in the tooltip", () => {
    const s = snap([], { source: "none", message: "libnvidia-ml.so.1 was not found", sampling: false });
    const v = statusView(s);
    assert.equal(v.text, "$(circuit-board) No GPU");
    assert.equal(v.level, "none");
    assert.match(v.tooltip, /libnvidia-ml\.so\.1 was not found/);
    assert.match(v.label, /No GPU/);
  });

  it("one GPU: utilization, memory and temperature", () => {
    assert.equal(statusText(snap([gpu()])), "GPU 87% · 61/80 GiB · 71°C");
    assert.equal(statusView(snap([gpu()])).level, "ok");
  });

  it("small memory keeps a decimal", () => {
    const g = gpu({ memoryUsed: 1.5 * GIB, memoryTotal: 8 * GIB, utilization: 3, temperature: 40.4 });
    assert.equal(statusText(snap([g])), "GPU 3% · 1.5/8 GiB · 40°C");
    assert.equal(gib(null), "—");
  });

  it("eight GPUs: mean utilization, the fullest memory and the hottest GPU", () => {
    const gpus = Array.from({ length: 8 }, (_, i) =>
      gpu({
        index: i,
        uuid: `GPU-${i}`,
        utilization: i * 10,
        memoryUsed: (10 + i) * GIB,
        memoryTotal: 80 * GIB,
        temperature: 50 + i,
      }),
    );
    gpus[2] = gpu({
      index: 2,
      uuid: "GPU-2",
      utilization: 20,
      memoryUsed: 75 * GIB,
      memoryTotal: 80 * GIB,
      temperature: 82,
    });
    // Mean of 0,10,20,…,70 = 35.
    assert.equal(statusText(snap(gpus)), "8 GPUs 35% · 75/80 GiB · 82°C");
  });

  it("values the driver does not report are left out, never shown as 0", () => {
    const g = gpu({ utilization: null, temperature: null });
    assert.equal(statusText(snap([g])), "GPU 61/80 GiB");
    const none = gpu({ utilization: null, temperature: null, memoryUsed: null, memoryTotal: null });
    assert.equal(statusText(snap([none])), "GPU —");
    const tip = statusTooltip(snap([g]));
    assert.match(tip, /\| 0 \| NVIDIA H100 80GB HBM3 \| — \| 61\/80 GiB \| — \| 350\/700 W \| OK \|/);
    const two = [gpu({ utilization: null }), gpu({ index: 1, uuid: "GPU-1", utilization: 50 })];
    assert.equal(statusText(snap(two)), "2 GPUs 50% · 61/80 GiB · 71°C");
  });

  it("lost GPUs: counted, left out of the numbers, and critical", () => {
    const lost = gpu({
      index: 1,
      uuid: "GPU-1",
      lost: true,
      utilization: null,
      memoryUsed: null,
      memoryTotal: null,
      temperature: null,
      verdict: "critical",
      reasons: [lostReason(1)],
    });
    const s = snap([gpu(), lost]);
    assert.equal(statusText(s), "2 GPUs 87% · 61/80 GiB · 71°C · 1 lost");
    assert.equal(statusView(s).level, "error");
    const only = snap([{ ...lost, index: 0, reasons: [lostReason(0)] }]);
    assert.equal(statusText(only), "$(error) GPU lost");
    assert.match(statusTooltip(s), /\| 1 \| NVIDIA H100 80GB HBM3 \| — \| — \| — \| — \| Lost \|/);
  });
});

describe("gpu: colours and tooltip", () => {
  it("warn and critical verdicts choose the warning and error levels", () => {
    const warn = gpu({
      verdict: "warn",
      throttle: ["HwSlowdown"],
      reasons: [{ gpu: 0, severity: "warn", code: "hwSlowdown", message: "is slowed down by hardware (HW slowdown)" }],
    });
    const s = snap([warn]);
    assert.equal(s.verdict, "warn");
    const v = statusView(s);
    assert.equal(v.level, "warn");
    assert.match(v.tooltip, /\$\(warning\) GPU 0: is slowed down by hardware \(HW slowdown\)/);
    const crit = snap([gpu()], {
      reasons: [{ gpu: null, severity: "critical", code: "gpuCount", message: "2 GPUs expected, 1 visible" }],
    });
    assert.equal(statusView(crit).level, "error");
    assert.match(statusView(crit).tooltip, /\$\(error\) Machine: 2 GPUs expected, 1 visible/);
  });

  it("the tooltip has a row per GPU, versions and escaped names", () => {
    const s = snap([gpu(), gpu({ index: 1, uuid: "GPU-1", name: "odd|name*", utilization: 5 })]);
    const tip = statusTooltip(s);
    assert.match(tip, /\*\*GPU health: OK\*\* on box · driver 550\.54\.15 · CUDA 12\.4/);
    assert.match(tip, /\| # \| Name \| Util \| Memory \| Temp \| Power \| Verdict \|/);
    assert.match(tip, /\| 0 \| NVIDIA H100 80GB HBM3 \| 87% \| 61\/80 GiB \| 71°C \| 350\/700 W \| OK \|/);
    assert.match(tip, /\| 1 \| odd\\\|name\\\* \| 5% \|/);
    assert.match(tip, /Updated every 2 s\. Click to open the GPU panel\./);
  });
});

describe("gpu: critical notifications", () => {
  it("once per transition into critical, per GPU and reason", () => {
    const active = new Set<string>();
    assert.deepEqual(newCriticals(active, snap([gpu()])), []);
    const lost = gpu({ lost: true, verdict: "critical", reasons: [lostReason(0)] });
    const first = newCriticals(active, snap([lost]));
    assert.equal(first.length, 1);
    assert.equal(first[0]?.key, "GPU-0000:lost");
    assert.match(criticalMessage(first), /GPU 0 \(NVIDIA H100 80GB HBM3\): has fallen off the bus/);
    assert.deepEqual(newCriticals(active, snap([lost])), [], "still critical: no second notification");
    // The backend's messages name their GPU: not named twice.
    const named = gpu({
      uuid: "GPU-9",
      verdict: "critical",
      reasons: [{ gpu: 0, severity: "critical", code: "xid79", message: "GPU 0 has fallen off the bus (XID 79)" }],
    });
    const ev = newCriticals(new Set(), snap([named]));
    assert.equal(criticalMessage(ev), "GPU health is critical. GPU 0 has fallen off the bus (XID 79)");
    assert.match(statusTooltip(snap([named])), /\$\(error\) GPU 0 has fallen off the bus/);
    assert.deepEqual(newCriticals(active, snap([gpu()])), []);
    assert.equal(newCriticals(active, snap([lost])).length, 1, "critical again after recovering");
  });

  it("a critical verdict without a critical reason still counts", () => {
    const active = new Set<string>();
    const g = gpu({ lost: true, verdict: "critical", reasons: [] });
    const ev = newCriticals(active, snap([g], { verdict: "critical" }));
    assert.equal(ev.length, 1);
    assert.match(ev[0]?.message ?? "", /fallen off the bus/);
    const two = criticalMessage([
      { key: "a", message: "GPU 0 (x): one." },
      { key: "b", message: "GPU 1 (y): two." },
    ]);
    assert.equal(two, "GPU health is critical: GPU 0 (x): one; GPU 1 (y): two.");
  });
});

describe("gpu: history", () => {
  it("keeps 15 minutes, oldest first, without repeated times", () => {
    const pts: GpuHistoryPoint[] = [];
    for (let t = 0; t <= 1000; t += 100) appendPoint(pts, { time: t, gpus: [] });
    assert.equal(pts[0]?.time, 100);
    assert.equal(pts[pts.length - 1]?.time, 1000);
    appendPoint(pts, { time: 1000, gpus: [] });
    assert.equal(pts.length, 10);
    const p = toHistoryPoint(snap([gpu(), gpu({ index: 1, lost: true })]));
    assert.equal(p.gpus[0]?.utilization, 87);
    assert.equal(p.gpus[1]?.utilization, null);
  });
});

describe("gpu: check report", () => {
  const report: GpuCheckReport = {
    machine: "box",
    time: 1_700_000_000,
    durationMs: 1234,
    verdict: "warn",
    rows: [
      {
        id: "driver",
        title: "Driver",
        status: "pass",
        detail: "550",
        gpu: null,
        measured: null,
        expected: null,
        unit: null,
      },
      { id: "bw", title: "H2D", status: "warn", detail: "slow", gpu: 0, measured: 12.345, expected: 25, unit: "GB/s" },
      {
        id: "mm",
        title: "Matmul",
        status: "skip",
        detail: "no torch",
        gpu: 0,
        measured: null,
        expected: null,
        unit: null,
      },
      { id: "n", title: "Count", status: "info", detail: "", gpu: null, measured: 1234567, expected: null, unit: null },
    ],
    markdown: "# GPU health\n",
  };

  it("numbers with units, counts per status, the export's note", () => {
    assert.equal(measuredText(report.rows[1] as GpuCheckReport["rows"][number]), "12.3 GB/s");
    assert.equal(expectedText(report.rows[1] as GpuCheckReport["rows"][number]), "25 GB/s");
    assert.equal(measuredText(report.rows[0] as GpuCheckReport["rows"][number]), "—");
    assert.equal(measuredText(report.rows[3] as GpuCheckReport["rows"][number]), "1,234,567");
    assert.deepEqual(statusCounts(report), { pass: 1, warn: 1, fail: 0, skip: 1, info: 1 });
    assert.equal(reportMarkdown(report, null), "# GPU health\n");
    assert.equal(reportMarkdown(report, "untrusted"), "> untrusted\n\n# GPU health\n");
  });
});

describe("gpu: machines", () => {
  const connected = (m: string) => m === "ssh/box";

  it("the focused machine is a remote target's machine only while it is connected", () => {
    assert.equal(focusedMachine("remote:ssh/box:/usr/bin/python3", connected), "ssh/box");
    assert.equal(focusedMachine("remote:ssh/box:", connected), "ssh/box");
    assert.equal(focusedMachine("remote:ssh/other:/usr/bin/python3", connected), "");
    assert.equal(focusedMachine("local", connected), "");
    assert.equal(focusedMachine(undefined, connected), "");
    assert.equal(focusedMachine("remote:nonsense", connected), "");
  });

  it("snapshots and watches are keyed by machine", () => {
    assert.equal(machineKeyOf({ machine: "gpu-host-1" }), "");
    assert.equal(machineKeyOf({ machine: "ssh/box" }), "ssh/box");
    assert.equal(watchKey("statusBar", ""), "statusBar");
    assert.equal(watchKey("panel", "lambda/i-123"), "panel@lambda/i-123");
  });

  it("a connected machine is named in the item, its tooltip and its label", () => {
    const v = statusView(snap([gpu({ utilization: 80 })], { machine: "ssh/box" }), "box");
    assert.equal(v.text, "box · GPU 80% · 61/80 GiB · 71°C");
    assert.match(v.tooltip, /^\*\*GPU health: OK\*\* on box \(ssh\/box\)/);
    assert.match(v.label, /box · GPU 80%/);
    const lost = snap([gpu({ lost: true, verdict: "critical", reasons: [lostReason(0)] })], { machine: "ssh/box" });
    assert.equal(statusView(lost, "box").text, "$(error) box · GPU lost");
    const none = statusView(snap([], { machine: "ssh/box", source: "none", message: "no driver" }), "box");
    assert.equal(none.text, "$(circuit-board) box · No GPU");
    assert.match(none.tooltip, /\*\*No GPU\*\* on box \(ssh\/box\)/);
    assert.match(none.label, /^No GPU on box: no driver/);
    // This machine: as before, no name in front.
    assert.equal(statusView(snap([gpu()])).text, "GPU 87% · 61/80 GiB · 71°C");
    assert.equal(withMachine("GPU 1%", undefined), "GPU 1%");
  });

  it("critical notifications name the machine", () => {
    const lost = gpu({ lost: true, verdict: "critical", reasons: [lostReason(0)] });
    const ev = newCriticals(new Set(), snap([lost], { machine: "ssh/box" }));
    assert.equal(
      criticalMessage(ev, "box"),
      "GPU health on box is critical. GPU 0 (NVIDIA H100 80GB HBM3): has fallen off the bus",
    );
    const two = newCriticals(
      new Set(),
      snap([lost, gpu({ index: 1, uuid: "GPU-1", lost: true, verdict: "critical", reasons: [lostReason(1)] })]),
    );
    assert.match(criticalMessage(two, "box"), /^GPU health on box is critical: GPU 0 .*; GPU 1 /);
  });
});
