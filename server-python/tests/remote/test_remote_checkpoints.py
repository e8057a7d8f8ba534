"""Checkpoints in place on a remote machine: checkpoint/list and checkpoint/stats with
`machine` are answered by the agent on the namespace test host (a real sshd), equal what the
local backend answers for the same files (the "VM" shares this disk), and only the listing
and the statistics cross the link, not the checkpoint's bytes."""

from __future__ import annotations

import struct
import sys
from pathlib import Path
from typing import Any, Dict, Iterator

import pytest
from shapes import assert_shape

from conftest import Session, backend_env, spawn
from gpu_workbench import protocol

sys.path.insert(0, str(Path(__file__).resolve().parent))
import netns

MACHINE = "ssh/vm"


@pytest.fixture(scope="module")
def vm() -> Iterator[Any]:
    netns.require_available()
    host = netns.NamespaceHost()
    try:
        yield host
    finally:
        host.close()


def backend(tmp_path: Path, vm: Any) -> Session:
    extra = {"GPUWB_DATA_DIR": str(tmp_path / "local-data"), "GPUWB_LOG_LEVEL": "debug"}
    session = spawn(backend_env(extra))
    session.initialize(
        {
            "vms": {"ssh": {"configFile": str(vm.ssh_config)}},
            "remote": {"knownHostsFile": str(vm.known_hosts)},
        }
    )
    return session


def result(session: Session, method: str, params: Any, timeout: float = 120.0) -> Any:
    response = session.request(method, params, timeout)
    assert "result" in response, response
    return response["result"]


def connect(session: Session) -> Dict[str, Any]:
    return result(session, "remote/connect", {"provider": "ssh", "id": "vm"}, 180)


def ramp(count: int) -> bytes:
    """float32 values 0, 1, 2, … (statistics with a known mean)."""
    return struct.pack("<%df" % count, *range(count))


def test_list_and_stats_on_the_machine_equal_local_and_send_only_summaries(
    tmp_path: Path, vm: Any
) -> None:
    from checkpoints.writers import write_safetensors

    folder = Path(vm.tmp) / "ckpt-folder"  # the "VM" shares this disk: stay in its tmp
    (folder / "sharded").mkdir(parents=True, exist_ok=True)
    (folder / "node_modules").mkdir(exist_ok=True)
    (folder / "node_modules" / "skip.pt").write_bytes(b"x")
    big = folder / "big.safetensors"
    elements = 4 * 1024 * 1024  # 16 MiB per tensor
    write_safetensors(str(big), [("w%d" % i, "F32", [elements], ramp(elements)) for i in range(3)])
    write_safetensors(str(folder / "sharded" / "s-1.safetensors"), [("a", "F32", [2], ramp(2))])
    (folder / "sharded" / "model.safetensors.index.json").write_text(
        '{"weight_map": {"a": "s-1.safetensors"}}'
    )
    session = backend(tmp_path, vm)
    try:
        connect(session)
        local = result(session, "checkpoint/list", {"folder": str(folder)})
        before = vm.link_bytes()
        remote = result(session, "checkpoint/list", {"folder": str(folder), "machine": MACHINE})
        listed = vm.link_bytes() - before
        assert_shape(protocol.CheckpointListResult, remote)
        assert remote == local
        assert sorted(Path(f["path"]).name for f in remote["files"]) == [
            "big.safetensors",
            "s-1.safetensors",
        ]
        assert [Path(i["path"]).name for i in remote["indexes"]] == ["model.safetensors.index.json"]
        assert listed < 100_000, "%d bytes crossed the link for a listing of 3 files" % listed

        params = {"path": str(big), "tensors": ["w0", "w2"], "bins": 16}
        local_stats = result(session, "checkpoint/stats", params)
        before = vm.link_bytes()
        remote_stats = result(session, "checkpoint/stats", dict(params, machine=MACHINE))
        crossed = vm.link_bytes() - before
        assert_shape(protocol.CheckpointStatsResult, remote_stats)
        assert remote_stats["path"] == local_stats["path"]
        assert remote_stats["engine"] == local_stats["engine"]

        def values(r: Dict[str, Any]) -> Any:
            return [{k: v for k, v in s.items()} for s in r["stats"]]

        assert values(remote_stats) == values(local_stats)
        w0 = remote_stats["stats"][0]
        assert w0["name"] == "w0" and w0["count"] == elements and not w0["sampled"]
        assert w0["min"] == 0.0 and w0["max"] == float(elements - 1)
        assert big.stat().st_size > 48_000_000
        assert crossed < 1_000_000, "%d bytes crossed the link for statistics of 32 MiB" % crossed
    finally:
        session.close()


def test_remote_errors_are_the_machines(tmp_path: Path, vm: Any) -> None:
    session = backend(tmp_path, vm)
    try:
        response = session.request(
            "checkpoint/list", {"folder": str(vm.tmp), "machine": MACHINE}, 30
        )
        assert response["error"]["data"]["kind"] == "RemoteUnavailable", response  # not connected
        connect(session)
        missing = str(Path(vm.tmp) / "no-such-folder")
        response = session.request("checkpoint/list", {"folder": missing, "machine": MACHINE}, 60)
        error = response["error"]
        assert error["data"]["kind"] == "NotFound" and "no-such-folder" in error["message"]
        response = session.request(
            "checkpoint/stats", {"path": missing + "/w.safetensors", "machine": MACHINE}, 60
        )
        assert "error" in response, response
    finally:
        session.close()
