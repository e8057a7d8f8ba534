"""The JSON-over-HTTPS client: error mapping, retries, backoff, redaction."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import urllib.request
from pathlib import Path
from typing import Iterator, List

import pytest
from capture import Sleeps, captured_logs
from fake_clouds import FakeLambda, FakeLinode

from gpu_workbench.vms.base import ProviderError
from gpu_workbench.vms.http import (
    CREDENTIALS_COMMAND,
    HttpClient,
    api_error_text,
    parse_retry_after,
    redact,
)

TOKEN = "secret-token-0123456789abcdef"


@pytest.fixture
def fake_lambda() -> Iterator[FakeLambda]:
    with FakeLambda(TOKEN) as cloud:
        yield cloud


@pytest.fixture
def fake_linode() -> Iterator[FakeLinode]:
    with FakeLinode(TOKEN) as cloud:
        yield cloud


@pytest.fixture
def logs() -> Iterator[List[str]]:
    with captured_logs() as lines:
        yield lines


def client(url: str, token: str = TOKEN, **options: object) -> HttpClient:
    return HttpClient(url, token, provider="Test", timeout=2.0, **options)  # type: ignore[arg-type]


def no_secret(error: ProviderError, lines: List[str] = ()) -> None:  # type: ignore[assignment]
    texts = [str(error), error.message, str(error.hint), str(error.detail), str(error.data)]
    texts += list(lines)
    for text in texts:
        assert TOKEN not in text
    assert error.__cause__ is None


# ---- pure helpers ----


def test_redact_removes_secrets_and_bearer_values() -> None:
    assert redact("x %s y" % TOKEN, [TOKEN]) == "x [redacted] y"
    assert redact("Authorization: Bearer abc.def", []) == "Authorization: Bearer [redacted]"
    assert redact('{"h": "bearer zzz"}', []) == '{"h": "bearer [redacted]"}'
    assert redact("nothing here", [None, "", TOKEN]) == "nothing here"


def test_parse_retry_after() -> None:
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after("0.5") == 0.5
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0) == 10.0


def test_api_error_text_linode_and_lambda() -> None:
    assert api_error_text({"errors": [{"reason": "bad", "field": "type"}, {"reason": "x"}]}) == (
        "type: bad; x"
    )
    assert api_error_text({"error": {"code": "c", "message": "m", "suggestion": "s"}}) == "m (s)"
    assert api_error_text({"error": "plain"}) == "plain"
    assert api_error_text([1]) is None


# ---- client against the fakes ----


def test_get_ok(fake_lambda: FakeLambda) -> None:
    body = client(fake_lambda.url).get("/instance-types")
    assert "gpu_1x_a10" in body["data"]


def test_plain_http_only_for_localhost() -> None:
    with pytest.raises(ProviderError) as info:
        HttpClient("http://api.example.com/v1", TOKEN, provider="Test")
    assert info.value.kind == "ProviderRequest"
    with pytest.raises(ProviderError):
        HttpClient("ftp://localhost/x", TOKEN, provider="Test")
    HttpClient("https://api.example.com/v1", TOKEN, provider="Test")


def test_missing_token_is_auth_error_without_a_request(fake_lambda: FakeLambda) -> None:
    with pytest.raises(ProviderError) as info:
        client(fake_lambda.url, token="").get("/instances")
    assert info.value.kind == "ProviderAuth"
    assert CREDENTIALS_COMMAND in str(info.value.hint)
    assert fake_lambda.requests == []


@pytest.mark.parametrize("status", [401, 403])
def test_auth_errors(fake_lambda: FakeLambda, status: int, logs: List[str]) -> None:
    fake_lambda.fault("GET /instances", status=status)
    with pytest.raises(ProviderError) as info:
        client(fake_lambda.url).get("/instances")
    assert info.value.kind == "ProviderAuth"
    assert CREDENTIALS_COMMAND in str(info.value.hint)
    no_secret(info.value, logs)


def test_wrong_token(fake_linode: FakeLinode, logs: List[str]) -> None:
    with pytest.raises(ProviderError) as info:
        client(fake_linode.url, token="wrong-token-xyz").get("/linode/instances")
    assert info.value.kind == "ProviderAuth"
    assert "Invalid Token" in info.value.message
    assert "wrong-token-xyz" not in str(info.value.data)


def test_echoed_token_is_redacted(fake_lambda: FakeLambda, logs: List[str]) -> None:
    fake_lambda.fault("GET /instances", status=400, echo_token=True)
    with pytest.raises(ProviderError) as info:
        client(fake_lambda.url).get("/instances")
    assert info.value.kind == "ProviderRequest"
    assert "[redacted]" in info.value.message
    no_secret(info.value, logs)
    fake_lambda.fault("GET /instances", status=401, echo_token=True)
    with pytest.raises(ProviderError) as info:
        client(fake_lambda.url).get("/instances")
    no_secret(info.value, logs)
    fake_lambda.fault("GET /instances", status=500, echo_token=True, times=2)
    with pytest.raises(ProviderError) as info:
        client(fake_lambda.url, sleep=Sleeps()).get("/instances")
    assert info.value.kind == "ProviderUnavailable"
    no_secret(info.value, logs)
    assert any("GET /instances" in line for line in logs)


def test_429_backs_off_then_succeeds(fake_lambda: FakeLambda) -> None:
    sleeps = Sleeps()
    fake_lambda.fault("GET /instances", status=429, times=2)
    body = client(fake_lambda.url, sleep=sleeps, backoff=0.5).get("/instances")
    assert body == {"data": []}
    assert sleeps.calls == [0.5, 1.0]
    assert fake_lambda.count("GET", "/instances") == 3


def test_429_honours_retry_after(fake_lambda: FakeLambda) -> None:
    sleeps = Sleeps()
    fake_lambda.fault("POST /ssh-keys", status=429, retry_after="7")
    client(fake_lambda.url, sleep=sleeps).post("/ssh-keys", {"name": "k", "public_key": "a b"})
    assert sleeps.calls == [7.0]


def test_429_exponential_wait_is_capped(fake_lambda: FakeLambda) -> None:
    sleeps = Sleeps()
    fake_lambda.fault("GET /instances", status=429, times=4)
    c = client(fake_lambda.url, sleep=sleeps, backoff=10.0, max_backoff=30.0)
    assert c.get("/instances") == {"data": []}
    assert sleeps.calls == [10.0, 20.0, 30.0, 30.0]


def test_429_exhausted(fake_lambda: FakeLambda) -> None:
    sleeps = Sleeps()
    fake_lambda.fault("GET /instances", status=429, times=10)
    with pytest.raises(ProviderError) as info:
        client(fake_lambda.url, sleep=sleeps, rate_limit_retries=3, backoff=0.1).get("/instances")
    assert info.value.kind == "ProviderRateLimited"
    assert len(sleeps.calls) == 3
    assert fake_lambda.count("GET", "/instances") == 4


def test_429_retry_after_beyond_limit_fails_at_once(fake_lambda: FakeLambda) -> None:
    sleeps = Sleeps()
    fake_lambda.fault("GET /instances", status=429, retry_after="3600")
    with pytest.raises(ProviderError) as info:
        client(fake_lambda.url, sleep=sleeps, max_backoff=60).get("/instances")
    assert info.value.kind == "ProviderRateLimited"
    assert "3600 s" in str(info.value.hint)
    assert sleeps.calls == []


def test_500_get_retried_once(fake_lambda: FakeLambda) -> None:
    sleeps = Sleeps()
    fake_lambda.fault("GET /instances", status=500)
    assert client(fake_lambda.url, sleep=sleeps).get("/instances") == {"data": []}
    assert len(sleeps.calls) == 1
    fake_lambda.fault("GET /instances", status=503, times=2)
    with pytest.raises(ProviderError) as info:
        client(fake_lambda.url, sleep=sleeps).get("/instances")
    assert info.value.kind == "ProviderUnavailable"
    assert fake_lambda.count("GET", "/instances") == 4


def test_500_post_not_retried(fake_lambda: FakeLambda) -> None:
    fake_lambda.fault("POST /ssh-keys", status=500)
    with pytest.raises(ProviderError) as info:
        client(fake_lambda.url, sleep=Sleeps()).post("/ssh-keys", {"name": "k"})
    assert info.value.kind == "ProviderUnavailable"
    assert fake_lambda.count("POST", "/ssh-keys") == 1


def test_timeout(fake_lambda: FakeLambda, logs: List[str]) -> None:
    fake_lambda.fault("GET /instances", delay=1.0)
    with pytest.raises(ProviderError) as info:
        HttpClient(fake_lambda.url, TOKEN, provider="Test", timeout=0.2).get("/instances")
    assert info.value.kind == "ProviderUnavailable"
    assert "timed out" in info.value.message
    assert fake_lambda.count("GET", "/instances") == 1  # no retry after a timeout
    no_secret(info.value, logs)


def test_connection_refused() -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    sleeps = Sleeps()
    with pytest.raises(ProviderError) as info:
        client("http://127.0.0.1:%d/api" % port, sleep=sleeps).get("/x")
    assert info.value.kind == "ProviderUnavailable"
    assert len(sleeps.calls) == 1  # GET retried once


def test_dropped_connection() -> None:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(5)
    port = server.getsockname()[1]

    def serve() -> None:
        for _ in range(2):
            conn, _ = server.accept()
            conn.recv(65536)
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        with pytest.raises(ProviderError) as info:
            client("http://127.0.0.1:%d" % port, sleep=Sleeps()).get("/x")
        assert info.value.kind == "ProviderUnavailable"
    finally:
        thread.join(5)
        server.close()


def test_malformed_json(fake_lambda: FakeLambda) -> None:
    fake_lambda.fault("GET /instances", body="<html>oops")
    with pytest.raises(ProviderError) as info:
        client(fake_lambda.url).get("/instances")
    assert info.value.kind == "ProviderResponse"


def test_non_object_json(fake_lambda: FakeLambda) -> None:
    fake_lambda.fault("GET /instances", json=[1, 2])
    with pytest.raises(ProviderError) as info:
        client(fake_lambda.url).get("/instances")
    assert info.value.kind == "ProviderResponse"


def test_empty_body_is_empty_object(fake_linode: FakeLinode) -> None:
    fake_linode.fault("DELETE /linode/instances/{id}", body="")
    assert client(fake_linode.url).delete("/linode/instances/5") == {}


def test_400_linode_reasons(fake_linode: FakeLinode) -> None:
    with pytest.raises(ProviderError) as info:
        client(fake_linode.url).post("/linode/instances", {"type": "nope", "region": "us-east"})
    assert info.value.kind == "ProviderRequest"
    assert "type: A valid plan type by that ID was not found" in info.value.message


def test_400_lambda_message_and_capacity(fake_lambda: FakeLambda) -> None:
    body = {
        "region_name": "us-east-1",
        "instance_type_name": "gpu_8x_a100_80gb_sxm4",
        "ssh_key_names": ["laptop"],
    }
    with pytest.raises(ProviderError) as info:
        client(fake_lambda.url).post("/instance-operations/launch", body)
    assert info.value.kind == "ProviderQuota"
    assert "Not enough capacity" in info.value.message
    body["instance_type_name"] = "gpu_0x_none"
    with pytest.raises(ProviderError) as info:
        client(fake_lambda.url).post("/instance-operations/launch", body)
    assert info.value.kind == "ProviderRequest"
    assert "Invalid instance type" in info.value.message


def test_redirect_not_followed(fake_lambda: FakeLambda, fake_linode: FakeLinode) -> None:
    # Following it would send the Authorization header to another server.
    elsewhere = fake_linode.url + "/linode/instances"
    fake_lambda.fault("GET /instances", status=302, headers={"Location": elsewhere})
    with pytest.raises(ProviderError) as info:
        client(fake_lambda.url).get("/instances")
    assert info.value.kind == "ProviderResponse"
    assert fake_linode.requests == []


def test_404_not_found(fake_lambda: FakeLambda) -> None:
    with pytest.raises(ProviderError) as info:
        client(fake_lambda.url).get("/instances/abc")
    assert info.value.kind == "NotFound"


def test_extra_secrets_redacted(fake_linode: FakeLinode) -> None:
    fake_linode.fault("POST /linode/instances", status=400, echo_token=True)
    with pytest.raises(ProviderError) as info:
        client(fake_linode.url).post("/linode/instances", {}, secrets=["hunter2-password"])
    assert TOKEN not in str(info.value.data)


def test_cancellation_between_retries(fake_lambda: FakeLambda) -> None:
    class Cancelled(Exception):
        pass

    calls = []

    def check() -> None:
        calls.append(1)
        if len(calls) > 1:
            raise Cancelled

    fake_lambda.fault("GET /instances", status=429, times=5)
    with pytest.raises(Cancelled):
        client(fake_lambda.url, sleep=Sleeps()).get("/instances", check=check)
    assert fake_lambda.count("GET", "/instances") == 1


def test_standalone_fake_servers() -> None:
    """`fake_clouds.py --lambda-port 0 --linode-port 0 --token T` as VS Code tests run it."""
    script = Path(__file__).with_name("fake_clouds.py")
    proc = subprocess.Popen(
        [sys.executable, str(script), "--lambda-port", "0", "--linode-port", "0", "--token", TOKEN],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        urls = json.loads(proc.stdout.readline())
        assert set(urls) == {"lambda", "linode"}
        assert "gpu_1x_a10" in client(urls["lambda"]).get("/instance-types")["data"]
        assert client(urls["linode"]).get("/linode/instances")["data"] == []
        admin = urls["lambda"].rsplit("/api/v1", 1)[0] + "/_admin/fault"
        fault = json.dumps({"endpoint": "GET /instances", "status": 500, "times": 2}).encode()
        urllib.request.urlopen(urllib.request.Request(admin, data=fault, method="POST"), timeout=5)
        with pytest.raises(ProviderError) as info:
            client(urls["lambda"], sleep=Sleeps()).get("/instances")
        assert info.value.kind == "ProviderUnavailable"
    finally:
        proc.terminate()
        proc.wait(10)
