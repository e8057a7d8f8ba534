"""NvmlSource against the stand-in libnvidia-ml (fake_nvml.c), loaded the real way.

Each scenario runs in a fresh `python -c` with LD_LIBRARY_PATH pointing at a build of the
stand-in (the loader reads it only at process start) and prints its results as JSON. The
stand-in checks what the binding passes (struct versions, buffer sizes, NULLs) and writes
process entries in the layout a real driver of that kind would, so a wrong struct choice
shows up as wrong pids.
"""

from __future__ import annotations

import ctypes.util
import json
import os
import subprocess
import tempfile
import textwrap
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import pytest
from fake_nvml import build, write_script
from shapes import assert_shape

from conftest import BACKEND_PYTHON, SERVER_ROOT
from gpu_workbench import protocol
from gpu_workbench.gpu.source import READING_KEYS

CACHE = Path(tempfile.gettempdir()) / ("gpuwb-fake-nvml-%d" % getattr(os, "getuid", lambda: 0)())
GIB = 1 << 30
RESERVED = 512 << 20  # what the stand-in's v1 nvmlDeviceGetMemoryInfo adds to "used"
ULL_MAX = 18446744073709551615

pytestmark = pytest.mark.skipif(os.name != "posix", reason="the stand-in is a Linux .so")


def lib(*defines: str) -> Path:
    """A (cached) build of the stand-in with these -D flags."""
    name = "-".join(sorted(d.lower() for d in defines)) or "default"
    return build(CACHE / name, defines=defines)


PRELUDE = """
import json, sys, threading, time
from gpu_workbench.gpu.nvml import NvmlSource
from gpu_workbench.gpu.source import GpuUnavailable, empty_gpu
SCRIPT = sys.argv[1]
results = {}

def write(text):
    import os
    tmp = SCRIPT + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    st = os.stat(SCRIPT)
    mtime = max(time.time_ns(), st.st_mtime_ns + 1000000)
    os.utime(tmp, ns=(mtime, mtime))
    os.replace(tmp, SCRIPT)

def attempt(fn, *args):
    try:
        return {"ok": fn(*args)}
    except GpuUnavailable as exc:
        return {"unavailable": str(exc)}
"""


def run(
    lib_dir: Optional[Path],
    script: str,
    code: str,
    tmp_path: Path,
    extra_env: Optional[Dict[str, str]] = None,
) -> Dict[str, Any]:
    """Run `code` (after PRELUDE) in a fresh interpreter that loads the stand-in from
    lib_dir with `script` as its script; return the `results` dict it fills."""
    script_path = tmp_path / "nvml-script.txt"
    write_script(script_path, textwrap.dedent(script))
    env = dict(os.environ)
    env["LD_LIBRARY_PATH"] = str(lib_dir) if lib_dir is not None else str(tmp_path / "empty")
    (tmp_path / "empty").mkdir(exist_ok=True)
    env["GPUWB_FAKE_NVML_SCRIPT"] = str(script_path)
    env["PYTHONPATH"] = str(SERVER_ROOT)
    env.pop("GPUWB_FAKE_NVML_CALLS", None)
    env.update(extra_env or {})
    body = PRELUDE + textwrap.dedent(code) + "\nprint(json.dumps(results))\n"
    proc = subprocess.run(
        [BACKEND_PYTHON, "-c", body, str(script_path)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    return json.loads(proc.stdout.decode().splitlines()[-1])


def check_shape(reading: List[Dict[str, Any]]) -> None:
    """Every GPU has exactly READING_KEYS and the nested shapes of the protocol."""
    for gpu in reading:
        assert set(gpu) == set(READING_KEYS), sorted(gpu)
        assert_shape(protocol.GpuInfo, dict(gpu, xids=[], verdict="ok", reasons=[]))


FULL = """\
    # the README's example, plus a second GPU
    driver 550.54.15
    cuda 12040
    init 0
    gpu 0 uuid=GPU-0000 util=87 memutil=40 mem_used=65498251264 mem_total=85899345920 temp=71 slowdown=90 power_mw=350000 limit_mw=700000 reasons=0x0 ecc_cv=0 ecc_uv=0 ecc_ca=0 ecc_ua=0 remap_corr=0 remap_unc=0 remap_pending=0 remap_failure=0 pcie_gen=5 pcie_maxgen=5 pcie_width=16 pcie_maxwidth=16 persistence=1 lost=0
    name 0 NVIDIA H100 80GB HBM3
    gpu 1 uuid=GPU-1111 util=3 memutil=1 mem_used=1073741824 mem_total=25769803776 temp=35 slowdown=87 power_mw=61234 limit_mw=300000 reasons=200 ecc_cv=5 ecc_uv=1 ecc_ca=17 ecc_ua=2 remap_corr=3 remap_unc=1 remap_pending=1 remap_failure=0 pcie_gen=3 pcie_maxgen=4 pcie_width=8 pcie_maxwidth=16 persistence=0
    name 1 NVIDIA L4
    proc 0 4242 8589934592
    proc 0 {pid} {ull_max}
"""


def test_values_and_units(tmp_path: Path) -> None:
    out = run(
        lib(),
        FULL.format(pid=os.getpid(), ull_max=ULL_MAX),
        """
        s = NvmlSource()
        s.open()
        results["machine"] = s.machine()
        results["reading"] = s.read()
        results["noproc"] = s.read(processes=False)
        s.close()
        """,
        tmp_path,
    )
    assert out["machine"] == {"driverVersion": "550.54.15", "cudaVersion": "12.4"}
    reading = out["reading"]
    check_shape(reading)
    check_shape(out["noproc"])
    assert len(reading) == 2
    g0, g1 = reading
    assert g0["index"] == 0 and g0["uuid"] == "GPU-0000" and g0["name"] == "NVIDIA H100 80GB HBM3"
    assert g0["lost"] is False
    assert (g0["utilization"], g0["memoryUtilization"]) == (87, 40)
    # nvmlMemory_v2 with the right version: used excludes the reserved part (v1 adds it).
    assert (g0["memoryUsed"], g0["memoryTotal"]) == (65498251264, 85899345920)
    assert (g0["temperature"], g0["temperatureSlowdown"]) == (71, 90)
    assert g0["powerDraw"] == 350.0 and isinstance(g0["powerDraw"], float)
    assert g0["powerLimit"] == 700.0
    assert g0["clocksEventReasons"] == 0 and g0["throttle"] == []
    assert g0["ecc"] == {
        "correctedVolatile": 0,
        "uncorrectedVolatile": 0,
        "correctedAggregate": 0,
        "uncorrectedAggregate": 0,
    }
    assert g0["remappedRows"] == {
        "correctable": 0,
        "uncorrectable": 0,
        "pending": False,
        "failure": False,
    }
    assert g0["pcie"] == {"gen": 5, "maxGen": 5, "width": 16, "maxWidth": 16}
    assert g0["persistenceMode"] is True
    own = Path("/proc/self/comm").read_text().strip()  # this (pytest's) process
    assert g0["processes"] == [
        {"pid": 4242, "name": _comm(4242), "usedMemory": 8 * GIB},
        {"pid": os.getpid(), "name": own, "usedMemory": None},  # ULL max: not available
    ]

    assert g1["uuid"] == "GPU-1111" and g1["name"] == "NVIDIA L4"
    assert g1["powerDraw"] == pytest.approx(61.234)
    assert g1["powerLimit"] == 300.0
    assert g1["clocksEventReasons"] == 200  # decimal: 0x8 | 0x40 | 0x80
    assert g1["throttle"] == ["HwSlowdown", "HwThermalSlowdown", "HwPowerBrakeSlowdown"]
    assert g1["ecc"] == {
        "correctedVolatile": 5,
        "uncorrectedVolatile": 1,
        "correctedAggregate": 17,
        "uncorrectedAggregate": 2,
    }
    assert g1["remappedRows"] == {
        "correctable": 3,
        "uncorrectable": 1,
        "pending": True,
        "failure": False,
    }
    assert g1["pcie"] == {"gen": 3, "maxGen": 4, "width": 8, "maxWidth": 16}
    assert g1["persistenceMode"] is False
    assert g1["processes"] == []
    assert [g["processes"] for g in out["noproc"]] == [[], []]
    assert [dict(g, processes=[]) for g in reading] == out["noproc"]


def _comm(pid: int) -> Optional[str]:
    try:
        return Path("/proc/%d/comm" % pid).read_text().strip()
    except OSError:
        return None


def test_memory_falls_back_to_v1_without_the_v2_symbol(tmp_path: Path) -> None:
    out = run(
        lib("FAKE_NO_MEMORY_V2"),
        "gpu 0 mem_used=1073741824 mem_total=85899345920\n",
        "s = NvmlSource(); results['r'] = s.read(); s.close()",
        tmp_path,
    )
    gpu = out["r"][0]
    assert gpu["memoryUsed"] == GIB + RESERVED  # v1 counts the reserved memory as used
    assert gpu["memoryTotal"] == 85899345920


PROCS = """\
    gpu 0
    gpu 1
    proc 0 1001 1048576
    proc 0 1002 2097152
    proc 1 2001 3145728
    proc 0 1003 4194304
"""


@pytest.mark.parametrize(
    "defines",
    [
        (),  # _v3 writes the 4-field struct
        ("FAKE_CONF_COMPUTE",),  # _v3 writes the 5-field struct
        ("FAKE_CONF_COMPUTE", "FAKE_DETAIL_LIST"),  # newest drivers: 4-field again
        ("FAKE_NO_PROCESS_V3",),  # _v2 with the v2 struct
        ("FAKE_NO_PROCESS_V3", "FAKE_NO_PROCESS_V2"),  # unsuffixed with v1
    ],
    ids=["v3-4field", "v3-5field-confcompute", "v3-4field-detaillist", "v2", "v1"],
)
def test_process_struct_follows_the_driver(defines: Sequence[str], tmp_path: Path) -> None:
    out = run(
        lib(*defines), PROCS, "s = NvmlSource(); results['r'] = s.read(); s.close()", tmp_path
    )
    got = [[(p["pid"], p["usedMemory"]) for p in gpu["processes"]] for gpu in out["r"]]
    assert got == [
        [(1001, 1 << 20), (1002, 2 << 20), (1003, 4 << 20)],
        [(2001, 3 << 20)],
    ]


def test_process_buffer_grows_on_insufficient_size(tmp_path: Path) -> None:
    many = "".join("proc 0 %d %d\n" % (10000 + i, i << 20) for i in range(40))
    out = run(
        lib("FAKE_CONF_COMPUTE"),
        "gpu 0\n" + many,
        """
        s = NvmlSource()
        results["r"] = [len(g["processes"]) for g in s.read()]
        results["again"] = [p["pid"] for p in s.read()[0]["processes"]]
        s.close()
        """,
        tmp_path,
    )
    assert out["r"] == [40]
    assert out["again"] == [10000 + i for i in range(40)]


@pytest.mark.parametrize(
    "defines,script_extra",
    [
        ((), "fail nvmlDeviceGetCurrentClocksThrottleReasons 999\n"),  # the new symbol is used
        (("FAKE_OLD_THROTTLE_ONLY",), ""),  # old drivers: the deprecated one
    ],
    ids=["events-api", "old-throttle-api"],
)
def test_throttle_names(defines: Sequence[str], script_extra: str, tmp_path: Path) -> None:
    out = run(
        lib(*defines),
        "gpu 0 reasons=0xC4\ngpu 1 reasons=0x1\n" + script_extra,
        "s = NvmlSource(); results['r'] = s.read(); s.close()",
        tmp_path,
    )
    g0, g1 = out["r"]
    assert g0["clocksEventReasons"] == 0xC4
    assert g0["throttle"] == ["SwPowerCap", "HwThermalSlowdown", "HwPowerBrakeSlowdown"]
    assert g1["throttle"] == ["GpuIdle"]


def test_unsupported_values_are_none(tmp_path: Path) -> None:
    failing = [
        "nvmlDeviceGetUtilizationRates",
        "nvmlDeviceGetMemoryInfo_v2",
        "nvmlDeviceGetTemperature",
        "nvmlDeviceGetTemperatureThreshold",
        "nvmlDeviceGetPowerUsage",
        "nvmlDeviceGetEnforcedPowerLimit",
        "nvmlDeviceGetCurrentClocksEventReasons",
        "nvmlDeviceGetTotalEccErrors",
        "nvmlDeviceGetRemappedRows",
        "nvmlDeviceGetCurrPcieLinkGeneration",
        "nvmlDeviceGetMaxPcieLinkGeneration",
        "nvmlDeviceGetCurrPcieLinkWidth",
        "nvmlDeviceGetMaxPcieLinkWidth",
        "nvmlDeviceGetPersistenceMode",
        "nvmlDeviceGetComputeRunningProcesses_v3",
    ]
    # GPU 1: NOT_SUPPORTED (3); GPU 2: NO_PERMISSION (4); GPU 0 reads normally.
    lines = ["fail %s 3 1\nfail %s 4 2\n" % (f, f) for f in failing]
    script = "gpu 0 util=5\ngpu 1\ngpu 2\nproc 0 7 1024\nproc 1 8 1024\n" + "".join(lines)
    out = run(lib(), script, "s = NvmlSource(); results['r'] = s.read(); s.close()", tmp_path)
    reading = out["r"]
    check_shape(reading)
    g0, g1, g2 = reading
    assert g0["utilization"] == 5 and g0["remappedRows"] is not None
    assert [p["pid"] for p in g0["processes"]] == [7]
    for gpu in (g1, g2):
        assert gpu == _empty(gpu["index"], gpu["uuid"], gpu["name"])
        assert gpu["lost"] is False and gpu["uuid"].startswith("GPU-")


def _empty(index: int, uuid: str, name: str) -> Dict[str, Any]:
    from gpu_workbench.gpu.source import empty_gpu

    return empty_gpu(index, uuid, name)


def test_remapped_rows_unsupported_on_one_gpu(tmp_path: Path) -> None:
    out = run(
        lib(),
        "gpu 0 remap_corr=4\ngpu 1\nfail nvmlDeviceGetRemappedRows 3 1\n",
        "s = NvmlSource(); results['r'] = s.read(); s.close()",
        tmp_path,
    )
    g0, g1 = out["r"]
    assert g0["remappedRows"]["correctable"] == 4
    assert g1["remappedRows"] is None
    assert g1["temperature"] == 40  # the rest still reads


@pytest.mark.parametrize(
    "code,words",
    [
        (9, "driver is not loaded"),
        (4, "No permission"),
        (18, "different versions"),
        (12, "No NVIDIA driver found"),
        (999, "Unknown Error"),  # no sentence of ours: nvmlErrorString's text
    ],
)
def test_init_failure_is_unavailable_with_a_sentence(code: int, words: str, tmp_path: Path) -> None:
    out = run(
        lib(),
        "init %d\ngpu 0\n" % code,
        "s = NvmlSource(); results['open'] = attempt(s.open); s.close()",
        tmp_path,
    )
    message = out["open"]["unavailable"]
    assert words in message, message
    assert str(code) in message


def test_no_library_is_unavailable(tmp_path: Path) -> None:
    if ctypes.util.find_library("nvidia-ml"):
        pytest.skip("this machine has a real libnvidia-ml; the loader would find it")
    out = run(
        None,
        "gpu 0\n",
        """
        s = NvmlSource()
        results["open"] = attempt(s.open)
        results["events"] = s.supports_events()
        s.close()
        s.close()
        """,
        tmp_path,
    )
    assert out["open"] == {
        "unavailable": "No NVIDIA driver found (libnvidia-ml.so.1 is not installed)"
    }
    assert out["events"] is False


def test_zero_gpus_is_unavailable(tmp_path: Path) -> None:
    out = run(
        lib(),
        "driver 550.54.15\n",
        """
        s = NvmlSource()
        results["open"] = attempt(s.open)
        results["read"] = attempt(s.read)
        s.close()
        """,
        tmp_path,
    )
    assert out["open"] == {"unavailable": "No NVIDIA GPU on this machine"}
    assert out["read"] == {"unavailable": "No NVIDIA GPU on this machine"}


def test_gpu_falls_off_the_bus_mid_run(tmp_path: Path) -> None:
    before = "gpu 0 util=10\ngpu 1 uuid=GPU-B util=20\nname 1 NVIDIA A100\ngpu 2 util=30\n"
    after = before.replace("util=20", "util=20 lost=1")
    out = run(
        lib(),
        before,
        """
        s = NvmlSource()
        results["first"] = s.read()
        write(%r)
        results["second"] = s.read()
        results["third"] = s.read(processes=False)
        s.close()
        """
        % after,
        tmp_path,
    )
    assert [g["lost"] for g in out["first"]] == [False, False, False]
    second = out["second"]
    check_shape(second)
    assert [g["lost"] for g in second] == [False, True, False]
    assert [g["utilization"] for g in second] == [10, None, 30]
    lost = second[1]
    assert lost == _empty(1, "GPU-B", "NVIDIA A100") | {"lost": True}
    assert out["third"][1]["lost"] is True


def test_gpu_lost_before_open_and_mid_run_driver_failures(tmp_path: Path) -> None:
    out = run(
        lib(),
        "gpu 0\ngpu 1 lost=1\n",
        """
        s = NvmlSource()
        results["first"] = s.read()
        write("gpu 0\\ngpu 1\\n")
        results["back"] = s.read()
        write("gpu 0\\ngpu 1\\nfail nvmlDeviceGetUtilizationRates 1\\n")
        results["uninit"] = attempt(s.read)
        write("gpu 0\\ngpu 1\\nfail nvmlDeviceGetTemperature 9 1\\n")
        results["unloaded"] = attempt(s.read)
        s.close()
        """,
        tmp_path,
    )
    first = out["first"]
    assert [g["lost"] for g in first] == [False, True]
    assert first[1]["uuid"] == "" and first[1]["temperature"] is None
    back = out["back"]
    assert [g["lost"] for g in back] == [False, False]
    assert back[1]["uuid"] == "GPU-00000000-0000-0000-0000-000000000001"
    assert "not initialized" in out["uninit"]["unavailable"]
    assert "driver is not loaded" in out["unloaded"]["unavailable"]


def test_xid_events_once_each_while_reading(tmp_path: Path) -> None:
    script = "gpu 0\ngpu 1\ngpu 2\nxid 0 79\nevent 1 0x1 0\nxid 2 13\nevent 1 0x2 0\n"
    more = script + "xid 1 94\nxid 0 31\n"
    out = run(
        lib(),
        script,
        """
        s = NvmlSource()
        s.open()
        results["supports"] = s.supports_events()
        seen = []
        stop = threading.Event()
        errors = []

        def watch():
            try:
                while not stop.is_set():
                    seen.extend(s.wait_events(100))
            except Exception as exc:
                errors.append(repr(exc))

        thread = threading.Thread(target=watch)
        thread.start()
        reads = 0
        deadline = time.monotonic() + 5
        while len(seen) < 3 and time.monotonic() < deadline:
            s.read()
            reads += 1
        results["first"] = list(seen)
        write(%r)
        while len(seen) < 5 and time.monotonic() < deadline:
            s.read()
            reads += 1
        time.sleep(0.3)
        stop.set()
        thread.join()
        results["all"] = seen
        results["reads"] = reads
        results["errors"] = errors
        start = time.monotonic()
        results["timeout"] = s.wait_events(60)
        results["waited"] = time.monotonic() - start
        s.close()
        s.close()
        results["after_close"] = attempt(s.wait_events, 10)
        """
        % more,
        tmp_path,
    )
    assert out["supports"] is True
    assert out["errors"] == []
    # Single-bit ECC is not reported; double-bit ECC is reported as XID 48.
    assert [tuple(e) for e in out["first"]] == [(0, 79), (2, 13), (1, 48)]
    assert [tuple(e) for e in out["all"]] == [(0, 79), (2, 13), (1, 48), (1, 94), (0, 31)]
    assert out["reads"] > 0
    assert out["timeout"] == []
    assert out["waited"] >= 0.05
    assert "not open" in out["after_close"]["unavailable"]


def test_no_event_api(tmp_path: Path) -> None:
    out = run(
        lib("FAKE_NO_EVENTS"),
        "gpu 0\nxid 0 79\n",
        """
        s = NvmlSource()
        s.open()
        results["supports"] = s.supports_events()
        results["events"] = s.wait_events(10)
        results["read"] = s.read()[0]["temperature"]
        s.close()
        """,
        tmp_path,
    )
    assert out == {"supports": False, "events": [], "read": 40}


def test_close_is_idempotent_and_shuts_nvml_down(tmp_path: Path) -> None:
    out = run(
        lib(),
        "gpu 0\n",
        """
        import ctypes
        s = NvmlSource()
        s.close()  # before open: nothing to do
        s.open()
        s.wait_events(1)  # creates the event set
        s.close()
        s.close()
        raw = ctypes.CDLL("libnvidia-ml.so.1")
        count = ctypes.c_uint()
        results["count_after_close"] = raw.nvmlDeviceGetCount_v2(ctypes.byref(count))
        results["reopen"] = s.read()[0]["temperature"]
        s.close()
        """,
        tmp_path,
    )
    assert out["count_after_close"] == 1  # UNINITIALIZED: nvmlShutdown ran once per init
    assert out["reopen"] == 40


def test_call_counter_file(tmp_path: Path) -> None:
    calls = tmp_path / "calls"
    out = run(
        lib(),
        "gpu 0\n",
        """
        import os
        path = os.environ["GPUWB_FAKE_NVML_CALLS"]
        s = NvmlSource()
        s.open()
        after_open = int(open(path).read())
        s.read()
        after_read = int(open(path).read())
        time.sleep(0.1)
        idle = int(open(path).read())
        s.read(processes=False)
        results["counts"] = [after_open, after_read, idle, int(open(path).read())]
        s.close()
        """,
        tmp_path,
        {"GPUWB_FAKE_NVML_CALLS": str(calls)},
    )
    after_open, after_read, idle, lean = out["counts"]
    assert after_open == 4  # count, handle, uuid, name
    assert after_read == idle  # nothing is called between reads
    # The per-sample cost: one call per value (18 with the process list), nothing else.
    assert (after_read - after_open, lean - idle) == (18, 17)


def test_fake_nvidia_smi(tmp_path: Path) -> None:
    directory = lib()
    script = tmp_path / "script.txt"
    write_script(
        script,
        "driver 550.54.15\n"
        "gpu 0 uuid=GPU-0000 util=87 memutil=40 mem_used=65498251264 mem_total=85899345920"
        " temp=71 power_mw=350000 limit_mw=700000 reasons=0x4 persistence=1\n"
        "name 0 NVIDIA H100 80GB HBM3\n"
        "gpu 1\nfail nvmlDeviceGetPowerUsage 3 1\n",
    )
    env = dict(os.environ, GPUWB_FAKE_NVML_SCRIPT=str(script))
    fields = (
        "index,uuid,name,utilization.gpu,utilization.memory,memory.used,memory.total,"
        "temperature.gpu,power.draw,power.limit,clocks_event_reasons.active,driver_version,"
        "persistence_mode,fan.speed"
    )
    proc = subprocess.run(
        [str(directory / "nvidia-smi"), "--query-gpu=" + fields, "--format=csv,noheader,nounits"],
        env=env,
        stdout=subprocess.PIPE,
        timeout=30,
    )
    assert proc.returncode == 0
    rows = proc.stdout.decode().splitlines()
    assert rows[0] == (
        "0, GPU-0000, NVIDIA H100 80GB HBM3, 87, 40, 62464, 81920, 71, 350.00, 700.00,"
        " 0x0000000000000004, 550.54.15, Enabled, [N/A]"
    )
    assert rows[1].split(", ")[8] == "[Not Supported]"

    write_script(script, "init 9\ngpu 0\n")
    proc = subprocess.run(
        [str(directory / "nvidia-smi"), "--query-gpu=index", "--format=csv"],
        env=env,
        stdout=subprocess.PIPE,
        timeout=30,
    )
    assert proc.returncode == 9
    assert b"couldn't communicate with the NVIDIA driver" in proc.stdout


def test_read_cost(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """Not an assertion: prints what one read() costs on the stand-in."""
    gpus = "".join("gpu %d util=50\nproc %d %d 1048576\n" % (i, i, 1 + i) for i in range(8))
    code = """
        import timeit
        s = NvmlSource()
        s.open()
        for key, kw in (("with", {}), ("without", {"processes": False})):
            s.read(**kw)
            n = 200
            results[key] = min(timeit.repeat(lambda: s.read(**kw), number=n, repeat=5)) / n * 1e6
        # One bare call of the stand-in (most of it is the script's stat() on every call).
        import ctypes
        raw = ctypes.CDLL("libnvidia-ml.so.1").nvmlDeviceGetTemperature
        handle, value = s._devices[0].handle, ctypes.c_uint()
        ref = ctypes.byref(value)
        n = 5000
        results["call"] = min(timeit.repeat(lambda: raw(handle, 0, ref), number=n, repeat=5)) / n * 1e6
        s.close()
        """
    one = run(lib(), "gpu 0 util=50\nproc 0 1 1048576\n", code, tmp_path)
    eight = run(lib(), gpus, code, tmp_path)
    with capsys.disabled():
        print(
            "\nNvmlSource.read() on the stand-in: 1 GPU %.0f us (%.0f without processes),"
            " 8 GPUs %.0f us (%.0f without processes); one bare stand-in call %.1f us,"
            " 17 calls per GPU without processes"
            % (one["with"], one["without"], eight["with"], eight["without"], one["call"])
        )
