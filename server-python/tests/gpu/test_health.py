"""Health verdict rules."""

from __future__ import annotations

from typing import Any, Dict, List, Optional

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from shapes import assert_shape

from gpu_workbench import protocol
from gpu_workbench.gpu.health import HealthSettings, HealthTracker, worst
from gpu_workbench.gpu.source import empty_gpu, throttle_names

GIB = 1 << 30
RANK = {"ok": 0, "warn": 1, "critical": 2}


def gpu(index: int = 0, **values: Any) -> Dict[str, Any]:
    """A healthy, busy GPU reading with `values` applied (ecc/remap/pcie dicts merged)."""
    reading = empty_gpu(index, uuid="GPU-%04d" % index, name="NVIDIA H100 80GB HBM3")
    reading.update(
        utilization=90,
        memoryUtilization=40,
        memoryUsed=60 * GIB,
        memoryTotal=80 * GIB,
        temperature=60,
        powerDraw=500.0,
        powerLimit=700.0,
        clocksEventReasons=0,
        ecc={
            "correctedVolatile": 0,
            "uncorrectedVolatile": 0,
            "correctedAggregate": 0,
            "uncorrectedAggregate": 0,
        },
        persistenceMode=True,
    )
    for key, value in values.items():
        if isinstance(value, dict) and isinstance(reading.get(key), dict):
            reading[key] = dict(reading[key], **value)
        else:
            reading[key] = value
    reading["xids"] = values.get("xids", [])
    return reading


def xid_event(number: int, time: float = 1.0) -> Dict[str, Any]:
    return {"xid": number, "time": time, "meaning": "", "severity": "warn"}


def evaluate(gpus: List[Dict[str, Any]], now: float = 0.0, **settings: Any):
    return HealthTracker(HealthSettings(**settings)).evaluate(gpus, now)


def codes(reasons: List[Dict[str, Any]]) -> List[str]:
    return [r["code"] for r in reasons]


def only(reading: Dict[str, Any], **settings: Any) -> Optional[Dict[str, Any]]:
    _, reasons = evaluate([reading], **settings)
    assert len(reasons) <= 1, reasons
    return reasons[0] if reasons else None


def test_healthy_gpu_is_ok():
    reading = gpu()
    verdict, reasons = evaluate([reading])
    assert verdict == "ok" and reasons == []
    assert reading["verdict"] == "ok" and reading["reasons"] == []
    assert_shape(protocol.GpuInfo, reading, "gpu")


def test_no_gpus_is_ok():
    assert evaluate([]) == ("ok", [])


def test_lost_gpu():
    reason = only(dict(empty_gpu(3, uuid="GPU-x", lost=True), xids=[]))
    assert reason == {
        "gpu": 3,
        "severity": "critical",
        "code": "gpuLost",
        "message": "GPU 3 has fallen off the bus (XID 79): stop using this machine; a reboot "
        "or a replacement is needed",
    }


def test_lost_gpu_does_not_repeat_xid_79():
    reading = empty_gpu(3, lost=True)
    reading["xids"] = [xid_event(79), xid_event(48)]
    _, reasons = evaluate([reading])
    assert codes(reasons) == ["gpuLost", "xid48"]


@pytest.mark.parametrize(
    ("name", "code"),
    [
        ("HwSlowdown", "hwSlowdown"),
        ("HwThermalSlowdown", "hwThermal"),
        ("HwPowerBrakeSlowdown", "powerBrake"),
        ("SwThermalSlowdown", "swThermal"),
    ],
)
def test_throttle_reasons_warn(name, code):
    reason = only(gpu(throttle=[name]))
    assert reason is not None
    assert (reason["code"], reason["severity"], reason["gpu"]) == (code, "warn", 0)
    assert reason["message"].startswith("GPU 0 ")


@pytest.mark.parametrize(
    "name",
    ["GpuIdle", "SwPowerCap", "ApplicationsClocksSetting", "SyncBoost", "DisplayClockSetting"],
)
def test_normal_throttle_reasons_are_ok(name):
    assert only(gpu(throttle=[name])) is None


def test_ecc_uncorrected_volatile_is_critical():
    reason = only(gpu(ecc={"uncorrectedVolatile": 1, "uncorrectedAggregate": 4}))
    assert reason is not None
    assert (reason["code"], reason["severity"]) == ("eccUncorrected", "critical")


def test_ecc_uncorrected_history_warns():
    reason = only(gpu(ecc={"uncorrectedVolatile": 0, "uncorrectedAggregate": 2}))
    assert reason is not None
    assert (reason["code"], reason["severity"]) == ("eccUncorrectedHistory", "warn")
    reason = only(gpu(ecc={"uncorrectedVolatile": None, "uncorrectedAggregate": 2}))
    assert reason is not None and reason["code"] == "eccUncorrectedHistory"


def test_ecc_corrected_and_unknown_are_ok():
    assert only(gpu(ecc={"correctedVolatile": 500, "correctedAggregate": 9000})) is None
    assert (
        only(
            gpu(
                ecc={
                    "correctedVolatile": None,
                    "uncorrectedVolatile": None,
                    "correctedAggregate": None,
                    "uncorrectedAggregate": None,
                }
            )
        )
        is None
    )


def test_remap_pending_and_failure():
    remap = {"correctable": 0, "uncorrectable": 1, "pending": True, "failure": False}
    reason = only(gpu(remappedRows=remap))
    assert reason is not None
    assert (reason["code"], reason["severity"]) == ("remapPending", "warn")
    assert "reboot" in reason["message"]
    remap = {"correctable": 0, "uncorrectable": 1, "pending": False, "failure": True}
    reason = only(gpu(remappedRows=remap))
    assert reason is not None
    assert (reason["code"], reason["severity"]) == ("remapFailure", "critical")
    assert (
        only(
            gpu(
                remappedRows={
                    "correctable": 3,
                    "uncorrectable": 0,
                    "pending": False,
                    "failure": False,
                }
            )
        )
        is None
    )
    assert (
        only(
            gpu(
                remappedRows={
                    "correctable": None,
                    "uncorrectable": None,
                    "pending": None,
                    "failure": None,
                }
            )
        )
        is None
    )


def test_xids_each_distinct_once_with_catalog_severity():
    reading = gpu(2, xids=[xid_event(13), xid_event(79), xid_event(13, 5.0), xid_event(99999)])
    verdict, reasons = evaluate([reading])
    assert codes(reasons) == ["xid13", "xid79", "xid99999"]
    assert [r["severity"] for r in reasons] == ["warn", "critical", "warn"]
    assert verdict == "critical"
    assert reasons[1]["message"].startswith("GPU 2 reported XID 79 (GPU has fallen off the bus)")
    assert all(r["gpu"] == 2 for r in reasons)


def severity(reading: Dict[str, Any], **settings: Any) -> Optional[str]:
    reason = only(reading, **settings)
    return None if reason is None else reason["severity"]


def test_temperature_edges():
    assert only(gpu(temperature=84)) is None
    reason = only(gpu(temperature=85))
    assert reason is not None and (reason["code"], reason["severity"]) == ("temperature", "warn")
    assert severity(gpu(temperature=80), temperatureWarn=80.0) == "warn"
    assert only(gpu(temperature=79), temperatureWarn=80.0) is None
    assert only(gpu(temperature=None)) is None


def test_temperature_at_slowdown_is_critical():
    reason = only(gpu(temperature=90, temperatureSlowdown=90))
    assert reason is not None and (reason["code"], reason["severity"]) == (
        "temperature",
        "critical",
    )
    assert severity(gpu(temperature=89, temperatureSlowdown=90)) == "warn"
    # The slowdown threshold counts even below the warning setting.
    assert severity(gpu(temperature=70, temperatureSlowdown=70)) == "critical"


def idle(
    index: int = 0, used: Optional[int] = 2 * GIB, utilization: Optional[int] = 0
) -> Dict[str, Any]:
    return gpu(index, memoryUsed=used, utilization=utilization)


def test_idle_memory_timer():
    tracker = HealthTracker(HealthSettings(idleMemoryMinutes=10.0))
    assert tracker.evaluate([idle()], 1000.0) == ("ok", [])
    assert tracker.evaluate([idle()], 1000.0 + 599.0) == ("ok", [])
    verdict, reasons = tracker.evaluate([idle()], 1000.0 + 600.0)
    assert verdict == "warn"
    assert codes(reasons) == ["idleMemory"]
    assert reasons[0]["message"] == (
        "GPU 0 has held 2.0 GiB at 0% utilization for 10 minutes: a job may be stuck or "
        "idle; stop it to free the GPU"
    )
    # Busy again: the timer resets.
    assert tracker.evaluate([idle(utilization=5)], 1700.0) == ("ok", [])
    assert tracker.evaluate([idle()], 1701.0) == ("ok", [])
    assert tracker.evaluate([idle()], 2300.0) == ("ok", [])
    assert tracker.evaluate([idle()], 2301.0)[0] == "warn"
    # Memory freed: resets too.
    assert tracker.evaluate([idle(used=GIB)], 2400.0) == ("ok", [])
    assert tracker.evaluate([idle()], 2401.0) == ("ok", [])
    assert tracker.evaluate([idle()], 2401.0 + 600.0)[0] == "warn"


def test_idle_memory_threshold_is_strictly_more_than():
    tracker = HealthTracker(HealthSettings(idleMemoryMinutes=1.0, idleMemoryBytes=GIB))
    tracker.evaluate([idle(used=GIB)], 0.0)
    assert tracker.evaluate([idle(used=GIB)], 1000.0) == ("ok", [])
    tracker.evaluate([idle(used=GIB + 1)], 1000.0)
    assert tracker.evaluate([idle(used=GIB + 1)], 1060.0)[0] == "warn"


def test_idle_memory_unknown_utilization_does_not_count():
    tracker = HealthTracker(HealthSettings(idleMemoryMinutes=1.0))
    tracker.evaluate([idle(utilization=None)], 0.0)
    assert tracker.evaluate([idle(utilization=None)], 1000.0) == ("ok", [])
    # An unknown sample also breaks a running timer.
    tracker.evaluate([idle()], 1000.0)
    tracker.evaluate([idle(utilization=None)], 1030.0)
    assert tracker.evaluate([idle()], 1061.0) == ("ok", [])
    assert tracker.evaluate([idle(used=None)], 2000.0) == ("ok", [])


def test_idle_memory_off_and_settings_update():
    tracker = HealthTracker(HealthSettings(idleMemoryMinutes=0.0))
    tracker.evaluate([idle()], 0.0)
    assert tracker.evaluate([idle()], 10_000.0) == ("ok", [])
    tracker.update_settings(HealthSettings(idleMemoryMinutes=2.0))
    tracker.evaluate([idle()], 10_000.0)
    assert tracker.evaluate([idle()], 10_119.0) == ("ok", [])
    assert tracker.evaluate([idle()], 10_120.0)[0] == "warn"
    tracker.update_settings(HealthSettings(idleMemoryMinutes=2.0, temperatureWarn=50.0))
    assert codes(tracker.evaluate([idle()], 10_121.0)[1]) == ["temperature", "idleMemory"]


def test_idle_timers_are_per_gpu_by_uuid():
    tracker = HealthTracker(HealthSettings(idleMemoryMinutes=1.0))
    tracker.evaluate([idle(0), idle(1, utilization=50)], 0.0)
    tracker.evaluate([idle(0), idle(1)], 30.0)
    _, reasons = tracker.evaluate([idle(0), idle(1)], 60.0)
    assert [(r["gpu"], r["code"]) for r in reasons] == [(0, "idleMemory")]
    _, reasons = tracker.evaluate([idle(0), idle(1)], 90.0)
    assert [(r["gpu"], r["code"]) for r in reasons] == [(0, "idleMemory"), (1, "idleMemory")]
    # Keyed by index when there is no uuid.
    bare = idle(4)
    bare["uuid"] = ""
    tracker.evaluate([bare], 100.0)
    assert codes(tracker.evaluate([bare], 160.0)[1]) == ["idleMemory"]


def test_gpu_count():
    verdict, reasons = evaluate([gpu(0), gpu(1)], expectedCount=8)
    assert verdict == "critical"
    assert reasons[0]["gpu"] is None and reasons[0]["code"] == "gpuCount"
    assert "2 GPUs" in reasons[0]["message"] and "8" in reasons[0]["message"]
    assert evaluate([gpu(0), gpu(1)], expectedCount=2) == ("ok", [])
    assert evaluate([gpu(0)], expectedCount=None) == ("ok", [])
    assert evaluate([], expectedCount=1)[0] == "critical"


def test_multiple_reasons_order_and_machine_verdict():
    a = gpu(1, throttle=["HwSlowdown"], temperature=86)
    b = gpu(0, ecc={"uncorrectedVolatile": 2}, xids=[xid_event(94)])
    c = gpu(2)
    verdict, reasons = evaluate([a, b, c], expectedCount=4)
    assert verdict == "critical"
    assert [(r["gpu"], r["code"]) for r in reasons] == [
        (None, "gpuCount"),
        (0, "eccUncorrected"),
        (0, "xid94"),
        (1, "hwSlowdown"),
        (1, "temperature"),
    ]
    assert (a["verdict"], b["verdict"], c["verdict"]) == ("warn", "critical", "ok")
    assert codes(a["reasons"]) == ["hwSlowdown", "temperature"]
    assert c["reasons"] == []
    for reading in (a, b, c):
        assert_shape(protocol.GpuInfo, reading, "gpu")
        for reason in reading["reasons"]:
            assert_shape(protocol.GpuReason, reason, "reason")


def test_warn_only_machine():
    verdict, _ = evaluate([gpu(0, throttle=["SwThermalSlowdown"]), gpu(1)])
    assert verdict == "warn"


def test_worst():
    assert worst([]) == "ok"
    assert worst(["warn", "ok"]) == "warn"
    assert worst(["warn", "critical", "warn"]) == "critical"


# --------------------------------------------------------------------------- property

MASKS = st.integers(min_value=0, max_value=0x1FF)
OPT_INT = st.one_of(st.none(), st.integers(min_value=0, max_value=3))


@st.composite
def readings(draw):
    count = draw(st.integers(min_value=0, max_value=4))
    out = []
    for index in range(count):
        if draw(st.booleans()) and draw(st.booleans()):
            reading = empty_gpu(index, uuid="GPU-%d" % index, lost=True)
            reading["xids"] = []
            out.append(reading)
            continue
        mask = draw(MASKS)
        remap = draw(
            st.one_of(
                st.none(),
                st.fixed_dictionaries(
                    {
                        "correctable": OPT_INT,
                        "uncorrectable": OPT_INT,
                        "pending": st.one_of(st.none(), st.booleans()),
                        "failure": st.one_of(st.none(), st.booleans()),
                    }
                ),
            )
        )
        out.append(
            gpu(
                index,
                utilization=draw(st.one_of(st.none(), st.integers(0, 100))),
                memoryUsed=draw(st.one_of(st.none(), st.integers(0, 80 * GIB))),
                temperature=draw(st.one_of(st.none(), st.integers(20, 100))),
                temperatureSlowdown=draw(st.one_of(st.none(), st.integers(80, 95))),
                clocksEventReasons=mask,
                throttle=throttle_names(mask),
                ecc={
                    "uncorrectedVolatile": draw(OPT_INT),
                    "uncorrectedAggregate": draw(OPT_INT),
                },
                remappedRows=remap,
                xids=[
                    xid_event(n)
                    for n in draw(
                        st.lists(st.sampled_from([13, 48, 63, 79, 94, 95, 500]), max_size=3)
                    )
                ],
            )
        )
    return out


@settings(max_examples=200, deadline=None)
@given(
    readings(),
    st.one_of(st.none(), st.integers(0, 4)),
    st.lists(st.floats(0, 2000), min_size=1, max_size=3),
)
def test_verdict_is_the_worst_reason(gpus, expected, times):
    tracker = HealthTracker(HealthSettings(idleMemoryMinutes=5.0, expectedCount=expected))
    for now in sorted(times):
        verdict, reasons = tracker.evaluate(gpus, now)
        assert verdict == max((r["severity"] for r in reasons), key=RANK.__getitem__, default="ok")
        assert (verdict == "ok") == (reasons == [])
        for reading in gpus:
            mine = [r for r in reasons if r["gpu"] == reading["index"]]
            assert reading["reasons"] == mine
            assert reading["verdict"] == worst([r["severity"] for r in mine])
        indices = [r["gpu"] for r in reasons if r["gpu"] is not None]
        assert indices == sorted(indices)
        assert all(r["gpu"] is None for r in reasons[: len(reasons) - len(indices)])
        for reason in reasons:
            assert reason["severity"] in ("warn", "critical")
            assert reason["message"]
            assert_shape(protocol.GpuReason, reason, "reason")
