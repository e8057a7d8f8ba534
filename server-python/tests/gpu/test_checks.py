"""GPU Workbench: Check GPU Health (gpu/checks.py, gpu/peaks.py, gpu/torch_bench.py).

The static rows are checked with a stub Source; the torch part runs torch_bench.py for real
in a Python that has torch (GPUWB_TORCH_PYTHON, else /usr/bin/python3; CPU only here) and
fake bench scripts for cancellation, timeouts and a CUDA machine's results.
"""

from __future__ import annotations

import copy
import functools
import importlib.util
import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Dict, List, Optional, Tuple

import pytest
from shapes import assert_shape

from gpu_workbench import protocol
from gpu_workbench.gpu import checks, peaks
from gpu_workbench.gpu.source import GpuUnavailable, Source, empty_gpu

BENCH = checks.BENCH_SCRIPT
H100 = "NVIDIA H100 80GB HBM3"


class StubSource(Source):
    name = "stub"

    def __init__(
        self,
        reading: List[Dict[str, Any]],
        machine: Optional[Dict[str, Any]] = None,
        read_error: Optional[BaseException] = None,
    ) -> None:
        self.reading = reading
        self.info = (
            machine
            if machine is not None
            else {"driverVersion": "550.54.15", "cudaVersion": "12.4"}
        )
        self.read_error = read_error
        self.closed = False

    def open(self) -> None:
        pass

    def machine(self) -> Dict[str, Optional[str]]:
        return dict(self.info)

    def read(self, processes: bool = True) -> List[Dict[str, Any]]:
        if self.read_error is not None:
            raise self.read_error
        return copy.deepcopy(self.reading)

    def close(self) -> None:
        self.closed = True


def gpu(index: int, name: str = H100, **values: Any) -> Dict[str, Any]:
    """A healthy, idle GPU; keyword arguments override (nested dicts are merged)."""
    g = empty_gpu(index, "GPU-%d" % index, name)
    g.update(
        utilization=0,
        persistenceMode=True,
        pcie={"gen": 5, "maxGen": 5, "width": 16, "maxWidth": 16},
        ecc={
            "correctedVolatile": 0,
            "uncorrectedVolatile": 0,
            "correctedAggregate": 0,
            "uncorrectedAggregate": 0,
        },
        remappedRows={"correctable": 0, "uncorrectable": 0, "pending": False, "failure": False},
    )
    for key, value in values.items():
        if isinstance(value, dict) and isinstance(g.get(key), dict):
            g[key] = dict(g[key], **value)
        else:
            g[key] = value
    return g


def check(reading: List[Dict[str, Any]], **kwargs: Any) -> Dict[str, Any]:
    """run_checks on a stub source, no benchmarks, an empty kernel log unless given."""
    kwargs.setdefault("benchmarks", False)
    kwargs.setdefault("kernel_log", lambda: ("", "journalctl"))
    source = StubSource(reading)
    report = checks.run_checks(lambda: source, **kwargs)
    assert source.closed
    assert_shape(protocol.GpuCheckReport, report)
    return report


def rows_of(report: Dict[str, Any], row_id: str) -> List[Dict[str, Any]]:
    return [r for r in report["rows"] if r["id"] == row_id]


def one(report: Dict[str, Any], row_id: str) -> Dict[str, Any]:
    found = rows_of(report, row_id)
    assert len(found) == 1, found
    return found[0]


# ---- static rows ----


def test_healthy_machine_passes_and_folds_identical_rows():
    report = check([gpu(0), gpu(1)], expected_count=2)
    assert report["verdict"] == "pass"
    assert report["machine"] == "local"
    assert report["durationMs"] >= 0
    assert abs(report["time"] - time.time()) < 60
    assert one(report, "driver")["status"] == "info"
    assert "550.54.15" in one(report, "driver")["detail"]
    assert "12.4" in one(report, "cuda")["detail"]
    count = one(report, "gpuCount")
    assert (count["status"], count["measured"], count["expected"]) == ("pass", 2.0, 2.0)
    assert "2 x NVIDIA H100 80GB HBM3" in count["detail"]
    for row_id in ("persistence", "pcie", "ecc", "rowRemap"):
        r = one(report, row_id)
        assert r["status"] == "pass", r
        assert r["gpu"] is None
        assert r["detail"].startswith("All 2 GPUs: ")
    assert one(report, "xid")["status"] == "pass"
    assert one(report, "torch")["status"] == "skip"


def test_rows_differing_between_gpus_stay_per_gpu():
    report = check([gpu(0), gpu(1, persistenceMode=False)])
    rows = rows_of(report, "persistence")
    assert [(r["gpu"], r["status"]) for r in rows] == [(0, "pass"), (1, "warn")]
    assert "nvidia-smi -pm 1" in rows[1]["detail"]
    assert report["verdict"] == "warn"


@pytest.mark.parametrize(
    ("found", "expected", "status"),
    [(2, 2, "pass"), (1, 2, "fail"), (3, 2, "warn"), (2, None, "info")],
)
def test_gpu_count_against_expected(found, expected, status):
    report = check([gpu(i) for i in range(found)], expected_count=expected)
    r = one(report, "gpuCount")
    assert r["status"] == status
    assert r["measured"] == found
    assert r["expected"] == (None if expected is None else float(expected))
    if expected is None:
        assert "expectedCount" in r["detail"]


def test_expected_count_from_params():
    report = check([gpu(0)], params={"expectedGpuCount": 8})
    assert one(report, "gpuCount")["status"] == "fail"
    assert report["verdict"] == "fail"


def test_lost_gpu_fails_and_is_left_out_of_other_checks():
    report = check([gpu(0), empty_gpu(1, "GPU-1", H100, lost=True)], expected_count=2)
    lost = one(report, "gpuLost")
    assert (lost["status"], lost["gpu"]) == ("fail", 1)
    assert "fallen off the bus" in lost["detail"]
    assert one(report, "gpuCount")["status"] == "fail"
    assert [r["gpu"] for r in rows_of(report, "ecc")] == [0]
    assert report["verdict"] == "fail"


@pytest.mark.parametrize(("mode", "status"), [(True, "pass"), (False, "warn"), (None, "info")])
def test_persistence_mode(mode, status):
    assert one(check([gpu(0, persistenceMode=mode)]), "persistence")["status"] == status


@pytest.mark.parametrize(
    ("pcie", "util", "status", "words"),
    [
        ({"gen": 5, "width": 16}, 90, "pass", "Gen5 x16 (max Gen5 x16)"),
        ({"gen": 1, "width": 16}, 0, "info", "idle GPUs lower the link speed"),
        ({"gen": 1, "width": 16}, None, "info", "idle GPUs lower the link speed"),
        ({"gen": 3, "width": 16}, 85, "warn", "trained to a lower generation"),
        ({"gen": 5, "width": 8}, 85, "fail", "fewer lanes"),
        ({"gen": 1, "width": 8}, 0, "info", "run the check while the GPU is busy"),
        ({"gen": None}, 50, "info", "not reported"),
    ],
)
def test_pcie_link(pcie, util, status, words):
    r = one(check([gpu(0, pcie=pcie, utilization=util)]), "pcie")
    assert r["status"] == status
    assert words in r["detail"]
    if pcie.get("gen") is not None:
        assert (r["measured"], r["expected"], r["unit"]) == (float(pcie["gen"]), 5.0, "PCIe gen")


@pytest.mark.parametrize(
    ("ecc", "status"),
    [
        ({}, "pass"),
        ({"correctedVolatile": 12, "correctedAggregate": 40}, "pass"),
        ({"uncorrectedAggregate": 1}, "warn"),
        ({"uncorrectedVolatile": 1, "uncorrectedAggregate": 1}, "fail"),
        (
            {
                "correctedVolatile": None,
                "uncorrectedVolatile": None,
                "correctedAggregate": None,
                "uncorrectedAggregate": None,
            },
            "skip",
        ),
    ],
)
def test_ecc(ecc, status):
    r = one(check([gpu(0, ecc=ecc)]), "ecc")
    assert r["status"] == status
    if status != "skip":
        assert r["expected"] == 0.0
        assert r["unit"] == "errors"


@pytest.mark.parametrize(
    ("remap", "status", "words"),
    [
        ({}, "pass", "No failed or pending"),
        ({"correctable": 3, "uncorrectable": 1}, "pass", "1 rows remapped"),
        ({"pending": True}, "warn", "reboot"),
        ({"failure": True}, "fail", "RMA"),
        ({"pending": True, "failure": True}, "fail", "RMA"),
    ],
)
def test_row_remapping(remap, status, words):
    r = one(check([gpu(0, remappedRows=remap)]), "rowRemap")
    assert r["status"] == status
    assert words in r["detail"]


def test_row_remapping_not_supported_is_skip():
    r = one(check([gpu(0, name="Tesla V100-SXM2-16GB", remappedRows=None)]), "rowRemap")
    assert r["status"] == "skip"


def test_unknown_machine_versions_are_info():
    source = StubSource([gpu(0)], machine={"driverVersion": None, "cudaVersion": None})
    report = checks.run_checks(lambda: source, benchmarks=False, kernel_log=lambda: ("", "dmesg"))
    assert_shape(protocol.GpuCheckReport, report)
    assert "not reported" in one(report, "driver")["detail"]
    assert "not reported" in one(report, "cuda")["detail"]


# ---- no GPU ----


def test_no_gpu_is_one_fail_row():
    def factory():
        raise GpuUnavailable("NVIDIA driver not loaded (libnvidia-ml.so.1 not found).")

    report = checks.run_checks(factory, python=sys.executable)
    assert_shape(protocol.GpuCheckReport, report)
    assert report["verdict"] == "fail"
    assert len(report["rows"]) == 1
    r = report["rows"][0]
    assert r["status"] == "fail"
    assert r["detail"] == "No GPU: NVIDIA driver not loaded (libnvidia-ml.so.1 not found)"
    assert "No GPU" in report["markdown"]


def test_read_failure_is_a_fail_row_and_closes_the_source():
    source = StubSource([], read_error=GpuUnavailable("GPU is lost"))
    report = checks.run_checks(lambda: source, benchmarks=False)
    assert_shape(protocol.GpuCheckReport, report)
    assert source.closed
    assert report["rows"][0]["detail"] == "No GPU: GPU is lost"
    source = StubSource([], read_error=RuntimeError("boom"))
    report = checks.run_checks(lambda: source, benchmarks=False)
    assert report["verdict"] == "fail" and "boom" in report["rows"][0]["detail"]


# ---- XIDs from the kernel log ----

KERNEL_LOG = """\
Nov 23 01:00:00 host kernel: Linux version 6.1.0
Nov 23 01:02:03 host kernel: NVRM: Xid (PCI:0000:10:1c): 79, pid=1234, GPU has fallen off the bus.
Nov 23 01:02:04 host kernel: NVRM: Xid (PCI:0000:10:1c): 79, pid=1234, GPU has fallen off the bus.
Nov 23 01:03:00 host kernel: NVRM: Xid (PCI:0000:20:00): 13, pid=99, Graphics Exception
Nov 23 01:04:00 host kernel: NVRM: Xid (PCI:0000:20:00): 999, pid=99, something new
"""


def stub_xid(monkeypatch):
    def parse_kernel_log(text):
        out = []
        for line in text.splitlines():
            if "NVRM: Xid (PCI:" in line:
                bus = line.split("(PCI:")[1].split(")")[0]
                code = int(line.split("): ")[1].split(",")[0])
                out.append((bus, code, line))
        return out

    table = {
        79: ("GPU has fallen off the bus", "critical", "reboot the node"),
        13: ("graphics engine exception", "warn", ""),
    }

    def describe(code):
        if code not in table:
            raise KeyError(code)
        return table[code]

    monkeypatch.setattr(
        checks,
        "_xid_module",
        lambda: SimpleNamespace(parse_kernel_log=parse_kernel_log, describe=describe),
    )


def test_xid_rows_from_the_kernel_log(monkeypatch):
    stub_xid(monkeypatch)
    report = check([gpu(0)], kernel_log=lambda: (KERNEL_LOG, "journalctl"))
    rows = rows_of(report, "xid")
    assert [(r["title"], r["status"], r["measured"]) for r in rows] == [
        ("XID 79", "fail", 2.0),
        ("XID 13", "warn", 1.0),
        ("XID 999", "warn", 1.0),
    ]
    assert rows[0]["detail"] == (
        "XID 79 on PCI 0000:10:1c, 2 times since boot: GPU has fallen off the bus. "
        "Action: reboot the node"
    )
    assert "once since boot" in rows[1]["detail"]
    assert rows[2]["detail"].endswith("unknown XID")
    assert report["verdict"] == "fail"


def test_xid_rows_with_the_real_catalog():
    if importlib.util.find_spec("gpu_workbench.gpu.xid") is None:
        pytest.skip("gpu/xid.py is not there yet")
    report = check([gpu(0)], kernel_log=lambda: (KERNEL_LOG, "dmesg"))
    rows = rows_of(report, "xid")
    assert {r["title"] for r in rows} == {"XID 79", "XID 13", "XID 999"}
    assert {r["title"]: r["status"] for r in rows}["XID 79"] == "fail"
    none = check([gpu(0)], kernel_log=lambda: ("kernel: nothing to see\n", "dmesg"))
    assert "read with dmesg" in one(none, "xid")["detail"]


class FakeRunner:
    """Answers journalctl / dmesg from a table: argv[0] -> (rc, out, err) or an exception."""

    def __init__(self, answers: Dict[str, Any]) -> None:
        self.answers = answers
        self.calls: List[List[str]] = []

    def __call__(self, argv: List[str], timeout: float):
        self.calls.append(argv)
        answer = self.answers[argv[0]]
        if isinstance(answer, BaseException):
            raise answer
        return answer


JOURNAL_DENIED = (
    0,
    "-- No entries --\n",
    "Hint: You are currently not seeing messages from other users and the system.\n"
    "      Users in groups 'adm', 'systemd-journal' can see all messages.\n",
)
DMESG_DENIED = (1, "", "dmesg: read kernel buffer failed: Operation not permitted\n")


def test_kernel_log_permission_denied_is_a_skip_that_says_how():
    runner = FakeRunner({"journalctl": JOURNAL_DENIED, "dmesg": DMESG_DENIED})
    report = check([gpu(0)], kernel_log=None, run=runner)
    r = one(report, "xid")
    assert r["status"] == "skip"
    assert "not seeing messages" in r["detail"]
    assert "Operation not permitted" in r["detail"]
    assert "adm or systemd-journal group" in r["detail"]
    assert runner.calls == [["journalctl", "-k", "-b", "--no-pager", "-q"], ["dmesg"]]
    assert report["verdict"] == "pass"


def test_kernel_log_falls_back_to_dmesg():
    runner = FakeRunner(
        {"journalctl": FileNotFoundError(2, "No such file"), "dmesg": (0, KERNEL_LOG, "")}
    )
    assert checks.read_kernel_log(runner) == (KERNEL_LOG, "dmesg")
    runner = FakeRunner({"journalctl": (0, "-- No entries --\n", ""), "dmesg": (0, KERNEL_LOG, "")})
    assert checks.read_kernel_log(runner) == (KERNEL_LOG, "dmesg")
    runner = FakeRunner({"journalctl": (0, KERNEL_LOG, ""), "dmesg": AssertionError("not called")})
    assert checks.read_kernel_log(runner) == (KERNEL_LOG, "journalctl")


def test_kernel_log_absent_is_a_skip():
    runner = FakeRunner(
        {"journalctl": FileNotFoundError(2, "x"), "dmesg": FileNotFoundError(2, "x")}
    )
    text, why = checks.read_kernel_log(runner)
    assert text is None
    assert why == "journalctl is not installed; dmesg is not installed"
    r = one(check([gpu(0)], kernel_log=None, run=runner), "xid")
    assert r["status"] == "skip" and "XIDs cannot be checked here" in r["detail"]


def test_kernel_log_reader_that_raises_is_a_skip():
    def broken():
        raise OSError("boom")

    assert one(check([gpu(0)], kernel_log=broken), "xid")["status"] == "skip"


# ---- verdict and Markdown ----


def test_verdict_ignores_skip_and_info():
    row = checks.row
    assert checks.verdict([row("a", "A", "skip", ""), row("b", "B", "info", "")]) == "pass"
    assert checks.verdict([row("a", "A", "pass", ""), row("b", "B", "skip", "")]) == "pass"
    assert checks.verdict([row("a", "A", "warn", ""), row("b", "B", "pass", "")]) == "warn"
    assert checks.verdict([row("a", "A", "warn", ""), row("b", "B", "fail", "")]) == "fail"


def test_markdown_layout_and_escaping():
    rows = [
        checks.row(
            "gpuCount", "GPU count", "pass", "2 x H100 | SXM", measured=2, expected=2, unit="GPUs"
        ),
        checks.row(
            "matmul",
            "Matmul a|b",
            "warn",
            "line one\nline two",
            gpu=1,
            measured=412.37,
            expected=989.5,
            unit="TFLOPS",
        ),
        checks.row("xid", "XID errors", "skip", "back\\slash"),
    ]
    report = {
        "machine": "local",
        "time": 1700000000.0,
        "durationMs": 12345.0,
        "verdict": "warn",
        "rows": rows,
        "markdown": "",
    }
    md = checks.to_markdown(report)
    lines = md.splitlines()
    assert lines[0] == "# GPU health check: local"
    assert lines[2] == "Run 2023-11-14 22:13:20 UTC, took 12.3 s."
    assert lines[4] == "| Status | Check | GPU | Measured | Expected | Detail |"
    assert lines[5] == "| --- | --- | --- | --- | --- | --- |"
    assert lines[6] == "| PASS | GPU count | - | 2 GPUs | 2 GPUs | 2 x H100 \\| SXM |"
    assert lines[7] == "| WARN | Matmul a\\|b | 1 | 412 TFLOPS | 990 TFLOPS | line one line two |"
    assert lines[8] == "| SKIP | XID errors | - |  |  | back\\\\slash |"
    assert lines[10] == "**Verdict: WARN** (1 warn, 1 pass, 1 skip)"
    for line in lines[4:9]:  # every table row has exactly 7 unescaped pipes
        assert line.replace("\\|", "").count("|") == 7


def test_report_markdown_matches_rows():
    report = check([gpu(0), gpu(1, ecc={"uncorrectedVolatile": 2})], expected_count=2)
    md = report["markdown"]
    assert md.startswith("# GPU health check: local\n")
    assert "| FAIL | ECC errors | 1 | 2 errors | 0 errors |" in md
    assert "**Verdict: FAIL**" in md
    table = [line for line in md.splitlines() if line.startswith("| ") and "---" not in line]
    assert len(table) == len(report["rows"]) + 1


# ---- peaks ----


@pytest.mark.parametrize(
    ("name", "model"),
    [
        ("NVIDIA H200", "H200 SXM"),
        ("NVIDIA H200 NVL", "H200 NVL"),
        ("NVIDIA H100 80GB HBM3", "H100 SXM"),
        ("NVIDIA H100 PCIe", "H100 PCIe"),
        ("NVIDIA H100 NVL", "H100 NVL"),
        ("NVIDIA GH200 480GB", "GH200"),
        ("NVIDIA GH200 144G HBM3e", "GH200 (HBM3e)"),
        ("NVIDIA B200", "B200"),
        ("NVIDIA A100-SXM4-80GB", "A100 SXM4 80GB"),
        ("NVIDIA A100-SXM4-40GB", "A100 SXM4 40GB"),
        ("NVIDIA A100-PCIE-40GB", "A100 PCIe 40GB"),
        ("NVIDIA A100 80GB PCIe", "A100 PCIe 80GB"),
        ("NVIDIA A10G", "A10G"),
        ("NVIDIA A10", "A10"),
        ("NVIDIA L4", "L4"),
        ("NVIDIA L40S", "L40S"),
        ("NVIDIA L40", "L40"),
        ("Tesla T4", "T4"),
        ("Tesla V100-SXM2-16GB", "V100 SXM2"),
        ("Tesla V100-PCIE-32GB", "V100 PCIe"),
        ("Tesla V100S-PCIE-32GB", "V100S"),
        ("NVIDIA GeForce RTX 4090", "GeForce RTX 4090"),
        ("NVIDIA GeForce RTX 3090", "GeForce RTX 3090"),
        ("NVIDIA RTX A6000", "RTX A6000"),
        ("NVIDIA RTX 6000 Ada Generation", "RTX 6000 Ada"),
        ("nvidia h100 80gb hbm3", "H100 SXM"),
    ],
)
def test_peak_matches_nvml_names(name, model):
    found = peaks.peak(name)
    assert found is not None and found.model == model
    assert found.tensorTflops > 0 and found.bandwidthGBs > 0


@pytest.mark.parametrize(
    "name",
    [
        None,
        "",
        "Quadro RTX 6000",
        "NVIDIA GeForce RTX 3090 Ti",
        "AMD Instinct MI300X",
        "NVIDIA A1000",
    ],
)
def test_peak_unknown(name):
    assert peaks.peak(name) is None


def known_peak(name: str) -> peaks.Peak:
    found = peaks.peak(name)
    assert found is not None, name
    return found


def test_peak_numbers():
    assert known_peak("NVIDIA H100 80GB HBM3").tensorTflops == pytest.approx(989.5)
    assert known_peak("NVIDIA H200").bandwidthGBs == 4800.0
    assert known_peak("Tesla T4").bf16 is False
    assert known_peak("NVIDIA A100-SXM4-80GB").bandwidthGBs == 2039.0


# ---- torch_bench.py for real ----


@functools.lru_cache(maxsize=None)
def _torch_probe() -> Optional[Tuple[str, bool]]:
    """(a Python with torch, whether its torch has CUDA), or None; probed once."""
    for candidate in (os.environ.get("GPUWB_TORCH_PYTHON"), "/usr/bin/python3"):
        if candidate and os.path.exists(candidate):
            probe = subprocess.run(
                [candidate, "-c", "import torch; print(torch.cuda.is_available())"],
                capture_output=True,
                text=True,
                check=False,
            )
            if probe.returncode == 0:
                return candidate, probe.stdout.strip() == "True"
    return None


def torch_python(cuda: Optional[bool] = None) -> str:
    found = _torch_probe()
    if found is None:
        pytest.skip("no Python with torch (set GPUWB_TORCH_PYTHON or install python3-torch)")
    python, has_cuda = found
    if cuda is not None and has_cuda != cuda:
        pytest.skip("this torch %s CUDA" % ("lacks" if cuda else "has"))
    return python


def run_bench(python: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [python, BENCH, *args], capture_output=True, text=True, timeout=120, check=False
    )


def test_torch_bench_cpu_for_real():
    proc = run_bench(torch_python(), "--device", "cpu", "--size", "256", "--seconds", "0.2")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout.strip().splitlines()
    assert len(out) == 1
    result = json.loads(out[0])
    assert set(result) == {
        "torch",
        "cuda",
        "cudaVersion",
        "devices",
        "p2p",
        "allReduceGBs",
        "errors",
        "notes",
    }
    assert isinstance(result["torch"], str) and result["torch"]
    assert isinstance(result["cuda"], bool)
    assert result["errors"] == []
    assert result["p2p"] is None and result["allReduceGBs"] is None
    (device,) = result["devices"]
    assert set(device) == {"index", "name", "matmulTflops", "dtype", "bandwidthGBs"}
    assert device["index"] == 0 and device["dtype"] == "float32"
    assert device["matmulTflops"] > 0 and device["bandwidthGBs"] > 0
    fractions = [
        float(line.split()[1]) for line in proc.stderr.splitlines() if line.startswith("PROGRESS ")
    ]
    assert fractions and fractions == sorted(fractions) and fractions[-1] == 1.0


def test_torch_bench_without_torch_exits_0():
    if importlib.util.find_spec("torch") is not None:
        pytest.skip("this interpreter has torch")
    proc = run_bench(sys.executable, "--device", "cpu")
    assert proc.returncode == 0
    result = json.loads(proc.stdout)
    assert result["torch"] is None and result["devices"] == []
    assert result["errors"][0]["test"] == "import"


# ---- the torch part of run_checks ----


def test_no_python_missing_python_and_no_torch_are_skips():
    r = one(check([gpu(0)], benchmarks=True, python=None), "torch")
    assert r["status"] == "skip" and "Select a Python with torch" in r["detail"]
    r = one(check([gpu(0)], benchmarks=True, python="/nonexistent/bin/python3"), "torch")
    assert r["status"] == "skip" and "Python not found at /nonexistent/bin/python3" in r["detail"]
    r = one(check([gpu(0)], benchmarks=True, python=sys.executable, untrusted=True), "torch")
    assert r["status"] == "skip" and "not trusted" in r["detail"]
    r = one(check([gpu(0)], benchmarks=False, python=sys.executable, untrusted=True), "torch")
    assert r["status"] == "skip" and "not trusted" in r["detail"]
    r = one(check([gpu(0)], params={"benchmarks": False}, python=sys.executable), "torch")
    assert r["status"] == "skip" and "Not requested" in r["detail"]


def test_image_python_without_torch_is_a_skip():
    if importlib.util.find_spec("torch") is not None:
        pytest.skip("this interpreter has torch")
    report = check([gpu(0)], benchmarks=True, python=sys.executable)
    r = one(report, "torch")
    assert r["status"] == "skip"
    assert "torch is not installed in %s" % sys.executable in r["detail"]
    assert "Select a Python with torch" in r["detail"]
    assert report["verdict"] == "pass"


def test_cpu_only_torch_is_a_skip():
    python = torch_python(cuda=False)
    seen: List[float] = []
    report = check([gpu(0)], benchmarks=True, python=python, progress=lambda f, m: seen.append(f))
    r = one(report, "torch")
    assert r["status"] == "skip"
    assert "found but CUDA is not available (CPU-only build?)" in r["detail"]
    assert seen[0] == 0.0 and seen[-1] == 1.0 and seen == sorted(seen)


def fake_bench(tmp_path: Path, body: str) -> str:
    path = tmp_path / "fake_bench.py"
    path.write_text(textwrap.dedent(body), encoding="utf-8")
    return str(path)


SLEEPER = """\
import json, os, subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
with open(os.environ["FAKE_PIDS"], "w") as f:
    f.write("%d %d" % (os.getpid(), child.pid))
sys.stderr.write("PROGRESS 0.25 matmul on GPU 0\\n")
sys.stderr.write("PARTIAL " + json.dumps(PARTIAL) + "\\n")
sys.stderr.flush()
time.sleep(60)
"""

PARTIAL_RESULT = {
    "torch": "2.3.0",
    "cuda": True,
    "cudaVersion": "12.1",
    "devices": [
        {
            "index": 0,
            "name": H100,
            "matmulTflops": 700.0,
            "dtype": "bfloat16",
            "bandwidthGBs": 2900.0,
        }
    ],
    "p2p": None,
    "allReduceGBs": None,
    "errors": [],
    "notes": [],
}


def dead(pid: int) -> bool:
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().split(") ", 1)[1].startswith("Z")
    except FileNotFoundError:
        return True


def sleeper(tmp_path: Path, monkeypatch) -> str:
    pids = tmp_path / "pids"
    monkeypatch.setenv("FAKE_PIDS", str(pids))
    return fake_bench(tmp_path, "PARTIAL = %r\n" % PARTIAL_RESULT + SLEEPER)


def read_pids(tmp_path: Path) -> List[int]:
    return [int(p) for p in (tmp_path / "pids").read_text().split()]


@pytest.mark.skipif(os.name != "posix", reason="process groups")
def test_cancel_kills_the_bench_process_group_within_a_second(tmp_path, monkeypatch):
    script = sleeper(tmp_path, monkeypatch)
    flag = threading.Event()
    cancelled_at: List[float] = []
    messages: List[str] = []

    def progress(fraction: float, message: str) -> None:
        messages.append(message)
        if message == "matmul on GPU 0" and not flag.is_set():
            cancelled_at.append(time.monotonic())
            flag.set()

    report = check(
        [gpu(0)],
        benchmarks=True,
        python=sys.executable,
        bench_script=script,
        progress=progress,
        cancelled=flag.is_set,
    )
    took = time.monotonic() - cancelled_at[0]
    assert took < 1.5, took
    assert one(report, "torch")["detail"] == "Cancelled"
    for pid in read_pids(tmp_path):
        deadline = time.monotonic() + 2
        while not dead(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert dead(pid), pid
    assert "matmul on GPU 0" in messages


@pytest.mark.skipif(os.name != "posix", reason="process groups")
def test_timeout_kills_the_bench_and_keeps_the_partial_result(tmp_path, monkeypatch):
    script = sleeper(tmp_path, monkeypatch)
    started = time.monotonic()
    report = check(
        [gpu(0)], benchmarks=True, python=sys.executable, bench_script=script, bench_timeout=1.5
    )
    assert time.monotonic() - started < 6
    torch_rows = rows_of(report, "torch")
    assert [r["status"] for r in torch_rows] == ["info", "warn"]
    assert "did not finish within 1 s" in torch_rows[1]["detail"]
    assert one(report, "matmul")["status"] == "pass"
    assert one(report, "bandwidth")["measured"] == 2900.0
    assert report["verdict"] == "warn"
    for pid in read_pids(tmp_path):
        deadline = time.monotonic() + 2
        while not dead(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert dead(pid), pid


def test_bench_that_dies_without_output_is_a_warn(tmp_path):
    script = fake_bench(
        tmp_path, "import sys\nsys.stderr.write('Segmentation fault\\n')\nsys.exit(139)\n"
    )
    r = one(check([gpu(0)], benchmarks=True, python=sys.executable, bench_script=script), "torch")
    assert r["status"] == "warn"
    assert "exited with code 139" in r["detail"] and "Segmentation fault" in r["detail"]


# ---- a CUDA machine's results against the peaks ----

CUDA_RESULT = {
    "torch": "2.3.0",
    "cuda": True,
    "cudaVersion": "12.1",
    "devices": [
        {
            "index": 0,
            "name": H100,
            "matmulTflops": 700.0,
            "dtype": "bfloat16",
            "bandwidthGBs": 3000.0,
        },
        {
            "index": 1,
            "name": H100,
            "matmulTflops": 400.0,
            "dtype": "bfloat16",
            "bandwidthGBs": 800.0,
        },
        {
            "index": 2,
            "name": H100,
            "matmulTflops": 200.0,
            "dtype": "bfloat16",
            "bandwidthGBs": 1500.0,
        },
        {
            "index": 3,
            "name": "NVIDIA Future GPU",
            "matmulTflops": 1234.5,
            "dtype": "bfloat16",
            "bandwidthGBs": 9000.0,
        },
        {"index": 4, "name": H100, "matmulTflops": None, "dtype": "bfloat16", "bandwidthGBs": None},
    ],
    "p2p": [
        {"src": 0, "dst": 1, "GBs": 380.0, "peer": True},
        {"src": 0, "dst": 2, "GBs": 390.0, "peer": True},
        {"src": 1, "dst": 2, "GBs": 40.0, "peer": False},
        {"src": 1, "dst": 3, "GBs": None, "peer": True},
    ],
    "allReduceGBs": 350.5,
    "errors": [
        {
            "device": 4,
            "test": "matmul",
            "message": "OutOfMemoryError: CUDA out of memory. Tried to allocate 128 MiB",
        },
        {
            "device": 4,
            "test": "bandwidth",
            "message": "RuntimeError: CUDA error: an illegal memory access was encountered",
        },
        {"device": 1, "test": "p2p 1->3", "message": "RuntimeError: peer copy failed"},
    ],
    "notes": [],
}


def cuda_machine() -> List[Dict[str, Any]]:
    names = [H100, H100, H100, "NVIDIA Future GPU", H100]
    return [gpu(i, name=name) for i, name in enumerate(names)]


def test_bench_results_compared_with_peaks(tmp_path):
    script = fake_bench(
        tmp_path,
        "import json, sys\nsys.stderr.write('PROGRESS 0.5 half\\n')\nprint(json.dumps(%r))\n"
        % CUDA_RESULT,
    )
    seen: List[float] = []
    report = check(
        cuda_machine(),
        benchmarks=True,
        python=sys.executable,
        bench_script=script,
        progress=lambda f, m: seen.append(f),
    )
    assert pytest.approx(0.15 + 0.85 * 0.5) in seen
    torch_row = one(report, "torch")
    assert torch_row["status"] == "info" and "torch 2.3.0 (CUDA 12.1)" in torch_row["detail"]
    matmul = {r["gpu"]: r for r in rows_of(report, "matmul")}
    assert {g: r["status"] for g, r in matmul.items()} == {
        0: "pass",
        1: "warn",
        2: "fail",
        3: "info",
        4: "warn",
    }
    assert matmul[0]["measured"] == 700.0 and matmul[0]["expected"] == pytest.approx(989.5)
    assert matmul[0]["unit"] == "TFLOPS"
    assert "71% of the H100 SXM's dense tensor peak" in matmul[0]["detail"]
    assert "no datasheet peak for NVIDIA Future GPU" in matmul[3]["detail"]
    assert matmul[3]["expected"] is None
    assert "Out of GPU memory" in matmul[4]["detail"]
    bandwidth = {r["gpu"]: r for r in rows_of(report, "bandwidth")}
    assert {g: r["status"] for g, r in bandwidth.items()} == {
        0: "pass",
        1: "fail",
        2: "warn",
        3: "info",
        4: "fail",
    }
    assert bandwidth[0]["expected"] == 3350.0 and bandwidth[0]["unit"] == "GB/s"
    assert "illegal memory access" in bandwidth[4]["detail"]
    p2p = rows_of(report, "p2p")
    assert [r["status"] for r in p2p] == ["warn", "warn"]
    assert p2p[0]["measured"] == 40.0
    assert "slowest 40.0 GB/s (GPU 1 -> 2)" in p2p[0]["detail"]
    assert "peer access on 3 of 4 pairs" in p2p[0]["detail"]
    assert "GPU 1 -> 3" in p2p[1]["detail"]
    all_reduce = one(report, "allReduce")
    assert (all_reduce["status"], all_reduce["measured"]) == ("info", 350.5)
    assert report["verdict"] == "fail"


@pytest.mark.parametrize(
    ("tflops", "status"),
    [
        (989.5 * 0.6, "pass"),
        (989.5 * 0.6 - 0.01, "warn"),
        (989.5 * 0.3, "warn"),
        (989.5 * 0.3 - 0.01, "fail"),
    ],
)
def test_peak_ratio_edges(tflops, status):
    result = dict(
        CUDA_RESULT,
        devices=[dict(CUDA_RESULT["devices"][0], matmulTflops=tflops)],
        p2p=None,
        errors=[],
    )
    rows = checks.result_rows(result, "/usr/bin/python3", [gpu(0)])
    assert [r["status"] for r in rows if r["id"] == "matmul"] == [status]
    assert not [r for r in rows if r["id"] in ("p2p", "allReduce")]


def test_single_gpu_fp16_and_missing_all_reduce():
    result = dict(
        CUDA_RESULT,
        devices=[
            {
                "index": 0,
                "name": "Tesla T4",
                "matmulTflops": 40.0,
                "dtype": "float16",
                "bandwidthGBs": 250.0,
            }
        ],
        p2p=[{"src": 0, "dst": 1, "GBs": 10.0, "peer": False}],
        allReduceGBs=None,
        errors=[],
        notes=["all-reduce skipped: NCCL is not available to this torch"],
    )
    rows = checks.result_rows(result, "python", [gpu(0, name="Tesla T4")])
    by_id = {r["id"]: r for r in rows}
    assert by_id["matmul"]["status"] == "pass" and by_id["matmul"]["expected"] == 65.0
    assert by_id["bandwidth"]["status"] == "pass"
    assert by_id["p2p"]["status"] == "info"
    assert (
        by_id["allReduce"]["status"] == "skip"
        and "NCCL is not available" in by_id["allReduce"]["detail"]
    )


def test_cuda_not_available_with_a_cuda_build():
    result = dict(CUDA_RESULT, cuda=False, devices=[], p2p=None)
    (r,) = checks.result_rows(result, "python", [gpu(0)])
    assert r["status"] == "skip"
    assert "torch 2.3.0 (CUDA 12.1) found but CUDA is not available" in r["detail"]


def test_default_runner():
    code, out, err = checks.run_command(
        [sys.executable, "-c", "import sys; print('out'); sys.stderr.write('err'); sys.exit(3)"], 30
    )
    assert (code, out.strip(), err) == (3, "out", "err")
    with pytest.raises(FileNotFoundError):
        checks.run_command(["/nonexistent/journalctl"], 5)
