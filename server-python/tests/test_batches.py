"""JSON-RPC batches."""

from __future__ import annotations


def _ping(i):
    return {
        "jsonrpc": "2.0",
        "id": "b%d" % i,
        "method": "workbench/ping",
        "params": {"payload": str(i)},
    }


def test_empty_batch(ready):
    ready.send([])
    message = ready.wait_for(lambda m: isinstance(m, dict) and "error" in m)
    assert message["error"]["code"] == -32600 and message["id"] is None


def test_batch_of_requests(ready):
    ready.send(
        [
            _ping(1),
            {"jsonrpc": "2.0", "method": "$/setTrace", "params": {}},
            _ping(2),
            5,
            {"jsonrpc": "2.0", "id": "u", "method": "nope"},
        ]
    )
    batch = ready.wait_for(lambda m: isinstance(m, list))
    by_id = {m["id"]: m for m in batch}
    assert by_id["b1"]["result"]["payload"] == "1"
    assert by_id["b2"]["result"]["payload"] == "2"
    assert by_id["u"]["error"]["code"] == -32601
    assert by_id[None]["error"]["code"] == -32600
    assert len(batch) == 4


def test_all_notification_batch_gets_no_response(ready):
    ready.drain()
    ready.send(
        [
            {"jsonrpc": "2.0", "method": "initialized", "params": {}},
            {"jsonrpc": "2.0", "method": "x"},
        ]
    )
    assert "result" in ready.ping()
    assert ready.drain() == []


def test_batch_with_slow_request(ready):
    ready.send(
        [
            _ping(3),
            {"jsonrpc": "2.0", "id": "s", "method": "debug/sleep", "params": {"seconds": 0.2}},
        ]
    )
    batch = ready.wait_for(lambda m: isinstance(m, list))
    assert {m["id"] for m in batch} == {"b3", "s"}
    assert next(m for m in batch if m["id"] == "s")["result"]["sleptSeconds"] >= 0.2
