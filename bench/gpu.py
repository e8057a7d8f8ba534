#!/usr/bin/env python3
"""GPU health benchmark: the cost of one sample through NVML (ctypes, the library loaded
once) against spawning `nvidia-smi` per sample, and the backend's CPU use while sampling.

Both sides read the same stand-in libnvidia-ml (server-python/tests/gpu/fake_nvml.c, built
here with gcc) so they are measured in one run on one machine:
- NVML: `NvmlSource.read()` in a process that loaded the library once (what the backend's
  sampler does every interval), 1 and 8 GPUs, with and without the process lists;
- peer: a fresh `nvidia-smi --query-gpu=... --format=csv,noheader,nounits` process per
  sample (what the status-bar extensions in the reference do every 1-3 s). The stand-in
  `nvidia-smi` is a small C program linked to the stand-in library, so this is a LOWER bound
  of the real tool's cost: the real one is a larger binary, and without persistence mode its
  NVML initialization alone takes 1-3 s per GPU;
- CPU while watching at the default 2 s interval: the backend process's CPU time over the
  window, against the CPU time of the spawn-per-sample loop over the same window.

    python3 bench/gpu.py [--samples N] [--seconds S] [--json OUT]

With a real driver (the `device` tool's GPU machine) pass `--real` to measure the system
library and the system nvidia-smi instead of the stand-ins.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any, Dict, List

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
SERVER_ROOT = ROOT / "server-python"
sys.path.insert(0, str(BENCH_DIR))
sys.path.insert(0, str(SERVER_ROOT / "tests" / "gpu"))

QUERY = (
    "index,uuid,name,utilization.gpu,utilization.memory,memory.used,memory.total,"
    "temperature.gpu,power.draw,power.limit,clocks_event_reasons.active"
)


def script_for(gpus: int) -> str:
    lines = ["driver 550.54.15", "cuda 12040"]
    for i in range(gpus):
        lines.append(
            "gpu %d uuid=GPU-%04d util=%d mem_used=%d mem_total=85899345920 temp=%d "
            "slowdown=90 power_mw=350000 limit_mw=700000 pcie_gen=5 pcie_maxgen=5 "
            "pcie_width=16 pcie_maxwidth=16 persistence=1" % (i, i, 50 + i, (10 + i) << 30, 60 + i)
        )
        lines.append("name %d NVIDIA H100 80GB HBM3" % i)
        lines.append("proc %d %d %d" % (i, 4000 + i, 8 << 30))
    return "\n".join(lines) + "\n"


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return "%s, %d CPUs, %s, Python %s" % (
        cpu,
        os.cpu_count() or 0,
        platform.system(),
        platform.python_version(),
    )


def median_us(xs: List[float]) -> float:
    return statistics.median(xs) * 1e6


# ---- NVML in one process ----

NVML_DRIVER = textwrap.dedent(
    """
    import json, sys, time, resource
    sys.path.insert(0, %r)
    from gpu_workbench.gpu.nvml import NvmlSource
    n = int(sys.argv[1])
    t0 = time.perf_counter()
    source = NvmlSource()
    source.open()
    opened = time.perf_counter() - t0
    out = {"open": opened}
    for processes in (True, False):
        source.read(processes=processes)
        times = []
        cpu0 = resource.getrusage(resource.RUSAGE_SELF)
        for _ in range(n):
            t = time.perf_counter()
            source.read(processes=processes)
            times.append(time.perf_counter() - t)
        cpu1 = resource.getrusage(resource.RUSAGE_SELF)
        cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
        out["processes" if processes else "noProcesses"] = {"times": times, "cpu": cpu / n}
    source.close()
    print(json.dumps(out))
    """
    % str(SERVER_ROOT)
)


def nvml_cost(env: Dict[str, str], samples: int) -> Dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-c", NVML_DRIVER, str(samples)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    return json.loads(done.stdout)


def spawn_cost(env: Dict[str, str], smi: str, samples: int) -> Dict[str, Any]:
    argv = [smi, "--query-gpu=" + QUERY, "--format=csv,noheader,nounits"]
    subprocess.run(argv, env=env, capture_output=True, check=True)  # warm the page cache
    times = []
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    for _ in range(samples):
        t = time.perf_counter()
        subprocess.run(argv, env=env, capture_output=True, check=True)
        times.append(time.perf_counter() - t)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"times": times, "cpu": cpu / samples}


# ---- CPU while watching ----


def proc_cpu_seconds(pid: int) -> float:
    fields = Path("/proc/%d/stat" % pid).read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks  # utime, stime


def backend_cpu(env: Dict[str, str], seconds: float, work: Path) -> Dict[str, Any]:
    from kernels import Backend

    saved = dict(os.environ)
    os.environ.update(env)
    try:
        backend = Backend(sys.executable, work / "data", work / "backend.log")
    finally:
        os.environ.clear()
        os.environ.update(saved)
    try:
        backend.initialize()
        first = backend.request("gpu/watch", {"watcher": "bench", "watching": True})
        assert first["source"] != "none", first["message"]
        time.sleep(1.0)
        # The same window with no watcher: what the backend costs anyway (its other threads).
        backend.request("gpu/watch", {"watcher": "bench", "watching": False})
        time.sleep(0.5)
        idle_cpu = proc_cpu_seconds(backend.proc.pid)
        time.sleep(seconds / 2)
        idle_cpu = (proc_cpu_seconds(backend.proc.pid) - idle_cpu) / (seconds / 2)
        backend.request("gpu/watch", {"watcher": "bench", "watching": True})
        time.sleep(0.5)
        start_cpu = proc_cpu_seconds(backend.proc.pid)
        start = time.monotonic()
        received = 0
        while time.monotonic() - start < seconds:
            try:
                message = backend.read(timeout=max(0.05, seconds - (time.monotonic() - start)))
            except TimeoutError:
                break
            if message.get("method") == "gpu/sample":
                received += 1
        elapsed = time.monotonic() - start
        cpu = proc_cpu_seconds(backend.proc.pid) - start_cpu
        backend.request("gpu/watch", {"watcher": "bench", "watching": False})
        return {"seconds": elapsed, "cpu": cpu, "samples": received, "idleCpuPerSecond": idle_cpu}
    finally:
        backend.close()


def spawn_loop_cpu(
    env: Dict[str, str], smi: str, seconds: float, interval: float
) -> Dict[str, Any]:
    argv = [smi, "--query-gpu=" + QUERY, "--format=csv,noheader,nounits"]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.monotonic()
    count = 0
    next_at = start
    while time.monotonic() - start < seconds:
        subprocess.run(argv, env=env, capture_output=True, check=True)
        count += 1
        next_at += interval
        time.sleep(max(0.0, next_at - time.monotonic()))
    elapsed = time.monotonic() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"seconds": elapsed, "cpu": cpu, "samples": count}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, default=2000)
    parser.add_argument("--spawns", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--real", action="store_true", help="the system NVML and nvidia-smi")
    parser.add_argument("--json", default=str(BENCH_DIR / "results" / "gpu.json"))
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="gpuwb-bench-gpu-"))
    results: Dict[str, Any] = {"machine": machine(), "date": time.strftime("%Y-%m-%d")}
    rows: List[List[str]] = []
    configs: List[Any] = []
    if args.real:
        smi = shutil.which("nvidia-smi")
        if smi is None:
            print("--real: nvidia-smi is not on PATH", file=sys.stderr)
            return 2
        configs.append(("real", dict(os.environ), smi))
    else:
        import fake_nvml

        lib = fake_nvml.build(work / "lib")
        smi = str(lib / "nvidia-smi")
        for gpus in (1, 8):
            script = work / ("script-%d.txt" % gpus)
            fake_nvml.write_script(script, script_for(gpus))
            env = dict(os.environ)
            env.update(LD_LIBRARY_PATH=str(lib), GPUWB_FAKE_NVML_SCRIPT=str(script))
            env.pop("GPUWB_FAKE_NVML_CALLS", None)
            configs.append(("%d GPU%s" % (gpus, "" if gpus == 1 else "s"), env, smi))

    for label, env, smi_path in configs:
        nvml = nvml_cost(env, args.samples)
        peer = spawn_cost(env, smi_path, args.spawns)
        with_p = median_us(nvml["processes"]["times"])
        without_p = median_us(nvml["noProcesses"]["times"])
        spawn = median_us(peer["times"])
        results[label] = {"nvml": nvml, "spawn": {"cpu": peer["cpu"], "median": spawn}}
        rows.append(
            [
                label,
                "%.0f µs" % with_p,
                "%.0f µs" % without_p,
                "%.1f ms" % (spawn / 1000),
                "%.0fx" % (spawn / with_p),
                "%.0f µs vs %.1f ms" % (nvml["processes"]["cpu"] * 1e6, peer["cpu"] * 1e3),
            ]
        )
        results[label]["nvml"] = {
            "open": nvml["open"],
            "medianUs": with_p,
            "medianNoProcessesUs": without_p,
            "cpuPerSampleUs": nvml["processes"]["cpu"] * 1e6,
        }

    label, env, smi_path = configs[-1]
    watch = backend_cpu(env, args.seconds, work)
    loop = spawn_loop_cpu(env, smi_path, args.seconds, 2.0)
    results["cpu"] = {"backend": watch, "spawnLoop": loop, "config": label}

    print("Machine: %s" % results["machine"])
    print()
    print(
        "| GPUs | NVML sample (with processes) | NVML sample (no processes) "
        "| spawn nvidia-smi per sample | ratio | CPU per sample (NVML vs spawn) |"
    )
    print("|---|---|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")
    print()
    sampling_cpu = watch["cpu"] - watch["idleCpuPerSecond"] * watch["seconds"]
    print(
        "CPU while watching every 2 s (%s, %.0f s): backend %.2f %% of a core "
        "(%.2f %% idle without watchers; sampling adds %.1f ms per sample, %d samples) "
        "vs nvidia-smi per sample %.2f %% (%.1f ms per sample)"
        % (
            label,
            watch["seconds"],
            100 * watch["cpu"] / watch["seconds"],
            100 * watch["idleCpuPerSecond"],
            1000 * sampling_cpu / max(1, watch["samples"]),
            watch["samples"],
            100 * loop["cpu"] / loop["seconds"],
            1000 * loop["cpu"] / max(1, loop["samples"]),
        )
    )
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
