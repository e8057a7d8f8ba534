"""GPU health of a connected machine: the real backend connects over OpenSSH to the test host
in a network namespace whose ssh sessions load the stand-in libnvidia-ml (LD_LIBRARY_PATH,
GPUWB_FAKE_NVML_SCRIPT), so the agent there reads the "VM's" scripted GPU; this backend reads
a different stand-in GPU. `gpu/watch`, `gpu/status` and `gpu/history` with `machine` answer
with the VM's GPU, named "provider/id"; its samples arrive as `gpu/sample` with `machine`
set; a machine that is not connected is a clear error."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import Any, Dict, Iterator, Tuple

import pytest
from shapes import assert_shape

from conftest import Session, backend_env, spawn
from gpu_workbench import protocol

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "gpu"))
import fake_nvml  # pyright: ignore[reportMissingImports]  (tests/gpu, put on sys.path above)
import netns

MACHINE = "ssh/vm"
VM_GPU = "NVIDIA H100 80GB HBM3"
LOCAL_GPU = "NVIDIA A10G"
VM_SCRIPT = (
    "driver 550.54.15\n"
    "cuda 12040\n"
    "gpu 0 uuid=GPU-REMOTE-0 util=80 mem_used=42949672960 mem_total=85899345920 temp=66\n"
    "name 0 %s\n" % VM_GPU
)
LOCAL_SCRIPT = (
    "driver 535.104.05\ncuda 12020\ngpu 0 uuid=GPU-LOCAL-0 util=5 temp=35\nname 0 %s\n"
    % (LOCAL_GPU)
)


@pytest.fixture(scope="module")
def gpu_vm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tuple[Any, Path, Path]]:
    """(host, its NVML script, this machine's NVML library dir)."""
    netns.require_available()
    base = tmp_path_factory.mktemp("remote-gpu")
    library = fake_nvml.build(base / "nvml")
    script = fake_nvml.write_script(base / "vm-nvml.txt", VM_SCRIPT)
    host = netns.NamespaceHost(
        env={"LD_LIBRARY_PATH": str(library), "GPUWB_FAKE_NVML_SCRIPT": str(script)}
    )
    try:
        yield host, script, library
    finally:
        host.close()


def backend(tmp_path: Path, vm: Any, library: Path) -> Session:
    local_script = fake_nvml.write_script(tmp_path / "local-nvml.txt", LOCAL_SCRIPT)
    extra: Dict[str, str] = {
        "GPUWB_DATA_DIR": str(tmp_path / "local-data"),
        "GPUWB_LOG_LEVEL": "debug",
        "LD_LIBRARY_PATH": str(library),
        "GPUWB_FAKE_NVML_SCRIPT": str(local_script),
    }
    if shutil.which("nvidia-smi"):  # a real driver on this machine: hide its tool
        extra["PATH"] = os.path.dirname(sys.executable) + os.pathsep + "/usr/bin:/bin"
    session = spawn(backend_env(extra))
    session.initialize(
        {
            "vms": {"ssh": {"configFile": str(vm.ssh_config)}},
            "remote": {"knownHostsFile": str(vm.known_hosts)},
            "gpu": {"intervalSeconds": 0.5},
        }
    )
    return session


def result(session: Session, method: str, params: Any, timeout: float = 60.0) -> Any:
    response = session.request(method, params, timeout)
    assert "result" in response, response
    return response["result"]


def wait_sample(session: Session, predicate: Any, timeout: float = 30.0) -> Dict[str, Any]:
    message = session.wait_for(
        lambda m: (
            isinstance(m, dict) and m.get("method") == "gpu/sample" and predicate(m["params"])
        ),
        timeout,
    )
    return message["params"]


def test_a_connected_machines_gpus_are_watched_read_and_streamed(
    tmp_path: Path, gpu_vm: Tuple[Any, Path, Path]
) -> None:
    vm, vm_script, library = gpu_vm
    session = backend(tmp_path, vm, library)
    try:
        connected = result(session, "remote/connect", {"provider": "ssh", "id": "vm"}, 180)
        assert connected["state"] == "connected", connected

        local = result(session, "gpu/status", {})
        assert local["machine"] != MACHINE
        assert [g["name"] for g in local["gpus"]] == [LOCAL_GPU]

        watched = result(
            session, "gpu/watch", {"watcher": "statusBar", "watching": True, "machine": MACHINE}
        )
        assert_shape(protocol.GpuSnapshot, watched)
        assert watched["machine"] == MACHINE and watched["source"] == "nvml"
        assert [(g["name"], g["utilization"]) for g in watched["gpus"]] == [(VM_GPU, 80)]

        status = result(session, "gpu/status", {"machine": MACHINE, "fresh": True})
        assert_shape(protocol.GpuSnapshot, status)
        assert status["machine"] == MACHINE
        assert status["driverVersion"] == "550.54.15"
        first = status["gpus"][0]
        assert (first["name"], first["uuid"], first["utilization"]) == (VM_GPU, "GPU-REMOTE-0", 80)
        assert first["memoryUsed"] == 40 * (1 << 30) and first["temperature"] == 66

        sample = wait_sample(session, lambda s: s["machine"] == MACHINE)
        assert_shape(protocol.GpuSnapshot, sample)
        assert [g["name"] for g in sample["gpus"]] == [VM_GPU]

        # A change on the machine is streamed back, named by the machine.
        fake_nvml.write_script(vm_script, VM_SCRIPT.replace("util=80", "util=31"))
        changed = wait_sample(
            session, lambda s: s["machine"] == MACHINE and s["gpus"][0]["utilization"] == 31
        )
        assert changed["gpus"][0]["uuid"] == "GPU-REMOTE-0"

        history = result(session, "gpu/history", {"machine": MACHINE, "seconds": 600})
        assert_shape(protocol.GpuHistoryResult, history)
        assert history["machine"] == MACHINE
        utilizations = [p["gpus"][0]["utilization"] for p in history["points"]]
        assert 80 in utilizations and 31 in utilizations, utilizations
        assert utilizations.index(80) < len(utilizations) - 1 - utilizations[::-1].index(31)

        # This machine's history is its own: it never saw the VM's GPU.
        local_history = result(session, "gpu/history", {"seconds": 600})
        assert local_history["machine"] == local["machine"]
        assert all(
            g["utilization"] != 80 and g["utilization"] != 31
            for p in local_history["points"]
            for g in p["gpus"]
        )

        stopped = result(
            session, "gpu/watch", {"watcher": "statusBar", "watching": False, "machine": MACHINE}
        )
        assert stopped["machine"] == MACHINE
        assert "Traceback" not in session.stderr_text()
    finally:
        session.close()


def test_an_unconnected_machine_is_a_clear_error(
    tmp_path: Path, gpu_vm: Tuple[Any, Path, Path]
) -> None:
    vm, _, library = gpu_vm
    session = backend(tmp_path, vm, library)
    try:
        for method, params in (
            ("gpu/status", {"machine": "ssh/vm"}),
            ("gpu/history", {"machine": "ssh/vm", "seconds": 60}),
            ("gpu/watch", {"watcher": "panel", "watching": True, "machine": "ssh/vm"}),
        ):
            response = session.request(method, params, 30)
            error = response.get("error")
            assert error, (method, response)
            assert error["data"]["kind"] == "RemoteUnavailable", (method, error)
            assert error["message"] == "Not connected to ssh/vm", (method, error)
            assert "Connect" in (error["data"].get("hint") or ""), (method, error)
        # This machine's GPUs are still served.
        assert [g["name"] for g in result(session, "gpu/status", {})["gpus"]] == [LOCAL_GPU]
    finally:
        session.close()
