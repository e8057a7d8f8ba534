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
    workbench = {k: v for k, v in spec["methods"].items() if k.startswith("workbench/")}
    assert workbench == {
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
    assert spec["errorKinds"]["HostKeyUnknown"] == -32060
    assert len(spec["errorKinds"]) == 17


def test_spec_includes_debug_methods_only_when_enabled():
    spec = _spec(debug=True)
    assert spec["methods"]["debug/sleep"] == {
        "kind": "request",
        "params": ["seconds", "workDoneToken"],
        "result": ["sleptSeconds"],
    }


KERNEL_INFO = [
    "createdAt",
    "cwd",
    "idleTimeoutSeconds",
    "kernelId",
    "lastSeq",
    "machine",
    "name",
    "pid",
    "python",
    "pythonVersion",
    "queue",
    "state",
]


def test_spec_kernel_and_cell_methods():
    methods = _spec(debug=False)["methods"]

    def request(params, result):
        return {"kind": "request", "params": params, "result": result}

    assert methods["kernel/start"] == request(
        ["cwd", "env", "envFile", "idleTimeoutSeconds", "machine", "name", "python"], KERNEL_INFO
    )
    assert methods["kernel/execute"] == request(
        ["after", "code", "executionId", "file", "kernelId", "line", "stopOnError"],
        ["executionId", "queuePosition"],
    )
    assert methods["kernel/interrupt"] == request(["graceSeconds", "kernelId"], ["outcome"])
    assert methods["kernel/restart"] == request(["kernelId"], KERNEL_INFO)
    assert methods["kernel/shutdown"] == request(["kernelId"], ["kernelId"])
    assert methods["kernel/list"] == request([], ["kernels"])
    assert methods["kernel/attach"] == request(["kernelId", "since"], KERNEL_INFO)
    assert methods["kernel/inputReply"] == request(["executionId", "kernelId", "value"], [])
    assert methods["kernel/variables"] == request(["kernelId"], ["variables"])
    assert methods["kernel/event"] == {"kind": "notification", "params": ["event", "kernelId"]}
    assert methods["cells/parse"] == request(["markers", "text"], ["cells"])
