"""AwsProvider against moto's EC2 server on loopback: real boto3 HTTP calls, no stubs."""

from __future__ import annotations

import importlib.abc
import json
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Dict, Iterator, List, Optional

import pytest

from gpu_workbench.errors import RequestCancelled
from gpu_workbench.vms import aws
from gpu_workbench.vms.aws import AwsProvider, key_pair_name, map_error, parse_price_list
from gpu_workbench.vms.base import CreateRequest, ProviderError

boto3: Any = pytest.importorskip("boto3")
moto_server: Any = pytest.importorskip("moto.server")

REGION = "us-east-1"


@pytest.fixture(scope="module")
def moto_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    # moto's ~40 built-in AMIs only (incl. a Deep Learning AMI for Ubuntu): MOTO_AMIS_PATH
    # also skips its ~1100 per-region "latest" AMIs, which take seconds to load per reset.
    from moto.ec2.models import amis

    path = tmp_path_factory.mktemp("moto") / "amis.json"
    path.write_text(json.dumps(amis.AMIS, default=str))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MOTO_AMIS_PATH", str(path))
        server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        host, port = server.get_host_and_port()
        try:
            yield "http://%s:%d" % (host, port)
        finally:
            server.stop()


@pytest.fixture()
def url(moto_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> str:
    urllib.request.urlopen(urllib.request.Request(moto_url + "/moto-api/reset", method="POST"))
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    with aws._lock:
        aws._region_of.clear()
        aws._created_regions.clear()
        aws._pricing.clear()
    return moto_url


def provider(url: str, **extra: Any) -> AwsProvider:
    settings: Dict[str, Any] = {
        "endpointUrl": url,
        "regions": [REGION],
        "pollSeconds": 0.05,
        "cleanupWaitSeconds": 2,
    }
    settings.update(extra)
    return AwsProvider(settings)


_clients: Dict[str, Any] = {}


def ec2(url: str) -> Any:
    """A plain boto3 client to look at moto's state (cached: clients take a while to build)."""
    if url not in _clients:
        _clients[url] = boto3.client(
            "ec2",
            region_name=REGION,
            endpoint_url=url,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
    return _clients[url]


def public_key() -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    data = key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    return data.decode("ascii") + " me@laptop"


def our_groups(url: str) -> List[Dict[str, Any]]:
    groups = ec2(url).describe_security_groups()["SecurityGroups"]
    return [g for g in groups if g["GroupName"] == aws.SECURITY_GROUP]


def our_keys(url: str) -> List[str]:
    return [
        k["KeyName"]
        for k in ec2(url).describe_key_pairs()["KeyPairs"]
        if k["KeyName"].startswith(aws.KEY_PREFIX)
    ]


def live_instances(url: str) -> List[Dict[str, Any]]:
    out = []
    for r in ec2(url).describe_instances()["Reservations"]:
        for i in r["Instances"]:
            if i["State"]["Name"] not in ("terminated", "shutting-down"):
                out.append(i)
    return out


# ---- offerings and info ----


def test_info_declares_capabilities(url: str) -> None:
    info = provider(url).info({})
    assert info["name"] == "aws" and info["displayName"] == "AWS EC2"
    assert info["available"] is True and info["configured"] is True
    assert set(info["capabilities"]) == {
        "offerings",
        "create",
        "start",
        "stop",
        "terminate",
        "spot",
    }
    assert info["credentialFields"] == []
    assert info["stopKeepsBilling"] is False
    assert any("EBS" in n for n in info["notes"])
    assert any("spot" in n.lower() and "stop" in n for n in info["notes"])


def test_unknown_profile_is_unavailable(url: str) -> None:
    reason = provider(url).availability({"profile": "nope"})
    assert reason is not None and "aws configure --profile nope" in reason


def test_offerings(url: str) -> None:
    offers = {o.instance_type: o for o in provider(url).offerings({}, None)}
    g5 = offers["g5.xlarge"]
    assert g5.gpu_model == "NVIDIA A10G" and g5.gpu_count == 1 and g5.gpu_memory_gib == 24
    assert g5.vcpus == 4 and g5.ram_gib == 16
    # moto has no Pricing API: the table answers and says so.
    assert g5.price_per_hour == pytest.approx(1.006)
    assert g5.price_source == "table 2026-11-01"
    assert g5.spot_price_per_hour is not None and g5.spot_price_per_hour > 0
    assert g5.regions == [{"name": REGION, "available": True}]
    assert offers["p5.48xlarge"].price_per_hour == pytest.approx(55.04)
    assert offers["p5.48xlarge"].gpu_count == 8
    unknown = offers["g6e.48xlarge"]
    assert unknown.price_per_hour is None and unknown.price_source == "unknown"
    assert {"g4dn.xlarge", "g6.xlarge", "p3.2xlarge", "p4d.24xlarge"} <= set(offers)
    as_json = g5.to_json()
    assert as_json["priceSource"] == "table 2026-11-01"


def price_entry(itype: str, usd: str) -> str:
    return json.dumps(
        {
            "product": {"attributes": {"instanceType": itype, "regionCode": REGION}},
            "terms": {
                "OnDemand": {
                    "T": {"priceDimensions": {"D": {"unit": "Hrs", "pricePerUnit": {"USD": usd}}}}
                }
            },
        }
    )


@pytest.fixture()
def pricing_url() -> Iterator[Dict[str, Any]]:
    """A loopback stand-in for the Pricing API (moto has none): two pages of products."""
    seen: Dict[str, Any] = {"requests": []}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            seen["requests"].append((self.headers.get("X-Amz-Target"), body))
            if body.get("NextToken") == "page2":
                answer = {
                    "FormatVersion": "aws_v1",
                    "PriceList": [price_entry("p5.48xlarge", "50")],
                }
            else:
                answer = {
                    "FormatVersion": "aws_v1",
                    "PriceList": [
                        price_entry("g5.xlarge", "1.1"),
                        price_entry("g6e.48xlarge", "30"),
                    ],
                    "NextToken": "page2",
                }
            data = json.dumps(answer).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/x-amz-json-1.1")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    seen["url"] = "http://127.0.0.1:%d" % server.server_address[1]
    try:
        yield seen
    finally:
        server.shutdown()
        server.server_close()


def test_offerings_priced_by_the_pricing_api(url: str, pricing_url: Dict[str, Any]) -> None:
    p = provider(url, pricingEndpointUrl=pricing_url["url"])
    offers = {o.instance_type: o for o in p.offerings({}, None)}
    assert offers["g5.xlarge"].price_per_hour == pytest.approx(1.1)
    assert offers["g5.xlarge"].price_source == "api"
    assert offers["g6e.48xlarge"].price_per_hour == pytest.approx(30)
    assert offers["p5.48xlarge"].price_per_hour == pytest.approx(50)  # from the second page
    assert offers["g4dn.xlarge"].price_source == "table 2026-11-01"  # not in the answer
    target, body = pricing_url["requests"][0]
    assert target == "AWSPriceListService.GetProducts" and body["ServiceCode"] == "AmazonEC2"
    # The on-demand Linux filter set of AWS's own GetProducts examples (pulumi/terraform
    # aws_pricing_product docs), with regionCode for location.
    assert {f["Type"] for f in body["Filters"]} == {"TERM_MATCH"}
    assert {f["Field"]: f["Value"] for f in body["Filters"]} == {
        "regionCode": REGION,
        "operatingSystem": "Linux",
        "tenancy": "Shared",
        "preInstalledSw": "NA",
        "capacitystatus": "Used",
        "licenseModel": "No License required",
        "instanceFamily": "GPU instance",
    }
    # Cached: a second call does not ask again; list prices on-demand VMs from it.
    p.offerings({}, None)
    assert len(pricing_url["requests"]) == 2
    vm = p.create({}, CreateRequest("priced", "g5.xlarge", REGION))
    assert vm.price_per_hour == pytest.approx(1.1)


def test_offerings_for_one_region(url: str) -> None:
    offers = provider(url).offerings({}, "us-west-2")
    assert offers and all(o.regions[0]["name"] == "us-west-2" for o in offers)
    with pytest.raises(ProviderError) as info:
        provider(url).offerings({}, "Mars")
    assert info.value.kind == "ProviderRequest"


def test_parse_price_list() -> None:
    entry = {
        "product": {"attributes": {"instanceType": "g5.xlarge", "regionCode": "us-east-1"}},
        "terms": {
            "OnDemand": {
                "X.Y": {
                    "priceDimensions": {
                        "X.Y.Z": {"unit": "Hrs", "pricePerUnit": {"USD": "1.0060000000"}}
                    }
                }
            }
        },
    }
    zero = json.loads(json.dumps(entry))
    zero["product"]["attributes"]["instanceType"] = "g5.2xlarge"
    zero["terms"]["OnDemand"]["X.Y"]["priceDimensions"]["X.Y.Z"]["pricePerUnit"]["USD"] = "0"
    prices = parse_price_list([json.dumps(entry), json.dumps(zero)])
    assert prices == {"g5.xlarge": pytest.approx(1.006)}


def test_parse_price_list_real_shape() -> None:
    """A PriceList string as GetProducts returns it (shape of the AWS CLI get-products example)."""
    product = {
        "product": {
            "productFamily": "Compute Instance",
            "attributes": {
                "instanceType": "g6.xlarge",
                "regionCode": "us-east-1",
                "operatingSystem": "Linux",
                "tenancy": "Shared",
                "preInstalledSw": "NA",
                "capacitystatus": "Used",
                "instanceFamily": "GPU instance",
                "usagetype": "BoxUsage:g6.xlarge",
                "operation": "RunInstances",
            },
            "sku": "ABCDEFGH12345678",
        },
        "serviceCode": "AmazonEC2",
        "terms": {
            "OnDemand": {
                "ABCDEFGH12345678.JRTCKXETXF": {
                    "priceDimensions": {
                        "ABCDEFGH12345678.JRTCKXETXF.6YS6EN2CT7": {
                            "unit": "Hrs",
                            "endRange": "Inf",
                            "description": "$0.8048 per On Demand Linux g6.xlarge Instance Hour",
                            "appliesTo": [],
                            "rateCode": "ABCDEFGH12345678.JRTCKXETXF.6YS6EN2CT7",
                            "beginRange": "0",
                            "pricePerUnit": {"USD": "0.8048000000"},
                        }
                    },
                    "sku": "ABCDEFGH12345678",
                    "effectiveDate": "2026-11-01T00:00:00Z",
                    "offerTermCode": "JRTCKXETXF",
                    "termAttributes": {},
                }
            },
            "Reserved": {},
        },
        "version": "20261101000000",
        "publicationDate": "2026-11-01T00:00:00Z",
    }
    storage = json.loads(json.dumps(product))
    storage["product"]["attributes"]["instanceType"] = "g6.2xlarge"
    dim = storage["terms"]["OnDemand"]["ABCDEFGH12345678.JRTCKXETXF"]["priceDimensions"]
    next(iter(dim.values()))["unit"] = "GB-Mo"  # not an hourly price: ignored
    assert parse_price_list([json.dumps(product), json.dumps(storage)]) == {
        "g6.xlarge": pytest.approx(0.8048)
    }


def test_spot_history_request() -> None:
    seen: Dict[str, Any] = {}

    class Pager:
        def paginate(self, **kwargs: Any) -> List[Dict[str, Any]]:
            seen.update(kwargs)
            item = {"InstanceType": "g5.xlarge", "AvailabilityZone": "a", "SpotPrice": "0.4"}
            return [{"SpotPriceHistory": [item]}]

    class FakeEc2:
        def get_paginator(self, name: str) -> Pager:
            seen["operation"] = name
            return Pager()

    history = AwsProvider({})._spot_history(FakeEc2(), ["g5.xlarge"])
    assert history and seen["operation"] == "describe_spot_price_history"
    # Valid ProductDescriptions values per the EC2 API reference; StartTime=now returns the
    # price in effect now (the last change before the start time) for each zone.
    assert seen["ProductDescriptions"] == ["Linux/UNIX", "Linux/UNIX (Amazon VPC)"]
    assert seen["InstanceTypes"] == ["g5.xlarge"] and abs(seen["StartTime"] - time.time()) < 60


def test_latest_spot_price_per_zone() -> None:
    import datetime

    t0 = datetime.datetime(2026, 11, 1, tzinfo=datetime.timezone.utc)
    t1 = datetime.datetime(2026, 11, 2, tzinfo=datetime.timezone.utc)
    history = [
        {"InstanceType": "g5.xlarge", "AvailabilityZone": "a", "SpotPrice": "0.9", "Timestamp": t0},
        {"InstanceType": "g5.xlarge", "AvailabilityZone": "a", "SpotPrice": "0.5", "Timestamp": t1},
        {"InstanceType": "g5.xlarge", "AvailabilityZone": "b", "SpotPrice": "0.4", "Timestamp": t0},
    ]
    assert aws.latest_spot_prices(history) == {"g5.xlarge": 0.4}
    assert aws.latest_spot_by_zone(history) == {("g5.xlarge", "a"): 0.5, ("g5.xlarge", "b"): 0.4}


def test_default_image_prefers_current_pytorch_dlami() -> None:
    """The DescribeImages call and the ranking of what it returns (names from the DLAMI notes)."""
    calls: List[Dict[str, Any]] = []

    def image(name: str, date: str, ident: str) -> Dict[str, Any]:
        return {"ImageId": ident, "Name": name, "CreationDate": date, "State": "available"}

    class FakeEc2:
        def __init__(self, images: List[Dict[str, Any]]) -> None:
            self.images = images

        def describe_images(self, **kwargs: Any) -> Dict[str, Any]:
            calls.append(kwargs)
            return {"Images": self.images if kwargs.get("Owners") == ["amazon"] else []}

    base22 = "Deep Learning Base OSS Nvidia Driver GPU AMI (Ubuntu 22.04) 20261006"
    images = [
        image(base22, "2026-10-06T00:00:00.000Z", "ami-base22"),
        image(
            "Deep Learning OSS Nvidia Driver AMI GPU PyTorch 2.7 (Ubuntu 22.04) 20250901",
            "2025-09-01T00:00:00.000Z",
            "ami-pt22",
        ),
        image(
            "Deep Learning OSS Nvidia Driver AMI GPU PyTorch 2.9 (Ubuntu 24.04) 20260103",
            "2026-01-03T00:00:00.000Z",
            "ami-pt29",
        ),
        image(
            "Deep Learning OSS Nvidia Driver AMI GPU PyTorch 2.10 (Ubuntu 24.04) 20261009",
            "2026-10-09T00:00:00.000Z",
            "ami-pt210",
        ),
    ]
    p = AwsProvider({})
    ident, name, _root = p._image(FakeEc2(images), None)
    assert ident == "ami-pt210" and "(Ubuntu 24.04)" in name
    assert calls[0]["Owners"] == ["amazon"]
    filters = {f["Name"]: f["Values"] for f in calls[0]["Filters"]}
    assert filters["architecture"] == ["x86_64"] and filters["name"] == aws.DLAMI_PATTERNS
    # Without a PyTorch DLAMI the Base one is next; without any, Canonical's Ubuntu.
    assert p._image(FakeEc2(images[:1]), None)[0] == "ami-base22"
    calls.clear()
    with pytest.raises(ProviderError):
        p._image(FakeEc2([]), None)
    assert calls[-1]["Owners"] == [aws.UBUNTU_OWNER]


# ---- create, list, lifecycle ----


def test_create_on_demand_list_stop_start_terminate(url: str) -> None:
    p = provider(url, identityFiles={})
    key = public_key()
    messages: List[str] = []
    request = CreateRequest(
        "trainer",
        "g5.xlarge",
        REGION,
        disk_gib=150,
        ssh_public_key=key,
        tags={"project": "llm"},
        startup_script="#!/bin/bash\necho hi\n",
    )
    vm = p.create({}, request, report=messages.append)
    assert vm.id.startswith("i-") and vm.state == "running"
    assert any("Launching on-demand g5.xlarge" in m for m in messages)
    assert any("Importing SSH key" in m for m in messages)

    client = ec2(url)
    # The key was imported under its hash name; the group opens tcp/22 only.
    assert our_keys(url) == [key_pair_name(key)]
    (group,) = our_groups(url)
    perms = group["IpPermissions"]
    assert [(x["IpProtocol"], x["FromPort"], x["ToPort"]) for x in perms] == [("tcp", 22, 22)]
    inst = client.describe_instances(InstanceIds=[vm.id])["Reservations"][0]["Instances"][0]
    assert inst["KeyName"] == key_pair_name(key)
    assert [g["GroupId"] for g in inst["SecurityGroups"]] == [group["GroupId"]]
    user_data = client.describe_instance_attribute(InstanceId=vm.id, Attribute="userData")
    assert user_data["UserData"]["Value"]  # base64 of the script
    volumes = client.describe_volumes()["Volumes"]
    assert any(v["Size"] == 150 for v in volumes)

    (listed,) = [v for v in p.list({}) if v.id == vm.id]
    assert listed.name == "trainer"
    assert listed.tags["project"] == "llm" and listed.tags["gpu-workbench"] == "1"
    assert listed.managed
    assert listed.gpu_model == "NVIDIA A10G" and listed.gpu_count == 1
    assert listed.price_per_hour == pytest.approx(1.006)
    assert listed.region == REGION and not listed.spot
    assert listed.launched_at is not None and listed.launched_at > 0
    assert listed.address
    assert listed.ssh is not None and listed.ssh.user == "ubuntu" and listed.ssh.port == 22
    assert set(listed.capabilities) == {"stop", "terminate"}
    assert listed.detail is not None and "key pair %s" % key_pair_name(key) in listed.detail
    assert listed.to_json()["stopKeepsBilling"] is False

    stopped = p.stop({}, vm.id)
    assert stopped.state in ("stopping", "stopped")
    stopped = p.refresh({}, vm.id)
    assert stopped.state == "stopped" and set(stopped.capabilities) == {"start", "terminate"}
    assert stopped.detail is not None and "EBS" in stopped.detail
    started = p.start({}, vm.id)
    assert started.state in ("pending", "running")
    gone = p.terminate({}, vm.id)
    assert gone.state == "terminated" and gone.capabilities == []
    # Terminating again is a no-op.
    assert p.terminate({}, vm.id).state == "terminated"


def test_create_spot(url: str) -> None:
    p = provider(url, sshUser="me", identityFile="/keys/me.pem")
    client = ec2(url)
    client.import_key_pair(KeyName="mine", PublicKeyMaterial=public_key().encode())
    vm = p.create({}, CreateRequest("cheap", "g4dn.xlarge", REGION, spot=True, ssh_key_name="mine"))
    assert vm.spot and vm.state == "running"
    inst = client.describe_instances(InstanceIds=[vm.id])["Reservations"][0]["Instances"][0]
    assert inst.get("InstanceLifecycle") == "spot" and inst["KeyName"] == "mine"
    (listed,) = [v for v in p.list({}) if v.id == vm.id]
    assert listed.spot and listed.capabilities == ["terminate"]
    assert listed.price_per_hour is not None and listed.price_per_hour > 0  # latest spot price
    assert listed.ssh is not None and listed.ssh.user == "me"
    assert listed.ssh.identity_file == "/keys/me.pem"
    assert our_keys(url) == []  # an existing key pair was used, nothing imported
    with pytest.raises(ProviderError) as info:
        p.stop({}, vm.id)
    assert info.value.kind == "Unsupported"
    assert p.terminate({}, vm.id).state == "terminated"


def test_list_skips_non_gpu_instances_unless_asked(url: str) -> None:
    client = ec2(url)
    image = client.describe_images(Owners=["amazon"], MaxResults=5)["Images"][0]["ImageId"]
    client.run_instances(ImageId=image, InstanceType="t3.micro", MinCount=1, MaxCount=1)
    gpu = client.run_instances(ImageId=image, InstanceType="p3.2xlarge", MinCount=1, MaxCount=1)
    gpu_id = gpu["Instances"][0]["InstanceId"]
    listed = provider(url).list({})
    assert [v.id for v in listed] == [gpu_id]
    assert not listed[0].managed and listed[0].name == gpu_id
    assert listed[0].price_per_hour is None  # no figure in the table, Pricing API absent
    assert len(provider(url, listAll=True).list({})) == 2


def test_unknown_instance_is_not_found(url: str) -> None:
    with pytest.raises(ProviderError) as info:
        provider(url).refresh({}, "i-0123456789abcdef0")
    assert info.value.kind == "NotFound"
    with pytest.raises(ProviderError) as info:
        provider(url).stop({}, "not-an-id")
    assert info.value.kind == "NotFound"


def test_bad_requests_fail_before_creating(url: str) -> None:
    p = provider(url)
    for request in (
        CreateRequest("x", "g5.xlarge", "mars-1"),
        CreateRequest("x", "g5.xlarge", REGION, tags={"aws:x": "1"}),
        CreateRequest("x", "g5.xlarge", REGION, startup_script="x" * 20000),
        CreateRequest("x", "g5.xlarge", REGION, ssh_key_name="missing"),
        CreateRequest("x", "g5.xlarge", REGION, image="ami-12345678"),
    ):
        with pytest.raises(ProviderError) as info:
            p.create({}, request)
        assert info.value.kind in ("ProviderRequest", "NotFound"), request.__dict__
    assert live_instances(url) == [] and our_groups(url) == [] and our_keys(url) == []


# ---- no orphans ----


def test_cancel_after_launch_cleans_up_everything(url: str) -> None:
    calls = {"n": 0}

    def check() -> None:
        calls["n"] += 1
        if live_instances(url):  # cancelled once the instance exists
            raise RequestCancelled()

    p = provider(url)
    messages: List[str] = []
    request = CreateRequest("doomed", "g5.xlarge", REGION, ssh_public_key=public_key())
    with pytest.raises(RequestCancelled):
        p.create({}, request, check=check, report=messages.append)
    assert live_instances(url) == []
    assert our_groups(url) == []
    assert our_keys(url) == []
    assert any("removing what it created" in m for m in messages)


def test_run_instances_failure_cleans_up(url: str) -> None:
    # moto rejects an unknown IAM instance profile in RunInstances.
    p = provider(url, instanceProfile="no-such-profile")
    request = CreateRequest("doomed", "g5.xlarge", REGION, ssh_public_key=public_key())
    with pytest.raises(ProviderError) as info:
        p.create({}, request)
    assert info.value.kind == "ProviderRequest"
    assert "launch g5.xlarge" in info.value.message
    assert live_instances(url) == []
    assert our_groups(url) == []
    assert our_keys(url) == []


def test_existing_group_and_key_are_kept_after_failure(url: str) -> None:
    key = public_key()
    ok = provider(url).create({}, CreateRequest("a", "g5.xlarge", REGION, ssh_public_key=key))
    provider(url).terminate({}, ok.id)
    bad = provider(url, instanceProfile="no-such-profile")
    with pytest.raises(ProviderError):
        bad.create({}, CreateRequest("b", "g5.xlarge", REGION, ssh_public_key=key))
    # Not created by the failed call, so not removed by it.
    assert len(our_groups(url)) == 1 and our_keys(url) == [key_pair_name(key)]


# ---- errors ----


def client_error(code: str, status: int = 400, message: str = "boom") -> Exception:
    from botocore.exceptions import ClientError

    return ClientError(
        {
            "Error": {"Code": code, "Message": message},
            "ResponseMetadata": {"HTTPStatusCode": status},
        },
        "RunInstances",
    )


@pytest.mark.parametrize(
    ("code", "status", "kind"),
    [
        ("AuthFailure", 401, "ProviderAuth"),
        ("UnauthorizedOperation", 403, "ProviderAuth"),
        ("InvalidClientTokenId", 403, "ProviderAuth"),
        ("InstanceLimitExceeded", 400, "ProviderQuota"),
        ("InsufficientInstanceCapacity", 500, "ProviderQuota"),
        ("VcpuLimitExceeded", 400, "ProviderQuota"),
        ("MaxSpotInstanceCountExceeded", 400, "ProviderQuota"),
        ("SpotMaxPriceTooLow", 400, "ProviderQuota"),
        ("RequestLimitExceeded", 503, "ProviderRateLimited"),
        ("Throttling", 400, "ProviderRateLimited"),
        ("InternalError", 500, "ProviderUnavailable"),
        ("InvalidParameterValue", 400, "ProviderRequest"),
        ("InvalidInstanceID.NotFound", 400, "NotFound"),
    ],
)
def test_client_error_mapping(code: str, status: int, kind: str) -> None:
    mapped = map_error(client_error(code, status), "launch")
    assert mapped.kind == kind
    assert mapped.detail is not None and code in mapped.detail


def test_sdk_error_mapping() -> None:
    from botocore.exceptions import (
        ConnectTimeoutError,
        EndpointConnectionError,
        NoCredentialsError,
        ParamValidationError,
        ProfileNotFound,
    )

    auth = map_error(NoCredentialsError())
    assert auth.kind == "ProviderAuth"
    assert auth.hint is not None and "aws configure" in auth.hint and "AWS_PROFILE" in auth.hint
    assert map_error(ProfileNotFound(profile="x")).kind == "ProviderAuth"
    assert map_error(EndpointConnectionError(endpoint_url="http://x")).kind == (
        "ProviderUnavailable"
    )
    assert map_error(ConnectTimeoutError(endpoint_url="http://x")).kind == "ProviderUnavailable"
    assert map_error(ParamValidationError(report="bad")).kind == "ProviderRequest"
    assert map_error(KeyError("Instances")).kind == "ProviderResponse"


def test_no_credentials_is_auth_error(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    with pytest.raises(ProviderError) as info:
        provider(url).list({})
    assert info.value.kind == "ProviderAuth"
    with pytest.raises(ProviderError) as info:
        provider(url).list({"profile": "ghost"})
    assert info.value.kind == "ProviderAuth"


def test_unreachable_endpoint_is_unavailable(url: str) -> None:
    with pytest.raises(ProviderError) as info:
        provider("http://127.0.0.1:9", maxAttempts=1).list({})
    assert info.value.kind == "ProviderUnavailable"


class _BlockBoto(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname: str, path: Any, target: Any = None) -> Optional[Any]:
        if fullname.split(".")[0] in ("boto3", "botocore"):
            raise ImportError("No module named %r (blocked by test)" % fullname)
        return None


def test_missing_boto3_is_clean_unavailability(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(sys.modules):
        if name.split(".")[0] in ("boto3", "botocore"):
            monkeypatch.delitem(sys.modules, name)
    monkeypatch.setattr(sys, "meta_path", [_BlockBoto(), *sys.meta_path])
    p = AwsProvider({})
    assert p.availability({}) == aws.INSTALL_HINT
    info = p.info({})
    assert info["available"] is False and "pip install boto3" in info["reason"]
    for call in (
        lambda: p.list({}),
        lambda: p.offerings({}, None),
        lambda: p.create({}, CreateRequest("x", "g5.xlarge", REGION)),
        lambda: p.stop({}, "i-0123456789abcdef0"),
    ):
        with pytest.raises(ProviderError) as err:
            call()
        assert err.value.kind == "ProviderUnavailable"
        assert err.value.hint is not None and "pip install boto3" in err.value.hint
