"""One machine reached with OpenSSH's client through a multiplexed master connection.

Every command goes through ``ssh`` with ``ControlMaster=auto``: the first one becomes the
master (kept ``ControlPersist=60`` seconds after its last session), later ones reuse it, so
a command costs one round trip instead of a handshake. Host keys are checked strictly
against the user's known_hosts (or a given file); an unknown key is reported with its
fingerprint so the user can accept it once (`trust`), a changed key is never overridden.

Dead links: with ``ServerAliveInterval=2`` and ``ServerAliveCountMax=3`` the master gives
up about 6-8 seconds after the peer stops answering; its sessions (the agent link) end then.
"""

from __future__ import annotations

import base64
import collections
import hashlib
import logging
import os
import stat
import subprocess
import threading
import weakref
from typing import Any, Deque, List, Optional, Tuple

from ..errors import ApplicationError
from ..vms.base import SshTarget

log = logging.getLogger(__name__)

# The master socket is <control_dir>/<40 hex of %C>, created first under a name 17 bytes
# longer; sun_path holds 104 bytes on macOS (108 on Linux).
MAX_CONTROL_DIR = 45
STDERR_TAIL_BYTES = 8192
KEYSCAN_TIMEOUT = 10
# ssh's own preference when it knows no key for the host yet.
_KEY_PREFERENCE = (
    "ssh-ed25519",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "ssh-rsa",
)


class StderrTail:
    """The last bytes a process wrote to stderr, drained by a thread."""

    def __init__(self, limit: int = STDERR_TAIL_BYTES) -> None:
        self._limit = limit
        self._chunks: Deque[bytes] = collections.deque()
        self._size = 0
        self._lock = threading.Lock()

    def feed(self, data: bytes) -> None:
        with self._lock:
            self._chunks.append(data)
            self._size += len(data)
            while self._size > self._limit and len(self._chunks) > 1:
                self._size -= len(self._chunks.popleft())

    def text(self) -> str:
        with self._lock:
            data = b"".join(self._chunks)[-self._limit :]
        return data.decode("utf-8", "replace")

    def drain(self, stream: Any) -> None:
        try:
            for chunk in iter(
                lambda: stream.read1(4096) if hasattr(stream, "read1") else stream.read(4096), b""
            ):
                self.feed(chunk)
        except (OSError, ValueError):
            pass
        finally:
            try:
                stream.close()
            except OSError:
                pass


def short_control_dir(control_dir: str) -> str:
    """`control_dir` (created 0700), or a short private stand-in when it is too long.

    A socket path must fit in ~104 bytes; ssh names the master socket by a 40-character
    hash (%C) and first creates it under a name 17 bytes longer. A longer folder is replaced
    by /tmp/gpuwb-<uid>-<hash of the folder>, which must be ours, a real folder and 0700.
    """
    control_dir = os.path.abspath(control_dir)
    if len(control_dir) <= MAX_CONTROL_DIR:
        os.makedirs(control_dir, mode=0o700, exist_ok=True)
        return control_dir
    uid = os.getuid() if hasattr(os, "getuid") else 0
    digest = hashlib.sha256(control_dir.encode("utf-8")).hexdigest()[:12]
    path = os.path.join("/tmp", "gpuwb-%d-%s" % (uid, digest))
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    info = os.lstat(path)
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != uid or info.st_mode & 0o077:
        raise ApplicationError(
            "RemoteUnavailable",
            "Cannot use %s for SSH connection sockets: it is not a private folder" % path,
            hint="Remove it, or use a shorter data directory",
        )
    return path


def fingerprint_of(blob_b64: str) -> str:
    """OpenSSH's SHA256 fingerprint of a base64 public key blob ("SHA256:..." unpadded)."""
    digest = hashlib.sha256(base64.b64decode(blob_b64)).digest()
    return "SHA256:" + base64.b64encode(digest).decode("ascii").rstrip("=")


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.replace("\r", "\n").split("\n") if line.strip()]
    return lines[-1] if lines else ""


class SshHost:
    """The OpenSSH client command line for one target, its master connection and host key."""

    def __init__(
        self,
        target: SshTarget,
        control_dir: str,
        known_hosts: Optional[str] = None,
        ssh: str = "ssh",
        config_file: Optional[str] = None,
    ) -> None:
        for value in (target.host, target.alias, target.user):
            if value and value.startswith("-"):
                raise ValueError("invalid ssh target %r" % (value,))
        self.target = target
        # What was asked for, and where the sockets really are (see short_control_dir).
        self.requested_control_dir = control_dir
        self.control_dir = short_control_dir(control_dir)
        self.known_hosts = known_hosts
        self.ssh = ssh
        self.config_file = config_file
        # ssh processes started (run, popen, connect's checks): tests count round trips.
        self.calls = 0
        self._tails: "weakref.WeakKeyDictionary[subprocess.Popen, StderrTail]" = (
            weakref.WeakKeyDictionary()
        )

    # ---- command lines ----

    @property
    def label(self) -> str:
        """The machine for people: the alias, or user@host:port."""
        t = self.target
        if t.alias:
            return t.alias
        where = "%s:%d" % (t.host, t.port or 22)
        return "%s@%s" % (t.user, where) if t.user else where

    def _options(self) -> List[str]:
        argv = [self.ssh]
        if self.config_file:
            argv += ["-F", self.config_file]
        options = [
            "ControlMaster=auto",
            "ControlPath=%s" % os.path.join(self.control_dir, "%C"),
            "ControlPersist=60",
            "ServerAliveInterval=2",
            "ServerAliveCountMax=3",
            "BatchMode=yes",
            "StrictHostKeyChecking=yes",
            "ConnectTimeout=10",
            "LogLevel=ERROR",
        ]
        if self.known_hosts:
            options.append("UserKnownHostsFile=%s" % self.known_hosts)
        for option in options:
            argv += ["-o", option]
        return argv

    def _destination(self) -> List[str]:
        t = self.target
        if t.alias:
            return [t.alias]  # the ssh config supplies host, port, user, keys, jump hosts
        argv = ["-p", str(t.port or 22)]
        if t.identity_file:
            argv += ["-i", t.identity_file, "-o", "IdentitiesOnly=yes"]
        argv.append("%s@%s" % (t.user, t.host) if t.user else t.host)
        return argv

    def base_argv(self) -> List[str]:
        """``ssh <options> <destination>``: append a remote command to run it."""
        return self._options() + self._destination()

    # ---- running ----

    def run(
        self, command: str, input: Optional[bytes] = None, timeout: float = 60
    ) -> "subprocess.CompletedProcess[bytes]":
        """Run one remote shell command through the master; stdout/stderr captured.

        A command that outlives `timeout` raises RemoteUnavailable. Exit status 255 is ssh's
        own failure (see `raise_for_ssh`).
        """
        self.calls += 1
        try:
            return subprocess.run(
                [*self.base_argv(), command],
                input=input,
                stdin=None if input is not None else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                timeout=timeout,
            )
        except subprocess.TimeoutExpired:
            raise ApplicationError(
                "RemoteUnavailable",
                "%s did not answer within %g seconds" % (self.label, timeout),
                hint="Check the network and that the machine is running",
            ) from None
        except FileNotFoundError:
            raise ApplicationError(
                "RemoteUnavailable",
                "The OpenSSH client (%s) is not installed" % self.ssh,
                hint="Install OpenSSH's ssh client",
            ) from None

    def popen(self, command: str) -> "subprocess.Popen[bytes]":
        """Start a remote command with stdin/stdout pipes; stderr is kept as a bounded tail."""
        self.calls += 1
        try:
            proc = subprocess.Popen(
                [*self.base_argv(), command],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                bufsize=0,
            )
        except FileNotFoundError:
            raise ApplicationError(
                "RemoteUnavailable",
                "The OpenSSH client (%s) is not installed" % self.ssh,
                hint="Install OpenSSH's ssh client",
            ) from None
        tail = StderrTail()
        self._tails[proc] = tail
        threading.Thread(
            target=tail.drain, args=(proc.stderr,), name="ssh-stderr", daemon=True
        ).start()
        return proc

    def stderr_tail(self, proc: "subprocess.Popen[bytes]") -> str:
        """What a process from `popen` wrote to stderr lately ("" if unknown)."""
        tail = self._tails.get(proc)
        return tail.text() if tail is not None else ""

    # ---- master connection ----

    def _control(self, operation: str, timeout: float = 10) -> "subprocess.CompletedProcess[bytes]":
        self.calls += 1
        return subprocess.run(
            [*self._options(), "-O", operation, *self._destination()],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            timeout=timeout,
        )

    def connect(self) -> None:
        """Make sure a working master connection exists; raise a classified error if not."""
        try:
            if self._control("check").returncode == 0:
                result = self.run("true", timeout=30)
                if result.returncode == 0:
                    return
                self.close()  # a stale master: start over with a fresh one
        except subprocess.TimeoutExpired:
            self.close()
        except FileNotFoundError:
            raise ApplicationError(
                "RemoteUnavailable",
                "The OpenSSH client (%s) is not installed" % self.ssh,
                hint="Install OpenSSH's ssh client",
            ) from None
        result = self.run("true", timeout=40)
        if result.returncode != 0:
            self.raise_for_ssh(result, always=True)

    def raise_for_ssh(
        self, result: "subprocess.CompletedProcess[bytes]", always: bool = False
    ) -> None:
        """Raise the classified error for an ssh failure (exit 255, or any when `always`)."""
        if result.returncode == 0 or (result.returncode != 255 and not always):
            return
        raise self.classify(result.stderr.decode("utf-8", "replace") if result.stderr else "")

    def classify(self, stderr: str) -> ApplicationError:
        """Map ssh's stderr to HostKeyUnknown, HostKeyChanged or RemoteUnavailable."""
        label = self.label
        low = stderr.lower()
        if "remote host identification has changed" in low or (
            "host key for" in low and "has changed" in low
        ):
            return ApplicationError(
                "HostKeyChanged",
                "The SSH host key of %s has changed since it was trusted" % label,
                detail=_last_line(stderr) or None,
                hint="This can mean the machine was replaced, or an attack: check the key with "
                "your provider, then remove the old entry from known_hosts yourself "
                "(ssh-keygen -R)",
            )
        if "host key verification failed" in low or "host key is known for" in low:
            fingerprint: Optional[str] = None
            try:
                fingerprint = self.fingerprint()
            except ApplicationError:
                pass
            return ApplicationError(
                "HostKeyUnknown",
                "The SSH host key of %s is not known yet%s"
                % (label, " (%s)" % fingerprint if fingerprint else ""),
                detail=fingerprint,
                hint="Trust the host key to connect",
            )
        if "connection refused" in low:
            message, hint = (
                "%s refused the SSH connection" % label,
                "Check that the machine is running and its SSH server listens on that port",
            )
        elif "permission denied" in low:
            message, hint = (
                "%s did not accept the SSH key" % label,
                "Check the user name and the identity file for this machine",
            )
        elif "could not resolve hostname" in low or "name or service not known" in low:
            message, hint = (
                "The address of %s cannot be resolved" % label,
                "Check the host name, your DNS and network",
            )
        elif "timed out" in low or "no route to host" in low or "network is unreachable" in low:
            message, hint = (
                "%s cannot be reached" % label,
                "Check the network and that the machine is running",
            )
        elif "connection closed" in low or "connection reset" in low or "broken pipe" in low:
            message, hint = (
                "The connection to %s was closed" % label,
                "Check that the machine is running; it may still be booting",
            )
        else:
            line = _last_line(stderr)
            message, hint = (
                "Cannot connect to %s%s" % (label, ": %s" % line if line else ""),
                "Check the machine's SSH settings",
            )
        return ApplicationError(
            "RemoteUnavailable", message, detail=_last_line(stderr) or None, hint=hint
        )

    def close(self) -> None:
        """Stop the master connection (quiet; nothing happens when there is none)."""
        try:
            self._control("exit", timeout=10)
        except (OSError, subprocess.SubprocessError):
            pass

    # ---- host keys ----

    def _scan_target(self) -> Tuple[str, int, bool]:
        """(host name, port, reached through a proxy) as ssh resolves the target."""
        t = self.target
        if not t.alias:
            return t.host, int(t.port or 22), False
        argv = [self.ssh] + (["-F", self.config_file] if self.config_file else []) + ["-G", t.alias]
        host, port, proxied = t.host or t.alias, int(t.port or 22), False
        try:
            out = subprocess.run(
                argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=10
            ).stdout.decode("utf-8", "replace")
        except (OSError, subprocess.SubprocessError):
            return host, port, proxied
        for line in out.splitlines():
            key, _, value = line.partition(" ")
            value = value.strip()
            if key == "hostname" and value:
                host = value
            elif key == "port" and value.isdigit():
                port = int(value)
            elif key in ("proxyjump", "proxycommand") and value and value != "none":
                proxied = True
        return host, port, proxied

    def _key_through_ssh(self) -> Tuple[List[str], str]:
        """The host key ssh itself negotiates (through jump hosts and proxies, which
        ssh-keyscan cannot use), as known_hosts lines; and ssh's stderr.

        It stops before authenticating (only the "none" method is offered), so nothing of
        the user's is offered to a host not trusted yet; agent and port forwarding are off.
        """
        scratch = os.path.join(
            self.control_dir, "scan-%d-%d" % (os.getpid(), threading.get_ident())
        )
        argv = [self.ssh] + (["-F", self.config_file] if self.config_file else [])
        for option in (
            "StrictHostKeyChecking=accept-new",
            "UserKnownHostsFile=%s" % scratch,
            "GlobalKnownHostsFile=/dev/null",
            "HashKnownHosts=yes",
            "PreferredAuthentications=none",
            "BatchMode=yes",
            "ControlMaster=no",
            "ControlPath=none",
            "ForwardAgent=no",
            "ClearAllForwardings=yes",
            "ConnectTimeout=10",
            "LogLevel=ERROR",
        ):
            argv += ["-o", option]
        argv += [*self._destination(), "true"]
        try:
            result = subprocess.run(
                argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=KEYSCAN_TIMEOUT + 20
            )
            stderr = result.stderr.decode("utf-8", "replace")
        except (OSError, subprocess.SubprocessError) as exc:
            stderr = str(exc)
        try:
            with open(scratch, "r", encoding="utf-8") as f:
                lines = [line.strip() for line in f if line.strip()]
        except OSError:
            lines = []
        finally:
            try:
                os.unlink(scratch)
            except OSError:
                pass
        return lines, stderr

    def _keyscan(self) -> List[Tuple[str, str, str]]:
        """(key type, fingerprint, hashed known_hosts line) per key the host presents."""
        host, port, proxied = self._scan_target()
        if proxied:
            lines, stderr = self._key_through_ssh()
            keys = []
            for line in lines:
                fields = line.split()
                try:
                    keys.append((fields[1], fingerprint_of(fields[2]), line))
                except (IndexError, ValueError, TypeError):
                    continue
            if not keys:
                raise ApplicationError(
                    "RemoteUnavailable",
                    "Cannot read the SSH host key of %s" % self.label,
                    detail=_last_line(stderr) or None,
                    hint="Check that the machine and its jump host are running and reachable",
                )
            return keys
        try:
            result = subprocess.run(
                ["ssh-keyscan", "-H", "-T", "5", "-p", str(port), host],
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=KEYSCAN_TIMEOUT + 5,
            )
        except (OSError, subprocess.SubprocessError) as exc:
            raise ApplicationError(
                "RemoteUnavailable",
                "Cannot read the SSH host key of %s" % self.label,
                detail=str(exc),
                hint="Check that ssh-keyscan is installed and the machine is reachable",
            ) from None
        keys = []
        for line in result.stdout.decode("utf-8", "replace").splitlines():
            fields = line.split()
            if len(fields) < 3 or line.startswith("#"):
                continue
            try:
                keys.append((fields[1], fingerprint_of(fields[2]), line.strip()))
            except (ValueError, TypeError):
                continue
        if not keys:
            raise ApplicationError(
                "RemoteUnavailable",
                "Cannot read the SSH host key of %s" % self.label,
                detail=_last_line(result.stderr.decode("utf-8", "replace")) or None,
                hint="Check that the machine is running and reachable on port %d" % port,
            )

        def rank(key: Tuple[str, str, str]) -> int:
            return _KEY_PREFERENCE.index(key[0]) if key[0] in _KEY_PREFERENCE else 99

        return sorted(keys, key=rank)

    def fingerprint(self) -> str:
        """The SHA256 fingerprint of the host key ssh will use (as ssh-keygen -l prints it)."""
        return self._keyscan()[0][1]

    def known_hosts_file(self) -> str:
        return self.known_hosts or os.path.join(os.path.expanduser("~"), ".ssh", "known_hosts")

    def trust(self, fingerprint: str) -> None:
        """Add the host's key to known_hosts if it still has the fingerprint the user accepted."""
        fingerprint = fingerprint.strip()
        keys = self._keyscan()
        lines = [line for _, fp, line in keys if fp == fingerprint]
        if not lines:
            raise ApplicationError(
                "HostKeyChanged",
                "The SSH host key of %s is not the one you accepted" % self.label,
                detail=keys[0][1],
                hint="The machine now presents %s; check it with your provider before "
                "trusting it" % keys[0][1],
            )
        path = self.known_hosts_file()
        folder = os.path.dirname(path)
        if folder and not os.path.isdir(folder):
            os.makedirs(folder, mode=0o700, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            size = os.fstat(fd).st_size
            prefix = b""
            if size:
                with open(path, "rb") as existing:
                    existing.seek(size - 1)
                    if existing.read(1) != b"\n":
                        prefix = b"\n"
            os.write(fd, prefix + "".join(line + "\n" for line in lines).encode("utf-8"))
        finally:
            os.close(fd)
        log.info("trusted host key %s of %s (%s)", fingerprint, self.label, path)
