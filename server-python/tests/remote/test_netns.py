"""The network-namespace test host (tests/remote/netns.py) that stands in for a GPU VM.

A real sshd in its own namespace and address; key login with the written ssh_config and
known_hosts; sshd's SetEnv reaches remote commands; cutting the link makes new connections
fail and stalls a running session; restoring it brings ssh back; close() and the CLI leave
nothing behind. Skipped with the reason where namespaces cannot be made here (not root, no
ip/sshd), except under CI=true where that fails.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator, List, Optional

import netns
import pytest

NETNS_PY = Path(__file__).resolve().parent / "netns.py"
KEEPALIVE = ["ServerAliveInterval=2", "ServerAliveCountMax=3"]


@pytest.fixture(scope="module")
def usable() -> None:
    netns.require_available()


@pytest.fixture
def host(usable: None) -> Iterator[netns.NamespaceHost]:
    with netns.NamespaceHost() as h:
        yield h


def _gone(namespace: str, veth: str, sshd_pid: Optional[int], tmp: str) -> None:
    assert namespace not in netns.list_namespaces()
    assert not os.path.exists("/run/netns/%s" % namespace)
    assert not os.path.exists("/sys/class/net/%s" % veth)
    if sshd_pid is not None:
        assert not os.path.exists("/proc/%d" % sshd_pid) or _is_zombie(sshd_pid)
    assert not os.path.exists(tmp)


def _is_zombie(pid: int) -> bool:
    try:
        with open("/proc/%d/stat" % pid) as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def test_ssh_by_key_with_written_config(host: netns.NamespaceHost) -> None:
    assert host.address.startswith("10.") and host.port == 22 and host.user == "root"
    assert len(host.veth) <= 15
    r = host.ssh("echo hello; id -u")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["hello", "0"]
    # The same with plain ssh and explicit files (what a product building its own argv does).
    r2 = subprocess.run(
        [
            "ssh",
            "-o", "BatchMode=yes",
            "-o", "IdentitiesOnly=yes",
            "-o", "StrictHostKeyChecking=yes",
            "-o", "UserKnownHostsFile=%s" % host.known_hosts,
            "-o", "GlobalKnownHostsFile=/dev/null",
            "-i", host.identity_file,
            "-p", str(host.port),
            "%s@%s" % (host.user, host.address),
            "true",
        ],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=10,
    )  # fmt: skip
    assert r2.returncode == 0, r2.stderr
    t = host.target()
    assert (t.host, t.port, t.user, t.identity_file) == (
        host.address,
        22,
        "root",
        host.identity_file,
    )


def test_setenv_points_vm_dirs_into_tmp(host: netns.NamespaceHost) -> None:
    r = host.ssh('printf "%s\\n" "$XDG_CACHE_HOME" "$XDG_DATA_HOME" "$GPUWB_VM_MARKER" "$HOME" ~')
    assert r.returncode == 0, r.stderr
    cache, data, marker, home, tilde = r.stdout.splitlines()
    assert cache == host.vm_cache and data == host.vm_data and marker == "1"
    assert home == tilde == host.vm_home and os.path.isdir(home)
    assert cache.startswith(host.tmp + os.sep) and os.path.isdir(cache)
    assert data.startswith(host.tmp + os.sep) and os.path.isdir(data)


def test_extra_env_reaches_sessions_and_bad_values_are_refused(usable: None) -> None:
    with netns.NamespaceHost(env={"GPUWB_EXTRA": "a/b:c", "LD_LIBRARY_PATH": "/x/lib"}) as h:
        r = h.ssh('printf "%s\\n" "$GPUWB_EXTRA" "$LD_LIBRARY_PATH"')
        assert r.returncode == 0, r.stderr
        assert r.stdout.splitlines() == ["a/b:c", "/x/lib"]
    with pytest.raises(ValueError, match="no spaces"):
        netns.NamespaceHost(env={"A": "two words"}, start=False)


def test_link_down_fails_new_connections_and_stalls_session(host: netns.NamespaceHost) -> None:
    session = subprocess.Popen(
        host.ssh_argv("while true; do echo tick; sleep 0.1; done", KEEPALIVE),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert session.stdout is not None
        assert session.stdout.readline() == b"tick\n"
        host.link_down()
        assert not host.is_link_up()
        cut = time.monotonic()
        # A new connection fails within the connect timeout.
        r = host.ssh("true", timeout=8, options=["ConnectTimeout=2"])
        assert r.returncode != 0
        assert time.monotonic() - cut < 6
        # The running session stalls: after draining what was in flight, nothing more arrives,
        # then the client's keepalives give up (ServerAliveInterval=2 x CountMax=3).
        fd = session.stdout.fileno()
        last = cut
        while session.poll() is None and time.monotonic() - cut < 15:
            ready, _, _ = select.select([fd], [], [], 0.2)
            if ready:
                if not os.read(fd, 4096):
                    break
                last = time.monotonic()
        assert last - cut < 1.0, "output kept arriving %.1fs after the cut" % (last - cut)
        session.wait(10)
        gave_up = time.monotonic() - cut
        assert session.returncode == 255
        assert 4 < gave_up < 12, gave_up
    finally:
        if session.poll() is None:
            session.kill()
            session.wait(5)
    host.link_up()
    assert host.is_link_up()
    r = host.ssh("echo back")
    assert r.returncode == 0 and r.stdout == "back\n", r.stderr


def test_close_leaves_nothing_behind(usable: None) -> None:
    h = netns.NamespaceHost()  # starts in the constructor
    # Something else started inside the namespace (like a kernel the product would launch).
    r = h.ssh("nohup sleep 300 >/dev/null 2>&1 & echo $!")
    assert r.returncode == 0, r.stderr
    stray = int(r.stdout.strip())
    namespace, veth, pid, tmp = h.namespace, h.veth, h.sshd_pid, h.tmp
    assert namespace in netns.list_namespaces()
    h.close()
    h.close()  # idempotent
    _gone(namespace, veth, pid, tmp)
    assert not os.path.exists("/proc/%d" % stray) or _is_zombie(stray)


def test_close_after_failure_inside_with(usable: None) -> None:
    seen: List[netns.NamespaceHost] = []
    with pytest.raises(ZeroDivisionError), netns.NamespaceHost() as h:
        seen.append(h)
        _ = 1 / 0
    h = seen[0]  # sshd_pid still names the (now reaped) sshd after close()
    _gone(h.namespace, h.veth, h.sshd_pid, h.tmp)


def test_cleanup_stale_removes_old_namespaces(usable: None) -> None:
    h = netns.NamespaceHost(stale_cleanup=False, start=False).start()
    try:
        # Not stale yet: left alone.
        assert h.namespace not in netns.cleanup_stale()
        later = time.time() + 2 * netns.STALE_AGE_S
        sshd, h._proc = h._proc, None  # as if the owner crashed: cleanup must find sshd itself
        assert netns.cleanup_stale(now=later, only=[h.namespace]) == [h.namespace]
        assert sshd is not None and sshd.wait(5) is not None
        assert h.namespace not in netns.list_namespaces()
        assert not os.path.exists("/sys/class/net/%s" % h.veth)
        assert not os.path.exists(h.tmp)
    finally:
        h.close()


def _readline(proc: "subprocess.Popen[str]", timeout: float) -> str:
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    assert ready, "no line from netns.py within %.0fs" % timeout
    return proc.stdout.readline()


def _ssh_cfg(info: dict, cmd: str, timeout: float = 8) -> "subprocess.CompletedProcess[str]":
    return subprocess.run(
        ["ssh", "-F", info["sshConfig"], "-o", "ConnectTimeout=2", "vm", cmd],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_cli_up_down_up_then_stdin_close(usable: None) -> None:
    proc = subprocess.Popen(
        [sys.executable, str(NETNS_PY), "up"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        info = json.loads(_readline(proc, 20))
        assert set(info) >= {
            "address",
            "port",
            "user",
            "identityFile",
            "knownHosts",
            "sshConfig",
            "tmp",
            "pid",
            "veth",
            "namespace",
        }
        assert info["pid"] == proc.pid and info["port"] == 22 and info["user"] == "root"
        assert _ssh_cfg(info, "true").returncode == 0
        assert proc.stdin is not None
        proc.stdin.write("down\n")
        proc.stdin.flush()
        assert _readline(proc, 10) == "ok\n"
        assert _ssh_cfg(info, "true").returncode != 0
        proc.stdin.write("up\n")
        proc.stdin.flush()
        assert _readline(proc, 15) == "ok\n"
        assert _ssh_cfg(info, "true").returncode == 0
        proc.stdin.write("bogus\n")
        proc.stdin.flush()
        assert _readline(proc, 10).startswith("error ")
        proc.stdin.close()
        assert proc.wait(15) == 0
        _gone(info["namespace"], info["veth"], info["sshdPid"], info["tmp"])
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)


def test_cli_sigterm_cleans_up(usable: None) -> None:
    proc = subprocess.Popen(
        [sys.executable, str(NETNS_PY), "up"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        info = json.loads(_readline(proc, 20))
        proc.terminate()
        assert proc.wait(15) == 0
        _gone(info["namespace"], info["veth"], info["sshdPid"], info["tmp"])
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
