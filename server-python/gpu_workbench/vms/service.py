"""VmService: the provider registry, per-call credentials, the cost ledger and idle autostop.

Decisions (documented once here):

- Providers are imported lazily by module name; a module that is missing or fails to import
  makes only that provider unavailable (with the reason), never the others.
- Credentials arrive per call ({provider: {field: value}}) and are never written to disk or
  logged. While a call runs, its credential values are registered with a log-record filter
  that redacts them from every log record of the process, and every error that leaves the
  service is redacted too. The autostop watchdog must act later without a request, so it
  keeps in memory only (never on disk) the latest credentials of providers that have a
  watched VM; after a backend restart it has none until the next vm/* call brings them
  (AWS needs none: it uses its own credential chain).
- Settings: the `vms` section of initializationOptions or of gpuWorkbench.vms, e.g.
  {"aws": {"endpointUrl", "regions", "profile"}, "lambda": {"apiUrl"}, "linode": {"apiUrl"},
  "ssh": {"hosts": [...]}, "autostopTickSeconds": 30}; env fallbacks GPUWB_AWS_ENDPOINT_URL,
  GPUWB_LAMBDA_API_URL, GPUWB_LINODE_API_URL, GPUWB_VM_AUTOSTOP_TICK_SECONDS (how often the
  watchdog looks; tests make it short, the idle window itself is still whole minutes). In an untrusted workspace, endpoint overrides
  and programs from settings (keys ending in `Url` or `Path`, `configFile`, `sshDir`, `hosts`)
  are ignored, because
  workspace settings could send credentials to a server of the workspace author's choosing;
  the env fallbacks still apply (the environment is the user's, not the workspace's).
- The local machine is never recorded in the ledger (it costs 0) and never acted on.
- Idle autostop: a VM is idle when `busy(vm)` is False and `gpu_utilization(vm)` is known and
  under the threshold, at every tick of the window. The server makes `busy` true while a
  kernel on the VM (over a remote connection) runs or has cells queued (kernels_keep_busy);
  the default `busy` (no server) is False. GPU utilization None (unknown: no SSH target,
  unreachable, no nvidia-smi) means not idle, so an unobservable VM is never stopped. With a
  multi-GPU VM the busiest GPU counts. The warning (vm/idleWarning) goes out 2 minutes
  before acting (at once when the window is shorter); vm/keepRunning restarts the window.
  Action: stop when the VM can stop and stopping ends billing; else terminate when
  terminateIfNoStop and the VM can terminate; else a vm/idleWarning with action "warn"
  (once per idle window). Once a stop or terminate is done, a last vm/idleWarning says so
  with action "stopped" or "terminated" (and actAt the time it acted), so the client can
  refresh its views and tell the user at once instead of at its next poll.
"""

from __future__ import annotations

import importlib
import json
import logging
import math
import os
import re
import subprocess
import threading
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Tuple

from ..errors import ApplicationError, RequestCancelled, RpcError
from .base import (
    Check,
    CreateRequest,
    Provider,
    ProviderError,
    Report,
    Vm,
    no_check,
    no_report,
    unsupported,
)
from .ledger import Ledger

log = logging.getLogger(__name__)

# name -> (module under gpu_workbench.vms, class, display name used when it cannot load)
PROVIDER_MODULES: Dict[str, Tuple[str, str, str]] = {
    "local": ("local", "LocalProvider", "This machine"),
    "ssh": ("ssh_hosts", "SshProvider", "SSH hosts"),
    "aws": ("aws", "AwsProvider", "AWS EC2"),
    "lambda": ("lambda_cloud", "LambdaProvider", "Lambda Cloud"),
    "linode": ("linode", "LinodeProvider", "Linode"),
    "skypilot": ("skypilot", "SkyPilotProvider", "SkyPilot"),
}
ENV_FALLBACKS = {
    "aws": ("endpointUrl", "GPUWB_AWS_ENDPOINT_URL"),
    "lambda": ("apiUrl", "GPUWB_LAMBDA_API_URL"),
    "linode": ("apiUrl", "GPUWB_LINODE_API_URL"),
}
DEFAULT_TICK_SECONDS = 30.0
MIN_TICK_SECONDS = 0.05
WARN_BEFORE_SECONDS = 120.0
DEFAULT_GPU_THRESHOLD = 10.0
SSH_TIMEOUT_SECONDS = 15.0
AUTOSTOP_FILE = "autostop.json"
REDACTED = "[redacted]"
_MIN_SECRET_LENGTH = 4  # shorter values would redact ordinary words

ProviderFactory = Callable[[Dict[str, Any]], Provider]
Notify = Callable[[str, Dict[str, Any]], None]
Credentials = Optional[Dict[str, Dict[str, str]]]


# ---- redaction of credentials ----


class _Secrets:
    """Credential values of the calls in flight, redacted from every log record."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Dict[str, int] = {}
        self._installed = False

    def install(self) -> None:
        with self._lock:
            if self._installed:
                return
            self._installed = True
            previous = logging.getLogRecordFactory()

            def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
                record = previous(*args, **kwargs)
                if self._counts:
                    self._scrub(record)
                return record

            logging.setLogRecordFactory(factory)

    def _scrub(self, record: logging.LogRecord) -> None:
        try:
            message = record.getMessage()
        except Exception:
            message = str(record.msg)
        record.msg = self.redact(message)
        record.args = None
        if record.exc_info and record.exc_info[0] is not None:
            text = "".join(traceback.format_exception(*record.exc_info)).rstrip("\n")
            record.exc_text = self.redact(text)
            record.exc_info = None

    def add(self, values: Iterable[str]) -> List[str]:
        added = [v for v in values if isinstance(v, str) and len(v) >= _MIN_SECRET_LENGTH]
        with self._lock:
            for v in added:
                self._counts[v] = self._counts.get(v, 0) + 1
        return added

    def remove(self, values: Iterable[str]) -> None:
        with self._lock:
            for v in values:
                left = self._counts.get(v, 0) - 1
                if left > 0:
                    self._counts[v] = left
                else:
                    self._counts.pop(v, None)

    def redact(self, text: str, extra: Iterable[str] = ()) -> str:
        with self._lock:
            values = set(self._counts)
        values.update(v for v in extra if isinstance(v, str) and len(v) >= _MIN_SECRET_LENGTH)
        for value in sorted(values, key=len, reverse=True):
            if value in text:
                text = text.replace(value, REDACTED)
        return text


SECRETS = _Secrets()


def secret_values(credentials: Credentials) -> List[str]:
    values: List[str] = []
    if isinstance(credentials, dict):
        for fields in credentials.values():
            if isinstance(fields, dict):
                values.extend(v for v in fields.values() if isinstance(v, str))
    return values


def redact_error(error: RpcError, secrets: Iterable[str]) -> RpcError:
    """The same error with every secret value removed from its message, detail and hint."""
    values = list(secrets)
    if not values:
        return error
    if isinstance(error, ApplicationError):
        clean = ApplicationError(
            error.kind,
            SECRETS.redact(error.message, values),
            detail=SECRETS.redact(error.detail, values) if error.detail else error.detail,
            hint=SECRETS.redact(error.hint, values) if error.hint else error.hint,
        )
        return clean
    return RpcError(error.code, SECRETS.redact(error.message, values), error.data)


class _CallGuard:
    """Registers a call's secrets for redaction and converts every failure into a clean
    RpcError (redacted; tracebacks of unexpected failures go to the log, redacted)."""

    def __init__(self, what: str, credentials: Credentials) -> None:
        self._what = what
        self._values = secret_values(credentials)
        self._added: List[str] = []

    def __enter__(self) -> None:
        self._added = SECRETS.add(self._values)

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        try:
            if exc is None or isinstance(exc, RequestCancelled):
                return
            if isinstance(exc, RpcError):
                raise redact_error(exc, self._values) from None
            if isinstance(exc, Exception):
                text = SECRETS.redact(
                    "".join(traceback.format_exception(exc_type, exc, tb)), self._values
                )
                log.error("%s failed unexpectedly:\n%s", self._what, text)
                raise ApplicationError(
                    "Internal",
                    SECRETS.redact("%s failed: %s" % (self._what, exc), self._values),
                    hint="See the GPU Workbench log for details.",
                ) from None
        finally:
            SECRETS.remove(self._added)


# ---- settings ----


def provider_settings(
    settings: Mapping[str, Any], name: str, environ: Mapping[str, str], trusted: bool
) -> Dict[str, Any]:
    """The settings section of one provider, with env fallbacks and the untrusted rule."""
    raw = settings.get(name)
    section: Dict[str, Any] = dict(raw) if isinstance(raw, dict) else {}
    if not trusted:
        # A workspace must not redirect API calls (and the credentials they carry), choose a
        # program to run (skyPath, sshPath, nvidiaSmiPath), an ssh config (ProxyCommand runs
        # commands) or hosts to connect to. The extension also lists these settings in
        # restrictedConfigurations, so VS Code ignores workspace values for them.
        for key in list(section):
            if _untrusted_key(key):
                log.info("untrusted workspace: ignoring vms.%s.%s", name, key)
                del section[key]
    fallback = ENV_FALLBACKS.get(name)
    if fallback is not None and not section.get(fallback[0]) and environ.get(fallback[1]):
        section[fallback[0]] = environ[fallback[1]]
    return section


def _untrusted_key(key: str) -> bool:
    lowered = key.lower()
    return lowered.endswith(("url", "path")) or lowered in ("configfile", "sshdir", "hosts")


TICK_ENV = "GPUWB_VM_AUTOSTOP_TICK_SECONDS"


def tick_seconds(settings: Mapping[str, Any], environ: Optional[Mapping[str, str]] = None) -> float:
    value: Any = settings.get("autostopTickSeconds")
    if value is None and environ is not None and environ.get(TICK_ENV):
        try:
            value = float(environ[TICK_ENV])
        except ValueError:
            log.warning("ignoring %s=%r (not a number)", TICK_ENV, environ[TICK_ENV])
    if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
        return max(MIN_TICK_SECONDS, float(value))
    return DEFAULT_TICK_SECONDS


# ---- GPU utilization over ssh ----


def ssh_gpu_utilization(vm: Vm, timeout: float = SSH_TIMEOUT_SECONDS) -> Optional[float]:
    """Highest GPU utilization (%) of `vm` via nvidia-smi over ssh; None when unknown."""
    target = vm.ssh
    if target is None:
        return None
    command = [
        "ssh",
        "-o",
        "BatchMode=yes",
        "-o",
        "ConnectTimeout=%d" % max(1, int(timeout // 2)),
        "-o",
        "StrictHostKeyChecking=accept-new",
    ]
    if target.alias:
        command.append(target.alias)
    else:
        command += ["-p", str(target.port)]
        if target.identity_file:
            command += ["-i", target.identity_file]
        command.append("%s@%s" % (target.user, target.host) if target.user else target.host)
    command += [
        "nvidia-smi",
        "--query-gpu=utilization.gpu",
        "--format=csv,noheader,nounits",
    ]
    try:
        done = subprocess.run(
            command,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=timeout,
            check=False,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        log.debug("gpu utilization of %s: %s", vm.key, exc)
        return None
    if done.returncode != 0:
        log.debug("gpu utilization of %s: ssh exited %d", vm.key, done.returncode)
        return None
    return parse_utilization(done.stdout.decode("utf-8", "replace"))


def parse_utilization(text: str) -> Optional[float]:
    values: List[float] = []
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            values.append(float(line))
        except ValueError:
            return None  # "[N/A]" or an error message: unknown
    return max(values) if values else None


def kernels_keep_busy(kernels: Iterable[Mapping[str, Any]], key: str) -> bool:
    """Whether a kernel on machine `key` ("provider/id") is running or has cells queued.

    `kernels` are KernelInfo records as kernel/list gives them (remote ones carry `machine`).
    Such a machine is not idle whatever its GPU utilization (a CPU-bound cell is work too).
    """
    for k in kernels:
        if k.get("machine") != key:
            continue
        if k.get("state") in ("busy", "starting") or k.get("queue"):
            return True
    return False


# ---- autostop state ----


class _Watch:
    """Runtime state of one watched VM (settings are persisted, this is not)."""

    __slots__ = ("acted", "idle_since", "reason", "warned")

    def __init__(self) -> None:
        self.idle_since: Optional[float] = None
        self.warned = False
        self.acted = False
        self.reason = "not checked yet"


class VmService:
    """Everything behind the vm/* methods."""

    def __init__(
        self,
        data_dir: str,
        settings: Optional[Mapping[str, Any]] = None,
        environ: Optional[Mapping[str, str]] = None,
        notify: Optional[Notify] = None,
        *,
        trusted: bool = True,
        clock: Optional[Callable[[], float]] = None,
        busy: Optional[Callable[[Vm], bool]] = None,
        gpu_utilization: Optional[Callable[[Vm], Optional[float]]] = None,
    ) -> None:
        self.directory = os.path.join(data_dir, "vms")
        os.makedirs(self.directory, mode=0o700, exist_ok=True)
        self.ledger = Ledger(self.directory)
        self._environ: Mapping[str, str] = dict(os.environ if environ is None else environ)
        self._notify = notify
        self.trusted = trusted
        self._clock = clock or time.time
        self.clock_offset = 0.0
        self.busy: Callable[[Vm], bool] = busy or (lambda vm: False)
        self.gpu_utilization: Callable[[Vm], Optional[float]] = (
            gpu_utilization or ssh_gpu_utilization
        )
        self._lock = threading.RLock()
        self._settings: Dict[str, Any] = {}
        self._factories: Dict[str, Optional[ProviderFactory]] = {}
        self._load_errors: Dict[str, str] = {}
        self._display_names: Dict[str, str] = {}
        self._instances: Dict[str, Provider] = {}
        self._known: Dict[str, Vm] = {}  # latest record of every VM seen, by key
        self._autostop: Dict[str, Dict[str, Any]] = self._load_autostop()
        self._watches: Dict[str, _Watch] = {}
        self._watch_credentials: Dict[str, Dict[str, str]] = {}  # memory only
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None
        SECRETS.install()
        self.update_settings(settings or {})

    # ---- time ----

    def now(self) -> float:
        return self._clock() + self.clock_offset

    # ---- settings and registry ----

    def update_settings(self, settings: Mapping[str, Any]) -> None:
        with self._lock:
            self._settings = dict(settings) if isinstance(settings, Mapping) else {}
            self._instances.clear()

    @property
    def tick_seconds(self) -> float:
        return tick_seconds(self._settings, self._environ)

    def register(self, name: str, factory: ProviderFactory, display_name: str = "") -> None:
        """Add or replace a provider (tests, and debug-mode extra providers)."""
        with self._lock:
            self._factories[name] = factory
            self._load_errors.pop(name, None)
            self._instances.pop(name, None)
            self._display_names[name] = display_name or getattr(factory, "display_name", name)

    def names(self) -> List[str]:
        with self._lock:
            return list(dict.fromkeys(list(PROVIDER_MODULES) + list(self._factories)))

    def _factory(self, name: str) -> Optional[ProviderFactory]:
        if name in self._factories:
            return self._factories[name]
        spec = PROVIDER_MODULES.get(name)
        if spec is None:
            return None
        module_name, class_name, _ = spec
        try:
            module = importlib.import_module("gpu_workbench.vms." + module_name)
            cls = getattr(module, class_name)
        except Exception as exc:  # a broken module must not break the other providers
            reason = "%s provider could not be loaded (%s: %s)" % (
                spec[2],
                type(exc).__name__,
                exc,
            )
            log.warning("%s", reason)
            self._load_errors[name] = reason
            self._factories[name] = None
            return None
        self._factories[name] = cls
        return cls

    def provider(self, name: str) -> Provider:
        with self._lock:
            instance = self._instances.get(name)
            if instance is not None:
                return instance
            if name not in PROVIDER_MODULES and name not in self._factories:
                raise ProviderError(
                    "NotFound",
                    "Unknown provider %r" % name,
                    hint="One of: %s" % ", ".join(self.names()),
                )
            factory = self._factory(name)
            if factory is None:
                raise ProviderError(
                    "ProviderUnavailable",
                    self._load_errors.get(name, "%s is not available" % name),
                    hint="Check the GPU Workbench log.",
                )
            section = provider_settings(self._settings, name, self._environ, self.trusted)
            instance = factory(section)
            self._instances[name] = instance
            return instance

    def _display(self, name: str) -> str:
        if name in self._display_names:
            return self._display_names[name]
        spec = PROVIDER_MODULES.get(name)
        return spec[2] if spec else name

    # ---- credentials ----

    def _credentials(self, credentials: Credentials, name: str) -> Dict[str, str]:
        raw = (credentials or {}).get(name) if isinstance(credentials, dict) else None
        fields = {k: v for k, v in (raw or {}).items() if isinstance(v, str)}
        if fields and any(k.startswith(name + "/") for k in self._autostop):
            with self._lock:
                self._watch_credentials[name] = dict(fields)
        return fields

    def _watch_credentials_for(self, name: str) -> Dict[str, str]:
        with self._lock:
            return dict(self._watch_credentials.get(name, {}))

    # ---- ledger ----

    def _observe(self, vm: Vm, now: float) -> None:
        with self._lock:
            self._known[vm.key] = vm
        if vm.provider == "local":
            vm.accrued_cost = 0.0
            return
        try:
            self.ledger.observe(vm, now)
            vm.accrued_cost = self.ledger.accrued(vm.key, now)
        except Exception:
            log.exception("cannot record %s in the cost ledger", vm.key)

    def _observe_many(self, vms: List[Vm], now: float) -> None:
        """Record a provider's whole list in one ledger transaction (500 VMs: one commit)."""
        with self._lock:
            for vm in vms:
                self._known[vm.key] = vm
        recorded = [vm for vm in vms if vm.provider != "local"]
        for vm in vms:
            if vm.provider == "local":
                vm.accrued_cost = 0.0
        if not recorded:
            return
        try:
            self.ledger.observe_many(recorded, now)
            accrued = self.ledger.accrued_many([vm.key for vm in recorded], now)
            for vm in recorded:
                vm.accrued_cost = accrued.get(vm.key)
        except Exception:
            log.exception("cannot record %d machines in the cost ledger", len(recorded))

    # ---- methods ----

    def providers(self, credentials: Credentials) -> Dict[str, Any]:
        infos: List[Dict[str, Any]] = []
        with _CallGuard("vm/providers", credentials):
            for name in self.names():
                try:
                    provider = self.provider(name)
                    infos.append(provider.info(self._credentials(credentials, name)))
                except RpcError as exc:
                    infos.append(self._unavailable_info(name, exc))
                except Exception as exc:
                    log.error("%s provider info failed: %s", name, SECRETS.redact(str(exc)))
                    infos.append(self._unavailable_info(name, exc))
        return {"providers": infos}

    def _unavailable_info(self, name: str, exc: BaseException) -> Dict[str, Any]:
        reason = exc.message if isinstance(exc, RpcError) else str(exc)
        return {
            "name": name,
            "displayName": self._display(name),
            "available": False,
            "reason": SECRETS.redact(reason),
            "capabilities": [],
            "credentialFields": [],
            "configured": False,
            "stopKeepsBilling": False,
            "notes": [],
        }

    def offerings(
        self, name: str, region: Optional[str], credentials: Credentials, check: Check = no_check
    ) -> Dict[str, Any]:
        with _CallGuard("vm/offerings", credentials):
            provider = self.provider(name)
            creds = self._credentials(credentials, name)
            self._require_available(provider, creds)
            offerings = provider.offerings(creds, region, check)
            return {"offerings": [o.to_json() for o in offerings]}

    def _require_available(self, provider: Provider, creds: Dict[str, str]) -> None:
        reason = provider.availability(creds)
        if reason is not None:
            raise ProviderError(
                "ProviderUnavailable", "%s is not available" % provider.display_name, hint=reason
            )

    def list(
        self,
        names: Optional[List[str]],
        credentials: Credentials,
        check: Check = no_check,
    ) -> Dict[str, Any]:
        explicit = names is not None
        wanted = list(dict.fromkeys(names)) if names is not None else self.names()
        secrets = secret_values(credentials)
        added = SECRETS.add(secrets)
        try:
            with ThreadPoolExecutor(
                max_workers=max(1, len(wanted)), thread_name_prefix="gpuwb-vm-list"
            ) as pool:
                futures = [
                    pool.submit(self._list_one, name, credentials, explicit, check)
                    for name in wanted
                ]
                results = [f.result() for f in futures]
        finally:
            SECRETS.remove(added)
        check()
        vms: List[Dict[str, Any]] = []
        errors: List[Dict[str, Any]] = []
        for found, error in results:
            vms.extend(vm.to_json() for vm in found)
            if error is not None:
                errors.append(error)
        return {"vms": vms, "errors": errors}

    def _list_one(
        self, name: str, credentials: Credentials, explicit: bool, check: Check
    ) -> Tuple[List[Vm], Optional[Dict[str, Any]]]:
        secrets = secret_values(credentials)
        try:
            with _CallGuard("listing %s" % name, credentials):
                provider = self.provider(name)
                creds = self._credentials(credentials, name)
                reason = provider.availability(creds)
                if reason is not None:
                    if not explicit:
                        return [], None
                    raise ProviderError(
                        "ProviderUnavailable",
                        "%s is not available" % provider.display_name,
                        hint=reason,
                    )
                found = provider.list(creds, check)
                now = self.now()
                self._observe_many(found, now)
                if name != "local":
                    self.ledger.mark_missing(name, [vm.id for vm in found], now)
                return found, None
        except RequestCancelled:
            return [], None
        except RpcError as exc:
            clean = redact_error(exc, secrets)
            kind = clean.kind if isinstance(clean, ApplicationError) else "Internal"
            hint = clean.hint if isinstance(clean, ApplicationError) else None
            if not explicit and kind == "ProviderUnavailable" and name in self._load_errors:
                return [], None  # a provider that cannot load is reported by vm/providers
            log.info("listing %s failed: %s (%s)", name, clean.message, kind)
            return [], {"provider": name, "kind": kind, "message": clean.message, "hint": hint}

    def create(
        self,
        name: str,
        request: CreateRequest,
        credentials: Credentials,
        check: Check = no_check,
        report: Report = no_report,
    ) -> Dict[str, Any]:
        with _CallGuard("creating a machine on %s" % name, credentials):
            provider = self.provider(name)
            if "create" not in provider.capabilities:
                raise unsupported(
                    provider.display_name,
                    "create machines",
                    "Create it with the provider's own tools, then refresh.",
                )
            creds = self._credentials(credentials, name)
            self._require_available(provider, creds)
            check()
            vm = provider.create(creds, request, check, report)
            self._observe(vm, self.now())
            return vm.to_json()

    def act(
        self,
        operation: str,
        name: str,
        vm_id: str,
        credentials: Credentials,
        check: Check = no_check,
    ) -> Dict[str, Any]:
        """start / stop / terminate one VM."""
        with _CallGuard("%s %s/%s" % (operation, name, vm_id), credentials):
            provider = self.provider(name)
            creds = self._credentials(credentials, name)
            vm = self._operate(provider, operation, vm_id, creds, check)
            return vm.to_json()

    def ssh_config_file(self) -> Optional[str]:
        """The ssh config the SSH-hosts provider reads (its aliases resolve only with it)."""
        with self._lock:
            section = provider_settings(self._settings, "ssh", self._environ, self.trusted)
        value = section.get("configFile")
        return os.path.expanduser(str(value)) if value else None

    def find(self, name: str, vm_id: str, credentials: Credentials) -> Vm:
        """The latest record of one VM (refreshed from its provider); NotFound when gone."""
        with _CallGuard("find %s/%s" % (name, vm_id), credentials):
            provider = self.provider(name)
            creds = self._credentials(credentials, name) or self._watch_credentials_for(name)
            try:
                vm = provider.refresh(creds, vm_id)
            except RpcError:
                with self._lock:
                    known = self._known.get("%s/%s" % (name, vm_id))
                if known is None:
                    raise
                return known  # the provider cannot answer now: the last record will do
            self._observe(vm, self.now())
            return vm

    def _operate(
        self,
        provider: Provider,
        operation: str,
        vm_id: str,
        creds: Dict[str, str],
        check: Check = no_check,
    ) -> Vm:
        key = "%s/%s" % (provider.name, vm_id)
        if provider.name == "local" or operation not in provider.capabilities:
            raise unsupported(
                provider.display_name,
                "%s machines" % operation,
                "Use the provider's own console for this machine.",
            )
        with self._lock:
            known = self._known.get(key)
        if known is not None and known.capabilities and operation not in known.capabilities:
            raise ProviderError(
                "Unsupported",
                "%s cannot %s %s now" % (provider.display_name, operation, known.name),
                hint="It is %s; refresh the list and try again." % known.state,
            )
        self._require_available(provider, creds)
        method = {"start": provider.start, "stop": provider.stop, "terminate": provider.terminate}
        vm = method[operation](creds, vm_id, check)
        self._observe(vm, self.now())
        if operation != "start":
            with self._lock:
                watch = self._watches.get(key)
                if watch is not None:
                    watch.idle_since = None
                    watch.warned = False
        return vm

    def cost(
        self, days: Optional[int], daily: Optional[float], monthly: Optional[float]
    ) -> Dict[str, Any]:
        labels = {name: self._display(name) for name in self.names()}
        return self.ledger.report(self.now(), days or 30, daily, monthly, labels)

    # ---- autostop ----

    def _autostop_path(self) -> str:
        return os.path.join(self.directory, AUTOSTOP_FILE)

    def _load_autostop(self) -> Dict[str, Dict[str, Any]]:
        try:
            with open(self._autostop_path(), encoding="utf-8") as f:
                data = json.load(f)
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            log.warning("cannot read autostop settings: %s", exc)
            return {}
        if not isinstance(data, dict):
            return {}
        return {k: v for k, v in data.items() if isinstance(k, str) and isinstance(v, dict)}

    def _save_autostop(self) -> None:
        path = self._autostop_path()
        tmp = "%s.%d.tmp" % (path, os.getpid())
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(self._autostop, f, indent=1, sort_keys=True)
        os.replace(tmp, path)

    def set_autostop(
        self,
        name: str,
        vm_id: str,
        idle_minutes: int,
        gpu_threshold: Optional[float],
        terminate_if_no_stop: Optional[bool],
    ) -> Dict[str, Any]:
        if name not in self.names():
            raise ProviderError("NotFound", "Unknown provider %r" % name)
        if idle_minutes < 0:
            raise ProviderError("ProviderRequest", "idleMinutes must be 0 (off) or more")
        threshold = DEFAULT_GPU_THRESHOLD if gpu_threshold is None else float(gpu_threshold)
        if not math.isfinite(threshold) or not 0 <= threshold <= 100:
            raise ProviderError("ProviderRequest", "gpuThreshold must be between 0 and 100")
        key = "%s/%s" % (name, vm_id)
        with self._lock:
            if idle_minutes == 0:
                self._autostop.pop(key, None)
                self._watches.pop(key, None)
            else:
                self._autostop[key] = {
                    "idleMinutes": int(idle_minutes),
                    "gpuThreshold": threshold,
                    "terminateIfNoStop": bool(terminate_if_no_stop),
                }
                watch = self._watches.setdefault(key, _Watch())
                watch.idle_since = None  # a new setting restarts the window
                watch.warned = False
                watch.acted = False
            self._save_autostop()
            if not any(k.startswith(name + "/") for k in self._autostop):
                self._watch_credentials.pop(name, None)
            return self._info(key)

    def keep_running(self, name: str, vm_id: str) -> Dict[str, Any]:
        key = "%s/%s" % (name, vm_id)
        with self._lock:
            watch = self._watches.get(key)
            if watch is not None:
                if watch.idle_since is not None:
                    watch.idle_since = self.now()
                watch.warned = False
                watch.acted = False
                watch.reason = "kept running"
            return self._info(key)

    def autostop_info(self, name: str, vm_id: str) -> Dict[str, Any]:
        with self._lock:
            return self._info("%s/%s" % (name, vm_id))

    def _planned_action(self, key: str, setting: Dict[str, Any]) -> Tuple[str, str]:
        name = key.split("/", 1)[0]
        if name == "local":
            return "off", "the local machine is never stopped"
        vm = self._known.get(key)
        try:
            provider: Optional[Provider] = self.provider(name)
        except RpcError:
            provider = None
        if vm is not None and vm.capabilities:
            caps = vm.capabilities
        else:
            caps = provider.capabilities if provider is not None else []
        keeps = (
            vm.stop_keeps_billing
            if vm is not None
            else (provider.stop_keeps_billing if provider is not None else False)
        )
        if "stop" in caps and not keeps:
            return "stop", "stops when idle"
        if setting.get("terminateIfNoStop") and "terminate" in caps:
            return "terminate", (
                "terminates when idle (stopping would not end billing)"
                if "stop" in caps
                else "terminates when idle (it cannot be stopped)"
            )
        return "warn", (
            "warns when idle: stopping would not end billing"
            if "stop" in caps
            else "warns when idle: it cannot be stopped"
        )

    def _info(self, key: str) -> Dict[str, Any]:
        name, _, vm_id = key.partition("/")
        setting = self._autostop.get(key)
        if setting is None:
            return {
                "provider": name,
                "id": vm_id,
                "idleMinutes": 0,
                "idleSince": None,
                "actAt": None,
                "action": "off",
                "reason": "autostop is off",
            }
        watch = self._watches.setdefault(key, _Watch())
        action, why = self._planned_action(key, setting)
        act_at = (
            watch.idle_since + setting["idleMinutes"] * 60.0
            if watch.idle_since is not None and action != "off"
            else None
        )
        return {
            "provider": name,
            "id": vm_id,
            "idleMinutes": setting["idleMinutes"],
            "idleSince": watch.idle_since,
            "actAt": act_at,
            "action": action,
            "reason": "%s; %s" % (why, watch.reason),
        }

    def tick(self) -> None:
        """One pass of the idle watchdog over every watched VM."""
        with self._lock:
            keys = list(self._autostop)
        for key in keys:
            try:
                self._tick_one(key)
            except Exception as exc:
                log.error("autostop check of %s failed: %s", key, SECRETS.redact(str(exc)))

    def _tick_one(self, key: str) -> None:
        name, _, vm_id = key.partition("/")
        with self._lock:
            setting = self._autostop.get(key)
            if setting is None:
                return
            watch = self._watches.setdefault(key, _Watch())
            vm = self._known.get(key)
        if name == "local":
            watch.reason = "the local machine is never stopped"
            return
        if vm is None:
            vm = self._refresh(name, vm_id)
            if vm is None:
                watch.idle_since = None
                watch.reason = "not seen yet"
                return
        if vm.state != "running":
            watch.idle_since = None
            watch.warned = False
            watch.reason = "not running (%s)" % vm.state
            return
        if self.busy(vm):
            self._busy(watch, "kernel busy")
            return
        utilization = self.gpu_utilization(vm)
        now = self.now()
        if utilization is None:
            self._busy(watch, "GPU utilization unknown")
            return
        if utilization >= setting["gpuThreshold"]:
            self._busy(watch, "GPU %.0f%% busy" % utilization)
            return
        with self._lock:
            if watch.idle_since is None:
                watch.idle_since = now
                watch.warned = False
                watch.acted = False
            idle_since = watch.idle_since
            watch.reason = "idle since %s" % time.strftime("%H:%M:%S", time.gmtime(idle_since))
            action, _ = self._planned_action(key, setting)
        act_at = idle_since + setting["idleMinutes"] * 60.0
        if now >= act_at - WARN_BEFORE_SECONDS and not watch.warned and action != "warn":
            watch.warned = True
            self._send_warning(vm, act_at, action)
        if now < act_at or watch.acted:
            return
        watch.acted = True
        if action == "warn":
            self._send_warning(vm, act_at, "warn")
            return
        fresh = self._refresh(name, vm_id)  # the cached record may be stale
        if fresh is not None and fresh.state != "running":
            self._busy(watch, "not running (%s)" % fresh.state)
            return
        log.info("autostop: %s idle since %.0f; %s", key, idle_since, action)
        try:
            provider = self.provider(name)
            creds = self._watch_credentials_for(name)
            added = SECRETS.add(creds.values())
            try:
                self._operate(provider, action, vm_id, creds)
            finally:
                SECRETS.remove(added)
        except RpcError as exc:
            watch.reason = "%s failed: %s" % (action, SECRETS.redact(exc.message))
            log.warning("autostop: %s of %s failed: %s", action, key, SECRETS.redact(exc.message))
            self._send_warning(vm, act_at, "warn")
            return
        done = "stopped" if action == "stop" else "terminated"
        with self._lock:
            watch.idle_since = None
            watch.warned = False
            watch.reason = "%s after idling" % done
            if action == "terminate":
                self._autostop.pop(key, None)
                self._save_autostop()
        self._send_warning(vm, self.now(), done)

    def _busy(self, watch: _Watch, reason: str) -> None:
        with self._lock:
            watch.idle_since = None
            watch.warned = False
            watch.acted = False
            watch.reason = reason

    def _refresh(self, name: str, vm_id: str) -> Optional[Vm]:
        creds = self._watch_credentials_for(name)
        added = SECRETS.add(creds.values())
        try:
            provider = self.provider(name)
            vm = provider.refresh(creds, vm_id)
        except Exception as exc:
            log.info("autostop: cannot refresh %s/%s: %s", name, vm_id, SECRETS.redact(str(exc)))
            return None
        finally:
            SECRETS.remove(added)
        self._observe(vm, self.now())
        return vm

    def _send_warning(self, vm: Vm, act_at: float, action: str) -> None:
        if self._notify is None:
            return
        try:
            self._notify(
                "vm/idleWarning",
                {
                    "provider": vm.provider,
                    "id": vm.id,
                    "name": vm.name,
                    "actAt": act_at,
                    "action": action,
                },
            )
        except Exception:
            log.exception("cannot send vm/idleWarning")

    # ---- background thread ----

    def start_watchdog(self) -> None:
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="gpuwb-autostop", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.tick_seconds):
            self.tick()

    def close(self) -> None:
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=2.0)


_KEY_RE = re.compile(r"^[A-Za-z0-9_-]+$")


def load_extra_providers(service: VmService, spec: str) -> None:
    """Debug mode only: register providers from "name=module:Class,..." (for tests)."""
    for item in spec.split(","):
        item = item.strip()
        if not item:
            continue
        name, _, target = item.partition("=")
        module_name, _, class_name = target.partition(":")
        if not _KEY_RE.match(name) or not module_name or not class_name:
            log.warning("ignoring malformed extra provider %r", item)
            continue
        try:
            cls = getattr(importlib.import_module(module_name), class_name)
        except Exception as exc:
            log.warning("cannot load extra provider %s: %s", name, exc)
            continue
        service.register(name, cls)
