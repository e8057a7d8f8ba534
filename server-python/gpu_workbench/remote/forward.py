"""Local port forwards through a machine's SSH master connection (remote/forward).

A forward is added to the running master with ``ssh <options> -O forward -L
127.0.0.1:<local>:127.0.0.1:<remote> <destination>`` (the options are the host's own, so
the same ControlPath is used) and removed with ``-O cancel``. Local ends bind to
127.0.0.1 only. Forwards live as long as the master: when the connection closes they are
gone, and close_all() forgets them.
"""

from __future__ import annotations

import socket
import subprocess
import threading
from typing import Any, Dict, List, Optional, Tuple

from ..errors import ApplicationError

LOCALHOST = "127.0.0.1"
TIMEOUT = 20.0


def port_free(port: int) -> bool:
    """True when 127.0.0.1:`port` can be bound now."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind((LOCALHOST, port))
        return True
    except OSError:
        return False
    finally:
        s.close()


def free_port() -> int:
    """Any port free on 127.0.0.1."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind((LOCALHOST, 0))
        return s.getsockname()[1]
    finally:
        s.close()


def _check_port(value: int, what: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise ApplicationError("InvalidState", "%s must be a port number (1-65535)" % what)


def _spec(local_port: int, remote_port: int) -> str:
    return "%s:%d:%s:%d" % (LOCALHOST, local_port, LOCALHOST, remote_port)


def _host_key(host: Any) -> Tuple[str, ...]:
    return tuple(host.base_argv())


def _control(host: Any, operation: str, spec: str) -> "subprocess.CompletedProcess[bytes]":
    base = host.base_argv()
    argv = [*base[:-1], "-O", operation, "-L", spec, base[-1]]
    try:
        return subprocess.run(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            timeout=TIMEOUT,
        )
    except subprocess.TimeoutExpired as exc:
        raise ApplicationError(
            "RemoteUnavailable", "The SSH connection did not answer the %s request" % operation
        ) from exc
    except OSError as exc:
        raise ApplicationError("RemoteUnavailable", "Cannot run ssh: %s" % exc) from exc


def _failure(result: "subprocess.CompletedProcess[bytes]", local_port: int) -> ApplicationError:
    err = (result.stderr or b"").decode("utf-8", "replace").strip()
    low = err.lower()
    if (
        "control socket" in low
        or "no such file" in low
        or "connection refused" in low
        or ("master" in low and "running" in low)
    ):
        return ApplicationError(
            "RemoteUnavailable",
            "The SSH connection to the machine is not open",
            detail=err or None,
            hint="Connect to the machine first",
        )
    if "forwarding failed" in low or "address already in use" in low:
        return ApplicationError(
            "InvalidState",
            "Local port %d could not be forwarded (in use?)" % local_port,
            detail=err or None,
            hint="Choose another local port",
        )
    return ApplicationError(
        "RemoteUnavailable",
        "ssh refused the forward (exit %d)" % result.returncode,
        detail=err or None,
    )


class Forwards:
    """The forwards this backend added, per host (keyed by the host's ssh argv)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        # host key -> {local port: remote port}
        self._by_host: Dict[Tuple[str, ...], Dict[int, int]] = {}

    def add(self, host: Any, remote_port: int, local_port: Optional[int] = None) -> Dict[str, int]:
        """Forward 127.0.0.1:`local_port` here to 127.0.0.1:`remote_port` on the machine.

        Default local port: the remote number when free here, else any free one.
        Returns protocol.RemoteForward.
        """
        _check_port(remote_port, "remotePort")
        key = _host_key(host)
        with self._lock:
            known = dict(self._by_host.get(key, {}))
        if local_port is None:
            local_port = remote_port if port_free(remote_port) else free_port()
        else:
            _check_port(local_port, "localPort")
            if known.get(local_port) == remote_port:
                return {"remotePort": remote_port, "localPort": local_port}
            if local_port in known:
                raise ApplicationError(
                    "InvalidState",
                    "Local port %d already forwards remote port %d"
                    % (local_port, known[local_port]),
                    hint="Remove that forward first, or choose another local port",
                )
            if not port_free(local_port):
                raise ApplicationError(
                    "InvalidState",
                    "Local port %d is in use" % local_port,
                    hint="Choose another local port, or leave it empty to pick a free one",
                )
        result = _control(host, "forward", _spec(local_port, remote_port))
        if result.returncode != 0:
            raise _failure(result, local_port)
        with self._lock:
            self._by_host.setdefault(key, {})[local_port] = remote_port
        return {"remotePort": remote_port, "localPort": local_port}

    def remove(self, host: Any, local_port: int) -> None:
        """Close the forward on `local_port` (NotFound when there is none)."""
        key = _host_key(host)
        with self._lock:
            remote_port = self._by_host.get(key, {}).get(local_port)
        if remote_port is None:
            raise ApplicationError("NotFound", "No forward on local port %s" % local_port)
        result = _control(host, "cancel", _spec(local_port, remote_port))
        with self._lock:
            self._by_host.get(key, {}).pop(local_port, None)
        if result.returncode != 0:
            err = (result.stderr or b"").decode("utf-8", "replace").lower()
            if "control socket" in err or "no such file" in err:
                return  # the master is gone, and the forward with it
            raise _failure(result, local_port)

    def list(self, host: Any = None) -> List[Dict[str, int]]:
        """RemoteForward records of `host` (every host when None), by local port."""
        with self._lock:
            if host is None:
                pairs = [p for ports in self._by_host.values() for p in ports.items()]
            else:
                pairs = list(self._by_host.get(_host_key(host), {}).items())
        return [{"remotePort": r, "localPort": loc} for loc, r in sorted(pairs)]

    def close_all(self, host: Any, cancel: bool = True) -> None:
        """Forget `host`'s forwards; with `cancel`, also ask a still-running master to close
        them (errors ignored: when the connection is gone the forwards are too)."""
        key = _host_key(host)
        with self._lock:
            ports = self._by_host.pop(key, {})
        if not cancel:
            return
        for local_port, remote_port in ports.items():
            try:
                _control(host, "cancel", _spec(local_port, remote_port))
            except ApplicationError:
                pass
