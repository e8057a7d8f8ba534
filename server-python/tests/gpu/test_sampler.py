"""The sampler in process, with a scripted source: nothing polled without watchers, every
sample pushed while watched, history bounded, XIDs from the event thread, a driver that
goes away, and the calm no-GPU state."""

from __future__ import annotations

import threading
import time
from typing import Any, Dict, List, Optional, Tuple

import pytest
from shapes import assert_shape

from gpu_workbench import protocol
from gpu_workbench.gpu.sampler import HISTORY_SECONDS, GpuMonitor, parse_settings
from gpu_workbench.gpu.source import GpuUnavailable, Source, empty_gpu


class ScriptedSource(Source):
    name = "nvml"

    def __init__(self, gpus: int = 1) -> None:
        self.count = gpus
        self.reads = 0
        self.opened = True
        self.closed = 0
        self.util = 50
        self.fail: Optional[Exception] = None
        self.events: List[Tuple[int, int]] = []
        self.event_ready = threading.Event()
        self.events_supported = False

    def open(self) -> None:
        pass

    def machine(self) -> Dict[str, Optional[str]]:
        return {"driverVersion": "550.54.15", "cudaVersion": "12.4"}

    def read(self, processes: bool = True) -> List[Dict[str, Any]]:
        self.reads += 1
        if self.fail is not None:
            raise self.fail
        out = []
        for i in range(self.count):
            gpu = empty_gpu(i, "GPU-%d" % i, "NVIDIA H100 80GB HBM3")
            gpu.update(
                utilization=self.util,
                memoryUsed=10 << 30,
                memoryTotal=80 << 30,
                temperature=60,
                powerDraw=300.0,
                powerLimit=700.0,
            )
            if processes:
                gpu["processes"] = [{"pid": 100 + i, "name": "python", "usedMemory": 1 << 30}]
            out.append(gpu)
        return out

    def supports_events(self) -> bool:
        return self.events_supported

    def wait_events(self, timeout_ms: int) -> List[Tuple[int, int]]:
        if self.event_ready.wait(timeout_ms / 1000.0):
            self.event_ready.clear()
            events, self.events = self.events, []
            return events
        return []

    def close(self) -> None:
        self.closed += 1


class Recorder:
    def __init__(self) -> None:
        self.sent: List[Dict[str, Any]] = []
        self.cond = threading.Condition()

    def __call__(self, method: str, params: Any) -> None:
        assert method == "gpu/sample"
        with self.cond:
            self.sent.append(params.value)
            self.cond.notify_all()

    def wait(self, count: int, timeout: float = 10.0) -> List[Dict[str, Any]]:
        deadline = time.monotonic() + timeout
        with self.cond:
            while len(self.sent) < count:
                left = deadline - time.monotonic()
                assert left > 0, "only %d samples sent" % len(self.sent)
                self.cond.wait(left)
            return list(self.sent)


def monitor_with(source: Any, **settings: Any) -> Tuple[GpuMonitor, Recorder]:
    recorder = Recorder()
    settings.setdefault("intervalSeconds", 0.5)

    def factory() -> Source:
        if isinstance(source, Exception):
            raise source
        return source

    return GpuMonitor(recorder, settings=settings, source_factory=factory), recorder


def test_nothing_is_read_until_someone_asks() -> None:
    source = ScriptedSource()
    monitor, recorder = monitor_with(source)
    time.sleep(0.8)
    assert source.reads == 0 and recorder.sent == []
    snapshot = monitor.status()
    assert source.reads == 1
    assert snapshot["sampling"] is False
    time.sleep(0.8)
    assert source.reads == 1, "status alone must not start polling"
    monitor.close()


def test_watching_pushes_every_sample_and_stops_when_unwatched() -> None:
    source = ScriptedSource(gpus=2)
    monitor, recorder = monitor_with(source)
    first = monitor.watch("statusBar", True)
    assert_shape(protocol.GpuSnapshot, first)
    assert first["source"] == "nvml" and first["driverVersion"] == "550.54.15"
    sent = recorder.wait(3)
    assert all(s["sampling"] for s in sent)
    assert [g["index"] for g in sent[-1]["gpus"]] == [0, 1]
    monitor.watch("panel", True)
    monitor.watch("statusBar", False)
    count = len(recorder.wait(len(recorder.sent) + 1))  # the panel still watches
    monitor.watch("panel", False)
    assert monitor.watchers() == []
    reads = source.reads
    time.sleep(1.2)
    assert source.reads == reads, "polling went on with no watcher"
    assert len(recorder.sent) <= count + 1
    monitor.close()
    assert source.closed == 1


def test_history_keeps_chart_points_for_fifteen_minutes() -> None:
    source = ScriptedSource()
    now = [1000.0]
    monitor = GpuMonitor(
        lambda m, p: None,
        settings={"intervalSeconds": 2},
        source_factory=lambda: source,
        clock=lambda: now[0],
    )
    for _ in range(600):  # 20 minutes of 2 s samples
        monitor.status(fresh=True)
        now[0] += 2.0
    history = monitor.history(None)
    assert_shape(protocol.GpuHistoryResult, history)
    times = [p["time"] for p in history["points"]]
    assert times == sorted(times)
    assert times[-1] - times[0] <= HISTORY_SECONDS
    assert len(times) >= HISTORY_SECONDS / 2 - 1
    assert len(monitor.history(60)["points"]) in (30, 31)
    monitor.close()


def test_no_gpu_is_calm_and_not_polled() -> None:
    monitor, recorder = monitor_with(GpuUnavailable("No NVIDIA driver found"))
    snapshot = monitor.watch("statusBar", True)
    assert_shape(protocol.GpuSnapshot, snapshot)
    assert snapshot["source"] == "none"
    assert snapshot["message"] == "No NVIDIA driver found"
    assert snapshot["verdict"] == "ok" and snapshot["gpus"] == [] and not snapshot["sampling"]
    time.sleep(0.8)
    assert recorder.sent == [], "no GPU must mean no samples"
    assert monitor.status()["source"] == "none"
    monitor.close()


def test_driver_lost_mid_run_turns_calm_and_stops() -> None:
    source = ScriptedSource()
    monitor, recorder = monitor_with(source)
    monitor.watch("statusBar", True)
    recorder.wait(2)
    source.fail = GpuUnavailable("The NVIDIA driver is not loaded")
    sent = recorder.wait(len(recorder.sent) + 1)
    deadline = time.monotonic() + 5
    while sent[-1]["source"] != "none" and time.monotonic() < deadline:
        sent = recorder.wait(len(recorder.sent) + 1)
    assert sent[-1]["source"] == "none"
    assert "not loaded" in sent[-1]["message"]
    reads = source.reads
    time.sleep(1.2)
    assert source.reads == reads
    assert source.closed == 1
    monitor.close()


def test_xid_events_reach_the_snapshot_at_once() -> None:
    source = ScriptedSource(gpus=2)
    source.events_supported = True
    monitor, recorder = monitor_with(source, intervalSeconds=30)
    monitor.watch("statusBar", True)
    recorder.wait(1)
    source.events = [(1, 79)]
    source.event_ready.set()
    sent = recorder.wait(2, timeout=5)  # long before the 30 s interval
    gpu = sent[-1]["gpus"][1]
    assert [x["xid"] for x in gpu["xids"]] == [79]
    assert gpu["xids"][0]["severity"] == "critical"
    assert sent[-1]["verdict"] == "critical"
    assert any(r["code"] == "xid79" and r["gpu"] == 1 for r in sent[-1]["reasons"])
    monitor.close()


def test_a_failing_sample_is_logged_and_sampling_goes_on() -> None:
    source = ScriptedSource()
    monitor, recorder = monitor_with(source)
    monitor.watch("w", True)
    source.fail = RuntimeError("boom")
    time.sleep(1.2)
    source.fail = None
    before = len(recorder.sent)
    recorder.wait(before + 2)
    monitor.close()


def test_settings_are_validated() -> None:
    assert parse_settings(None)["intervalSeconds"] == 2.0
    assert parse_settings({"intervalSeconds": 0.1})["intervalSeconds"] == 2.0
    assert parse_settings({"intervalSeconds": 0.5})["intervalSeconds"] == 0.5
    assert parse_settings({"intervalSeconds": True})["intervalSeconds"] == 2.0
    assert parse_settings({"expectedCount": 8})["expectedCount"] == 8
    assert parse_settings({"expectedCount": "8"})["expectedCount"] is None
    assert parse_settings({"temperatureWarning": 70})["temperatureWarning"] == 70.0


def test_expected_count_mismatch_is_critical() -> None:
    source = ScriptedSource(gpus=7)
    monitor, _ = monitor_with(source, expectedCount=8)
    snapshot = monitor.status()
    assert snapshot["verdict"] == "critical"
    assert any(r["code"] == "gpuCount" and r["gpu"] is None for r in snapshot["reasons"])
    monitor.update_settings({"expectedCount": 7})
    assert monitor.status(fresh=True)["verdict"] == "ok"
    monitor.close()


@pytest.mark.parametrize("watchers", [1, 3])
def test_close_stops_threads(watchers: int) -> None:
    source = ScriptedSource()
    source.events_supported = True
    monitor, _ = monitor_with(source)
    for i in range(watchers):
        monitor.watch("w%d" % i, True)
    started = time.monotonic()
    monitor.close()
    assert time.monotonic() - started < 4
    assert not any(t.name.startswith("gpuwb-gpu") for t in threading.enumerate())
