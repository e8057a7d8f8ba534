"""SkyPilotProvider against a fake `sky` CLI (tests/vms/fake_sky.py) and without one."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Dict, List

import pytest
from fake_sky import read_state, set_state, write_fake_sky

from gpu_workbench.vms import skypilot
from gpu_workbench.vms.base import CreateRequest, ProviderError
from gpu_workbench.vms.skypilot import (
    INSTALL_HINT,
    SkyPilotProvider,
    is_accelerator_spec,
    map_status,
    parse_accelerators,
    parse_launched,
    parse_resources,
    parse_status_table,
)


def _clusters() -> Dict[str, Any]:
    now = time.time()
    return {
        "dev": {
            "status": "UP",
            "resources": "1x(gpus=L4:1, cpus=4, mem=16, g6.xlarge, disk=256)",
            "infra": "AWS/us-east-1",
            "launched_at": now - 7200,
            "autostop": 10,
            "to_down": True,
            "head_ip": "1.2.3.4",
        },
        "old": {
            "status": "STOPPED",
            "resources": "2x[spot](gpus=V100:1, cpus=8, mem=61, p3.2xlarge, disk=256)",
            "infra": "AWS/us-west-2",
            "launched_at": now - 3 * 86400,
            "spot": True,
        },
    }


@pytest.fixture(autouse=True)
def _fresh_json_cache() -> None:
    skypilot._JSON_SUPPORT.clear()
    skypilot._VERBOSE_SUPPORT.clear()


@pytest.fixture
def fake(tmp_path: Path) -> Path:
    write_fake_sky(tmp_path, {"clusters": _clusters()})
    return tmp_path


def _provider(directory: Path, **settings: Any) -> SkyPilotProvider:
    return SkyPilotProvider({"skyPath": str(directory / "sky"), **settings})


def _calls(directory: Path) -> List[List[str]]:
    return read_state(directory)["calls"]


def test_absent_cli_is_unavailable_and_harmless(monkeypatch: Any, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    p = SkyPilotProvider()
    assert p.sky_path() is None
    info = p.info({})
    assert info["available"] is False
    assert info["reason"] == INSTALL_HINT
    assert "pip install skypilot" in info["reason"]
    assert info["capabilities"] == []
    with pytest.raises(ProviderError) as err:
        p.list({})
    assert err.value.kind == "ProviderUnavailable" and err.value.hint == INSTALL_HINT
    bad = SkyPilotProvider({"skyPath": str(tmp_path / "missing-sky")})
    assert bad.availability({}) == INSTALL_HINT


def test_found_on_path(monkeypatch: Any, fake: Path) -> None:
    monkeypatch.setenv("PATH", str(fake))
    p = SkyPilotProvider()
    assert p.sky_path() == str(fake / "sky")
    info = p.info({})
    assert info["available"] and info["reason"] is None
    assert info["capabilities"] == ["create", "start", "stop", "terminate", "spot"]
    assert [v.id for v in p.list({})] == ["dev", "old"]


def _check_listed(vms: Dict[str, Any], address: Any) -> None:
    dev, old = vms["dev"], vms["old"]
    assert dev.state == "running" and dev.provider == "skypilot" and dev.key == "skypilot/dev"
    assert (dev.gpu_model, dev.gpu_count, dev.instance_type) == ("L4", 1, "g6.xlarge")
    assert dev.region == "AWS/us-east-1"
    assert dev.price_per_hour is None  # sky status has no price: unknown, never 0
    assert dev.detail == "autostop 10m (down)"
    assert dev.capabilities == ["stop", "terminate"]
    assert dev.address == address
    # Connected to through the Host entry SkyPilot writes for each cluster.
    assert dev.ssh is not None and dev.ssh.alias == "dev" and dev.ssh.host == (address or "dev")
    assert old.ssh is None  # stopped: nothing to connect to
    assert dev.launched_at is not None and abs(dev.launched_at - (time.time() - 7200)) < 120
    assert old.state == "stopped" and old.spot
    assert (old.gpu_model, old.gpu_count, old.instance_type) == ("V100", 2, "p3.2xlarge")
    assert old.region == "AWS/us-west-2"
    assert old.capabilities == ["start", "terminate"]
    assert old.detail is None


def test_list_from_json(fake: Path) -> None:
    p = _provider(fake)
    _check_listed({v.id: v for v in p.list({})}, None)  # StatusResponse has no head IP
    assert _calls(fake) == [["status", "-o", "json"]]
    p = _provider(fake, prices={"dev": 0.8})
    assert {v.id: v for v in p.list({})}["dev"].price_per_hour == 0.8


def test_list_from_verbose_table_without_json(fake: Path) -> None:
    set_state(fake, json=False)
    p = _provider(fake)
    _check_listed({v.id: v for v in p.list({})}, "1.2.3.4")
    # -o json was tried once, rejected, then remembered; -v gives GPUs and HEAD_IP.
    assert _calls(fake) == [["status", "-o", "json"], ["status", "-v"]]
    p.list({})
    assert _calls(fake)[-1] == ["status", "-v"] and len(_calls(fake)) == 3


def test_list_from_older_table(fake: Path) -> None:
    set_state(fake, old=True)
    p = _provider(fake)
    vms = {v.id: v for v in p.list({})}
    assert _calls(fake) == [["status", "-o", "json"], ["status", "-v"], ["status"]]
    dev, old = vms["dev"], vms["old"]
    assert (dev.state, dev.gpu_model, dev.gpu_count, dev.instance_type) == (
        "running",
        "L4",
        1,
        "g6.xlarge",
    )
    assert dev.region == "us-east-1" and dev.detail == "autostop 10m (down)"
    assert (old.gpu_model, old.gpu_count, old.spot, old.state) == ("V100", 2, True, "stopped")
    p.list({})
    assert _calls(fake)[-1] == ["status"] and len(_calls(fake)) == 4


def test_json_records_skip_prose_and_unwrap() -> None:
    records = skypilot._json_records
    prose = "[warn] odd {thing}\nCluster(s) not found: \x1b[1mghost\x1b[0m.\n[]\n"
    assert records(prose) == []
    body = '[\n  {\n    "name": "a",\n    "status": "UP"\n  }\n]'
    assert records("Fetching...\n" + body) == [{"name": "a", "status": "UP"}]
    assert records('{"clusters": [{"name": "b"}]}') == [{"name": "b"}]
    assert records("Usage: sky status [OPTIONS]\n") is None
    assert records("[1, 2]") is None


def test_record_variants() -> None:
    p = SkyPilotProvider()
    # The shape planned in skypilot PR #8784: ISO time, autostop_minutes, cloud/region.
    vm = p._vm_from_record(
        {
            "name": "x",
            "status": "UP",
            "launched_at": "2026-02-04T10:00:00Z",
            "autostop_minutes": 60,
            "to_down": False,
            "cloud": "GCP",
            "region": "us-central1",
            "resources": "1x GCP(n1-standard-4, T4)",
            "nodes": 2,
            "accelerators": "T4:1",
        }
    )
    assert vm is not None
    assert vm.launched_at == 1770199200.0 and vm.detail == "autostop 60m"
    assert vm.region == "GCP/us-central1" and (vm.gpu_model, vm.gpu_count) == ("T4", 2)
    vm = p._vm_from_record(
        {"name": "y", "status": "ClusterStatus.STOPPED", "autostop": -1, "to_down": True}
    )
    assert vm is not None and vm.state == "stopped" and vm.detail == "autostop (down)"
    assert vm.launched_at is None and vm.region is None and vm.gpu_count == 0
    assert p._vm_from_record({"status": "UP"}) is None


def test_parse_accelerators() -> None:
    assert parse_accelerators("L4:1") == ("L4", 1.0)
    assert parse_accelerators("H100") == ("H100", 1.0)
    assert parse_accelerators("{'A100-80GB': 8}") == ("A100-80GB", 8.0)
    assert parse_accelerators({"V100": 4}) == ("V100", 4.0)
    assert parse_accelerators(None) is None and parse_accelerators("-") is None
    assert parse_accelerators("{}") is None


def test_empty_status(tmp_path: Path) -> None:
    write_fake_sky(tmp_path, {"clusters": {}})
    assert _provider(tmp_path).list({}) == []


def test_stop_start_terminate(fake: Path) -> None:
    p = _provider(fake)
    vm = p.stop({}, "dev")
    assert vm.state == "stopped" and vm.capabilities == ["start", "terminate"]
    assert ["stop", "-y", "dev"] in _calls(fake)
    vm = p.start({}, "dev")
    assert vm.state == "running"
    assert ["start", "-y", "dev"] in _calls(fake)
    vm = p.terminate({}, "dev")
    assert vm.state == "terminated" and vm.capabilities == []
    assert ["down", "-y", "dev"] in _calls(fake)
    assert [v.id for v in p.list({})] == ["old"]


def test_unknown_cluster_is_not_found(fake: Path) -> None:
    p = _provider(fake)
    for op in (p.stop, p.start, p.terminate, p.refresh):
        with pytest.raises(ProviderError) as err:
            op({}, "ghost")
        assert err.value.kind == "NotFound"


def test_spot_stop_is_unsupported(fake: Path) -> None:
    set_state(fake, clusters={**_clusters(), "old": {**_clusters()["old"], "status": "UP"}})
    p = _provider(fake)
    assert "stop" not in p.refresh({}, "old").capabilities
    with pytest.raises(ProviderError) as err:
        p.stop({}, "old")
    assert err.value.kind == "Unsupported"


def test_create_with_gpus_spot_and_autostop(fake: Path) -> None:
    p = _provider(fake, idleMinutesToAutostop=30)
    messages: List[str] = []
    req = CreateRequest("trainer", "A100:8", "us-west-2", spot=True, disk_gib=200)
    vm = p.create({}, req, report=messages.append)
    launch = next(c for c in _calls(fake) if c[0] == "launch")
    assert launch == [
        "launch", "-y", "-d", "-c", "trainer", "--gpus", "A100:8", "--region", "us-west-2",
        "--use-spot", "--disk-size", "200", "--idle-minutes-to-autostop", "30", "--", "true",
    ]  # fmt: skip
    assert vm.id == "trainer" and vm.state == "running" and vm.spot
    assert (vm.gpu_model, vm.gpu_count) == ("A100", 8)
    assert vm.detail == "autostop 30m"
    assert any("Provisioning cluster trainer" in m for m in messages)


def test_create_with_instance_type_and_infra(fake: Path) -> None:
    p = _provider(fake)
    args = p.launch_args(CreateRequest("box", "g6.xlarge", "aws/us-east-1"))
    assert args == [
        "launch", "-y", "-d", "-c", "box", "--instance-type", "g6.xlarge",
        "--infra", "aws/us-east-1", "--", "true",
    ]  # fmt: skip
    assert p.launch_args(CreateRequest("box", "L4", "any"))[5:] == ["--gpus", "L4", "--", "true"]
    with pytest.raises(ProviderError) as err:
        p.create({}, CreateRequest("Bad_Name", "L4", "any"))
    assert err.value.kind == "ProviderRequest"


@pytest.mark.parametrize(
    "stderr, kind",
    [
        ("sky.exceptions.ResourcesUnavailableError: Failed to provision all possible "
         "launchable resources.", "ProviderQuota"),
        ("sky.exceptions.NoCloudAccessError: No cloud access available. Run `sky check`.",
         "ProviderAuth"),
        ("Could not connect to SkyPilot API server at http://127.0.0.1:46580.",
         "ProviderUnavailable"),
        ("Traceback: something odd", "ProviderUnavailable"),
    ],
)  # fmt: skip
def test_launch_failures_map_to_kinds(fake: Path, stderr: str, kind: str) -> None:
    set_state(fake, fail={"launch": [1, stderr]})
    with pytest.raises(ProviderError) as err:
        _provider(fake).create({}, CreateRequest("x1", "L4", "any"))
    assert err.value.kind == kind
    assert err.value.message.startswith("sky launch failed:")


def test_status_failure_is_raised(fake: Path) -> None:
    set_state(fake, fail={"status": [1, "Could not connect to SkyPilot API server."]})
    with pytest.raises(ProviderError) as err:
        _provider(fake).list({})
    assert err.value.kind == "ProviderUnavailable"


def test_autostop_set_and_cancel(fake: Path) -> None:
    p = _provider(fake)
    vm = p.autostop({}, "old", 15, down=True)
    assert ["autostop", "-y", "-i", "15", "--down", "old"] in _calls(fake)
    assert vm.detail == "autostop 15m (down)"
    vm = p.autostop({}, "old", 0)
    assert ["autostop", "-y", "--cancel", "old"] in _calls(fake)
    assert vm.detail is None


def test_timeout_and_cancellation(tmp_path: Path) -> None:
    exe = tmp_path / "sky"
    exe.write_text("#!/bin/sh\nsleep 10\n")
    exe.chmod(0o755)
    p = SkyPilotProvider({"skyPath": str(exe), "statusTimeout": 0.5})
    start = time.monotonic()
    with pytest.raises(ProviderError) as err:
        p.list({})
    assert err.value.kind == "ProviderUnavailable" and "timed out" in err.value.message
    assert time.monotonic() - start < 8

    def cancelled() -> None:
        raise RuntimeError("cancelled")

    with pytest.raises(RuntimeError):
        SkyPilotProvider({"skyPath": str(exe)}).list({}, cancelled)


def test_parsers() -> None:
    assert map_status("UP") == "running" and map_status("ClusterStatus.INIT") == "pending"
    assert map_status("AUTOSTOPPING") == "stopping" and map_status("??") == "unknown"
    r = parse_resources("1x g6.xlarge")
    assert (r["nodes"], r["instance_type"], r["gpus"]) == (1, "g6.xlarge", 0)
    r = parse_resources("4x(gpus=H100:8, p5.48xlarge, cpus=192, mem=2048)")
    assert (r["gpu_model"], r["gpus"], r["instance_type"]) == ("H100", 32, "p5.48xlarge")
    r = parse_resources("1x (cpus=4, mem=16, ...)")
    assert r["instance_type"] is None and r["gpus"] == 0
    now = 1_000_000.0
    assert parse_launched("2 mins ago", now) == now - 120
    assert parse_launched("a few secs ago", now) == now - 5
    assert parse_launched("1 hr ago", now) == now - 3600
    assert parse_launched("-", now) is None and parse_launched("whenever", now) is None
    assert parse_launched("2025-01-02 03:04:05") is not None
    assert skypilot._infra_region("GCP (us-central1, us-central1-a)") == (
        "GCP/us-central1/us-central1-a"
    )
    assert skypilot._infra_region("AWS/us-east-1") == "AWS/us-east-1"
    assert is_accelerator_spec("H100:8") and is_accelerator_spec("L4")
    assert not is_accelerator_spec("g6.xlarge") and not is_accelerator_spec("gpu_1x_a10")


def test_table_parser_current_verbose_columns() -> None:
    current = (
        "Enabled Infra: aws, k8s/ctx\n\nClusters\n"
        "NAME  INFRA          RESOURCES                                            "
        "STATUS  AUTOSTOP   LAUNCHED     HEAD_IP   COMMAND\n"
        "gpu   AWS/us-east-1  1x[spot](gpus=L4:1, cpus=4, mem=16, g6.xlarge, disk=256)  "
        "UP      5m (down)  2 hrs ago    3.3.3.3   sky launch -c gpu\n"
    )
    rows = parse_status_table(current)
    assert len(rows) == 1 and rows[0]["HEAD_IP"] == "3.3.3.3"
    assert rows[0]["AUTOSTOP"] == "5m (down)" and rows[0]["INFRA"] == "AWS/us-east-1"
    r = parse_resources(rows[0]["RESOURCES"])
    assert (r["gpu_model"], r["gpus"], r["instance_type"], r["spot"]) == (
        "L4",
        1,
        "g6.xlarge",
        True,
    )
    vm = SkyPilotProvider()._vm_from_row(rows[0])
    assert vm is not None and vm.address == "3.3.3.3" and vm.region == "AWS/us-east-1"


def test_table_parser_older_columns_and_no_clusters() -> None:
    older = (
        "NAME    LAUNCHED     RESOURCES                      STATUS   AUTOSTOP  COMMAND\n"
        "mybox   1 day ago    1x AWS(p3.2xlarge, {'V100': 1})  UP       -         sky launch ...\n"
        "\n"
        "Managed spot jobs\n"
        "ID  NAME  RESOURCES  STATUS\n"
    )
    rows = parse_status_table(older)
    assert len(rows) == 1
    assert rows[0]["NAME"] == "mybox" and rows[0]["STATUS"] == "UP"
    assert rows[0]["RESOURCES"] == "1x AWS(p3.2xlarge, {'V100': 1})"
    assert parse_status_table("Clusters\nNo existing clusters.\n") == []
