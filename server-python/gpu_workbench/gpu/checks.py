"""GPU Workbench: Check GPU Health (`gpu/check`, `gpuwb gpu check`).

`run_checks` reads the GPUs once through a telemetry source and returns a GpuCheckReport
dict: static rows (driver and CUDA versions, GPU count, persistence mode, PCIe link, ECC,
row remapping), XID errors from the kernel log since boot, and, when the selected
interpreter has torch with CUDA, short throughput tests per GPU (torch_bench.py, run as a
separate process) compared with the model's datasheet peaks (peaks.py).

Row statuses: "pass" | "warn" | "fail" | "skip" (not run: says how to enable it) | "info".
The verdict is the worst of pass < warn < fail; skip and info rows do not count.

Per-GPU rows that come out identical on every GPU (same status, numbers and detail) are
folded into one machine row ("All 8 GPUs: ..."), so an 8-GPU report stays readable.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from . import peaks
from .source import GpuUnavailable, Source

log = logging.getLogger(__name__)

BENCH_SCRIPT = os.path.join(os.path.dirname(__file__), "torch_bench.py")
BENCH_TIMEOUT = 120.0  # seconds for the whole torch part (normally 5-25 s)
KILL_POLL = 0.1  # how often the bench wait looks at cancellation

STATUS_RANK = {"pass": 0, "warn": 1, "fail": 2}
PASS_RATIO = 0.6  # measured / datasheet peak at or above: pass
WARN_RATIO = 0.3  # at or above: warn; below: fail

GROUP_HINT = (
    "run as a user in the adm or systemd-journal group "
    "(`sudo usermod -aG adm,systemd-journal $USER`, then log in again) or as root; "
    "dmesg alone can be opened with `sudo sysctl kernel.dmesg_restrict=0`"
)
TORCH_HINT = "Select a Python with torch (a CUDA build) to run the throughput tests"

# run(argv, timeout) -> (exit code, stdout, stderr); raises OSError when argv[0] is missing.
Runner = Callable[[List[str], float], Tuple[int, str, str]]
# kernel_log() -> (text, how it was read) or (None, why it could not be read).
KernelLog = Callable[[], Tuple[Optional[str], str]]
Progress = Callable[[float, str], None]


def run_checks(
    source_factory: Callable[[], Source],
    params: Optional[Dict[str, Any]] = None,
    python: Optional[str] = None,
    expected_count: Optional[int] = None,
    benchmarks: Optional[bool] = None,
    progress: Optional[Progress] = None,
    cancelled: Optional[Callable[[], bool]] = None,
    run: Optional[Runner] = None,
    kernel_log: Optional[KernelLog] = None,
    untrusted: bool = False,
    bench_script: Optional[str] = None,
    bench_args: Sequence[str] = (),
    bench_timeout: float = BENCH_TIMEOUT,
) -> Dict[str, Any]:
    """Run every check and return a protocol.GpuCheckReport dict (never raises for a missing
    GPU, torch or kernel log: those become rows).

    source_factory: returns an opened Source (gpu.source.open_source) or raises
        GpuUnavailable; the source is closed before returning.
    params: a GpuCheckParams dict; its python / benchmarks / expectedGpuCount are used where
        the keyword arguments are None.
    python: interpreter for torch_bench.py (None: a "skip" row).
    expected_count: GPUs the machine should have (None: the count is "info").
    benchmarks: run the torch tests (default True); untrusted=True skips them (whatever
        benchmarks says) with a row that says to trust the workspace.
    progress(fraction 0..1, message); cancelled() polled often: once true, the torch process
        group is killed within ~1 s and the report so far comes back (the caller raises).
    run / kernel_log: injectable for tests (see Runner / KernelLog).
    bench_script / bench_args / bench_timeout: the torch script, extra arguments, and the
        limit for the whole torch part (seconds).
    """
    params = params or {}
    if python is None:
        python = params.get("python")
    if expected_count is None:
        expected_count = params.get("expectedGpuCount")
    if benchmarks is None:
        benchmarks = params.get("benchmarks") is not False
    report_progress: Progress = progress or (lambda _f, _m: None)
    is_cancelled: Callable[[], bool] = cancelled or (lambda: False)
    runner: Runner = run or run_command
    started = time.time()
    clock = time.monotonic()
    rows: List[Dict[str, Any]] = []

    report_progress(0.0, "Reading GPU telemetry")
    try:
        machine, reading = _read(source_factory)
    except GpuUnavailable as exc:
        rows.append(row("gpu", "GPU", "fail", "No GPU: %s" % _sentence(str(exc))))
        return make_report(rows, started, clock)
    except Exception as exc:  # a source bug or a driver failure mid-read
        log.exception("reading the GPUs failed")
        rows.append(row("gpu", "GPU", "fail", "No GPU: reading the GPUs failed (%s)" % exc))
        return make_report(rows, started, clock)

    rows.extend(static_rows(machine, reading, expected_count))
    if is_cancelled():
        return make_report(rows, started, clock)

    report_progress(0.1, "Reading XID errors from the kernel log")
    reader: KernelLog = kernel_log or (lambda: read_kernel_log(runner))
    rows.extend(xid_rows(reader))
    if is_cancelled():
        return make_report(rows, started, clock)

    if untrusted:
        rows.append(
            row(
                "torch",
                "Throughput tests",
                "skip",
                "The workspace is not trusted: the tests run the selected Python; "
                "trust the workspace to run them",
            )
        )
    elif not benchmarks:
        rows.append(row("torch", "Throughput tests", "skip", "Not requested (benchmarks: false)"))
    else:
        rows.extend(
            bench_rows(
                python,
                reading,
                lambda f, m: report_progress(0.15 + 0.85 * f, m),
                is_cancelled,
                bench_script or BENCH_SCRIPT,
                list(bench_args),
                bench_timeout,
            )
        )
    report_progress(1.0, "Done")
    return make_report(rows, started, clock)


# ---- rows and the report ----


def row(
    id: str,
    title: str,
    status: str,
    detail: str,
    gpu: Optional[int] = None,
    measured: Optional[float] = None,
    expected: Optional[float] = None,
    unit: Optional[str] = None,
) -> Dict[str, Any]:
    """One protocol.GpuCheckRow dict."""
    return {
        "id": id,
        "title": title,
        "status": status,
        "detail": detail,
        "gpu": gpu,
        "measured": None if measured is None else float(measured),
        "expected": None if expected is None else float(expected),
        "unit": unit,
    }


def verdict(rows: Sequence[Dict[str, Any]]) -> str:
    """The worst of pass < warn < fail; "pass" when no row ranks (all skip/info)."""
    worst = "pass"
    for r in rows:
        status = r["status"]
        if status in STATUS_RANK and STATUS_RANK[status] > STATUS_RANK[worst]:
            worst = status
    return worst


def make_report(rows: List[Dict[str, Any]], started: float, clock: float) -> Dict[str, Any]:
    report: Dict[str, Any] = {
        "machine": "local",
        "time": started,
        "durationMs": round((time.monotonic() - clock) * 1000.0, 1),
        "verdict": verdict(rows),
        "rows": rows,
        "markdown": "",
    }
    report["markdown"] = to_markdown(report)
    return report


def _cell(text: Any) -> str:
    """Table-safe text: `|` escaped, line breaks as spaces."""
    value = "" if text is None else str(text)
    value = value.replace("\\", "\\\\").replace("|", "\\|")
    return " ".join(value.split())


def _number(value: Optional[float], unit: Optional[str]) -> str:
    if value is None:
        return ""
    if float(value).is_integer():
        text = "%d" % int(value)
    elif abs(value) >= 100:
        text = "%.0f" % value
    elif abs(value) >= 1:
        text = "%.1f" % value
    else:
        text = "%.3g" % value
    return "%s %s" % (text, unit) if unit else text


def to_markdown(report: Dict[str, Any]) -> str:
    """The report as Markdown: a title with machine and time, one table, a verdict line."""
    when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(report["time"]))
    lines = [
        "# GPU health check: %s" % _cell(report["machine"]),
        "",
        "Run %s, took %.1f s." % (when, report["durationMs"] / 1000.0),
        "",
        "| Status | Check | GPU | Measured | Expected | Detail |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    counts: Dict[str, int] = {}
    for r in report["rows"]:
        counts[r["status"]] = counts.get(r["status"], 0) + 1
        lines.append(
            "| %s | %s | %s | %s | %s | %s |"
            % (
                r["status"].upper(),
                _cell(r["title"]),
                "-" if r["gpu"] is None else r["gpu"],
                _cell(_number(r["measured"], r["unit"])),
                _cell(_number(r["expected"], r["unit"])),
                _cell(r["detail"]),
            )
        )
    tally = ", ".join(
        "%d %s" % (counts[s], s) for s in ("fail", "warn", "pass", "skip", "info") if s in counts
    )
    lines += ["", "**Verdict: %s** (%s)" % (report["verdict"].upper(), tally or "no checks"), ""]
    return "\n".join(lines)


def _sentence(text: str) -> str:
    return text.strip().rstrip(".") or "no telemetry source"


# ---- static checks (one reading) ----


def _read(source_factory: Callable[[], Source]) -> Tuple[Dict[str, Any], List[Dict[str, Any]]]:
    source = source_factory()
    try:
        machine = source.machine() or {}
        reading = source.read(processes=False)
    finally:
        try:
            source.close()
        except Exception:
            log.debug("closing the source failed", exc_info=True)
    return machine, reading


def static_rows(
    machine: Dict[str, Any], reading: List[Dict[str, Any]], expected_count: Optional[int]
) -> List[Dict[str, Any]]:
    rows: List[Dict[str, Any]] = []
    driver = machine.get("driverVersion")
    rows.append(
        row(
            "driver",
            "Driver version",
            "info",
            "NVIDIA driver %s" % driver if driver else "The driver version was not reported",
        )
    )
    cuda = machine.get("cudaVersion")
    rows.append(
        row(
            "cuda",
            "CUDA version",
            "info",
            "The driver supports CUDA up to %s" % cuda
            if cuda
            else "The driver's CUDA version was not reported",
        )
    )
    rows.append(_count_row(reading, expected_count))
    live = [g for g in reading if not g.get("lost")]
    for g in reading:
        if g.get("lost"):
            rows.append(
                row(
                    "gpuLost",
                    "GPU on the bus",
                    "fail",
                    "The GPU has fallen off the bus (NVML: GPU is lost): reboot the node; "
                    "if it happens again the GPU or its slot needs service",
                    gpu=g["index"],
                )
            )
    for check in (_persistence_row, _pcie_row, _ecc_row, _remap_row):
        rows.extend(fold([check(g) for g in live], len(live)))
    return rows


def fold(rows: List[Dict[str, Any]], gpus: int) -> List[Dict[str, Any]]:
    """One machine row instead of identical per-GPU rows (2+ GPUs)."""
    if gpus < 2 or len(rows) != gpus:
        return rows
    keys = ("id", "title", "status", "detail", "measured", "expected", "unit")
    first = rows[0]
    if any(any(r[k] != first[k] for k in keys) for r in rows[1:]):
        return rows
    merged = dict(first)
    merged["gpu"] = None
    merged["detail"] = "All %d GPUs: %s" % (gpus, first["detail"])
    return [merged]


def _models(reading: List[Dict[str, Any]]) -> str:
    names: Dict[str, int] = {}
    for g in reading:
        name = g.get("name") or "unknown GPU"
        names[name] = names.get(name, 0) + 1
    return ", ".join("%d x %s" % (n, name) for name, n in names.items())


def _count_row(reading: List[Dict[str, Any]], expected: Optional[int]) -> Dict[str, Any]:
    found = len(reading)
    lost = sum(1 for g in reading if g.get("lost"))
    models = _models(reading) if reading else "no GPUs"
    if lost:
        models += "; %d lost (fallen off the bus)" % lost
    if expected is None:
        return row(
            "gpuCount",
            "GPU count",
            "info",
            "%s (set gpuWorkbench.gpu.expectedCount to check the count)" % models,
            measured=found,
            unit="GPUs",
        )
    if found == expected and not lost:
        status, detail = "pass", "%s, as expected" % models
    elif found < expected or lost:
        status = "fail"
        detail = "%s; expected %d: a GPU may have fallen off the bus or not be detected " % (
            models,
            expected,
        )
        detail += "(check `nvidia-smi -L`, `dmesg | grep -i nvrm`)"
    else:
        status, detail = "warn", "%s; more than the %d expected" % (models, expected)
    return row(
        "gpuCount", "GPU count", status, detail, measured=found, expected=expected, unit="GPUs"
    )


def _persistence_row(g: Dict[str, Any]) -> Dict[str, Any]:
    mode = g.get("persistenceMode")
    if mode is True:
        status, detail = "pass", "Persistence mode is on"
    elif mode is False:
        status = "warn"
        detail = (
            "Persistence mode is off: every new CUDA client pays the GPU's initialization "
            "(1-3 s per GPU); enable it with `sudo nvidia-smi -pm 1` or the "
            "nvidia-persistenced service"
        )
    else:
        status, detail = "info", "Persistence mode was not reported (none on Windows)"
    return row("persistence", "Persistence mode", status, detail, gpu=g["index"])


def _pcie_row(g: Dict[str, Any]) -> Dict[str, Any]:
    p = g.get("pcie") or {}
    gen, max_gen, width, max_width = (
        p.get("gen"),
        p.get("maxGen"),
        p.get("width"),
        p.get("maxWidth"),
    )
    index = g["index"]
    if gen is None or max_gen is None or width is None or max_width is None:
        return row("pcie", "PCIe link", "info", "The PCIe link was not reported", gpu=index)
    link = "Gen%d x%d (max Gen%d x%d)" % (gen, width, max_gen, max_width)
    args = {"gpu": index, "measured": gen, "expected": max_gen, "unit": "PCIe gen"}
    if gen >= max_gen and width >= max_width:
        return row("pcie", "PCIe link", "pass", link, **args)
    util = g.get("utilization")
    if not util:  # 0 % or unknown: the link trains down when idle to save power
        return row(
            "pcie",
            "PCIe link",
            "info",
            "%s: idle GPUs lower the link speed to save power; run the check while the "
            "GPU is busy to test the link" % link,
            **args,
        )
    if width < max_width:
        return row(
            "pcie",
            "PCIe link",
            "fail",
            "%s while busy (%d%% utilization): the link runs on fewer lanes; reseat the "
            "GPU or riser and check `sudo dmesg | grep -i 'limited by'`" % (link, util),
            **args,
        )
    return row(
        "pcie",
        "PCIe link",
        "warn",
        "%s while busy (%d%% utilization): the link trained to a lower generation; check the "
        "slot, riser and BIOS PCIe settings (`sudo dmesg | grep -i 'limited by'`)" % (link, util),
        **args,
    )


def _ecc_row(g: Dict[str, Any]) -> Dict[str, Any]:
    ecc = g.get("ecc") or {}
    cv, uv = ecc.get("correctedVolatile"), ecc.get("uncorrectedVolatile")
    ca, ua = ecc.get("correctedAggregate"), ecc.get("uncorrectedAggregate")
    index = g["index"]
    if all(v is None for v in (cv, uv, ca, ua)):
        return row(
            "ecc",
            "ECC errors",
            "skip",
            "ECC is off or not supported on this GPU (GeForce cards have none)",
            gpu=index,
        )
    args = {"gpu": index, "measured": uv, "expected": 0, "unit": "errors"}
    counts = "uncorrected %s since boot / %s lifetime, corrected %s / %s" % (
        _n(uv),
        _n(ua),
        _n(cv),
        _n(ca),
    )
    if uv:
        return row(
            "ecc",
            "ECC errors",
            "fail",
            "Uncorrected memory errors since boot (%s): results may be corrupt; drain the GPU, "
            "reset it and watch for XID 48/94/95" % counts,
            **args,
        )
    if ua:
        return row(
            "ecc",
            "ECC errors",
            "warn",
            "Uncorrected memory errors in the GPU's lifetime (%s): keep an eye on it" % counts,
            **args,
        )
    return row("ecc", "ECC errors", "pass", "No uncorrected errors (%s)" % counts, **args)


def _n(value: Optional[int]) -> str:
    return "?" if value is None else str(value)


def _remap_row(g: Dict[str, Any]) -> Dict[str, Any]:
    remap = g.get("remappedRows")
    index = g["index"]
    if not remap:
        return row(
            "rowRemap",
            "Row remapping",
            "skip",
            "Not supported (row remapping exists from Ampere on)",
            gpu=index,
        )
    corr, unc = remap.get("correctable"), remap.get("uncorrectable")
    counts = "%s rows remapped for uncorrectable, %s for correctable errors" % (_n(unc), _n(corr))
    if remap.get("failure"):
        return row(
            "rowRemap",
            "Row remapping",
            "fail",
            "A row remap failed (%s): the GPU needs service (RMA) if it fails again after a "
            "reset" % counts,
            gpu=index,
        )
    if remap.get("pending"):
        return row(
            "rowRemap",
            "Row remapping",
            "warn",
            "A row remap is pending (%s): reset the GPU or reboot to apply it" % counts,
            gpu=index,
        )
    return row(
        "rowRemap", "Row remapping", "pass", "No failed or pending remaps (%s)" % counts, gpu=index
    )


# ---- XIDs from the kernel log ----


def run_command(argv: List[str], timeout: float) -> Tuple[int, str, str]:
    """The default Runner: run argv with a C locale; raises OSError when it is missing."""
    env = dict(os.environ, LC_ALL="C", SYSTEMD_COLORS="0", SYSTEMD_PAGER="")
    proc = subprocess.run(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        timeout=timeout,
        env=env,
        check=False,
    )
    return (
        proc.returncode,
        proc.stdout.decode("utf-8", "replace"),
        proc.stderr.decode("utf-8", "replace"),
    )


_DENIED = (
    "permission denied",
    "not permitted",
    "insufficient permissions",
    "not seeing messages",
    "access denied",
)


def read_kernel_log(run: Runner) -> Tuple[Optional[str], str]:
    """The kernel log since boot: `journalctl -k -b --no-pager`, else `dmesg`.

    Returns (text, "journalctl"|"dmesg") or (None, why neither could be read)."""
    reasons: List[str] = []
    for argv in (["journalctl", "-k", "-b", "--no-pager", "-q"], ["dmesg"]):
        name = argv[0]
        try:
            code, out, err = run(argv, 15.0)
        except FileNotFoundError:
            reasons.append("%s is not installed" % name)
            continue
        except subprocess.TimeoutExpired:
            reasons.append("%s timed out" % name)
            continue
        except OSError as exc:
            reasons.append("%s: %s" % (name, exc.strerror or exc))
            continue
        low = err.lower()
        first = next((line.strip() for line in err.splitlines() if line.strip()), "")
        if any(word in low for word in _DENIED):
            reasons.append("%s: %s" % (name, first or "permission denied"))
            continue
        lines = [
            line for line in out.splitlines() if line.strip() and line.strip() != "-- No entries --"
        ]
        if code != 0 or not lines:
            reasons.append(
                "%s: %s" % (name, first or ("exit code %d" % code if code else "no entries"))
            )
            continue
        return out, name
    return None, "; ".join(reasons)


def _xid_module() -> Any:
    from . import xid

    return xid


def _status_of(severity: str) -> str:
    s = (severity or "").lower()
    if s in ("critical", "fail", "error", "fatal"):
        return "fail"
    if s in ("warn", "warning"):
        return "warn"
    return "info"


def xid_rows(kernel_log: KernelLog) -> List[Dict[str, Any]]:
    try:
        text, how = kernel_log()
    except Exception as exc:
        text, how = None, str(exc)
    if text is None:
        denied = any(word in how.lower() for word in _DENIED)
        hint = "To include XIDs, " + GROUP_HINT if denied else "XIDs cannot be checked here"
        return [
            row(
                "xid",
                "XID errors",
                "skip",
                "Could not read the kernel log (%s). %s" % (how or "no kernel log", hint),
            )
        ]
    try:
        xid = _xid_module()
        events = xid.parse_kernel_log(text)
    except Exception as exc:
        log.exception("parsing the kernel log failed")
        return [row("xid", "XID errors", "skip", "Could not parse the kernel log: %s" % exc)]
    if not events:
        return [
            row(
                "xid",
                "XID errors",
                "pass",
                "No XID errors in the kernel log since boot (read with %s)" % how,
                measured=0,
                unit="events",
            )
        ]
    groups: Dict[Tuple[str, int], List[str]] = {}
    for bus, code, line in events:
        groups.setdefault((str(bus), int(code)), []).append(line)
    rows = []
    order = sorted(
        groups.items(), key=lambda kv: (-STATUS_RANK.get(_describe(xid, kv[0][1])[1], 0), kv[0])
    )
    for (bus, code), lines in order[:20]:
        meaning, status, action = _describe(xid, code)
        times = "once" if len(lines) == 1 else "%d times" % len(lines)
        detail = "XID %d on PCI %s, %s since boot: %s" % (code, bus, times, meaning)
        if action:
            detail += ". Action: %s" % action
        rows.append(row("xid", "XID %d" % code, status, detail, measured=len(lines), unit="events"))
    if len(order) > 20:
        rows.append(row("xid", "XID errors", "info", "%d more kinds not shown" % (len(order) - 20)))
    return rows


def _describe(xid: Any, code: int) -> Tuple[str, str, str]:
    try:
        meaning, severity, action = xid.describe(code)
    except Exception:
        return "unknown XID", "warn", ""
    return str(meaning), _status_of(str(severity)), str(action or "")


# ---- the torch tests ----


def bench_rows(
    python: Optional[str],
    reading: List[Dict[str, Any]],
    progress: Progress,
    cancelled: Callable[[], bool],
    script: str,
    extra_args: List[str],
    timeout: float,
) -> List[Dict[str, Any]]:
    title = "Throughput tests"
    if not python:
        return [row("torch", title, "skip", "No Python interpreter selected. %s" % TORCH_HINT)]
    exe = python if os.path.sep in python else (shutil.which(python) or python)
    if not (os.path.isfile(exe) and os.access(exe, os.X_OK)):
        return [row("torch", title, "skip", "Python not found at %s. %s" % (python, TORCH_HINT))]
    progress(0.0, "Starting the throughput tests")
    outcome = run_bench(
        [exe, script, "--device", "cuda", *extra_args], progress, cancelled, timeout
    )
    if outcome.cancelled:
        return [row("torch", title, "skip", "Cancelled")]
    result = outcome.result
    if outcome.error and result is None:
        return [row("torch", title, "skip", "Could not start %s: %s" % (python, outcome.error))]
    if result is None:
        if outcome.timed_out:
            return [
                row(
                    "torch",
                    title,
                    "warn",
                    "The tests did not finish within %d s and were stopped (a hung GPU, or a "
                    "very slow start of %s)" % (timeout, python),
                )
            ]
        tail = " ".join(outcome.stderr_tail[-3:]) or "no output"
        return [
            row(
                "torch",
                title,
                "warn",
                "The test process exited with code %s without a result: %s"
                % (outcome.returncode, tail[:300]),
            )
        ]
    rows = result_rows(result, python, reading)
    if outcome.timed_out or outcome.incomplete:
        why = (
            "did not finish within %d s and were stopped" % timeout
            if outcome.timed_out
            else "exited with code %s before finishing (%s)"
            % (outcome.returncode, " ".join(outcome.stderr_tail[-2:])[:300] or "no message")
        )
        rows.insert(
            min(1, len(rows)),
            row("torch", title, "warn", "The tests %s; the rows below are what finished" % why),
        )
    return rows


def result_rows(
    result: Dict[str, Any], python: str, reading: List[Dict[str, Any]]
) -> List[Dict[str, Any]]:
    """Rows for a torch_bench.py result, compared with the datasheet peaks."""
    title = "Throughput tests"
    version = result.get("torch")
    errors = result.get("errors") or []
    if not version:
        why = errors[0].get("message") if errors and isinstance(errors[0], dict) else "not found"
        return [
            row(
                "torch",
                title,
                "skip",
                "torch is not installed in %s (%s). %s" % (python, why, TORCH_HINT),
            )
        ]
    cuda_version = result.get("cudaVersion")
    if not result.get("cuda"):
        if cuda_version:
            detail = (
                "torch %s (CUDA %s) found but CUDA is not available: the driver may be too "
                "old for CUDA %s, or CUDA_VISIBLE_DEVICES hides the GPUs"
                % (version, cuda_version, cuda_version)
            )
        else:
            detail = (
                "torch %s found but CUDA is not available (CPU-only build?): install a CUDA "
                "build of torch in %s or select another Python" % (version, python)
            )
        return [row("torch", title, "skip", detail)]
    rows = [
        row(
            "torch",
            "torch",
            "info",
            "torch %s (CUDA %s) in %s" % (version, cuda_version or "?", python),
        )
    ]
    names = {g.get("index"): g.get("name") for g in reading}
    device_errors: Dict[Tuple[Any, str], str] = {}
    for e in errors:
        if isinstance(e, dict):
            device_errors[(e.get("device"), str(e.get("test")))] = str(e.get("message"))
    for d in result.get("devices") or []:
        index = d.get("index")
        name = names.get(index) or d.get("name") or ""
        model = peaks.peak(name) or peaks.peak(d.get("name"))
        rows.append(_matmul_row(d, index, name, model, device_errors.get((index, "matmul"))))
        rows.append(_bandwidth_row(d, index, name, model, device_errors.get((index, "bandwidth"))))
    rows.extend(_p2p_rows(result.get("p2p")))
    if isinstance(result.get("p2p"), list):
        rows.append(_all_reduce_row(result, device_errors.get((None, "all-reduce"))))
    return rows


def _error_row(id: str, title: str, index: Any, message: str) -> Dict[str, Any]:
    if "out of memory" in message.lower():
        return row(
            id,
            title,
            "warn",
            "Out of GPU memory (%s): other processes hold the memory; re-run when it is free"
            % message,
            gpu=index,
        )
    return row(id, title, "fail", "The test failed: %s" % message, gpu=index)


def _compare(measured: float, peak: float) -> str:
    ratio = measured / peak if peak else 0.0
    if ratio >= PASS_RATIO:
        return "pass"
    if ratio >= WARN_RATIO:
        return "warn"
    return "fail"


def _matmul_row(
    d: Dict[str, Any], index: Any, name: str, model: Optional[peaks.Peak], error: Optional[str]
) -> Dict[str, Any]:
    title = "Matmul throughput"
    value = d.get("matmulTflops")
    if value is None:
        return _error_row("matmul", title, index, error or "no result")
    dtype = d.get("dtype") or "?"
    if model is None or dtype not in ("bfloat16", "float16"):
        why = "no datasheet peak for %s" % (name or "this GPU") if model is None else dtype
        return row(
            "matmul",
            title,
            "info",
            "%s matmul; %s" % (dtype, why),
            gpu=index,
            measured=value,
            unit="TFLOPS",
        )
    status = _compare(value, model.tensorTflops)
    detail = "%s matmul at %.0f%% of the %s's dense tensor peak" % (
        dtype,
        100.0 * value / model.tensorTflops,
        model.model,
    )
    if status != "pass":
        detail += (
            ": check clocks and throttling (`nvidia-smi -q -d PERFORMANCE,CLOCK`), power "
            "limits and other processes on the GPU"
        )
    return row(
        "matmul",
        title,
        status,
        detail,
        gpu=index,
        measured=value,
        expected=model.tensorTflops,
        unit="TFLOPS",
    )


def _bandwidth_row(
    d: Dict[str, Any], index: Any, name: str, model: Optional[peaks.Peak], error: Optional[str]
) -> Dict[str, Any]:
    title = "Memory bandwidth"
    value = d.get("bandwidthGBs")
    if value is None:
        return _error_row("bandwidth", title, index, error or "no result")
    if model is None:
        return row(
            "bandwidth",
            title,
            "info",
            "Device-to-device copy; no datasheet peak for %s" % (name or "this GPU"),
            gpu=index,
            measured=value,
            unit="GB/s",
        )
    status = _compare(value, model.bandwidthGBs)
    detail = "Device-to-device copy at %.0f%% of the %s's memory bandwidth" % (
        100.0 * value / model.bandwidthGBs,
        model.model,
    )
    if status != "pass":
        detail += ": check memory clocks and other processes on the GPU"
    return row(
        "bandwidth",
        title,
        status,
        detail,
        gpu=index,
        measured=value,
        expected=model.bandwidthGBs,
        unit="GB/s",
    )


def _p2p_rows(p2p: Any) -> List[Dict[str, Any]]:
    if not isinstance(p2p, list) or not p2p:
        return []
    done = [p for p in p2p if isinstance(p.get("GBs"), (int, float))]
    failed = [p for p in p2p if p not in done]
    title = "GPU-to-GPU copy"
    rows: List[Dict[str, Any]] = []
    if done:
        values = sorted(p["GBs"] for p in done)
        median = values[len(values) // 2]
        slowest = min(done, key=lambda p: p["GBs"])
        peer = sum(1 for p in p2p if p.get("peer"))
        slow = [p for p in done if p["GBs"] < 0.5 * median]
        detail = "%d pairs: slowest %.1f GB/s (GPU %s -> %s), median %.1f, fastest %.1f GB/s; " % (
            len(done),
            slowest["GBs"],
            slowest["src"],
            slowest["dst"],
            median,
            values[-1],
        )
        detail += (
            "peer access on all pairs"
            if peer == len(p2p)
            else "peer access on %d of %d pairs (the others copy through the host)"
            % (peer, len(p2p))
        )
        status = "info"
        if slow:
            status = "warn"
            detail += (
                "; below half the median: %s (check `nvidia-smi topo -m` and NVLink "
                % ", ".join("%s->%s %.1f GB/s" % (p["src"], p["dst"], p["GBs"]) for p in slow[:8])
            )
            detail += "errors with `nvidia-smi nvlink -e`)"
        rows.append(row("p2p", title, status, detail, measured=slowest["GBs"], unit="GB/s"))
    if failed:
        rows.append(
            row(
                "p2p",
                title,
                "warn",
                "The copy failed between %s"
                % ", ".join("GPU %s -> %s" % (p.get("src"), p.get("dst")) for p in failed[:8]),
            )
        )
    return rows


def _all_reduce_row(result: Dict[str, Any], error: Optional[str]) -> Dict[str, Any]:
    title = "All-reduce bandwidth"
    value = result.get("allReduceGBs")
    if isinstance(value, (int, float)):
        return row(
            "allReduce",
            title,
            "info",
            "Single-process NCCL all-reduce over every GPU (bus bandwidth, as nccl-tests reports)",
            measured=value,
            unit="GB/s",
        )
    if error:
        return row("allReduce", title, "warn", "The NCCL all-reduce failed: %s" % error)
    notes = [n for n in result.get("notes") or [] if "all-reduce" in str(n)]
    why = notes[0] if notes else "not measured"
    return row("allReduce", title, "skip", "%s; the GPU-to-GPU copy above covers the links" % why)


class BenchOutcome:
    def __init__(self) -> None:
        self.result: Optional[Dict[str, Any]] = None
        self.cancelled = False
        self.timed_out = False
        self.incomplete = False  # the result is the last PARTIAL line
        self.returncode: Optional[int] = None
        self.error: Optional[str] = None
        self.stderr_tail: List[str] = []


# Benchmarks running now, so the backend can kill them when it exits (a cancelled check's
# thread may not get to it before the process ends).
_RUNNING: "set[subprocess.Popen]" = set()
_RUNNING_LOCK = threading.Lock()


def kill_running() -> None:
    """Kill every benchmark still running (called when the backend shuts down or exits)."""
    with _RUNNING_LOCK:
        running = list(_RUNNING)
    for proc in running:
        _kill_group(proc)


def run_bench(
    argv: List[str], progress: Progress, cancelled: Callable[[], bool], timeout: float
) -> BenchOutcome:
    """Run torch_bench.py; stream its PROGRESS lines; kill its process group on cancel or
    timeout (within ~KILL_POLL s); the result is its stdout JSON (or its last PARTIAL)."""
    outcome = BenchOutcome()
    env = dict(os.environ)
    env.pop("CUDA_VISIBLE_DEVICES", None)  # the check is about every GPU of the machine
    env["CUDA_DEVICE_ORDER"] = "PCI_BUS_ID"  # torch's indices = NVML's indices
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONIOENCODING"] = "utf-8"
    kwargs: Dict[str, Any] = {}
    if os.name == "posix":
        kwargs["start_new_session"] = True
    else:
        kwargs["creationflags"] = getattr(subprocess, "CREATE_NEW_PROCESS_GROUP", 0)
    try:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            **kwargs,
        )
    except OSError as exc:
        outcome.error = exc.strerror or str(exc)
        return outcome
    with _RUNNING_LOCK:
        _RUNNING.add(proc)
    try:
        return _follow_bench(proc, outcome, progress, cancelled, timeout)
    finally:
        with _RUNNING_LOCK:
            _RUNNING.discard(proc)


def _follow_bench(
    proc: subprocess.Popen,
    outcome: BenchOutcome,
    progress: Progress,
    cancelled: Callable[[], bool],
    timeout: float,
) -> BenchOutcome:
    stdout_chunks: List[bytes] = []
    partial: List[Optional[Dict[str, Any]]] = [None]

    def read_stdout() -> None:
        stream = proc.stdout
        assert stream is not None
        for chunk in iter(lambda: stream.read(65536), b""):
            stdout_chunks.append(chunk)

    def read_stderr() -> None:
        assert proc.stderr is not None
        for raw in iter(proc.stderr.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip("\r\n")
            if line.startswith("PROGRESS "):
                parts = line.split(" ", 2)
                try:
                    fraction = float(parts[1])
                except (IndexError, ValueError):
                    continue
                try:
                    progress(max(0.0, min(1.0, fraction)), parts[2] if len(parts) > 2 else "")
                except Exception:
                    log.debug("progress callback failed", exc_info=True)
            elif line.startswith("PARTIAL "):
                try:
                    partial[0] = json.loads(line[len("PARTIAL ") :])
                except ValueError:
                    pass
            elif line.strip():
                outcome.stderr_tail = [*outcome.stderr_tail, line.strip()][-20:]

    readers = [
        threading.Thread(target=read_stdout, daemon=True),
        threading.Thread(target=read_stderr, daemon=True),
    ]
    for t in readers:
        t.start()
    deadline = time.monotonic() + timeout
    while True:
        try:
            proc.wait(timeout=KILL_POLL)
            break
        except subprocess.TimeoutExpired:
            pass
        if cancelled():
            outcome.cancelled = True
            _kill_group(proc)
            break
        if time.monotonic() >= deadline:
            outcome.timed_out = True
            _kill_group(proc)
            break
    for t in readers:
        t.join(timeout=2.0)
    outcome.returncode = proc.returncode
    if outcome.cancelled:
        return outcome
    if not outcome.timed_out:
        text = b"".join(stdout_chunks).decode("utf-8", "replace")
        for line in reversed(text.splitlines()):
            if line.strip().startswith("{"):
                try:
                    value = json.loads(line)
                except ValueError:
                    continue
                if isinstance(value, dict):
                    outcome.result = value
                    break
    if outcome.result is None and partial[0] is not None:
        outcome.result = partial[0]
        outcome.incomplete = True
    return outcome


def _kill_group(proc: subprocess.Popen) -> None:
    """Kill the bench and everything it started (its own session on POSIX)."""
    try:
        if os.name == "posix":
            os.killpg(proc.pid, signal.SIGKILL)
        else:
            proc.kill()
    except (ProcessLookupError, PermissionError, OSError):
        pass
    try:
        proc.wait(timeout=2.0)
    except subprocess.TimeoutExpired:
        log.warning("the torch test process %d did not exit after SIGKILL", proc.pid)


if __name__ == "__main__":  # pragma: no cover - manual use: python -m gpu_workbench.gpu.checks
    from .source import open_source

    def _print_progress(fraction: float, message: str) -> None:
        sys.stderr.write("%3d%% %s\n" % (fraction * 100, message))

    report = run_checks(open_source, python=sys.executable, progress=_print_progress)
    sys.stdout.write(report["markdown"])
