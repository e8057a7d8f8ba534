"""Cancellation, work-done progress and concurrency via debug/sleep."""

from __future__ import annotations

import time


def _is_progress(token):
    return lambda m: (
        isinstance(m, dict) and m.get("method") == "$/progress" and m["params"]["token"] == token
    )


def test_cancel_is_prompt(ready):
    request_id = ready.send_request("debug/sleep", {"seconds": 5, "workDoneToken": "tok-c"})
    ready.wait_for(_is_progress("tok-c"))  # the handler is running
    start = time.monotonic()
    ready.notify("$/cancelRequest", {"id": request_id})
    response = ready.response(request_id, timeout=2)
    assert time.monotonic() - start < 1.0
    assert response["error"]["code"] == -32800
    assert "result" in ready.ping()


def test_progress_begin_report_end(ready):
    request_id = ready.send_request("debug/sleep", {"seconds": 0.45, "workDoneToken": 17})
    response = ready.response(request_id)
    assert response["result"]["sleptSeconds"] >= 0.45
    kinds = []
    while True:
        message = ready.wait_for(_is_progress(17))
        kinds.append(message["params"]["value"]["kind"])
        if kinds[-1] == "end":
            break
    assert kinds[0] == "begin" and kinds[-1] == "end"
    assert kinds.count("report") >= 2


def test_begin_has_title_and_percentages(ready):
    ready.request("debug/sleep", {"seconds": 0.25, "workDoneToken": "t2"})
    begin = ready.wait_for(_is_progress("t2"))["params"]["value"]
    assert begin["kind"] == "begin" and begin["title"] and begin["cancellable"] is True
    report = ready.wait_for(_is_progress("t2"))["params"]["value"]
    assert report["kind"] == "report" and 0 <= report["percentage"] <= 100


def test_ping_answered_while_sleeping(ready):
    request_id = ready.send_request("debug/sleep", {"seconds": 3})
    start = time.monotonic()
    assert "result" in ready.ping(timeout=2)
    assert time.monotonic() - start < 1.0
    ready.notify("$/cancelRequest", {"id": request_id})
    assert ready.response(request_id)["error"]["code"] == -32800


def test_cancel_after_finish_is_harmless(ready):
    request_id = ready.send_request("debug/sleep", {"seconds": 0})
    assert "result" in ready.response(request_id)
    ready.notify("$/cancelRequest", {"id": request_id})
    assert "result" in ready.ping()
    assert ready.drain() == []


def test_sleep_param_validation(ready):
    assert ready.request("debug/sleep", {})["error"]["code"] == -32602
    assert ready.request("debug/sleep", {"seconds": "1"})["error"]["code"] == -32602
    assert ready.request("debug/sleep", {"seconds": -1})["error"]["code"] == -32602


def test_debug_methods_hidden_without_env(tmp_path):
    from conftest import backend_env, spawn

    env = backend_env({"GPUWB_DATA_DIR": str(tmp_path)})
    env.pop("GPUWB_DEBUG_METHODS")
    s = spawn(env)
    try:
        methods = s.initialize()["result"]["capabilities"]["experimental"]["gpuWorkbench"][
            "methods"
        ]
        assert "debug/sleep" not in methods
        assert s.request("debug/sleep", {"seconds": 0})["error"]["code"] == -32601
    finally:
        s.close()
