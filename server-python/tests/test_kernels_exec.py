"""kernel/start, kernel/execute and the events they produce, against the real worker."""

from __future__ import annotations

import os

from conftest import BACKEND_PYTHON, wait_until


def test_start_returns_info_and_events_are_contiguous(kernels, tmp_path):
    info = kernels.start(cwd=str(tmp_path), name="first")
    assert len(info["kernelId"]) == 12
    assert info["name"] == "first"
    assert info["state"] in ("idle", "busy")
    assert info["cwd"] == str(tmp_path)
    assert isinstance(info["pid"], int) and info["pid"] > 0
    assert info["pythonVersion"].count(".") == 2
    assert info["queue"] == []
    assert info["idleTimeoutSeconds"] == 0
    kid = info["kernelId"]
    first = kernels.run(kid, "x = 40\nprint('hello')")
    assert first["status"] == "ok"
    second = kernels.run(kid, "x + 2")
    assert second["status"] == "ok"
    result = kernels.wait_event(kid, lambda e: e.get("type") == "execute_result")
    assert result["data"]["text/plain"] == "42"
    first_id = first["executionId"]
    assert kernels.stdout(kid, first_id) == "hello\n"
    seqs = kernels.seqs(kid)
    assert seqs == list(range(1, len(seqs) + 1))
    assert kernels.events[kid][0]["type"] == "start"
    listed = kernels.call("kernel/list")["kernels"]
    assert [k["kernelId"] for k in listed] == [kid]
    assert listed[0]["lastSeq"] >= seqs[-1] - 1


def test_default_python_is_the_backends(kernels):
    info = kernels.start()
    assert os.path.realpath(info["python"]) == os.path.realpath(BACKEND_PYTHON)


def test_queue_positions_and_stop_on_error(kernels):
    kid = kernels.start()["kernelId"]
    a = kernels.call("kernel/execute", {"kernelId": kid, "code": "import time; time.sleep(0.3)"})
    b = kernels.call(
        "kernel/execute", {"kernelId": kid, "code": "1/0", "stopOnError": True, "executionId": "b"}
    )
    c = kernels.call("kernel/execute", {"kernelId": kid, "code": "print('never')"})
    assert a["queuePosition"] == 0
    assert b == {"executionId": "b", "queuePosition": 1}
    assert c["queuePosition"] == 2
    assert kernels.reply(kid, a["executionId"])["status"] == "ok"
    assert kernels.reply(kid, "b")["status"] == "error"
    assert kernels.reply(kid, c["executionId"])["status"] == "aborted"
    error = kernels.wait_event(kid, lambda e: e.get("type") == "error")
    assert error["ename"] == "ZeroDivisionError"
    assert kernels.stdout(kid, c["executionId"]) == ""
    # A used executionId is refused.
    again = kernels.error("kernel/execute", {"kernelId": kid, "code": "1", "executionId": "b"})
    assert again["code"] == -32602


def test_error_frames_point_at_the_file(kernels, tmp_path):
    kid = kernels.start()["kernelId"]
    path = str(tmp_path / "cells.py")
    reply = kernels.run(kid, "a = 1\nraise ValueError('x')", file=path, line=10)
    assert reply["status"] == "error"
    error = kernels.wait_event(kid, lambda e: e.get("type") == "error")
    assert error["evalue"] == "x"
    assert {"file": path, "line": 12} in [
        {"file": f["file"], "line": f["line"]} for f in error["frames"]
    ]


def test_input_reply(kernels):
    kid = kernels.start()["kernelId"]
    eid = kernels.execute(kid, "name = input('who? ')\nprint('hi', name)")
    request = kernels.wait_event(kid, lambda e: e.get("type") == "input_request")
    assert request["executionId"] == eid and request["prompt"] == "who? "
    assert (
        kernels.call("kernel/inputReply", {"kernelId": kid, "executionId": eid, "value": "ada"})
        == {}
    )
    assert kernels.reply(kid, eid)["status"] == "ok"
    assert "hi ada" in kernels.stdout(kid, eid)


def test_variables(kernels):
    kid = kernels.start()["kernelId"]
    kernels.run(kid, "numbers = [1, 2, 3]\nlabel = 'abc'")
    variables = kernels.call("kernel/variables", {"kernelId": kid})["variables"]
    by_name = {v["name"]: v for v in variables}
    assert by_name["numbers"]["type"] == "list"
    assert by_name["numbers"]["length"] == 3
    assert by_name["label"]["repr"] == "'abc'"
    assert set(by_name["numbers"]) == {"name", "type", "shape", "length", "dtype", "size", "repr"}


def test_env_file_and_env_precedence(kernels, tmp_path):
    (tmp_path / ".env").write_text(
        "# settings\nexport FROM_FILE=file\nBOTH=file\nDERIVED=${FROM_FILE}-x\n"
    )
    kid = kernels.start(cwd=str(tmp_path), envFile=".env", env={"BOTH": "env"})["kernelId"]
    code = "import os; print(os.environ['FROM_FILE'], os.environ['BOTH'], os.environ['DERIVED'], os.getcwd())"
    eid = kernels.reply(kid, kernels.execute(kid, code))["executionId"]
    assert kernels.stdout(kid, eid).split() == ["file", "env", "file-x", str(tmp_path)]


def test_shutdown_ends_the_kernel(kernels, kernel_data):
    info = kernels.start()
    kid = info["kernelId"]
    assert kernels.call("kernel/shutdown", {"kernelId": kid}) == {"kernelId": kid}
    kernels.wait_event(kid, lambda e: e.get("type") == "exit" and e.get("reason") == "shutdown")
    wait_until(lambda: (kernel_data / "kernels" / kid / "ended.json").exists(), what="ended.json")
    listed = {k["kernelId"]: k for k in kernels.call("kernel/list")["kernels"]}
    assert listed[kid]["state"] == "exited"
    error = kernels.error("kernel/execute", {"kernelId": kid, "code": "1"})
    assert error["data"]["kind"] == "KernelDied"
    assert error["data"]["hint"] == "Restart the kernel"
