"""Health verdicts: turn a reading into "ok" / "warn" / "critical" with reasons that say
what to do.

`HealthTracker.evaluate` sets `verdict` and `reasons` on every GPU of a reading (the
readings carry an added `xids` list of GpuXid dicts) and returns the machine's verdict with
all reasons: machine-level ones first, then each GPU's in index order. It keeps one piece
of state across calls: when each GPU started holding memory at 0% utilization.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Dict, List, Optional, Tuple, Union

from .xid import describe

SEVERITY_RANK = {"ok": 0, "warn": 1, "critical": 2}

# Throttle (clock-event) reasons that mean trouble; SwPowerCap, GpuIdle and the
# application/sync/display clock settings are normal and give no reason.
_THROTTLE_RULES = (
    (
        "HwSlowdown",
        "hwSlowdown",
        "GPU {gpu} is slowed down by hardware (HW slowdown): check its cooling and power "
        "supply, and ask the provider if it persists",
    ),
    (
        "HwThermalSlowdown",
        "hwThermal",
        "GPU {gpu} is slowed down because it is too hot (HW thermal slowdown): check its "
        "cooling and airflow",
    ),
    (
        "HwPowerBrakeSlowdown",
        "powerBrake",
        "GPU {gpu} is slowed down by the power brake (external power supply signal): ask the "
        "provider to check the machine's power",
    ),
    (
        "SwThermalSlowdown",
        "swThermal",
        "GPU {gpu} lowered its clocks to stay under its temperature limit: check its cooling "
        "if it persists",
    ),
)


@dataclass
class HealthSettings:
    temperatureWarn: float = (
        85.0  # °C at/over which a GPU warns (gpuWorkbench.gpu.temperatureWarning)
    )
    idleMemoryMinutes: float = 10.0  # memory held at 0% utilization this long warns (0 = off)
    idleMemoryBytes: int = 1 << 30  # "held" means more than this used
    expectedCount: Optional[int] = None  # GPUs the machine should have (instance type / setting)


def worst(severities: List[str]) -> str:
    """The worst of some severities ("ok" for none)."""
    best = "ok"
    for severity in severities:
        if SEVERITY_RANK.get(severity, 0) > SEVERITY_RANK[best]:
            best = severity
    return best


def _reason(gpu: Optional[int], severity: str, code: str, message: str) -> Dict[str, Any]:
    return {"gpu": gpu, "severity": severity, "code": code, "message": message}


def _gib(value: float) -> str:
    return "%.1f GiB" % (value / float(1 << 30))


def _minutes(value: float) -> str:
    text = ("%.1f" % value).rstrip("0").rstrip(".")
    return "%s minute%s" % (text, "" if text == "1" else "s")


class HealthTracker:
    def __init__(self, settings: HealthSettings) -> None:
        self._settings = replace(settings)
        # GPU key (uuid, else index) -> the time it started holding memory at 0% utilization.
        self._idle_since: Dict[Union[str, int], float] = {}

    def update_settings(self, settings: HealthSettings) -> None:
        self._settings = replace(settings)
        if self._settings.idleMemoryMinutes <= 0:
            self._idle_since.clear()

    def evaluate(self, gpus: List[dict], now: float) -> Tuple[str, List[dict]]:
        """gpus: readings with an added "xids" list of GpuXid dicts. Sets gpu["verdict"] and
        gpu["reasons"] (GpuReason dicts: gpu, severity, code, message) in place; returns
        (machine verdict, all reasons: machine-level first, then per GPU in index order).
        Stateful across calls (idle-memory timers keyed by uuid or index)."""
        settings = self._settings
        machine: List[Dict[str, Any]] = []
        expected = settings.expectedCount
        if expected is not None and len(gpus) != expected:
            machine.append(
                _reason(
                    None,
                    "critical",
                    "gpuCount",
                    "This machine shows %d GPU%s but should have %d: a GPU is missing or "
                    "unseen by the driver; reboot it or ask the provider for another machine"
                    % (len(gpus), "" if len(gpus) == 1 else "s", expected),
                )
            )
        seen_keys = set()
        per_gpu: List[Tuple[int, List[Dict[str, Any]]]] = []
        for position, gpu in enumerate(gpus):
            key = self._key(gpu, position)
            seen_keys.add(key)
            reasons = self._gpu_reasons(gpu, key, now)
            gpu["reasons"] = reasons
            gpu["verdict"] = worst([r["severity"] for r in reasons])
            index = gpu.get("index")
            per_gpu.append((index if isinstance(index, int) else position, reasons))
        for key in list(self._idle_since):
            if key not in seen_keys:
                del self._idle_since[key]
        all_reasons = list(machine)
        for _, reasons in sorted(per_gpu, key=lambda item: item[0]):
            all_reasons.extend(reasons)
        return worst([r["severity"] for r in all_reasons]), all_reasons

    @staticmethod
    def _key(gpu: Dict[str, Any], position: int) -> Union[str, int]:
        uuid = gpu.get("uuid")
        if uuid:
            return str(uuid)
        index = gpu.get("index")
        return index if isinstance(index, int) else position

    def _gpu_reasons(
        self, gpu: Dict[str, Any], key: Union[str, int], now: float
    ) -> List[Dict[str, Any]]:
        settings = self._settings
        index = gpu.get("index")
        label = index if index is not None else "?"
        reasons: List[Dict[str, Any]] = []

        def add(severity: str, code: str, message: str) -> None:
            reasons.append(_reason(index, severity, code, message))

        lost = bool(gpu.get("lost"))
        if lost:
            add(
                "critical",
                "gpuLost",
                "GPU %s has fallen off the bus (XID 79): stop using this machine; a reboot or "
                "a replacement is needed" % label,
            )

        throttle = gpu.get("throttle") or []
        for name, code, message in _THROTTLE_RULES:
            if name in throttle:
                add("warn", code, message.format(gpu=label))

        ecc = gpu.get("ecc") or {}
        uncorrected_volatile = ecc.get("uncorrectedVolatile")
        uncorrected_aggregate = ecc.get("uncorrectedAggregate")
        if uncorrected_volatile is not None and uncorrected_volatile > 0:
            add(
                "critical",
                "eccUncorrected",
                "GPU %s had %d uncorrectable memory (ECC) error%s since the driver loaded: "
                "restart the jobs on it and reset the GPU or reboot"
                % (label, uncorrected_volatile, "" if uncorrected_volatile == 1 else "s"),
            )
        elif uncorrected_aggregate is not None and uncorrected_aggregate > 0:
            add(
                "warn",
                "eccUncorrectedHistory",
                "GPU %s has had %d uncorrectable memory (ECC) error%s in its lifetime, none "
                "since the driver loaded: watch for new ones"
                % (label, uncorrected_aggregate, "" if uncorrected_aggregate == 1 else "s"),
            )

        remapped = gpu.get("remappedRows") or {}
        if remapped.get("failure"):
            add(
                "critical",
                "remapFailure",
                "GPU %s failed to remap a faulty memory row: stop using it and ask the provider "
                "for a replacement (RMA)" % label,
            )
        if remapped.get("pending"):
            add(
                "warn",
                "remapPending",
                "GPU %s has a memory row remap waiting: reset the GPU or reboot the machine to "
                "apply it" % label,
            )

        seen_xids: List[int] = []
        for event in gpu.get("xids") or []:
            try:
                number = int(event.get("xid"))
            except (TypeError, ValueError):
                continue
            if number in seen_xids or (lost and number == 79):
                continue
            seen_xids.append(number)
            meaning, severity, action = describe(number)
            add(
                severity,
                "xid%d" % number,
                "GPU %s reported XID %d (%s): %s" % (label, number, meaning, action),
            )

        temperature = gpu.get("temperature")
        slowdown = gpu.get("temperatureSlowdown")
        if temperature is not None:
            if slowdown is not None and temperature >= slowdown:
                add(
                    "critical",
                    "temperature",
                    "GPU %s is at %s °C, at or over its slowdown threshold of %s °C: reduce the "
                    "load and check its cooling now" % (label, temperature, slowdown),
                )
            elif temperature >= settings.temperatureWarn:
                add(
                    "warn",
                    "temperature",
                    "GPU %s is at %s °C (warning at %s °C): check its cooling and airflow"
                    % (label, temperature, _number(settings.temperatureWarn)),
                )

        idle_message = self._idle_memory(gpu, key, now, label)
        if idle_message is not None:
            add("warn", "idleMemory", idle_message)
        return reasons

    def _idle_memory(
        self, gpu: Dict[str, Any], key: Union[str, int], now: float, label: object
    ) -> Optional[str]:
        """The idle-memory message when the GPU has held memory at 0% long enough."""
        settings = self._settings
        if settings.idleMemoryMinutes <= 0:
            self._idle_since.pop(key, None)
            return None
        used = gpu.get("memoryUsed")
        utilization = gpu.get("utilization")
        if (
            gpu.get("lost")
            or used is None
            or used <= settings.idleMemoryBytes
            or utilization is None
            or utilization != 0
        ):
            self._idle_since.pop(key, None)
            return None
        since = self._idle_since.setdefault(key, now)
        if now - since < settings.idleMemoryMinutes * 60.0:
            return None
        return (
            "GPU %s has held %s at 0%% utilization for %s: a job may be stuck or idle; "
            "stop it to free the GPU" % (label, _gib(used), _minutes((now - since) / 60.0))
        )


def _number(value: float) -> str:
    return ("%.1f" % value).rstrip("0").rstrip(".")
