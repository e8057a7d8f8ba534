"""Local contract servers for the Lambda Cloud (v1) and Linode (v4) REST APIs.

State lives in memory (instance types with prices and capacity, instances, SSH keys); every
authenticated request is checked against one bearer token. Faults are injected per endpoint
("METHOD /path-pattern", e.g. "POST /instance-operations/launch" or
"GET /linode/instances/{id}") and consumed one per matching request:

    {"status": 401 | 429 | 500 | ...,  "retry_after": "1"}   an error answer
    {"delay": 2.0}                                           answer late (client timeouts)
    {"body": "not json"}                                     raw body with status 200
    {"json": {...}}                                          a wrong-shaped JSON body
    {"echo_token": true, "status": 400}                      error text echoes the token
    {"status": 302, "headers": {"Location": "..."}}          extra response headers
    ... plus "times": N (default 1) to repeat it.

Standalone (VS Code integration tests):
    python3 fake_clouds.py --lambda-port 0 --linode-port 0 --token T
prints {"lambda": URL, "linode": URL} on one line and serves until killed. Control
endpoints (no auth) on either server: POST /_admin/fault {"endpoint", ...fault},
POST /_admin/reset, GET /_admin/requests, GET /_admin/state.
"""

from __future__ import annotations

import argparse
import copy
import json
import re
import sys
import threading
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Dict, List, Optional, Tuple, TypeVar

Answer = Tuple[int, Any]  # (status, JSON value)
Cloud = TypeVar("Cloud", bound="FakeCloud")

LAMBDA_TYPES: Dict[str, Dict[str, Any]] = {
    "gpu_1x_a10": {
        "instance_type": {
            "name": "gpu_1x_a10",
            "description": "1x A10 (24 GB PCIe)",
            "gpu_description": "A10 (24 GB PCIe)",
            "price_cents_per_hour": 75,
            "specs": {"vcpus": 30, "memory_gib": 200, "storage_gib": 1400, "gpus": 1},
        },
        "regions_with_capacity_available": [
            {"name": "us-east-1", "description": "Virginia, USA"},
            {"name": "us-west-1", "description": "California, USA"},
        ],
    },
    "gpu_8x_a100_80gb_sxm4": {
        "instance_type": {
            "name": "gpu_8x_a100_80gb_sxm4",
            "description": "8x A100 (80 GB SXM4)",
            "gpu_description": "A100 (80 GB SXM4)",
            "price_cents_per_hour": 1432,
            "specs": {"vcpus": 240, "memory_gib": 1800, "storage_gib": 20000, "gpus": 8},
        },
        "regions_with_capacity_available": [],
    },
}
LINODE_TYPES: List[Dict[str, Any]] = [
    {
        "id": "g6-standard-2",
        "label": "Linode 4GB",
        "class": "standard",
        "gpus": 0,
        "vcpus": 2,
        "memory": 4096,
        "disk": 81920,
        "price": {"hourly": 0.036, "monthly": 24.0},
        "region_prices": [],
    },
    {
        "id": "g1-gpu-rtx6000-1",
        "label": "Dedicated 32GB + RTX6000 GPU x1",
        "class": "gpu",
        "gpus": 1,
        "vcpus": 8,
        "memory": 32768,
        "disk": 655360,
        "price": {"hourly": 1.5, "monthly": 1000.0},
        "region_prices": [{"id": "us-southeast", "hourly": 1.65, "monthly": 1100.0}],
    },
    {
        "id": "g2-gpu-rtx4000a1-s",
        "label": "RTX4000 Ada x1 Small",
        "class": "gpu",
        "gpus": 1,
        "vcpus": 4,
        "memory": 16384,
        "disk": 512000,
        "price": {"hourly": 0.0, "monthly": 0.0},
        "region_prices": [{"id": "us-ord", "hourly": 0.52, "monthly": 350.0}],
    },
]
LINODE_REGIONS: List[Dict[str, Any]] = [
    {"id": "us-east", "label": "Newark, NJ", "status": "ok", "capabilities": ["Linodes"]},
    {
        "id": "us-southeast",
        "label": "Atlanta, GA",
        "status": "ok",
        "capabilities": ["Linodes", "GPU Linodes", "Metadata"],
    },
    {
        "id": "us-ord",
        "label": "Chicago, IL",
        "status": "ok",
        "capabilities": ["Linodes", "GPU Linodes", "Metadata"],
    },
]
LABEL_RE = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9]|[-_.](?=[A-Za-z0-9])){1,62}[A-Za-z0-9]$")


class FakeCloud:
    """One fake API on 127.0.0.1; subclasses route requests."""

    prefix = ""
    kind = ""

    def __init__(self, token: str, port: int = 0) -> None:
        self.token = token
        self.lock = threading.RLock()
        self.faults: List[Dict[str, Any]] = []
        self.requests: List[Dict[str, Any]] = []
        self.reset()
        cloud = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _serve(self) -> None:
                cloud._handle(self)

            do_GET = _serve
            do_POST = _serve
            do_DELETE = _serve
            do_PUT = _serve

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = "http://127.0.0.1:%d%s" % (self.port, self.prefix)
        self.thread: Optional[threading.Thread] = None

    # ---- lifecycle ----

    def start(self: Cloud) -> Cloud:
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()
        return self

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self: Cloud) -> Cloud:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def reset(self) -> None:
        with self.lock:
            self.faults = []
            self.requests = []

    def fault(self, endpoint: str, **spec: Any) -> None:
        """Queue a fault for requests matching `endpoint` ("METHOD /pattern")."""
        method, _, pattern = endpoint.partition(" ")
        regex = "^" + re.sub(r"\\\{[a-z_]+\\\}", "[^/]+", re.escape(pattern)) + "$"
        with self.lock:
            self.faults.append(
                {"method": method.upper(), "regex": regex, "times": spec.pop("times", 1), **spec}
            )

    def count(self, method: str, path: str) -> int:
        with self.lock:
            return sum(1 for r in self.requests if r["method"] == method and r["path"] == path)

    # ---- dispatch ----

    def _take_fault(self, method: str, path: str) -> Optional[Dict[str, Any]]:
        with self.lock:
            for spec in self.faults:
                if spec["method"] == method and re.match(spec["regex"], path):
                    spec["times"] -= 1
                    if spec["times"] <= 0:
                        self.faults.remove(spec)
                    return spec
        return None

    def _handle(self, handler: BaseHTTPRequestHandler) -> None:
        method = handler.command
        parsed = urllib.parse.urlsplit(handler.path)
        path = parsed.path
        query = {k: v[-1] for k, v in urllib.parse.parse_qs(parsed.query).items()}
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length) if length else b""
        auth = handler.headers.get("Authorization") or ""
        if path.startswith("/_admin/"):
            self._send(handler, *self._admin(method, path[len("/_admin/") :], raw))
            return
        if not path.startswith(self.prefix):
            self._send(handler, 404, self.error("not found"))
            return
        path = path[len(self.prefix) :] or "/"
        try:
            body = json.loads(raw.decode("utf-8")) if raw else None
        except ValueError:
            self._send(handler, 400, self.error("body is not JSON"))
            return
        with self.lock:
            self.requests.append({"method": method, "path": path, "query": query, "body": body})
        spec = self._take_fault(method, path)
        if spec is not None:
            if spec.get("delay"):
                time.sleep(float(spec["delay"]))
            if "body" in spec:
                self._send_raw(handler, int(spec.get("status", 200)), str(spec["body"]).encode())
                return
            if "json" in spec:
                self._send(handler, int(spec.get("status", 200)), spec["json"])
                return
            if "status" in spec:
                text = "error injected"
                if spec.get("echo_token"):
                    text = "bad header: %s" % auth
                headers = dict(spec.get("headers") or {})
                if spec.get("retry_after") is not None:
                    headers["Retry-After"] = str(spec["retry_after"])
                self._send(handler, int(spec["status"]), self.error(text), headers)
                return
        if self.needs_auth(method, path) and auth != "Bearer " + self.token:
            self._send(handler, 401, self.auth_error())
            return
        try:
            with self.lock:
                status, answer = self.route(method, path, query, body)
        except KeyError as missing:
            status, answer = 400, self.error("missing field %s" % missing)
        self._send(handler, status, answer)

    def _admin(self, method: str, what: str, raw: bytes) -> Answer:
        if what == "fault" and method == "POST":
            spec = json.loads(raw.decode("utf-8"))
            self.fault(spec.pop("endpoint"), **spec)
            return 200, {}
        if what == "reset" and method == "POST":
            self.reset()
            return 200, {}
        if what == "requests":
            with self.lock:
                return 200, {"requests": list(self.requests)}
        if what == "state":
            with self.lock:
                return 200, self.state()
        return 404, self.error("no admin endpoint %s" % what)

    def _send(
        self,
        handler: BaseHTTPRequestHandler,
        status: int,
        value: Any,
        headers: Optional[Dict[str, str]] = None,
    ) -> None:
        self._send_raw(handler, status, json.dumps(value).encode("utf-8"), headers)

    def _send_raw(
        self,
        handler: BaseHTTPRequestHandler,
        status: int,
        data: bytes,
        headers: Optional[Dict[str, str]] = None,
    ) -> None:
        try:
            handler.send_response(status)
            handler.send_header("Content-Type", "application/json")
            handler.send_header("Content-Length", str(len(data)))
            for key, value in (headers or {}).items():
                handler.send_header(key, value)
            handler.end_headers()
            handler.wfile.write(data)
        except OSError:
            pass  # the client gave up (timeout tests)

    # ---- subclass API ----

    def needs_auth(self, method: str, path: str) -> bool:
        return True

    def route(self, method: str, path: str, query: Dict[str, str], body: Any) -> Answer:
        raise NotImplementedError

    def error(self, text: str) -> Any:
        raise NotImplementedError

    def auth_error(self) -> Any:
        raise NotImplementedError

    def state(self) -> Dict[str, Any]:
        raise NotImplementedError


class FakeLambda(FakeCloud):
    """Lambda Cloud API v1 under /api/v1."""

    prefix = "/api/v1"
    kind = "lambda"

    def reset(self) -> None:
        super().reset()
        self.types: Dict[str, Dict[str, Any]] = copy.deepcopy(LAMBDA_TYPES)
        self.instances: Dict[str, Dict[str, Any]] = {}
        self.ssh_keys: List[Dict[str, Any]] = [
            {"id": "key-0", "name": "laptop", "public_key": "ssh-ed25519 AAAAexisting me@laptop"}
        ]
        self.next_id = 1

    def error(self, text: str, code: str = "global/invalid-parameters") -> Any:
        return {"error": {"code": code, "message": text}}

    def auth_error(self) -> Any:
        return self.error("API key was invalid, expired, or deleted.", "global/invalid-api-key")

    def state(self) -> Dict[str, Any]:
        return {"instances": list(self.instances.values()), "ssh_keys": self.ssh_keys}

    def add_instance(self, type_name: str, region: str, name: str, key: str) -> Dict[str, Any]:
        itype = self.types[type_name]["instance_type"]
        vm_id = "%032x" % self.next_id
        self.next_id += 1
        inst = {
            "id": vm_id,
            "name": name,
            "ip": None,
            "status": "booting",
            "ssh_key_names": [key],
            "file_system_names": [],
            "region": {"name": region, "description": region},
            "instance_type": copy.deepcopy(itype),
            "hostname": None,
            "jupyter_token": "tok",
            "jupyter_url": None,
        }
        self.instances[vm_id] = inst
        return inst

    def _advance(self) -> None:
        for inst in self.instances.values():
            if inst["status"] == "booting":
                n = int(inst["id"], 16)
                inst["status"] = "active"
                inst["ip"] = "198.51.100.%d" % (n % 250 + 1)
                inst["hostname"] = "lambda-%d.example" % n

    def route(self, method: str, path: str, query: Dict[str, str], body: Any) -> Answer:
        if method == "GET" and path == "/instance-types":
            return 200, {"data": copy.deepcopy(self.types)}
        if method == "GET" and path == "/instances":
            out = [copy.deepcopy(i) for i in self.instances.values()]
            self._advance()
            return 200, {"data": out}
        match = re.match(r"^/instances/([^/]+)$", path)
        if method == "GET" and match:
            inst = self.instances.get(match.group(1))
            if inst is None:
                return 404, self.error("Instance not found", "global/object-does-not-exist")
            out = copy.deepcopy(inst)
            self._advance()
            return 200, {"data": out}
        if method == "GET" and path == "/ssh-keys":
            return 200, {"data": copy.deepcopy(self.ssh_keys)}
        if method == "POST" and path == "/ssh-keys":
            name = body["name"]
            if any(k["name"] == name for k in self.ssh_keys):
                return 400, self.error("SSH key name already in use")
            key = {"id": "key-%d" % len(self.ssh_keys), "name": name}
            key["public_key"] = body.get("public_key") or "ssh-ed25519 AAAAgenerated"
            self.ssh_keys.append(key)
            return 200, {"data": dict(key)}
        if method == "POST" and path == "/instance-operations/launch":
            return self._launch(body)
        if method == "POST" and path == "/instance-operations/terminate":
            ids = body["instance_ids"]
            missing = [i for i in ids if i not in self.instances]
            if missing:
                return 404, self.error("Instance not found", "global/object-does-not-exist")
            gone = []
            for i in ids:
                self.instances[i]["status"] = "terminated"
                gone.append(copy.deepcopy(self.instances[i]))
            return 200, {"data": {"terminated_instances": gone}}
        return 404, self.error("Not found", "global/object-does-not-exist")

    def _launch(self, body: Any) -> Answer:
        type_name = body["instance_type_name"]
        region = body["region_name"]
        keys = body["ssh_key_names"]
        if type_name not in self.types:
            return 400, self.error("Invalid instance type", "global/invalid-parameters")
        if not isinstance(keys, list) or len(keys) != 1:
            return 400, self.error("Exactly one SSH key name is required")
        if not any(k["name"] == keys[0] for k in self.ssh_keys):
            return 400, self.error("SSH key not found: %s" % keys[0])
        capacity = [r["name"] for r in self.types[type_name]["regions_with_capacity_available"]]
        if region not in capacity:
            return 400, self.error(
                "Not enough capacity to fulfill launch request.",
                "instance-operations/launch/insufficient-capacity",
            )
        inst = self.add_instance(type_name, region, body.get("name") or "", keys[0])
        return 200, {"data": {"instance_ids": [inst["id"]]}}


class FakeLinode(FakeCloud):
    """Linode API v4 under /v4."""

    prefix = "/v4"
    kind = "linode"

    def reset(self) -> None:
        super().reset()
        self.types: List[Dict[str, Any]] = copy.deepcopy(LINODE_TYPES)
        self.regions: List[Dict[str, Any]] = copy.deepcopy(LINODE_REGIONS)
        self.instances: Dict[int, Dict[str, Any]] = {}
        self.ssh_keys: List[Dict[str, Any]] = [
            {"id": 1, "label": "laptop", "ssh_key": "ssh-ed25519 AAAAprofile me@laptop"}
        ]
        self.next_id = 1000
        self.max_page_size = 500
        self.created_bodies: List[Dict[str, Any]] = []

    def error(self, text: str, field: Optional[str] = None) -> Any:
        item: Dict[str, Any] = {"reason": text}
        if field:
            item["field"] = field
        return {"errors": [item]}

    def auth_error(self) -> Any:
        return self.error("Invalid Token")

    def needs_auth(self, method: str, path: str) -> bool:
        return not (method == "GET" and (path.startswith("/linode/types") or path == "/regions"))

    def state(self) -> Dict[str, Any]:
        return {"instances": list(self.instances.values())}

    def page(self, items: List[Any], query: Dict[str, str]) -> Answer:
        size = max(25, min(int(query.get("page_size", 100)), 500))
        size = min(size, self.max_page_size)
        pages = max(1, (len(items) + size - 1) // size)
        page = int(query.get("page", 1))
        if page < 1 or page > pages:
            return 400, self.error("page out of range", "page")
        chunk = items[(page - 1) * size : page * size]
        return 200, {"data": chunk, "page": page, "pages": pages, "results": len(items)}

    def add_instance(self, **fields: Any) -> Dict[str, Any]:
        vm_id = self.next_id
        self.next_id += 1
        type_id = fields.get("type", "g1-gpu-rtx6000-1")
        entry = next(t for t in self.types if t["id"] == type_id)
        inst = {
            "id": vm_id,
            "label": fields.get("label", "linode%d" % vm_id),
            "status": fields.get("status", "provisioning"),
            "type": type_id,
            "region": fields.get("region", "us-southeast"),
            "image": fields.get("image", "linode/ubuntu22.04"),
            "ipv4": ["192.168.130.%d" % (vm_id % 250), "45.79.0.%d" % (vm_id % 250)],
            "ipv6": "2600:3c00::f03c:91ff:fe24:3a2f/128",
            "created": "2026-11-20T10:00:00",
            "updated": "2026-11-20T10:00:00",
            "tags": fields.get("tags", []),
            "hypervisor": "kvm",
            "specs": {
                "gpus": entry["gpus"],
                "vcpus": entry["vcpus"],
                "memory": entry["memory"],
                "disk": entry["disk"],
            },
        }
        self.instances[vm_id] = inst
        return inst

    def _read(self, inst: Dict[str, Any]) -> Dict[str, Any]:
        out = copy.deepcopy(inst)
        nxt = {"provisioning": "running", "booting": "running", "shutting_down": "offline"}
        if inst["status"] in nxt:
            inst["status"] = nxt[inst["status"]]
        return out

    def route(self, method: str, path: str, query: Dict[str, str], body: Any) -> Answer:
        if method == "GET" and path == "/linode/types":
            return self.page(copy.deepcopy(self.types), query)
        if method == "GET" and path == "/regions":
            return self.page(copy.deepcopy(self.regions), query)
        if method == "GET" and path == "/profile/sshkeys":
            return self.page(copy.deepcopy(self.ssh_keys), query)
        if method == "GET" and path == "/linode/instances":
            return self.page([self._read(i) for i in self.instances.values()], query)
        if method == "POST" and path == "/linode/instances":
            return self._create(body)
        match = re.match(r"^/linode/instances/(\d+)(?:/(boot|shutdown|reboot))?$", path)
        if match:
            inst = self.instances.get(int(match.group(1)))
            if inst is None:
                return 404, self.error("Not found")
            action = match.group(2)
            if method == "GET" and not action:
                return 200, self._read(inst)
            if method == "DELETE" and not action:
                del self.instances[inst["id"]]
                return 200, {}
            if method == "POST" and action == "boot":
                if inst["status"] == "running":
                    return 400, self.error("Linode is already running")
                inst["status"] = "booting"
                return 200, {}
            if method == "POST" and action == "shutdown":
                inst["status"] = "shutting_down"
                return 200, {}
        return 404, self.error("Not found")

    def _create(self, body: Any) -> Answer:
        errors = []
        for name in ("type", "region"):
            if not body.get(name):
                errors.append({"reason": "%s is required" % name, "field": name})
        if body.get("image") and not body.get("root_pass"):
            errors.append({"reason": "root_pass is required", "field": "root_pass"})
        if body.get("type") and not any(t["id"] == body["type"] for t in self.types):
            errors.append({"reason": "A valid plan type by that ID was not found", "field": "type"})
        if body.get("region") and not any(r["id"] == body["region"] for r in self.regions):
            errors.append({"reason": "region is not valid", "field": "region"})
        label = body.get("label")
        if label is not None and not LABEL_RE.match(label):
            errors.append({"reason": "Label must be 3-64 valid characters", "field": "label"})
        if errors:
            return 400, {"errors": errors}
        self.created_bodies.append(copy.deepcopy(body))
        inst = self.add_instance(
            type=body["type"],
            region=body["region"],
            image=body.get("image"),
            label=label or "linode%d" % self.next_id,
            tags=list(body.get("tags") or []),
        )
        return 200, copy.deepcopy(inst)


def start_all(token: str, lambda_port: int = 0, linode_port: int = 0) -> List[FakeCloud]:
    return [FakeLambda(token, lambda_port).start(), FakeLinode(token, linode_port).start()]


def main(argv: Optional[List[str]] = None, out: Callable[[str], None] = print) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--lambda-port", type=int, default=0)
    parser.add_argument("--linode-port", type=int, default=0)
    parser.add_argument("--token", required=True)
    args = parser.parse_args(argv)
    fake_lambda, fake_linode = start_all(args.token, args.lambda_port, args.linode_port)
    out(json.dumps({"lambda": fake_lambda.url, "linode": fake_linode.url}))
    sys.stdout.flush()
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        fake_lambda.close()
        fake_linode.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
