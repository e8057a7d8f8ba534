"""remote/sync.py, remote/forward.py and remote/watchdog.py against a real OpenSSH sshd.

sshd runs on loopback from a temporary sshd_config (as in tests/vms/test_ssh_live.py), with
``SetEnv XDG_CACHE_HOME=<tmp>/cache XDG_DATA_HOME=<tmp>/data`` so the agent copy and the
data directory on "the machine" stay inside the test's folder. The client is the real
remote/ssh.py SshHost (its master connection, ControlPath and strict host keys, with a
known_hosts file made by the test). Skipped with the reason when sshd cannot start here,
except under CI=true where it fails.

rsync parts run only where rsync is installed; the tar fallback is always tested.
"""

from __future__ import annotations

import getpass
import hashlib
import http.server
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

import pytest
from shapes import assert_shape
from sshd_helpers import SSHD
from sshd_helpers import free_port as _free_port
from sshd_helpers import keygen as _keygen
from sshd_helpers import unavailable as _unavailable
from sshd_helpers import wait_port as _wait_port

from gpu_workbench import protocol
from gpu_workbench.errors import ApplicationError, RequestCancelled
from gpu_workbench.remote import forward, sync, watchdog
from gpu_workbench.remote.ssh import SshHost
from gpu_workbench.vms.base import SshTarget

SERVER_ROOT = Path(__file__).resolve().parent.parent.parent
HAVE_RSYNC = shutil.which("rsync") is not None


def wait_for(predicate, timeout: float, step: float = 0.05) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(step)
    return bool(predicate())


class Machine:
    """A loopback sshd plus an SshHost for it; `root` is the test's folder."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = _free_port()
        self.proc: Optional["subprocess.Popen[bytes]"] = None
        self._host: Optional[SshHost] = None
        self.control_dir = tempfile.mkdtemp(prefix="gwbt", dir="/tmp")

    def start(self) -> Optional[str]:
        r = self.root
        _keygen(r / "host_key")
        _keygen(r / "client_key")
        shutil.copy(r / "client_key.pub", r / "authorized_keys")
        (r / "cache").mkdir()
        (r / "data").mkdir()
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
                    "AllowTcpForwarding yes",
                    "SetEnv XDG_CACHE_HOME=%s XDG_DATA_HOME=%s" % (r / "cache", r / "data"),
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
        pub = (r / "host_key.pub").read_text().split()
        (r / "known_hosts").write_text("[127.0.0.1]:%d %s %s\n" % (self.port, pub[0], pub[1]))
        target = SshTarget(
            host="127.0.0.1",
            port=self.port,
            user=getpass.getuser(),
            identity_file=str(r / "client_key"),
        )
        self._host = SshHost(target, self.control_dir, known_hosts=str(r / "known_hosts"))
        self._host.connect()
        return None

    @property
    def host(self) -> SshHost:
        assert self._host is not None
        return self._host

    @property
    def data_directory(self) -> str:
        return str(self.root / "data" / "gpu-workbench")

    def stop(self) -> None:
        if self._host is not None:
            self._host.close()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        shutil.rmtree(self.control_dir, ignore_errors=True)


@pytest.fixture
def machine(tmp_path: Path) -> Iterator[Machine]:
    if not os.path.exists(SSHD):
        _unavailable("OpenSSH server not installed at %s" % SSHD)
    if shutil.which("ssh") is None or shutil.which("ssh-keygen") is None:
        _unavailable("OpenSSH client (ssh, ssh-keygen) not installed")
    m = Machine(tmp_path)
    try:
        why = m.start()
        if why is not None:
            _unavailable(why)
        yield m
    finally:
        m.stop()


# ======================= sync =======================


def _write(path: Path, data: Any = "x") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, bytes):
        path.write_bytes(data)
    else:
        path.write_text(data)


def _project(root: Path) -> Path:
    p = root / "proj"
    _write(p / ".gitignore", "# comment\n*.log\n!keep.log\n/only_top.txt\ndata/\nbuild/*.o\n")
    _write(p / "main.py", "print('hi')\n")
    _write(p / "keep.log", "kept")
    _write(p / "drop.log", "dropped")
    _write(p / "only_top.txt", "ignored at top")
    _write(p / "sub" / "only_top.txt", "kept below")
    _write(p / "sub" / "b.txt", "b")
    _write(p / "sub" / "x.log", "dropped")
    _write(p / "sub" / ".gitignore", "secret.txt\n")
    _write(p / "sub" / "secret.txt", "dropped")
    _write(p / "secret.txt", "kept: the rule is sub/'s")
    _write(p / "data" / "big.bin", b"\0" * 1000)
    _write(p / "build" / "a.o", "dropped")
    _write(p / "build" / "a.c", "kept")
    _write(p / ".git" / "config", "dropped")
    _write(p / "__pycache__" / "m.pyc", "dropped")
    _write(p / "deep" / "__pycache__" / "m.pyc", "dropped")
    _write(p / ".venv" / "bin" / "python", "dropped")
    _write(p / "node_modules" / "m" / "i.js", "dropped")
    return p


EXPECTED = {
    ".gitignore",
    "main.py",
    "keep.log",
    "secret.txt",
    "sub/only_top.txt",
    "sub/b.txt",
    "sub/.gitignore",
    "build/a.c",
}


def _tree(root: Path) -> Dict[str, str]:
    out = {}
    for dirpath, _, files in os.walk(str(root)):
        for name in files:
            full = os.path.join(dirpath, name)
            rel = os.path.relpath(full, str(root)).replace(os.sep, "/")
            with open(full, "rb") as f:
                out[rel] = hashlib.sha256(f.read()).hexdigest()
    return out


def _check_result(result: Dict[str, Any]) -> None:
    assert_shape(protocol.RemoteSyncResult, dict(result, machine="ssh/test"))


def test_walk_honours_gitignore(tmp_path: Path) -> None:
    p = _project(tmp_path)
    assert {f[0] for f in sync.walk(str(p))} == EXPECTED


def test_gitignore_patterns() -> None:
    rules = sync.parse_gitignore("**/gen/\nlogs/**\na/**/z\n\\!bang\n[ab].txt\n")
    assert sync.ignored(rules, "x/y/gen", True)
    assert not sync.ignored(rules, "x/y/gen", False)
    assert sync.ignored(rules, "logs/a/b", False)
    assert sync.ignored(rules, "a/z", False) and sync.ignored(rules, "a/b/c/z", False)
    assert sync.ignored(rules, "!bang", False)
    assert sync.ignored(rules, "d/a.txt", False) and not sync.ignored(rules, "c.txt", False)


def test_resolve_default_remote_path() -> None:
    assert sync._resolve(None, "/w/my proj", "/home/u") == "/home/u/gpu-workbench/my proj"
    assert sync._resolve("~/x/", "/w/p", "/home/u") == "/home/u/x"
    assert sync._resolve("rel", "/w/p", "/home/u") == "/home/u/rel"
    assert sync._resolve("/abs/", "/w/p", "/home/u") == "/abs"


def _sync_scenario(machine: Machine, tmp_path: Path, method: Optional[str]) -> None:
    host = machine.host
    p = _project(tmp_path)
    dest = tmp_path / ("remote-%s" % method) / "proj"
    # the user's own file on the machine is never deleted
    _write(dest / "made_there.txt", "mine")
    seen: List[float] = []
    result = sync.sync(
        host, str(p), str(dest), False, progress=lambda f, m: seen.append(f), method=method
    )
    _check_result(result)
    assert result["method"] == (method or ("rsync" if HAVE_RSYNC else "tar"))
    assert result["remotePath"] == str(dest)
    assert result["files"] == len(EXPECTED)
    assert set(result["sample"]) == EXPECTED
    assert result["bytes"] == sum((p / f).stat().st_size for f in EXPECTED)
    assert result["dryRun"] is False
    assert seen and seen[-1] == 1.0
    tree = _tree(dest)
    assert set(tree) == EXPECTED | {"made_there.txt"}
    assert tree["main.py"] == _tree(p)["main.py"]

    again = sync.sync(host, str(p), str(dest), False, method=method)
    assert (again["files"], again["bytes"], again["sample"]) == (0, 0, [])

    _write(p / "main.py", "print('changed')\n")
    _write(p / "new" / "n.txt", "new")
    dry = sync.sync(host, str(p), str(dest), True, method=method)
    _check_result(dry)
    assert dry["dryRun"] is True
    assert set(dry["sample"]) == {"main.py", "new/n.txt"} and dry["files"] == 2
    assert not (dest / "new").exists()
    assert (dest / "main.py").read_text() == "print('hi')\n"

    with pytest.raises(ApplicationError) as refused:
        sync.sync(host, str(p), str(dest), False, max_bytes=10, method=method)
    assert refused.value.data["kind"] == "InvalidState"
    assert "gpuWorkbench.remote.syncMaxMegabytes" in (refused.value.data.get("hint") or "")
    assert not (dest / "new").exists()

    done = sync.sync(host, str(p), str(dest), False, method=method)
    assert done["files"] == 2
    assert (dest / "main.py").read_text() == "print('changed')\n"
    assert (dest / "new" / "n.txt").read_text() == "new"


def test_sync_tar(machine: Machine, tmp_path: Path) -> None:
    _sync_scenario(machine, tmp_path, "tar")


def test_sync_default_method(machine: Machine, tmp_path: Path) -> None:
    # rsync when installed on both sides (same machine here), else the tar fallback
    _sync_scenario(machine, tmp_path, None)


def test_rsync_output_parsing() -> None:
    assert sync._sent_file("<f+++++++++ sub/b.txt") == "sub/b.txt"
    assert sync._sent_file("<f.st...... a file with spaces.txt") == "a file with spaces.txt"
    assert sync._sent_file("cd+++++++++ sub/") is None
    assert sync._sent_file(".d..t...... ./") is None
    assert sync._sent_file("Number of files: 12 (reg: 9, dir: 3)") is None
    m = sync._STATS_BYTES.search("Total transferred file size: 1,234,567 bytes")
    assert m and m.group(1) == "1,234,567"
    m = sync._PROGRESS2.match("     32,768  12%  31.25MB/s    0:00:00 (xfr#1, to-chk=38/41)")
    assert m and m.group(1) == "32,768" and m.group(2) == "12"
    base = ["ssh", "-o", "ControlPath=/tmp/c/%C", "-p", "2222", "-i", "/k e y", "u@h"]

    class Host:
        def base_argv(self) -> List[str]:
            return base

    argv = sync._rsync_common(Host(), "/w/p", "/home/u/gpu-workbench/p", "/tmp/list.files")
    assert argv[-2:] == ["/w/p/", "u@h:/home/u/gpu-workbench/p/"]
    assert argv[argv.index("-e") + 1] == "ssh -o ControlPath=/tmp/c/%C -p 2222 -i '/k e y'"
    # Exactly the files walk() chose (its .gitignore rules, negations included).
    assert "--files-from=/tmp/list.files" in argv
    assert not [a for a in argv if "delete" in a]


@pytest.mark.skipif(not HAVE_RSYNC, reason="rsync is not installed on this machine")
def test_rsync_and_tar_give_the_same_tree(machine: Machine, tmp_path: Path) -> None:
    p = _project(tmp_path)
    a, b = tmp_path / "ra", tmp_path / "rb"
    assert sync.sync(machine.host, str(p), str(a), False, method="rsync")["method"] == "rsync"
    assert sync.sync(machine.host, str(p), str(b), False, method="tar")["method"] == "tar"
    assert _tree(a) == _tree(b)


def test_rsync_hidden_falls_back_to_tar(
    machine: Machine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sync.shutil, "which", lambda name, *a, **k: None)
    p = _project(tmp_path)
    result = sync.sync(machine.host, str(p), str(tmp_path / "r"), False)
    assert result["method"] == "tar"
    assert set(_tree(tmp_path / "r")) == EXPECTED
    with pytest.raises(ApplicationError) as forced:
        sync.sync(machine.host, str(p), str(tmp_path / "r2"), False, method="rsync")
    assert forced.value.data["kind"] == "InvalidState"


@pytest.mark.parametrize("method", ["tar", "rsync"])
def test_sync_cancel(machine: Machine, tmp_path: Path, method: str) -> None:
    if method == "rsync" and not HAVE_RSYNC:
        pytest.skip("rsync is not installed on this machine")
    p = tmp_path / "big"
    for i in range(40):
        _write(p / ("f%02d.bin" % i), os.urandom(512 * 1024))
    flag = threading.Event()

    def progress(fraction: float, message: str) -> None:
        if fraction > 0:
            flag.set()

    started = time.monotonic()
    with pytest.raises(RequestCancelled):
        sync.sync(
            machine.host,
            str(p),
            str(tmp_path / "r"),
            False,
            progress=progress,
            cancelled=flag.is_set,
            method=method,
        )
    assert time.monotonic() - started < 30
    sent = _tree(tmp_path / "r") if (tmp_path / "r").exists() else {}
    assert len(sent) < 40
    # a later sync sends what is missing or partial, and the trees then match
    result = sync.sync(machine.host, str(p), str(tmp_path / "r"), False, method=method)
    assert 40 - len(sent) <= result["files"] <= 40
    assert _tree(tmp_path / "r") == _tree(p)


def test_tar_sends_the_content_of_linked_files(machine: Machine, tmp_path: Path) -> None:
    p = tmp_path / "linked"
    _write(p / "real.txt", "content")
    os.symlink("real.txt", str(p / "link.txt"))
    os.symlink(str(tmp_path), str(p / "folder_link"))  # not entered
    result = sync.sync(machine.host, str(p), str(tmp_path / "r"), False, method="tar")
    assert sorted(result["sample"]) == ["link.txt", "real.txt"]
    assert (tmp_path / "r" / "link.txt").read_text() == "content"
    assert not (tmp_path / "r" / "link.txt").is_symlink()


def test_sync_missing_folder(machine: Machine, tmp_path: Path) -> None:
    with pytest.raises(ApplicationError) as missing:
        sync.sync(machine.host, str(tmp_path / "nope"), None, True)
    assert missing.value.data["kind"] == "NotFound"


# ======================= forward =======================


class _Hello(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"hello from the machine"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def _get(port: int) -> bytes:
    with urllib.request.urlopen("http://127.0.0.1:%d/" % port, timeout=5) as r:
        return r.read()


def test_forward_reaches_a_remote_port_and_remove_closes_it(machine: Machine) -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Hello)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    remote_port = server.server_address[1]
    forwards = forward.Forwards()
    host = machine.host
    try:
        # On loopback the remote port is taken here too: another free port is chosen.
        added = forwards.add(host, remote_port, None)
        assert_shape(protocol.RemoteForward, added)
        assert added["remotePort"] == remote_port and added["localPort"] != remote_port
        assert _get(added["localPort"]) == b"hello from the machine"
        assert forwards.list() == [added] and forwards.list(host) == [added]

        # an explicit free local port is used as given
        wanted = _free_port()
        second = forwards.add(host, remote_port, wanted)
        assert second == {"remotePort": remote_port, "localPort": wanted}
        assert _get(wanted) == b"hello from the machine"

        # an explicit port in use is refused clearly
        with pytest.raises(ApplicationError) as busy:
            forwards.add(host, remote_port, remote_port)
        assert busy.value.data["kind"] == "InvalidState"
        assert "in use" in busy.value.message

        forwards.remove(host, added["localPort"])
        assert forwards.list(host) == [second]
        with pytest.raises(OSError):
            _get(added["localPort"])
        with pytest.raises(ApplicationError) as gone:
            forwards.remove(host, added["localPort"])
        assert gone.value.data["kind"] == "NotFound"

        forwards.close_all(host)
        assert forwards.list() == []
        with pytest.raises(OSError):
            _get(wanted)

        # without a master connection the error says so
        host.close()
        with pytest.raises(ApplicationError) as closed:
            forwards.add(host, remote_port, None)
        assert closed.value.data["kind"] == "RemoteUnavailable"
    finally:
        server.shutdown()
        server.server_close()


# ======================= watchdog =======================


@pytest.fixture
def install(machine: Machine) -> Iterator[Dict[str, Any]]:
    """The agent installed on the machine the way the backend does it (remote/agent.py)."""
    from gpu_workbench.remote import agent

    info = agent.install(machine.host, sys.executable)
    assert info["path"].startswith(str(machine.root / "cache"))
    yield info
    state = (
        watchdog._read_json(os.path.join(machine.data_directory, "autostop", "state.json")) or {}
    )
    pid = state.get("pid")
    if isinstance(pid, int) and watchdog.is_watchdog(pid):
        os.kill(pid, 9)


def _state(machine: Machine) -> Dict[str, Any]:
    path = os.path.join(machine.data_directory, "autostop", "state.json")
    return watchdog._read_json(path) or {}


def test_watchdog_acts_with_no_client_connected(
    machine: Machine, install: Dict[str, Any], tmp_path: Path
) -> None:
    stopped = tmp_path / "stopped"
    started = watchdog.start(
        machine.host,
        install,
        1,
        10.0,
        "touch %s; exit 3" % stopped,
        tick=0.2,
        idle_seconds=1.5,
    )
    assert_shape(protocol.RemoteAutostopInfo, dict(started, machine="ssh/test"))
    assert started["running"] is True
    pid = _state(machine)["pid"]
    machine.host.close()  # no client connected any more
    assert not stopped.exists()
    assert wait_for(stopped.exists, 10), "the stop command did not run"
    assert wait_for(lambda: _state(machine).get("acted"), 10), "the result was not recorded"
    state = _state(machine)
    assert state["acted"] is True and state["exitStatus"] == 3
    assert state["idleSince"] is not None and state["actAt"] >= state["idleSince"] + 1.5
    assert state["lastTick"] >= state["actAt"]
    assert state["pid"] == pid
    assert wait_for(lambda: not watchdog.is_watchdog(pid), 5), "the watchdog did not exit"
    machine.host.connect()
    after = watchdog.info(machine.host, install)
    assert_shape(protocol.RemoteAutostopInfo, dict(after, machine="ssh/test"))
    assert after["running"] is False
    assert "exit 3" in after["reason"] and "touch" in after["reason"]


def test_watchdog_restart_replaces_and_zero_stops(
    machine: Machine, install: Dict[str, Any], tmp_path: Path
) -> None:
    stopped = tmp_path / "stopped"
    first = watchdog.start(machine.host, install, 60, 10.0, "touch %s" % stopped, tick=0.2)
    assert first["running"] and first["idleMinutes"] == 60
    old = _state(machine)["pid"]
    second = watchdog.start(machine.host, install, 30, 10.0, "touch %s" % stopped, tick=0.2)
    assert second["running"] and second["idleMinutes"] == 30
    new = _state(machine)["pid"]
    assert new != old and not watchdog.is_watchdog(old)
    assert _state(machine)["idleSeconds"] == 1800.0
    info = watchdog.info(machine.host, install)
    assert info["running"] and info["reason"].startswith("idle")
    assert info["actAt"] == pytest.approx(info["idleSince"] + 1800.0)
    off = watchdog.start(machine.host, install, 0, 10.0, None)
    assert off == {
        "idleMinutes": 0,
        "idleSince": None,
        "actAt": None,
        "reason": "off",
        "running": False,
    }
    assert wait_for(lambda: not watchdog.is_watchdog(new), 5)
    assert not stopped.exists()


def test_busy_kernel_postpones_autostop(
    machine: Machine, install: Dict[str, Any], tmp_path: Path
) -> None:
    from gpu_workbench.kernels.manager import KernelManager
    from gpu_workbench.protocol import KernelExecuteParams, KernelStartParams

    os.makedirs(machine.data_directory, exist_ok=True)
    kernels = KernelManager(machine.data_directory, lambda method, params: None)
    kernel_id = None
    try:
        info = kernels.start(KernelStartParams(cwd=str(tmp_path)))
        kernel_id = info.kernelId
        kernels.execute(KernelExecuteParams(kernelId=kernel_id, code="import time; time.sleep(8)"))
        assert wait_for(lambda: watchdog.busy_kernels(machine.data_directory) == [kernel_id], 10)
        busy_since = time.monotonic()
        stopped = tmp_path / "stopped"
        watchdog.start(
            machine.host, install, 1, 10.0, "touch %s" % stopped, tick=0.2, idle_seconds=1
        )
        machine.host.close()
        time.sleep(2.0)
        # the cell sleeps 8 s: it is still running
        assert watchdog.busy_kernels(machine.data_directory) == [kernel_id]
        assert not stopped.exists(), "acted while a kernel was busy"
        assert _state(machine)["reason"] == "busy: kernel %s is running code" % kernel_id
        assert _state(machine)["idleSince"] is None
        assert wait_for(stopped.exists, 25), "did not act once the kernel went idle"
        # the rule needs 1 idle second after the cell's 8 s
        assert time.monotonic() - busy_since >= 8.0
        assert wait_for(lambda: _state(machine).get("acted"), 10), "the result was not recorded"
        state = _state(machine)
        assert state["acted"] is True and state["exitStatus"] == 0
    finally:
        if kernel_id is not None:
            kernels.shutdown(kernel_id)
        kernels.close()


def test_watchdog_cli_info_without_state(tmp_path: Path) -> None:
    env = dict(os.environ, PYTHONPATH=str(SERVER_ROOT))
    out = subprocess.run(
        [sys.executable, "-m", "gpu_workbench.remote.watchdog", "--info",
         "--state", str(tmp_path / "s.json")],
        env=env, stdout=subprocess.PIPE, check=True, timeout=30,
    ).stdout  # fmt: skip
    value = json.loads(out)
    assert value["running"] is False and value["reason"] == "off"
