"""AWS EC2 through boto3 (imported only when used; the backend itself stays stdlib-only).

Credentials come from boto3's standard chain (environment, ~/.aws files, SSO, instance
roles); the only per-call credential is an optional {"profile": "..."}. Settings:

- "profile": AWS profile (credentials' "profile" wins)
- "regions": regions listed (default us-east-1, us-west-2); regions used by `create` in
  this process are listed too
- "endpointUrl": send EC2 (and Pricing) calls there instead of AWS (tests: moto);
  "pricingEndpointUrl": the Pricing API's own endpoint
- "sshUser", "identityFile", "identityFiles" ({keyName: path}): SSH target overrides
- "keyName": default key pair for `create`; "instanceProfile": IAM instance profile name
- "listAll": list every instance, not only GPU types and machines made here
- "pollSeconds", "createWaitSeconds", "cleanupWaitSeconds": waiting while creating;
  "maxAttempts": attempts per EC2 call (boto3 standard retry mode, default 3)

Decisions:

- `shutting-down` maps to "terminated": it is irreversible, no longer billed and nothing
  can be done to it; `detail` says "shutting down".
- Spot instances are requested one-time (terminate on interruption). AWS cannot stop a
  one-time spot instance, so spot VMs never offer "stop" and `stop` refuses them.
- A stopped instance stops billing compute (stop_keeps_billing False) but its EBS volumes
  keep billing until terminated (in `notes`).
- `list` shows machines tagged gpu-workbench and instances of GPU types (setting
  "listAll" shows everything), so web servers in the same account are not offered here.
- Machine ids are EC2 instance ids; the region is remembered from list/create and
  otherwise searched across the configured regions.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import threading
import time
import uuid
from typing import Any, Dict, Iterator, List, NoReturn, Optional, Set, Tuple

from ..errors import RpcError
from .base import (
    MANAGED_TAG,
    Check,
    CreateRequest,
    Offering,
    Provider,
    ProviderError,
    Report,
    SshTarget,
    Vm,
    no_check,
    no_report,
    unsupported,
)

DISPLAY = "AWS EC2"
TABLE_DATE = "2026-11-01"
TABLE_SOURCE = "table " + TABLE_DATE
DEFAULT_REGIONS = ["us-east-1", "us-west-2"]
SECURITY_GROUP = "gpu-workbench-ssh"
KEY_PREFIX = "gpu-workbench-"
MAX_USER_DATA = 16 * 1024
INSTALL_HINT = "Install boto3 in the backend's Python (pip install boto3)"
AUTH_HINT = (
    "Configure AWS credentials: run `aws configure` (or `aws sso login --profile NAME`), "
    "or set AWS_PROFILE / the AWS profile setting."
)
PRICING_TTL = 6 * 3600.0
PRICING_FAIL_TTL = 600.0
GPU_FAMILIES = ("g3", "g4dn", "g4ad", "g5", "g5g", "g6", "g6e", "gr6", "p2", "p3", "p3dn", "p4")
GPU_FAMILIES += ("p4d", "p4de", "p5", "p5e", "p5en", "p6")

# instance type -> (GPU model, GPU count, GiB per GPU, vCPUs, RAM GiB, on-demand $/h or None).
# Specs: AWS instance type pages. Prices: us-east-1 Linux on-demand from the reference notes
# (SkyPilot catalog v8, public rate tables, post June 2025 P4/P5 cut); None where the notes
# have no figure (the Pricing API fills those in when reachable).
TABLE: Dict[str, Tuple[str, int, float, int, float, Optional[float]]] = {
    "g4dn.xlarge": ("NVIDIA T4", 1, 16, 4, 16, 0.526),
    "g4dn.2xlarge": ("NVIDIA T4", 1, 16, 8, 32, None),
    "g4dn.4xlarge": ("NVIDIA T4", 1, 16, 16, 64, None),
    "g4dn.8xlarge": ("NVIDIA T4", 1, 16, 32, 128, None),
    "g4dn.12xlarge": ("NVIDIA T4", 4, 16, 48, 192, None),
    "g4dn.16xlarge": ("NVIDIA T4", 1, 16, 64, 256, None),
    "g4dn.metal": ("NVIDIA T4", 8, 16, 96, 384, None),
    "g5.xlarge": ("NVIDIA A10G", 1, 24, 4, 16, 1.006),
    "g5.2xlarge": ("NVIDIA A10G", 1, 24, 8, 32, 1.212),
    "g5.4xlarge": ("NVIDIA A10G", 1, 24, 16, 64, None),
    "g5.8xlarge": ("NVIDIA A10G", 1, 24, 32, 128, None),
    "g5.12xlarge": ("NVIDIA A10G", 4, 24, 48, 192, 5.672),
    "g5.16xlarge": ("NVIDIA A10G", 1, 24, 64, 256, None),
    "g5.24xlarge": ("NVIDIA A10G", 4, 24, 96, 384, None),
    "g5.48xlarge": ("NVIDIA A10G", 8, 24, 192, 768, None),
    "g6.xlarge": ("NVIDIA L4", 1, 24, 4, 16, 0.8048),
    "g6.2xlarge": ("NVIDIA L4", 1, 24, 8, 32, None),
    "g6.4xlarge": ("NVIDIA L4", 1, 24, 16, 64, None),
    "g6.8xlarge": ("NVIDIA L4", 1, 24, 32, 128, None),
    "g6.12xlarge": ("NVIDIA L4", 4, 24, 48, 192, None),
    "g6.16xlarge": ("NVIDIA L4", 1, 24, 64, 256, None),
    "g6.24xlarge": ("NVIDIA L4", 4, 24, 96, 384, None),
    "g6.48xlarge": ("NVIDIA L4", 8, 24, 192, 768, None),
    "g6e.xlarge": ("NVIDIA L40S", 1, 48, 4, 32, 1.861),
    "g6e.2xlarge": ("NVIDIA L40S", 1, 48, 8, 64, None),
    "g6e.4xlarge": ("NVIDIA L40S", 1, 48, 16, 128, None),
    "g6e.8xlarge": ("NVIDIA L40S", 1, 48, 32, 256, None),
    "g6e.12xlarge": ("NVIDIA L40S", 4, 48, 48, 384, None),
    "g6e.16xlarge": ("NVIDIA L40S", 1, 48, 64, 512, None),
    "g6e.24xlarge": ("NVIDIA L40S", 4, 48, 96, 768, None),
    "g6e.48xlarge": ("NVIDIA L40S", 8, 48, 192, 1536, None),
    "p3.2xlarge": ("NVIDIA V100", 1, 16, 8, 61, None),
    "p3.8xlarge": ("NVIDIA V100", 4, 16, 32, 244, None),
    "p3.16xlarge": ("NVIDIA V100", 8, 16, 64, 488, None),
    "p3dn.24xlarge": ("NVIDIA V100", 8, 32, 96, 768, None),
    "p4d.24xlarge": ("NVIDIA A100", 8, 40, 96, 1152, 21.957642),
    "p4de.24xlarge": ("NVIDIA A100", 8, 80, 96, 1152, None),
    "p5.48xlarge": ("NVIDIA H100", 8, 80, 192, 2048, 55.04),
    "p5e.48xlarge": ("NVIDIA H200", 8, 141, 192, 2048, None),
    "p5en.48xlarge": ("NVIDIA H200", 8, 141, 192, 2048, None),
}

# Deep Learning AMIs (owner "amazon", x86_64), best first; then plain Ubuntu 22.04 from
# Canonical. Names as the DLAMI release notes give them, e.g. "Deep Learning OSS Nvidia
# Driver AMI GPU PyTorch 2.9 (Ubuntu 24.04) 20260103" (current PyTorch DLAMIs are Ubuntu
# 24.04 only) and "Deep Learning Base OSS Nvidia Driver GPU AMI (Ubuntu 22.04) 20261006".
DLAMI_PATTERNS = [
    "Deep Learning OSS Nvidia Driver AMI GPU PyTorch * (Ubuntu 24.04) *",
    "Deep Learning OSS Nvidia Driver AMI GPU PyTorch * (Ubuntu 22.04) *",
    "Deep Learning Base OSS Nvidia Driver GPU AMI (Ubuntu 24.04) *",
    "Deep Learning Base OSS Nvidia Driver GPU AMI (Ubuntu 22.04) *",
    "Deep Learning*GPU*Ubuntu*",
    "Deep Learning*Ubuntu*",
]
UBUNTU_OWNER = "099720109477"  # Canonical
UBUNTU_PATTERN = "ubuntu/images/*ubuntu-jammy-22.04-amd64-server-*"

AUTH_CODES = {
    "AuthFailure",
    "UnauthorizedOperation",
    "InvalidClientTokenId",
    "SignatureDoesNotMatch",
    "ExpiredToken",
    "ExpiredTokenException",
    "RequestExpired",
    "AccessDenied",
    "AccessDeniedException",
    "UnrecognizedClientException",
    "InvalidAccessKeyId",
    "InvalidToken",
    "MissingAuthenticationToken",
    "OptInRequired",
}
QUOTA_CODES = {
    "InstanceLimitExceeded",
    "InsufficientInstanceCapacity",
    "InsufficientCapacity",
    "InsufficientHostCapacity",
    "InsufficientReservedInstanceCapacity",
    "VcpuLimitExceeded",
    "MaxSpotInstanceCountExceeded",
    "SpotMaxPriceTooLow",
    "InsufficientFreeAddressesInSubnet",
    "ResourceLimitExceeded",
}
THROTTLE_CODES = {
    "RequestLimitExceeded",
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottled",
    "RequestThrottledException",
    "TooManyRequestsException",
    "SlowDown",
    "PriorRequestNotComplete",
}
UNAVAILABLE_CODES = {"InternalError", "InternalFailure", "ServiceUnavailable", "Unavailable"}
CONNECTION_ERRORS = {
    "EndpointConnectionError",
    "ConnectTimeoutError",
    "ReadTimeoutError",
    "ConnectionClosedError",
    "ConnectionError",
    "HTTPClientError",
    "ProxyConnectionError",
    "SSLError",
    "TimeoutError",
    "OSError",
}
CREDENTIAL_ERRORS = {
    "NoCredentialsError",
    "PartialCredentialsError",
    "ProfileNotFound",
    "CredentialRetrievalError",
    "TokenRetrievalError",
    "SSOTokenLoadError",
    "UnauthorizedSSOTokenError",
    "InvalidConfigError",
}

_lock = threading.Lock()
_region_of: Dict[str, str] = {}  # instance id -> region, learnt from list/create
_created_regions: Set[str] = set()
_image_names: Dict[Tuple[str, str], str] = {}  # (region, image id) -> name
_sessions: Dict[Tuple[str, str], Any] = {}
_clients: Dict[Tuple[Any, ...], Any] = {}
_pricing: Dict[Tuple[str, str, str], Tuple[float, Optional[Dict[str, float]]]] = {}


# ---- errors ----


def _names(exc: BaseException) -> Set[str]:
    return {c.__name__ for c in type(exc).__mro__}


def _clip(text: str, limit: int = 400) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def map_error(exc: BaseException, doing: str = "call AWS") -> ProviderError:
    """Map a boto3/botocore exception (matched by class name: botocore need not be
    importable) to a ProviderError. Messages carry AWS's words, never credentials."""
    if isinstance(exc, ProviderError):
        return exc
    names = _names(exc)
    what = "AWS EC2 could not %s" % doing
    if "ClientError" in names:
        response: Any = getattr(exc, "response", None) or {}
        error = response.get("Error") or {}
        code = str(error.get("Code") or "")
        message = _clip(str(error.get("Message") or exc))
        status = (response.get("ResponseMetadata") or {}).get("HTTPStatusCode")
        detail = "%s: %s" % (code or status, message)
        if code in THROTTLE_CODES:
            return ProviderError(
                "ProviderRateLimited", what + ": requests throttled", "Wait and retry.", detail
            )
        if code in AUTH_CODES:
            hint = AUTH_HINT
            if code == "UnauthorizedOperation" or code.startswith("AccessDenied"):
                hint = "The AWS identity lacks permission for this EC2 action (IAM policy)."
            elif code == "OptInRequired":
                hint = "Enable the region or service for the account, or use another region."
            return ProviderError("ProviderAuth", what + ": " + message, hint, detail)
        if code in QUOTA_CODES or (code.endswith("LimitExceeded") and code != ""):
            hint = (
                "Ask AWS for a higher quota (Service Quotas: 'Running On-Demand G and VT "
                "instances' / 'All G and VT Spot Instance Requests'), or try another region, "
                "instance type or on-demand/spot."
            )
            return ProviderError("ProviderQuota", what + ": " + message, hint, detail)
        if code in UNAVAILABLE_CODES or (isinstance(status, int) and status >= 500):
            return ProviderError(
                "ProviderUnavailable", what + ": AWS answered an error", "Retry later.", detail
            )
        if code.endswith(".NotFound"):
            return ProviderError("NotFound", what + ": " + message, None, detail)
        if code in ("IncorrectInstanceState", "IncorrectState"):
            return ProviderError(
                "ProviderRequest", what + ": " + message, "Refresh and try again.", detail
            )
        return ProviderError("ProviderRequest", what + ": " + message, None, detail)
    if names & CREDENTIAL_ERRORS:
        return ProviderError("ProviderAuth", what + ": " + _clip(str(exc)), AUTH_HINT)
    if "ParamValidationError" in names:
        return ProviderError("ProviderRequest", what + ": " + _clip(str(exc)))
    if names & CONNECTION_ERRORS:
        return ProviderError(
            "ProviderUnavailable",
            what + ": " + _clip(str(exc)),
            "Check the network connection (and the endpointUrl setting).",
        )
    if "NoRegionError" in names:
        return ProviderError("ProviderRequest", what + ": no region given")
    if names & {"ResponseParserError", "KeyError", "TypeError", "ValueError", "AttributeError"}:
        return ProviderError(
            "ProviderResponse", what + ": unexpected answer", None, _clip(repr(exc))
        )
    if "BotoCoreError" in names:
        return ProviderError("ProviderUnavailable", what + ": " + _clip(str(exc)))
    return ProviderError("ProviderResponse", what + ": " + _clip(repr(exc)))


def _raise_mapped(exc: BaseException, doing: str) -> NoReturn:
    if isinstance(exc, RpcError):  # ProviderError, RequestCancelled: already meaningful
        raise exc
    raise map_error(exc, doing) from exc


_ENV_KEYS = (
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_PROFILE",
    "AWS_DEFAULT_PROFILE",
    "AWS_CONFIG_FILE",
    "AWS_SHARED_CREDENTIALS_FILE",
)


def _env_fingerprint() -> str:
    """A digest of the environment boto3 reads credentials from (never the values)."""
    digest = hashlib.sha256()
    for name in _ENV_KEYS:
        digest.update(("%s=%s\0" % (name, os.environ.get(name, ""))).encode("utf-8"))
    return digest.hexdigest()


def _import_boto3() -> Any:
    try:
        import boto3  # type: ignore[import-untyped]
        from botocore.config import Config  # type: ignore[import-untyped]  # noqa: F401
    except ImportError as exc:
        raise ProviderError("ProviderUnavailable", "boto3 is not installed", INSTALL_HINT) from exc
    return boto3


# ---- parsing helpers ----


def parse_price_list(entries: List[Any]) -> Dict[str, float]:
    """Pricing API PriceList entries (JSON strings) -> {instance type: on-demand $/h}."""
    prices: Dict[str, float] = {}
    for entry in entries:
        product = json.loads(entry) if isinstance(entry, str) else entry
        itype = product["product"]["attributes"].get("instanceType")
        for term in (product.get("terms", {}).get("OnDemand") or {}).values():
            for dim in (term.get("priceDimensions") or {}).values():
                usd = float(dim.get("pricePerUnit", {}).get("USD", "0") or 0)
                if itype and usd > 0 and str(dim.get("unit", "Hrs")).lower().startswith("hr"):
                    prices[itype] = usd
    return prices


def latest_spot_prices(history: List[Dict[str, Any]]) -> Dict[str, float]:
    """Spot price history -> cheapest latest price per instance type (latest per type/AZ)."""
    latest: Dict[Tuple[str, str], Tuple[float, float]] = {}
    for item in history:
        key = (str(item["InstanceType"]), str(item.get("AvailabilityZone", "")))
        t = _epoch(item.get("Timestamp")) or 0.0
        price = float(item["SpotPrice"])
        if key not in latest or t > latest[key][0]:
            latest[key] = (t, price)
    out: Dict[str, float] = {}
    for (itype, _az), (_t, price) in latest.items():
        if price > 0 and (itype not in out or price < out[itype]):
            out[itype] = price
    return out


def latest_spot_by_zone(history: List[Dict[str, Any]]) -> Dict[Tuple[str, str], float]:
    latest: Dict[Tuple[str, str], Tuple[float, float]] = {}
    for item in history:
        key = (str(item["InstanceType"]), str(item.get("AvailabilityZone", "")))
        t = _epoch(item.get("Timestamp")) or 0.0
        if key not in latest or t > latest[key][0]:
            latest[key] = (t, float(item["SpotPrice"]))
    return {k: v[1] for k, v in latest.items() if v[1] > 0}


def _check_region(region: Optional[str]) -> None:
    if not re.match(r"^[a-z]{2}(-[a-z]+)+-\d+$", region or ""):
        raise ProviderError(
            "ProviderRequest", "Not an AWS region: %r" % (region,), "For example us-east-1."
        )


def _epoch(value: Any) -> Optional[float]:
    """A botocore timestamp (datetime) as unix seconds."""
    try:
        return float(value.timestamp())
    except (AttributeError, TypeError, ValueError, OverflowError, OSError):
        return None


def _is_gpu_type(itype: str) -> bool:
    return itype in TABLE or itype.split(".")[0] in GPU_FAMILIES


def _ssh_user_for_image(name: Optional[str]) -> Optional[str]:
    low = (name or "").lower()
    if "ubuntu" in low:
        return "ubuntu"
    if "amazon linux" in low or "amzn" in low or "al2023" in low:
        return "ec2-user"
    if "debian" in low:
        return "admin"
    return None


def _tags(items: Optional[List[Dict[str, Any]]]) -> Dict[str, str]:
    return {str(t["Key"]): str(t.get("Value", "")) for t in items or []}


def _describe(itype: str) -> str:
    row = TABLE.get(itype)
    if row is None:
        return itype
    model, count, mem, vcpus, ram, _price = row
    return "%dx %s (%g GiB), %d vCPU, %g GiB RAM" % (count, model, mem, vcpus, ram)


def key_pair_name(public_key: str) -> str:
    """The name an imported public key gets: stable per key (comment ignored)."""
    parts = public_key.strip().split()
    body = " ".join(parts[:2]) if len(parts) >= 2 else public_key.strip()
    return KEY_PREFIX + hashlib.sha256(body.encode("utf-8")).hexdigest()[:12]


# ---- the provider ----


class AwsProvider(Provider):
    name = "aws"
    display_name = DISPLAY
    capabilities = ["offerings", "create", "start", "stop", "terminate", "spot"]
    credential_fields: List[str] = []
    stop_keeps_billing = False
    notes = [
        "A stopped instance is not billed for compute, but its EBS volumes keep billing "
        "until it is terminated.",
        "Spot instances are one-time: AWS cannot stop them, only terminate them, and may "
        "interrupt them with a two-minute notice.",
        "Prices come from the AWS Pricing API when reachable, otherwise from a built-in "
        "us-east-1 table (%s)." % TABLE_DATE,
        "Credentials: the standard AWS chain (aws configure, AWS_PROFILE, SSO, roles).",
    ]

    # ---- plumbing ----

    def _profile(self, credentials: Dict[str, str]) -> Optional[str]:
        return credentials.get("profile") or self.settings.get("profile") or None

    def _regions(self) -> List[str]:
        regions = self.settings.get("regions")
        if isinstance(regions, str):
            regions = [regions]
        out = [str(r) for r in regions or DEFAULT_REGIONS if r]
        with _lock:
            extra = sorted(_created_regions - set(out))
        return out + extra

    def _session(self, credentials: Dict[str, str]) -> Any:
        """A boto3 session for the profile, shared while the AWS environment is unchanged
        (building sessions and clients costs about a second; clients are thread-safe)."""
        boto3 = _import_boto3()
        profile = self._profile(credentials)
        key = (profile or "", _env_fingerprint())
        with _lock:
            session = _sessions.get(key)
            if session is not None:
                return session
            try:
                session = boto3.session.Session(profile_name=profile)
            except Exception as exc:
                _raise_mapped(exc, "load the AWS profile")
            if any(fp != key[1] for _p, fp in _sessions):
                _sessions.clear()  # the environment changed: drop stale credentials
                _clients.clear()
            _sessions[key] = session
            return session

    def _config(self, attempts: int = 3, read_timeout: int = 30) -> Any:
        from botocore.config import Config  # type: ignore[import-untyped]

        return Config(
            connect_timeout=5,
            read_timeout=read_timeout,
            retries={"total_max_attempts": attempts, "mode": "standard"},
            user_agent_extra="gpu-workbench",
        )

    def _client(
        self,
        session: Any,
        service: str,
        region: str,
        attempts: int = 3,
        read_timeout: int = 30,
        endpoint: Optional[str] = None,
    ) -> Any:
        endpoint = endpoint or self.settings.get("endpointUrl") or None
        key = (id(session), service, region, endpoint or "", attempts)
        with _lock:
            client = _clients.get(key)
            if client is not None:
                return client
            # Session.client is not thread-safe: build under the lock.
            client = session.client(
                service,
                region_name=region,
                endpoint_url=endpoint,
                config=self._config(attempts, read_timeout),
            )
            _clients[key] = client
            return client

    def _ec2(self, session: Any, region: str) -> Any:
        try:
            return self._client(session, "ec2", region, int(self.settings.get("maxAttempts", 3)))
        except Exception as exc:
            _raise_mapped(exc, "connect to region %s" % region)

    def _poll(self) -> float:
        return float(self.settings.get("pollSeconds", 5.0))

    def availability(self, credentials: Dict[str, str]) -> Optional[str]:
        try:
            boto3 = _import_boto3()
        except ProviderError:
            return INSTALL_HINT
        profile = self._profile(credentials)
        if profile:
            try:
                profiles = boto3.session.Session().available_profiles
            except Exception:
                return None
            if profile not in profiles:
                return "AWS profile %r not found: run `aws configure --profile %s`" % (
                    profile,
                    profile,
                )
        return None

    # ---- offerings ----

    def offerings(
        self, credentials: Dict[str, str], region: Optional[str], check: Check = no_check
    ) -> List[Offering]:
        if region:
            _check_region(region)
        session = self._session(credentials)
        regions = [region] if region else self._regions()
        types = list(TABLE)
        available: Dict[str, Optional[Set[str]]] = {}
        for r in regions:
            check()
            available[r] = self._offered_types(session, r, types)
        price_region = regions[0]
        check()
        api_prices = self._api_prices(session, credentials, price_region) or {}
        check()
        spot = self._spot_prices(session, price_region, types)
        out: List[Offering] = []
        for itype in types:
            model, count, mem, vcpus, ram, table_price = TABLE[itype]
            if itype in api_prices:
                price: Optional[float] = api_prices[itype]
                source = "api"
            elif table_price is not None:
                price, source = table_price, TABLE_SOURCE
            else:
                price, source = None, "unknown"
            region_list: List[Dict[str, Any]] = []
            for r in regions:
                offered = available.get(r)
                region_list.append(
                    {"name": r, "available": None if offered is None else itype in offered}
                )
            out.append(
                Offering(
                    self.name,
                    itype,
                    description=_describe(itype),
                    gpu_model=model,
                    gpu_count=count,
                    gpu_memory_gib=mem,
                    vcpus=vcpus,
                    ram_gib=ram,
                    price_per_hour=price,
                    spot_price_per_hour=spot.get(itype),
                    price_source=source,
                    regions=region_list,
                )
            )
        return out

    def _offered_types(self, session: Any, region: str, types: List[str]) -> Optional[Set[str]]:
        """Types offered in the region; None when EC2 does not say (any failure)."""
        try:
            ec2 = self._ec2(session, region)
            found: Set[str] = set()
            pages = ec2.get_paginator("describe_instance_type_offerings").paginate(
                LocationType="region",
                Filters=[{"Name": "instance-type", "Values": types}],
            )
            for page in pages:
                for item in page.get("InstanceTypeOfferings", []):
                    found.add(str(item["InstanceType"]))
            return found
        except Exception:
            return None

    def _pricing_key(self, credentials: Dict[str, str], region: str) -> Tuple[str, str, str]:
        endpoint = self.settings.get("pricingEndpointUrl") or self.settings.get("endpointUrl")
        return (str(endpoint or ""), self._profile(credentials) or "", region)

    def _api_prices(
        self, session: Any, credentials: Dict[str, str], region: str
    ) -> Optional[Dict[str, float]]:
        """On-demand prices from the Pricing API (cached); None when it is not reachable."""
        key = self._pricing_key(credentials, region)
        now = time.time()
        with _lock:
            cached = _pricing.get(key)
        if cached is not None and cached[0] > now:
            return cached[1]
        prices: Optional[Dict[str, float]] = None
        try:
            client = self._client(
                session,
                "pricing",
                "us-east-1",
                attempts=1,
                read_timeout=10,
                endpoint=self.settings.get("pricingEndpointUrl"),
            )
            filters = [
                ("regionCode", region),
                ("operatingSystem", "Linux"),
                ("tenancy", "Shared"),
                ("preInstalledSw", "NA"),
                ("capacitystatus", "Used"),
                ("licenseModel", "No License required"),
                ("instanceFamily", "GPU instance"),
            ]
            entries: List[Any] = []
            pages = client.get_paginator("get_products").paginate(
                ServiceCode="AmazonEC2",
                Filters=[{"Type": "TERM_MATCH", "Field": f, "Value": v} for f, v in filters],
                PaginationConfig={"MaxItems": 2000, "PageSize": 100},
            )
            for page in pages:
                entries.extend(page.get("PriceList", []))
            prices = parse_price_list(entries) or None
        except Exception:
            prices = None
        with _lock:
            _pricing[key] = (now + (PRICING_TTL if prices else PRICING_FAIL_TTL), prices)
        return prices

    def _spot_history(self, ec2: Any, types: List[str]) -> List[Dict[str, Any]]:
        history: List[Dict[str, Any]] = []
        pages = ec2.get_paginator("describe_spot_price_history").paginate(
            InstanceTypes=types,
            ProductDescriptions=["Linux/UNIX", "Linux/UNIX (Amazon VPC)"],
            StartTime=time.time(),
            PaginationConfig={"MaxItems": 5000},
        )
        for page in pages:
            history.extend(page.get("SpotPriceHistory", []))
        return history

    def _spot_prices(self, session: Any, region: str, types: List[str]) -> Dict[str, float]:
        try:
            return latest_spot_prices(self._spot_history(self._ec2(session, region), types))
        except Exception:
            return {}

    # ---- list / refresh ----

    def list(self, credentials: Dict[str, str], check: Check = no_check) -> List[Vm]:
        session = self._session(credentials)
        vms: List[Vm] = []
        for region in self._regions():
            check()
            try:
                ec2 = self._ec2(session, region)
                instances = list(self._instances(ec2, None))
                vms.extend(self._records(ec2, region, instances, credentials, session))
            except Exception as exc:
                _raise_mapped(exc, "list instances in %s" % region)
        return vms

    def _instances(self, ec2: Any, ids: Optional[List[str]]) -> Iterator[Dict[str, Any]]:
        kwargs: Dict[str, Any] = {"InstanceIds": ids} if ids else {}
        for page in ec2.get_paginator("describe_instances").paginate(**kwargs):
            for reservation in page.get("Reservations", []):
                yield from reservation.get("Instances", [])

    def _records(
        self,
        ec2: Any,
        region: str,
        instances: List[Dict[str, Any]],
        credentials: Dict[str, str],
        session: Any,
        keep_all: bool = False,
    ) -> List[Vm]:
        list_all = bool(self.settings.get("listAll")) or keep_all
        chosen = [
            i
            for i in instances
            if list_all
            or MANAGED_TAG in _tags(i.get("Tags"))
            or _is_gpu_type(str(i.get("InstanceType", "")))
        ]
        if not chosen:
            return []
        image_names = self._image_names(ec2, region, {str(i.get("ImageId")) for i in chosen})
        spot_prices: Dict[Tuple[str, str], float] = {}
        spot_types = sorted(
            {
                str(i["InstanceType"])
                for i in chosen
                if i.get("InstanceLifecycle") == "spot"
                and (i.get("State") or {}).get("Name") in ("pending", "running")
            }
        )
        if spot_types:
            try:
                spot_prices = latest_spot_by_zone(self._spot_history(ec2, spot_types))
            except Exception:
                spot_prices = {}
        api_prices: Dict[str, float] = {}
        with _lock:
            cached = _pricing.get(self._pricing_key(credentials, region))
        if cached is not None and cached[1]:
            api_prices = cached[1]
        out: List[Vm] = []
        for inst in chosen:
            out.append(self._vm(inst, region, image_names, api_prices, spot_prices))
        with _lock:
            for vm in out:
                _region_of[vm.id] = region
        return out

    def _image_names(self, ec2: Any, region: str, ids: Set[str]) -> Dict[str, str]:
        ids.discard("None")
        with _lock:
            missing = [i for i in ids if (region, i) not in _image_names]
        if missing:
            try:
                images = ec2.describe_images(
                    Filters=[{"Name": "image-id", "Values": sorted(missing)}]
                ).get("Images", [])
                with _lock:
                    for image in images:
                        _image_names[(region, str(image["ImageId"]))] = str(image.get("Name") or "")
            except Exception:
                pass
        with _lock:
            return {i: _image_names[(region, i)] for i in ids if (region, i) in _image_names}

    def _vm(
        self,
        inst: Dict[str, Any],
        region: str,
        image_names: Dict[str, str],
        api_prices: Dict[str, float],
        spot_prices: Dict[Tuple[str, str], float],
    ) -> Vm:
        iid = str(inst["InstanceId"])
        itype = str(inst.get("InstanceType", ""))
        tags = _tags(inst.get("Tags"))
        aws_state = str((inst.get("State") or {}).get("Name", "unknown"))
        state = {
            "pending": "pending",
            "running": "running",
            "stopping": "stopping",
            "stopped": "stopped",
            "shutting-down": "terminated",
            "terminated": "terminated",
        }.get(aws_state, "unknown")
        spot = inst.get("InstanceLifecycle") == "spot"
        zone = str((inst.get("Placement") or {}).get("AvailabilityZone") or "")
        row = TABLE.get(itype)
        if spot:
            price = spot_prices.get((itype, zone))
        elif itype in api_prices:
            price = api_prices[itype]
        else:
            price = row[5] if row else None
        launched_at = _epoch(inst.get("LaunchTime"))
        address = (
            inst.get("PublicIpAddress")
            or inst.get("PublicDnsName")
            or inst.get("PrivateIpAddress")
            or None
        )
        key_name = inst.get("KeyName")
        ssh: Optional[SshTarget] = None
        if address and state in ("pending", "running"):
            user = self.settings.get("sshUser") or _ssh_user_for_image(
                image_names.get(str(inst.get("ImageId")))
            )
            files = self.settings.get("identityFiles") or {}
            identity = (files.get(key_name) if key_name else None) or self.settings.get(
                "identityFile"
            )
            ssh = SshTarget(str(address), 22, user, identity)
        capabilities: List[str] = []
        if state == "pending":
            capabilities = ["terminate"]
        elif state == "running":
            capabilities = ["terminate"] if spot else ["stop", "terminate"]
        elif state == "stopping":
            capabilities = ["terminate"]
        elif state == "stopped":
            capabilities = ["start", "terminate"]
        details: List[str] = []
        if aws_state == "shutting-down":
            details.append("shutting down")
        reason = (inst.get("StateReason") or {}).get("Code")
        if reason == "Server.SpotInstanceTermination":
            details.append("interrupted by AWS (spot)")
        elif reason and state in ("stopped", "terminated"):
            details.append(str((inst.get("StateReason") or {}).get("Message") or reason))
        if key_name:
            details.append("key pair %s" % key_name)
        if zone:
            details.append("zone %s" % zone)
        if spot:
            details.append("spot: cannot be stopped, only terminated")
        if state == "stopped":
            details.append("EBS volumes keep billing while stopped")
        return Vm(
            self.name,
            iid,
            tags.get("Name") or iid,
            state,
            instance_type=itype or None,
            gpu_model=row[0] if row else None,
            gpu_count=row[1] if row else 0,
            region=region,
            price_per_hour=price,
            spot=spot,
            launched_at=launched_at,
            address=str(address) if address else None,
            ssh=ssh,
            tags=tags,
            capabilities=capabilities,
            stop_keeps_billing=False,
            detail="; ".join(details) or None,
        )

    def _find(
        self, credentials: Dict[str, str], vm_id: str, check: Check
    ) -> Tuple[Any, Any, str, Vm]:
        """(session, ec2 client, region, record) of one instance, searching regions."""
        if not re.match(r"^i-[0-9a-f]{8,17}$", vm_id):
            raise ProviderError("NotFound", "No machine %s on %s" % (vm_id, DISPLAY))
        session = self._session(credentials)
        with _lock:
            known = _region_of.get(vm_id)
        regions = self._regions()
        if known:
            regions = [known] + [r for r in regions if r != known]
        for region in regions:
            check()
            ec2 = self._ec2(session, region)
            try:
                instances = list(self._instances(ec2, [vm_id]))
            except Exception as exc:
                mapped = map_error(exc, "describe %s" % vm_id)
                if mapped.kind == "NotFound":
                    continue
                raise mapped from exc
            if instances:
                try:
                    vms = self._records(ec2, region, instances, credentials, session, True)
                except Exception as exc:
                    _raise_mapped(exc, "describe %s" % vm_id)
                return session, ec2, region, vms[0]
        raise ProviderError("NotFound", "No machine %s on %s" % (vm_id, DISPLAY))

    def refresh(self, credentials: Dict[str, str], vm_id: str, check: Check = no_check) -> Vm:
        return self._find(credentials, vm_id, check)[3]

    # ---- lifecycle ----

    def start(self, credentials: Dict[str, str], vm_id: str, check: Check = no_check) -> Vm:
        _s, ec2, _region, vm = self._find(credentials, vm_id, check)
        if vm.state in ("running", "pending"):
            return vm
        if vm.state != "stopped":
            raise ProviderError(
                "ProviderRequest",
                "%s is %s and cannot be started" % (vm_id, vm.state),
                "Wait until it has stopped." if vm.state == "stopping" else None,
            )
        try:
            ec2.start_instances(InstanceIds=[vm_id])
        except Exception as exc:
            _raise_mapped(exc, "start %s" % vm_id)
        return self.refresh(credentials, vm_id, check)

    def stop(self, credentials: Dict[str, str], vm_id: str, check: Check = no_check) -> Vm:
        _s, ec2, _region, vm = self._find(credentials, vm_id, check)
        if vm.state in ("stopped", "stopping"):
            return vm
        if vm.spot:
            raise unsupported(
                DISPLAY,
                "stop spot instances",
                "AWS cannot stop a one-time spot instance; terminate it instead.",
            )
        if vm.state != "running":
            raise ProviderError(
                "ProviderRequest", "%s is %s and cannot be stopped" % (vm_id, vm.state)
            )
        try:
            ec2.stop_instances(InstanceIds=[vm_id])
        except Exception as exc:
            _raise_mapped(exc, "stop %s" % vm_id)
        return self.refresh(credentials, vm_id, check)

    def terminate(self, credentials: Dict[str, str], vm_id: str, check: Check = no_check) -> Vm:
        _s, ec2, _region, vm = self._find(credentials, vm_id, check)
        if vm.state == "terminated":
            return vm
        try:
            ec2.terminate_instances(InstanceIds=[vm_id])
        except Exception as exc:
            _raise_mapped(exc, "terminate %s" % vm_id)
        return self.refresh(credentials, vm_id, check)

    # ---- create ----

    def create(
        self,
        credentials: Dict[str, str],
        request: CreateRequest,
        check: Check = no_check,
        report: Report = no_report,
    ) -> Vm:
        self._validate(request)
        session = self._session(credentials)
        region = request.region
        ec2 = self._ec2(session, region)
        created_key: Optional[str] = None
        created_sg: Optional[str] = None
        instance_id: Optional[str] = None
        try:
            check()
            report("Finding the machine image")
            image_id, image_name, root_device = self._image(ec2, request.image)
            check()
            key_name: Optional[str] = request.ssh_key_name or self.settings.get("keyName")
            if request.ssh_key_name:
                self._require_key(ec2, request.ssh_key_name)
            elif request.ssh_public_key:
                key_name = key_pair_name(request.ssh_public_key)
                report("Importing SSH key %s" % key_name)
                if self._import_key(ec2, key_name, request.ssh_public_key):
                    created_key = key_name
            else:
                report("No SSH key given: the machine will not accept SSH logins")
            check()
            report("Preparing security group %s (SSH only)" % SECURITY_GROUP)
            sg_id, sg_created = self._security_group(ec2)
            if sg_created:
                created_sg = sg_id
            check()
            params = self._run_params(request, image_id, root_device, key_name, sg_id)
            report(
                "Launching %s %s in %s"
                % ("spot" if request.spot else "on-demand", request.instance_type, region)
            )
            # The client token makes boto3's retries idempotent and lets cleanup find an
            # instance whose launch answer was lost (timeout, malformed reply).
            token = params["ClientToken"] = uuid.uuid4().hex
            try:
                reservation = ec2.run_instances(**params)
                instance_id = str(reservation["Instances"][0]["InstanceId"])
            except Exception as exc:
                instance_id = self._launched_by(ec2, token)
                _raise_mapped(exc, "launch %s" % request.instance_type)
            assert instance_id is not None
            with _lock:
                _region_of[instance_id] = region
                _created_regions.add(region)
            if image_name:
                with _lock:
                    _image_names[(region, image_id)] = image_name
            report("Instance %s launched; waiting for it to run" % instance_id)
            return self._wait_running(credentials, session, ec2, region, instance_id, check)
        except BaseException as exc:
            leftovers = self._cleanup(ec2, instance_id, created_sg, created_key, report)
            if isinstance(exc, RpcError) and not isinstance(exc, ProviderError):
                raise
            mapped = exc if isinstance(exc, ProviderError) else None
            if mapped is None:
                if not isinstance(exc, Exception):
                    raise
                mapped = map_error(exc, "create the machine")
            if leftovers:
                note = "Left behind (delete by hand): " + ", ".join(leftovers)
                mapped = ProviderError(
                    mapped.kind,
                    mapped.message,
                    mapped.hint,
                    (mapped.detail + "; " if mapped.detail else "") + note,
                )
            if mapped is exc:
                raise
            raise mapped from exc

    def _validate(self, request: CreateRequest) -> None:
        _check_region(request.region)
        if not request.instance_type:
            raise ProviderError("ProviderRequest", "No instance type given")
        for key, value in request.tags.items():
            if key.lower().startswith("aws:") or not key or len(key) > 128 or len(value) > 256:
                raise ProviderError("ProviderRequest", "Tag not allowed on AWS: %r" % key)
        if request.startup_script and len(request.startup_script.encode("utf-8")) > MAX_USER_DATA:
            raise ProviderError(
                "ProviderRequest", "The startup script is larger than AWS's 16 KB user data"
            )
        if request.disk_gib is not None and not (1 <= request.disk_gib <= 16384):
            raise ProviderError("ProviderRequest", "Disk size must be 1..16384 GiB")

    def _image(self, ec2: Any, image: Optional[str]) -> Tuple[str, str, Optional[str]]:
        """(image id, name, root device name) of the requested or default image."""
        try:
            if image and image.startswith("resolve:ssm:"):
                return image, "", None
            if image and image.startswith("ami-"):
                found = ec2.describe_images(ImageIds=[image]).get("Images", [])
            elif image:
                found = ec2.describe_images(
                    Owners=["self", "amazon"], Filters=[{"Name": "name", "Values": [image]}]
                ).get("Images", [])
            else:
                found = self._default_images(ec2)
        except Exception as exc:
            _raise_mapped(exc, "find the image %s" % (image or "(Deep Learning AMI)"))
        found = [i for i in found if i.get("State", "available") == "available"]
        if not found:
            raise ProviderError(
                "ProviderRequest",
                "No image %s in this region" % (image or "(Deep Learning AMI or Ubuntu 22.04)"),
                "Pass an AMI id available in the region.",
            )
        best = max(found, key=lambda i: str(i.get("CreationDate", "")))
        return str(best["ImageId"]), str(best.get("Name") or ""), best.get("RootDeviceName")

    def _default_images(self, ec2: Any) -> List[Dict[str, Any]]:
        images = ec2.describe_images(
            Owners=["amazon"],
            Filters=[
                {"Name": "name", "Values": DLAMI_PATTERNS},
                {"Name": "architecture", "Values": ["x86_64"]},
            ],
        ).get("Images", [])

        def rank(image: Dict[str, Any]) -> int:
            name = str(image.get("Name", ""))
            for n, pattern in enumerate(DLAMI_PATTERNS):
                regex = ".*".join(re.escape(part) for part in pattern.split("*"))
                if re.fullmatch(regex, name):
                    return n
            return len(DLAMI_PATTERNS)

        if images:
            best_rank = min(rank(i) for i in images)
            return [i for i in images if rank(i) == best_rank]
        return ec2.describe_images(
            Owners=[UBUNTU_OWNER],
            Filters=[
                {"Name": "name", "Values": [UBUNTU_PATTERN]},
                {"Name": "architecture", "Values": ["x86_64"]},
            ],
        ).get("Images", [])

    def _require_key(self, ec2: Any, name: str) -> None:
        try:
            ec2.describe_key_pairs(KeyNames=[name])
        except Exception as exc:
            mapped = map_error(exc, "find key pair %s" % name)
            if mapped.kind == "NotFound":
                raise ProviderError(
                    "ProviderRequest",
                    "No key pair %r in this region" % name,
                    "Import the key in the EC2 console or pass the public key instead.",
                ) from exc
            raise mapped from exc

    def _import_key(self, ec2: Any, name: str, public_key: str) -> bool:
        """Import the key unless a pair of that name (same key: the name is its hash) exists.
        True when this call created it."""
        try:
            ec2.describe_key_pairs(KeyNames=[name])
            return False
        except Exception as exc:
            if map_error(exc).kind != "NotFound":
                _raise_mapped(exc, "look up key pair %s" % name)
        try:
            ec2.import_key_pair(
                KeyName=name,
                PublicKeyMaterial=public_key.strip().encode("utf-8"),
                TagSpecifications=[
                    {"ResourceType": "key-pair", "Tags": [{"Key": MANAGED_TAG, "Value": "1"}]}
                ],
            )
        except Exception as exc:
            code = str((getattr(exc, "response", None) or {}).get("Error", {}).get("Code", ""))
            if code == "InvalidKeyPair.Duplicate":
                return False
            _raise_mapped(exc, "import the SSH public key")
        return True

    def _security_group(self, ec2: Any) -> Tuple[str, bool]:
        """(group id, created by this call) of gpu-workbench-ssh in the default VPC."""
        try:
            vpcs = ec2.describe_vpcs(Filters=[{"Name": "isDefault", "Values": ["true"]}])
            vpc_list = vpcs.get("Vpcs", [])
            if not vpc_list:
                raise ProviderError(
                    "ProviderRequest",
                    "The region has no default VPC",
                    "Create one with `aws ec2 create-default-vpc` or use another region.",
                )
            vpc_id = str(vpc_list[0]["VpcId"])
            groups = ec2.describe_security_groups(
                Filters=[
                    {"Name": "group-name", "Values": [SECURITY_GROUP]},
                    {"Name": "vpc-id", "Values": [vpc_id]},
                ]
            ).get("SecurityGroups", [])
            if groups:
                return str(groups[0]["GroupId"]), False
            try:
                group_id = str(
                    ec2.create_security_group(
                        GroupName=SECURITY_GROUP,
                        Description="GPU Workbench: SSH (tcp/22) only",
                        VpcId=vpc_id,
                        TagSpecifications=[
                            {
                                "ResourceType": "security-group",
                                "Tags": [{"Key": MANAGED_TAG, "Value": "1"}],
                            }
                        ],
                    )["GroupId"]
                )
            except Exception as exc:
                code = str((getattr(exc, "response", None) or {}).get("Error", {}).get("Code"))
                if code != "InvalidGroup.Duplicate":
                    raise
                return self._security_group(ec2)  # created meanwhile by another call
        except Exception as exc:
            _raise_mapped(exc, "prepare the security group")
        try:
            ec2.authorize_security_group_ingress(
                GroupId=group_id,
                IpPermissions=[
                    {
                        "IpProtocol": "tcp",
                        "FromPort": 22,
                        "ToPort": 22,
                        "IpRanges": [{"CidrIp": "0.0.0.0/0", "Description": "SSH"}],
                        "Ipv6Ranges": [{"CidrIpv6": "::/0", "Description": "SSH"}],
                    }
                ],
            )
        except Exception as exc:
            try:
                ec2.delete_security_group(GroupId=group_id)
            except Exception:
                pass
            _raise_mapped(exc, "open SSH in the security group")
        return group_id, True

    def _run_params(
        self,
        request: CreateRequest,
        image_id: str,
        root_device: Optional[str],
        key_name: Optional[str],
        sg_id: str,
    ) -> Dict[str, Any]:
        tags = [{"Key": "Name", "Value": request.name}]
        tags += [{"Key": k, "Value": v} for k, v in sorted(request.tags.items()) if k != "Name"]
        params: Dict[str, Any] = {
            "ImageId": image_id,
            "InstanceType": request.instance_type,
            "MinCount": 1,
            "MaxCount": 1,
            "SecurityGroupIds": [sg_id],
            "TagSpecifications": [
                {"ResourceType": "instance", "Tags": tags},
                {"ResourceType": "volume", "Tags": tags},
            ],
        }
        if key_name:
            params["KeyName"] = key_name
        if request.disk_gib and root_device:
            params["BlockDeviceMappings"] = [
                {
                    "DeviceName": root_device,
                    "Ebs": {
                        "VolumeSize": int(request.disk_gib),
                        "VolumeType": "gp3",
                        "DeleteOnTermination": True,
                    },
                }
            ]
        if request.spot:
            params["InstanceMarketOptions"] = {
                "MarketType": "spot",
                "SpotOptions": {
                    "SpotInstanceType": "one-time",
                    "InstanceInterruptionBehavior": "terminate",
                },
            }
        if request.startup_script:
            params["UserData"] = request.startup_script
        profile = self.settings.get("instanceProfile")
        if profile:
            params["IamInstanceProfile"] = {"Name": str(profile)}
        return params

    def _wait_running(
        self,
        credentials: Dict[str, str],
        session: Any,
        ec2: Any,
        region: str,
        instance_id: str,
        check: Check,
    ) -> Vm:
        deadline = time.monotonic() + float(self.settings.get("createWaitSeconds", 600))
        while True:
            check()
            try:
                instances = list(self._instances(ec2, [instance_id]))
                vms = self._records(ec2, region, instances, credentials, session, True)
            except Exception as exc:
                # Eventual consistency: a fresh id may not be visible yet.
                if map_error(exc).kind != "NotFound" or time.monotonic() > deadline:
                    _raise_mapped(exc, "follow %s" % instance_id)
                vms = []
            if vms:
                vm = vms[0]
                if vm.state == "running" or time.monotonic() > deadline:
                    return vm
                if vm.state in ("terminated", "stopped", "stopping"):
                    raise ProviderError(
                        "ProviderQuota" if vm.spot else "ProviderRequest",
                        "%s ended while starting (%s)" % (instance_id, vm.detail or vm.state),
                        "Try another region or instance type."
                        if vm.spot
                        else "See the instance's state reason in the EC2 console.",
                    )
            time.sleep(self._poll())

    def _launched_by(self, ec2: Any, token: str) -> Optional[str]:
        """The instance a RunInstances call with this client token made, if any."""
        try:
            answer = ec2.describe_instances(Filters=[{"Name": "client-token", "Values": [token]}])
            for reservation in answer.get("Reservations", []):
                for inst in reservation.get("Instances", []):
                    return str(inst["InstanceId"])
        except Exception:
            pass  # nothing to find, or the filter is not supported (moto)
        return None

    def _cleanup(
        self,
        ec2: Any,
        instance_id: Optional[str],
        sg_id: Optional[str],
        key_name: Optional[str],
        report: Report,
    ) -> List[str]:
        """Undo what a failed create made; returns what could not be removed."""
        leftovers: List[str] = []
        if instance_id or sg_id or key_name:
            report("Creation failed; removing what it created")
        if instance_id:
            try:
                ec2.terminate_instances(InstanceIds=[instance_id])
            except Exception:
                leftovers.append("instance %s" % instance_id)
        if sg_id:
            # A group still used by a terminating instance cannot be deleted yet.
            deadline = time.monotonic() + float(self.settings.get("cleanupWaitSeconds", 300))
            while True:
                try:
                    ec2.delete_security_group(GroupId=sg_id)
                    break
                except Exception as exc:
                    code = str(
                        (getattr(exc, "response", None) or {}).get("Error", {}).get("Code", "")
                    )
                    if code == "DependencyViolation" and time.monotonic() < deadline:
                        time.sleep(self._poll())
                        continue
                    if not code.endswith(".NotFound"):
                        leftovers.append("security group %s" % sg_id)
                    break
        if key_name:
            try:
                ec2.delete_key_pair(KeyName=key_name)
            except Exception:
                leftovers.append("key pair %s" % key_name)
        return leftovers


__all__ = ["AwsProvider", "key_pair_name", "map_error", "parse_price_list"]
