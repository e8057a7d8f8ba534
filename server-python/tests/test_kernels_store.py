"""Kernel folders on disk: journal reading, pruning, and never signalling a stranger's pid."""

from __future__ import annotations

import json
import subprocess
import sys
import time

from conftest import process_gone
from gpu_workbench.kernels import store


def _folder(data, kernel_id, kernel=None, ended=None, journal=()):
    directory = data / "kernels" / kernel_id
    directory.mkdir(parents=True)
    if kernel is not None:
        (directory / "kernel.json").write_text(json.dumps(kernel))
    if ended is not None:
        (directory / "ended.json").write_text(json.dumps(ended))
    (directory / "journal.jsonl").write_text("".join(json.dumps(m) + "\n" for m in journal))
    return directory


def test_read_journal_across_rotation_and_partial_lines(tmp_path):
    directory = _folder(tmp_path, "aaaaaaaaaaaa", journal=[{"seq": 3, "type": "x"}])
    (directory / "journal.1.jsonl").write_text('{"seq": 2, "type": "x"}\n')
    with open(directory / "journal.jsonl", "a") as f:
        f.write('{"seq": 4, "type": "x"}\n{"seq": 5, "ty')  # being written
    messages, first = store.read_journal(str(directory), since=2)
    assert [m["seq"] for m in messages] == [3, 4]
    assert first == 2
    assert [m["seq"] for m in store.journal_tail(str(directory))] == [3, 4]


def test_prune_removes_only_old_ended_kernels(tmp_path):
    now = time.time()
    _folder(tmp_path, "aaaaaaaaaaaa", ended={"reason": "idle", "endedAt": now - 2 * 86400})
    _folder(tmp_path, "bbbbbbbbbbbb", ended={"reason": "died", "endedAt": now - 60})
    _folder(tmp_path, "cccccccccccc")  # starting: no kernel.json yet
    (tmp_path / "kernels" / "not-a-kernel").mkdir()
    assert store.prune(str(tmp_path), now) == ["aaaaaaaaaaaa"]
    assert sorted(store.list_ids(str(tmp_path))) == ["bbbbbbbbbbbb", "cccccccccccc"]
    # A start that never finished is pruned a day later too.
    assert sorted(store.prune(str(tmp_path), now + 2 * 86400)) == ["bbbbbbbbbbbb", "cccccccccccc"]
    assert store.list_ids(str(tmp_path)) == []


def test_pid_that_is_not_the_kernel_is_never_signalled(kernels, kernel_data):
    # A kernel.json whose pid is some other live process (e.g. a recycled pid).
    stranger = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        kid = "dddddddddddd"
        _folder(
            kernel_data,
            kid,
            kernel={
                "kernelId": kid,
                "pid": stranger.pid,
                "pgid": stranger.pid,
                "socket": "/nonexistent",
            },
            journal=[
                {"seq": 1, "type": "start", "pid": stranger.pid},
                {"seq": 2, "type": "status", "state": "busy", "executionId": "e", "queue": []},
            ],
        )
        assert not store.process_matches(stranger.pid, kid)
        listed = {k["kernelId"]: k for k in kernels.call("kernel/list")["kernels"]}
        assert listed[kid]["state"] == "dead"
        for method in ("kernel/interrupt", "kernel/execute"):
            error = kernels.error(method, {"kernelId": kid, "code": "1"})
            assert error["data"]["kind"] == "KernelDied"
        kernels.call("kernel/shutdown", {"kernelId": kid})
        assert not process_gone(stranger.pid)
    finally:
        stranger.kill()
        stranger.wait()
