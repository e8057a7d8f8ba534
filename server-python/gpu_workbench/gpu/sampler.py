"""One long-lived GPU sampler per machine: the source opened once, polled while someone
watches, every sample pushed as a `gpu/sample` notification and kept for 15 minutes.

- Nothing is polled while no one watches (`gpu/watch`): no thread, no library calls.
  `gpu/status` alone takes one sample on demand.
- With no GPU (no driver, no device, no nvidia-smi) the state is a calm snapshot with
  `source: "none"` and the reason in `message`; the machine is probed again only when asked
  (`gpu/status {fresh: true}` or a new watch), never on a timer.
- NVML's event API (XIDs) is waited on by a second thread while sampling; an event makes
  the next sample go out at once.
- A driver that goes away mid-run (GpuUnavailable from `read`) ends sampling and turns the
  state to "none" with the reason; other errors are logged and sampling goes on.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from typing import Any, Callable, Deque, Dict, List, Mapping, Optional, Set

from ..rpc import PlainJson
from .health import HealthSettings, HealthTracker
from .source import GpuUnavailable, Source, open_source
from .xid import describe

log = logging.getLogger(__name__)

DEFAULT_INTERVAL = 2.0
MIN_INTERVAL = 0.5
HISTORY_SECONDS = 900.0
# Processes are the most expensive part of a reading (nvidia-smi: a second spawn).
PROCESS_EVERY_SECONDS = {"nvml": 0.0, "nvidia-smi": 10.0}
# XIDs kept per GPU in snapshots (the newest).
MAX_XIDS = 50
EVENT_WAIT_MS = 1000

Notify = Callable[[str, Any], None]  # (method, params: a dict or PlainJson)


def parse_settings(raw: Any) -> Dict[str, Any]:
    """gpuWorkbench.gpu (or initializationOptions.gpu) → validated values; bad ones ignored."""
    out: Dict[str, Any] = {
        "intervalSeconds": DEFAULT_INTERVAL,
        "temperatureWarning": 85.0,
        "idleMemoryMinutes": 10.0,
        "expectedCount": None,
    }
    if not isinstance(raw, dict):
        return out

    def number(key: str, low: float, high: float) -> None:
        value = raw.get(key)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            if value is not None:
                log.warning("gpuWorkbench.gpu.%s must be a number; using %s", key, out[key])
            return
        if not low <= float(value) <= high:
            log.warning(
                "gpuWorkbench.gpu.%s must be between %s and %s; using %s", key, low, high, out[key]
            )
            return
        out[key] = float(value)

    number("intervalSeconds", MIN_INTERVAL, 3600.0)
    number("temperatureWarning", 0.0, 200.0)
    number("idleMemoryMinutes", 0.0, 100000.0)
    count = raw.get("expectedCount")
    if isinstance(count, int) and not isinstance(count, bool) and 0 <= count <= 1024:
        out["expectedCount"] = count
    elif count is not None:
        log.warning("gpuWorkbench.gpu.expectedCount must be a whole number; ignoring it")
    return out


def _health_settings(settings: Dict[str, Any]) -> HealthSettings:
    return HealthSettings(
        temperatureWarn=settings["temperatureWarning"],
        idleMemoryMinutes=settings["idleMemoryMinutes"],
        expectedCount=settings["expectedCount"],
    )


def history_point(snapshot: Dict[str, Any]) -> Dict[str, Any]:
    """The chart-sized part of a snapshot (protocol.GpuHistoryPoint)."""
    return {
        "time": snapshot["time"],
        "gpus": [
            {
                "index": gpu["index"],
                "utilization": gpu["utilization"],
                "memoryUsed": gpu["memoryUsed"],
                "memoryTotal": gpu["memoryTotal"],
                "powerDraw": gpu["powerDraw"],
                "temperature": gpu["temperature"],
            }
            for gpu in snapshot["gpus"]
        ],
    }


class GpuMonitor:
    """The sampler of this machine. Thread-safe; `notify(method, params)` sends to the client."""

    def __init__(
        self,
        notify: Notify,
        environ: Optional[Mapping[str, str]] = None,
        settings: Any = None,
        source_factory: Optional[Callable[[], Source]] = None,
        clock: Callable[[], float] = time.time,
        machine: str = "local",
    ) -> None:
        self._notify = notify
        self._environ = environ
        self._factory = source_factory or (lambda: open_source(self._environ))
        self._clock = clock
        self.machine = machine
        self._settings = parse_settings(settings)
        self._health = HealthTracker(_health_settings(self._settings))
        self._lock = threading.RLock()  # state below
        self._read_lock = threading.Lock()  # one reading at a time
        self._source: Optional[Source] = None
        self._machine_info: Dict[str, Optional[str]] = {"driverVersion": None, "cudaVersion": None}
        self._message: Optional[str] = None  # why there is no source (after a probe)
        self._probed = False
        self._watchers: Set[str] = set()
        self._latest: Optional[Dict[str, Any]] = None
        self._history: Deque[Dict[str, Any]] = collections.deque()
        self._xids: Dict[int, List[Dict[str, Any]]] = {}
        self._processes: Dict[int, List[Dict[str, Any]]] = {}
        self._processes_at = 0.0
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        self._event_thread: Optional[threading.Thread] = None
        self.samples = 0  # readings taken (for tests and benchmarks)

    # ---- settings ----

    @property
    def interval(self) -> float:
        return float(self._settings["intervalSeconds"])

    def update_settings(self, raw: Any) -> None:
        with self._lock:
            self._settings = parse_settings(raw)
            self._health.update_settings(_health_settings(self._settings))
        self._wake.set()  # a new interval applies from the next sample

    def settings_expected_count(self) -> Optional[int]:
        with self._lock:
            count = self._settings["expectedCount"]
        return None if count is None else int(count)

    def open_check_source(self) -> Source:
        """A separate source for the checks command (NVML counts its initializations, so
        this does not disturb the sampler); raises GpuUnavailable."""
        source = self._factory()
        return source

    # ---- requests ----

    def status(self, fresh: bool = False) -> Dict[str, Any]:
        """The latest snapshot; a new sample when none is recent or `fresh` is asked."""
        with self._lock:
            latest = self._latest
            running = self._thread is not None
        if not fresh and latest is not None and running:
            return latest
        if fresh or not self._probed or self._source is not None:
            snapshot = self._sample(reprobe=fresh)
            self._reconcile()  # a re-probe may have found a GPU someone watches
            return snapshot
        return self._none_snapshot()

    def watch(self, watcher: str, watching: bool) -> Dict[str, Any]:
        with self._lock:
            if watching:
                self._watchers.add(watcher)
            else:
                self._watchers.discard(watcher)
        if not watching:
            self._reconcile()
            with self._lock:
                return self._latest or self._none_snapshot()
        # A watcher gets a fresh look, and a re-probe when there was no GPU before (cheap:
        # a failed dlopen and a PATH lookup).
        snapshot = self._sample(reprobe=self._source is None)
        self._reconcile()
        return snapshot

    def history(self, seconds: Optional[float]) -> Dict[str, Any]:
        span = (
            HISTORY_SECONDS if seconds is None else max(0.0, min(float(seconds), HISTORY_SECONDS))
        )
        now = self._clock()
        with self._lock:
            points = [p for p in self._history if p["time"] >= now - span]
        return {"machine": self.machine, "intervalSeconds": self.interval, "points": points}

    def watchers(self) -> List[str]:
        with self._lock:
            return sorted(self._watchers)

    def close(self) -> None:
        with self._lock:
            self._watchers.clear()
        self._stop_threads()
        with self._read_lock:
            self._close_source()

    # ---- sampling ----

    def _open(self) -> Optional[Source]:
        """The source, opened on first use; None (with _message set) when there is no GPU."""
        if self._source is not None:
            return self._source
        self._probed = True
        try:
            source = self._factory()
            info = source.machine()
        except GpuUnavailable as exc:
            self._message = str(exc) or "No GPU"
            log.info("no GPU telemetry: %s", self._message)
            return None
        self._source = source
        self._message = None
        self._machine_info = {
            "driverVersion": info.get("driverVersion"),
            "cudaVersion": info.get("cudaVersion"),
        }
        log.info(
            "GPU telemetry through %s (driver %s)", source.name, self._machine_info["driverVersion"]
        )
        return source

    def _close_source(self) -> None:
        source, self._source = self._source, None
        if source is not None:
            try:
                source.close()
            except Exception:  # closing must never fail the caller
                log.exception("closing the GPU source failed")

    def _sample(self, reprobe: bool = False) -> Dict[str, Any]:
        with self._read_lock:
            if reprobe and self._source is None:
                self._probed = False
            source = self._open() if (reprobe or not self._probed or self._source) else None
            if source is None:
                snapshot = self._none_snapshot()
                with self._lock:
                    self._latest = snapshot
                return snapshot
            now = self._clock()
            every = PROCESS_EVERY_SECONDS.get(source.name, 0.0)
            want_processes = every == 0.0 or now - self._processes_at >= every
            try:
                gpus = source.read(processes=want_processes)
            except GpuUnavailable as exc:
                self._message = str(exc)
                log.warning("GPU telemetry stopped: %s", exc)
                self._close_source()
                snapshot = self._none_snapshot()
                with self._lock:
                    self._latest = snapshot
                self._wake.set()
                return snapshot
            self.samples += 1
            if want_processes:
                self._processes = {g["index"]: g["processes"] for g in gpus}
                self._processes_at = now
            else:
                for gpu in gpus:
                    gpu["processes"] = list(self._processes.get(gpu["index"], []))
            with self._lock:
                for gpu in gpus:
                    gpu["xids"] = list(self._xids.get(gpu["index"], []))
                verdict, reasons = self._health.evaluate(gpus, now)
                snapshot = {
                    "machine": self.machine,
                    "source": source.name,
                    "time": now,
                    "driverVersion": self._machine_info["driverVersion"],
                    "cudaVersion": self._machine_info["cudaVersion"],
                    "gpus": gpus,
                    "verdict": verdict,
                    "reasons": reasons,
                    "message": None,
                    "intervalSeconds": self.interval,
                    "sampling": bool(self._watchers),
                }
                self._latest = snapshot
                self._remember(snapshot)
            return snapshot

    def _remember(self, snapshot: Dict[str, Any]) -> None:
        self._history.append(history_point(snapshot))
        horizon = snapshot["time"] - HISTORY_SECONDS
        while self._history and self._history[0]["time"] < horizon:
            self._history.popleft()

    def _none_snapshot(self) -> Dict[str, Any]:
        return {
            "machine": self.machine,
            "source": "none",
            "time": self._clock(),
            "driverVersion": None,
            "cudaVersion": None,
            "gpus": [],
            "verdict": "ok",
            "reasons": [],
            "message": self._message or "No GPU",
            "intervalSeconds": self.interval,
            "sampling": False,
        }

    # ---- threads ----

    def _reconcile(self) -> None:
        """Run the sampler while someone watches and a source exists; stop it otherwise."""
        with self._lock:
            wanted = bool(self._watchers) and self._source is not None
            running = self._thread is not None
        if wanted and not running:
            self._stop.clear()
            thread = threading.Thread(target=self._run, name="gpuwb-gpu-sampler", daemon=True)
            with self._lock:
                self._thread = thread
            thread.start()
            source = self._source
            if source is not None and source.supports_events():
                events = threading.Thread(
                    target=self._events, args=(source,), name="gpuwb-gpu-events", daemon=True
                )
                self._event_thread = events
                events.start()
        elif not wanted and running:
            self._stop_threads()

    def _stop_threads(self) -> None:
        self._stop.set()
        self._wake.set()
        current = threading.current_thread()
        for thread in (self._thread, self._event_thread):
            if thread is not None and thread is not current:
                thread.join(timeout=EVENT_WAIT_MS / 1000.0 + 2.0)
        with self._lock:
            self._thread = None
            self._event_thread = None

    def _run(self) -> None:
        next_at = self._clock()
        while not self._stop.is_set():
            delay = max(0.0, next_at - self._clock())
            if delay > 0 and self._wake.wait(delay):
                self._wake.clear()
            if self._stop.is_set():
                break
            with self._lock:
                if not self._watchers:
                    break
            try:
                snapshot = self._sample()
            except Exception:  # a bug in one sample must not end monitoring
                log.exception("GPU sample failed")
                next_at = self._clock() + self.interval
                continue
            self._send(snapshot)
            if snapshot["source"] == "none":
                break  # the driver went away: calm state, no more polling
            next_at = self._clock() + self.interval
        with self._lock:
            if self._thread is threading.current_thread():
                self._thread = None

    def _events(self, source: Source) -> None:
        while not self._stop.is_set() and self._source is source:
            try:
                events = source.wait_events(EVENT_WAIT_MS)
            except GpuUnavailable:
                return
            except Exception:
                log.exception("waiting for GPU events failed")
                return
            if not events:
                continue
            now = self._clock()
            with self._lock:
                for index, xid in events:
                    meaning, severity, _action = describe(xid)
                    log.warning("GPU %d: XID %d (%s)", index, xid, meaning)
                    kept = self._xids.setdefault(index, [])
                    kept.append({"xid": xid, "time": now, "meaning": meaning, "severity": severity})
                    del kept[:-MAX_XIDS]
            self._wake.set()  # the next sample goes out now

    def _send(self, snapshot: Dict[str, Any]) -> None:
        try:
            # Plain values only (built here), so the connection skips its conversion walk.
            self._notify("gpu/sample", PlainJson(snapshot))
        except Exception:  # a closed connection must not kill the thread
            log.debug("could not send gpu/sample", exc_info=True)
