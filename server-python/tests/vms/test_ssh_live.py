"""SshProvider against a real OpenSSH server started on loopback by the test.

sshd runs in the foreground (`-D -e`) from a temporary sshd_config with its own host key,
authorized_keys and pid file; the client uses a temporary ssh config (its own known_hosts).
Skipped with the reason when sshd cannot start here, except under CI=true where it fails.
When run as root, OpenSSH needs its privilege-separation directory (/run/sshd), which the
test creates if it is missing (as the distribution's service unit would).
"""

from __future__ import annotations

import getpass
import os
import shutil
import subprocess
from pathlib import Path
from typing import Iterator, Optional

import pytest
from sshd_helpers import SSHD
from sshd_helpers import free_port as _free_port
from sshd_helpers import keygen as _keygen
from sshd_helpers import unavailable as _unavailable
from sshd_helpers import wait_port as _wait_port

from gpu_workbench.vms.ssh_hosts import SshProvider


class LiveSshd:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = _free_port()
        self.proc: Optional[subprocess.Popen[bytes]] = None

    def start(self) -> Optional[str]:
        """None when running; otherwise why sshd could not start."""
        r = self.root
        _keygen(r / "host_key")
        _keygen(r / "client_key")
        _keygen(r / "wrong_key")
        shutil.copy(r / "client_key.pub", r / "authorized_keys")
        (r / "sshd_config").write_text(
            "\n".join(
                [
                    "Port %d" % self.port,
                    "ListenAddress 127.0.0.1",
                    "HostKey %s" % (r / "host_key"),
                    "PidFile %s" % (r / "sshd.pid"),
                    "AuthorizedKeysFile %s" % (r / "authorized_keys"),
                    "UsePAM no",
                    "StrictModes no",
                    "PubkeyAuthentication yes",
                    "PasswordAuthentication no",
                    "KbdInteractiveAuthentication no",
                    "PermitRootLogin prohibit-password",
                    "LogLevel ERROR",
                    "",
                ]
            )
        )
        if os.geteuid() == 0 and not os.path.isdir("/run/sshd"):
            try:
                os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
            except OSError as e:
                return "cannot create /run/sshd: %s" % e
        self.proc = subprocess.Popen(
            [SSHD, "-D", "-e", "-f", str(r / "sshd_config")],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        if not _wait_port(self.port, self.proc):
            self.stop()
            out = b""
            if self.proc.stdout is not None:
                out = self.proc.stdout.read() or b""
            return "sshd did not start: %s" % out.decode("utf-8", "replace").strip()[-500:]
        return None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def client_config(self) -> Path:
        r = self.root
        user = getpass.getuser()
        blocks = []
        for alias, key in (("live", "client_key"), ("wrongkey", "wrong_key")):
            blocks.append(
                "\n".join(
                    [
                        "Host %s" % alias,
                        "    HostName 127.0.0.1",
                        "    Port %d" % self.port,
                        "    User %s" % user,
                        "    IdentityFile %s" % (r / key),
                        "    IdentitiesOnly yes",
                        "    UserKnownHostsFile %s" % (r / "known_hosts"),
                        "    GlobalKnownHostsFile /dev/null",
                        "    LogLevel ERROR",
                        "",
                    ]
                )
            )
        path = r / "ssh_config"
        path.write_text("\n".join(blocks))
        # The host key is known (listing never trusts a new one: StrictHostKeyChecking=yes).
        key = (r / "host_key.pub").read_text().split()
        (r / "known_hosts").write_text("[127.0.0.1]:%d %s %s\n" % (self.port, key[0], key[1]))
        return path


@pytest.fixture
def sshd(tmp_path: Path) -> Iterator[LiveSshd]:
    if not os.path.exists(SSHD):
        _unavailable("OpenSSH server not installed at %s" % SSHD)
    if shutil.which("ssh") is None or shutil.which("ssh-keygen") is None:
        _unavailable("OpenSSH client (ssh, ssh-keygen) not installed")
    server = LiveSshd(tmp_path)
    try:
        why = server.start()
        if why is not None:
            _unavailable(why)
        yield server
    finally:
        server.stop()


def test_live_sshd_running_then_unreachable(sshd: LiveSshd) -> None:
    config = sshd.client_config()
    provider = SshProvider({"configFile": str(config), "deadline": 20})
    vms = {vm.id: vm for vm in provider.list({})}
    assert set(vms) == {"live", "wrongkey"}
    live = vms["live"]
    assert live.state == "running", live.detail
    assert live.detail is None
    assert live.ssh is not None and live.ssh.port == sshd.port and live.ssh.alias == "live"
    assert live.gpu_count == 0 or live.gpu_model  # no nvidia-smi normally: 0 GPUs
    assert (vms["wrongkey"].state, vms["wrongkey"].detail) == (
        "unknown",
        "ssh authentication failed",
    )
    assert (sshd.root / "known_hosts").read_text().count("\n") == 1  # listing added nothing
    again = provider.refresh({}, "live")
    assert again.state == "running"

    sshd.stop()
    after = provider.refresh({}, "live")
    assert (after.state, after.detail) == ("unknown", "unreachable: connection refused")
