"""Machines the user reaches over SSH: hosts from ~/.ssh/config plus hosts from settings.

Nothing here creates, starts or stops a machine, and the user's SSH config is only read,
never written. A host's state is its reachability: a TCP connect to host:port with a short
timeout, then (when something answers) `ssh -o BatchMode=yes -o ConnectTimeout=5
-o StrictHostKeyChecking=yes <alias> true` under a timeout. "running" means ssh works;
anything else is "unknown" with a detail ("unreachable: connection refused", "ssh
authentication failed", "host key not trusted yet: connect to check it", ...). Listing never
trusts a host key: a new key is shown to the user (with its fingerprint) when they connect. Hosts are checked in parallel threads under an overall
deadline; when ssh works, `nvidia-smi --query-gpu=name --format=csv,noheader` is run over
the same kind of ssh call (short timeout, optional) for the GPU model and count.

Config parsing follows ssh_config(5) as far as listing needs:
- keywords are case-insensitive, `Keyword value` or `Keyword=value`, double quotes group;
- `Host` lines may carry several patterns; names without `*`/`?` and not negated (`!x`)
  are hosts; wildcard-only lines (`Host *`, `Host *.corp`) add no host but their settings
  apply to the hosts they match; a line with a matching negation does not apply;
- for each host the first value obtained for a keyword wins, over all applying blocks in
  file order (as ssh does);
- `Match` blocks are skipped (their conditions, e.g. `exec`, cannot be evaluated safely),
  including any `Include` inside them;
- `Include` takes one or more paths with globs (sorted), `~` expanded, relative paths
  relative to ~/.ssh; an Include inside a Host block applies that block's condition to
  the included lines; nesting stops at depth 16 (ssh's own limit);
- `HostName` (%h = the alias, %% = %), `Port`, `User`, `IdentityFile` (first one; `~` and
  the tokens %d %h %u %r %n %p %% expanded best-effort) and `ProxyJump`/`ProxyCommand`
  (then the direct TCP probe is skipped: only ssh can tell).

Settings (non-secret): {"configFile": path} (default ~/.ssh/config; also passed to ssh as
`-F` when set), {"sshDir": path} (base for relative Includes, default ~/.ssh),
{"hosts": ["user@host:port", "host", "[::1]:2222", ...]}, {"prices": {alias: $/h}},
{"sshPath": path}, {"connectTimeout": s} (default 5), {"probeTimeout": s} (per ssh call,
default 10), {"deadline": s} (whole list, default 15), {"gpuQuery": bool} (default true).
`sshPath`, `configFile` and `sshDir` make ssh run a program or read a config that may hold
ProxyCommand/LocalCommand: an untrusted workspace's settings must not supply them.
"""

from __future__ import annotations

import glob
import os
import re
import shutil
import socket
import subprocess
import threading
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

from .base import Check, Provider, ProviderError, SshTarget, Vm, no_check
from .local import summarize_gpus

MAX_INCLUDE_DEPTH = 16
DEFAULT_CONNECT_TIMEOUT = 5.0
DEFAULT_PROBE_TIMEOUT = 10.0
DEFAULT_DEADLINE = 15.0
GPU_QUERY = "nvidia-smi --query-gpu=name --format=csv,noheader"

# A block condition: every pattern list must match; None means "never applies" (Match).
Cond = Optional[Tuple[Tuple[str, ...], ...]]


class SshHost:
    """One host as resolved from the config or settings."""

    __slots__ = ("alias", "hostname", "identity_file", "port", "proxy", "source", "user")

    def __init__(
        self,
        alias: str,
        hostname: str,
        port: int = 22,
        user: Optional[str] = None,
        identity_file: Optional[str] = None,
        proxy: bool = False,
        source: str = "config",
    ) -> None:
        self.alias = alias
        self.hostname = hostname
        self.port = port
        self.user = user
        self.identity_file = identity_file
        self.proxy = proxy
        self.source = source  # "config" | "settings"

    def __repr__(self) -> str:
        return "SshHost(%r, %r, %r, %r, %r)" % (
            self.alias,
            self.hostname,
            self.port,
            self.user,
            self.identity_file,
        )


# ---- config parsing ----


def split_args(text: str) -> List[str]:
    """Split a value on whitespace; double quotes group (as ssh's argv_split does)."""
    out: List[str] = []
    cur: List[str] = []
    quoted = False
    started = False
    for ch in text:
        if ch == '"':
            quoted = not quoted
            started = True
        elif ch.isspace() and not quoted:
            if started:
                out.append("".join(cur))
                cur = []
                started = False
        else:
            cur.append(ch)
            started = True
    if started:
        out.append("".join(cur))
    return out


_LINE = re.compile(r"^([A-Za-z][A-Za-z0-9_-]*)(?:\s*=\s*|\s+|$)(.*)$")


def parse_line(line: str) -> Optional[Tuple[str, List[str]]]:
    """(lower-cased keyword, args) or None for blank lines, comments and junk."""
    line = line.strip()
    if not line or line.startswith("#"):
        return None
    m = _LINE.match(line)
    if m is None:
        return None
    return m.group(1).lower(), split_args(m.group(2))


def _pattern_regex(pattern: str) -> "re.Pattern[str]":
    parts = []
    for ch in pattern:
        if ch == "*":
            parts.append(".*")
        elif ch == "?":
            parts.append(".")
        else:
            parts.append(re.escape(ch))
    return re.compile("".join(parts), re.IGNORECASE | re.DOTALL)


def patterns_match(patterns: Tuple[str, ...], name: str) -> bool:
    """ssh's match_pattern_list: a negated match vetoes; otherwise any positive match."""
    positive = False
    for p in patterns:
        negated = p.startswith("!")
        body = p[1:] if negated else p
        if _pattern_regex(body).fullmatch(name):
            if negated:
                return False
            positive = True
    return positive


def cond_matches(cond: Cond, name: str) -> bool:
    if cond is None:
        return False
    return all(patterns_match(pl, name) for pl in cond)


def is_wildcard(pattern: str) -> bool:
    return "*" in pattern or "?" in pattern


class SshConfig:
    """A parsed ssh config: ordered (condition, keyword, args) entries and host aliases."""

    def __init__(self, ssh_dir: str, home: Optional[str] = None) -> None:
        self.ssh_dir = ssh_dir
        self.home = home or os.path.expanduser("~")
        self.entries: List[Tuple[Cond, str, List[str]]] = []
        self.aliases: List[str] = []
        self.warnings: List[str] = []
        self._seen: Dict[str, None] = {}

    @classmethod
    def load(cls, path: str, ssh_dir: Optional[str] = None) -> SshConfig:
        cfg = cls(ssh_dir or os.path.join(os.path.expanduser("~"), ".ssh"))
        cfg.read_file(path, (), 0)
        return cfg

    @classmethod
    def from_text(cls, text: str, ssh_dir: str) -> SshConfig:
        cfg = cls(ssh_dir)
        cfg.read_lines(text.splitlines(), (), 0, "<text>")
        return cfg

    def read_file(self, path: str, outer: Cond, depth: int) -> None:
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                lines = f.read().splitlines()
        except OSError as e:
            if depth == 0 and not isinstance(e, FileNotFoundError):
                self.warnings.append("cannot read %s: %s" % (path, e.strerror or e))
            return
        self.read_lines(lines, outer, depth, path)

    def read_lines(self, lines: List[str], outer: Cond, depth: int, source: str) -> None:
        current: Cond = outer
        for raw in lines:
            parsed = parse_line(raw)
            if parsed is None:
                continue
            keyword, args = parsed
            if keyword == "host":
                current = None if outer is None else (*outer, tuple(args))
                if current is not None:
                    for name in args:
                        if name.startswith("!") or is_wildcard(name):
                            continue
                        if cond_matches(current, name) and name.lower() not in self._seen:
                            self._seen[name.lower()] = None
                            self.aliases.append(name)
            elif keyword == "match":
                current = None  # skipped: its criteria cannot be evaluated safely
            elif keyword == "include":
                if current is None:
                    continue
                if depth + 1 > MAX_INCLUDE_DEPTH:
                    self.warnings.append("Include nested too deeply in %s" % source)
                    continue
                for arg in args:
                    for path in self._include_paths(arg):
                        self.read_file(path, current, depth + 1)
            else:
                self.entries.append((current, keyword, args))

    def _include_paths(self, arg: str) -> List[str]:
        path = os.path.expanduser(arg) if arg.startswith("~") else arg
        if not os.path.isabs(path):
            path = os.path.join(self.ssh_dir, path)
        if glob.has_magic(path):
            return sorted(p for p in glob.glob(path) if os.path.isfile(p))
        return [path]

    def lookup(self, alias: str) -> Dict[str, List[str]]:
        """First value per keyword over the entries that apply to `alias` (ssh semantics)."""
        found: Dict[str, List[str]] = {}
        for cond, keyword, args in self.entries:
            if keyword in found or not args:
                continue
            if cond_matches(cond, alias):
                found[keyword] = args
        return found

    def host(self, alias: str, local_user: Optional[str] = None) -> SshHost:
        opts = self.lookup(alias)
        hostname = alias
        if "hostname" in opts:
            hostname = expand_tokens(opts["hostname"][0], {"h": alias}) or alias
        port = 22
        if "port" in opts:
            try:
                port = int(opts["port"][0])
            except ValueError:
                port = 22
        user = opts["user"][0] if "user" in opts else None
        identity: Optional[str] = None
        if "identityfile" in opts and opts["identityfile"][0].lower() != "none":
            identity = expand_path(
                opts["identityfile"][0],
                {
                    "d": self.home,
                    "h": hostname,
                    "u": local_user or _local_user(),
                    "r": user or local_user or _local_user(),
                    "n": alias,
                    "p": str(port),
                },
                self.home,
            )
        proxy = any(
            k in opts and opts[k][0].lower() != "none" for k in ("proxyjump", "proxycommand")
        )
        return SshHost(alias, hostname, port, user, identity, proxy, "config")

    def hosts(self) -> List[SshHost]:
        return [self.host(a) for a in self.aliases]


def expand_tokens(value: str, tokens: Dict[str, str]) -> str:
    """Replace %x tokens that are known; %% becomes %; unknown tokens are left alone."""

    def repl(m: "re.Match[str]") -> str:
        key = m.group(1)
        if key == "%":
            return "%"
        return tokens.get(key, m.group(0))

    return re.sub(r"%(.)", repl, value)


def expand_path(value: str, tokens: Dict[str, str], home: str) -> str:
    if value == "~" or value.startswith("~/"):
        value = home + value[1:]
    elif value.startswith("~"):
        value = os.path.expanduser(value)
    return expand_tokens(value, tokens)


def _local_user() -> str:
    for var in ("USER", "LOGNAME", "USERNAME"):
        if os.environ.get(var):
            return os.environ[var]
    try:
        import getpass

        return getpass.getuser()
    except Exception:
        return ""


def host_from_object(spec: Dict[str, Any]) -> Optional[SshHost]:
    """A host from the setting's object form: {"name", "host", "port", "user", "identityFile"}."""
    host = spec.get("host")
    if not isinstance(host, str) or not host.strip():
        return None
    name = spec.get("name")
    port = spec.get("port", 22)
    if not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536:
        port = 22
    user = spec.get("user")
    identity = spec.get("identityFile")
    return SshHost(
        name.strip() if isinstance(name, str) and name.strip() else host.strip(),
        host.strip(),
        port,
        user if isinstance(user, str) and user else None,
        os.path.expanduser(identity) if isinstance(identity, str) and identity else None,
        False,
        "settings",
    )


def parse_host_spec(spec: str) -> Optional[SshHost]:
    """ "user@host:port", "host", "[::1]:2222" -> SshHost (alias = the spec as given)."""
    text = spec.strip()
    if not text or any(c.isspace() for c in text) or text.startswith("-"):
        return None
    user: Optional[str] = None
    rest = text
    if "@" in rest:
        user, rest = rest.rsplit("@", 1)
        user = user or None
    port = 22
    host = rest
    if rest.startswith("["):
        end = rest.find("]")
        if end < 0:
            return None
        host = rest[1:end]
        tail = rest[end + 1 :]
        if tail:
            if not tail.startswith(":") or not tail[1:].isdigit():
                return None
            port = int(tail[1:])
    elif rest.count(":") == 1:
        host, port_text = rest.split(":")
        if not port_text.isdigit():
            return None
        port = int(port_text)
    if not host or not (0 < port < 65536) or host.startswith("-"):
        return None
    return SshHost(text, host, port, user, None, False, "settings")


# ---- probing ----


class Probe:
    __slots__ = ("detail", "gpu_count", "gpu_model", "state")

    def __init__(
        self,
        state: str,
        detail: Optional[str] = None,
        gpu_model: Optional[str] = None,
        gpu_count: int = 0,
    ) -> None:
        self.state = state
        self.detail = detail
        self.gpu_model = gpu_model
        self.gpu_count = gpu_count


def tcp_check(host: str, port: int, timeout: float) -> Optional[str]:
    """None when something accepts a TCP connection; otherwise why not."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return None
    except socket.gaierror:
        return "unknown host name"
    except ConnectionRefusedError:
        return "connection refused"
    except socket.timeout:
        return "timed out"
    except OSError as e:
        return (e.strerror or str(e) or "connection failed").lower()


def classify_ssh_failure(stderr: str) -> str:
    low = stderr.lower()
    if "permission denied" in low or "too many authentication failures" in low:
        return "ssh authentication failed"
    if "identification has changed" in low:
        return "ssh host key changed: check with the provider, then fix known_hosts"
    if "host key verification failed" in low:
        return "host key not trusted yet: connect to check it"
    if "connection refused" in low:
        return "unreachable: connection refused"
    if "timed out" in low:
        return "unreachable: timed out"
    if "could not resolve hostname" in low:
        return "unreachable: unknown host name"
    if "no route to host" in low:
        return "unreachable: no route to host"
    if "connection closed" in low or "connection reset" in low:
        return "ssh connection closed by the host"
    lines = [ln for ln in stderr.strip().splitlines() if ln.strip()]
    return "ssh failed: %s" % (lines[-1][:200] if lines else "exit 255")


class SshProvider(Provider):
    name = "ssh"
    display_name = "SSH hosts"
    _object_prices: Dict[str, float]
    capabilities: List[str] = []
    credential_fields: List[str] = []
    notes = [
        "Hosts come from ~/.ssh/config (read only, never rewritten) and the extra hosts in "
        "settings; they cannot be created, started or stopped from here.",
        "State is reachability: running means ssh works (BatchMode, key auth).",
    ]

    # ---- settings ----

    def _config_path(self) -> str:
        configured = self.settings.get("configFile")
        if configured:
            return os.path.expanduser(str(configured))
        return os.path.join(os.path.expanduser("~"), ".ssh", "config")

    def _float(self, key: str, default: float) -> float:
        try:
            return float(self.settings.get(key, default))
        except (TypeError, ValueError):
            return default

    def _ssh_exe(self) -> Optional[str]:
        configured = self.settings.get("sshPath")
        if configured:
            return str(configured)
        return shutil.which("ssh")

    # ---- hosts ----

    def hosts(self) -> List[SshHost]:
        self._object_prices = {}
        ssh_dir = self.settings.get("sshDir")
        cfg = SshConfig.load(
            self._config_path(), os.path.expanduser(str(ssh_dir)) if ssh_dir else None
        )
        out = cfg.hosts()
        seen = {h.alias.lower() for h in out}
        extra: Any = self.settings.get("hosts") or []
        if isinstance(extra, list):
            for spec in extra:
                if isinstance(spec, str):
                    host = parse_host_spec(spec)
                elif isinstance(spec, dict):
                    host = host_from_object(spec)
                    price = spec.get("pricePerHour")
                    if host is not None and isinstance(price, (int, float)) and price >= 0:
                        self._object_prices[host.alias] = float(price)
                else:
                    host = None
                if host is not None and host.alias.lower() not in seen:
                    seen.add(host.alias.lower())
                    out.append(host)
        return out

    def _price(self, alias: str) -> Optional[float]:
        object_prices: Dict[str, float] = getattr(self, "_object_prices", {})
        if alias in object_prices:
            return object_prices[alias]
        prices: Any = self.settings.get("prices") or {}
        if isinstance(prices, dict):
            value = prices.get(alias)
            if isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0:
                return float(value)
        return None

    def _vm(self, host: SshHost, probe: Probe) -> Vm:
        return Vm(
            self.name,
            host.alias,
            host.alias,
            probe.state,
            gpu_model=probe.gpu_model,
            gpu_count=probe.gpu_count,
            price_per_hour=self._price(host.alias),
            address=host.hostname,
            ssh=SshTarget(
                host.hostname,
                host.port,
                host.user,
                host.identity_file,
                host.alias if host.source == "config" else None,
            ),
            capabilities=[],
            detail=probe.detail,
        )

    # ---- operations ----

    def list(self, credentials: Dict[str, str], check: Check = no_check) -> List[Vm]:
        check()
        hosts = self.hosts()
        probes = self._probe_all(hosts, check)
        return [self._vm(h, p) for h, p in zip(hosts, probes)]

    def refresh(self, credentials: Dict[str, str], vm_id: str, check: Check = no_check) -> Vm:
        for host in self.hosts():
            if host.alias == vm_id:
                return self._vm(host, self._probe_all([host], check)[0])
        raise ProviderError("NotFound", "No SSH host %s" % vm_id)

    def _probe_all(self, hosts: List[SshHost], check: Check) -> List[Probe]:
        deadline = self._float("deadline", DEFAULT_DEADLINE)
        results: List[Optional[Probe]] = [None] * len(hosts)
        slots = threading.BoundedSemaphore(16)

        def work(i: int, host: SshHost) -> None:
            with slots:
                try:
                    results[i] = self.probe(host, lambda p: results.__setitem__(i, p))
                except Exception as e:  # a probe never takes the list down
                    results[i] = Probe("unknown", "check failed: %s" % e)

        threads = [
            threading.Thread(target=work, args=(i, h), name="ssh-probe", daemon=True)
            for i, h in enumerate(hosts)
        ]
        for t in threads:
            t.start()
        end = time.monotonic() + deadline
        for t in threads:
            while t.is_alive() and time.monotonic() < end:
                check()
                t.join(min(0.05, max(0.0, end - time.monotonic())))
        check()
        return [
            r
            if r is not None
            else Probe("unknown", "unreachable: no answer within %g s" % deadline)
            for r in results
        ]

    def _ssh_command(self, exe: str, host: SshHost, remote: str) -> List[str]:
        connect = self._float("connectTimeout", DEFAULT_CONNECT_TIMEOUT)
        args = [
            exe,
            "-o",
            "BatchMode=yes",
            "-o",
            "ConnectTimeout=%d" % max(1, round(connect)),
            "-o",
            "StrictHostKeyChecking=yes",
        ]
        if self.settings.get("configFile"):
            args += ["-F", self._config_path()]
        if host.source == "config":
            args += ["--", host.alias, remote]
        else:
            args += ["-p", str(host.port)]
            if host.user:
                args += ["-l", host.user]
            if host.identity_file:
                args += ["-i", host.identity_file, "-o", "IdentitiesOnly=yes"]
            args += ["--", host.hostname, remote]
        return args

    def _run_ssh(
        self, host: SshHost, remote: str, timeout: float
    ) -> Tuple[Optional[int], str, str]:
        """(exit code or None on timeout, stdout, stderr); raises OSError if ssh is missing."""
        exe = self._ssh_exe()
        if not exe:
            raise FileNotFoundError("ssh")
        try:
            proc = subprocess.run(
                self._ssh_command(exe, host, remote),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired:
            return None, "", ""
        return (
            proc.returncode,
            proc.stdout.decode("utf-8", "replace"),
            proc.stderr.decode("utf-8", "replace"),
        )

    def probe(self, host: SshHost, reachable: Optional[Callable[[Probe], None]] = None) -> Probe:
        """Check one host; `reachable` gets the probe as soon as ssh works (before the GPU
        query), so a slow nvidia-smi cannot turn a working host into a missed deadline."""
        connect = self._float("connectTimeout", DEFAULT_CONNECT_TIMEOUT)
        timeout = self._float("probeTimeout", DEFAULT_PROBE_TIMEOUT)
        if not host.proxy:
            why = tcp_check(host.hostname, host.port, min(connect, 3.0))
            if why is not None:
                return Probe("unknown", "unreachable: %s" % why)
        try:
            code, _out, err = self._run_ssh(host, "true", timeout)
        except OSError:
            return Probe("unknown", "no ssh client found (install OpenSSH)")
        if code is None:
            return Probe("unknown", "unreachable: ssh timed out")
        if code == 255:
            return Probe("unknown", classify_ssh_failure(err))
        probe = Probe("running", None if code == 0 else "remote `true` exited %d" % code)
        if reachable is not None:
            reachable(probe)
        if self.settings.get("gpuQuery", True):
            try:
                gcode, gout, _gerr = self._run_ssh(host, GPU_QUERY, min(timeout, 8.0))
            except OSError:
                gcode, gout = None, ""
            if gcode == 0:
                probe.gpu_model, probe.gpu_count = summarize_gpus(gout.splitlines())
        return probe
