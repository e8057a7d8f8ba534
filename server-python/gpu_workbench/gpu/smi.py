"""`SmiSource`: GPU telemetry from the `nvidia-smi` command line, for when NVML cannot be
loaded through ctypes.

One `nvidia-smi --query-gpu=... --format=csv,noheader,nounits` spawn per reading, plus
`--query-compute-apps` when processes are wanted and `--query-remapped-rows` at open and
then about once a minute (remaps change rarely). Every spawn has a timeout: a hung
nvidia-smi (a GPU stuck in the driver) turns into GpuUnavailable, never a blocked sampler.

All parsing of the tool's output is done by the pure functions below (`parse_query`,
`parse_compute_apps`, `parse_remapped_rows`, `parse_cuda_version`, `failure_message`), so
tests feed them recorded outputs (tests/gpu/data). The spawn itself is injectable.

Output facts this relies on (see /work/shared/reference/gpu-and-clouds.md section 1.2):
rows are ", " separated, one per GPU; unsupported values read `[N/A]` or `[Not Supported]`
(older drivers, plain `N/A`); a GPU that fell off the bus reads `[GPU is lost]` or is
replaced by a line "Unable to determine the device handle for GPU 0000:9B:00.0: GPU is
lost..."; drivers from 535 on call the throttle fields `clocks_event_reasons.*`, older ones
`clocks_throttle_reasons.*`, and a field a driver does not know fails the whole query with
`Field "x" is not a valid field to query.`.
"""

from __future__ import annotations

import csv
import logging
import os
import re
import shutil
import subprocess
import sys
import time
from typing import Any, Callable, Dict, List, Mapping, NamedTuple, Optional, Sequence, Tuple

from .source import GpuUnavailable, Source, empty_gpu, throttle_names
from .xid import bus_id_key

log = logging.getLogger(__name__)

EVENT_PREFIX = "clocks_event_reasons"  # drivers 535 and later
THROTTLE_PREFIX = "clocks_throttle_reasons"  # older drivers (newer ones keep it as an alias)

# The --query-gpu fields, in order; "{throttle}" is replaced by the prefix this driver takes.
QUERY_FIELDS: Tuple[str, ...] = (
    "index",
    "uuid",
    "name",
    "pci.bus_id",
    "driver_version",
    "persistence_mode",
    "utilization.gpu",
    "utilization.memory",
    "memory.used",
    "memory.total",
    "temperature.gpu",
    "power.draw",
    "enforced.power.limit",
    "{throttle}.active",
    "ecc.errors.corrected.volatile.total",
    "ecc.errors.uncorrected.volatile.total",
    "ecc.errors.corrected.aggregate.total",
    "ecc.errors.uncorrected.aggregate.total",
    "pcie.link.gen.current",
    "pcie.link.gen.max",
    "pcie.link.width.current",
    "pcie.link.width.max",
)

APPS_FIELDS: Tuple[str, ...] = ("gpu_uuid", "pid", "process_name", "used_memory")
REMAP_FIELDS: Tuple[str, ...] = (
    "gpu_uuid",
    "remapped_rows.correctable",
    "remapped_rows.uncorrectable",
    "remapped_rows.pending",
    "remapped_rows.failure",
)

DEFAULT_TIMEOUT = 10.0
REMAP_INTERVAL = 60.0
MIB = 1 << 20

# Values that mean "unknown". Compared lower-cased, brackets included.
_UNKNOWN = frozenset(
    {
        "",
        "n/a",
        "[n/a]",
        "[not supported]",
        "not supported",
        "[unknown error]",
        "[gpu requires reset]",
        "[insufficient permissions]",
        "[not found]",
    }
)
_LOST_VALUE = "[gpu is lost]"
_LOST_LINE = re.compile(
    r"Unable to determine the device handle for GPU\s*([0-9A-Fa-f:.]+)\s*:\s*GPU is lost", re.I
)
_INVALID_FIELD = re.compile(r'Field "([^"]+)" is not a valid field to query', re.I)
_CUDA_VERSION = re.compile(r"CUDA Version\s*:\s*([0-9]+(?:\.[0-9]+)*)")
_NUMBER = re.compile(r"^([-+]?[0-9]*\.?[0-9]+)\s*(?:MiB|W|%|C|MHz)?$")


class Completed(NamedTuple):
    """What one nvidia-smi run printed."""

    returncode: int
    stdout: str
    stderr: str


# (argv, timeout seconds) -> Completed; raises subprocess.TimeoutExpired when it hangs.
Runner = Callable[[List[str], float], Completed]


class InvalidField(Exception):
    """The driver does not know a --query-gpu field."""

    def __init__(self, field: str) -> None:
        super().__init__(field)
        self.field = field


# ---------------------------------------------------------------------------------------
# Pure parsing


def query_fields(prefix: str = EVENT_PREFIX) -> List[str]:
    """QUERY_FIELDS with the throttle prefix filled in."""
    return [field.replace("{throttle}", prefix) for field in QUERY_FIELDS]


def clean(value: Optional[str]) -> Optional[str]:
    """A field's text, or None when nvidia-smi says it does not know it."""
    if value is None:
        return None
    text = value.strip()
    if text.lower() in _UNKNOWN or text.lower() == _LOST_VALUE:
        return None
    return text


def _number(value: Optional[str]) -> Optional[float]:
    text = clean(value)
    if text is None:
        return None
    match = _NUMBER.match(text)
    if match is None:
        return None
    try:
        return float(match.group(1))
    except ValueError:
        return None


def to_int(value: Optional[str]) -> Optional[int]:
    number = _number(value)
    return None if number is None else round(number)


def to_float(value: Optional[str]) -> Optional[float]:
    return _number(value)


def to_bytes(value: Optional[str]) -> Optional[int]:
    """MiB (as nvidia-smi prints memory) to bytes."""
    number = _number(value)
    return None if number is None else round(number * MIB)


def to_bool(value: Optional[str]) -> Optional[bool]:
    text = clean(value)
    if text is None:
        return None
    lowered = text.lower()
    if lowered in ("enabled", "yes", "true", "1", "active"):
        return True
    if lowered in ("disabled", "no", "false", "0", "not active"):
        return False
    return None


def to_mask(value: Optional[str]) -> Optional[int]:
    """A hex bitmask such as "0x0000000000000004"."""
    text = clean(value)
    if text is None:
        return None
    try:
        return int(text, 16) if text.lower().startswith("0x") else int(text)
    except ValueError:
        return None


def split_rows(text: str) -> List[List[str]]:
    """CSV rows of nvidia-smi output (", " separated, quotes honoured), blank lines skipped."""
    lines = [line for line in text.splitlines() if line.strip()]
    rows = []
    for row in csv.reader(lines, skipinitialspace=True):
        rows.append([cell.strip() for cell in row])
    return rows


def invalid_field(text: str) -> Optional[str]:
    """The field named by 'Field "x" is not a valid field to query.', if the text says so."""
    match = _INVALID_FIELD.search(text or "")
    return match.group(1) if match else None


def failure_message(result: Completed) -> str:
    """The tool's own words for a failed run, on one line."""
    lines = [line.strip() for line in (result.stdout + "\n" + result.stderr).splitlines()]
    text = " ".join(line for line in lines if line)
    return text or "nvidia-smi exited with code %d" % result.returncode


def parse_cuda_version(text: str) -> Optional[str]:
    """ "12.4" from the "CUDA Version: 12.4" in plain nvidia-smi's header."""
    match = _CUDA_VERSION.search(text or "")
    return match.group(1) if match else None


def _is_throttle_field(field: str) -> bool:
    return field.endswith("reasons.active")


def reading_from_row(row: Mapping[str, Optional[str]], position: int = 0) -> Dict[str, Any]:
    """One GPU's reading from a --query-gpu row (field name -> raw text). Fields missing
    from the row read as unknown; a row with "[GPU is lost]" values is a lost GPU."""
    lost = any((value or "").strip().lower() == _LOST_VALUE for value in row.values())
    index = to_int(row.get("index"))
    gpu = empty_gpu(
        index if index is not None else position,
        uuid=clean(row.get("uuid")) or "",
        name=clean(row.get("name")) or "",
        lost=lost,
    )
    if lost:
        return gpu
    gpu["utilization"] = to_int(row.get("utilization.gpu"))
    gpu["memoryUtilization"] = to_int(row.get("utilization.memory"))
    gpu["memoryUsed"] = to_bytes(row.get("memory.used"))
    gpu["memoryTotal"] = to_bytes(row.get("memory.total"))
    gpu["temperature"] = to_int(row.get("temperature.gpu"))
    gpu["powerDraw"] = to_float(row.get("power.draw"))
    limit = row.get("enforced.power.limit")
    gpu["powerLimit"] = to_float(limit if clean(limit) is not None else row.get("power.limit"))
    mask = None
    for field, value in row.items():
        if _is_throttle_field(field):
            mask = to_mask(value)
            break
    gpu["clocksEventReasons"] = mask
    gpu["throttle"] = throttle_names(mask)
    gpu["ecc"] = {
        "correctedVolatile": to_int(row.get("ecc.errors.corrected.volatile.total")),
        "uncorrectedVolatile": to_int(row.get("ecc.errors.uncorrected.volatile.total")),
        "correctedAggregate": to_int(row.get("ecc.errors.corrected.aggregate.total")),
        "uncorrectedAggregate": to_int(row.get("ecc.errors.uncorrected.aggregate.total")),
    }
    gpu["pcie"] = {
        "gen": to_int(row.get("pcie.link.gen.current")),
        "maxGen": to_int(row.get("pcie.link.gen.max")),
        "width": to_int(row.get("pcie.link.width.current")),
        "maxWidth": to_int(row.get("pcie.link.width.max")),
    }
    gpu["persistenceMode"] = to_bool(row.get("persistence_mode"))
    return gpu


class QueryRows(NamedTuple):
    rows: List[Dict[str, Optional[str]]]  # field -> raw text, one per GPU row
    lost_bus_ids: List[str]  # GPUs named only by a "GPU is lost" line


def parse_rows(text: str, fields: Sequence[str]) -> QueryRows:
    """The --query-gpu rows of `text` and the bus ids of the "Unable to determine the device
    handle for GPU ...: GPU is lost" lines among them. Other lines (errors, a shorter row)
    are skipped."""
    rows: List[Dict[str, Optional[str]]] = []
    lost: List[str] = []
    for line in (text or "").splitlines():
        if not line.strip():
            continue
        match = _LOST_LINE.search(line)
        if match is not None:
            lost.append(match.group(1))
            continue
        cells = split_rows(line)
        if not cells:
            continue
        cells_row = cells[0]
        if len(cells_row) != len(fields):
            if len(cells_row) > 1:
                log.debug("nvidia-smi row with %d fields, want %d", len(cells_row), len(fields))
            continue
        rows.append(dict(zip(fields, cells_row)))
    return QueryRows(rows, lost)


def parse_query(
    text: str,
    fields: Sequence[str],
    known: Optional[Mapping[str, Tuple[int, str, str]]] = None,
) -> List[Dict[str, Any]]:
    """Readings (exactly READING_KEYS) from `nvidia-smi --query-gpu=<fields>
    --format=csv,noheader,nounits` output, sorted by index. `known` maps bus_id_key ->
    (index, uuid, name) from earlier readings so a GPU that is now only named by a "GPU is
    lost" line (or reads "[GPU is lost]" everywhere) keeps its index and identity; without
    it such a GPU takes the lowest index no other GPU has."""
    known = known or {}
    parsed = parse_rows(text, fields)
    gpus: List[Tuple[Optional[int], Dict[str, Any]]] = []
    for position, row in enumerate(parsed.rows):
        gpu = reading_from_row(row, position)
        index = to_int(row.get("index"))
        identity = known.get(bus_id_key(clean(row.get("pci.bus_id"))) or "")
        if identity is not None and gpu["lost"]:
            if index is None:
                index = identity[0]
            gpu["uuid"] = gpu["uuid"] or identity[1]
            gpu["name"] = gpu["name"] or identity[2]
        gpus.append((index, gpu))
    for bus_id in parsed.lost_bus_ids:
        identity = known.get(bus_id_key(bus_id) or "")
        if identity is not None:
            gpus.append((identity[0], empty_gpu(identity[0], identity[1], identity[2], True)))
        elif bus_id.isdigit():  # some tools name the GPU by index instead
            gpus.append((int(bus_id), empty_gpu(int(bus_id), lost=True)))
        else:
            gpus.append((None, empty_gpu(0, lost=True)))
    taken = {index for index, _ in gpus if index is not None}
    result = []
    free = 0
    for index, gpu in gpus:
        if index is None:
            while free in taken:
                free += 1
            index = free
            taken.add(index)
        gpu["index"] = index
        result.append(gpu)
    result.sort(key=lambda gpu: gpu["index"])
    return result


def parse_compute_apps(text: str) -> Dict[str, List[Dict[str, Any]]]:
    """gpu uuid -> GpuProcess dicts from `--query-compute-apps=gpu_uuid,pid,process_name,
    used_memory --format=csv,noheader,nounits` output. A process name with commas in it
    (nvidia-smi does not quote) is put back together."""
    found: Dict[str, List[Dict[str, Any]]] = {}
    for cells in split_rows(text):
        if len(cells) < 4:
            continue
        uuid = clean(cells[0])
        pid = to_int(cells[1])
        if uuid is None or pid is None:
            continue
        name = clean(", ".join(cells[2:-1]))
        found.setdefault(uuid, []).append(
            {"pid": pid, "name": name, "usedMemory": to_bytes(cells[-1])}
        )
    return found


def parse_remapped_rows(text: str) -> Dict[str, Optional[Dict[str, Any]]]:
    """gpu uuid -> GpuRemappedRows dict (None when the GPU does not report remaps, as before
    Ampere) from `--query-remapped-rows=gpu_uuid,remapped_rows.correctable,
    remapped_rows.uncorrectable,remapped_rows.pending,remapped_rows.failure` output."""
    found: Dict[str, Optional[Dict[str, Any]]] = {}
    for cells in split_rows(text):
        if len(cells) != len(REMAP_FIELDS):
            continue
        uuid = clean(cells[0])
        if uuid is None or not uuid.upper().startswith(("GPU-", "MIG-")):
            continue  # a header line, or an error
        remap = {
            "correctable": to_int(cells[1]),
            "uncorrectable": to_int(cells[2]),
            "pending": to_bool(cells[3]),
            "failure": to_bool(cells[4]),
        }
        found[uuid] = None if all(value is None for value in remap.values()) else remap
    return found


# ---------------------------------------------------------------------------------------
# Spawning


def run_command(
    argv: List[str], timeout: float, env: Optional[Mapping[str, str]] = None
) -> Completed:
    """Run argv and collect its output; raise subprocess.TimeoutExpired after `timeout`
    seconds. Never waits for an unkillable child (one stuck in the driver) after that."""
    kwargs: Dict[str, Any] = {}
    if sys.platform == "win32":
        kwargs["creationflags"] = getattr(subprocess, "CREATE_NO_WINDOW", 0)
    proc = subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=dict(env) if env is not None else None,
        **kwargs,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        try:
            proc.communicate(timeout=2.0)
        except subprocess.TimeoutExpired:
            log.warning("nvidia-smi (pid %d) did not exit after kill", proc.pid)
        raise
    return Completed(proc.returncode, _decode(out), _decode(err))


def _decode(data: Any) -> str:
    if isinstance(data, bytes):
        return data.decode("utf-8", errors="replace")
    return data or ""


def find_nvidia_smi(environ: Mapping[str, str]) -> Optional[str]:
    """nvidia-smi on environ's PATH; on Windows also its usual install folder."""
    found = shutil.which("nvidia-smi", path=environ.get("PATH", os.defpath))
    if found:
        return found
    if sys.platform == "win32":
        program_files = environ.get("ProgramFiles") or environ.get("PROGRAMFILES")
        if program_files:
            candidate = os.path.join(program_files, "NVIDIA Corporation", "NVSMI", "nvidia-smi.exe")
            if os.path.isfile(candidate):
                return candidate
    return None


class SmiSource(Source):
    name = "nvidia-smi"

    def __init__(
        self,
        environ: Optional[Mapping[str, str]] = None,
        *,
        runner: Optional[Runner] = None,
        timeout: float = DEFAULT_TIMEOUT,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._environ: Mapping[str, str] = dict(environ if environ is not None else os.environ)
        # The tool runs with this process's environment plus `environ` on top (a PATH-only
        # mapping must not strip LD_LIBRARY_PATH and the like).
        self._child_env: Optional[Dict[str, str]] = (
            None if environ is None else {**os.environ, **environ}
        )
        self._runner = runner
        self._timeout = timeout
        self._clock = clock
        self._exe: Optional[str] = None
        self._fields: List[str] = query_fields(EVENT_PREFIX)
        self._driver: Optional[str] = None
        self._cuda: Optional[str] = None
        self._known: Dict[str, Tuple[int, str, str]] = {}
        self._remaps: Dict[str, Optional[Dict[str, Any]]] = {}
        self._remap_at: Optional[float] = None
        self._remap_supported = True

    @property
    def throttle_prefix(self) -> str:
        """The throttle-field prefix this driver takes (after open())."""
        for field in self._fields:
            if _is_throttle_field(field):
                return field[: -len(".active")]
        return EVENT_PREFIX

    # -- Source ---------------------------------------------------------------------------

    def open(self) -> None:
        self._exe = find_nvidia_smi(self._environ)
        if self._exe is None:
            raise GpuUnavailable("nvidia-smi is not on PATH")
        self._fields = query_fields(EVENT_PREFIX)
        gpus = self._query_gpus()
        if not gpus:
            raise GpuUnavailable("No devices were found")
        self._cuda = self._read_cuda_version()
        self._refresh_remaps(force=True)

    def machine(self) -> Dict[str, Optional[str]]:
        return {"driverVersion": self._driver, "cudaVersion": self._cuda}

    def read(self, processes: bool = True) -> List[Dict[str, Any]]:
        if self._exe is None:
            raise GpuUnavailable("nvidia-smi is not open")
        gpus = self._query_gpus()
        self._refresh_remaps(force=False)
        for gpu in gpus:
            if not gpu["lost"] and gpu["uuid"] in self._remaps:
                gpu["remappedRows"] = self._remaps[gpu["uuid"]]
        if processes:
            apps = self._read_apps()
            for gpu in gpus:
                if not gpu["lost"]:
                    gpu["processes"] = apps.get(gpu["uuid"], [])
        return gpus

    def close(self) -> None:
        self._exe = None

    # -- internals ------------------------------------------------------------------------

    def _run(self, args: List[str], timeout: Optional[float] = None) -> Completed:
        assert self._exe is not None
        limit = self._timeout if timeout is None else timeout
        argv = [self._exe, *args]
        try:
            if self._runner is not None:
                return self._runner(argv, limit)
            return run_command(argv, limit, self._child_env)
        except subprocess.TimeoutExpired:
            raise GpuUnavailable(
                "nvidia-smi did not answer within %s s" % _seconds(limit)
            ) from None
        except OSError as exc:
            raise GpuUnavailable("nvidia-smi could not be run: %s" % exc) from None

    def _query_gpus(self) -> List[Dict[str, Any]]:
        """One --query-gpu run, falling back from a field the driver does not know: the new
        throttle prefix to the old one, any other field to unknown (dropped from the query)."""
        for _ in range(len(QUERY_FIELDS) + 1):
            result = self._run(
                ["--query-gpu=" + ",".join(self._fields), "--format=csv,noheader,nounits"]
            )
            bad = invalid_field(result.stdout + "\n" + result.stderr)
            if bad is not None and bad in self._fields:
                self._drop_field(bad)
                continue
            # A "GPU is lost" line may come on either stream; rows only come on stdout.
            text = result.stdout + "\n" + result.stderr
            gpus = parse_query(text, self._fields, self._known)
            if not gpus:
                raise GpuUnavailable(failure_message(result))
            self._remember(result.stdout)
            return gpus
        raise GpuUnavailable("nvidia-smi rejected the GPU query")

    def _drop_field(self, field: str) -> None:
        if _is_throttle_field(field) and field.startswith(EVENT_PREFIX + "."):
            log.info("nvidia-smi does not know %s; using %s", field, THROTTLE_PREFIX)
            self._fields = [
                THROTTLE_PREFIX + f[len(EVENT_PREFIX) :] if f == field else f for f in self._fields
            ]
        else:
            log.info("nvidia-smi does not know %s; it reads as unknown", field)
            self._fields = [f for f in self._fields if f != field]

    def _remember(self, stdout: str) -> None:
        """Driver version and each GPU's bus id -> (index, uuid, name) from a query."""
        for row in parse_rows(stdout, self._fields).rows:
            driver = clean(row.get("driver_version"))
            if driver:
                self._driver = driver
            key = bus_id_key(clean(row.get("pci.bus_id")))
            index = to_int(row.get("index"))
            uuid = clean(row.get("uuid"))
            if key and index is not None and uuid:
                self._known[key] = (index, uuid, clean(row.get("name")) or "")

    def _read_cuda_version(self) -> Optional[str]:
        try:
            result = self._run([])
        except GpuUnavailable as exc:
            log.debug("no CUDA version: %s", exc)
            return None
        return parse_cuda_version(result.stdout)

    def _refresh_remaps(self, force: bool) -> None:
        if not self._remap_supported:
            return
        now = self._clock()
        if not force and self._remap_at is not None and now - self._remap_at < REMAP_INTERVAL:
            return
        self._remap_at = now
        try:
            result = self._run(
                ["--query-remapped-rows=" + ",".join(REMAP_FIELDS), "--format=csv,noheader,nounits"]
            )
        except GpuUnavailable as exc:
            log.debug("remapped rows unread: %s", exc)
            return
        remaps = parse_remapped_rows(result.stdout)
        if not remaps and result.returncode != 0:
            log.info("nvidia-smi cannot query remapped rows: %s", failure_message(result))
            self._remap_supported = False
            return
        self._remaps = remaps

    def _read_apps(self) -> Dict[str, List[Dict[str, Any]]]:
        try:
            result = self._run(
                ["--query-compute-apps=" + ",".join(APPS_FIELDS), "--format=csv,noheader,nounits"]
            )
        except GpuUnavailable as exc:
            log.debug("processes unread: %s", exc)
            return {}
        return parse_compute_apps(result.stdout)


def _seconds(value: float) -> str:
    return ("%.1f" % value).rstrip("0").rstrip(".")
