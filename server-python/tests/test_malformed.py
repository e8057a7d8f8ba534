"""Malformed input never kills or permanently desyncs the server."""

from __future__ import annotations

import json

import pytest

from conftest import frame
from gpu_workbench.framing import MAX_CONTENT_LENGTH


def _errors_then_ping(session, raw: bytes):
    """Send raw bytes, then a ping; return all other messages received before the ping's reply."""
    session.drain()
    session.send_raw(raw)
    response = session.ping("after")
    assert response["result"]["payload"] == "after"
    return session.drain()


@pytest.mark.parametrize(
    "raw",
    [
        b"Content-Type: application/json\r\n\r\n{}",  # no Content-Length
        b"Content-Length: abc\r\n\r\n{}",
        b"Content-Length: -5\r\n\r\n{}",
        b"Content-Length: 2\r\nX-Bad-Line\r\n\r\n{}",
        b"garbage between frames \x00\xff\xfe",
        b"Content-Length: 10\r\n",  # header never terminated
        b"Content-Length: 10",
        b"\xff\xfe\r\n\r\n",
        b"Content-L\xc3\xa9ngth: 2\r\n\r\n{}",
        b"Content-Length: 99999999999999999999999999\r\n\r\n{}",
    ],
)
def test_bad_framing_is_skipped(ready, raw):
    # Framing problems are only logged; no reply is sent for them.
    assert _errors_then_ping(ready, raw + b"\n" * 64) == []


def test_conflicting_content_lengths(ready):
    # Resync may land on the second header and parse "{}" as a (bad) request; that's fine
    # as long as only error replies come back and the stream recovers.
    messages = _errors_then_ping(ready, b"Content-Length: 2\r\nContent-Length: 3\r\n\r\n{}\n")
    assert all(m["error"]["code"] in (-32600, -32700) for m in messages)


def test_content_type_header_is_accepted(ready):
    body = json.dumps(
        {"jsonrpc": "2.0", "id": "ct", "method": "workbench/ping", "params": {}}
    ).encode()
    ready.send_raw(
        b"Content-Type: application/vscode-jsonrpc; charset=utf-8\r\nContent-Length: %d\r\n\r\n"
        % len(body)
        + body
    )
    assert "result" in ready.response("ct")


def test_too_large_content_length_rejected_without_reading(ready):
    # Declares more than the limit but sends little; the server must not wait for the body.
    header = b"Content-Length: %d\r\n\r\n" % (MAX_CONTENT_LENGTH + 1)
    assert _errors_then_ping(ready, header + b'{"x": 1}') == []
    ready.wait_stderr("exceeds the")


@pytest.mark.parametrize("body", [b"{not json", b"\xff\xfe\xfd", b"", b"[" * 100000, b'{"a": 1'])
def test_unparseable_body_gets_parse_error(ready, body):
    messages = _errors_then_ping(ready, frame(body))
    assert messages == [
        {
            "jsonrpc": "2.0",
            "id": None,
            "error": {"code": -32700, "message": messages[0]["error"]["message"]},
        }
    ]


def test_garbage_before_valid_frame(ready):
    messages = _errors_then_ping(ready, b"xyz\r\n\r\n" + frame(b"{bad") + b"junk")
    assert [m["error"]["code"] for m in messages] == [-32700]


@pytest.mark.parametrize(
    "message,expected_id",
    [
        ({"id": 1, "method": "workbench/ping"}, 1),  # no jsonrpc
        ({"jsonrpc": "1.0", "id": "a", "method": "workbench/ping"}, "a"),
        ({"jsonrpc": "2.0", "id": {"x": 1}, "method": "workbench/ping"}, None),
        ({"jsonrpc": "2.0", "id": [1], "method": "workbench/ping"}, None),
        ({"jsonrpc": "2.0", "id": True, "method": "workbench/ping"}, None),
        ({"jsonrpc": "2.0", "id": 7, "method": 5}, 7),
        ({"jsonrpc": "2.0", "id": 8}, 8),
        ({"jsonrpc": "2.0", "id": 9, "method": "workbench/ping", "params": "str"}, 9),
        ({"jsonrpc": "2.0", "method": 5}, None),
        (5, None),
        ("string", None),
        (None, None),
    ],
)
def test_invalid_request_objects(ready, message, expected_id):
    messages = _errors_then_ping(ready, frame(json.dumps(message).encode()))
    assert len(messages) == 1, messages
    assert messages[0]["error"]["code"] == -32600
    assert messages[0]["id"] == expected_id


def test_client_response_messages_are_ignored(ready):
    assert _errors_then_ping(ready, frame(b'{"jsonrpc":"2.0","id":5,"result":null}')) == []


def test_null_params_treated_as_absent(ready):
    ready.send_raw(frame(b'{"jsonrpc":"2.0","id":"np","method":"workbench/ping","params":null}'))
    assert ready.response("np")["result"]["payload"] is None
