"""LocalProvider: one always-running, free machine with GPUs from nvidia-smi when present."""

from __future__ import annotations

import os
import socket
import stat
import time
from pathlib import Path

import pytest

from gpu_workbench.vms.base import ProviderError
from gpu_workbench.vms.local import LocalProvider, summarize_gpus


def _script(path: Path, body: str) -> str:
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return str(path)


def test_info_is_available_and_cannot_act() -> None:
    info = LocalProvider().info({})
    assert info["name"] == "local"
    assert info["displayName"] == "This machine"
    assert info["available"] is True and info["reason"] is None
    assert info["capabilities"] == []
    assert info["credentialFields"] == [] and info["configured"] is True


def test_one_running_free_vm_without_gpu(tmp_path: Path) -> None:
    missing = str(tmp_path / "no-such-nvidia-smi")
    vms = LocalProvider({"nvidiaSmiPath": missing}).list({})
    assert len(vms) == 1
    vm = vms[0]
    assert vm.id == "local" and vm.key == "local/local"
    assert vm.name == (socket.gethostname() or "localhost")
    assert vm.state == "running"
    assert vm.price_per_hour == 0.0
    assert vm.gpu_count == 0 and vm.gpu_model is None
    assert vm.ssh is None and vm.capabilities == []
    assert vm.detail is not None and "nvidia-smi" in vm.detail
    js = vm.to_json()
    assert js["pricePerHour"] == 0.0 and js["state"] == "running"


def test_absent_nvidia_smi_on_path_means_no_gpus(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    vm = LocalProvider().list({})[0]
    assert vm.gpu_count == 0 and vm.gpu_model is None and vm.detail is None


def test_gpus_from_fake_nvidia_smi_on_path(monkeypatch, tmp_path: Path) -> None:
    _script(tmp_path / "nvidia-smi", 'printf "NVIDIA H100 80GB HBM3\\nNVIDIA H100 80GB HBM3\\n"\n')
    monkeypatch.setenv("PATH", str(tmp_path) + os.pathsep + os.environ.get("PATH", ""))
    vm = LocalProvider().list({})[0]
    assert vm.gpu_model == "NVIDIA H100 80GB HBM3"
    assert vm.gpu_count == 2
    assert vm.detail is None


def test_failing_nvidia_smi_is_zero_gpus_with_detail(tmp_path: Path) -> None:
    exe = _script(tmp_path / "nvidia-smi", 'echo "NVIDIA-SMI has failed" >&2; exit 9\n')
    vm = LocalProvider({"nvidiaSmiPath": exe}).list({})[0]
    assert vm.gpu_count == 0 and vm.state == "running"
    assert vm.detail == "nvidia-smi failed: NVIDIA-SMI has failed"


def test_boot_time_from_proc_stat_then_uptime(tmp_path: Path) -> None:
    (tmp_path / "stat").write_text("cpu  1 2 3\nbtime 1700000000\nprocesses 5\n")
    p = LocalProvider({"procDir": str(tmp_path), "nvidiaSmiPath": str(tmp_path / "x")})
    assert p.list({})[0].launched_at == 1700000000.0
    (tmp_path / "stat").write_text("cpu  1 2 3\n")
    (tmp_path / "uptime").write_text("100.00 50.00\n")
    launched = p.list({})[0].launched_at
    assert launched is not None and abs(launched - (time.time() - 100)) < 5


def test_real_boot_time_is_in_the_past() -> None:
    if not os.path.exists("/proc/stat"):
        return
    launched = LocalProvider().list({})[0].launched_at
    assert launched is not None and 0 < launched < time.time()


def test_summarize_mixed_models() -> None:
    assert summarize_gpus([]) == (None, 0)
    assert summarize_gpus(["A100", " ", "L4", "A100"]) == ("A100 + L4", 3)


def test_operations_are_unsupported() -> None:
    p = LocalProvider()
    for op in (p.start, p.stop, p.terminate):
        with pytest.raises(ProviderError) as info:
            op({}, "local")
        assert info.value.kind == "Unsupported"
