"""Connections to remote machines and the routing of kernel, GPU and checkpoint calls to
their agents.

A machine ("provider/id", a VM of the VM service with an SSH target) is reached with one
multiplexed OpenSSH master (ssh.py); the agent, this backend's own package copied once
per version (agent.py), runs there as `python -m gpu_workbench` on an ssh channel and is
spoken to with the same protocol (link.py).

- Remote kernels are exposed as `<remote kernel id>@<provider>/<id>`; every kernel/*
  method on such an id is forwarded with the remote id, and the agent's `kernel/event`
  notifications come back with the composite id. The manager remembers the last `seq`
  it forwarded per kernel.
- When the link drops, kernels keep running on the machine (they are detached and journal
  their output). The manager reconnects with backoff and re-attaches every kernel it knows
  with `kernel/attach {since: last seq}`: the agent replays exactly what was missed, so no
  line is lost and none is shown twice.
- `gpu/watch {machine}` watches through the agent (its sampler reads the machine's GPUs);
  its `gpu/sample` notifications come back with `machine` set. `checkpoint/inspect
  {machine}` reads the file on the machine; only the summary crosses the link.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any, Callable, Dict, List, Mapping, Optional, Set, Tuple

from ..errors import ApplicationError
from ..kernels.envfile import load_env_file

log = logging.getLogger(__name__)

KERNEL_METHODS = (
    "kernel/execute",
    "kernel/interrupt",
    "kernel/restart",
    "kernel/shutdown",
    "kernel/attach",
    "kernel/inputReply",
    "kernel/variables",
)

Notify = Callable[[str, Any], None]
FindVm = Callable[[str, str, Dict[str, Dict[str, str]]], Any]


def split_kernel_id(kernel_id: str) -> Optional[Tuple[str, str]]:
    """(remote id, machine) of a remote kernel id, or None for a local one."""
    remote, sep, machine = kernel_id.partition("@")
    if not sep or not remote or "/" not in machine:
        return None
    return remote, machine


def _unavailable(message: str, hint: Optional[str] = None) -> ApplicationError:
    return ApplicationError("RemoteUnavailable", message, hint=hint)


class _Connection:
    """One machine: its ssh master, agent install and link, and what the manager forwards."""

    def __init__(self, machine: str, name: str, target: Any, python: str) -> None:
        self.machine = machine
        self.name = name
        self.target = target
        self.python = python
        self.state = "connecting"
        self.message: Optional[str] = None
        self.host: Any = None
        self.install: Optional[Dict[str, Any]] = None
        self.link: Any = None
        self.interpreters: List[Dict[str, Any]] = []
        self.connected_at: Optional[float] = None
        self.reconnects = 0
        self.latency_ms: Optional[float] = None
        self.kernels: Dict[str, int] = {}  # remote kernel id -> last seq forwarded
        self.gpu_watchers: Set[str] = set()
        self.stop = threading.Event()
        self.reconnecting: Optional[threading.Thread] = None
        self.lock = threading.RLock()

    def host_text(self) -> str:
        t = self.target
        if getattr(t, "alias", None):
            return str(t.alias)
        user = "%s@" % t.user if getattr(t, "user", None) else ""
        return "%s%s:%s" % (user, t.host, t.port)


class RemoteManager:
    """Every remote machine this backend is connected to. Thread-safe."""

    def __init__(
        self,
        data_directory: str,
        find_vm: FindVm,
        notify: Notify,
        settings: Optional[Mapping[str, Any]] = None,
        ssh_config: Callable[[], Optional[str]] = lambda: None,
    ) -> None:
        self._data = data_directory
        self._find_vm = find_vm
        self._ssh_config = ssh_config
        self._notify = notify
        self._settings: Dict[str, Any] = dict(settings or {})
        self._lock = threading.RLock()
        self._connections: Dict[str, _Connection] = {}
        self._forwards_registry: Any = None
        self._closed = False

    @property
    def _forwards(self) -> Any:
        if self._forwards_registry is None:
            from .forward import Forwards

            self._forwards_registry = Forwards()
        return self._forwards_registry

    def update_settings(self, settings: Mapping[str, Any]) -> None:
        with self._lock:
            self._settings = dict(settings)

    # ---- records ----

    def _record(self, c: _Connection) -> Dict[str, Any]:
        forwards: List[Dict[str, Any]] = []
        if c.host is not None and self._forwards_registry is not None:
            try:
                forwards = [
                    {"remotePort": f["remotePort"], "localPort": f["localPort"]}
                    for f in self._forwards.list(c.host)
                ]
            except Exception:  # the record must always build
                forwards = []
        return {
            "machine": c.machine,
            "name": c.name,
            "state": c.state,
            "message": c.message,
            "host": c.host_text(),
            "agentVersion": (c.install or {}).get("version"),
            "agentPython": (c.install or {}).get("python"),
            "interpreters": list(c.interpreters),
            "connectedAt": c.connected_at,
            "reconnects": c.reconnects,
            "latencyMs": c.latency_ms,
            "forwards": forwards,
        }

    def _set_state(self, c: _Connection, state: str, message: Optional[str] = None) -> None:
        with c.lock:
            c.state = state
            c.message = message
        log.info("remote %s: %s%s", c.machine, state, (" (%s)" % message) if message else "")
        try:
            self._notify("remote/state", self._record(c))
        except Exception:
            log.debug("could not send remote/state", exc_info=True)

    def list(self) -> Dict[str, Any]:
        with self._lock:
            connections = list(self._connections.values())
        return {"machines": [self._record(c) for c in connections]}

    # ---- connecting ----

    def _known_hosts(self) -> Optional[str]:
        value = self._settings.get("knownHostsFile")
        return os.path.expanduser(value) if isinstance(value, str) and value.strip() else None

    def _control_dir(self) -> str:
        path = os.path.join(self._data, "ssh")
        os.makedirs(path, mode=0o700, exist_ok=True)
        return path

    def connect(
        self,
        provider: str,
        vm_id: str,
        python: Optional[str],
        credentials: Optional[Dict[str, Dict[str, str]]],
        check: Callable[[], None] = lambda: None,
    ) -> Dict[str, Any]:
        machine = "%s/%s" % (provider, vm_id)
        vm = self._find_vm(provider, vm_id, credentials or {})
        # An SSH host's state is only what listing could check (an untrusted host key reads
        # "unknown"); connecting tells the real story, so only other providers must run.
        if vm.state != "running" and not (provider == "ssh" and vm.state == "unknown"):
            raise _unavailable(
                "%s is %s" % (vm.name or machine, vm.state),
                hint="Start the machine first (GPU Machines view).",
            )
        if vm.ssh is None:
            raise _unavailable(
                "%s has no SSH address yet" % (vm.name or machine),
                hint="Wait until it has a public address, then connect again.",
            )
        with self._lock:
            old = self._connections.get(machine)
        if old is not None and old.state == "connected" and old.link is not None and old.link.alive:
            return self._record(old)
        if old is not None:
            self._teardown(old)
        c = _Connection(machine, vm.name or vm_id, vm.ssh, python or "python3")
        with self._lock:
            self._connections[machine] = c
        self._set_state(c, "connecting")
        try:
            self._open(c, check)
        except ApplicationError as exc:
            self._set_state(c, "failed", exc.message)
            raise
        except Exception as exc:
            log.exception("connecting to %s failed", machine)
            self._set_state(c, "failed", str(exc))
            raise _unavailable("Connecting to %s failed: %s" % (c.name, exc)) from None
        self._set_state(c, "connected")
        return self._record(c)

    def _open(self, c: _Connection, check: Callable[[], None] = lambda: None) -> None:
        """Master, agent, interpreters and link; raises ApplicationError."""
        from . import agent
        from .link import AgentLink

        host = self._host(c)
        host.connect()
        check()
        install = agent.install(host, c.python, check)
        check()
        if not c.interpreters:
            try:
                c.interpreters = agent.interpreters(host, install["python"])
            except ApplicationError as exc:
                log.warning("listing interpreters on %s: %s", c.machine, exc.message)
        link = AgentLink(
            host,
            install,
            on_notification=lambda method, params: self._from_agent(c, method, params),
            on_exit=lambda reason: self._link_lost(c, link, reason),
        )
        link.start()
        with c.lock:
            c.host, c.install, c.link = host, install, link
            c.connected_at = time.time()
        try:
            c.latency_ms = link.latency_ms()
        except ApplicationError:
            c.latency_ms = None

    def _host(self, c: _Connection) -> Any:
        from .ssh import SshHost

        # An alias from the user's ssh config (jump hosts...) resolves only with that config.
        config = self._ssh_config() if getattr(c.target, "alias", None) else None
        return SshHost(
            c.target, self._control_dir(), known_hosts=self._known_hosts(), config_file=config
        )

    def trust_host(self, machine: str, fingerprint: str) -> Dict[str, Any]:
        c = self._connection(machine, connected=False)
        self._host(c).trust(fingerprint)
        self._set_state(c, "disconnected", "Host key trusted; connect again")
        return self._record(c)

    def disconnect(self, machine: str) -> Dict[str, Any]:
        c = self._connection(machine, connected=False)
        self._teardown(c)
        self._set_state(c, "disconnected")
        with self._lock:
            self._connections.pop(machine, None)
        return self._record(c)

    def _teardown(self, c: _Connection) -> None:
        c.stop.set()
        link, host = c.link, c.host
        c.link = None
        if link is not None:
            try:
                link.close()
            except Exception:
                log.debug("closing the agent link failed", exc_info=True)
        if host is not None and self._forwards_registry is not None:
            try:
                self._forwards.close_all(host)
            except Exception:
                log.debug("closing forwards failed", exc_info=True)
        if host is not None:
            try:
                host.close()
            except Exception:
                log.debug("closing the ssh master failed", exc_info=True)

    def close(self) -> None:
        self._closed = True
        with self._lock:
            connections = list(self._connections.values())
            self._connections.clear()
        for c in connections:
            self._teardown(c)

    # ---- the link dropping and coming back ----

    def _link_lost(self, c: _Connection, link: Any, reason: str) -> None:
        if self._closed or c.stop.is_set() or c.link is not link:
            return
        log.info("remote %s: the link ended: %s", c.machine, reason)
        self._set_state(c, "reconnecting", "The connection dropped; reconnecting")
        thread = threading.Thread(
            target=self._reconnect, args=(c,), name="gpuwb-remote-reconnect", daemon=True
        )
        c.reconnecting = thread
        thread.start()

    def _reconnect(self, c: _Connection) -> None:
        from .link import connect_with_backoff

        old = c.host
        if old is not None:
            try:
                old.close()  # the dead master; a new one is made
            except Exception:
                pass

        def attempt() -> bool:
            self._open(c)
            return True

        def on_attempt(n: int, delay: float) -> None:
            log.info("remote %s: reconnect attempt %d failed; next in %.1f s", c.machine, n, delay)

        ok = connect_with_backoff(attempt, on_attempt, c.stop)
        if not ok or c.stop.is_set():
            return
        with c.lock:
            c.reconnects += 1
            kernels = dict(c.kernels)
            watchers = set(c.gpu_watchers)
        for remote_id, since in kernels.items():
            try:
                c.link.request("kernel/attach", {"kernelId": remote_id, "since": since})
            except ApplicationError as exc:
                log.warning("re-attaching %s on %s: %s", remote_id, c.machine, exc.message)
        for watcher in watchers:
            try:
                c.link.request("gpu/watch", {"watcher": watcher, "watching": True})
            except ApplicationError as exc:
                log.warning("re-watching GPUs on %s: %s", c.machine, exc.message)
        self._set_state(c, "connected")

    # ---- notifications from an agent ----

    def _from_agent(self, c: _Connection, method: str, params: Any) -> None:
        if not isinstance(params, dict):
            return
        if method == "kernel/event":
            remote_id = params.get("kernelId")
            event = params.get("event")
            if not isinstance(remote_id, str) or not isinstance(event, dict):
                return
            seq = event.get("seq")
            with c.lock:
                last = c.kernels.get(remote_id, 0)
                if isinstance(seq, int):
                    if seq <= last:
                        return  # already forwarded (a replay overlapping what we had)
                    c.kernels[remote_id] = seq
                else:
                    c.kernels.setdefault(remote_id, last)
            self._notify(
                "kernel/event", {"kernelId": "%s@%s" % (remote_id, c.machine), "event": event}
            )
        elif method == "gpu/sample":
            params = dict(params)
            params["machine"] = c.machine
            self._notify("gpu/sample", params)
        elif method in ("$/progress", "window/logMessage"):
            return
        else:
            log.debug("agent %s sent %s", c.machine, method)

    # ---- routing ----

    def _connection(self, machine: str, connected: bool = True) -> _Connection:
        with self._lock:
            c = self._connections.get(machine)
        if c is None:
            raise _unavailable(
                "Not connected to %s" % machine,
                hint="Connect to it from the GPU Machines view (Connect).",
            )
        if connected and (c.link is None or c.state != "connected"):
            raise _unavailable(
                "%s is %s" % (c.name, c.state),
                hint="It reconnects by itself when the network is back."
                if c.state == "reconnecting"
                else "Connect to it from the GPU Machines view.",
            )
        return c

    def _rewrite(self, c: _Connection, value: Any) -> Any:
        if isinstance(value, dict) and isinstance(value.get("kernelId"), str):
            value = dict(value)
            value["kernelId"] = "%s@%s" % (value["kernelId"], c.machine)
            if "python" in value:  # a KernelInfo
                value["machine"] = c.machine
        return value

    def start_kernel(self, params: Dict[str, Any]) -> Dict[str, Any]:
        machine = params.pop("machine")
        c = self._connection(machine)
        env = dict(params.get("env") or {})
        env_file = params.pop("envFile", None)
        if env_file:  # read here (the file is on this machine); the kernel's env wins
            try:
                values, warnings = load_env_file(env_file, {})
            except OSError:
                values, warnings = {}, []
            for warning in warnings:
                log.warning("%s: %s", env_file, warning)
            values.update(env)
            env = values
        params["env"] = env or None
        if not params.get("python"):
            params["python"] = (c.install or {}).get("python") or c.python
        cwd = params.get("cwd")
        if cwd:
            c.host.run("mkdir -p %s" % _shell_path(cwd), timeout=30)
        info = c.link.request("kernel/start", {k: v for k, v in params.items() if v is not None})
        with c.lock:
            c.kernels.setdefault(info["kernelId"], 0)
        return self._rewrite(c, info)

    def kernel_call(self, method: str, params: Dict[str, Any]) -> Any:
        split = split_kernel_id(params["kernelId"])
        assert split is not None
        remote_id, machine = split
        c = self._connection(machine)
        forwarded = dict(params)
        forwarded["kernelId"] = remote_id
        if method == "kernel/attach":
            with c.lock:
                # Replay from what the client has; remember it so a reconnect resumes there.
                since = int(params.get("since") or 0)
                c.kernels[remote_id] = since
        result = c.link.request(method, forwarded)
        if method == "kernel/shutdown":
            with c.lock:
                c.kernels.pop(remote_id, None)
        return self._rewrite(c, result)

    def kernels_unseen(self, machine: str) -> bool:
        """Whether `machine` has kernels this backend cannot see now: it is connecting or
        reconnecting with kernels attached before. Idle autostop counts that as busy (a
        link that flaps must not make a training machine look idle)."""
        with self._lock:
            c = self._connections.get(machine)
        if c is None:
            return False
        with c.lock:
            return c.state in ("connecting", "reconnecting") and bool(c.kernels)

    def list_kernels(self) -> List[Dict[str, Any]]:
        with self._lock:
            connections = [c for c in self._connections.values() if c.state == "connected"]
        out: List[Dict[str, Any]] = []
        for c in connections:
            try:
                result = c.link.request("kernel/list", {}, timeout=15)
            except ApplicationError as exc:
                log.info("listing kernels on %s: %s", c.machine, exc.message)
                continue
            out.extend(self._rewrite(c, k) for k in result.get("kernels", []))
        return out

    def gpu_watch(self, machine: str, watcher: str, watching: bool) -> Dict[str, Any]:
        c = self._connection(machine)
        with c.lock:
            if watching:
                c.gpu_watchers.add(watcher)
            else:
                c.gpu_watchers.discard(watcher)
        snapshot = dict(c.link.request("gpu/watch", {"watcher": watcher, "watching": watching}))
        snapshot["machine"] = machine
        return snapshot

    def agent_call(self, machine: str, method: str, params: Dict[str, Any]) -> Any:
        """Any other request, answered by the machine's agent (e.g. checkpoint/inspect)."""
        return self._connection(machine).link.request(method, params, timeout=300)

    def sync(self, machine: str, **kwargs: Any) -> Dict[str, Any]:
        from . import sync

        c = self._connection(machine)
        result = sync.sync(c.host, **kwargs)
        result["machine"] = machine
        return result

    def forward(self, machine: str, remote_port: int, local_port: Optional[int]) -> Dict[str, Any]:
        c = self._connection(machine)
        self._forwards.add(c.host, remote_port, local_port)
        return self._record(c)

    def unforward(self, machine: str, local_port: int) -> Dict[str, Any]:
        c = self._connection(machine)
        self._forwards.remove(c.host, local_port)
        return self._record(c)

    def autostop(
        self, machine: str, idle_minutes: int, threshold: Optional[float], command: Optional[str]
    ) -> Dict[str, Any]:
        from . import watchdog

        c = self._connection(machine)
        info = watchdog.start(
            c.host, c.install or {}, idle_minutes, 10.0 if threshold is None else threshold, command
        )
        info["machine"] = machine
        return info

    def autostop_info(self, machine: str) -> Dict[str, Any]:
        """The watchdog's state on the machine (for the countdown); changes nothing."""
        from . import watchdog

        c = self._connection(machine)
        info = watchdog.info(c.host, c.install or {})
        info["machine"] = machine
        return info


def _shell_path(path: str) -> str:
    """Quote a remote path for the shell, keeping a leading ~/ expandable."""
    import shlex

    if path == "~":
        return "~"
    if path.startswith("~/"):
        return "~/" + shlex.quote(path[2:])
    return shlex.quote(path)
