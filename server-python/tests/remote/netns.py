"""A test host in its own network namespace that stands in for a GPU VM.

`NamespaceHost` creates a network namespace (`gpuwb-<6 hex>`) joined to the host by a veth
pair on a private /30, and runs a real OpenSSH server inside it (its own host key,
authorized_keys, pid file; root login by key only). The client side gets a key, a
known_hosts and an ssh_config (`Host vm`), so `ssh -F <ssh_config> vm true` works. The "VM"
user's XDG cache/data directories are pointed into the temporary directory by sshd's SetEnv,
so nothing lands in root's real home. `link_down()` / `link_up()` cut and restore the link
(host side of the veth) to simulate a network drop during a remote run.

Everything is undone by `close()` (also on context-manager exit and, as a fallback, at
interpreter exit); `cleanup_stale()` removes what crashed runs left behind (over an hour old).

Stdlib only. Needs root, `ip` (iproute2) and /usr/sbin/sshd; `available()` says why not.

CLI (for the TypeScript integration tests):
    python3 netns.py up
        prints ONE JSON line {"address","port","user","identityFile","knownHosts","sshConfig",
        "tmp","pid","namespace","veth","sshdPid"}, then reads commands on stdin, one per line:
        `down` / `up` (cut / restore the link; `up` waits until sshd answers again),
        `ping` (no-op); each is answered `ok` (or `error <message>`) on stdout.
        Cleans everything up and exits when stdin closes or on SIGTERM / SIGINT.
    python3 netns.py link down|up --veth NAME     one-shot, on a veth named in the JSON
    python3 netns.py cleanup                      remove stale namespaces (see cleanup_stale)
    python3 netns.py available                    prints "ok" or the reason; exit 0 / 1
"""

from __future__ import annotations

import atexit
import fcntl
import ipaddress
import json
import os
import random
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

SSHD = "/usr/sbin/sshd"
NS_PREFIX = "gpuwb-"
TMP_PREFIX = "gpuwb-netns-"
STALE_AGE_S = 3600.0
_NS_RE = re.compile(r"^gpuwb-([0-9a-f]{6})$")
_LOCK_PATH = os.path.join(tempfile.gettempdir(), "gpuwb-netns.lock")

_live: "List[NamespaceHost]" = []
_live_lock = threading.Lock()


def _ip(*args: str, check: bool = True, ns: Optional[str] = None) -> subprocess.CompletedProcess:
    cmd = ["ip"]
    if ns is not None:
        cmd += ["-n", ns]
    cmd += list(args)
    proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=15)
    if check and proc.returncode != 0:
        raise RuntimeError("%s failed: %s" % (" ".join(cmd), proc.stderr.strip()))
    return proc


def _keygen(path: Path) -> None:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "gpuwb-netns", "-f", str(path)],
        check=True,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        timeout=20,
    )


def _veth_names(suffix: str) -> "tuple[str, str]":
    # host side / namespace side; both well under IFNAMSIZ (15).
    return "gw%sh" % suffix, "gw%sn" % suffix


def available() -> Optional[str]:
    """None when a NamespaceHost can be made here; otherwise the reason it cannot."""
    if not sys.platform.startswith("linux"):
        return "network namespaces need Linux"
    if os.geteuid() != 0:
        return "needs root (ip netns, veth)"
    if shutil.which("ip") is None:
        return "no `ip` (iproute2) on PATH"
    if not os.access(SSHD, os.X_OK):
        return "no %s" % SSHD
    for tool in ("ssh", "ssh-keygen"):
        if shutil.which(tool) is None:
            return "no `%s` on PATH" % tool
    name = "%sprobe%s" % (NS_PREFIX, secrets.token_hex(2))
    try:
        proc = _ip("netns", "add", name, check=False)
    except (OSError, subprocess.SubprocessError) as e:
        return "ip netns add failed: %s" % e
    if proc.returncode != 0:
        return "ip netns add not permitted: %s" % proc.stderr.strip()
    _ip("netns", "del", name, check=False)
    return None


def require_available() -> None:
    """For pytest fixtures: skip when the host cannot run here, fail instead under CI."""
    reason = available()
    if reason is None:
        return
    import pytest

    if os.environ.get("CI", "").lower() == "true":
        pytest.fail("the namespace test host cannot run under CI: %s" % reason)
    pytest.skip(reason)


def _used_networks() -> "List[ipaddress.IPv4Network]":
    nets: List[ipaddress.IPv4Network] = []
    out = _ip("-4", "-o", "addr", "show", check=False).stdout
    for m in re.finditer(r"\binet (\d+\.\d+\.\d+\.\d+/\d+)", out):
        nets.append(ipaddress.IPv4Interface(m.group(1)).network)
    for line in _ip("-4", "route", "show", "table", "all", check=False).stdout.splitlines():
        first = line.split()[0] if line.split() else ""
        if first in ("default", "broadcast", "local", "unreachable", "blackhole", "prohibit"):
            first = line.split()[1] if len(line.split()) > 1 else ""
        try:
            net = ipaddress.ip_network(first, strict=False)
        except ValueError:
            continue
        if isinstance(net, ipaddress.IPv4Network) and net.prefixlen > 0:
            nets.append(net)
    return nets


def _pick_subnet() -> ipaddress.IPv4Network:
    used = _used_networks()
    rng = random.SystemRandom()
    for _ in range(500):
        cand = ipaddress.IPv4Network("10.%d.%d.0/30" % (rng.randint(64, 254), rng.randint(0, 255)))
        if not any(cand.overlaps(u) for u in used):
            return cand
    raise RuntimeError("no free 10.x.y.0/30 found")


def _ns_pids(ns: str) -> List[int]:
    try:
        out = _ip("netns", "pids", ns, check=False).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [int(p) for p in out.split() if p.isdigit()]


def _kill_ns_processes(ns: str) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        pids = _ns_pids(ns)
        if not pids:
            return
        for pid in pids:
            try:
                os.kill(pid, sig)
            except OSError:
                pass
        end = time.monotonic() + 2.0
        while time.monotonic() < end and _ns_pids(ns):
            time.sleep(0.05)


def _destroy(ns: str, veth: Optional[str]) -> None:
    """Kill everything in `ns`, delete it and the host-side veth. Best effort, idempotent."""
    _kill_ns_processes(ns)
    if os.path.exists("/run/netns/%s" % ns):
        _ip("netns", "del", ns, check=False)
    if veth and os.path.exists("/sys/class/net/%s" % veth):
        _ip("link", "del", veth, check=False)


def list_namespaces() -> List[str]:
    """Names of this module's namespaces that currently exist."""
    try:
        names = os.listdir("/run/netns")
    except OSError:
        return []
    return sorted(n for n in names if _NS_RE.match(n))


def cleanup_stale(
    max_age_s: float = STALE_AGE_S,
    now: Optional[float] = None,
    only: Optional[Sequence[str]] = None,
) -> List[str]:
    """Remove `gpuwb-*` namespaces (with their processes and veths) and temp dirs older
    than max_age_s, left by crashed runs. Returns the namespaces removed.

    Age is from the namespace's /run/netns entry (its mtime is the creation time) and the
    temp dir's mtime. `now` (default time.time()) and `only` (restrict to these namespace
    names) exist for tests."""
    removed: List[str] = []
    if now is None:
        now = time.time()
    for ns in list_namespaces():
        if only is not None and ns not in only:
            continue
        try:
            age = now - os.stat("/run/netns/%s" % ns).st_mtime
        except OSError:
            continue
        if age < max_age_s:
            continue
        m = _NS_RE.match(ns)
        assert m is not None
        _destroy(ns, _veth_names(m.group(1))[0])
        removed.append(ns)
    tmp = tempfile.gettempdir()
    try:
        entries = os.listdir(tmp)
    except OSError:
        entries = []
    for entry in entries:
        if not entry.startswith(TMP_PREFIX):
            continue
        path = os.path.join(tmp, entry)
        try:
            if now - os.stat(path).st_mtime < max_age_s:
                continue
        except OSError:
            continue
        # Named TMP_PREFIX + "<ns>-..."; keep it while its namespace still exists.
        owner = entry[len(TMP_PREFIX) :][: len(NS_PREFIX) + 6]
        if only is not None and owner not in only:
            continue
        if owner in list_namespaces():
            continue
        shutil.rmtree(path, ignore_errors=True)
    return removed


def _wait_tcp(
    host: str, port: int, timeout: float, proc: Optional[subprocess.Popen] = None
) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc is not None and proc.poll() is not None:
            return False
        try:
            with socket.create_connection((host, port), timeout=0.5) as s:
                s.settimeout(1.0)
                if s.recv(4).startswith(b"SSH-"):
                    return True
        except OSError:
            pass
        time.sleep(0.05)
    return False


class NamespaceHost:
    """A network namespace with its own address and a real sshd, standing in for a VM.

    The constructor brings it up (start=False defers that to start() or `with`); close()
    (idempotent; also on leaving `with`, and at interpreter exit as a fallback) removes it.
    """

    port = 22
    user = "root"

    def __init__(
        self,
        stale_cleanup: bool = True,
        start: bool = True,
        env: Optional[Dict[str, str]] = None,
    ) -> None:
        """Creates and starts the host unless start=False (then call start(), or use `with`).

        `env` is added to every ssh session's environment on the "VM" (sshd's SetEnv), e.g.
        LD_LIBRARY_PATH to a stand-in libnvidia-ml. Sessions get their own HOME under tmp,
        so nothing the VM side writes to `~` lands in this machine's real home."""
        for k, v in (env or {}).items():
            if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", k) or any(c in v for c in " \t\n\"'"):
                raise ValueError(
                    "netns env %s=%r: names are identifiers, values have no spaces or quotes"
                    % (k, v)
                )
        self.env = dict(env or {})
        suffix = secrets.token_hex(3)
        self.namespace = NS_PREFIX + suffix
        self.veth, self._veth_ns = _veth_names(suffix)
        self.subnet: Optional[ipaddress.IPv4Network] = None
        self.address = ""
        self.host_address = ""
        self.tmp = ""
        self._stale_cleanup = stale_cleanup
        self._proc: Optional[subprocess.Popen] = None
        self._created = False
        self._started = False
        self._closed = False
        if start:
            self.start()

    # -- paths -------------------------------------------------------------------------------
    @property
    def identity_file(self) -> str:
        return os.path.join(self.tmp, "client_key")

    @property
    def known_hosts(self) -> str:
        return os.path.join(self.tmp, "known_hosts")

    @property
    def ssh_config(self) -> str:
        return os.path.join(self.tmp, "ssh_config")

    @property
    def sshd_config(self) -> str:
        return os.path.join(self.tmp, "sshd_config")

    @property
    def sshd_log(self) -> str:
        return os.path.join(self.tmp, "sshd.log")

    @property
    def vm_cache(self) -> str:
        return os.path.join(self.tmp, "vm", "cache")

    @property
    def vm_data(self) -> str:
        return os.path.join(self.tmp, "vm", "data")

    @property
    def vm_home(self) -> str:
        return os.path.join(self.tmp, "vm", "home")

    @property
    def sshd_pid(self) -> Optional[int]:
        return self._proc.pid if self._proc is not None else None

    def target(self) -> Any:
        """A gpu_workbench.vms.base.SshTarget for this host (root by key, port 22)."""
        from gpu_workbench.vms.base import SshTarget

        return SshTarget(
            host=self.address, port=self.port, user=self.user, identity_file=self.identity_file
        )

    def info(self) -> Dict[str, Any]:
        return {
            "address": self.address,
            "port": self.port,
            "user": self.user,
            "identityFile": self.identity_file,
            "knownHosts": self.known_hosts,
            "sshConfig": self.ssh_config,
            "tmp": self.tmp,
            "vmHome": self.vm_home,
            "pid": os.getpid(),
            "namespace": self.namespace,
            "veth": self.veth,
            "sshdPid": self.sshd_pid,
        }

    # -- lifecycle ---------------------------------------------------------------------------
    def __enter__(self) -> "NamespaceHost":
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def start(self) -> "NamespaceHost":
        """Bring the host up (idempotent); raises RuntimeError with the reason if it cannot."""
        if self._started:
            return self
        if self._closed:
            raise RuntimeError("NamespaceHost %s is closed" % self.namespace)
        self._started = True
        reason = available()
        if reason is not None:
            raise RuntimeError("NamespaceHost unavailable: %s" % reason)
        if self._stale_cleanup:
            try:
                cleanup_stale()
            except Exception:
                pass
        with _live_lock:
            _live.append(self)
        try:
            self.tmp = tempfile.mkdtemp(prefix="%s%s-" % (TMP_PREFIX, self.namespace))
            os.chmod(self.tmp, 0o755)
            self._make_network()
            self._make_keys_and_configs()
            self._start_sshd()
        except BaseException:
            self.close()
            raise
        return self

    def _make_network(self) -> None:
        ns = self.namespace
        with open(_LOCK_PATH, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            self.subnet = _pick_subnet()
            hosts = list(self.subnet.hosts())
            self.host_address, self.address = str(hosts[0]), str(hosts[1])
            _ip("netns", "add", ns)
            self._created = True
            _ip("link", "add", self.veth, "type", "veth", "peer", "name", self._veth_ns)
            _ip("link", "set", self._veth_ns, "netns", ns)
            _ip("addr", "add", "%s/30" % self.host_address, "dev", self.veth)
        _ip("link", "set", self.veth, "up")
        _ip("link", "set", "lo", "up", ns=ns)
        _ip("addr", "add", "%s/30" % self.address, "dev", self._veth_ns, ns=ns)
        _ip("link", "set", self._veth_ns, "up", ns=ns)
        _ip("route", "add", "default", "via", self.host_address, ns=ns)

    def _make_keys_and_configs(self) -> None:
        t = Path(self.tmp)
        _keygen(t / "host_key")
        _keygen(t / "client_key")
        shutil.copy(t / "client_key.pub", t / "authorized_keys")
        os.makedirs(self.vm_cache, exist_ok=True)
        os.makedirs(self.vm_data, exist_ok=True)
        os.makedirs(self.vm_home, exist_ok=True)
        (t / "sshd_config").write_text(
            "\n".join(
                [
                    "ListenAddress %s" % self.address,
                    "Port %d" % self.port,
                    "HostKey %s" % (t / "host_key"),
                    "PidFile %s" % (t / "sshd.pid"),
                    "AuthorizedKeysFile %s" % (t / "authorized_keys"),
                    "PermitRootLogin prohibit-password",
                    "PubkeyAuthentication yes",
                    "PasswordAuthentication no",
                    "KbdInteractiveAuthentication no",
                    "UsePAM no",
                    "StrictModes no",
                    "UseDNS no",
                    "SetEnv HOME=%s XDG_CACHE_HOME=%s XDG_DATA_HOME=%s GPUWB_VM_MARKER=1%s"
                    % (
                        self.vm_home,
                        self.vm_cache,
                        self.vm_data,
                        "".join(" %s=%s" % kv for kv in sorted(self.env.items())),
                    ),
                    "ClientAliveInterval 2",
                    "ClientAliveCountMax 3",
                    "LogLevel ERROR",
                    "",
                ]
            )
        )
        host_pub = (t / "host_key.pub").read_text().split()
        (t / "known_hosts").write_text("%s %s %s\n" % (self.address, host_pub[0], host_pub[1]))
        (t / "ssh_config").write_text(
            "\n".join(
                [
                    "Host vm",
                    "    HostName %s" % self.address,
                    "    Port %d" % self.port,
                    "    User %s" % self.user,
                    "    IdentityFile %s" % self.identity_file,
                    "    IdentitiesOnly yes",
                    "    UserKnownHostsFile %s" % self.known_hosts,
                    "    GlobalKnownHostsFile /dev/null",
                    "    StrictHostKeyChecking yes",
                    "    BatchMode yes",
                    "    ConnectTimeout 3",
                    "    LogLevel ERROR",
                    "",
                ]
            )
        )

    def _start_sshd(self) -> None:
        if not os.path.isdir("/run/sshd"):
            os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
        with open(self.sshd_log, "ab") as log:
            self._proc = subprocess.Popen(
                ["ip", "netns", "exec", self.namespace, SSHD, "-D", "-e", "-f", self.sshd_config],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        if not _wait_tcp(self.address, self.port, 10.0, self._proc):
            try:
                tail = Path(self.sshd_log).read_text(errors="replace")[-500:]
            except OSError:
                tail = ""
            raise RuntimeError("sshd did not start in %s: %s" % (self.namespace, tail.strip()))

    def close(self) -> None:
        """Kill sshd and every process in the namespace, delete namespace, veth and tmp."""
        if self._closed:
            return
        self._closed = True
        try:
            if self._proc is not None and self._proc.poll() is None:
                self._proc.terminate()
                try:
                    self._proc.wait(3)
                except subprocess.TimeoutExpired:
                    self._proc.kill()
                    self._proc.wait(3)
        except OSError:
            pass
        finally:
            try:
                if self._created:
                    _destroy(self.namespace, self.veth)
            finally:
                if self.tmp:
                    shutil.rmtree(self.tmp, ignore_errors=True)
                with _live_lock:
                    if self in _live:
                        _live.remove(self)

    # -- link control ------------------------------------------------------------------------
    def link_down(self) -> None:
        """Cut the link: the host-side veth goes down (in-flight packets are dropped)."""
        _ip("link", "set", self.veth, "down")

    def link_up(self, timeout: float = 10.0) -> None:
        """Restore the link and wait until sshd answers on the address again."""
        _ip("link", "set", self.veth, "up")
        if not _wait_tcp(self.address, self.port, timeout):
            raise RuntimeError(
                "%s did not answer within %.0fs of link up" % (self.address, timeout)
            )

    def link_bytes(self) -> int:
        """Bytes that crossed the link so far, both directions (the veth's counters)."""
        total = 0
        for name in ("rx_bytes", "tx_bytes"):
            with open("/sys/class/net/%s/statistics/%s" % (self.veth, name)) as f:
                total += int(f.read().strip())
        return total

    def is_link_up(self) -> bool:
        out = _ip("-o", "link", "show", self.veth, check=False).stdout
        return "state UP" in out or ",UP" in out.split(">")[0]

    # -- conveniences ------------------------------------------------------------------------
    def ssh_argv(self, cmd: str = "", options: Sequence[str] = ()) -> List[str]:
        argv = ["ssh", "-F", self.ssh_config]
        for opt in options:
            argv += ["-o", opt]
        argv.append("vm")
        if cmd:
            argv.append(cmd)
        return argv

    def ssh(
        self, cmd: str, timeout: float = 10.0, options: Sequence[str] = ()
    ) -> subprocess.CompletedProcess:
        """Run `cmd` on the host over ssh; returns the CompletedProcess (text, captured).
        On timeout, returns returncode 124 with what was captured."""
        argv = self.ssh_argv(cmd, options)
        try:
            return subprocess.run(
                argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout
            )
        except subprocess.TimeoutExpired as e:
            out = e.stdout.decode() if isinstance(e.stdout, bytes) else (e.stdout or "")
            err = e.stderr.decode() if isinstance(e.stderr, bytes) else (e.stderr or "")
            return subprocess.CompletedProcess(argv, 124, out, err + "\n(timed out)")


@atexit.register
def _close_all() -> None:
    with _live_lock:
        hosts = list(_live)
    for host in hosts:
        try:
            host.close()
        except Exception:
            pass


# -- CLI -------------------------------------------------------------------------------------


class _Stop(Exception):
    pass


def _on_signal(signum: int, frame: Any) -> None:
    raise _Stop()


def _cmd_up(options: Sequence[str] = ()) -> int:
    env: Dict[str, str] = {}
    opts = list(options)
    while opts:
        flag = opts.pop(0)
        if flag == "--env" and opts and "=" in opts[0]:
            k, _, v = opts.pop(0).partition("=")
            env[k] = v
        else:
            sys.stderr.write("netns.py up: unknown option %r (--env NAME=VALUE)\n" % flag)
            return 2
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGHUP, _on_signal)
    host = NamespaceHost(start=False, env=env)
    try:
        host.start()
        sys.stdout.write(json.dumps(host.info()) + "\n")
        sys.stdout.flush()
        while True:
            line = sys.stdin.readline()
            if not line:
                break
            cmd = line.strip().lower()
            if not cmd:
                continue
            try:
                if cmd == "down":
                    host.link_down()
                elif cmd == "up":
                    host.link_up()
                elif cmd in ("ping", "status"):
                    pass
                elif cmd in ("quit", "exit", "close"):
                    break
                else:
                    raise ValueError("unknown command %r (down, up, ping, quit)" % cmd)
                reply = "ok\n"
            except Exception as e:
                reply = "error %s\n" % str(e).replace("\n", " ")
            try:
                sys.stdout.write(reply)
                sys.stdout.flush()
            except BrokenPipeError:
                break
    except _Stop:
        pass
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        host.close()
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    usage = (
        "usage: netns.py up [--env NAME=VALUE]... | link down|up --veth NAME | cleanup | available"
    )
    if not args:
        sys.stderr.write(usage + "\n")
        return 2
    if args[0] == "up":
        return _cmd_up(args[1:])
    if args[0] == "available":
        reason = available()
        sys.stdout.write((reason or "ok") + "\n")
        return 0 if reason is None else 1
    if args[0] == "cleanup":
        age = float(args[1]) if len(args) > 1 else STALE_AGE_S
        for ns in cleanup_stale(age):
            sys.stdout.write("removed %s\n" % ns)
        return 0
    if args[0] == "link" and len(args) == 4 and args[1] in ("down", "up") and args[2] == "--veth":
        proc = _ip("link", "set", args[3], args[1], check=False)
        if proc.returncode != 0:
            sys.stderr.write(proc.stderr)
            return 1
        return 0
    sys.stderr.write(usage + "\n")
    return 2


if __name__ == "__main__":
    sys.exit(main())
