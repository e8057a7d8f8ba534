"""SmiSource and the nvidia-smi output parsers, on outputs recorded from real drivers."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import types
from pathlib import Path
from typing import Any, Dict, List

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from shapes import assert_shape
from smi_fakes import (
    MACHINES,
    FixtureRunner,
    columns,
    install_fake_smi,
    logged_calls,
    read,
)

from gpu_workbench import protocol
from gpu_workbench.gpu import smi
from gpu_workbench.gpu.smi import Completed, SmiSource
from gpu_workbench.gpu.source import READING_KEYS, GpuUnavailable

MIB = 1 << 20
POSIX = pytest.mark.skipif(sys.platform == "win32", reason="the fake nvidia-smi is a #! script")


def parse_machine(name: str) -> List[Dict[str, Any]]:
    machine = MACHINES[name]
    return smi.parse_query(read(machine["query"]), columns(machine))


def by_index(gpus: List[Dict[str, Any]]) -> Dict[int, Dict[str, Any]]:
    return {gpu["index"]: gpu for gpu in gpus}


def check_shape(gpu: Dict[str, Any]) -> None:
    assert tuple(gpu) == READING_KEYS
    full = dict(gpu, xids=[], verdict="ok", reasons=[])
    assert_shape(protocol.GpuInfo, full, "gpu")


# --------------------------------------------------------------------------- values


@pytest.mark.parametrize(
    "text",
    [
        "[N/A]",
        "[Not Supported]",
        "N/A",
        "[Unknown Error]",
        "[GPU requires reset]",
        "[Insufficient Permissions]",
        "[GPU is lost]",
        "",
        "  [n/a] ",
    ],
)
def test_unknown_spellings_read_as_none(text):
    assert smi.clean(text) is None
    assert smi.to_int(text) is None
    assert smi.to_float(text) is None
    assert smi.to_bool(text) is None
    assert smi.to_mask(text) is None
    assert smi.to_bytes(text) is None


def test_value_conversions():
    assert smi.to_bytes("24268") == 24268 * MIB
    assert smi.to_bytes("1043 MiB") == 1043 * MIB  # tolerated without nounits
    assert smi.to_float("287.45") == 287.45
    assert smi.to_float("287.45 W") == 287.45
    assert smi.to_int("97") == 97
    assert smi.to_int("97 %") == 97
    assert smi.to_bool("Enabled") is True
    assert smi.to_bool("Disabled") is False
    assert smi.to_bool("Yes") is True
    assert smi.to_bool("No") is False
    assert smi.to_mask("0x0000000000000048") == 0x48
    assert smi.to_mask("0x0000000000000000") == 0
    assert smi.to_int("fast") is None


def test_split_rows_honours_quotes():
    rows = smi.split_rows('0, "name, with comma", 12\n\n1, plain, 3\n')
    assert rows == [["0", "name, with comma", "12"], ["1", "plain", "3"]]


# --------------------------------------------------------------------------- fixtures


def test_every_fixture_reading_has_exactly_the_reading_keys():
    for name, machine in MACHINES.items():
        if "query" not in machine:
            continue
        gpus = parse_machine(name)
        assert gpus, name
        for gpu in gpus:
            check_shape(gpu)


def test_rtx3090_driver_470_consumer_card():
    machine = MACHINES["rtx3090_470"]
    assert "clocks_throttle_reasons.active" in columns(machine)
    (gpu,) = parse_machine("rtx3090_470")
    assert gpu == {
        "index": 0,
        "uuid": "GPU-fb97e413-29a3-487d-bca7-c58afe0a99c7",
        "name": "NVIDIA GeForce RTX 3090",
        "lost": False,
        "utilization": 3,
        "memoryUtilization": 1,
        "memoryUsed": 1043 * MIB,
        "memoryTotal": 24268 * MIB,
        "temperature": 41,
        "temperatureSlowdown": None,
        "powerDraw": 33.61,
        "powerLimit": 350.0,
        "clocksEventReasons": 0x1,
        "throttle": ["GpuIdle"],
        "ecc": {
            "correctedVolatile": None,
            "uncorrectedVolatile": None,
            "correctedAggregate": None,
            "uncorrectedAggregate": None,
        },
        "remappedRows": None,
        "pcie": {"gen": 1, "maxGen": 4, "width": 16, "maxWidth": 16},
        "persistenceMode": False,
        "processes": [],
    }


def test_a10g_driver_535():
    (gpu,) = parse_machine("a10g_535")
    assert gpu["name"] == "NVIDIA A10G"
    assert gpu["utilization"] == 97
    assert gpu["memoryUtilization"] == 61
    assert gpu["memoryUsed"] == 18432 * MIB
    assert gpu["memoryTotal"] == 23028 * MIB
    assert gpu["temperature"] == 71
    assert gpu["powerDraw"] == 287.45
    assert gpu["powerLimit"] == 300.0
    assert gpu["clocksEventReasons"] == 0x4
    assert gpu["throttle"] == ["SwPowerCap"]
    assert gpu["ecc"] == {
        "correctedVolatile": 0,
        "uncorrectedVolatile": 0,
        "correctedAggregate": 0,
        "uncorrectedAggregate": 0,
    }
    assert gpu["pcie"] == {"gen": 4, "maxGen": 4, "width": 16, "maxWidth": 16}
    assert gpu["persistenceMode"] is True


def test_t4_with_na_power():
    (gpu,) = parse_machine("t4_535")
    assert gpu["name"] == "Tesla T4"
    assert gpu["powerDraw"] is None
    assert gpu["powerLimit"] is None
    assert gpu["utilization"] == 0  # a real 0 stays 0
    assert gpu["memoryUsed"] == 0
    assert gpu["ecc"]["uncorrectedAggregate"] == 2
    assert gpu["ecc"]["uncorrectedVolatile"] == 0
    assert gpu["pcie"] == {"gen": 1, "maxGen": 3, "width": 8, "maxWidth": 16}


def test_h100_node_with_a_gpu_lost_by_handle_line():
    gpus = parse_machine("h100x8_550_lost")
    assert [gpu["index"] for gpu in gpus] == list(range(8))
    lost = by_index(gpus)[3]
    assert lost["lost"] is True
    assert lost["uuid"] == ""
    assert lost["memoryUsed"] is None and lost["temperature"] is None
    assert [gpu["index"] for gpu in gpus if gpu["lost"]] == [3]
    six = by_index(gpus)[6]
    assert six["clocksEventReasons"] == 0x48
    assert six["throttle"] == ["HwSlowdown", "HwThermalSlowdown"]
    assert six["temperature"] == 87
    five = by_index(gpus)[5]
    assert five["ecc"]["correctedAggregate"] == 12
    assert five["ecc"]["uncorrectedAggregate"] == 1
    four = by_index(gpus)[4]
    assert four["utilization"] == 0 and four["memoryUsed"] == 40961 * MIB
    for gpu in gpus:
        check_shape(gpu)


def test_lost_gpu_keeps_its_identity_when_known():
    machine = MACHINES["h100x8_550_lost"]
    known = {"0000:86:00": (3, "GPU-f4219f85-0134-455f-8e6a-6374c5f86846", "NVIDIA H100 80GB HBM3")}
    gpus = smi.parse_query(read(machine["query"]), columns(machine), known)
    lost = by_index(gpus)[3]
    assert lost["lost"] is True
    assert lost["uuid"] == "GPU-f4219f85-0134-455f-8e6a-6374c5f86846"
    assert lost["name"] == "NVIDIA H100 80GB HBM3"


def test_a100_node_with_gpu_is_lost_values():
    gpus = parse_machine("a100x4_535_lost")
    assert [gpu["index"] for gpu in gpus] == [0, 1, 2, 3]
    lost = by_index(gpus)[2]
    assert lost["lost"] is True
    assert lost["uuid"] == "" and lost["name"] == ""
    assert lost["utilization"] is None and lost["ecc"]["uncorrectedVolatile"] is None
    one = by_index(gpus)[1]
    assert one["lost"] is False
    assert one["powerDraw"] is None  # [Unknown Error]
    assert one["powerLimit"] == 400.0
    assert one["ecc"]["uncorrectedVolatile"] == 1


def test_lost_gpus_without_an_index_take_the_free_ones():
    fields = ["index", "uuid", "pci.bus_id"]
    text = (
        "0, GPU-a, 00000000:01:00.0\n"
        "Unable to determine the device handle for GPU 0000:02:00.0: GPU is lost.  Reboot\n"
        "2, GPU-c, 00000000:03:00.0\n"
        "[GPU is lost], [GPU is lost], [GPU is lost]\n"
    )
    gpus = smi.parse_query(text, fields)
    assert [(g["index"], g["lost"], g["uuid"]) for g in gpus] == [
        (0, False, "GPU-a"),
        (1, True, ""),
        (2, False, "GPU-c"),
        (3, True, ""),
    ]


def test_lost_line_naming_an_index():
    fields = ["index", "uuid"]
    text = "0, GPU-a\nUnable to determine the device handle for GPU 2: GPU is lost. Reboot\n"
    gpus = smi.parse_query(text, fields)
    assert [(g["index"], g["lost"]) for g in gpus] == [(0, False), (2, True)]


def test_error_text_parses_to_no_gpus():
    fields = smi.query_fields()
    for name in (
        "no_devices.txt",
        "driver_failure.txt",
        "nvml_mismatch.txt",
        "invalid_field_event.txt",
    ):
        assert smi.parse_query(read(name), fields) == []


def test_invalid_field_message():
    assert smi.invalid_field(read("invalid_field_event.txt")) == "clocks_event_reasons.active"
    assert smi.invalid_field(read("driver_failure.txt")) is None


def test_failure_message_is_the_tools_own_words():
    text = read("driver_failure.txt").strip()
    assert smi.failure_message(Completed(9, text + "\n", "")) == text
    assert (
        smi.failure_message(Completed(6, "No devices were found\n", "")) == "No devices were found"
    )
    assert smi.failure_message(Completed(18, "", read("nvml_mismatch.txt"))) == (
        "Failed to initialize NVML: Driver/library version mismatch NVML library version: 535.161"
    )
    assert smi.failure_message(Completed(3, "", "")) == "nvidia-smi exited with code 3"


def test_cuda_version_from_the_header():
    assert smi.parse_cuda_version(read("rtx3090_470_smi.txt")) == "11.4"
    assert smi.parse_cuda_version(read("a10g_535_smi.txt")) == "12.2"
    assert smi.parse_cuda_version(read("h100x8_550_lost_smi.txt")) is None
    assert smi.parse_cuda_version("CUDA Version                        : 12.4") == "12.4"


def test_compute_apps():
    apps = smi.parse_compute_apps(read("h100x8_550_lost_apps.csv"))
    assert apps["GPU-2556fff2-f418-47d0-8167-0edd6589791f"] == [
        {"pid": 388017, "name": "/home/ubuntu/.venv/bin/python", "usedMemory": 40448 * MIB}
    ]
    assert sum(len(v) for v in apps.values()) == 7
    wddm = smi.parse_compute_apps(read("apps_wddm.csv"))
    (procs,) = wddm.values()
    assert [p["usedMemory"] for p in procs] == [None, None]
    assert procs[1]["name"] == r"C:\Program Files\Blender Foundation\Blender 4.1\blender.exe"
    for proc in procs:
        assert_shape(protocol.GpuProcess, proc, "process")
    odd = smi.parse_compute_apps('GPU-x, 12, my, odd, name, 100\nGPU-x, 13, "quoted, name", 5\n')
    assert [p["name"] for p in odd["GPU-x"]] == ["my, odd, name", "quoted, name"]
    assert smi.parse_compute_apps("") == {}


def test_remapped_rows():
    remaps = smi.parse_remapped_rows(read("h100x8_550_lost_remap.csv"))
    assert len(remaps) == 7
    assert remaps["GPU-72697d69-2261-4b70-8b7f-9858406bee8d"] == {
        "correctable": 0,
        "uncorrectable": 1,
        "pending": True,
        "failure": False,
    }
    a100 = smi.parse_remapped_rows(read("a100x4_535_remap.csv"))
    failed = a100["GPU-f2fb300d-25d0-426f-ac13-9ccc4e22abc7"]
    assert failed is not None and failed["failure"] is True
    assert len(a100) == 3  # the lost GPU's row names no uuid
    for value in list(remaps.values()) + list(a100.values()):
        assert_shape(protocol.GpuRemappedRows, value, "remap")
    # Before Ampere the values are all unknown: no remap data at all.
    assert smi.parse_remapped_rows(read("t4_535_remap.csv")) == {
        "GPU-997149f9-6f80-419b-9457-56af973ab2b4": None
    }
    assert list(smi.parse_remapped_rows(read("rtx3090_470_remap.csv")).values()) == [None]
    header = "gpu_uuid, remapped_rows.correctable, remapped_rows.uncorrectable, remapped_rows.pending, remapped_rows.failure\n"
    assert smi.parse_remapped_rows(header) == {}


# --------------------------------------------------------------------------- SmiSource


def source_for(machine: str, tmp_path: Path, **kwargs: Any) -> "tuple[SmiSource, FixtureRunner]":
    """An SmiSource answering from a recorded machine in-process (PATH has a dummy)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    exe = bin_dir / "nvidia-smi"
    exe.write_text("#!/bin/sh\nexit 99\n")
    exe.chmod(0o755)
    runner = FixtureRunner(machine, kwargs.pop("overrides", None))
    source = SmiSource({"PATH": str(bin_dir)}, runner=runner, **kwargs)
    return source, runner


def test_not_on_path(tmp_path):
    source = SmiSource({"PATH": str(tmp_path)})
    with pytest.raises(GpuUnavailable, match=r"^nvidia-smi is not on PATH$"):
        source.open()


def test_windows_program_files_fallback(tmp_path, monkeypatch):
    exe = tmp_path / "NVIDIA Corporation" / "NVSMI" / "nvidia-smi.exe"
    exe.parent.mkdir(parents=True)
    exe.write_text("")
    monkeypatch.setattr(smi, "sys", types.SimpleNamespace(platform="win32"))
    monkeypatch.setattr(smi.shutil, "which", lambda name, path=None: None)
    found = smi.find_nvidia_smi({"PATH": "", "ProgramFiles": str(tmp_path)})
    assert found == os.path.join(str(tmp_path), "NVIDIA Corporation", "NVSMI", "nvidia-smi.exe")
    assert smi.find_nvidia_smi({"PATH": "", "ProgramFiles": str(tmp_path / "none")}) is None


@pytest.mark.parametrize(
    ("machine", "message"),
    [
        ("no_devices", "No devices were found"),
        (
            "driver_failure",
            "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. "
            "Make sure that the latest NVIDIA driver is installed and running.",
        ),
        (
            "nvml_mismatch",
            "Failed to initialize NVML: Driver/library version mismatch NVML library version: 535.161",
        ),
    ],
)
def test_open_fails_with_the_tools_message(machine, message, tmp_path):
    source, _ = source_for(machine, tmp_path)
    with pytest.raises(GpuUnavailable) as info:
        source.open()
    assert str(info.value) == message


def test_open_and_read_a10g(tmp_path):
    source, runner = source_for("a10g_535", tmp_path)
    source.open()
    assert source.throttle_prefix == "clocks_event_reasons"
    assert source.machine() == {"driverVersion": "535.183.01", "cudaVersion": "12.2"}
    runner.calls.clear()
    (gpu,) = source.read()
    assert runner.count("--query-gpu") == 1
    assert runner.count("--query-compute-apps") == 1
    assert runner.count("--query-remapped-rows") == 0  # read at open, then every 60 s
    assert gpu["processes"] == [
        {"pid": 48213, "name": "/opt/conda/bin/python3.10", "usedMemory": 18140 * MIB}
    ]
    assert gpu["remappedRows"] == {
        "correctable": 0,
        "uncorrectable": 0,
        "pending": False,
        "failure": False,
    }
    check_shape(gpu)
    runner.calls.clear()
    (gpu,) = source.read(processes=False)
    assert [call[0].split("=")[0] for call in runner.calls] == ["--query-gpu"]
    assert gpu["processes"] == []


def test_throttle_prefix_falls_back_on_driver_470(tmp_path):
    source, runner = source_for("rtx3090_470", tmp_path)
    source.open()
    queries = [call[0] for call in runner.calls if call and call[0].startswith("--query-gpu=")]
    assert "clocks_event_reasons.active" in queries[0]
    assert "clocks_throttle_reasons.active" in queries[1]
    assert source.throttle_prefix == "clocks_throttle_reasons"
    assert source.machine() == {"driverVersion": "470.239.06", "cudaVersion": "11.4"}
    runner.calls.clear()
    (gpu,) = source.read()
    assert runner.count("--query-gpu") == 1  # remembered: no second try per read
    assert "clocks_throttle_reasons.active" in runner.calls[0][0]
    assert gpu["throttle"] == ["GpuIdle"]
    assert gpu["remappedRows"] is None  # [Not Supported]
    assert gpu["ecc"]["uncorrectedVolatile"] is None


def test_an_unknown_field_reads_as_unknown(tmp_path):
    source, runner = source_for("a10g_535", tmp_path)

    def answer_without_pcie_max(argv, timeout):
        query = argv[1] if len(argv) > 1 else ""
        if query.startswith("--query-gpu=") and "pcie.link.gen.max" in query:
            runner.calls.append(argv[1:])
            return Completed(2, 'Field "pcie.link.gen.max" is not a valid field to query.\n\n', "")
        return FixtureRunner.__call__(runner, argv, timeout)

    source._runner = answer_without_pcie_max
    source.open()
    (gpu,) = source.read()
    assert gpu["pcie"] == {"gen": 4, "maxGen": None, "width": 16, "maxWidth": 16}
    assert gpu["utilization"] == 97


def test_no_cuda_header_is_fine(tmp_path):
    source, _ = source_for("t4_535", tmp_path)
    source.open()
    assert source.machine() == {"driverVersion": "535.161.08", "cudaVersion": None}
    (gpu,) = source.read()
    assert gpu["remappedRows"] is None
    assert gpu["powerDraw"] is None


def test_read_h100_node_with_a_lost_gpu(tmp_path):
    source, _ = source_for("h100x8_550_lost", tmp_path)
    source.open()
    assert source.machine() == {"driverVersion": "550.90.07", "cudaVersion": None}
    gpus = source.read()
    assert len(gpus) == 8
    lost = by_index(gpus)[3]
    assert lost["lost"] and lost["processes"] == [] and lost["remappedRows"] is None
    assert by_index(gpus)[5]["remappedRows"]["pending"] is True
    assert by_index(gpus)[4]["processes"][0]["pid"] == 388017
    assert [p["pid"] for p in by_index(gpus)[0]["processes"]] == [391204]
    for gpu in gpus:
        check_shape(gpu)


def test_a_gpu_lost_after_open_keeps_its_uuid(tmp_path):
    # Healthy at open: GPU 3 answers; later its row turns into the "GPU is lost" line.
    healthy = tmp_path / "healthy.csv"
    lines = read("h100x8_550_lost_query.csv").splitlines()
    lines[3] = (
        "3, GPU-f4219f85-0134-455f-8e6a-6374c5f86846, NVIDIA H100 80GB HBM3, 00000000:86:00.0,"
        " 550.90.07, Enabled, 100, 40, 71213, 81559, 56, 600.00, 700.00, 0x0000000000000000,"
        " 0, 0, 0, 0, 5, 5, 16, 16"
    )
    healthy.write_text("\n".join(lines) + "\n")
    source, runner = source_for(
        "h100x8_550_lost", tmp_path, overrides={"query": str(healthy), "rc": 0}
    )
    source.open()
    assert by_index(source.read())[3]["lost"] is False
    runner.machine["query"] = "h100x8_550_lost_query.csv"
    runner.machine["rc"] = 15
    lost = by_index(source.read())[3]
    assert lost["lost"] is True
    assert lost["uuid"] == "GPU-f4219f85-0134-455f-8e6a-6374c5f86846"
    assert lost["name"] == "NVIDIA H100 80GB HBM3"


def test_remapped_rows_refresh_about_once_a_minute(tmp_path):
    now = [1000.0]
    source, runner = source_for("a10g_535", tmp_path, clock=lambda: now[0])
    source.open()
    assert runner.count("--query-remapped-rows") == 1
    for step in (10.0, 30.0, 59.0):
        now[0] = 1000.0 + step
        source.read()
    assert runner.count("--query-remapped-rows") == 1
    now[0] = 1060.0
    source.read()
    assert runner.count("--query-remapped-rows") == 2
    now[0] = 1100.0
    source.read()
    assert runner.count("--query-remapped-rows") == 2


def test_remapped_rows_unsupported_is_tolerated(tmp_path):
    now = [0.0]
    source, runner = source_for(
        "a10g_535", tmp_path, clock=lambda: now[0], overrides={"remap": None}
    )
    source.open()
    (gpu,) = source.read()
    assert gpu["remappedRows"] is None
    now[0] = 500.0
    source.read()
    assert runner.count("--query-remapped-rows") == 1  # not asked again


def test_a_hung_tool_times_out(tmp_path):
    def hung(argv, timeout):
        raise subprocess.TimeoutExpired(argv, timeout)

    source, _ = source_for("a10g_535", tmp_path)
    source.open()
    source._runner = hung
    with pytest.raises(GpuUnavailable, match=r"^nvidia-smi did not answer within 10 s$"):
        source.read()


def test_open_when_the_tool_hangs(tmp_path):
    seen = []

    def hung(argv, timeout):
        seen.append(timeout)
        raise subprocess.TimeoutExpired(argv, timeout)

    source, _ = source_for("a10g_535", tmp_path, timeout=2.5)
    source._runner = hung
    with pytest.raises(GpuUnavailable, match=r"within 2\.5 s"):
        source.open()
    assert seen == [2.5]


def test_read_fails_cleanly_when_the_driver_goes_away(tmp_path):
    source, runner = source_for("a10g_535", tmp_path)
    source.open()
    runner.machine = dict(MACHINES["driver_failure"])
    with pytest.raises(GpuUnavailable, match="couldn't communicate with the NVIDIA driver"):
        source.read()


def test_read_before_open(tmp_path):
    source, _ = source_for("a10g_535", tmp_path)
    with pytest.raises(GpuUnavailable):
        source.read()
    source.close()
    source.close()


# --------------------------------------------------------------------------- real spawn


@POSIX
def test_fake_nvidia_smi_end_to_end(tmp_path):
    bin_dir = tmp_path / "bin"
    log = install_fake_smi(bin_dir, "rtx3090_470")
    source = SmiSource({"PATH": str(bin_dir)})
    source.open()
    assert source.name == "nvidia-smi"
    assert source.machine() == {"driverVersion": "470.239.06", "cudaVersion": "11.4"}
    (gpu,) = source.read()
    assert gpu["uuid"] == "GPU-fb97e413-29a3-487d-bca7-c58afe0a99c7"
    assert gpu["memoryUsed"] == 1043 * MIB
    assert gpu["throttle"] == ["GpuIdle"]
    check_shape(gpu)
    calls = logged_calls(log)
    queries = [c[0] for c in calls if c and c[0].startswith("--query-gpu=")]
    assert "clocks_event_reasons.active" in queries[0]
    assert all("clocks_throttle_reasons.active" in q for q in queries[1:])
    assert len(queries) == 3  # the rejected try, the open query, one read
    assert [] in calls  # the plain run for the CUDA version


@POSIX
def test_fake_nvidia_smi_lost_gpu_end_to_end(tmp_path):
    bin_dir = tmp_path / "bin"
    install_fake_smi(bin_dir, "h100x8_550_lost")
    source = SmiSource({"PATH": str(bin_dir)})
    source.open()
    gpus = source.read()
    assert [g["index"] for g in gpus if g["lost"]] == [3]
    assert by_index(gpus)[5]["remappedRows"]["pending"] is True


@POSIX
def test_fake_nvidia_smi_driver_failure(tmp_path):
    bin_dir = tmp_path / "bin"
    install_fake_smi(bin_dir, "driver_failure")
    with pytest.raises(GpuUnavailable, match=r"^NVIDIA-SMI has failed because it couldn't"):
        SmiSource({"PATH": str(bin_dir)}).open()


@POSIX
def test_fake_nvidia_smi_that_hangs(tmp_path):
    bin_dir = tmp_path / "bin"
    install_fake_smi(bin_dir, "a10g_535", hang=30.0)
    source = SmiSource({"PATH": str(bin_dir)}, timeout=0.5)
    started = time.monotonic()
    with pytest.raises(GpuUnavailable, match=r"^nvidia-smi did not answer within 0\.5 s$"):
        source.open()
    assert time.monotonic() - started < 10.0


# --------------------------------------------------------------------------- properties

FIELDS = smi.query_fields()
CELL = st.sampled_from(
    [
        "0",
        "12",
        "3.5",
        "[N/A]",
        "[Not Supported]",
        "[GPU is lost]",
        "Enabled",
        "0x48",
        "",
        "x y",
        "-1",
    ]
)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.lists(CELL, min_size=len(FIELDS), max_size=len(FIELDS)), max_size=6),
    st.text(max_size=80),
)
def test_parse_query_never_fails_and_keeps_the_shape(rows, noise):
    text = "\n".join(", ".join(row) for row in rows) + "\n" + noise
    gpus = smi.parse_query(text, FIELDS)
    assert [gpu["index"] for gpu in gpus] == sorted(gpu["index"] for gpu in gpus)
    for gpu in gpus:
        assert tuple(gpu) == READING_KEYS
        if gpu["lost"]:
            assert gpu["utilization"] is None and gpu["memoryUsed"] is None


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=200))
def test_other_parsers_never_fail(text):
    smi.parse_compute_apps(text)
    smi.parse_remapped_rows(text)
    smi.parse_cuda_version(text)
    smi.invalid_field(text)
