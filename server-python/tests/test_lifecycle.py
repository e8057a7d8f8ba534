"""LSP lifecycle: initialize, gating, shutdown, exit codes, EOF."""

from __future__ import annotations

from gpu_workbench import __version__


def test_initialize_result(session):
    result = session.initialize()["result"]
    assert result["serverInfo"] == {"name": "gpu-workbench", "version": __version__}
    methods = result["capabilities"]["experimental"]["gpuWorkbench"]["methods"]
    assert "workbench/ping" in methods and "workbench/status" in methods
    # Cell features for Python files (tests/test_lsp_cells.py) and the custom methods.
    assert set(result["capabilities"]) == {
        "experimental",
        "textDocumentSync",
        "codeLensProvider",
        "foldingRangeProvider",
        "documentSymbolProvider",
    }


def test_request_before_initialize_is_rejected(session):
    response = session.request("workbench/ping", {})
    assert response["error"]["code"] == -32002
    # Notifications before initialize are dropped silently; the server still initializes.
    session.notify("workbench/whatever", {})
    assert "result" in session.initialize()


def test_second_initialize_is_invalid(ready):
    response = ready.request("initialize", {"processId": None, "capabilities": {}})
    assert response["error"]["code"] == -32600


def test_unknown_request_and_notification(ready):
    assert ready.request("workbench/nope", {})["error"]["code"] == -32601
    for method in ("$/setTrace", "$/logTrace", "textDocument/didOpen", "whatever"):
        ready.notify(method, {"x": 1})
    assert "result" in ready.ping()
    assert ready.drain() == []


def test_shutdown_then_requests_refused_and_exit_zero(ready):
    assert ready.request("shutdown") == {"jsonrpc": "2.0", "id": 2, "result": None}
    response = ready.request("workbench/ping", {})
    assert response["error"]["code"] == -32600
    assert "shutting down" in response["error"]["message"]
    ready.notify("exit")
    assert ready.wait_exit() == 0


def test_exit_without_shutdown_is_one(ready):
    ready.notify("exit")
    assert ready.wait_exit() == 1


def test_exit_before_initialize_is_one(session):
    session.notify("exit")
    assert session.wait_exit() == 1


def test_eof_exits_with_one(ready):
    ready.proc.stdin.close()
    assert ready.wait_exit() == 1


def test_eof_after_shutdown_exits_with_zero(ready):
    ready.request("shutdown")
    ready.proc.stdin.close()
    assert ready.wait_exit() == 0


def test_version_flag():
    import subprocess

    from conftest import BACKEND_PYTHON, SERVER_ROOT, backend_env

    out = subprocess.run(
        [BACKEND_PYTHON, "-m", "gpu_workbench", "--version"],
        cwd=str(SERVER_ROOT),
        env=backend_env(),
        capture_output=True,
        timeout=30,
        check=True,
    )
    assert out.stdout.decode().strip() == __version__
