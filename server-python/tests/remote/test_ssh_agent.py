"""SshHost, the agent's install and AgentLink against a real OpenSSH server on loopback.

sshd runs in the foreground (`-D -e`) from a temporary sshd_config with its own host key
and authorized_keys; its sessions get XDG_CACHE_HOME / XDG_DATA_HOME inside the test's
temporary folder (SetEnv), so the "remote" user's agent cache and kernels live there and
the real home is never written. The client side uses its own known_hosts and ssh config.
Skipped with the reason when sshd cannot start here, except under CI=true where it fails.
When run as root, OpenSSH needs its privilege-separation directory (/run/sshd), which the
test creates if it is missing (as the distribution's service unit would).
"""

from __future__ import annotations

import getpass
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import pytest
from sshd_helpers import SSHD
from sshd_helpers import free_port as _free_port
from sshd_helpers import keygen as _keygen
from sshd_helpers import unavailable as _unavailable
from sshd_helpers import wait_port as _wait_port

from conftest import kill_kernels
from gpu_workbench.errors import ApplicationError
from gpu_workbench.remote import agent
from gpu_workbench.remote.link import AgentLink, connect_with_backoff
from gpu_workbench.remote.ssh import SshHost
from gpu_workbench.vms.base import SshTarget

REMOTE_PYTHON = "/usr/bin/python3"
PRINTER = (
    "import time\nfor i in range(60):\n    print('line', i, flush=True)\n    time.sleep(0.05)\n"
)


def _fingerprint_file(path: Path) -> str:
    out = subprocess.run(
        ["ssh-keygen", "-lf", str(path)], capture_output=True, check=True, timeout=20
    ).stdout.decode()
    return out.split()[1]


def wait_until(predicate: Callable[[], Any], timeout: float = 15.0, what: str = "it") -> Any:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("timed out waiting for %s" % what)


class Remote:
    """An sshd on loopback plus the client-side files to reach it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = _free_port()
        self.proc: Optional[subprocess.Popen[bytes]] = None
        self.cache = root / "cache"
        self.data = root / "data"
        self.hosts: List[SshHost] = []
        # Short: the master socket path must fit in ~100 bytes.
        self.control_dir = tempfile.mkdtemp(prefix="gw", dir="/tmp")

    def start(self) -> Optional[str]:
        r = self.root
        _keygen(r / "host_key")
        _keygen(r / "client_key")
        _keygen(r / "wrong_key")
        shutil.copy(r / "client_key.pub", r / "authorized_keys")
        self.cache.mkdir()
        self.data.mkdir()
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
                    "MaxSessions 50",
                    "SetEnv XDG_CACHE_HOME=%s XDG_DATA_HOME=%s GPUWB_DEBUG_METHODS=1"
                    % (self.cache, self.data),
                    "LogLevel ERROR",
                    "",
                ]
            )
        )
        (r / "ssh_config").write_text("Host *\n    GlobalKnownHostsFile /dev/null\n")
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

    def host(
        self,
        known_hosts: str = "known_hosts",
        port: Optional[int] = None,
        control_dir: Optional[str] = None,
    ) -> SshHost:
        target = SshTarget(
            "127.0.0.1",
            port=port or self.port,
            user=getpass.getuser(),
            identity_file=str(self.root / "client_key"),
        )
        host = SshHost(
            target,
            control_dir or self.control_dir,
            known_hosts=str(self.root / known_hosts),
            config_file=str(self.root / "ssh_config"),
        )
        self.hosts.append(host)
        return host

    def trusted_host(self) -> SshHost:
        host = self.host()
        if not (self.root / "known_hosts").exists():
            host.trust(host.fingerprint())
        host.connect()
        return host

    def stop(self) -> None:
        for host in self.hosts:
            host.close()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        kill_kernels(self.data / "gpu-workbench")
        shutil.rmtree(self.control_dir, ignore_errors=True)


@pytest.fixture
def remote(tmp_path: Path) -> Iterator[Remote]:
    if not os.path.exists(SSHD):
        _unavailable("OpenSSH server not installed at %s" % SSHD)
    for tool in ("ssh", "ssh-keygen", "ssh-keyscan"):
        if shutil.which(tool) is None:
            _unavailable("OpenSSH client tool %s not installed" % tool)
    if not os.path.exists(REMOTE_PYTHON):
        _unavailable("no %s for the remote side" % REMOTE_PYTHON)
    server = Remote(tmp_path)
    try:
        why = server.start()
        if why is not None:
            _unavailable(why)
        yield server
    finally:
        server.stop()


class Events:
    """Collects notifications from an AgentLink."""

    def __init__(self) -> None:
        self.items: List[Tuple[str, Any]] = []
        self.exits: List[str] = []
        self.cond = threading.Condition()

    def notification(self, method: str, params: Any) -> None:
        with self.cond:
            self.items.append((method, params))
            self.cond.notify_all()

    def exit(self, reason: str) -> None:
        with self.cond:
            self.exits.append(reason)
            self.cond.notify_all()

    def kernel(self, kernel_id: str) -> List[Dict[str, Any]]:
        with self.cond:
            return [
                p["event"]
                for m, p in self.items
                if m == "kernel/event" and p.get("kernelId") == kernel_id
            ]

    def wait(self, predicate: Callable[[], Any], timeout: float = 20.0, what: str = "it") -> Any:
        end = time.monotonic() + timeout
        with self.cond:
            while True:
                value = predicate()
                if value:
                    return value
                left = end - time.monotonic()
                if left <= 0:
                    raise AssertionError("timed out waiting for %s" % what)
                self.cond.wait(left)


def _stdout(events: List[Dict[str, Any]], execution_id: str) -> str:
    return "".join(
        e["text"]
        for e in events
        if e.get("type") == "stream" and e.get("executionId") == execution_id
    )


def _reply(events: List[Dict[str, Any]], execution_id: str) -> Optional[Dict[str, Any]]:
    for e in events:
        if e.get("type") == "reply" and e.get("executionId") == execution_id:
            return e
    return None


# ---- host keys and reachability ----


def test_unknown_host_key_then_trust_then_connect(remote: Remote) -> None:
    host = remote.host()
    expected = _fingerprint_file(remote.root / "host_key.pub")
    with pytest.raises(ApplicationError) as info:
        host.connect()
    assert info.value.kind == "HostKeyUnknown"
    assert info.value.detail == expected and expected.startswith("SHA256:")
    assert info.value.hint == "Trust the host key to connect"
    assert host.fingerprint() == expected

    with pytest.raises(ApplicationError) as wrong:
        host.trust(_fingerprint_file(remote.root / "wrong_key.pub"))
    assert wrong.value.kind == "HostKeyChanged"
    assert not (remote.root / "known_hosts").exists()

    host.trust(expected)
    known = remote.root / "known_hosts"
    assert (known.stat().st_mode & 0o777) == 0o600
    assert known.read_text().startswith("|1|")  # hashed host names
    host.connect()
    result = host.run("echo hello; echo $XDG_CACHE_HOME")
    assert result.returncode == 0
    assert result.stdout.decode().split() == ["hello", str(remote.cache)]
    # The master is up now: a second connect just checks it.
    before = host.calls
    host.connect()
    assert host.calls - before == 2  # -O check, then `true` through the master
    host.close()
    host.close()  # idempotent


def test_changed_host_key_is_refused(remote: Remote) -> None:
    blob = (remote.root / "wrong_key.pub").read_text().split()[1]
    (remote.root / "changed_hosts").write_text(
        "[127.0.0.1]:%d ssh-ed25519 %s\n" % (remote.port, blob)
    )
    host = remote.host("changed_hosts")
    with pytest.raises(ApplicationError) as info:
        host.connect()
    assert info.value.kind == "HostKeyChanged"
    assert "known_hosts" in (info.value.hint or "")
    assert "PRIVATE KEY" not in str(info.value.to_dict())


def test_refused_port_is_remote_unavailable(remote: Remote) -> None:
    host = remote.host(port=_free_port())
    with pytest.raises(ApplicationError) as info:
        host.connect()
    assert info.value.kind == "RemoteUnavailable"
    assert "refused" in info.value.message
    assert info.value.hint


def test_a_host_behind_a_jump_host_from_the_ssh_config(remote: Remote) -> None:
    """An alias whose ssh config reaches it through another host: ProxyJump is
    ProxyCommand `ssh -W %h:%p <jump>`; spelled out here so the test sees it was used.
    ssh-keyscan cannot go through a jump host: the unknown key is read through ssh itself,
    before any authentication, then trusted like any other."""
    remote.trusted_host().close()  # the jump host's key into known_hosts
    used = remote.root / "jump-used"
    config = remote.root / "ssh_config"
    known = remote.root / "known_hosts"
    behind_known = remote.root / "behind_known_hosts"
    behind_known.write_text("")
    key = remote.root / "client_key"
    user = getpass.getuser()
    config.write_text(
        config.read_text()
        + "\n".join(
            [
                "Host jumpbox",
                "    HostName 127.0.0.1",
                "    Port %d" % remote.port,
                "    User %s" % user,
                "    IdentityFile %s" % key,
                "    IdentitiesOnly yes",
                "    UserKnownHostsFile %s" % known,
                "    StrictHostKeyChecking yes",
                "    BatchMode yes",
                "Host behind",
                "    HostName 127.0.0.1",
                "    HostKeyAlias behind-the-jump",
                "    Port %d" % remote.port,
                "    User %s" % user,
                "    IdentityFile %s" % key,
                "    IdentitiesOnly yes",
                "    ProxyCommand sh -c 'echo %%h:%%p >> %s; exec ssh -F %s -W %%h:%%p jumpbox'"
                % (used, config),
                "",
            ]
        )
    )
    host = SshHost(
        SshTarget("behind", alias="behind"),
        remote.control_dir,
        known_hosts=str(behind_known),
        config_file=str(config),
    )
    remote.hosts.append(host)
    with pytest.raises(ApplicationError) as info:
        host.connect()
    assert info.value.kind == "HostKeyUnknown", info.value.message
    expected = _fingerprint_file(remote.root / "host_key.pub")
    assert info.value.detail == expected, (info.value.detail, expected)
    assert behind_known.read_text() == "", "nothing is trusted before the user says so"
    assert not [p for p in os.listdir(host.control_dir) if p.startswith("scan-")]
    host.trust(expected)
    host.connect()
    out = host.run("echo through-the-jump")
    assert out.returncode == 0 and out.stdout == b"through-the-jump\n", out
    assert set(used.read_text().split()) == {"127.0.0.1:%d" % remote.port}
    # The agent installs and answers through it too (the same command lines).
    install = agent.install(host, REMOTE_PYTHON)
    assert install["version"] == agent.bundle()[0], install
    assert host.label == "behind"


def test_long_control_dir_uses_a_short_private_folder(remote: Remote) -> None:
    long_dir = remote.root / ("very-long-folder-name-" * 4) / "ssh"
    host = remote.host(control_dir=str(long_dir))
    try:
        assert host.requested_control_dir == str(long_dir)
        assert host.control_dir.startswith("/tmp/gpuwb-") and len(host.control_dir) <= 45
        assert (os.stat(host.control_dir).st_mode & 0o777) == 0o700
        host.trust(host.fingerprint())
        host.connect()
        assert host.run("echo ok").stdout == b"ok\n"
        sockets = os.listdir(host.control_dir)
        assert len(sockets) == 1 and len(sockets[0]) == 40
        # The same long folder maps to the same short one (another SshHost finds the master).
        twin = remote.host(control_dir=str(long_dir))
        assert twin.control_dir == host.control_dir
        before = twin.calls
        twin.connect()
        assert twin.calls - before == 2
    finally:
        host.close()
        shutil.rmtree(host.control_dir, ignore_errors=True)


# ---- agent install and interpreters ----


def test_install_once_then_reuse_and_repair(
    remote: Remote, monkeypatch: pytest.MonkeyPatch
) -> None:
    host = remote.trusted_host()
    version, _ = agent.bundle()
    before = host.calls
    info = agent.install(host, "python3")
    assert host.calls - before == 2  # probe, then the copy
    folder = remote.cache / "gpu-workbench" / "agent" / version
    # The remote shell's own python3 (its PATH decides which one that is).
    python, python_version = (
        host.run(
            "python3 -c 'import sys, platform; print(sys.executable, platform.python_version())'"
        )
        .stdout.decode()
        .split()
    )
    assert info == {
        "path": str(folder),
        "version": version,
        "python": python,
        "pythonVersion": python_version,
    }
    assert (folder / ".complete").read_text().strip() == version
    server_py = folder / "gpu_workbench" / "server.py"
    local = Path(agent.__file__).resolve().parent.parent / "server.py"
    assert server_py.read_bytes() == local.read_bytes()

    before = host.calls
    assert agent.install(host, "python3") == info
    assert host.calls - before == 1  # one round trip when it is there

    # A damaged copy is noticed and replaced.
    server_py.write_text("broken = True\n")
    before = host.calls
    assert agent.install(host, "python3") == info
    assert host.calls - before == 2
    assert server_py.read_bytes() == local.read_bytes()

    # What arrives must match its version, or nothing is put in place.
    data = agent.bundle()[1]
    monkeypatch.setattr(agent, "bundle", lambda: ("0123456789abcdef", data))
    with pytest.raises(ApplicationError) as info_corrupt:
        agent.install(host, "python3")
    assert info_corrupt.value.kind == "RemoteUnavailable"
    assert "corrupt" in info_corrupt.value.message
    assert not (remote.cache / "gpu-workbench" / "agent" / "0123456789abcdef").exists()
    leftovers = [p.name for p in (remote.cache / "gpu-workbench" / "agent").iterdir()]
    assert leftovers == [version]


def test_missing_or_old_python_is_a_clear_error(remote: Remote) -> None:
    host = remote.trusted_host()
    with pytest.raises(ApplicationError) as missing:
        agent.install(host, "/nonexistent/python3")
    assert missing.value.kind == "RemoteUnavailable"
    assert "/nonexistent/python3 is not installed" in missing.value.message
    assert missing.value.hint == "Install python3 on the machine or choose another interpreter"

    old = Path("/root/.pyenv/versions/3.7.16/bin/python3.7")
    if old.exists() and os.access(str(old), os.X_OK):
        python, shown = str(old), "3.7.16"
    else:  # a stand-in that reports an old version
        fake = remote.root / "oldpython"
        fake.write_text(
            "#!%s\nimport sys\nsys.version_info = (3, 6, 9, 'final', 0)\n"
            "code = sys.argv[2]\nsys.argv = ['-c']\nexec(compile(code, '<string>', 'exec'))\n"
            % REMOTE_PYTHON
        )
        fake.chmod(0o755)
        python, shown = str(fake), "3.6.9"
    with pytest.raises(ApplicationError) as too_old:
        agent.install(host, python)
    assert too_old.value.kind == "RemoteUnavailable"
    assert "Python 3.8 or newer" in too_old.value.message
    assert shown in too_old.value.message
    assert not (remote.cache / "gpu-workbench").exists()


def test_interpreters_lists_the_system_python(remote: Remote) -> None:
    host = remote.trusted_host()
    before = host.calls
    found = agent.interpreters(host, "python3")
    assert host.calls - before == 1
    version = subprocess.run(
        [REMOTE_PYTHON, "-c", "import platform; print(platform.python_version())"],
        capture_output=True,
        text=True,
    ).stdout.strip()
    system = [i for i in found if os.path.realpath(i["path"]) == os.path.realpath(REMOTE_PYTHON)]
    assert len(system) == 1, found
    assert system[0]["version"] == version
    assert system[0]["kind"] == "system"
    assert system[0]["hasTorch"] in (True, False)
    assert set(system[0]) == {"path", "version", "kind", "name", "hasTorch"}
    paths = [os.path.realpath(i["path"]) for i in found if i["kind"] == "system"]
    assert len(paths) == len(set(paths))


# ---- the agent link ----


def _link(remote: Remote, host: SshHost, events: Events) -> AgentLink:
    info = agent.install(host, "python3")
    link = AgentLink(host, info, on_notification=events.notification, on_exit=events.exit)
    result = link.start()
    assert result["serverInfo"]["name"]
    return link


def test_agent_link_runs_kernels_on_the_machine(remote: Remote) -> None:
    host = remote.trusted_host()
    events = Events()
    link = _link(remote, host, events)
    try:
        assert link.alive
        status = link.request("workbench/status", {})
        assert status["pid"] != os.getpid()
        cmdline = Path("/proc/%d/cmdline" % status["pid"]).read_bytes().split(b"\0")
        assert b"gpu_workbench" in cmdline
        assert status["trusted"] is True
        assert status["dataDirectory"] == str(remote.data / "gpu-workbench")
        assert link.latency_ms() > 0

        kernel = link.request("kernel/start", {"name": "remote"}, timeout=30)
        kid = kernel["kernelId"]
        eid = link.request("kernel/execute", {"kernelId": kid, "code": "print(6 * 7)"})[
            "executionId"
        ]
        reply = events.wait(lambda: _reply(events.kernel(kid), eid), what="the reply")
        assert reply["status"] == "ok"
        assert _stdout(events.kernel(kid), eid) == "42\n"

        with pytest.raises(ApplicationError) as info:
            link.request("kernel/execute", {"kernelId": "nope", "code": "1"})
        assert info.value.kind == "NotFound" or info.value.kind.startswith("Kernel")

        link.request("kernel/shutdown", {"kernelId": kid}, timeout=30)
    finally:
        link.close()
    assert not link.alive
    assert events.exits == []  # a requested close is not an unexpected exit


def test_dropped_link_fails_requests_and_kernel_survives(remote: Remote) -> None:
    host = remote.trusted_host()
    events = Events()
    link = _link(remote, host, events)
    kid = link.request("kernel/start", {}, timeout=30)["kernelId"]
    eid = link.request("kernel/execute", {"kernelId": kid, "code": PRINTER})["executionId"]
    events.wait(lambda: "line 5\n" in _stdout(events.kernel(kid), eid), what="line 5")

    failures: List[BaseException] = []

    def slow() -> None:
        try:
            link.request("debug/sleep", {"seconds": 30}, timeout=60)
        except BaseException as exc:
            failures.append(exc)

    sleeper = threading.Thread(target=slow)
    sleeper.start()
    time.sleep(0.3)
    assert link.proc is not None
    link.proc.kill()  # the ssh client side dies mid-cell
    sleeper.join(10)
    assert not sleeper.is_alive()
    assert len(failures) == 1 and isinstance(failures[0], ApplicationError)
    assert failures[0].kind == "RemoteUnavailable"
    assert "dropped" in failures[0].message
    assert failures[0].hint and failures[0].hint.startswith("It reconnects by itself")
    events.wait(lambda: events.exits, what="on_exit")
    assert not link.alive
    with pytest.raises(ApplicationError):
        link.request("workbench/ping", {})

    seen = [e["seq"] for e in events.kernel(kid)]
    assert seen == list(range(1, len(seen) + 1))
    assert _reply(events.kernel(kid), eid) is None  # the cell was still running

    # A new link (the same master) re-attaches and gets exactly what it missed.
    again = Events()
    stop = threading.Event()
    attempts: List[Tuple[int, float]] = []
    second = connect_with_backoff(
        lambda: _link(remote, host, again),
        lambda n, delay: attempts.append((n, delay)),
        stop,
    )
    assert second is not None and attempts == []
    try:
        second.request("kernel/attach", {"kernelId": kid, "since": seen[-1]}, timeout=30)
        reply = again.wait(lambda: _reply(again.kernel(kid), eid), what="the reply after re-attach")
        assert reply["status"] == "ok"
        union = seen + [e["seq"] for e in again.kernel(kid)]
        assert union == list(range(1, len(union) + 1))
        text = _stdout(events.kernel(kid), eid) + _stdout(again.kernel(kid), eid)
        assert text == "".join("line %d\n" % i for i in range(60))
        second.request("kernel/shutdown", {"kernelId": kid}, timeout=30)
    finally:
        second.close()


def test_connect_with_backoff_retries_only_unavailable() -> None:
    stop = threading.Event()
    calls: List[int] = []
    attempts: List[Tuple[int, float]] = []

    def make() -> str:
        calls.append(1)
        if len(calls) < 4:
            raise ApplicationError("RemoteUnavailable", "down")
        return "up"

    start = time.monotonic()
    got = connect_with_backoff(
        make, lambda n, d: attempts.append((n, d)), stop, delays=(0.01, 0.02)
    )
    assert got == "up"
    assert attempts == [(1, 0.01), (2, 0.02), (3, 0.02)]
    assert time.monotonic() - start < 5

    def changed() -> str:
        raise ApplicationError("HostKeyChanged", "changed")

    with pytest.raises(ApplicationError):
        connect_with_backoff(changed, lambda n, d: None, stop)

    def never() -> str:
        raise ApplicationError("RemoteUnavailable", "down")

    threading.Timer(0.2, stop.set).start()
    assert connect_with_backoff(never, lambda n, d: None, stop, delays=(0.05,)) is None


def test_bundle_is_deterministic_and_python38_safe() -> None:
    version, data = agent.bundle()
    assert len(version) == 16 and int(version, 16) >= 0
    assert agent.bundle() == (version, data)
    import io
    import tarfile

    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        members = tar.getmembers()
    names = [m.name for m in members]
    assert names == sorted(names)
    assert "gpu_workbench/__main__.py" in names and "gpu_workbench/remote/link.py" in names
    assert all(m.mtime == 0 and m.uid == 0 and m.gid == 0 for m in members)
    assert not any("__pycache__" in n or "/tests/" in n for n in names)
    assert sys.version_info >= (3, 8)


def _python38() -> Optional[str]:
    """A Python 3.8 interpreter here (standing in for an old machine's), if any."""
    import glob

    candidates = [shutil.which("python3.8")]
    candidates += sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.8*/bin/python3.8")))
    for found in candidates:
        if not found:
            continue
        try:
            out = subprocess.run(
                [found, "-c", "import sys; print(sys.executable)"],
                capture_output=True,
                text=True,
                timeout=20,
            )
        except (OSError, subprocess.SubprocessError):
            continue
        if out.returncode == 0 and out.stdout.strip():
            return out.stdout.strip()
    return None


def test_agent_runs_on_python38(remote: Remote) -> None:
    python = _python38()
    if python is None:
        pytest.skip("no python3.8 here to stand in for an old machine's Python")
    host = remote.trusted_host()
    info = agent.install(host, python)
    assert info["pythonVersion"].startswith("3.8.")
    events = Events()
    link = AgentLink(host, info["path"], info["python"], on_notification=events.notification)
    try:
        link.start()
        status = link.request("workbench/status", {})
        assert status["python"]["version"].startswith("3.8.")
    finally:
        link.close()
