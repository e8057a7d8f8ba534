"""workbench/ping, including huge and multi-byte payloads and params validation."""

from __future__ import annotations

import time


def test_ping_echoes(ready):
    before = time.time()
    result = ready.ping("hello")["result"]
    assert result["payload"] == "hello"
    assert before - 1 <= result["serverTime"] <= time.time() + 1
    assert ready.ping()["result"]["payload"] is None


def test_ping_multibyte_utf8(ready):
    payload = "héllo wörld ✓ 日本語 🚀" * 100
    assert ready.ping(payload)["result"]["payload"] == payload


def test_ping_twenty_megabytes(ready):
    payload = "x" * (20 * 1024 * 1024)
    response = ready.ping(payload, timeout=30)
    assert response["result"]["payload"] == payload


def test_ping_wrong_param_type(ready):
    response = ready.request("workbench/ping", {"payload": 5})
    assert response["error"]["code"] == -32602
    assert "payload" in response["error"]["message"]


def test_params_must_be_object(ready):
    response = ready.request("workbench/ping", ["x"])
    assert response["error"]["code"] == -32602
    # Extra fields are ignored.
    assert (
        ready.request("workbench/ping", {"payload": "a", "extra": [1]})["result"]["payload"] == "a"
    )
