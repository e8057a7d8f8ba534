"""SkyPilot clusters through the `sky` CLI (never imported: SkyPilot is not a dependency).

Detection: the `sky` executable from settings {"skyPath"} or PATH. Without it the provider
is unavailable with an install hint and nothing else is affected. `skyPath` names a program
to run, so an untrusted workspace's settings must not supply it.

Commands (each run with a timeout; failures map to ProviderError kinds, see `_failure`):
- list:      `sky status -o json` when the CLI accepts it (SkyPilot added `-o/--output
             json` in Feb 2026, skypilot-org/skypilot PR #8784), otherwise `sky status -v`
             and its table (`-v` shows full RESOURCES, with the GPUs, and HEAD_IP), and on
             CLIs without `-v` plain `sky status`. Which options are accepted is remembered
             per executable. `--refresh` is never used (slow, queries clouds), so a cluster
             autostopped on the cloud side may show stale until SkyPilot notices.
- create:    `sky launch -y -d -c NAME (--gpus TYPE | --instance-type TYPE) [--region R |
             --infra CLOUD/R] [--use-spot] [--disk-size N] [--image-id IMG]
             [--idle-minutes-to-autostop N] -- true`: the cluster is provisioned and runs
             `true` as its first job. TYPE is taken as an accelerator spec ("L4",
             "H100:8") when it has an upper-case letter and no dot, else as an instance
             type ("g6.xlarge"). N comes from settings {"idleMinutesToAutostop"}.
- start:     `sky start -y NAME`; stop: `sky stop -y NAME`; terminate: `sky down -y NAME`.
- autostop:  `sky autostop -y -i N [--down] NAME`; N <= 0 → `sky autostop -y --cancel NAME`.
After an operation the cluster is re-read with `sky status NAME`: SkyPilot prints
"Cluster(s) not found" and exits 0 for unknown names, so absence is checked there.

The `sky status` table (sky/utils/cli_utils/status_utils.py: a borderless, left-aligned
prettytable, columns separated by two or more spaces, cells may contain single spaces).
Columns are located by the header's offsets; the ones read are
  NAME, STATUS (INIT | UP | STOPPED | AUTOSTOPPING | PENDING), RESOURCES ("1x g6.xlarge" by
  default in current releases, which names no GPU; with `-v` the full
  "1x(gpus=L4:1, cpus=4, mem=16, g6.xlarge, disk=256)", "[spot]" before the parenthesis for
  spot; older "1x AWS(g6.xlarge, {'L4': 1})"), INFRA ("AWS/us-east-1", an interim
  "AWS (us-east-1)") or REGION (older releases), AUTOSTOP ("10m", "10m (down)", "(down)",
  "-"), LAUNCHED ("2 mins ago" or a date) and HEAD_IP (current releases, with `-v`).
Other columns (USER, USER_ID, WORKSPACE, COMMAND, ZONE) are ignored; rows end at the first
blank line, so the managed-jobs, services and pools sections that follow are not read.

`sky status -o json` prints a JSON list of cluster records (`[]` when none), but may print a
prose line such as "Cluster(s) not found: NAME." on stdout before it (skypilot-org/skypilot
issue #10713), so the JSON is looked for line by line. Records follow the API's
StatusResponse (sky/schemas/api/responses.py): "name", "status" ("UP"), "launched_at"
(epoch seconds), "autostop" (minutes, -1 = none), "to_down", "resources_str" /
"resources_str_full", "nodes", "cloud", "region", "accelerators"; an ISO "launched_at",
"autostop_minutes", "infra", "head_ip" and a {"clusters": [...]} wrapper are read too.

SkyPilot reports no price in `sky status` (table or JSON): pricePerHour is None (unknown)
unless settings give {"prices": {cluster: $/h}} (or a record carries a positive hourly cost).
"""

from __future__ import annotations

import datetime
import json
import os
import re
import shutil
import subprocess
import threading
import time
from typing import Any, Dict, List, Optional, Tuple

from .base import (
    Check,
    CreateRequest,
    Provider,
    ProviderError,
    Report,
    SshTarget,
    Vm,
    no_check,
    no_report,
)

INSTALL_HINT = (
    "Install SkyPilot (pip install skypilot) to manage clusters on any cloud, Kubernetes or Slurm"
)
STATUS_TIMEOUT = 120.0
OP_TIMEOUT = 900.0
LAUNCH_TIMEOUT = 3600.0

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07")
_STATES = {
    "UP": "running",
    "INIT": "pending",
    "PENDING": "pending",
    "STOPPED": "stopped",
    "AUTOSTOPPING": "stopping",
    "STOPPING": "stopping",
    "TERMINATED": "terminated",
}
# Remembered per sky executable (path, mtime): does `sky status -o json` / `-v` work?
_JSON_SUPPORT: Dict[Tuple[str, float], bool] = {}
_VERBOSE_SUPPORT: Dict[Tuple[str, float], bool] = {}


def strip_ansi(text: str) -> str:
    return _ANSI.sub("", text)


def map_status(status: str) -> str:
    word = status.strip().upper().rsplit(".", 1)[-1]  # "ClusterStatus.UP" -> "UP"
    return _STATES.get(word, "unknown")


# ---- parsing ----


def parse_resources(text: str) -> Dict[str, Any]:
    """Nodes, instance type, GPU model/count and spot from a RESOURCES cell (best effort)."""
    out: Dict[str, Any] = {"nodes": 1, "instance_type": None, "gpu_model": None, "gpus": 0}
    s = text.strip()
    out["spot"] = bool(re.search(r"\[spot\]|use_spot=true", s, re.IGNORECASE))
    m = re.match(r"^(\d+)\s*x\s*", s)
    if m:
        out["nodes"] = int(m.group(1))
        s = s[m.end() :]
    per_node = 0
    g = re.search(r"gpus=([^,:\s)]+):(\d+(?:\.\d+)?)", s) or re.search(
        r"\{'([^']+)':\s*(\d+(?:\.\d+)?)\}", s
    )
    if g is None:
        g = re.search(r"\{\"([^\"]+)\":\s*(\d+(?:\.\d+)?)\}", s)
    if g is not None:
        out["gpu_model"] = g.group(1)
        per_node = int(float(g.group(2)))
    inner = s
    p = re.search(r"\((.*)\)\s*$", s)
    if p is not None:
        inner = p.group(1)
    for piece in re.split(r",\s*(?![^{]*\})", inner):
        piece = re.sub(r"\[[^\]]*\]", "", piece).strip()
        if piece and not re.search(r"[=:{}()\s]", piece) and piece not in ("-", "..."):
            out["instance_type"] = piece
            break
    out["gpus"] = per_node * out["nodes"]
    return out


_UNITS = {
    "sec": 1,
    "second": 1,
    "min": 60,
    "minute": 60,
    "hr": 3600,
    "hour": 3600,
    "day": 86400,
    "week": 7 * 86400,
    "month": 30 * 86400,
    "yr": 365 * 86400,
    "year": 365 * 86400,
}


def parse_launched(text: str, now: Optional[float] = None) -> Optional[float]:
    """'2 mins ago', 'a few secs ago', 'just now', '2025-01-02 10:00:00' -> unix seconds."""
    now = time.time() if now is None else now
    s = text.strip().lower()
    if not s or s == "-":
        return None
    if s in ("just now", "now"):
        return now
    m = re.match(r"^(a few|an?|\d+)\s+([a-z]+?)s?\s+ago$", s)
    if m:
        amount = m.group(1)
        n = 1 if amount in ("a", "an") else (5 if amount == "a few" else int(amount))
        unit = _UNITS.get(m.group(2))
        return now - n * unit if unit is not None else None
    for fmt in ("%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d"):
        try:
            return time.mktime(time.strptime(text.strip(), fmt))
        except ValueError:
            continue
    return None


def parse_status_table(output: str) -> List[Dict[str, str]]:
    """Rows of the first cluster table in `sky status` output as {COLUMN: cell}."""
    lines = strip_ansi(output).splitlines()
    header_at = -1
    for i, line in enumerate(lines):
        if line.lstrip().startswith("NAME") and "STATUS" in line.split():
            header_at = i
            break
    if header_at < 0:
        return []
    header = lines[header_at]
    cols = [(m.start(), m.group(0)) for m in re.finditer(r"\S+(?: \S+)*", header)]
    rows: List[Dict[str, str]] = []
    for line in lines[header_at + 1 :]:
        if not line.strip():
            break
        cells = _slice_row(line, cols)
        if cells is None:
            continue
        rows.append(cells)
    return rows


def _slice_row(line: str, cols: List[Tuple[int, str]]) -> Optional[Dict[str, str]]:
    aligned = all(start == 0 or line[start - 1 : start] in (" ", "") for start, _ in cols)
    if aligned:
        cells: Dict[str, str] = {}
        for i, (start, name) in enumerate(cols):
            end = cols[i + 1][0] if i + 1 < len(cols) else len(line)
            cells[name] = line[start:end].strip()
        return cells
    parts = re.split(r"\s{2,}", line.strip())
    if len(parts) == len(cols):
        return {name: part for (_, name), part in zip(cols, parts)}
    return None


def _infra_region(cell: str) -> Optional[str]:
    s = cell.strip()
    if not s or s == "-":
        return None
    m = re.match(r"^(\S+)\s*\((.*)\)$", s)
    if m:
        return "%s/%s" % (m.group(1), m.group(2).replace(", ", "/"))
    return s


def is_accelerator_spec(value: str) -> bool:
    return bool(re.match(r"^[A-Za-z0-9-]+(:\d+(\.\d+)?)?$", value)) and any(
        c.isupper() for c in value
    )


class SkyPilotProvider(Provider):
    name = "skypilot"
    display_name = "SkyPilot"
    capabilities: List[str] = ["create", "start", "stop", "terminate", "spot"]
    credential_fields: List[str] = []
    stop_keeps_billing = False
    notes = [
        "Uses the `sky` CLI and its own cloud credentials (`sky check`).",
        "A stopped cluster keeps its disks, which the cloud still bills.",
        "Prices are not reported by `sky status`; costs are unknown unless set in settings.",
        "Autostop runs on the cluster itself (`sky autostop`), so it works with the laptop "
        "off; it counts jobs and SSH sessions, not GPU use.",
    ]

    # ---- detection ----

    def sky_path(self) -> Optional[str]:
        configured = self.settings.get("skyPath")
        if configured:
            path = os.path.expanduser(str(configured))
            if os.path.isfile(path) and os.access(path, os.X_OK):
                return path
            return shutil.which(path)
        return shutil.which("sky")

    def availability(self, credentials: Dict[str, str]) -> Optional[str]:
        return None if self.sky_path() else INSTALL_HINT

    def info(self, credentials: Dict[str, str]) -> Dict[str, Any]:
        result = super().info(credentials)
        if not result["available"]:
            result["capabilities"] = []
        return result

    # ---- running sky ----

    def _timeout(self, key: str, default: float) -> float:
        try:
            return float(self.settings.get(key, default))
        except (TypeError, ValueError):
            return default

    def _run(
        self,
        args: List[str],
        timeout: float,
        check: Check = no_check,
        report: Optional[Report] = None,
    ) -> Tuple[int, str, str]:
        exe = self.sky_path()
        if not exe:
            raise ProviderError("ProviderUnavailable", "SkyPilot is not installed", INSTALL_HINT)
        try:
            proc = subprocess.Popen(
                [exe, *args],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,
            )
        except OSError as e:
            raise ProviderError(
                "ProviderUnavailable",
                "Cannot run sky: %s" % (e.strerror or e),
                INSTALL_HINT,
            ) from None
        out: List[str] = []
        err: List[str] = []

        pending: List[str] = []  # stdout lines for `report`, sent from this thread

        def pump(stream: Any, sink: List[str], forward: bool) -> None:
            for raw in iter(stream.readline, b""):
                line = raw.decode("utf-8", "replace")
                sink.append(line)
                if forward and report is not None:
                    text = strip_ansi(line).strip()
                    if text:
                        pending.append(text[:300])
            stream.close()

        def flush() -> None:
            while pending and report is not None:
                try:
                    report(pending.pop(0))
                except Exception:
                    pass

        readers = [
            threading.Thread(target=pump, args=(proc.stdout, out, True), daemon=True),
            threading.Thread(target=pump, args=(proc.stderr, err, False), daemon=True),
        ]
        for r in readers:
            r.start()
        end = time.monotonic() + timeout
        try:
            while True:
                try:
                    proc.wait(0.1)
                    break
                except subprocess.TimeoutExpired:
                    pass
                flush()
                check()
                if time.monotonic() > end:
                    raise ProviderError(
                        "ProviderUnavailable",
                        "sky %s timed out after %g s" % (args[0], timeout),
                        "SkyPilot may still be working; see `sky status` and `sky api logs`.",
                    )
        except BaseException:
            _stop(proc)
            raise
        for r in readers:
            r.join(5)
        flush()
        return proc.returncode, "".join(out), "".join(err)

    def _sky(
        self,
        args: List[str],
        timeout: float,
        check: Check = no_check,
        report: Optional[Report] = None,
    ) -> str:
        code, out, err = self._run(args, timeout, check, report)
        if code != 0:
            raise _failure(args[0], code, out, err)
        return out

    # ---- reading clusters ----

    def _json_key(self) -> Optional[Tuple[str, float]]:
        exe = self.sky_path()
        if not exe:
            return None
        try:
            return exe, os.stat(exe).st_mtime
        except OSError:
            return exe, 0.0

    def status(self, names: Optional[List[str]] = None, check: Check = no_check) -> List[Vm]:
        timeout = self._timeout("statusTimeout", STATUS_TIMEOUT)
        names = list(names or [])
        key = self._json_key()
        if key is not None and _JSON_SUPPORT.get(key, True):
            code, out, err = self._run(["status", "-o", "json", *names], timeout, check)
            if code == 0:
                records = _json_records(out)
                if records is not None:
                    _JSON_SUPPORT[key] = True
                    return [v for v in (self._vm_from_record(r) for r in records) if v]
            if code == 0 or _option_rejected(out + err):
                _JSON_SUPPORT[key] = False
            else:
                raise _failure("status", code, out, err)
        if key is not None and _VERBOSE_SUPPORT.get(key, True):
            code, out, err = self._run(["status", "-v", *names], timeout, check)
            if code == 0:
                _VERBOSE_SUPPORT[key] = True
                return self._vms_from_table(out)
            if not _option_rejected(out + err):
                raise _failure("status", code, out, err)
            _VERBOSE_SUPPORT[key] = False
        return self._vms_from_table(self._sky(["status", *names], timeout, check))

    def _vms_from_table(self, out: str) -> List[Vm]:
        return [v for v in (self._vm_from_row(r) for r in parse_status_table(out)) if v]

    def list(self, credentials: Dict[str, str], check: Check = no_check) -> List[Vm]:
        return self.status(None, check)

    def refresh(self, credentials: Dict[str, str], vm_id: str, check: Check = no_check) -> Vm:
        for vm in self.status([vm_id], check):
            if vm.id == vm_id:
                return vm
        raise ProviderError("NotFound", "No SkyPilot cluster %s" % vm_id, "See `sky status`.")

    def _price(self, name: str, record: Optional[Dict[str, Any]] = None) -> Optional[float]:
        prices: Any = self.settings.get("prices") or {}
        if isinstance(prices, dict):
            value = prices.get(name)
            if isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0:
                return float(value)
        for k in ("price_per_hour", "cost_per_hour", "hourly_cost"):
            value = (record or {}).get(k)
            # 0 from SkyPilot means "not known" (e.g. Kubernetes), never free.
            if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
                return float(value)
        return None

    def _make_vm(
        self,
        name: str,
        status: str,
        resources: str,
        region: Optional[str],
        launched_at: Optional[float],
        autostop: Optional[str],
        address: Optional[str],
        record: Optional[Dict[str, Any]] = None,
    ) -> Vm:
        state = map_status(status)
        res = parse_resources(resources)
        caps = {
            "running": ["stop", "terminate"],
            "stopped": ["start", "terminate"],
        }.get(state, ["terminate"])
        if res["spot"] and "stop" in caps:
            caps.remove("stop")  # SkyPilot cannot stop spot clusters (except on GCP)
        detail = None
        if autostop and autostop not in ("-", ""):
            detail = "autostop %s" % autostop
        return Vm(
            self.name,
            name,
            name,
            state,
            instance_type=res["instance_type"],
            gpu_model=res["gpu_model"],
            gpu_count=res["gpus"],
            region=region,
            price_per_hour=self._price(name, record),
            spot=res["spot"],
            launched_at=launched_at,
            address=address,
            # SkyPilot writes a Host entry named after each cluster into its ssh config (an
            # Include in ~/.ssh/config): `ssh <cluster>` is how its docs connect, and it
            # carries the user, key and port (and jump hosts on Kubernetes).
            ssh=SshTarget(address or name, alias=name) if state == "running" else None,
            capabilities=caps,
            stop_keeps_billing=self.stop_keeps_billing,
            detail=detail,
        )

    def _vm_from_row(self, row: Dict[str, str]) -> Optional[Vm]:
        name = row.get("NAME", "").strip()
        if not name:
            return None
        region = _infra_region(row.get("INFRA", "")) or _infra_region(row.get("REGION", ""))
        address = row.get("HEAD_IP") or None
        return self._make_vm(
            name,
            row.get("STATUS", ""),
            row.get("RESOURCES", ""),
            region,
            parse_launched(row.get("LAUNCHED", "")),
            row.get("AUTOSTOP"),
            None if address in (None, "-") else address,
        )

    def _vm_from_record(self, r: Dict[str, Any]) -> Optional[Vm]:
        name = r.get("name") or r.get("cluster_name")
        if not isinstance(name, str) or not name:
            return None
        resources = ""
        for k in ("resources_str_full", "resources_str", "resources"):
            value = r.get(k)
            if isinstance(value, str) and value.strip():
                resources = value
                break
        address = r.get("head_ip")
        vm = self._make_vm(
            name,
            str(r.get("status") or ""),
            resources,
            _record_region(r),
            _record_time(r.get("launched_at")),
            _record_autostop(r),
            address if isinstance(address, str) and address not in ("", "-") else None,
            r,
        )
        if not vm.gpu_count:
            acc = parse_accelerators(r.get("accelerators"))
            if acc is not None:
                nodes = r.get("nodes")
                if not isinstance(nodes, int) or isinstance(nodes, bool) or nodes < 1:
                    nodes = parse_resources(resources)["nodes"]
                vm.gpu_model, vm.gpu_count = acc[0], int(acc[1] * nodes)
        return vm

    # ---- operations ----

    def create(
        self,
        credentials: Dict[str, str],
        request: CreateRequest,
        check: Check = no_check,
        report: Report = no_report,
    ) -> Vm:
        if not re.match(r"^[a-z]([-a-z0-9]*[a-z0-9])?$", request.name):
            raise ProviderError(
                "ProviderRequest",
                "Invalid SkyPilot cluster name %r" % request.name,
                "Use lower-case letters, digits and dashes, starting with a letter.",
            )
        args = self.launch_args(request)
        report("sky launch %s" % request.name)
        self._sky(args, self._timeout("launchTimeout", LAUNCH_TIMEOUT), check, report)
        return self.refresh(credentials, request.name, check)

    def launch_args(self, request: CreateRequest) -> List[str]:
        args = ["launch", "-y", "-d", "-c", request.name]
        kind = request.instance_type.strip()
        if kind:
            args += ["--gpus" if is_accelerator_spec(kind) else "--instance-type", kind]
        region = (request.region or "").strip()
        if region and region.lower() not in ("any", "auto", "-"):
            args += ["--infra", region] if "/" in region else ["--region", region]
        if request.spot:
            args.append("--use-spot")
        if request.disk_gib:
            args += ["--disk-size", str(int(request.disk_gib))]
        if request.image:
            args += ["--image-id", request.image]
        idle = self.settings.get("idleMinutesToAutostop")
        if isinstance(idle, int) and not isinstance(idle, bool) and idle > 0:
            args += ["--idle-minutes-to-autostop", str(idle)]
        return [*args, "--", "true"]

    def _after(self, vm_id: str, check: Check) -> Vm:
        vms = [v for v in self.status([vm_id], check) if v.id == vm_id]
        if not vms:
            raise ProviderError("NotFound", "No SkyPilot cluster %s" % vm_id, "See `sky status`.")
        return vms[0]

    def start(self, credentials: Dict[str, str], vm_id: str, check: Check = no_check) -> Vm:
        self._sky(["start", "-y", vm_id], self._timeout("opTimeout", OP_TIMEOUT), check)
        return self._after(vm_id, check)

    def stop(self, credentials: Dict[str, str], vm_id: str, check: Check = no_check) -> Vm:
        self._sky(["stop", "-y", vm_id], self._timeout("opTimeout", OP_TIMEOUT), check)
        return self._after(vm_id, check)

    def terminate(self, credentials: Dict[str, str], vm_id: str, check: Check = no_check) -> Vm:
        before = [v for v in self.status([vm_id], check) if v.id == vm_id]
        if not before:
            raise ProviderError("NotFound", "No SkyPilot cluster %s" % vm_id, "See `sky status`.")
        self._sky(["down", "-y", vm_id], self._timeout("opTimeout", OP_TIMEOUT), check)
        left = [v for v in self.status([vm_id], check) if v.id == vm_id]
        if left:
            return left[0]
        vm = before[0]
        vm.state = "terminated"
        vm.capabilities = []
        return vm

    def autostop(
        self,
        credentials: Dict[str, str],
        vm_id: str,
        idle_minutes: int,
        down: bool = False,
        check: Check = no_check,
    ) -> Vm:
        """Set (or with idle_minutes <= 0 cancel) SkyPilot's on-cluster autostop."""
        if idle_minutes <= 0:
            args = ["autostop", "-y", "--cancel", vm_id]
        else:
            args = ["autostop", "-y", "-i", str(int(idle_minutes))]
            if down:
                args.append("--down")
            args.append(vm_id)
        self._sky(args, self._timeout("opTimeout", OP_TIMEOUT), check)
        return self._after(vm_id, check)


def _stop(proc: "subprocess.Popen[bytes]") -> None:
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(3)
    except subprocess.TimeoutExpired:
        proc.kill()
        try:
            proc.wait(3)
        except subprocess.TimeoutExpired:
            pass


def _json_records(out: str) -> Optional[List[Dict[str, Any]]]:
    """The cluster records in `sky status -o json` output, skipping prose printed before it."""
    text = strip_ansi(out)
    decoder = json.JSONDecoder()
    for m in re.finditer(r"^[ \t]*([\[{])", text, re.MULTILINE):
        try:
            data, _end = decoder.raw_decode(text, m.start(1))
        except ValueError:
            continue
        if isinstance(data, dict):
            lists = [
                data[k] for k in ("clusters", "records", "data") if isinstance(data.get(k), list)
            ]
            if not lists:
                continue
            data = lists[0]
        if isinstance(data, list) and all(isinstance(r, dict) for r in data):
            return list(data)
    return None


def parse_accelerators(value: Any) -> Optional[Tuple[str, float]]:
    """(model, count per node) from "L4:1", "L4", "{'L4': 1}" or {"L4": 1}; None if none."""
    if isinstance(value, dict) and value:
        model, count = next(iter(value.items()))
        if isinstance(count, (int, float)) and not isinstance(count, bool):
            return str(model), float(count)
        return None
    if not isinstance(value, str) or value.strip() in ("", "-", "None", "{}"):
        return None
    s = value.strip()
    m = re.search(r"[\"']([^\"']+)[\"']\s*:\s*(\d+(?:\.\d+)?)", s)
    if m is None:
        m = re.match(r"^([A-Za-z0-9][A-Za-z0-9_.-]*)(?::(\d+(?:\.\d+)?))?$", s)
    if m is None:
        return None
    return m.group(1), float(m.group(2) or 1)


def _record_region(r: Dict[str, Any]) -> Optional[str]:
    infra = r.get("infra")
    if isinstance(infra, str) and infra.strip():
        return _infra_region(infra)
    parts = [str(r[k]).strip() for k in ("cloud", "region") if r.get(k)]
    parts = [p for p in parts if p and p != "-"]
    return "/".join(parts) or None


def _record_time(value: Any) -> Optional[float]:
    """Epoch seconds (number or numeric string) or ISO 8601 ("2026-02-04T10:00:00Z")."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        return float(value) if value > 0 else None
    if not isinstance(value, str) or not value.strip():
        return None
    s = value.strip()
    try:
        return float(s)
    except ValueError:
        pass
    try:
        when = datetime.datetime.fromisoformat(s[:-1] + "+00:00" if s.endswith("Z") else s)
    except ValueError:
        return parse_launched(s)
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.timezone.utc)
    return when.timestamp()


def _record_autostop(r: Dict[str, Any]) -> Optional[str]:
    """The AUTOSTOP cell status_utils would show for a record ("10m", "10m (down)", ...)."""
    minutes = r.get("autostop")
    if minutes is None:
        minutes = r.get("autostop_minutes")
    if isinstance(minutes, str):
        return minutes.strip() or None
    text = ""
    if isinstance(minutes, (int, float)) and not isinstance(minutes, bool) and minutes >= 0:
        text = "%dm" % minutes
    if r.get("to_down") is True:
        text = (text + " (down)").strip()
    return text or None


def _option_rejected(text: str) -> bool:
    low = text.lower()
    return "no such option" in low or "usage:" in low


_FAILURES: List[Tuple[str, str, Optional[str]]] = [
    (
        r"not supported|notsupportederror|cannot be stopped",
        "Unsupported",
        "SkyPilot cannot do this for this cluster (spot clusters cannot be stopped).",
    ),
    (r"cluster\(s\) not found|does not exist|not found", "NotFound", "See `sky status`."),
    (
        r"resourcesunavailable|failed to provision|insufficient.*capacity|quota|"
        r"no launchable resource",
        "ProviderQuota",
        "Try another GPU type, region or cloud, or retry later.",
    ),
    (
        r"nocloudaccess|no cloud access|credential|not enabled|sky check|permission denied",
        "ProviderAuth",
        "Run `sky check` to set up cloud access.",
    ),
    (r"rate limit|too many requests|\b429\b", "ProviderRateLimited", "Retry in a minute."),
    (
        r"no such option|invalid value|missing argument|usage:",
        "ProviderRequest",
        "This SkyPilot version does not accept the command; check `sky --version`.",
    ),
    (
        r"api server|apiserver|connection refused|could not connect",
        "ProviderUnavailable",
        "Check the SkyPilot API server (`sky api status`, `sky api logs`).",
    ),
]


def _failure(command: str, code: int, out: str, err: str) -> ProviderError:
    text = strip_ansi(err + "\n" + out)
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    last = lines[-1][:300] if lines else "exit %d" % code
    for pattern, kind, hint in _FAILURES:
        if re.search(pattern, text, re.IGNORECASE):
            return ProviderError(kind, "sky %s failed: %s" % (command, last), hint)
    return ProviderError(
        "ProviderUnavailable",
        "sky %s failed: %s" % (command, last),
        "See `sky status` and `sky api logs`.",
        detail="\n".join(lines[-20:]) or None,
    )
