"""In-process tests with in-memory streams: handler exceptions, error objects, conversion."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Union

import pytest

from conftest import encode
from gpu_workbench import server as server_module
from gpu_workbench.convert import ConversionError, field_paths, from_dict, to_json
from gpu_workbench.errors import ApplicationError
from gpu_workbench.framing import FrameReader
from gpu_workbench.protocol import ERROR_KINDS, METHODS, served_methods
from gpu_workbench.server import Server


def _run(tmp_path, messages: List[Any], environ: Optional[Dict[str, str]] = None):
    env = {"GPUWB_DATA_DIR": str(tmp_path / "data")}
    env.update(environ or {})
    data = b"".join(encode(m) for m in messages)
    out = io.BytesIO()
    code = Server(environ=env).run(io.BytesIO(data), out)
    reader = FrameReader(io.BytesIO(out.getvalue()))
    replies = []
    while True:
        body = reader.read_message()
        if body is None:
            break
        replies.append(json.loads(body))
    return code, replies


def _req(i, method, params=None):
    m = {"jsonrpc": "2.0", "id": i, "method": method}
    if params is not None:
        m["params"] = params
    return m


INIT = _req(0, "initialize", {"processId": None})


def test_handler_exception_is_internal_error_without_traceback(tmp_path, monkeypatch, caplog):
    def boom(*args, **kwargs):
        raise RuntimeError("secret detail from deep inside")

    monkeypatch.setattr(server_module, "build_status", boom)
    code, replies = _run(
        tmp_path, [INIT, _req(1, "workbench/status"), _req(2, "workbench/ping", {})]
    )
    assert code == 1  # EOF without shutdown
    error = replies[1]["error"]
    assert error["code"] == -32603
    assert "Traceback" not in json.dumps(error) and "secret detail" not in json.dumps(error)
    assert "data" not in error
    assert "result" in replies[2]
    assert "secret detail" in caplog.text  # the traceback went to the log


def test_application_error_shape(tmp_path, monkeypatch):
    def fail(*args, **kwargs):
        raise ApplicationError(
            "NotFound", "no such thing", detail="looked everywhere", hint="try again"
        )

    monkeypatch.setattr(server_module, "build_status", fail)
    _, replies = _run(tmp_path, [INIT, _req(1, "workbench/status")])
    assert replies[1]["error"] == {
        "code": -32011,
        "message": "no such thing",
        "data": {"kind": "NotFound", "detail": "looked everywhere", "hint": "try again"},
    }


def test_application_error_rejects_unknown_kind():
    with pytest.raises(ValueError):
        ApplicationError("Nope", "x")


def test_error_kind_codes_do_not_collide_with_lsp():
    codes = list(ERROR_KINDS.values())
    assert len(set(codes)) == len(codes)
    assert all(-32099 <= c <= -32000 for c in codes)
    assert not {-32001, -32002} & set(codes)


def test_exit_codes_in_process(tmp_path):
    code, _ = _run(
        tmp_path,
        [
            INIT,
            _req(1, "shutdown"),
            {"jsonrpc": "2.0", "method": "exit"},
            _req(2, "workbench/ping"),
        ],
    )
    assert code == 0


def test_server_methods_match_protocol_table(tmp_path):
    assert Server(environ={}).custom_methods() == served_methods(False)
    assert Server(environ={"GPUWB_DEBUG_METHODS": "1"}).custom_methods() == served_methods(True)
    assert set(served_methods(True)) == set(METHODS)


@dataclass
class _Inner:
    n: int


@dataclass
class _Outer:
    name: str
    ratio: float
    flag: bool
    inner: _Inner
    tags: List[str] = field(default_factory=list)
    maybe: Optional[_Inner] = None
    either: Union[str, int] = 0
    extra: Dict[str, Any] = field(default_factory=dict)


def test_from_dict_happy_path():
    value = from_dict(
        _Outer,
        {"name": "a", "ratio": 1, "flag": True, "inner": {"n": 2}, "tags": ["x"], "unknown": 1},
    )
    assert value == _Outer("a", 1.0, True, _Inner(2), ["x"])
    assert isinstance(value.ratio, float)
    assert to_json(value)["inner"] == {"n": 2}


@pytest.mark.parametrize(
    "data,path",
    [
        ({"ratio": 1, "flag": True, "inner": {"n": 1}}, "params.name"),
        ({"name": 1, "ratio": 1, "flag": True, "inner": {"n": 1}}, "params.name"),
        ({"name": "a", "ratio": True, "flag": True, "inner": {"n": 1}}, "params.ratio"),
        ({"name": "a", "ratio": 1, "flag": 1, "inner": {"n": 1}}, "params.flag"),
        ({"name": "a", "ratio": 1, "flag": True, "inner": {"n": 1.5}}, "params.inner.n"),
        ({"name": "a", "ratio": 1, "flag": True, "inner": {"n": 1}, "tags": [1]}, "params.tags[0]"),
        (
            {"name": "a", "ratio": 1, "flag": True, "inner": {"n": 1}, "either": None},
            "params.either",
        ),
        ([], "params"),
    ],
)
def test_from_dict_errors_name_the_field(data, path):
    with pytest.raises(ConversionError) as info:
        from_dict(_Outer, data)
    assert info.value.path == path


def test_field_paths_flatten():
    assert field_paths(_Outer) == sorted(
        ["name", "ratio", "flag", "inner.n", "tags", "maybe.n", "either", "extra"]
    )


def test_notifications_from_many_threads_stay_whole():
    import threading

    from gpu_workbench.framing import FrameWriter
    from gpu_workbench.rpc import Connection, Router

    out = io.BytesIO()
    connection = Connection(FrameReader(io.BytesIO(b"")), FrameWriter(out), Router())

    def send(n: int) -> None:
        for i in range(200):
            connection.notify(
                "kernel/event", {"kernelId": str(n), "event": {"seq": i, "text": "x" * 500}}
            )

    threads = [threading.Thread(target=send, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    reader = FrameReader(io.BytesIO(out.getvalue()))
    seen: Dict[str, List[int]] = {}
    while True:
        body = reader.read_message()
        if body is None:
            break
        message = json.loads(body)
        assert message["method"] == "kernel/event"
        seen.setdefault(message["params"]["kernelId"], []).append(message["params"]["event"]["seq"])
    assert reader.problems == 0
    assert seen == {str(n): list(range(200)) for n in range(8)}
