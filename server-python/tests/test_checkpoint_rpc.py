"""checkpoint/* through the real backend: result shapes match protocol.py, errors are
clean, progress and cancellation work, and inspection is served in untrusted workspaces."""

from __future__ import annotations

import json
import struct
from pathlib import Path

from shapes import assert_shape

from gpu_workbench import protocol

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "checkpoints"


def test_inspect_stats_diff_scan_shapes(ready):
    st = str(EXAMPLES / "tiny-lm.safetensors")
    summary = ready.request("checkpoint/inspect", {"path": st})["result"]
    assert_shape(protocol.CheckpointSummary, summary)
    assert summary["format"] == "safetensors" and summary["tensorCount"] > 0
    assert summary["safety"]["verdict"] == "safe"

    stats = ready.request(
        "checkpoint/stats", {"path": st, "tensors": [summary["tensors"][0]["name"]]}
    )["result"]
    assert_shape(protocol.CheckpointStatsResult, stats)
    assert len(stats["stats"]) == 1

    later = str(EXAMPLES / "tiny-lm-step2000.safetensors")
    diff = ready.request("checkpoint/diff", {"a": st, "b": later})["result"]
    assert_shape(protocol.CheckpointDiffResult, diff)
    assert diff["counts"]["added"] == 1 and diff["counts"]["changed"] >= 2

    scan = ready.request("checkpoint/scan", {"paths": [str(EXAMPLES)]})["result"]
    assert_shape(protocol.CheckpointScanResult, scan)
    verdicts = {Path(r["path"]).name: r["verdict"] for r in scan["results"]}
    assert verdicts["unsafe-pickle.pt"] == "unsafe"
    assert verdicts["tiny-lm.safetensors"] == "safe"


def test_not_a_checkpoint_is_a_clean_error(ready, tmp_path):
    junk = tmp_path / "notes.pt"
    junk.write_bytes(b"these are not the weights you are looking for\n" * 10)
    response = ready.request("checkpoint/inspect", {"path": str(junk)})
    error = response["error"]
    assert error["code"] == protocol.ERROR_KINDS["CheckpointFormat"]
    assert error["data"]["kind"] == "CheckpointFormat"
    assert "checkpoint" in error["message"].lower()
    missing = ready.request("checkpoint/inspect", {"path": str(tmp_path / "nope.safetensors")})
    assert missing["error"]["data"]["kind"] == "CheckpointFormat"
    assert "result" in ready.ping()  # the backend is still serving


def test_inspect_is_served_when_untrusted(session):
    session.initialize({"trusted": False})
    summary = session.request(
        "checkpoint/inspect", {"path": str(EXAMPLES / "tiny-lm.safetensors"), "maxTensors": 0}
    )["result"]
    assert summary["tensorsListed"] == 0 and summary["tensorCount"] > 0


def _big_safetensors(path: Path, elements: int) -> None:
    header = json.dumps(
        {"w": {"dtype": "F32", "shape": [elements], "data_offsets": [0, elements * 4]}}
    ).encode()
    header += b" " * (-len(header) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(header)) + header)
        f.truncate(8 + len(header) + elements * 4)  # sparse: zeros, nothing written


def test_stats_report_progress_and_cancel(ready, tmp_path):
    big = tmp_path / "big.safetensors"
    _big_safetensors(big, 400_000_000)  # 1.6 GB sparse
    request_id = ready.send_request(
        "checkpoint/stats",
        {
            "path": str(big),
            "maxElements": 10**12,
            "timeBudgetMs": 10**9,
            "workDoneToken": "ck",
        },
    )
    begin = ready.wait_for(
        lambda m: (
            isinstance(m, dict) and m.get("method") == "$/progress" and m["params"]["token"] == "ck"
        )
    )
    assert begin["params"]["value"]["kind"] == "begin"
    assert begin["params"]["value"]["cancellable"] is True
    ready.notify("$/cancelRequest", {"id": request_id})
    response = ready.response(request_id, timeout=5)
    assert response["error"]["code"] == -32800
