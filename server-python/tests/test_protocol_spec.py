"""`python -m gpu_workbench.protocol` prints the spec derived from the dataclasses."""

from __future__ import annotations

import json
import subprocess

from conftest import BACKEND_PYTHON, SERVER_ROOT, backend_env
from gpu_workbench import __version__


def _spec(debug: bool):
    env = backend_env()
    if not debug:
        env.pop("GPUWB_DEBUG_METHODS")
    out = subprocess.run(
        [BACKEND_PYTHON, "-m", "gpu_workbench.protocol"],
        cwd=str(SERVER_ROOT),
        env=env,
        capture_output=True,
        timeout=30,
        check=True,
    )
    return json.loads(out.stdout)


def test_spec_structure():
    spec = _spec(debug=False)
    assert spec["version"] == __version__
    assert spec["methods"] == {
        "workbench/ping": {
            "kind": "request",
            "params": ["payload"],
            "result": ["payload", "serverTime"],
        },
        "workbench/status": {
            "kind": "request",
            "params": [],
            "result": [
                "capabilities",
                "dataDirectory",
                "name",
                "pid",
                "python.executable",
                "python.implementation",
                "python.version",
                "trusted",
                "uptimeSeconds",
                "version",
            ],
        },
    }
    assert spec["errorKinds"]["Internal"] == -32000
    assert spec["errorKinds"]["UnsafePickle"] == -32041
    assert len(spec["errorKinds"]) == 10


def test_spec_includes_debug_methods_only_when_enabled():
    spec = _spec(debug=True)
    assert spec["methods"]["debug/sleep"] == {
        "kind": "request",
        "params": ["seconds", "workDoneToken"],
        "result": ["sleptSeconds"],
    }
