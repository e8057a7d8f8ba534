"""LambdaProvider against the fake Lambda Cloud API."""

from __future__ import annotations

from typing import Any, Dict, Iterator, List

import pytest
from capture import Sleeps, captured_logs
from fake_clouds import FakeLambda

from gpu_workbench.vms.base import CreateRequest, ProviderError
from gpu_workbench.vms.lambda_cloud import LambdaProvider

TOKEN = "lambda-secret-key-abcdef0123456789"
CREDS = {"apiKey": TOKEN}
NEW_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAInew user@host"


@pytest.fixture
def cloud() -> Iterator[FakeLambda]:
    with FakeLambda(TOKEN) as fake:
        yield fake


@pytest.fixture
def logs() -> Iterator[List[str]]:
    with captured_logs() as lines:
        yield lines


def provider(cloud: FakeLambda, sleeps: Sleeps = None) -> LambdaProvider:  # type: ignore[assignment]
    p = LambdaProvider({"apiUrl": cloud.url})
    p.http_options = {"timeout": 0.5, "sleep": sleeps or Sleeps(), "retry_delay": 0.0}
    return p


def request(**kw: Any) -> CreateRequest:
    args: Dict[str, Any] = {
        "name": "train-1",
        "instance_type": "gpu_1x_a10",
        "region": "us-east-1",
        "ssh_public_key": NEW_KEY,
    }
    args.update(kw)
    return CreateRequest(**args)


def test_info() -> None:
    p = LambdaProvider()
    info = p.info({})
    assert info["name"] == "lambda" and info["displayName"] == "Lambda Cloud"
    assert info["capabilities"] == ["offerings", "create", "terminate"]
    assert info["credentialFields"] == ["apiKey"]
    assert info["available"] is False and info["configured"] is False
    assert "Set Provider Credentials" in info["reason"]
    assert p.info(CREDS)["available"] is True


def test_offerings(cloud: FakeLambda) -> None:
    offers = {o.instance_type: o for o in provider(cloud).offerings(CREDS, None)}
    a10 = offers["gpu_1x_a10"]
    assert a10.price_per_hour == 0.75 and a10.price_source == "api"
    assert a10.gpu_model == "A10" and a10.gpu_count == 1 and a10.gpu_memory_gib == 24.0
    assert a10.vcpus == 30 and a10.ram_gib == 200.0
    assert {"name": "us-east-1", "available": True} in a10.regions
    a100 = offers["gpu_8x_a100_80gb_sxm4"]
    assert a100.gpu_count == 8 and a100.price_per_hour == 14.32
    assert a100.regions and all(r["available"] is False for r in a100.regions)
    only = provider(cloud).offerings(CREDS, "us-west-1")
    assert all([r["name"] for r in o.regions] == ["us-west-1"] for o in only)


def test_offerings_zero_price_is_unknown(cloud: FakeLambda) -> None:
    cloud.types["gpu_1x_a10"]["instance_type"]["price_cents_per_hour"] = 0
    offers = {o.instance_type: o for o in provider(cloud).offerings(CREDS, None)}
    assert offers["gpu_1x_a10"].price_per_hour is None
    assert offers["gpu_1x_a10"].price_source == "unknown"


def test_offerings_wrong_shape(cloud: FakeLambda) -> None:
    cloud.fault("GET /instance-types", json={"data": {"x": {"instance_type": "nope"}}})
    with pytest.raises(ProviderError) as info:
        provider(cloud).offerings(CREDS, None)
    assert info.value.kind == "ProviderResponse"
    cloud.fault("GET /instance-types", json={"data": []})
    with pytest.raises(ProviderError) as info:
        provider(cloud).offerings(CREDS, None)
    assert info.value.kind == "ProviderResponse"


def test_create_uploads_key_and_lists(cloud: FakeLambda) -> None:
    p = provider(cloud)
    vm = p.create(CREDS, request())
    assert vm.state == "pending" and vm.price_per_hour == 0.75 and vm.managed
    assert vm.instance_type == "gpu_1x_a10" and vm.region == "us-east-1"
    uploaded = [k for k in cloud.ssh_keys if k["public_key"] == NEW_KEY]
    assert len(uploaded) == 1 and uploaded[0]["name"].startswith("gpu-workbench-")
    launch = next(r for r in cloud.requests if r["path"] == "/instance-operations/launch")
    assert launch["body"]["ssh_key_names"] == [uploaded[0]["name"]]
    assert launch["body"]["name"] == "train-1" and launch["body"]["quantity"] == 1
    # The same key (other comment) is reused, not uploaded again.
    p.create(CREDS, request(ssh_public_key=NEW_KEY.rsplit(" ", 1)[0] + " other@box"))
    assert len([k for k in cloud.ssh_keys if k["name"].startswith("gpu-workbench-")]) == 1
    vms = p.list(CREDS)
    assert len(vms) == 2
    listed = p.list(CREDS)[0]
    assert listed.state == "running" and listed.address and listed.ssh is not None
    assert listed.ssh.user == "ubuntu" and listed.ssh.host == listed.address
    assert listed.capabilities == ["terminate"]


def test_create_with_existing_key_name(cloud: FakeLambda) -> None:
    vm = provider(cloud).create(CREDS, request(ssh_public_key=None, ssh_key_name="laptop"))
    assert vm.id in cloud.instances
    assert cloud.count("GET", "/ssh-keys") == 0


def test_create_reuses_matching_key(cloud: FakeLambda) -> None:
    provider(cloud).create(CREDS, request(ssh_public_key="ssh-ed25519 AAAAexisting"))
    assert cloud.count("POST", "/ssh-keys") == 0
    launch = next(r for r in cloud.requests if r["path"] == "/instance-operations/launch")
    assert launch["body"]["ssh_key_names"] == ["laptop"]


def test_create_needs_a_key(cloud: FakeLambda) -> None:
    with pytest.raises(ProviderError) as info:
        provider(cloud).create(CREDS, request(ssh_public_key=None))
    assert info.value.kind == "ProviderRequest"


def test_create_checks_capacity_first(cloud: FakeLambda) -> None:
    with pytest.raises(ProviderError) as info:
        provider(cloud).create(CREDS, request(region="us-west-2"))
    assert info.value.kind == "ProviderQuota"
    assert "us-east-1" in str(info.value.hint)
    with pytest.raises(ProviderError) as info:
        provider(cloud).create(
            CREDS,
            CreateRequest("x", "gpu_8x_a100_80gb_sxm4", "us-east-1", ssh_public_key=NEW_KEY),
        )
    assert info.value.kind == "ProviderQuota"
    with pytest.raises(ProviderError) as info:
        provider(cloud).create(CREDS, request(instance_type="gpu_9x_nope"))
    assert info.value.kind == "ProviderRequest"
    assert cloud.count("POST", "/instance-operations/launch") == 0
    assert cloud.count("POST", "/ssh-keys") == 0


def test_create_unsupported_options(cloud: FakeLambda) -> None:
    for kw in ({"spot": True}, {"image": "ubuntu"}, {"startup_script": "echo"}):
        with pytest.raises(ProviderError) as info:
            provider(cloud).create(CREDS, request(**kw))
        assert info.value.kind == "Unsupported"
    assert cloud.requests == []


def test_launch_rate_limit_backoff(cloud: FakeLambda) -> None:
    sleeps = Sleeps()
    p = provider(cloud, sleeps)
    assert p.launch_backoff == 10.0  # production default
    p.launch_backoff = 0.01
    cloud.fault("POST /instance-operations/launch", status=429, times=2)
    vm = p.create(CREDS, request())
    assert vm.id in cloud.instances
    assert sleeps.calls == [0.01, 0.02]
    assert cloud.count("POST", "/instance-operations/launch") == 3


def test_launch_rate_limit_exhausted(cloud: FakeLambda) -> None:
    p = provider(cloud)
    p.launch_backoff = 0.01
    p.http_options["rate_limit_retries"] = 2
    cloud.fault("POST /instance-operations/launch", status=429, times=5)
    with pytest.raises(ProviderError) as info:
        p.create(CREDS, request())
    assert info.value.kind == "ProviderRateLimited"
    assert cloud.instances == {}


def test_no_orphan_when_a_step_after_launch_fails(cloud: FakeLambda) -> None:
    cloud.fault("GET /instances/{id}", status=500, times=2)
    with pytest.raises(ProviderError) as info:
        provider(cloud).create(CREDS, request())
    assert info.value.kind == "ProviderUnavailable"
    assert len(cloud.instances) == 1
    assert all(i["status"] == "terminated" for i in cloud.instances.values())


def test_no_orphan_when_launch_answer_is_odd(cloud: FakeLambda) -> None:
    cloud.fault("GET /instances/{id}", json={"data": {"id": 5}})
    with pytest.raises(ProviderError) as info:
        provider(cloud).create(CREDS, request())
    assert info.value.kind == "ProviderResponse"
    assert all(i["status"] == "terminated" for i in cloud.instances.values())


def test_terminate(cloud: FakeLambda) -> None:
    p = provider(cloud)
    vm = p.create(CREDS, request())
    gone = p.terminate(CREDS, vm.id)
    assert gone.state == "terminated" and gone.capabilities == [] and gone.price_per_hour == 0.75
    assert cloud.instances[vm.id]["status"] == "terminated"
    with pytest.raises(ProviderError) as info:
        p.terminate(CREDS, "doesnotexist")
    assert info.value.kind == "NotFound"


def test_stop_and_start_unsupported(cloud: FakeLambda) -> None:
    for op in (provider(cloud).stop, provider(cloud).start):
        with pytest.raises(ProviderError) as info:
            op(CREDS, "x")
        assert info.value.kind == "Unsupported"


def test_status_mapping(cloud: FakeLambda) -> None:
    for status, state in [
        ("active", "running"),
        ("booting", "pending"),
        ("unhealthy", "unknown"),
        ("terminated", "terminated"),
        ("weird", "unknown"),
    ]:
        inst = cloud.add_instance("gpu_1x_a10", "us-east-1", "n", "laptop")
        inst["status"] = status
        vm = provider(cloud).refresh(CREDS, inst["id"])
        assert vm.state == state
        if status == "unhealthy":
            assert vm.detail and "unhealthy" in vm.detail


@pytest.mark.parametrize(
    "fault",
    [
        {"status": 401},
        {"status": 500, "times": 2},
        {"delay": 1.5},
        {"body": "{not json"},
        {"json": {"data": "nope"}},
        {"json": {"data": [{"id": 1}]}},
    ],
)
def test_list_errors_never_leak_token(cloud: FakeLambda, logs: List[str], fault: dict) -> None:
    cloud.fault("GET /instances", **fault)
    with pytest.raises(ProviderError) as info:
        provider(cloud).list(CREDS)
    assert info.value.kind in (
        "ProviderAuth",
        "ProviderUnavailable",
        "ProviderResponse",
    )
    for text in [str(info.value.data), info.value.message, *logs]:
        assert TOKEN not in text


def test_wrong_key(cloud: FakeLambda) -> None:
    with pytest.raises(ProviderError) as info:
        provider(cloud).list({"apiKey": "nope-nope-nope"})
    assert info.value.kind == "ProviderAuth"
    assert "Set Provider Credentials" in str(info.value.hint)
