"""The one interface every telemetry source implements, and the raw reading it returns.

A source reads the GPUs of this machine: `NvmlSource` (nvml.py, ctypes on
libnvidia-ml) first, `SmiSource` (smi.py, `nvidia-smi --query-gpu`) when NVML cannot be
loaded. `open_source()` picks one or raises `GpuUnavailable` with a sentence that says why
(shown as the calm "No GPU" state, never as an error).

A reading is a list of plain dicts, one per GPU, with exactly the keys of
protocol.GpuInfo except `xids`, `verdict` and `reasons` (the sampler and health.py add
those). Values the driver does not report are None, never 0. A GPU that has fallen off the
bus is still listed, with `lost: True` and None elsewhere.
"""

from __future__ import annotations

import logging
from typing import Any, Dict, List, Mapping, Optional, Tuple

log = logging.getLogger(__name__)

# Keys of one GPU in a reading (protocol.GpuInfo minus xids/verdict/reasons).
READING_KEYS = (
    "index",
    "uuid",
    "name",
    "lost",
    "utilization",
    "memoryUtilization",
    "memoryUsed",
    "memoryTotal",
    "temperature",
    "temperatureSlowdown",
    "powerDraw",
    "powerLimit",
    "clocksEventReasons",
    "throttle",
    "ecc",
    "remappedRows",
    "pcie",
    "persistenceMode",
    "processes",
)

# NVML clock-event (throttle) reason bits and their names (nvmlClocksEventReason*).
THROTTLE_BITS: Tuple[Tuple[int, str], ...] = (
    (0x1, "GpuIdle"),
    (0x2, "ApplicationsClocksSetting"),
    (0x4, "SwPowerCap"),
    (0x8, "HwSlowdown"),
    (0x10, "SyncBoost"),
    (0x20, "SwThermalSlowdown"),
    (0x40, "HwThermalSlowdown"),
    (0x80, "HwPowerBrakeSlowdown"),
    (0x100, "DisplayClockSetting"),
)


class GpuUnavailable(Exception):
    """No telemetry on this machine; str(exc) says why in one sentence."""


def throttle_names(mask: Optional[int]) -> List[str]:
    """Names of the bits set in a clock-event reason mask, in bit order."""
    if not mask:
        return []
    return [name for bit, name in THROTTLE_BITS if mask & bit]


def empty_gpu(index: int, uuid: str = "", name: str = "", lost: bool = False) -> Dict[str, Any]:
    """A reading for one GPU with every value unknown."""
    return {
        "index": index,
        "uuid": uuid,
        "name": name,
        "lost": lost,
        "utilization": None,
        "memoryUtilization": None,
        "memoryUsed": None,
        "memoryTotal": None,
        "temperature": None,
        "temperatureSlowdown": None,
        "powerDraw": None,
        "powerLimit": None,
        "clocksEventReasons": None,
        "throttle": [],
        "ecc": {
            "correctedVolatile": None,
            "uncorrectedVolatile": None,
            "correctedAggregate": None,
            "uncorrectedAggregate": None,
        },
        "remappedRows": None,
        "pcie": {"gen": None, "maxGen": None, "width": None, "maxWidth": None},
        "persistenceMode": None,
        "processes": [],
    }


class Source:
    """A telemetry source. Not thread-safe: the sampler calls it from one thread, except
    `wait_events`, which a second thread may call while `read` runs (NVML allows it)."""

    name = "none"  # "nvml" | "nvidia-smi"

    def open(self) -> None:
        """Load and initialize; raise GpuUnavailable when this source cannot work here."""
        raise NotImplementedError

    def machine(self) -> Dict[str, Optional[str]]:
        """{"driverVersion": str|None, "cudaVersion": "12.4"|None}."""
        raise NotImplementedError

    def read(self, processes: bool = True) -> List[Dict[str, Any]]:
        """One reading of every GPU (see the module docstring). `processes=False` skips the
        process lists (they are the most expensive part)."""
        raise NotImplementedError

    def supports_events(self) -> bool:
        """True when wait_events can report XIDs (NVML's event API)."""
        return False

    def wait_events(self, timeout_ms: int) -> List[Tuple[int, int]]:
        """Block up to timeout_ms for critical XID events; return (gpu index, xid) pairs."""
        return []

    def close(self) -> None:
        """Release the library (nvmlShutdown); safe to call twice."""


def open_source(environ: Optional[Mapping[str, str]] = None) -> Source:
    """NVML when it loads and initializes, else nvidia-smi, else GpuUnavailable."""
    from .nvml import NvmlSource
    from .smi import SmiSource

    reasons: List[str] = []
    for cls in (NvmlSource, SmiSource):
        source = cls(environ) if environ is not None else cls()
        try:
            source.open()
        except GpuUnavailable as exc:
            log.debug("%s unavailable: %s", cls.name, exc)
            reasons.append(str(exc))
            continue
        return source
    # The first reason (NVML's) is the most telling; the smi one says "not on PATH".
    raise GpuUnavailable(reasons[0] if reasons else "No GPU telemetry source")
