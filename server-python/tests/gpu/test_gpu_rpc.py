"""gpu/* through the real backend, reading a stand-in libnvidia-ml found by the real loader
(LD_LIBRARY_PATH): scripted numbers, verdict changes pushed as they happen, no polling
without watchers, history, settings, the checks command, and the calm no-GPU state."""

from __future__ import annotations

import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import pytest
from shapes import assert_shape

from conftest import Session, backend_env, spawn
from gpu_workbench import protocol

sys.path.insert(0, str(Path(__file__).resolve().parent))
import fake_nvml

GIB = 1 << 30

H100 = """driver 550.54.15
cuda 12040
gpu 0 uuid=GPU-0000 util=87 memutil=40 mem_used=65498251264 mem_total=85899345920 temp=71 slowdown=90 power_mw=350000 limit_mw=700000 reasons=0x0 ecc_cv=0 ecc_uv=0 ecc_ca=0 ecc_ua=0 remap_corr=0 remap_unc=0 remap_pending=0 remap_failure=0 pcie_gen=5 pcie_maxgen=5 pcie_width=16 pcie_maxwidth=16 persistence=1 lost=0
name 0 NVIDIA H100 80GB HBM3
proc 0 4242 8589934592
gpu 1 uuid=GPU-0001 util=12 mem_used=1073741824 mem_total=85899345920 temp=45 slowdown=90 power_mw=90000 limit_mw=700000 pcie_gen=5 pcie_maxgen=5 pcie_width=16 pcie_maxwidth=16 persistence=1
name 1 NVIDIA H100 80GB HBM3
"""


@pytest.fixture(scope="module")
def nvml_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return fake_nvml.build(tmp_path_factory.mktemp("nvml"))


def gpu_backend(
    tmp_path: Path,
    library_dir: Optional[Path],
    script: Optional[str] = None,
    options: Any = None,
) -> Session:
    script_path = tmp_path / "nvml-script.txt"
    fake_nvml.write_script(script_path, script if script is not None else H100)
    empty = tmp_path / "no-nvml"
    empty.mkdir(exist_ok=True)
    extra: Dict[str, str] = {
        "GPUWB_DATA_DIR": str(tmp_path / "data"),
        "LD_LIBRARY_PATH": str(library_dir or empty),
        "GPUWB_FAKE_NVML_SCRIPT": str(script_path),
        "GPUWB_FAKE_NVML_CALLS": str(tmp_path / "calls.txt"),
        "GPUWB_LOG_LEVEL": "debug",
    }
    if shutil.which("nvidia-smi"):  # a real driver on this machine: hide its tool
        extra["PATH"] = os.path.dirname(sys.executable)
    session = spawn(backend_env(extra))
    session.initialize(options if options is not None else {"gpu": {"intervalSeconds": 0.5}})
    return session


def result(session: Session, method: str, params: Any, timeout: float = 30.0) -> Any:
    response = session.request(method, params, timeout)
    assert "result" in response, response
    return response["result"]


def samples(session: Session) -> List[Dict[str, Any]]:
    return [
        m["params"]
        for m in session.drain()
        if isinstance(m, dict) and m.get("method") == "gpu/sample"
    ]


def wait_sample(session: Session, predicate: Any, timeout: float = 10.0) -> Dict[str, Any]:
    message = session.wait_for(
        lambda m: (
            isinstance(m, dict) and m.get("method") == "gpu/sample" and predicate(m["params"])
        ),
        timeout,
    )
    return message["params"]


def calls(tmp_path: Path) -> int:
    try:
        return int((tmp_path / "calls.txt").read_text().strip() or 0)
    except FileNotFoundError:
        return 0


def test_methods_are_advertised(tmp_path: Path) -> None:
    session = gpu_backend(tmp_path, None)
    try:
        status = result(session, "workbench/status", {})
        for name in ("gpu/status", "gpu/watch", "gpu/history", "gpu/check"):
            assert name in status["capabilities"], name
    finally:
        session.close()


def test_no_gpu_is_a_calm_state_with_no_polling(tmp_path: Path) -> None:
    session = gpu_backend(tmp_path, None)
    try:
        snapshot = result(session, "gpu/status", {})
        assert_shape(protocol.GpuSnapshot, snapshot)
        assert snapshot["source"] == "none"
        assert snapshot["gpus"] == [] and snapshot["verdict"] == "ok"
        assert snapshot["message"], "the snapshot must say why there is no GPU"
        watched = result(session, "gpu/watch", {"watcher": "statusBar", "watching": True})
        assert watched["source"] == "none" and watched["sampling"] is False
        time.sleep(1.5)
        assert samples(session) == []
        assert "Traceback" not in session.stderr_text()
    finally:
        session.close()


def test_status_reports_the_scripted_numbers(tmp_path: Path, nvml_dir: Path) -> None:
    session = gpu_backend(tmp_path, nvml_dir)
    try:
        snapshot = result(session, "gpu/status", {})
        assert_shape(protocol.GpuSnapshot, snapshot)
        assert snapshot["source"] == "nvml"
        assert snapshot["driverVersion"] == "550.54.15"
        assert snapshot["cudaVersion"] == "12.4"
        assert snapshot["verdict"] == "ok", snapshot["reasons"]
        first, second = snapshot["gpus"]
        assert first["name"] == "NVIDIA H100 80GB HBM3" and first["uuid"] == "GPU-0000"
        assert first["utilization"] == 87 and second["utilization"] == 12
        assert first["memoryUsed"] == 65498251264 and first["memoryTotal"] == 80 * GIB
        assert first["temperature"] == 71 and first["temperatureSlowdown"] == 90
        assert first["powerDraw"] == pytest.approx(350.0)
        assert first["powerLimit"] == pytest.approx(700.0)
        assert first["pcie"] == {"gen": 5, "maxGen": 5, "width": 16, "maxWidth": 16}
        assert [p["pid"] for p in first["processes"]] == [4242]
        assert first["processes"][0]["usedMemory"] == 8 * GIB
        assert first["persistenceMode"] is True
    finally:
        session.close()


def test_watch_pushes_changes_and_nothing_is_polled_without_watchers(
    tmp_path: Path, nvml_dir: Path
) -> None:
    session = gpu_backend(tmp_path, nvml_dir)
    script = tmp_path / "nvml-script.txt"
    try:
        time.sleep(1.0)
        assert calls(tmp_path) == 0, "the backend read GPUs before anyone asked"
        result(session, "gpu/watch", {"watcher": "statusBar", "watching": True})
        wait_sample(session, lambda s: s["verdict"] == "ok")

        fake_nvml.write_script(script, H100.replace("reasons=0x0", "reasons=0x8"))
        throttled = wait_sample(session, lambda s: s["verdict"] == "warn")
        assert throttled["gpus"][0]["throttle"] == ["HwSlowdown"]
        assert any(r["code"] == "hwSlowdown" and r["gpu"] == 0 for r in throttled["reasons"])

        fake_nvml.write_script(script, H100.replace("persistence=1 lost=0", "persistence=1 lost=1"))
        lost = wait_sample(session, lambda s: s["verdict"] == "critical")
        assert lost["gpus"][0]["lost"] is True and lost["gpus"][0]["utilization"] is None
        assert lost["gpus"][1]["utilization"] == 12, "the other GPU must still be read"
        assert any(r["code"] == "gpuLost" for r in lost["reasons"])

        history = result(session, "gpu/history", {"seconds": 60})
        assert_shape(protocol.GpuHistoryResult, history)
        assert len(history["points"]) >= 3
        assert history["points"][0]["gpus"][0]["utilization"] == 87

        result(session, "gpu/watch", {"watcher": "statusBar", "watching": False})
        time.sleep(0.8)
        samples(session)
        before = calls(tmp_path)
        time.sleep(1.6)
        assert calls(tmp_path) == before, "GPUs were polled with no watcher"
        assert samples(session) == []
    finally:
        session.close()


def test_xid_event_turns_the_gpu_critical(tmp_path: Path, nvml_dir: Path) -> None:
    session = gpu_backend(tmp_path, nvml_dir)
    script = tmp_path / "nvml-script.txt"
    try:
        result(session, "gpu/watch", {"watcher": "panel", "watching": True})
        fake_nvml.write_script(script, H100 + "xid 1 79\n")
        critical = wait_sample(session, lambda s: any(g["xids"] for g in s["gpus"]))
        xids = critical["gpus"][1]["xids"]
        assert [x["xid"] for x in xids] == [79]
        assert critical["verdict"] == "critical"
    finally:
        session.close()


def test_settings_change_applies_without_restart(tmp_path: Path, nvml_dir: Path) -> None:
    session = gpu_backend(tmp_path, nvml_dir)
    try:
        assert result(session, "gpu/status", {})["verdict"] == "ok"
        session.notify(
            "workspace/didChangeConfiguration",
            {"settings": {"gpuWorkbench": {"gpu": {"expectedCount": 8, "intervalSeconds": 1}}}},
        )
        snapshot = result(session, "gpu/status", {"fresh": True})
        assert snapshot["verdict"] == "critical"
        assert any(r["code"] == "gpuCount" for r in snapshot["reasons"])
        assert snapshot["intervalSeconds"] == 1.0
    finally:
        session.close()


def test_check_reports_rows_and_markdown(tmp_path: Path, nvml_dir: Path) -> None:
    session = gpu_backend(tmp_path, nvml_dir)
    try:
        report = result(session, "gpu/check", {"python": sys.executable}, timeout=120)
        assert_shape(protocol.GpuCheckReport, report)
        ids = {row["id"] for row in report["rows"]}
        assert {"driver", "gpuCount"} <= ids, ids
        assert report["verdict"] in ("pass", "warn", "fail")
        assert report["markdown"].lstrip().startswith("#")
        assert "550.54.15" in report["markdown"]
    finally:
        session.close()


def test_untrusted_check_runs_no_interpreter(tmp_path: Path, nvml_dir: Path) -> None:
    session = gpu_backend(tmp_path, nvml_dir, options={"trusted": False})
    try:
        snapshot = result(session, "gpu/status", {})
        assert snapshot["source"] == "nvml", "telemetry is served in untrusted workspaces"
        marker = tmp_path / "ran"
        fake_python = tmp_path / "python"
        fake_python.write_text("#!/bin/sh\ntouch %s\n" % marker)
        fake_python.chmod(0o755)
        report = result(session, "gpu/check", {"python": str(fake_python)}, timeout=120)
        assert not marker.exists(), "an untrusted workspace ran an interpreter"
        assert any("trust" in row["detail"].lower() for row in report["rows"]), report["rows"]
    finally:
        session.close()


def test_bad_params_are_clear_errors(tmp_path: Path) -> None:
    session = gpu_backend(tmp_path, None)
    try:
        for method, params in (
            ("gpu/watch", {"watcher": " ", "watching": True}),
            ("gpu/watch", {"watcher": "x"}),
            ("gpu/history", {"seconds": -1}),
            ("gpu/status", {"fresh": "yes"}),
        ):
            response = session.request(method, params, 10)
            assert response.get("error", {}).get("code") == -32602, (method, response)
    finally:
        session.close()
