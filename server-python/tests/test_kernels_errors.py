"""Bad kernel requests: unknown ids, oversized code, ill-typed params, trust, bad interpreters."""

from __future__ import annotations

import os
import stat

import pytest

from conftest import spawn_kernel_backend


def test_unknown_kernel_is_not_found(kernels):
    for method, params in [
        ("kernel/execute", {"kernelId": "0123456789ab", "code": "1"}),
        ("kernel/interrupt", {"kernelId": "0123456789ab"}),
        ("kernel/restart", {"kernelId": "nope"}),
        ("kernel/shutdown", {"kernelId": "../../etc"}),
        ("kernel/attach", {"kernelId": "0123456789ab"}),
        ("kernel/variables", {"kernelId": "0123456789ab"}),
        ("kernel/inputReply", {"kernelId": "0123456789ab", "executionId": "x", "value": ""}),
    ]:
        error = kernels.error(method, params)
        assert error["code"] == -32011, (method, error)
        assert error["data"]["kind"] == "NotFound"


@pytest.mark.parametrize(
    "method, params, field",
    [
        ("kernel/execute", {"kernelId": 5, "code": "1"}, "kernelId"),
        ("kernel/execute", {"kernelId": "0123456789ab"}, "code"),
        ("kernel/execute", {"kernelId": "0123456789ab", "code": "1", "line": "3"}, "line"),
        ("kernel/start", {"env": {"A": 1}}, "env.A"),
        ("kernel/start", {"idleTimeoutSeconds": "soon"}, "idleTimeoutSeconds"),
        ("kernel/attach", {"kernelId": "0123456789ab", "since": 1.5}, "since"),
        ("kernel/interrupt", {"kernelId": "0123456789ab", "graceSeconds": True}, "graceSeconds"),
        ("cells/parse", {"text": 3}, "text"),
        ("cells/parse", {"text": "", "markers": ["("]}, "markers[0]"),
    ],
)
def test_ill_typed_params(kernels, method, params, field):
    error = kernels.error(method, params)
    assert error["code"] == -32602
    assert field in error["message"]


def test_code_over_64_mib_is_rejected(kernels):
    kid = kernels.start()["kernelId"]
    code = "#" * (64 * 1024 * 1024 + 1)
    error = kernels.error("kernel/execute", {"kernelId": kid, "code": code}, timeout=60)
    assert error["code"] == -32602
    assert "64 MiB" in error["message"]
    assert "result" in kernels.session.ping()


def test_untrusted_backend_refuses_kernels(kernel_data):
    client = spawn_kernel_backend(kernel_data, {"trusted": False})
    try:
        for method, params in [
            ("kernel/start", {}),
            ("kernel/list", {}),
            ("kernel/execute", {"kernelId": "0123456789ab", "code": "1"}),
        ]:
            error = client.error(method, params)
            assert error["data"]["kind"] == "Untrusted"
            assert "Trust" in error["data"]["hint"]
        assert not list(kernel_data.glob("kernels/*"))
        # Parsing cells is harmless and allowed.
        assert client.call("cells/parse", {"text": "# %%\n1"})["cells"]
    finally:
        client.session.close()


def test_missing_interpreter(kernels, tmp_path):
    missing = str(tmp_path / "no-such-python")
    error = kernels.error("kernel/start", {"python": missing})
    assert error["data"]["kind"] == "KernelDied"
    assert missing in error["message"]


def test_interpreter_that_fails(kernels, tmp_path):
    script = tmp_path / "broken-python"
    script.write_text("#!/bin/sh\necho 'this python is broken' >&2\nexit 1\n")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    error = kernels.error("kernel/start", {"python": str(script)})
    assert error["data"]["kind"] == "KernelDied"
    assert "this python is broken" in error["message"]
    assert "this python is broken" in error["data"]["detail"]
    assert kernels.call("kernel/list")["kernels"] == []


def test_missing_cwd_and_env_file(kernels, tmp_path):
    error = kernels.error("kernel/start", {"cwd": str(tmp_path / "nope")})
    assert error["data"]["kind"] == "NotFound"
    error = kernels.error("kernel/start", {"cwd": str(tmp_path), "envFile": "missing.env"})
    assert error["data"]["kind"] == "NotFound"
    assert os.path.join(str(tmp_path), "missing.env") in error["message"]
