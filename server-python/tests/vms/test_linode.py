"""LinodeProvider against the fake Linode API v4."""

from __future__ import annotations

import base64
import calendar
from typing import Any, Dict, Iterator, List

import pytest
from capture import captured_logs
from fake_clouds import FakeLinode

from gpu_workbench.vms.base import CreateRequest, ProviderError
from gpu_workbench.vms.linode import (
    LinodeProvider,
    decode_tags,
    encode_tags,
    hourly_price,
    root_password,
    sanitize_label,
)

TOKEN = "linode-secret-token-fedcba9876543210"
CREDS = {"apiToken": TOKEN}
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIkey user@host"


@pytest.fixture
def cloud() -> Iterator[FakeLinode]:
    with FakeLinode(TOKEN) as fake:
        yield fake


@pytest.fixture
def logs() -> Iterator[List[str]]:
    with captured_logs() as lines:
        yield lines


def provider(cloud: FakeLinode) -> LinodeProvider:
    p = LinodeProvider({"apiUrl": cloud.url})
    p.http_options = {"timeout": 0.5, "sleep": lambda s: None, "retry_delay": 0.0}
    return p


def request(**kw: Any) -> CreateRequest:
    args: Dict[str, Any] = {
        "name": "train run #1",
        "instance_type": "g1-gpu-rtx6000-1",
        "region": "us-southeast",
        "ssh_public_key": KEY,
    }
    args.update(kw)
    return CreateRequest(**args)


# ---- helpers ----


def test_sanitize_label() -> None:
    assert sanitize_label("train run #1") == "train-run-1"
    assert sanitize_label("--a__b..c--") == "a_b.c"
    assert sanitize_label("x") == "gpu-workbench-x"
    assert sanitize_label("") == "gpu-workbench"
    assert sanitize_label("日本語") == "gpu-workbench"
    long = sanitize_label("a" * 63 + "-" + "b" * 10)
    assert len(long) <= 64 and long[-1].isalnum()


def test_root_password_is_strong_and_random() -> None:
    a, b = root_password(), root_password()
    assert a != b and len(a) == 40
    assert any(c.isupper() for c in a) and any(c.islower() for c in a)
    assert any(c.isdigit() for c in a)


def test_tags_roundtrip() -> None:
    assert encode_tags({"gpu-workbench": "1", "team": "ml"}) == ["gpu-workbench", "team=ml"]
    assert encode_tags({"x": ""}) == ["gpu-workbench", "x"]
    assert decode_tags(["gpu-workbench", "team=ml", 3]) == {"gpu-workbench": "1", "team": "ml"}


def test_hourly_price_resolution() -> None:
    entry = {"price": {"hourly": 0.0}, "region_prices": [{"id": "us-ord", "hourly": 0.52}]}
    assert hourly_price(entry, "us-ord") == 0.52
    assert hourly_price(entry, "us-east") is None  # $0 base price means unknown
    assert hourly_price(entry, None) is None
    assert hourly_price({"price": {"hourly": 1.5}, "region_prices": []}, "x") == 1.5


# ---- provider ----


def test_info() -> None:
    info = LinodeProvider().info({})
    assert info["name"] == "linode" and info["displayName"] == "Linode (Akamai)"
    assert info["capabilities"] == ["offerings", "create", "start", "stop", "terminate"]
    assert info["credentialFields"] == ["apiToken"]
    assert info["stopKeepsBilling"] is True
    assert "A powered-off Linode is still billed; only Delete stops billing" in info["notes"]
    assert info["available"] is False


def test_offerings(cloud: FakeLinode) -> None:
    offers = {o.instance_type: o for o in provider(cloud).offerings(CREDS, None)}
    assert set(offers) == {"g1-gpu-rtx6000-1", "g2-gpu-rtx4000a1-s"}  # class gpu only
    rtx = offers["g1-gpu-rtx6000-1"]
    assert rtx.price_per_hour == 1.5 and rtx.gpu_model == "RTX6000" and rtx.gpu_count == 1
    assert rtx.ram_gib == 32.0 and rtx.vcpus == 8
    assert [r["name"] for r in rtx.regions] == ["us-southeast", "us-ord"]
    assert all(r["available"] is None for r in rtx.regions)
    ada = offers["g2-gpu-rtx4000a1-s"]
    assert ada.price_per_hour is None and ada.price_source == "unknown"  # $0: never free
    regional = {o.instance_type: o for o in provider(cloud).offerings(CREDS, "us-ord")}
    assert regional["g2-gpu-rtx4000a1-s"].price_per_hour == 0.52
    assert [r["name"] for r in regional["g2-gpu-rtx4000a1-s"].regions] == ["us-ord"]
    # Types and regions are public: no token sent... and a bad token does not matter.
    assert provider(cloud).offerings({"apiToken": "bad-bad-bad"}, "us-southeast")


def test_list_paginates_and_maps(cloud: FakeLinode) -> None:
    cloud.max_page_size = 25
    for i in range(30):
        cloud.add_instance(label="vm%d" % i, status="running", tags=["gpu-workbench"])
    inst = cloud.add_instance(label="other", status="offline", region="us-ord")
    vms = provider(cloud).list(CREDS)
    assert len(vms) == 31
    assert cloud.count("GET", "/linode/instances") == 2
    other = next(v for v in vms if v.id == str(inst["id"]))
    assert other.state == "stopped" and other.capabilities == ["start", "terminate"]
    assert other.stop_keeps_billing and not other.managed
    assert other.address and other.address.startswith("45.79.")  # public, not 192.168
    assert other.ssh is not None and other.ssh.user == "root"
    assert other.price_per_hour == 1.5 and other.launched_at == calendar.timegm(
        (2026, 11, 20, 10, 0, 0)
    )
    assert vms[0].managed and vms[0].state == "running"


def test_list_without_types_has_unknown_prices(cloud: FakeLinode) -> None:
    cloud.add_instance(status="running")
    cloud.fault("GET /linode/types", status=500, times=2)
    vms = provider(cloud).list(CREDS)
    assert len(vms) == 1 and vms[0].price_per_hour is None and vms[0].gpu_count == 1


def test_status_mapping(cloud: FakeLinode) -> None:
    p = provider(cloud)
    for status, state in [
        ("running", "running"),
        ("offline", "stopped"),
        ("booting", "pending"),
        ("provisioning", "pending"),
        ("shutting_down", "stopping"),
        ("deleting", "terminated"),
        ("mystery", "unknown"),
    ]:
        inst = cloud.add_instance(status=status)
        vm = p.refresh(CREDS, str(inst["id"]))
        assert vm.state == state, status


def test_create(cloud: FakeLinode, logs: List[str]) -> None:
    reports: List[str] = []
    vm = provider(cloud).create(
        CREDS,
        request(startup_script="#!/bin/sh\necho hi\n", tags={"team": "ml"}),
        report=reports.append,
    )
    body = cloud.created_bodies[0]
    assert body["type"] == "g1-gpu-rtx6000-1" and body["region"] == "us-southeast"
    assert body["image"] == "linode/ubuntu22.04" and body["label"] == "train-run-1"
    assert body["authorized_keys"] == [KEY] and body["booted"] is True
    assert body["tags"] == ["gpu-workbench", "team=ml"]
    assert base64.b64decode(body["metadata"]["user_data"]) == b"#!/bin/sh\necho hi\n"
    password = body["root_pass"]
    assert len(password) >= 20
    for text in [*logs, *reports, str(vm.to_json())]:
        assert password not in text and TOKEN not in text
    assert vm.state == "pending" and vm.managed and vm.price_per_hour == 1.65
    assert vm.tags == {"gpu-workbench": "1", "team": "ml"}


def test_create_with_profile_key_name(cloud: FakeLinode) -> None:
    provider(cloud).create(CREDS, request(ssh_public_key=None, ssh_key_name="laptop"))
    assert cloud.created_bodies[0]["authorized_keys"] == ["ssh-ed25519 AAAAprofile me@laptop"]
    with pytest.raises(ProviderError) as info:
        provider(cloud).create(CREDS, request(ssh_public_key=None, ssh_key_name="nope"))
    assert info.value.kind == "ProviderRequest"
    with pytest.raises(ProviderError) as info:
        provider(cloud).create(CREDS, request(ssh_public_key=None))
    assert info.value.kind == "ProviderRequest"
    with pytest.raises(ProviderError) as info:
        provider(cloud).create(CREDS, request(spot=True))
    assert info.value.kind == "Unsupported"
    assert len(cloud.created_bodies) == 1


def test_create_invalid_request(cloud: FakeLinode) -> None:
    with pytest.raises(ProviderError) as info:
        provider(cloud).create(CREDS, request(instance_type="g9-nope"))
    assert info.value.kind == "ProviderRequest"
    assert "type: A valid plan type by that ID was not found" in info.value.message
    assert cloud.instances == {}


def test_create_password_never_in_errors(cloud: FakeLinode, logs: List[str]) -> None:
    cloud.fault("POST /linode/instances", status=400, echo_token=True)
    with pytest.raises(ProviderError) as info:
        provider(cloud).create(CREDS, request())
    assert TOKEN not in str(info.value.data) and TOKEN not in info.value.message
    assert all(TOKEN not in line for line in logs)


def test_no_orphan_when_create_answer_is_odd(cloud: FakeLinode) -> None:
    # The instance is made but its record comes back wrong-shaped: it must be deleted.
    original = cloud._create

    def odd(body: Any) -> Any:
        status, inst = original(body)
        return status, {**inst, "ipv4": "not-a-list"}

    cloud._create = odd  # type: ignore[method-assign]
    reports: List[str] = []
    with pytest.raises(ProviderError) as info:
        provider(cloud).create(CREDS, request(), report=reports.append)
    assert info.value.kind == "ProviderResponse"
    assert len(cloud.created_bodies) == 1 and cloud.instances == {}
    assert any("deleting" in r for r in reports)


def test_create_without_id_is_response_error(cloud: FakeLinode) -> None:
    cloud.fault("POST /linode/instances", json={"label": "x"})
    with pytest.raises(ProviderError) as info:
        provider(cloud).create(CREDS, request())
    assert info.value.kind == "ProviderResponse"


def test_boot_shutdown_delete(cloud: FakeLinode) -> None:
    p = provider(cloud)
    vm = p.create(CREDS, request())
    assert p.refresh(CREDS, vm.id).state == "pending"  # provisioning -> running next read
    stopped = p.stop(CREDS, vm.id)
    assert stopped.state == "stopping" and stopped.stop_keeps_billing
    assert stopped.detail and "billed" in stopped.detail
    assert p.refresh(CREDS, vm.id).state == "stopped"
    assert p.start(CREDS, vm.id).state == "pending"
    assert p.refresh(CREDS, vm.id).state == "running"
    gone = p.terminate(CREDS, vm.id)
    assert gone.state == "terminated" and gone.capabilities == []
    assert cloud.instances == {}
    assert cloud.count("DELETE", "/linode/instances/%s" % vm.id) == 1
    with pytest.raises(ProviderError) as info:
        p.terminate(CREDS, vm.id)
    assert info.value.kind == "NotFound"
    with pytest.raises(ProviderError) as info:
        p.start(CREDS, "../x")
    assert info.value.kind == "NotFound"


def test_boot_running_is_request_error(cloud: FakeLinode) -> None:
    inst = cloud.add_instance(status="running")
    with pytest.raises(ProviderError) as info:
        provider(cloud).start(CREDS, str(inst["id"]))
    assert info.value.kind == "ProviderRequest"
    assert "already running" in info.value.message


def test_429_then_success(cloud: FakeLinode) -> None:
    cloud.add_instance(status="running")
    sleeps: List[float] = []
    p = provider(cloud)
    p.http_options["sleep"] = sleeps.append
    cloud.fault("GET /linode/instances", status=429, retry_after="0.01")
    assert len(p.list(CREDS)) == 1
    assert sleeps == [0.01]


@pytest.mark.parametrize(
    "fault, kind",
    [
        ({"status": 401}, "ProviderAuth"),
        ({"status": 403}, "ProviderAuth"),
        ({"status": 429, "times": 9}, "ProviderRateLimited"),
        ({"status": 500, "times": 2}, "ProviderUnavailable"),
        ({"delay": 1.5}, "ProviderUnavailable"),
        ({"body": "<html>"}, "ProviderResponse"),
        ({"json": {"data": {}}}, "ProviderResponse"),
        ({"json": {"data": [{"id": "x", "status": "running"}], "pages": 1}}, "ProviderResponse"),
        ({"json": {"data": [5], "pages": 1}}, "ProviderResponse"),
    ],
)
def test_list_errors(cloud: FakeLinode, logs: List[str], fault: Dict[str, Any], kind: str) -> None:
    cloud.fault("GET /linode/instances", **fault)
    p = provider(cloud)
    p.http_options["rate_limit_retries"] = 2
    with pytest.raises(ProviderError) as info:
        p.list(CREDS)
    assert info.value.kind == kind
    for text in [str(info.value.data), info.value.message, *logs]:
        assert TOKEN not in text
