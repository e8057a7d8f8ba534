"""NVML through ctypes (no pynvml): the primary telemetry source.

Loads libnvidia-ml.so.1 through the normal loader (so LD_LIBRARY_PATH works; on Windows
nvml.dll from System32, then NVSMI), resolves each function once on first use (a symbol the
driver lacks is a value of None, never a crash) and keeps its function pointers, device
handles and out-parameters, so one sample costs little more than the C calls themselves.

Every NVML return code becomes a value of None except three: GPU_IS_LOST marks that GPU
`lost` (the others still read), UNINITIALIZED and DRIVER_NOT_LOADED raise GpuUnavailable.
The process list follows nvitop's rule for the struct the `_v3` function really writes
(see `_process_api`), because the wrong one gives garbage pids and memory values.

`wait_events` (XID events) may run on a second thread while `read` runs: NVML allows it,
ctypes drops the GIL during each call, and the two share nothing but the resolved functions.
"""

from __future__ import annotations

import ctypes
import logging
import os
import sys
import threading
import time
from ctypes import (
    POINTER,
    Structure,
    byref,
    c_char_p,
    c_int,
    c_uint,
    c_ulonglong,
    c_void_p,
    create_string_buffer,
    sizeof,
)
from typing import Any, Dict, List, Mapping, Optional, Set, Tuple

from .source import GpuUnavailable, Source, empty_gpu, throttle_names

log = logging.getLogger(__name__)

# nvmlReturn_t values used here.
SUCCESS = 0
UNINITIALIZED = 1
INVALID_ARGUMENT = 2
NOT_SUPPORTED = 3
NO_PERMISSION = 4
INSUFFICIENT_POWER = 8
INSUFFICIENT_SIZE = 7
DRIVER_NOT_LOADED = 9
TIMEOUT = 10
IRQ_ISSUE = 11
LIBRARY_NOT_FOUND = 12
FUNCTION_NOT_FOUND = 13
CORRUPTED_INFOROM = 14
GPU_IS_LOST = 15
RESET_REQUIRED = 16
OPERATING_SYSTEM = 17
LIB_RM_VERSION_MISMATCH = 18
MEMORY = 20
ARGUMENT_VERSION_MISMATCH = 25
UNKNOWN = 999

# Our own sentence for the codes people meet; nvmlErrorString's text is appended.
_MESSAGES = {
    UNINITIALIZED: "NVML is not initialized",
    DRIVER_NOT_LOADED: "The NVIDIA kernel driver is not loaded (is the driver installed and its module running?)",
    NO_PERMISSION: "No permission to use the NVIDIA driver (check access to /dev/nvidia*)",
    INSUFFICIENT_POWER: "A GPU is not getting enough external power (check its power cables)",
    IRQ_ISSUE: "The NVIDIA driver has an interrupt problem with a GPU",
    LIBRARY_NOT_FOUND: "No NVIDIA driver found (libnvidia-ml.so.1 is not installed)",
    FUNCTION_NOT_FOUND: "The NVIDIA driver is too old for this query",
    CORRUPTED_INFOROM: "A GPU's infoROM is corrupted",
    GPU_IS_LOST: "A GPU has fallen off the bus",
    RESET_REQUIRED: "A GPU needs a reset or a reboot",
    OPERATING_SYSTEM: "The operating system blocked access to the GPU",
    LIB_RM_VERSION_MISMATCH: "The NVIDIA driver and its library have different versions (reboot after a driver update)",
    MEMORY: "NVML ran out of memory",
}

# Enums.
_TEMPERATURE_GPU = 0
_THRESHOLD_SLOWDOWN = 1
_ECC_CORRECTED, _ECC_UNCORRECTED = 0, 1
_COUNTER_VOLATILE, _COUNTER_AGGREGATE = 0, 1
_EVENT_SINGLE_BIT_ECC = 0x1
_EVENT_DOUBLE_BIT_ECC = 0x2
_EVENT_XID_CRITICAL = 0x8
_XID_DOUBLE_BIT_ECC = 48  # reported for a DoubleBitEcc event
_VALUE_NOT_AVAILABLE = 0xFFFFFFFFFFFFFFFF  # NVML_VALUE_NOT_AVAILABLE (unsigned long long)
_STRING_BUFFER = 96  # NVML_DEVICE_UUID_V2_BUFFER_SIZE, NVML_DEVICE_NAME_V2_BUFFER_SIZE
_DRIVER_BUFFER = 80  # NVML_SYSTEM_DRIVER_VERSION_BUFFER_SIZE
_EVENTS_PER_WAIT = 64


class _Utilization(Structure):
    _fields_ = [("gpu", c_uint), ("memory", c_uint)]


class _Memory(Structure):
    _fields_ = [("total", c_ulonglong), ("free", c_ulonglong), ("used", c_ulonglong)]


class _MemoryV2(Structure):
    _fields_ = [
        ("version", c_uint),
        ("total", c_ulonglong),
        ("reserved", c_ulonglong),
        ("free", c_ulonglong),
        ("used", c_ulonglong),
    ]


MEMORY_V2_VERSION = sizeof(_MemoryV2) | (2 << 24)  # nvmlMemory_v2 = 0x02000028


class _ProcessV1(Structure):
    _fields_ = [("pid", c_uint), ("usedGpuMemory", c_ulonglong)]


class _ProcessV2(Structure):
    _fields_ = [
        ("pid", c_uint),
        ("usedGpuMemory", c_ulonglong),
        ("gpuInstanceId", c_uint),
        ("computeInstanceId", c_uint),
    ]


class _ProcessV3(Structure):
    _fields_ = [
        ("pid", c_uint),
        ("usedGpuMemory", c_ulonglong),
        ("gpuInstanceId", c_uint),
        ("computeInstanceId", c_uint),
        ("usedGpuCcProtectedMemory", c_ulonglong),
    ]


class _EventData(Structure):
    _fields_ = [
        ("device", c_void_p),
        ("eventType", c_ulonglong),
        ("eventData", c_ulonglong),
        ("gpuInstanceId", c_uint),
        ("computeInstanceId", c_uint),
    ]


_U = POINTER(c_uint)
_ULL = POINTER(c_ulonglong)
_DEV = c_void_p

# argtypes of every function this module calls (restype is nvmlReturn_t unless noted).
_SIGNATURES: Dict[str, Tuple[Any, ...]] = {
    "nvmlInit_v2": (),
    "nvmlInit": (),
    "nvmlShutdown": (),
    "nvmlErrorString": (c_uint,),
    "nvmlSystemGetDriverVersion": (c_char_p, c_uint),
    "nvmlSystemGetCudaDriverVersion_v2": (POINTER(c_int),),
    "nvmlSystemGetCudaDriverVersion": (POINTER(c_int),),
    "nvmlDeviceGetCount_v2": (_U,),
    "nvmlDeviceGetCount": (_U,),
    "nvmlDeviceGetHandleByIndex_v2": (c_uint, POINTER(c_void_p)),
    "nvmlDeviceGetHandleByIndex": (c_uint, POINTER(c_void_p)),
    "nvmlDeviceGetUUID": (_DEV, c_char_p, c_uint),
    "nvmlDeviceGetName": (_DEV, c_char_p, c_uint),
    "nvmlDeviceGetUtilizationRates": (_DEV, POINTER(_Utilization)),
    "nvmlDeviceGetMemoryInfo_v2": (_DEV, POINTER(_MemoryV2)),
    "nvmlDeviceGetMemoryInfo": (_DEV, POINTER(_Memory)),
    "nvmlDeviceGetTemperature": (_DEV, c_uint, _U),
    "nvmlDeviceGetTemperatureThreshold": (_DEV, c_uint, _U),
    "nvmlDeviceGetPowerUsage": (_DEV, _U),
    "nvmlDeviceGetEnforcedPowerLimit": (_DEV, _U),
    "nvmlDeviceGetCurrentClocksEventReasons": (_DEV, _ULL),
    "nvmlDeviceGetCurrentClocksThrottleReasons": (_DEV, _ULL),
    "nvmlDeviceGetTotalEccErrors": (_DEV, c_uint, c_uint, _ULL),
    "nvmlDeviceGetRemappedRows": (_DEV, _U, _U, _U, _U),
    "nvmlDeviceGetCurrPcieLinkGeneration": (_DEV, _U),
    "nvmlDeviceGetMaxPcieLinkGeneration": (_DEV, _U),
    "nvmlDeviceGetCurrPcieLinkWidth": (_DEV, _U),
    "nvmlDeviceGetMaxPcieLinkWidth": (_DEV, _U),
    "nvmlDeviceGetPersistenceMode": (_DEV, _U),
    # The buffer is typed per call (its struct depends on the driver), so a plain pointer.
    "nvmlDeviceGetComputeRunningProcesses_v3": (_DEV, _U, c_void_p),
    "nvmlDeviceGetComputeRunningProcesses_v2": (_DEV, _U, c_void_p),
    "nvmlDeviceGetComputeRunningProcesses": (_DEV, _U, c_void_p),
    # Only their presence matters (the process struct rule); never called.
    "nvmlDeviceGetConfComputeMemSizeInfo": (_DEV, c_void_p),
    "nvmlDeviceGetRunningProcessDetailList": (_DEV, c_void_p),
    "nvmlEventSetCreate": (POINTER(c_void_p),),
    "nvmlEventSetFree": (c_void_p,),
    "nvmlDeviceRegisterEvents": (_DEV, c_ulonglong, c_void_p),
    "nvmlEventSetWait_v2": (c_void_p, POINTER(_EventData), c_uint),
    "nvmlEventSetWait": (c_void_p, POINTER(_EventData), c_uint),
}

_MISSING = object()


class _Lost(Exception):
    """GPU_IS_LOST from a device call."""


class _Device:
    """One GPU as opened: its index, handle (None until NVML gives one) and identity."""

    __slots__ = ("handle", "index", "name", "uuid")

    def __init__(self, index: int) -> None:
        self.index = index
        self.handle: Optional[c_void_p] = None
        self.uuid = ""
        self.name = ""


def _process_name(pid: int) -> Optional[str]:
    try:
        with open("/proc/%d/comm" % pid, "rb") as f:
            return f.read().rstrip(b"\n").decode("utf-8", "replace") or None
    except OSError:
        return None


class NvmlSource(Source):
    """Telemetry from libnvidia-ml through ctypes."""

    name = "nvml"

    def __init__(self, environ: Optional[Mapping[str, str]] = None) -> None:
        self._environ: Mapping[str, str] = os.environ if environ is None else environ
        self._lib: Optional[ctypes.CDLL] = None
        self._fns: Dict[str, Any] = {}
        self._resolve_lock = threading.Lock()
        self._event_lock = threading.Lock()
        self._initialized = False
        self._devices: List[_Device] = []
        self._by_handle: Dict[int, int] = {}  # handle value -> GPU index (for events)
        self._event_set: Optional[c_void_p] = None
        self._registered: Set[int] = set()
        self._event_data = _EventData()
        self._memory_v2 = True  # False once the driver refused nvmlMemory_v2
        self._proc_fn: Any = _MISSING  # (function, struct) chosen on first use
        self._proc_struct: Any = None
        self._proc_buffer: Any = None
        # Out-parameters reused by every read (read runs on one thread).
        self._uint = c_uint()
        self._uint_ref = byref(self._uint)
        self._ull = c_ulonglong()
        self._ull_ref = byref(self._ull)
        self._rows = (c_uint(), c_uint(), c_uint(), c_uint())
        self._rows_refs = tuple(byref(r) for r in self._rows)
        self._util = _Utilization()
        self._util_ref = byref(self._util)
        self._mem = _Memory()
        self._mem_ref = byref(self._mem)
        self._mem2 = _MemoryV2()
        self._mem2_ref = byref(self._mem2)
        self._count = c_uint()
        self._count_ref = byref(self._count)

    # ---- library and functions ----

    def _load(self) -> ctypes.CDLL:
        if self._lib is not None:
            return self._lib
        if sys.platform == "win32":
            windir = self._environ.get("WINDIR") or self._environ.get("SystemRoot") or r"C:\Windows"
            program_files = self._environ.get("ProgramFiles") or r"C:\Program Files"
            candidates = [
                os.path.join(windir, "System32", "nvml.dll"),
                os.path.join(program_files, "NVIDIA Corporation", "NVSMI", "nvml.dll"),
            ]
            missing = "No NVIDIA driver found (nvml.dll is not installed)"
        else:
            candidates = ["libnvidia-ml.so.1"]
            missing = _MESSAGES[LIBRARY_NOT_FOUND]
        for candidate in candidates:
            try:
                self._lib = ctypes.CDLL(candidate)
            except OSError as exc:
                log.debug("cannot load %s: %s", candidate, exc)
                continue
            return self._lib
        raise GpuUnavailable(missing)

    def _resolve(self, name: str) -> Any:
        """The function `name` with its argtypes set, or None when the driver lacks it."""
        with self._resolve_lock:
            fn = self._fns.get(name, _MISSING)
            if fn is not _MISSING:
                return fn
            lib = self._lib
            try:
                # Item access makes a private function object (attribute access would
                # share and cache one on the CDLL).
                fn = lib[name] if lib is not None else None
            except AttributeError:
                fn = None
            if fn is not None:
                fn.argtypes = _SIGNATURES[name]
                fn.restype = c_char_p if name == "nvmlErrorString" else c_uint
            self._fns[name] = fn
            return fn

    def _has(self, name: str) -> bool:
        fn = self._fns.get(name, _MISSING)
        if fn is _MISSING:
            fn = self._resolve(name)
        return fn is not None

    def _raw(self, name: str, *args: Any) -> int:
        """Call `name`; FUNCTION_NOT_FOUND when the driver does not export it."""
        fn = self._fns.get(name, _MISSING)
        if fn is _MISSING:
            fn = self._resolve(name)
        if fn is None:
            return FUNCTION_NOT_FOUND
        return fn(*args)

    def _call(self, name: str, *args: Any) -> bool:
        """Call `name` for one value: True on success, False when the value is unknown.
        Raises _Lost for GPU_IS_LOST, GpuUnavailable when NVML itself stopped working."""
        fn = self._fns.get(name, _MISSING)
        if fn is _MISSING:
            fn = self._resolve(name)
        if fn is None:
            return False
        rc = fn(*args)
        if rc == SUCCESS:
            return True
        return self._failed(rc)

    def _failed(self, rc: int) -> bool:
        if rc == GPU_IS_LOST:
            raise _Lost()
        if rc in (UNINITIALIZED, DRIVER_NOT_LOADED):
            raise GpuUnavailable(self.describe(rc))
        return False

    def describe(self, rc: int) -> str:
        """One sentence for an NVML return code."""
        text = None
        fn = self._fns.get("nvmlErrorString", _MISSING)
        if fn is _MISSING and self._lib is not None:
            fn = self._resolve("nvmlErrorString")
        if fn not in (None, _MISSING):
            try:
                raw = fn(rc)
                text = raw.decode("utf-8", "replace") if raw else None
            except Exception:  # a broken driver must not turn a message into a crash
                text = None
        mine = _MESSAGES.get(rc)
        if mine:
            return "%s (NVML error %d%s)." % (mine, rc, ": " + text if text else "")
        return "NVML failed: %s (error %d)." % (text or "unknown error", rc)

    # ---- lifecycle ----

    def open(self) -> None:
        if self._initialized:
            return
        self._load()
        rc = self._raw("nvmlInit_v2")
        if rc == FUNCTION_NOT_FOUND:
            rc = self._raw("nvmlInit")
        if rc != SUCCESS:
            raise GpuUnavailable(self.describe(rc))
        self._initialized = True
        try:
            count = c_uint()
            rc = self._raw("nvmlDeviceGetCount_v2", byref(count))
            if rc == FUNCTION_NOT_FOUND:
                rc = self._raw("nvmlDeviceGetCount", byref(count))
            if rc != SUCCESS:
                raise GpuUnavailable(self.describe(rc))
            if count.value == 0:
                raise GpuUnavailable("No NVIDIA GPU on this machine")
            self._devices = [_Device(i) for i in range(count.value)]
            for device in self._devices:
                self._attach(device)
        except BaseException:
            self._shutdown()
            raise

    def _attach(self, device: _Device) -> int:
        """Get the device's handle, uuid and name; the return code of the handle lookup."""
        handle = c_void_p()
        rc = self._raw("nvmlDeviceGetHandleByIndex_v2", device.index, byref(handle))
        if rc == FUNCTION_NOT_FOUND:
            rc = self._raw("nvmlDeviceGetHandleByIndex", device.index, byref(handle))
        if rc != SUCCESS or not handle.value:
            if rc in (UNINITIALIZED, DRIVER_NOT_LOADED):
                raise GpuUnavailable(self.describe(rc))
            log.debug("GPU %d: no handle (%s)", device.index, self.describe(rc))
            return rc or UNKNOWN
        buffer = create_string_buffer(_STRING_BUFFER)
        if self._raw("nvmlDeviceGetUUID", handle, buffer, _STRING_BUFFER) == SUCCESS:
            device.uuid = buffer.value.decode("utf-8", "replace")
        if self._raw("nvmlDeviceGetName", handle, buffer, _STRING_BUFFER) == SUCCESS:
            device.name = buffer.value.decode("utf-8", "replace")
        self._by_handle[handle.value] = device.index
        device.handle = handle
        return SUCCESS

    def _shutdown(self) -> None:
        if self._initialized:
            self._initialized = False
            rc = self._raw("nvmlShutdown")
            if rc != SUCCESS:
                log.debug("nvmlShutdown: %s", self.describe(rc))
        self._devices = []
        self._by_handle = {}

    def close(self) -> None:
        # The event lock waits for a wait_events in progress (at most its timeout).
        with self._event_lock:
            if self._event_set is not None:
                rc = self._raw("nvmlEventSetFree", self._event_set)
                if rc != SUCCESS:
                    log.debug("nvmlEventSetFree: %s", self.describe(rc))
                self._event_set = None
                self._registered = set()
            self._shutdown()

    # ---- machine ----

    def machine(self) -> Dict[str, Optional[str]]:
        self.open()
        driver: Optional[str] = None
        buffer = create_string_buffer(_DRIVER_BUFFER)
        if self._raw("nvmlSystemGetDriverVersion", buffer, _DRIVER_BUFFER) == SUCCESS:
            driver = buffer.value.decode("utf-8", "replace") or None
        cuda: Optional[str] = None
        version = c_int()
        rc = self._raw("nvmlSystemGetCudaDriverVersion_v2", byref(version))
        if rc == FUNCTION_NOT_FOUND:
            rc = self._raw("nvmlSystemGetCudaDriverVersion", byref(version))
        if rc == SUCCESS and version.value > 0:
            cuda = "%d.%d" % (version.value // 1000, (version.value % 1000) // 10)
        return {"driverVersion": driver, "cudaVersion": cuda}

    # ---- reading ----

    def read(self, processes: bool = True) -> List[Dict[str, Any]]:
        if not self._initialized:
            self.open()
        out: List[Dict[str, Any]] = []
        for device in self._devices:
            if device.handle is None:
                rc = self._attach(device)
                if rc != SUCCESS:
                    # No handle: lost when NVML says so, else every value unknown.
                    lost = rc == GPU_IS_LOST
                    out.append(empty_gpu(device.index, device.uuid, device.name, lost=lost))
                    continue
            try:
                out.append(self._read_device(device, processes))
            except _Lost:
                out.append(empty_gpu(device.index, device.uuid, device.name, lost=True))
        return out

    def _read_device(self, device: _Device, processes: bool) -> Dict[str, Any]:
        call = self._call
        h: Any = device.handle
        gpu = empty_gpu(device.index, device.uuid, device.name)
        uint, uint_ref = self._uint, self._uint_ref
        ull, ull_ref = self._ull, self._ull_ref

        if call("nvmlDeviceGetUtilizationRates", h, self._util_ref):
            gpu["utilization"] = self._util.gpu
            gpu["memoryUtilization"] = self._util.memory

        self._read_memory(h, gpu)

        if call("nvmlDeviceGetTemperature", h, _TEMPERATURE_GPU, uint_ref):
            gpu["temperature"] = uint.value
        if call("nvmlDeviceGetTemperatureThreshold", h, _THRESHOLD_SLOWDOWN, uint_ref):
            gpu["temperatureSlowdown"] = uint.value
        if call("nvmlDeviceGetPowerUsage", h, uint_ref):
            gpu["powerDraw"] = uint.value / 1000.0
        if call("nvmlDeviceGetEnforcedPowerLimit", h, uint_ref):
            gpu["powerLimit"] = uint.value / 1000.0

        if self._has("nvmlDeviceGetCurrentClocksEventReasons"):
            ok = call("nvmlDeviceGetCurrentClocksEventReasons", h, ull_ref)
        else:
            ok = call("nvmlDeviceGetCurrentClocksThrottleReasons", h, ull_ref)
        if ok:
            gpu["clocksEventReasons"] = ull.value
            gpu["throttle"] = throttle_names(ull.value)

        ecc = gpu["ecc"]
        for key, error, counter in (
            ("correctedVolatile", _ECC_CORRECTED, _COUNTER_VOLATILE),
            ("uncorrectedVolatile", _ECC_UNCORRECTED, _COUNTER_VOLATILE),
            ("correctedAggregate", _ECC_CORRECTED, _COUNTER_AGGREGATE),
            ("uncorrectedAggregate", _ECC_UNCORRECTED, _COUNTER_AGGREGATE),
        ):
            if call("nvmlDeviceGetTotalEccErrors", h, error, counter, ull_ref):
                ecc[key] = ull.value

        if call("nvmlDeviceGetRemappedRows", h, *self._rows_refs):
            corr, unc, pending, failure = self._rows
            gpu["remappedRows"] = {
                "correctable": corr.value,
                "uncorrectable": unc.value,
                "pending": bool(pending.value),
                "failure": bool(failure.value),
            }

        pcie = gpu["pcie"]
        if call("nvmlDeviceGetCurrPcieLinkGeneration", h, uint_ref):
            pcie["gen"] = uint.value
        if call("nvmlDeviceGetMaxPcieLinkGeneration", h, uint_ref):
            pcie["maxGen"] = uint.value
        if call("nvmlDeviceGetCurrPcieLinkWidth", h, uint_ref):
            pcie["width"] = uint.value
        if call("nvmlDeviceGetMaxPcieLinkWidth", h, uint_ref):
            pcie["maxWidth"] = uint.value

        if call("nvmlDeviceGetPersistenceMode", h, uint_ref):
            gpu["persistenceMode"] = bool(uint.value)

        if processes:
            gpu["processes"] = self._read_processes(h)
        return gpu

    def _read_memory(self, h: Any, gpu: Dict[str, Any]) -> None:
        if self._memory_v2:
            mem2 = self._mem2
            mem2.version = MEMORY_V2_VERSION
            rc = self._raw("nvmlDeviceGetMemoryInfo_v2", h, self._mem2_ref)
            if rc == SUCCESS:
                gpu["memoryUsed"] = mem2.used
                gpu["memoryTotal"] = mem2.total
                return
            if rc not in (FUNCTION_NOT_FOUND, ARGUMENT_VERSION_MISMATCH):
                self._failed(rc)
                return
            self._memory_v2 = False
        if self._call("nvmlDeviceGetMemoryInfo", h, self._mem_ref):
            gpu["memoryUsed"] = self._mem.used
            gpu["memoryTotal"] = self._mem.total

    def _process_api(self) -> Tuple[Optional[str], Any]:
        """The process-list function and the struct it writes on this driver.

        nvitop's rule: the `_v3` function writes the 5-field v3 struct only on drivers that
        export nvmlDeviceGetConfComputeMemSizeInfo but not
        nvmlDeviceGetRunningProcessDetailList; every other driver's `_v3` writes the 4-field
        v2 struct. Without `_v3`: `_v2` with v2, then the unsuffixed one with v1.
        """
        if self._has("nvmlDeviceGetComputeRunningProcesses_v3"):
            if self._has("nvmlDeviceGetConfComputeMemSizeInfo") and not self._has(
                "nvmlDeviceGetRunningProcessDetailList"
            ):
                return "nvmlDeviceGetComputeRunningProcesses_v3", _ProcessV3
            return "nvmlDeviceGetComputeRunningProcesses_v3", _ProcessV2
        if self._has("nvmlDeviceGetComputeRunningProcesses_v2"):
            return "nvmlDeviceGetComputeRunningProcesses_v2", _ProcessV2
        if self._has("nvmlDeviceGetComputeRunningProcesses"):
            return "nvmlDeviceGetComputeRunningProcesses", _ProcessV1
        return None, None

    def _read_processes(self, h: Any) -> List[Dict[str, Any]]:
        if self._proc_fn is _MISSING:
            self._proc_fn, self._proc_struct = self._process_api()
            if self._proc_struct is not None:
                self._proc_buffer = (self._proc_struct * 16)()
        name = self._proc_fn
        if name is None:
            return []
        count, count_ref = self._count, self._count_ref
        # One call with the kept buffer; INSUFFICIENT_SIZE says how many there are, so
        # grow it (with room for a few newcomers) and ask again.
        for _ in range(4):
            buffer = self._proc_buffer
            count.value = len(buffer)
            rc = self._raw(name, h, count_ref, buffer)
            if rc != INSUFFICIENT_SIZE:
                break
            struct: Any = self._proc_struct
            self._proc_buffer = (struct * (count.value + 8))()
        else:
            return []
        if rc != SUCCESS:
            self._failed(rc)
            return []
        result = []
        for i in range(min(count.value, len(buffer))):
            entry = buffer[i]
            used = entry.usedGpuMemory
            result.append(
                {
                    "pid": entry.pid,
                    "name": _process_name(entry.pid),
                    "usedMemory": None if used == _VALUE_NOT_AVAILABLE else used,
                }
            )
        return result

    # ---- events ----

    def supports_events(self) -> bool:
        if self._lib is None:
            try:
                self._load()
            except GpuUnavailable:
                return False
        return (
            self._has("nvmlEventSetCreate")
            and self._has("nvmlDeviceRegisterEvents")
            and (self._has("nvmlEventSetWait_v2") or self._has("nvmlEventSetWait"))
        )

    def _ensure_event_set(self) -> bool:
        """Create the event set once and register every GPU with a handle (the event
        lock is held)."""
        if self._event_set is None:
            event_set = c_void_p()
            rc = self._raw("nvmlEventSetCreate", byref(event_set))
            if rc != SUCCESS:
                self._failed(rc)
                log.debug("nvmlEventSetCreate: %s", self.describe(rc))
                return False
            self._event_set = event_set
            self._registered = set()
        for device in list(self._devices):
            if device.handle is None or device.index in self._registered:
                continue
            for mask in (
                _EVENT_XID_CRITICAL | _EVENT_SINGLE_BIT_ECC | _EVENT_DOUBLE_BIT_ECC,
                _EVENT_XID_CRITICAL | _EVENT_DOUBLE_BIT_ECC,
                _EVENT_XID_CRITICAL,
            ):
                rc = self._raw("nvmlDeviceRegisterEvents", device.handle, mask, self._event_set)
                if rc != NOT_SUPPORTED:
                    break
            if rc in (UNINITIALIZED, DRIVER_NOT_LOADED):
                raise GpuUnavailable(self.describe(rc))
            if rc != SUCCESS:
                log.debug("GPU %d: no events (%s)", device.index, self.describe(rc))
            # Registered or refused: either way not asked again (a lost GPU stays lost).
            self._registered.add(device.index)
        return True

    def wait_events(self, timeout_ms: int) -> List[Tuple[int, int]]:
        """Block up to timeout_ms for XID / double-bit ECC events: [(gpu index, xid)].
        Raises GpuUnavailable when NVML is not open (or stopped working)."""
        with self._event_lock:
            if not self._initialized:
                raise GpuUnavailable("NVML is not open")
            if not self.supports_events() or not self._ensure_event_set():
                time.sleep(max(0, timeout_ms) / 1000.0)  # block as promised: no busy loop
                return []
            wait = "nvmlEventSetWait_v2" if self._has("nvmlEventSetWait_v2") else "nvmlEventSetWait"
            data = self._event_data
            data_ref = byref(data)
            events: List[Tuple[int, int]] = []
            rc = self._raw(wait, self._event_set, data_ref, max(0, int(timeout_ms)))
            while rc == SUCCESS:
                index = self._by_handle.get(data.device or 0)
                if index is None:
                    log.debug("event %#x for an unknown device", data.eventType)
                elif data.eventType & _EVENT_XID_CRITICAL:
                    events.append((index, int(data.eventData)))
                elif data.eventType & _EVENT_DOUBLE_BIT_ECC:
                    events.append((index, _XID_DOUBLE_BIT_ECC))
                if len(events) >= _EVENTS_PER_WAIT:
                    return events
                rc = self._raw(wait, self._event_set, data_ref, 0)  # drain what is queued
            if rc != TIMEOUT:
                if rc in (UNINITIALIZED, DRIVER_NOT_LOADED):
                    raise GpuUnavailable(self.describe(rc))
                log.debug("nvmlEventSetWait: %s", self.describe(rc))
                if not events:
                    time.sleep(max(0, timeout_ms) / 1000.0)
            return events
