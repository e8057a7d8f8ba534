"""workbench/status contents, data directory and initializationOptions handling."""

from __future__ import annotations

import json
import os
import stat
import subprocess

from conftest import BACKEND_PYTHON, backend_env, spawn


def _backend_python():
    code = "import json, platform; print(json.dumps([platform.python_version(), platform.python_implementation()]))"
    return json.loads(
        subprocess.run(
            [BACKEND_PYTHON, "-c", code], capture_output=True, check=True, timeout=30
        ).stdout
    )


def test_status_fields(ready, data_env):
    result = ready.request("workbench/status")["result"]
    assert result["name"] == "gpu-workbench"
    assert isinstance(result["version"], str)
    assert result["pid"] == ready.proc.pid
    assert isinstance(result["uptimeSeconds"], float) and result["uptimeSeconds"] >= 0
    version, implementation = _backend_python()
    assert result["python"]["version"] == version
    assert result["python"]["implementation"] == implementation
    assert os.path.samefile(result["python"]["executable"], BACKEND_PYTHON)
    assert result["trusted"] is True
    assert "workbench/ping" in result["capabilities"]
    assert result["dataDirectory"] == data_env["GPUWB_DATA_DIR"]
    assert os.path.isdir(result["dataDirectory"])
    assert stat.S_IMODE(os.stat(result["dataDirectory"]).st_mode) & 0o077 == 0


def test_status_accepts_empty_object_and_no_params(ready):
    assert "result" in ready.request("workbench/status", {})
    assert "result" in ready.request("workbench/status")


def test_data_directory_option_honoured(session, tmp_path):
    target = tmp_path / "nested" / "custom"
    session.initialize({"dataDirectory": str(target), "trusted": False, "logLevel": "debug"})
    result = session.request("workbench/status")["result"]
    assert result["dataDirectory"] == str(target)
    assert target.is_dir()
    assert result["trusted"] is False


def test_xdg_fallback(tmp_path):
    env = backend_env({"XDG_DATA_HOME": str(tmp_path / "xdg")})
    env.pop("GPUWB_DATA_DIR", None)
    s = spawn(env)
    try:
        s.initialize()
        result = s.request("workbench/status")["result"]
        assert result["dataDirectory"] == str(tmp_path / "xdg" / "gpu-workbench")
        assert os.path.isdir(result["dataDirectory"])
    finally:
        s.close()


def test_bad_options_fall_back_with_warning(session, data_env):
    session.initialize({"dataDirectory": 42, "trusted": "yes", "logLevel": "loud"})
    result = session.request("workbench/status")["result"]
    assert result["dataDirectory"] == data_env["GPUWB_DATA_DIR"]
    assert result["trusted"] is True
    assert "WARNING" in session.wait_stderr("dataDirectory must be")
    session.wait_stderr("trusted must be")
    session.wait_stderr("logLevel must be")


def test_options_not_an_object(session):
    session.initialize(["nope"])
    session.wait_stderr("initializationOptions must be an object")
    assert "result" in session.ping()


def test_ill_typed_process_id_is_invalid_params(session):
    response = session.request("initialize", {"processId": "abc"})
    assert response["error"]["code"] == -32602
    assert "processId" in response["error"]["message"]
    assert "result" in session.initialize()
