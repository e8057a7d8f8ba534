"""SshProvider: ~/.ssh/config parsing (Include, patterns, Match, tokens) and settings hosts."""

from __future__ import annotations

import os
import socket
import stat
from pathlib import Path
from typing import Any, Dict, List, Optional

import pytest

from gpu_workbench.vms.base import ProviderError
from gpu_workbench.vms.ssh_hosts import (
    SshConfig,
    SshHost,
    SshProvider,
    classify_ssh_failure,
    parse_host_spec,
    parse_line,
    patterns_match,
    split_args,
)


def _cfg(tmp_path: Path, text: str) -> SshConfig:
    path = tmp_path / "config"
    path.write_text(text)
    return SshConfig.load(str(path), str(tmp_path))


def _by_alias(hosts: List[SshHost]) -> Dict[str, SshHost]:
    return {h.alias: h for h in hosts}


def test_parse_line_forms() -> None:
    assert parse_line("  # comment") is None
    assert parse_line("") is None
    assert parse_line("HostName example.com") == ("hostname", ["example.com"])
    assert parse_line("Port=2222") == ("port", ["2222"])
    assert parse_line("PORT = 2222") == ("port", ["2222"])
    assert parse_line('IdentityFile "~/my keys/id"') == ("identityfile", ["~/my keys/id"])
    assert split_args('a "b c"  d') == ["a", "b c", "d"]


def test_patterns() -> None:
    assert patterns_match(("*",), "anything")
    assert patterns_match(("*.corp",), "box.corp")
    assert not patterns_match(("*.corp",), "box.home")
    assert patterns_match(("gpu?",), "GPU1")  # case-insensitive
    assert not patterns_match(("* ", "!bastion"), "bastion")
    assert not patterns_match(("!x",), "y")  # negation alone never matches


def test_hosts_patterns_multiple_names_and_first_value_wins(tmp_path: Path) -> None:
    cfg = _cfg(
        tmp_path,
        """
# top comment
Host gpu1 gpu2
    HostName %h.lab.example
    User alice
    Port 2201

host *.corp !secret.corp
    user corpuser
    PORT 2222

Host box.corp secret.corp
    HostName 10.0.0.5

Host *
    User fallback
    IdentityFile ~/.ssh/id_ed25519
    Port 22

Host !neg-only
    HostName nowhere
""",
    )
    assert cfg.aliases == ["gpu1", "gpu2", "box.corp", "secret.corp"]
    hosts = _by_alias(cfg.hosts())
    g1 = hosts["gpu1"]
    assert (g1.hostname, g1.user, g1.port) == ("gpu1.lab.example", "alice", 2201)
    assert g1.identity_file == os.path.join(os.path.expanduser("~"), ".ssh", "id_ed25519")
    assert hosts["gpu2"].hostname == "gpu2.lab.example"
    box = hosts["box.corp"]
    assert (box.hostname, box.user, box.port) == ("10.0.0.5", "corpuser", 2222)
    secret = hosts["secret.corp"]  # the negation keeps the *.corp block away
    assert (secret.hostname, secret.user, secret.port) == ("10.0.0.5", "fallback", 22)


def test_match_blocks_are_skipped(tmp_path: Path) -> None:
    cfg = _cfg(
        tmp_path,
        """
Match host gpu1 exec "curl evil"
    HostName from-match
    User from-match
    Include never/*.conf
Host gpu1
    HostName real
Match all
Host other
""",
    )
    (tmp_path / "never").mkdir()
    (tmp_path / "never" / "a.conf").write_text("Host hidden\n")
    hosts = _by_alias(cfg.hosts())
    assert list(hosts) == ["gpu1", "other"]
    assert hosts["gpu1"].hostname == "real" and hosts["gpu1"].user is None


def test_include_globs_relative_and_recursion(tmp_path: Path) -> None:
    (tmp_path / "conf.d").mkdir()
    (tmp_path / "conf.d" / "20-b.conf").write_text("Host bee\n  HostName b.example\n")
    (tmp_path / "conf.d" / "10-a.conf").write_text(
        "Include nested.conf\nHost ay\n  HostName a.example\n"
    )
    (tmp_path / "conf.d" / "skip.txt").write_text("Host not-included\n")
    (tmp_path / "nested.conf").write_text("Host deep\n  Port 2022\n")
    (tmp_path / "loop.conf").write_text("Host looped\nInclude loop.conf\n")
    abs_inc = tmp_path / "abs.conf"
    abs_inc.write_text("Host absolute\n")
    cfg = _cfg(
        tmp_path,
        "Include conf.d/*.conf %s\nInclude loop.conf missing-file.conf\nHost last\n" % abs_inc,
    )
    assert cfg.aliases == ["deep", "ay", "bee", "absolute", "looped", "last"]
    hosts = _by_alias(cfg.hosts())
    assert hosts["ay"].hostname == "a.example"
    assert hosts["deep"].port == 2022
    assert any("deeply" in w for w in cfg.warnings)


def test_include_inside_host_block_is_conditional(tmp_path: Path) -> None:
    (tmp_path / "inner.conf").write_text("User inner-user\nHost inner-host\n  Port 2300\n")
    cfg = _cfg(
        tmp_path,
        "Host gpu*\n  Include inner.conf\n  Port 2200\nHost gpu7 cpu1\n",
    )
    hosts = _by_alias(cfg.hosts())
    # inner-host sits under `Host gpu*` too, so it does not match its own block.
    assert list(hosts) == ["gpu7", "cpu1"]
    assert (hosts["gpu7"].user, hosts["gpu7"].port) == ("inner-user", 2200)
    assert (hosts["cpu1"].user, hosts["cpu1"].port) == (None, 22)


def test_identity_tokens_and_home(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.setenv("USER", "localme")
    cfg = _cfg(
        tmp_path,
        "Host gpu\n  HostName gpu.example\n  User bob\n  Port 2222\n"
        "  IdentityFile ~/keys/%h-%r-%u-%p-%n-%%.pem\n"
        "  IdentityFile ~/second\n"
        "Host nokey\n  IdentityFile none\n",
    )
    hosts = _by_alias(cfg.hosts())
    home = os.path.expanduser("~")
    assert hosts["gpu"].identity_file == os.path.join(
        home, "keys", "gpu.example-bob-localme-2222-gpu-%.pem"
    )
    assert hosts["nokey"].identity_file is None


def test_proxy_marks_host() -> None:
    cfg = SshConfig.from_text("Host jumpy\n  ProxyJump bastion\nHost direct\n", "/nonexistent")
    hosts = _by_alias(cfg.hosts())
    assert hosts["jumpy"].proxy and not hosts["direct"].proxy


def test_missing_config_file_is_empty(tmp_path: Path) -> None:
    p = SshProvider({"configFile": str(tmp_path / "nope")})
    assert p.hosts() == []
    assert p.list({}) == []


def test_parse_host_spec() -> None:
    h = parse_host_spec("alice@gpu.example:2222")
    assert h is not None
    assert (h.alias, h.hostname, h.port, h.user) == (
        "alice@gpu.example:2222",
        "gpu.example",
        2222,
        "alice",
    )
    h = parse_host_spec("box")
    assert h is not None and (h.hostname, h.port, h.user) == ("box", 22, None)
    h = parse_host_spec("root@[::1]:2200")
    assert h is not None and (h.hostname, h.port, h.user) == ("::1", 2200, "root")
    h = parse_host_spec("fe80::1")
    assert h is not None and (h.hostname, h.port) == ("fe80::1", 22)
    for bad in ("", "a b", "-oProxyCommand=x", "host:notaport", "host:70000", "[::1"):
        assert parse_host_spec(bad) is None, bad


def _closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_settings_hosts_prices_and_unreachable(tmp_path: Path) -> None:
    port = _closed_port()
    (tmp_path / "config").write_text("Host cfg-host\n  HostName 127.0.0.1\n  Port %d\n" % port)
    p = SshProvider(
        {
            "configFile": str(tmp_path / "config"),
            "hosts": ["me@127.0.0.1:%d" % port, "cfg-host", 42, "bad host"],
            "prices": {"cfg-host": 1.25, "me@127.0.0.1:%d" % port: "x"},
        }
    )
    info = p.info({})
    assert info["available"] and info["capabilities"] == [] and info["notes"]
    vms = p.list({})
    assert [v.id for v in vms] == ["cfg-host", "me@127.0.0.1:%d" % port]
    cfg_vm, extra = vms
    assert cfg_vm.state == "unknown" and cfg_vm.detail == "unreachable: connection refused"
    assert cfg_vm.price_per_hour == 1.25
    assert cfg_vm.ssh is not None and cfg_vm.ssh.alias == "cfg-host" and cfg_vm.ssh.port == port
    assert extra.price_per_hour is None and extra.capabilities == []
    assert extra.ssh is not None and extra.ssh.alias is None and extra.ssh.user == "me"
    assert extra.detail == "unreachable: connection refused"
    with pytest.raises(ProviderError) as info_err:
        p.refresh({}, "nope")
    assert info_err.value.kind == "NotFound"
    with pytest.raises(ProviderError) as info_err:
        p.stop({}, "cfg-host")
    assert info_err.value.kind == "Unsupported"


def _fake_ssh(tmp_path: Path, body: str) -> str:
    path = tmp_path / "fake-ssh"
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


class _Listener:
    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port: int = self.sock.getsockname()[1]

    def close(self) -> None:
        self.sock.close()


def _provider(tmp_path: Path, port: int, ssh: str, extra: Optional[Dict[str, Any]] = None):
    (tmp_path / "config").write_text("Host h1\n  HostName 127.0.0.1\n  Port %d\n" % port)
    settings: Dict[str, Any] = {"configFile": str(tmp_path / "config"), "sshPath": ssh}
    settings.update(extra or {})
    return SshProvider(settings)


def test_fake_ssh_running_with_gpus_and_arguments(tmp_path: Path) -> None:
    listener = _Listener()
    try:
        log = tmp_path / "args.log"
        ssh = _fake_ssh(
            tmp_path,
            'echo "$@" >> %s\n'
            'case "$*" in *nvidia-smi*) printf "NVIDIA A10G\\n";; esac\nexit 0\n' % log,
        )
        vm = _provider(tmp_path, listener.port, ssh).list({})[0]
        assert vm.state == "running" and vm.detail is None
        assert (vm.gpu_model, vm.gpu_count) == ("NVIDIA A10G", 1)
        calls = log.read_text().splitlines()
        assert calls[0].startswith("-o BatchMode=yes -o ConnectTimeout=5")
        assert "-o StrictHostKeyChecking=yes" in calls[0]  # listing never trusts a new key
        assert calls[0].endswith("-F %s -- h1 true" % (tmp_path / "config"))
        assert "nvidia-smi --query-gpu=name --format=csv,noheader" in calls[1]
    finally:
        listener.close()


@pytest.mark.parametrize(
    "stderr, detail",
    [
        ("alice@h: Permission denied (publickey).", "ssh authentication failed"),
        ("Host key verification failed.", "host key not trusted yet: connect to check it"),
        (
            "kex_exchange_identification: Connection closed by remote host",
            "ssh connection closed by the host",
        ),
        ("weird thing", "ssh failed: weird thing"),
    ],
)
def test_fake_ssh_failures(tmp_path: Path, stderr: str, detail: str) -> None:
    listener = _Listener()
    try:
        ssh = _fake_ssh(tmp_path, "echo '%s' >&2\nexit 255\n" % stderr)
        vm = _provider(tmp_path, listener.port, ssh).list({})[0]
        assert (vm.state, vm.detail) == ("unknown", detail)
    finally:
        listener.close()


def test_deadline_marks_slow_hosts(tmp_path: Path) -> None:
    listener = _Listener()
    try:
        ssh = _fake_ssh(tmp_path, "sleep 5\n")
        p = _provider(tmp_path, listener.port, ssh, {"deadline": 0.5})
        vm = p.list({})[0]
        assert vm.state == "unknown" and vm.detail is not None
        assert vm.detail.startswith("unreachable: no answer within")
    finally:
        listener.close()


def test_cancellation_is_checked(tmp_path: Path) -> None:
    listener = _Listener()
    try:
        ssh = _fake_ssh(tmp_path, "sleep 5\n")
        p = _provider(tmp_path, listener.port, ssh)
        calls = {"n": 0}

        def check() -> None:
            calls["n"] += 1
            if calls["n"] > 3:
                raise RuntimeError("cancelled")

        with pytest.raises(RuntimeError):
            p.list({}, check)
    finally:
        listener.close()


def test_classify_ssh_failure() -> None:
    assert classify_ssh_failure("ssh: connect to host x port 22: Connection refused") == (
        "unreachable: connection refused"
    )
    assert classify_ssh_failure("ssh: Could not resolve hostname x") == (
        "unreachable: unknown host name"
    )
    assert classify_ssh_failure("connect to host x: Connection timed out") == (
        "unreachable: timed out"
    )
    assert classify_ssh_failure("") == "ssh failed: exit 255"


def test_unknown_host_name(tmp_path: Path) -> None:
    (tmp_path / "config").write_text("Host ghost\n  HostName no-such-host.invalid\n")
    vm = SshProvider({"configFile": str(tmp_path / "config")}).list({})[0]
    assert vm.state == "unknown"
    assert vm.detail is not None and vm.detail.startswith("unreachable:")


def test_config_is_never_written(tmp_path: Path) -> None:
    path = tmp_path / "config"
    path.write_text("Host a\n")
    before = path.stat().st_mtime_ns, path.read_text()
    SshProvider({"configFile": str(path), "connectTimeout": 1}).list({})
    assert (path.stat().st_mtime_ns, path.read_text()) == before


def test_slow_gpu_query_keeps_host_running(tmp_path: Path) -> None:
    listener = _Listener()
    try:
        ssh = _fake_ssh(tmp_path, 'case "$*" in *nvidia-smi*) sleep 5;; esac\nexit 0\n')
        vm = _provider(tmp_path, listener.port, ssh, {"deadline": 1}).list({})[0]
        assert (vm.state, vm.detail, vm.gpu_count) == ("running", None, 0)
    finally:
        listener.close()


def test_settings_hosts_in_object_form(tmp_path):
    from gpu_workbench.vms.ssh_hosts import SshProvider

    config = tmp_path / "config"
    config.write_text("")
    provider = SshProvider(
        {
            "configFile": str(config),
            "hosts": [
                {
                    "name": "box",
                    "host": "10.0.0.5",
                    "port": 2222,
                    "user": "me",
                    "pricePerHour": 1.5,
                },
                {"port": 22},  # no host: ignored
                "alice@other:2200",
            ],
        }
    )
    hosts = {h.alias: h for h in provider.hosts()}
    assert len(hosts) == 2 and "box" in hosts  # the object without a host is ignored
    box = hosts["box"]
    assert (box.hostname, box.port, box.user) == ("10.0.0.5", 2222, "me")
    assert provider._price("box") == 1.5
