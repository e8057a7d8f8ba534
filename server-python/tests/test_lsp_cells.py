"""Standard LSP features for cells: text sync, codeLens, foldingRange, documentSymbol, markers."""

from __future__ import annotations

import io
import json
import time
from typing import Any, Dict, List

import pytest

from conftest import Session, spawn
from gpu_workbench import cells
from gpu_workbench.cells import parse_cells
from gpu_workbench.framing import FrameReader, FrameWriter
from gpu_workbench.options import parse_init_options, parse_markers, python_regex
from gpu_workbench.rpc import Connection, Router

URI = "file:///work/sample.py"
# The extension's default setting, as it arrives in JSON (JS regex source).
JS_DEFAULT_MARKERS = ["^#\\s*%%", "^#\\s*In\\[[^\\]]*\\]:"]

SAMPLE_LINES = [
    "import torch",  # 0  leading code: a cell without a marker, so no features
    "x = 1",  # 1
    "",  # 2
    "# %%",  # 3  Cell 2
    "a = 1",  # 4
    "",  # 5
    "#%% title here",  # 6
    "b = 2",  # 7
    "c = 3",  # 8
    "# In[3]:",  # 9  Cell 4
    "d = 4",  # 10
    "# %% [markdown] Notes",  # 11
    "# Some *text*",  # 12
    "",  # 13
    "# %%",  # 14 Cell 6: marker only
    "",  # 15
]
SAMPLE = "\n".join(SAMPLE_LINES)


def _initialize(session: Session, options: Any = None, refresh: bool = False) -> None:
    capabilities: Dict[str, Any] = {}
    if refresh:
        capabilities = {"workspace": {"codeLens": {"refreshSupport": True}}}
    params: Dict[str, Any] = {"processId": None, "capabilities": capabilities}
    if options is not None:
        params["initializationOptions"] = options
    response = session.request("initialize", params)
    assert "result" in response, response
    session.notify("initialized", {})


def _open(session: Session, text: str, uri: str = URI, language: str = "python", version=1):
    session.notify(
        "textDocument/didOpen",
        {"textDocument": {"uri": uri, "languageId": language, "version": version, "text": text}},
    )


def _change(session: Session, text: str, uri: str = URI, version: int = 2) -> None:
    session.notify(
        "textDocument/didChange",
        {"textDocument": {"uri": uri, "version": version}, "contentChanges": [{"text": text}]},
    )


def _result(session: Session, method: str, uri: str = URI) -> List[Dict[str, Any]]:
    response = session.request(method, {"textDocument": {"uri": uri}})
    assert "result" in response, response
    return response["result"]


def _lenses(session: Session, uri: str = URI) -> List[Any]:
    """(line, title, command, arguments) of each lens."""
    out = []
    for lens in _result(session, "textDocument/codeLens", uri):
        start, end = lens["range"]["start"], lens["range"]["end"]
        assert start["line"] == end["line"] and start["character"] == 0
        cmd = lens["command"]
        out.append((start["line"], cmd["title"], cmd["command"], cmd["arguments"]))
    return out


def _folds(session: Session, uri: str = URI) -> List[Any]:
    out = []
    for fold in _result(session, "textDocument/foldingRange", uri):
        assert fold["kind"] == "region"
        out.append((fold["startLine"], fold["endLine"]))
    return out


def _symbols(session: Session, uri: str = URI) -> List[Dict[str, Any]]:
    return _result(session, "textDocument/documentSymbol", uri)


def _expected_sample_lenses(uri: str = URI) -> List[Any]:
    def lenses(line: int, above: bool = True, run_all: bool = False) -> List[Any]:
        out: List[Any] = [(line, "Run Cell", "gpuWorkbench.runCell", [uri, line])]
        if above:
            out.append((line, "Run Above", "gpuWorkbench.runAbove", [uri, line]))
        out.append((line, "Run Below", "gpuWorkbench.runBelow", [uri, line]))
        if run_all:
            out.append((line, "Run All", "gpuWorkbench.runAll", [uri]))
        return out

    # No lenses on the leading code (0) or the markdown cell (11).
    return lenses(3, run_all=True) + lenses(6) + lenses(9) + lenses(14)


@pytest.fixture
def lsp(data_env):
    """A backend initialized with the extension's default markers."""
    s = spawn(data_env)
    _initialize(s, {"cellMarkers": JS_DEFAULT_MARKERS})
    yield s
    s.close()


@pytest.fixture
def plain(data_env):
    """A backend initialized without cellMarkers (the backend's own defaults)."""
    s = spawn(data_env)
    _initialize(s)
    yield s
    s.close()


# ---- capabilities and sync ----


def test_capabilities(session):
    caps = session.initialize()["result"]["capabilities"]
    assert caps["textDocumentSync"] == {"openClose": True, "change": 1}
    assert caps["codeLensProvider"] == {"resolveProvider": False}
    assert caps["foldingRangeProvider"] is True
    assert caps["documentSymbolProvider"] is True


@pytest.mark.parametrize("fixture", ["lsp", "plain"])
def test_sample_features(fixture, request):
    session = request.getfixturevalue(fixture)
    _open(session, SAMPLE)
    assert _lenses(session) == _expected_sample_lenses()
    assert _folds(session) == [(3, 4), (6, 8), (9, 10), (11, 12)]
    symbols = _symbols(session)
    assert [(s["name"], s["kind"], s.get("detail")) for s in symbols] == [
        ("Cell 2", 3, None),
        ("title here", 3, None),
        ("Cell 4", 3, None),
        ("Notes", 15, "markdown"),
        ("Cell 6", 3, None),
    ]

    def span(r):
        return (
            r["start"]["line"],
            r["start"]["character"],
            r["end"]["line"],
            r["end"]["character"],
        )

    assert [span(s["range"]) for s in symbols] == [
        (3, 0, 4, 5),
        (6, 0, 8, 5),
        (9, 0, 10, 5),
        (11, 0, 12, 13),
        (14, 0, 14, 4),
    ]
    assert [span(s["selectionRange"]) for s in symbols] == [
        (3, 0, 3, 4),
        (6, 0, 6, 14),
        (9, 0, 9, 8),
        (11, 0, 11, 21),
        (14, 0, 14, 4),
    ]


def test_crlf_gives_the_same_lines(lsp):
    _open(lsp, SAMPLE.replace("\n", "\r\n"))
    assert _lenses(lsp) == _expected_sample_lenses()
    assert _folds(lsp) == [(3, 4), (6, 8), (9, 10), (11, 12)]
    # Range ends exclude the line break.
    assert _symbols(lsp)[0]["range"]["end"] == {"line": 4, "character": 5}


def test_empty_file_and_file_without_markers(lsp):
    for text in ("", "\n\n", "import os\nprint(os.name)\n# just a comment\n  # %% indented\n"):
        _open(lsp, text)
        assert _lenses(lsp) == []
        assert _folds(lsp) == []
        assert _symbols(lsp) == []


def test_markdown_first_means_no_run_above(lsp):
    _open(lsp, "# %% [markdown]\n# Intro\n# %%\nx = 1\n# %% [md] More\n# %% last\ny = 2\n")
    assert _lenses(lsp) == [
        (2, "Run Cell", "gpuWorkbench.runCell", [URI, 2]),
        (2, "Run Below", "gpuWorkbench.runBelow", [URI, 2]),
        (2, "Run All", "gpuWorkbench.runAll", [URI]),
        (5, "Run Cell", "gpuWorkbench.runCell", [URI, 5]),
        (5, "Run Above", "gpuWorkbench.runAbove", [URI, 5]),
        (5, "Run Below", "gpuWorkbench.runBelow", [URI, 5]),
    ]
    symbols = _symbols(lsp)
    assert [(s["name"], s["kind"]) for s in symbols] == [
        ("Cell 1", 15),
        ("Cell 2", 3),
        ("More", 15),
        ("last", 3),
    ]


def test_positions_count_utf16_code_units(lsp):
    _open(lsp, "# %% données 🚀\nx = 'é'\n")
    symbol = _symbols(lsp)[0]
    assert symbol["name"] == "données 🚀"
    # 🚀 is two UTF-16 code units.
    assert symbol["selectionRange"]["end"] == {"line": 0, "character": 15}
    assert symbol["range"]["end"] == {"line": 1, "character": 7}


def test_did_change_replaces_the_text_and_did_close_forgets(lsp):
    _open(lsp, SAMPLE)
    assert len(_symbols(lsp)) == 5
    _change(lsp, "# %% only\nx = 1\n")
    assert [s["name"] for s in _symbols(lsp)] == ["only"]
    assert _folds(lsp) == [(0, 1)]
    # Several full changes in one notification: the last one wins.
    lsp.notify(
        "textDocument/didChange",
        {
            "textDocument": {"uri": URI, "version": 3},
            "contentChanges": [{"text": "# %% a\n"}, {"text": "# %% b\n# %% c\n"}],
        },
    )
    assert [s["name"] for s in _symbols(lsp)] == ["b", "c"]
    lsp.notify("textDocument/didClose", {"textDocument": {"uri": URI}})
    assert _symbols(lsp) == []
    assert _lenses(lsp) == []
    # A change for a document that is not open does not open it.
    _change(lsp, "# %% again\n", version=4)
    assert _symbols(lsp) == []


def test_unknown_uri_and_other_languages_give_empty_results(lsp):
    _open(lsp, SAMPLE, uri="file:///work/notes.md", language="markdown")
    for uri in ("file:///nowhere.py", "file:///work/notes.md"):
        assert _lenses(lsp, uri) == []
        assert _folds(lsp, uri) == []
        assert _symbols(lsp, uri) == []


def test_bad_request_params_are_invalid_params(lsp):
    for params in ({}, {"textDocument": {}}, {"textDocument": {"uri": 3}}):
        response = lsp.request("textDocument/codeLens", params)
        assert response["error"]["code"] == -32602, response


def test_malformed_notifications_are_logged_and_ignored(lsp):
    _open(lsp, SAMPLE)
    bad = [
        ("textDocument/didOpen", {}),
        ("textDocument/didOpen", {"textDocument": {"uri": URI, "languageId": "python"}}),
        ("textDocument/didOpen", {"textDocument": "nope"}),
        ("textDocument/didChange", {"textDocument": {"uri": URI}}),
        ("textDocument/didChange", {"textDocument": {"uri": URI}, "contentChanges": [3]}),
        (
            "textDocument/didChange",
            {
                "textDocument": {"uri": URI},
                "contentChanges": [{"range": {"start": {"line": 0, "character": 0}}, "text": "x"}],
            },
        ),
        ("textDocument/didClose", {"textDocument": {}}),
        ("textDocument/didClose", []),
        ("workspace/didChangeConfiguration", {"settings": None}),
        ("workspace/didChangeConfiguration", []),
    ]
    for method, params in bad:
        lsp.notify(method, params)
    lsp.send({"jsonrpc": "2.0", "method": "textDocument/didOpen"})  # no params at all
    assert "result" in lsp.ping()
    lsp.wait_stderr("ignoring textDocument/didChange")
    # The document is untouched.
    assert _lenses(lsp) == _expected_sample_lenses()
    assert lsp.proc.poll() is None


# ---- markers ----


def test_markers_from_initialization_options(data_env):
    s = spawn(data_env)
    try:
        _initialize(s, {"cellMarkers": ["^##\\s*(?<title>\\w+)?", "^# ---"]})
        _open(s, "x = 0\n## first trailing\na = 1\n# %% not a marker now\n# --- sep\nb = 2\n")
        assert [(sym["name"], sym["range"]["end"]["line"]) for sym in _symbols(s)] == [
            ("first", 3),  # the `title` group wins over the rest of the line
            ("sep", 5),
        ]
    finally:
        s.close()


@pytest.mark.parametrize(
    "markers",
    [["("], "^#%%", [], ["^# %%", 3], ["^# %%", "[unclosed"]],
)
def test_bad_marker_options_fall_back_to_defaults(data_env, markers):
    s = spawn(data_env)
    try:
        _initialize(s, {"cellMarkers": markers})
        s.wait_stderr("cellMarkers")
        _open(s, SAMPLE)
        assert _lenses(s) == _expected_sample_lenses()
    finally:
        s.close()


def _configure(session: Session, settings: Any) -> None:
    session.notify("workspace/didChangeConfiguration", {"settings": settings})


def _is_refresh(message: Any) -> bool:
    return isinstance(message, dict) and message.get("method") == "workspace/codeLens/refresh"


def test_markers_from_configuration_with_code_lens_refresh(data_env):
    s = spawn(data_env)
    try:
        _initialize(s, {"cellMarkers": JS_DEFAULT_MARKERS}, refresh=True)
        _open(s, "# %% a\nx = 1\n# --- b\ny = 2\n")
        assert [sym["name"] for sym in _symbols(s)] == ["a"]

        _configure(s, {"gpuWorkbench": {"cells": {"markers": ["^# ---"]}, "other": 1}})
        refresh = s.wait_for(_is_refresh)
        assert isinstance(refresh["id"], str) and "params" not in refresh
        assert [sym["name"] for sym in _symbols(s)] == ["b"]
        assert _folds(s) == [(2, 3)]
        # The client's reply (a result, or an error) is accepted and ignored.
        s.send({"jsonrpc": "2.0", "id": refresh["id"], "result": None})

        # Dotted keys work too; a second refresh gets a new id.
        _configure(s, {"gpuWorkbench": {"cells.markers": JS_DEFAULT_MARKERS}})
        second = s.wait_for(_is_refresh)
        assert second["id"] != refresh["id"]
        s.send({"jsonrpc": "2.0", "id": second["id"], "error": {"code": -32601, "message": "no"}})
        assert [sym["name"] for sym in _symbols(s)] == ["a"]

        # Unchanged markers, or a change without the setting: no refresh.
        _configure(s, {"gpuWorkbench": {"cells": {"markers": JS_DEFAULT_MARKERS}}})
        _configure(s, {"gpuWorkbench": {"backend": {"autoRestart": True}}})
        _configure(s, {"python": {}})
        assert "result" in s.ping()
        assert not any(_is_refresh(m) for m in s.drain())

        # Bad markers: a warning, then the defaults (and a refresh, since they changed).
        _configure(s, {"gpuWorkbench": {"cells": {"markers": ["^# ---"]}}})
        s.wait_for(_is_refresh)
        _configure(s, {"gpuWorkbench": {"cells": {"markers": ["(bad"]}}})
        s.wait_stderr("gpuWorkbench.cells.markers[0]")
        s.wait_for(_is_refresh)
        assert [sym["name"] for sym in _symbols(s)] == ["a"]
    finally:
        s.close()


def test_no_refresh_without_client_support(lsp):
    _open(lsp, "# %% a\nx = 1\n# --- b\ny = 2\n")
    _configure(lsp, {"gpuWorkbench": {"cells": {"markers": ["^# ---"]}}})
    assert [sym["name"] for sym in _symbols(lsp)] == ["b"]
    assert not any(_is_refresh(m) for m in lsp.drain())


# ---- in process: marker validation, joined patterns, Connection.request ----


def test_parse_markers_and_js_named_groups():
    assert parse_markers(JS_DEFAULT_MARKERS, "m") == (JS_DEFAULT_MARKERS, None)
    assert python_regex("^#(?<t>x)(?<=a)(?<!b)\\(?<n>") == "^#(?P<t>x)(?<=a)(?<!b)\\(?<n>"
    markers, warning = parse_markers(["ok", "("], "m")
    assert markers is None and warning is not None and "m[1]" in warning
    options, warnings = parse_init_options({"cellMarkers": None})
    assert options.cellMarkers is None and warnings == []


@pytest.mark.parametrize(
    ("markers", "joinable"),
    [
        (None, True),
        (JS_DEFAULT_MARKERS, True),
        (["^#\\s*%%(?P<title>.*)", "^# In\\[(?P<title>.*)\\]"], False),  # one group name twice
        (["^(#)\\1 %%", "^# %%"], False),  # a backreference
        (["(?i)^# CELL", "^# %%"], False),  # a global flag
    ],
)
def test_joined_and_separate_marker_scans_agree(markers, joinable):
    lines = cells.split_lines("x\n# %% a\n## %% b\n# cell c\n# In[2] d\n# In[2]\n#%%\n")
    patterns = cells.compile_markers(markers)
    assert (cells._joined(patterns) is not None) == joinable
    one_by_one = []
    for number, line in enumerate(lines):
        title = cells._match_marker(line, patterns)
        if title is not None:
            one_by_one.append((number, title))
    assert cells._marker_lines(lines, patterns) == one_by_one
    assert len(one_by_one) >= 2


class _NoRoutes(Router):
    def resolve(self, method, is_request):
        return None


def test_connection_request_sends_string_ids():
    out = io.BytesIO()
    connection = Connection(FrameReader(io.BytesIO(b"")), FrameWriter(out), _NoRoutes())
    first = connection.request("workspace/codeLens/refresh")
    second = connection.request("client/thing", {"a": 1})
    reader = FrameReader(io.BytesIO(out.getvalue()))
    sent = [json.loads(reader.read_message() or b"null") for _ in range(2)]
    assert sent == [
        {"jsonrpc": "2.0", "id": first, "method": "workspace/codeLens/refresh"},
        {"jsonrpc": "2.0", "id": second, "method": "client/thing", "params": {"a": 1}},
    ]
    assert first != second and first.startswith("gpuwb-")
    # Replies to them are ignored without an answer of our own.
    connection.handle_body(json.dumps({"jsonrpc": "2.0", "id": first, "result": None}).encode())
    connection.handle_body(
        json.dumps({"jsonrpc": "2.0", "id": second, "error": {"code": 1, "message": "x"}}).encode()
    )
    assert reader.read_message() is None


# ---- performance (printed, not asserted) ----


def _timed(session: Session, method: str) -> float:
    start = time.perf_counter()
    _result(session, method)
    return (time.perf_counter() - start) * 1000


def test_performance_10k_lines(lsp, capsys):
    lines: List[str] = []
    for i in range(10000):
        lines.append(
            "# %% cell {}".format(i) if i % 20 == 0 else "y = torch.randn(8, 8)  # {}".format(i)
        )
    text = "\n".join(lines)
    _open(lsp, text)
    assert "result" in lsp.ping()
    first = _timed(lsp, "textDocument/codeLens")
    cached = min(_timed(lsp, "textDocument/codeLens") for _ in range(5))
    folding = min(_timed(lsp, "textDocument/foldingRange") for _ in range(5))
    symbols = min(_timed(lsp, "textDocument/documentSymbol") for _ in range(5))
    start = time.perf_counter()
    parse_cells(text, JS_DEFAULT_MARKERS)
    parse_ms = (time.perf_counter() - start) * 1000
    ping = min(_ping_ms(lsp) for _ in range(5))
    with capsys.disabled():
        print(
            "\n10k lines, 500 cells (round trips incl. JSON): codeLens first %.1f ms, cached %.1f ms,"
            " foldingRange %.1f ms, documentSymbol %.1f ms, ping %.1f ms; parse_cells in process %.1f ms"
            % (first, cached, folding, symbols, ping, parse_ms)
        )
    assert len(_lenses(lsp)) == 500 * 3 - 1 + 1


def _ping_ms(session: Session) -> float:
    start = time.perf_counter()
    session.ping()
    return (time.perf_counter() - start) * 1000
