"""checkpoint/list: the folder walker (checkpoints/listing.py) and its request."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from shapes import assert_shape

from gpu_workbench import protocol
from gpu_workbench.checkpoints import listing
from gpu_workbench.errors import ApplicationError


def touch(path: Path, data: bytes = b"x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def names(result, root: Path):
    return sorted(os.path.relpath(f["path"], str(root)) for f in result["files"])


def test_lists_checkpoint_extensions_and_indexes_with_sizes(tmp_path: Path) -> None:
    touch(tmp_path / "a.safetensors", b"12345")
    for ext in ("pt", "pth", "ckpt", "gguf", "npz", "npy", "bin"):
        touch(tmp_path / "more" / ("m." + ext))
    touch(tmp_path / "notes.txt")
    touch(tmp_path / "model.SAFETENSORS")  # extensions match case-insensitively
    index = {
        "weight_map": {"w1": "s-2.safetensors", "w0": "s-1.safetensors", "w2": "s-1.safetensors"}
    }
    touch(tmp_path / "sharded" / "model.safetensors.index.json", json.dumps(index).encode())
    touch(tmp_path / "sharded" / "s-1.safetensors")
    touch(tmp_path / "sharded" / "s-2.safetensors")
    touch(tmp_path / "config.index.json", b'{"not": "an index"}')
    result = listing.list_folder(str(tmp_path))
    assert_shape(protocol.CheckpointListResult, result)
    assert result["folder"] == str(tmp_path)
    assert not result["truncated"]
    assert names(result, tmp_path) == sorted(
        [
            "a.safetensors",
            "model.SAFETENSORS",
            "sharded/s-1.safetensors",
            "sharded/s-2.safetensors",
        ]
        + ["more/m." + e for e in ("pt", "pth", "ckpt", "gguf", "npz", "npy", "bin")]
    )
    a = next(f for f in result["files"] if f["path"].endswith("a.safetensors"))
    st = (tmp_path / "a.safetensors").stat()
    assert a["size"] == 5 and a["mtimeMs"] == st.st_mtime_ns // 1_000_000
    assert [
        (os.path.relpath(i["path"], str(tmp_path)), i["shards"]) for i in result["indexes"]
    ] == [("sharded/model.safetensors.index.json", ["s-1.safetensors", "s-2.safetensors"])]


def test_skips_hidden_and_tool_folders_and_stops_at_the_depth_limit(tmp_path: Path) -> None:
    touch(tmp_path / ".git" / "x.bin")
    touch(tmp_path / ".cache" / "x.pt")
    touch(tmp_path / "node_modules" / "x.pt")
    touch(tmp_path / "pkg" / "__pycache__" / "x.pt")
    touch(tmp_path / ".hidden.pt")  # a hidden file is listed; only hidden folders are skipped
    touch(tmp_path / "1" / "2" / "3" / "deep3.pt")  # three folders down: listed
    touch(tmp_path / "1" / "2" / "3" / "4" / "deep4.pt")  # four: beyond the limit
    result = listing.list_folder(str(tmp_path))
    assert names(result, tmp_path) == [".hidden.pt", "1/2/3/deep3.pt"]
    shallow = listing.list_folder(str(tmp_path), max_depth=1)
    assert names(shallow, tmp_path) == [".hidden.pt"]


def test_symlink_loops_are_safe_and_links_to_files_are_listed(tmp_path: Path) -> None:
    touch(tmp_path / "real" / "w.pt", b"abc")
    os.symlink(str(tmp_path), str(tmp_path / "real" / "loop"))  # a folder link: not followed
    os.symlink(str(tmp_path / "real" / "w.pt"), str(tmp_path / "alias.pt"))
    os.symlink(str(tmp_path / "missing.pt"), str(tmp_path / "dangling.pt"))
    result = listing.list_folder(str(tmp_path))
    assert names(result, tmp_path) == ["alias.pt", "real/w.pt"]
    alias = next(f for f in result["files"] if f["path"].endswith("alias.pt"))
    assert alias["size"] == 3


def test_truncates_at_max_files(tmp_path: Path) -> None:
    for i in range(10):
        touch(tmp_path / ("w%02d.pt" % i))
    result = listing.list_folder(str(tmp_path), max_files=4)
    assert result["truncated"] is True
    assert names(result, tmp_path) == ["w00.pt", "w01.pt", "w02.pt", "w03.pt"]
    exact = listing.list_folder(str(tmp_path), max_files=10)
    assert exact["truncated"] is False and len(exact["files"]) == 10


def test_tilde_is_the_home_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    touch(tmp_path / "ckpt" / "w.pt")
    result = listing.list_folder("~/ckpt")
    assert result["folder"] == str(tmp_path / "ckpt")
    assert names(result, tmp_path) == ["ckpt/w.pt"]


def test_missing_file_and_unreadable_folders_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ApplicationError) as missing:
        listing.list_folder(str(tmp_path / "nope"))
    assert missing.value.kind == "NotFound" and "No such folder" in str(missing.value)
    touch(tmp_path / "w.pt")
    with pytest.raises(ApplicationError) as not_dir:
        listing.list_folder(str(tmp_path / "w.pt"))
    assert not_dir.value.kind == "InvalidState" and "Not a folder" in str(not_dir.value)
    if os.geteuid() == 0:
        return  # root reads any folder: no permission error to see
    locked = tmp_path / "locked"
    touch(locked / "w.pt")
    locked.chmod(0)
    try:
        with pytest.raises(ApplicationError) as denied:
            listing.list_folder(str(locked))
        assert "Permission denied" in str(denied.value)
        # An unreadable subfolder is left out of a listing that can go on.
        assert names(listing.list_folder(str(tmp_path)), tmp_path) == ["w.pt"]
    finally:
        locked.chmod(0o755)


def test_list_request_through_the_backend(ready, tmp_path: Path) -> None:
    touch(tmp_path / "w.safetensors")
    result = ready.request("checkpoint/list", {"folder": str(tmp_path)})["result"]
    assert_shape(protocol.CheckpointListResult, result)
    assert names(result, tmp_path) == ["w.safetensors"]
    error = ready.request("checkpoint/list", {"folder": str(tmp_path / "gone")})["error"]
    assert error["data"]["kind"] == "NotFound" and "gone" in error["message"]
    assert error["data"]["hint"]


def test_remote_list_and_stats_need_a_trusted_workspace(session, tmp_path: Path) -> None:
    session.initialize({"trusted": False})
    local = session.request("checkpoint/list", {"folder": str(tmp_path)})
    assert "result" in local, local  # listing this machine's files runs no code
    for method, params in (
        ("checkpoint/list", {"folder": str(tmp_path), "machine": "ssh/vm"}),
        ("checkpoint/stats", {"path": str(tmp_path / "w.pt"), "machine": "ssh/vm"}),
    ):
        error = session.request(method, params)["error"]
        assert error["data"]["kind"] == "Untrusted", (method, error)
