"""The backend: LSP lifecycle plus the table of custom methods and their thin handlers."""

from __future__ import annotations

import logging
import math
import os
import sys
import time
from typing import Any, BinaryIO, Dict, List, Mapping, Optional, Sequence, Tuple

from . import __version__
from .cell_features import ParsedCells, code_lenses, document_symbols, folding_ranges, parsed_cells
from .cells import MarkerError, parse_cells
from .convert import to_json
from .data_dir import ensure_data_directory, resolve_data_directory
from .documents import DocumentStore, text_document_uri
from .errors import (
    INVALID_PARAMS,
    INVALID_REQUEST,
    SERVER_NOT_INITIALIZED,
    ApplicationError,
    RequestCancelled,
    RpcError,
)
from .framing import FrameReader, FrameWriter
from .gpu.sampler import GpuMonitor
from .kernels.manager import KernelManager
from .log import set_level
from .options import parse_init_options, parse_markers
from .parent_watch import ParentWatch
from .protocol import (
    METHODS,
    CellsParseParams,
    CellsParseResult,
    CheckpointDiffParams,
    CheckpointInspectParams,
    CheckpointListParams,
    CheckpointScanParams,
    CheckpointStatsParams,
    ClockParams,
    ClockResult,
    EmptyResult,
    GpuCheckParams,
    GpuHistoryParams,
    GpuStatusParams,
    GpuWatchParams,
    InitializeParams,
    KernelAttachParams,
    KernelExecuteParams,
    KernelIdParams,
    KernelIdResult,
    KernelInputReplyParams,
    KernelInterruptParams,
    KernelListParams,
    KernelListResult,
    KernelStartParams,
    KernelVariablesResult,
    PingParams,
    PingResult,
    RemoteAutostopParams,
    RemoteConnectParams,
    RemoteForwardParams,
    RemoteListParams,
    RemoteRefParams,
    RemoteSyncParams,
    RemoteTrustHostParams,
    RemoteUnforwardParams,
    SleepParams,
    SleepResult,
    StatusParams,
    StatusResult,
    VmAutostopParams,
    VmCostParams,
    VmCreateParams,
    VmCredentialsParams,
    VmKeepRunningParams,
    VmListParams,
    VmOfferingsParams,
    VmRefParams,
    debug_methods_enabled,
)
from .remote.manager import RemoteManager, split_kernel_id
from .rpc import Connection, PlainJson, RequestContext, Route, Router
from .status import SERVER_NAME, build_status
from .vms.base import CreateRequest
from .vms.service import VmService, kernels_keep_busy, load_extra_providers

# Debug mode only (tests): extra VM providers, "name=module:Class,...".
EXTRA_PROVIDERS_ENV = "GPUWB_VM_EXTRA_PROVIDERS"

log = logging.getLogger(__name__)

_UNINITIALIZED = "uninitialized"
_RUNNING = "running"
_SHUTTING_DOWN = "shutting-down"

# How often debug/sleep wakes to check cancellation and report progress.
_SLEEP_TICK = 0.05
_SLEEP_REPORT_EVERY = 0.1
_SLEEP_MAX_SECONDS = 3600.0


def _machine_lane(params: Any) -> Optional[str]:
    """The lane of a call on a remote kernel ("<id>@<provider>/<id>"): its machine's."""
    kernel_id = params.get("kernelId") if isinstance(params, dict) else None
    split = split_kernel_id(kernel_id) if isinstance(kernel_id, str) else None
    return "machine:" + split[1] if split is not None else None


class Server(Router):
    """Owns the lifecycle state and serves the custom methods."""

    def __init__(
        self,
        environ: Optional[Mapping[str, str]] = None,
        parent_watch: Optional[ParentWatch] = None,
    ) -> None:
        self._environ: Mapping[str, str] = dict(os.environ if environ is None else environ)
        self._parent_watch = parent_watch
        self._started = time.monotonic()
        self._state = _UNINITIALIZED
        self._shutdown_received = False
        self._connection: Optional[Connection] = None
        self.debug_methods = debug_methods_enabled(self._environ)
        self.data_directory = ""
        self.trusted = True
        self._kernels: Optional[KernelManager] = None
        self._vms: Optional[VmService] = None
        self._gpu: Optional[GpuMonitor] = None
        self._remote_manager: Optional[RemoteManager] = None
        self.documents = DocumentStore()
        self._cell_markers: Optional[List[str]] = None  # None: cells.DEFAULT_MARKERS
        self._code_lens_refresh = False  # client capability workspace.codeLens.refreshSupport
        self._lifecycle: Dict[str, Route] = {
            "initialize": Route(self._initialize, InitializeParams),
            "shutdown": Route(self._shutdown),
            "initialized": Route(self._initialized, kind="notification"),
            "exit": Route(self._exit, kind="notification"),
        }
        # Standard LSP features (not custom methods, so not in protocol.METHODS). Inline:
        # parsing is cached per document version and takes milliseconds on a 10k-line file.
        self._lsp: Dict[str, Route] = {
            "textDocument/didOpen": Route(self._did_open, kind="notification"),
            "textDocument/didChange": Route(self._did_change, kind="notification"),
            "textDocument/didClose": Route(self._did_close, kind="notification"),
            "workspace/didChangeConfiguration": Route(
                self._did_change_configuration, kind="notification"
            ),
            "textDocument/codeLens": Route(self._code_lens),
            "textDocument/foldingRange": Route(self._folding_range),
            "textDocument/documentSymbol": Route(self._document_symbol),
        }
        # Custom methods; names must match protocol.METHODS (checked by a test).
        self._methods: Dict[str, Route] = {
            "workbench/ping": Route(self._ping, PingParams),
            "workbench/status": Route(self._status, StatusParams),
            "cells/parse": Route(self._cells_parse, CellsParseParams),
            "kernel/start": Route(self._kernel_start, KernelStartParams, slow=True),
            # On the read loop, so executions reach the kernel in the order they were sent.
            # A remote kernel's calls run in its machine's lane instead (ordered too, and a
            # hung link stalls only that machine): see _machine_lane.
            "kernel/execute": Route(self._kernel_execute, KernelExecuteParams, lane=_machine_lane),
            "kernel/interrupt": Route(
                self._kernel_interrupt, KernelInterruptParams, slow=True, lane=_machine_lane
            ),
            "kernel/restart": Route(
                self._kernel_restart, KernelIdParams, slow=True, lane=_machine_lane
            ),
            "kernel/shutdown": Route(
                self._kernel_shutdown, KernelIdParams, slow=True, lane=_machine_lane
            ),
            "kernel/list": Route(self._kernel_list, KernelListParams, slow=True),
            "kernel/attach": Route(
                self._kernel_attach, KernelAttachParams, slow=True, lane=_machine_lane
            ),
            "kernel/inputReply": Route(
                self._kernel_input_reply, KernelInputReplyParams, lane=_machine_lane
            ),
            "kernel/variables": Route(
                self._kernel_variables, KernelIdParams, slow=True, lane=_machine_lane
            ),
            # Checkpoints run no code from the file, so they are served in untrusted workspaces.
            "checkpoint/inspect": Route(
                self._checkpoint_inspect, CheckpointInspectParams, slow=True
            ),
            "checkpoint/stats": Route(self._checkpoint_stats, CheckpointStatsParams, slow=True),
            "checkpoint/diff": Route(self._checkpoint_diff, CheckpointDiffParams, slow=True),
            "checkpoint/scan": Route(self._checkpoint_scan, CheckpointScanParams, slow=True),
            "checkpoint/list": Route(self._checkpoint_list, CheckpointListParams, slow=True),
            # VMs run no workspace code, so they are served in untrusted workspaces; there,
            # API endpoint overrides from settings are ignored (see vms/service.py).
            "vm/providers": Route(self._vm_providers, VmCredentialsParams, slow=True),
            "vm/offerings": Route(self._vm_offerings, VmOfferingsParams, slow=True),
            "vm/list": Route(self._vm_list, VmListParams, slow=True),
            "vm/create": Route(self._vm_create, VmCreateParams, slow=True),
            "vm/start": Route(self._vm_start, VmRefParams, slow=True),
            "vm/stop": Route(self._vm_stop, VmRefParams, slow=True),
            "vm/terminate": Route(self._vm_terminate, VmRefParams, slow=True),
            "vm/cost": Route(self._vm_cost, VmCostParams, slow=True),
            "vm/autostop": Route(self._vm_autostop, VmAutostopParams, slow=True),
            "vm/keepRunning": Route(self._vm_keep_running, VmKeepRunningParams, slow=True),
            # GPU telemetry reads the driver only; served in untrusted workspaces. The checks'
            # torch benchmarks run an interpreter, so they run only when trusted.
            "gpu/status": Route(self._gpu_status, GpuStatusParams, slow=True),
            "gpu/watch": Route(self._gpu_watch, GpuWatchParams, slow=True),
            # slow: with `machine` it waits on the machine's agent
            "gpu/history": Route(self._gpu_history, GpuHistoryParams, slow=True),
            "gpu/check": Route(self._gpu_check, GpuCheckParams, slow=True),
            # Remote machines (remote/manager.py); they run code, so only when trusted.
            "remote/connect": Route(self._remote_connect, RemoteConnectParams, slow=True),
            "remote/disconnect": Route(self._remote_disconnect, RemoteRefParams, slow=True),
            "remote/list": Route(self._remote_list, RemoteListParams),
            "remote/trustHost": Route(self._remote_trust_host, RemoteTrustHostParams, slow=True),
            "remote/sync": Route(self._remote_sync, RemoteSyncParams, slow=True),
            "remote/forward": Route(self._remote_forward, RemoteForwardParams, slow=True),
            "remote/unforward": Route(self._remote_unforward, RemoteUnforwardParams, slow=True),
            "remote/autostop": Route(self._remote_autostop, RemoteAutostopParams, slow=True),
            "remote/autostopInfo": Route(self._remote_autostop_info, RemoteRefParams, slow=True),
        }
        # Notifications this server sends; advertised with the methods it serves.
        self._sends = sorted(name for name, info in METHODS.items() if info.to_client)
        if self.debug_methods:
            self._methods["debug/sleep"] = Route(self._debug_sleep, SleepParams, slow=True)
            self._methods["debug/clock"] = Route(self._debug_clock, ClockParams)

    # ---- running ----

    def run(self, input_stream: BinaryIO, output_stream: BinaryIO) -> int:
        """Serve until `exit` or end of input; return the process exit code."""
        self._connection = Connection(FrameReader(input_stream), FrameWriter(output_stream), self)
        try:
            code = self._connection.serve()
        finally:
            if self._kernels is not None:
                self._kernels.close()  # connections only: kernels are detached and keep running
            if self._vms is not None:
                self._vms.close()
        if code is None:
            code = 0 if self._shutdown_received else 1
        log.info("exiting with code %d", code)
        return code

    def custom_methods(self) -> List[str]:
        """Names of the custom methods this instance serves or sends."""
        return sorted(list(self._methods) + self._sends)

    # ---- routing (lifecycle gate) ----

    def resolve(self, method: str, is_request: bool) -> Optional[Route]:
        """Find the route for `method`, enforcing LSP lifecycle rules."""
        route = self._lifecycle.get(method) or self._methods.get(method) or self._lsp.get(method)
        if route is not None and (route.kind == "request") != is_request:
            route = None  # e.g. `exit` sent with an id is simply an unknown request
        if method == "exit" and route is not None:
            return route  # exit is honoured in every state
        if self._state == _UNINITIALIZED:
            if method == "initialize" and route is not None:
                return route
            if is_request:
                raise RpcError(SERVER_NOT_INITIALIZED, "server not initialized")
            return None
        if self._state == _SHUTTING_DOWN:
            if is_request:
                raise RpcError(INVALID_REQUEST, "server is shutting down")
            return None
        if method == "initialize" and route is not None:
            raise RpcError(INVALID_REQUEST, "server is already initialized")
        return route

    # ---- lifecycle handlers ----

    def _initialize(self, ctx: RequestContext, init: InitializeParams) -> Dict[str, Any]:
        options, warnings = parse_init_options(init.initializationOptions)
        if options.logLevel is not None:
            set_level(options.logLevel)
        for warning in warnings:
            log.warning("%s", warning)
        self.trusted = options.trusted
        self._cell_markers = options.cellMarkers
        self._code_lens_refresh = _code_lens_refresh_support(ctx.raw_params)
        self.data_directory = resolve_data_directory(options.dataDirectory, self._environ)
        ensure_data_directory(self.data_directory)
        self._kernels = KernelManager(self.data_directory, self._notify, self._environ)
        try:
            self._vms = VmService(
                self.data_directory,
                options.vms or {},
                self._environ,
                self._notify,
                trusted=self.trusted,
            )
        except Exception as exc:  # an unusable ledger must not make initialize fail
            log.error("VM management is unavailable: %s", exc)
        else:
            extra = self._environ.get(EXTRA_PROVIDERS_ENV)
            if extra and self.debug_methods:
                load_extra_providers(self._vms, extra)
            self._vms.busy = self._vm_busy
            self._vms.start_watchdog()
        self._gpu = GpuMonitor(self._notify, self._environ, options.gpu)
        self._remote_manager = RemoteManager(
            self.data_directory,
            self._find_vm,
            self._notify,
            options.remote,
            ssh_config=lambda: self._vms.ssh_config_file() if self._vms is not None else None,
        )
        if self._parent_watch is not None:
            self._parent_watch.watch_pid(init.processId)
        self._state = _RUNNING
        log.info(
            "initialized (client pid %s, data directory %s, trusted %s)",
            init.processId,
            self.data_directory,
            self.trusted,
        )
        return {
            "capabilities": {
                "textDocumentSync": {"openClose": True, "change": 1},  # 1: Full
                "codeLensProvider": {"resolveProvider": False},
                "foldingRangeProvider": True,
                "documentSymbolProvider": True,
                "experimental": {"gpuWorkbench": {"methods": self.custom_methods()}},
            },
            "serverInfo": {"name": SERVER_NAME, "version": __version__},
        }

    def _initialized(self, ctx: RequestContext, params: Any) -> None:
        log.debug("client sent initialized")

    def _shutdown(self, ctx: RequestContext, params: Any) -> None:
        self._state = _SHUTTING_DOWN
        self._shutdown_received = True
        log.info("shutdown requested")
        if self._kernels is not None:
            self._kernels.close()
        if self._vms is not None:
            self._vms.close()
        if self._gpu is not None:
            self._gpu.close()
        if self._remote_manager is not None:
            self._remote_manager.close()
        checks = sys.modules.get("gpu_workbench.gpu.checks")
        if checks is not None:
            checks.kill_running()
        return None

    def _exit(self, ctx: RequestContext, params: Any) -> None:
        assert self._connection is not None
        self._connection.stop(0 if self._shutdown_received else 1)

    # ---- custom method handlers ----

    def _ping(self, ctx: RequestContext, params: PingParams) -> PingResult:
        return PingResult(payload=params.payload, serverTime=time.time())

    def _status(self, ctx: RequestContext, params: StatusParams) -> StatusResult:
        return build_status(self._started, self.data_directory, self.trusted, self.custom_methods())

    def _debug_sleep(self, ctx: RequestContext, params: SleepParams) -> SleepResult:
        seconds = params.seconds
        if not math.isfinite(seconds) or seconds < 0 or seconds > _SLEEP_MAX_SECONDS:
            raise RpcError(
                INVALID_PARAMS,
                "Invalid params: params.seconds must be between 0 and %d" % _SLEEP_MAX_SECONDS,
            )
        progress = ctx.work_done_progress("Sleeping", cancellable=True)
        progress.begin(message="sleeping %.2fs" % seconds, percentage=0)
        start = time.monotonic()
        deadline = start + seconds
        last_report = start
        while True:
            now = time.monotonic()
            if now >= deadline:
                break
            if ctx.cancelled.wait(min(_SLEEP_TICK, deadline - now)):
                progress.end("cancelled")
                raise RequestCancelled()
            now = time.monotonic()
            if now - last_report >= _SLEEP_REPORT_EVERY:
                last_report = now
                progress.report(percentage=int(100 * (now - start) / seconds) if seconds else 100)
        progress.end("done")
        return SleepResult(sleptSeconds=time.monotonic() - start)

    def _debug_clock(self, ctx: RequestContext, params: ClockParams) -> ClockResult:
        if not math.isfinite(params.offsetSeconds):
            raise RpcError(INVALID_PARAMS, "Invalid params: params.offsetSeconds must be finite")
        vms = self._vm_service()
        vms.clock_offset = float(params.offsetSeconds)
        log.info("debug/clock: VM clock offset %.3fs", vms.clock_offset)
        return ClockResult(offsetSeconds=vms.clock_offset, now=vms.now())

    # ---- cells ----

    def _cells_parse(self, ctx: RequestContext, params: CellsParseParams) -> CellsParseResult:
        try:
            return CellsParseResult(cells=parse_cells(params.text, params.markers))
        except MarkerError as exc:
            raise RpcError(INVALID_PARAMS, "Invalid params: params.%s" % exc) from None

    # ---- documents and cell features (standard LSP) ----

    def _did_open(self, ctx: RequestContext, params: Any) -> None:
        self.documents.did_open(params)

    def _did_change(self, ctx: RequestContext, params: Any) -> None:
        self.documents.did_change(params)

    def _did_close(self, ctx: RequestContext, params: Any) -> None:
        self.documents.did_close(params)

    def _did_change_configuration(self, ctx: RequestContext, params: Any) -> None:
        found_remote, raw_remote = _setting(params, ("gpuWorkbench", "remote"))
        if found_remote and isinstance(raw_remote, dict) and self._remote_manager is not None:
            self._remote_manager.update_settings(raw_remote)
        found_gpu, raw_gpu = _setting(params, ("gpuWorkbench", "gpu"))
        if found_gpu and self._gpu is not None:
            self._gpu.update_settings(raw_gpu)
        found_vms, raw_vms = _setting(params, ("gpuWorkbench", "vms"))
        if found_vms and self._vms is not None:
            if isinstance(raw_vms, dict):
                self._vms.update_settings(raw_vms)
                log.info("VM settings updated")
            else:
                log.warning("gpuWorkbench.vms must be an object; keeping the current settings")
        found, raw = _setting(params, ("gpuWorkbench", "cells", "markers"))
        if not found:
            log.debug("configuration change without gpuWorkbench.cells.markers")
            return
        markers, warning = parse_markers(raw, "gpuWorkbench.cells.markers")
        if warning is not None:
            log.warning("%s", warning)
        if markers == self._cell_markers:
            return
        self._cell_markers = markers
        log.info("cell markers: %s", "defaults" if markers is None else markers)
        if self._code_lens_refresh and self._connection is not None:
            self._connection.request("workspace/codeLens/refresh")

    def _parsed(self, params: Any) -> Tuple[str, Optional[ParsedCells]]:
        uri = text_document_uri(params)
        if uri is None:
            raise RpcError(
                INVALID_PARAMS, "Invalid params: params.textDocument.uri must be a string"
            )
        doc = self.documents.get(uri)
        if doc is None:
            return uri, None  # not open (or not Python): no features, not an error
        return uri, parsed_cells(doc, self._cell_markers)

    # Results are built from plain values only, so they skip to_json (PlainJson).

    def _code_lens(self, ctx: RequestContext, params: Any) -> PlainJson:
        uri, parsed = self._parsed(params)
        return PlainJson([] if parsed is None else code_lenses(parsed, uri))

    def _folding_range(self, ctx: RequestContext, params: Any) -> PlainJson:
        _, parsed = self._parsed(params)
        return PlainJson([] if parsed is None else folding_ranges(parsed))

    def _document_symbol(self, ctx: RequestContext, params: Any) -> PlainJson:
        _, parsed = self._parsed(params)
        return PlainJson([] if parsed is None else document_symbols(parsed))

    # ---- kernels ----

    def _notify(self, method: str, params: Any) -> None:
        if self._connection is not None:
            self._connection.notify(method, params)

    def _kernel_manager(self) -> KernelManager:
        if not self.trusted:
            raise ApplicationError(
                "Untrusted",
                "Kernels cannot run in an untrusted workspace",
                hint="Trust the folder to run code in kernels",
            )
        assert self._kernels is not None  # set by initialize, which gates every method
        return self._kernels

    # A kernel id "<remote id>@<provider>/<id>" lives on a connected machine: its calls go
    # to the machine's agent (remote/manager.py). Remote kernels need trust like local ones.

    def _remote(self) -> RemoteManager:
        assert self._remote_manager is not None  # set by initialize
        return self._remote_manager

    def _remote_kernel(self, method: str, params: Any) -> Optional[PlainJson]:
        if split_kernel_id(params.kernelId) is None:
            return None
        self._kernel_manager()  # the trust gate
        return PlainJson(self._remote().kernel_call(method, to_json(params)))

    def _kernel_start(self, ctx: RequestContext, params: KernelStartParams) -> Any:
        if params.machine:
            self._kernel_manager()
            return PlainJson(self._remote().start_kernel(to_json(params)))
        return self._kernel_manager().start(params)

    def _kernel_execute(self, ctx: RequestContext, params: KernelExecuteParams) -> Any:
        return self._remote_kernel("kernel/execute", params) or self._kernel_manager().execute(
            params
        )

    def _kernel_interrupt(self, ctx: RequestContext, params: KernelInterruptParams) -> Any:
        return self._remote_kernel("kernel/interrupt", params) or self._kernel_manager().interrupt(
            params
        )

    def _kernel_restart(self, ctx: RequestContext, params: KernelIdParams) -> Any:
        return self._remote_kernel("kernel/restart", params) or self._kernel_manager().restart(
            params.kernelId
        )

    def _kernel_shutdown(self, ctx: RequestContext, params: KernelIdParams) -> Any:
        remote = self._remote_kernel("kernel/shutdown", params)
        if remote is not None:
            return remote
        self._kernel_manager().shutdown(params.kernelId)
        return KernelIdResult(kernelId=params.kernelId)

    def _kernel_list(self, ctx: RequestContext, params: KernelListParams) -> Any:
        local = self._kernel_manager().list()
        remote = self._remote().list_kernels()
        if not remote:
            return KernelListResult(kernels=local)
        return PlainJson({"kernels": [to_json(k) for k in local] + remote})

    def _kernel_attach(self, ctx: RequestContext, params: KernelAttachParams) -> Any:
        return self._remote_kernel("kernel/attach", params) or self._kernel_manager().attach(params)

    def _kernel_input_reply(self, ctx: RequestContext, params: KernelInputReplyParams) -> Any:
        remote = self._remote_kernel("kernel/inputReply", params)
        if remote is not None:
            return remote
        self._kernel_manager().input_reply(params.kernelId, params.executionId, params.value)
        return EmptyResult()

    def _kernel_variables(self, ctx: RequestContext, params: KernelIdParams) -> Any:
        remote = self._remote_kernel("kernel/variables", params)
        if remote is not None:
            return remote
        return KernelVariablesResult(variables=self._kernel_manager().variables(params.kernelId))

    # ---- remote machines ----

    def _remote_trusted(self) -> RemoteManager:
        if not self.trusted:
            raise ApplicationError(
                "Untrusted",
                "Remote machines run code; they are off in an untrusted workspace",
                hint="Trust the folder to connect to machines",
            )
        return self._remote()

    def _remote_connect(self, ctx: RequestContext, params: RemoteConnectParams) -> PlainJson:
        return PlainJson(
            self._remote_trusted().connect(
                params.provider,
                params.id,
                params.python,
                params.credentials,
                ctx.raise_if_cancelled,
            )
        )

    def _remote_disconnect(self, ctx: RequestContext, params: RemoteRefParams) -> PlainJson:
        return PlainJson(self._remote().disconnect(params.machine))

    def _remote_list(self, ctx: RequestContext, params: RemoteListParams) -> PlainJson:
        return PlainJson(self._remote().list())

    def _remote_trust_host(self, ctx: RequestContext, params: RemoteTrustHostParams) -> PlainJson:
        return PlainJson(self._remote_trusted().trust_host(params.machine, params.fingerprint))

    def _remote_sync(self, ctx: RequestContext, params: RemoteSyncParams) -> PlainJson:
        manager = self._remote_trusted()
        if params.maxBytes is not None and params.maxBytes <= 0:
            raise RpcError(INVALID_PARAMS, "Invalid params: params.maxBytes must be > 0")
        with checkpoint_progress(ctx, "Syncing to %s" % params.machine) as progress:
            return PlainJson(
                manager.sync(
                    params.machine,
                    local_path=params.localPath,
                    remote_path=params.remotePath,
                    dry_run=params.dryRun is True,
                    max_bytes=params.maxBytes or 500 * 1024 * 1024,
                    progress=progress.fraction,
                    cancelled=lambda: ctx.is_cancelled,
                )
            )

    def _remote_forward(self, ctx: RequestContext, params: RemoteForwardParams) -> PlainJson:
        if not 1 <= params.remotePort <= 65535 or not 0 <= (params.localPort or 0) <= 65535:
            raise RpcError(INVALID_PARAMS, "Invalid params: ports must be 1 to 65535")
        return PlainJson(
            self._remote_trusted().forward(params.machine, params.remotePort, params.localPort)
        )

    def _remote_unforward(self, ctx: RequestContext, params: RemoteUnforwardParams) -> PlainJson:
        return PlainJson(self._remote().unforward(params.machine, params.localPort))

    def _remote_autostop(self, ctx: RequestContext, params: RemoteAutostopParams) -> PlainJson:
        if params.idleMinutes < 0:
            raise RpcError(INVALID_PARAMS, "Invalid params: params.idleMinutes must be >= 0")
        return PlainJson(
            self._remote_trusted().autostop(
                params.machine, params.idleMinutes, params.gpuThreshold, params.command
            )
        )

    def _remote_autostop_info(self, ctx: RequestContext, params: RemoteRefParams) -> PlainJson:
        return PlainJson(self._remote().autostop_info(params.machine))

    def _find_vm(self, provider: str, vm_id: str, credentials: Dict[str, Dict[str, str]]) -> Any:
        return self._vm_service().find(provider, vm_id, credentials)

    # ---- VMs (results are plain JSON built by the provider records' to_json) ----

    def _vm_busy(self, vm: Any) -> bool:
        """Idle autostop: a machine whose kernel runs or has queued cells is not idle."""
        remote = self._remote_manager
        if remote is None or vm.provider == "local":
            return False
        if remote.kernels_unseen(vm.key):
            return True  # reconnecting: its kernels cannot be seen, so it is not known idle
        return kernels_keep_busy(remote.list_kernels(), vm.key)

    def _vm_service(self) -> VmService:
        if self._vms is None:
            raise ApplicationError(
                "ProviderUnavailable",
                "VM management is unavailable",
                hint="The data directory could not be used; see the GPU Workbench log.",
            )
        return self._vms

    def _vm_providers(self, ctx: RequestContext, params: VmCredentialsParams) -> PlainJson:
        return PlainJson(self._vm_service().providers(params.credentials))

    def _vm_offerings(self, ctx: RequestContext, params: VmOfferingsParams) -> PlainJson:
        return PlainJson(
            self._vm_service().offerings(
                params.provider, params.region, params.credentials, ctx.raise_if_cancelled
            )
        )

    def _vm_list(self, ctx: RequestContext, params: VmListParams) -> PlainJson:
        return PlainJson(
            self._vm_service().list(params.providers, params.credentials, ctx.raise_if_cancelled)
        )

    def _vm_create(self, ctx: RequestContext, params: VmCreateParams) -> PlainJson:
        request = CreateRequest(
            params.name,
            params.instanceType,
            params.region,
            image=params.image,
            disk_gib=params.diskGiB,
            spot=bool(params.spot),
            ssh_key_name=params.sshKeyName,
            ssh_public_key=params.sshPublicKey,
            tags=params.tags,
            startup_script=params.startupScript,
        )
        with checkpoint_progress(ctx, "Creating %s" % params.name) as progress:
            return PlainJson(
                self._vm_service().create(
                    params.provider,
                    request,
                    params.credentials,
                    ctx.raise_if_cancelled,
                    lambda message: progress.report(message=message),
                )
            )

    def _vm_act(self, ctx: RequestContext, operation: str, params: VmRefParams) -> PlainJson:
        return PlainJson(
            self._vm_service().act(
                operation, params.provider, params.id, params.credentials, ctx.raise_if_cancelled
            )
        )

    def _vm_start(self, ctx: RequestContext, params: VmRefParams) -> PlainJson:
        return self._vm_act(ctx, "start", params)

    def _vm_stop(self, ctx: RequestContext, params: VmRefParams) -> PlainJson:
        return self._vm_act(ctx, "stop", params)

    def _vm_terminate(self, ctx: RequestContext, params: VmRefParams) -> PlainJson:
        return self._vm_act(ctx, "terminate", params)

    def _vm_cost(self, ctx: RequestContext, params: VmCostParams) -> PlainJson:
        days = params.days
        if days is not None and not 1 <= days <= 3660:
            raise RpcError(INVALID_PARAMS, "Invalid params: params.days must be 1 to 3660")
        return PlainJson(self._vm_service().cost(days, params.dailyBudget, params.monthlyBudget))

    def _vm_autostop(self, ctx: RequestContext, params: VmAutostopParams) -> PlainJson:
        return PlainJson(
            self._vm_service().set_autostop(
                params.provider,
                params.id,
                params.idleMinutes,
                params.gpuThreshold,
                params.terminateIfNoStop,
            )
        )

    def _vm_keep_running(self, ctx: RequestContext, params: VmKeepRunningParams) -> PlainJson:
        return PlainJson(self._vm_service().keep_running(params.provider, params.id))

    # ---- GPU health ----

    def _gpu_monitor(self) -> GpuMonitor:
        assert self._gpu is not None  # set by initialize, which gates every method
        return self._gpu

    def _remote_gpu(self, machine: str, method: str, params: Dict[str, Any]) -> Dict[str, Any]:
        """gpu/status or gpu/history answered by a connected machine's agent, which names
        itself by host name: the answer names it "provider/id", as its samples do."""
        answer = dict(self._remote().agent_call(machine, method, params))
        answer["machine"] = machine
        return answer

    def _gpu_status(self, ctx: RequestContext, params: GpuStatusParams) -> PlainJson:
        if params.machine:  # sampled by the machine's agent
            return PlainJson(
                self._remote_gpu(params.machine, "gpu/status", {"fresh": params.fresh is True})
            )
        return PlainJson(self._gpu_monitor().status(fresh=params.fresh is True))

    def _gpu_watch(self, ctx: RequestContext, params: GpuWatchParams) -> PlainJson:
        watcher = params.watcher.strip()
        if not watcher:
            raise RpcError(INVALID_PARAMS, "Invalid params: params.watcher must not be empty")
        if params.machine:
            return PlainJson(
                self._remote().gpu_watch(params.machine, watcher[:100], params.watching)
            )
        return PlainJson(self._gpu_monitor().watch(watcher[:100], params.watching))

    def _gpu_history(self, ctx: RequestContext, params: GpuHistoryParams) -> PlainJson:
        seconds = params.seconds
        if seconds is not None and (not math.isfinite(seconds) or seconds < 0):
            raise RpcError(INVALID_PARAMS, "Invalid params: params.seconds must be >= 0")
        if params.machine:  # the history the machine's agent keeps
            forwarded: Dict[str, Any] = {} if seconds is None else {"seconds": seconds}
            return PlainJson(self._remote_gpu(params.machine, "gpu/history", forwarded))
        return PlainJson(self._gpu_monitor().history(seconds))

    def _gpu_check(self, ctx: RequestContext, params: GpuCheckParams) -> PlainJson:
        from .gpu import checks

        monitor = self._gpu_monitor()
        expected = params.expectedGpuCount
        if expected is None:
            expected = monitor.settings_expected_count()
        benchmarks = params.benchmarks is not False and self.trusted
        progress = ctx.work_done_progress("Checking GPU health", cancellable=True)
        progress.begin(percentage=0)
        last = [0.0]

        def report(done: float, message: str) -> None:
            now = time.monotonic()
            if now - last[0] < 0.2 and done < 1.0:
                return
            last[0] = now
            progress.report(message=message, percentage=max(0, min(100, int(done * 100))))

        try:
            result = checks.run_checks(
                monitor.open_check_source,
                python=params.python or sys.executable,
                expected_count=expected,
                benchmarks=benchmarks,
                untrusted=not self.trusted and params.benchmarks is not False,
                progress=report,
                cancelled=lambda: ctx.is_cancelled,
            )
        finally:
            progress.end("cancelled" if ctx.is_cancelled else "done")
        ctx.raise_if_cancelled()
        return PlainJson(result)

    # ---- checkpoints ----

    def _checkpoint_inspect(
        self, ctx: RequestContext, params: CheckpointInspectParams
    ) -> PlainJson:
        from .checkpoints import readers

        if params.machine:  # read on the machine; only the summary crosses the link
            forwarded: Dict[str, Any] = {"path": params.path, "maxTensors": params.maxTensors}
            return PlainJson(
                self._remote_trusted().agent_call(params.machine, "checkpoint/inspect", forwarded)
            )

        with checkpoint_progress(ctx, "Inspecting checkpoint") as progress:
            progress.report(message=os.path.basename(params.path))
            return PlainJson(
                readers.inspect(params.path, params.maxTensors, ctx.raise_if_cancelled)
            )

    def _checkpoint_stats(self, ctx: RequestContext, params: CheckpointStatsParams) -> PlainJson:
        from .checkpoints import stats

        if params.machine:  # computed on the machine; only the statistics cross the link
            forwarded = {
                k: v
                for k, v in (
                    ("path", params.path),
                    ("tensors", params.tensors),
                    ("bins", params.bins),
                    ("timeBudgetMs", params.timeBudgetMs),
                    ("maxElements", params.maxElements),
                )
                if v is not None or k == "tensors"
            }
            return PlainJson(
                self._remote_trusted().agent_call(params.machine, "checkpoint/stats", forwarded)
            )

        with checkpoint_progress(ctx, "Computing statistics") as progress:
            return PlainJson(
                stats.compute(
                    params.path,
                    tensors=params.tensors,
                    bins=params.bins,
                    time_budget_ms=params.timeBudgetMs,
                    max_elements=params.maxElements,
                    check=ctx.raise_if_cancelled,
                    report=progress.fraction,
                )
            )

    def _checkpoint_diff(self, ctx: RequestContext, params: CheckpointDiffParams) -> PlainJson:
        from .checkpoints import diff

        with checkpoint_progress(ctx, "Comparing checkpoints") as progress:
            return PlainJson(
                diff.compare(
                    params.a,
                    params.b,
                    compare_values=params.compareValues is not False,
                    check=ctx.raise_if_cancelled,
                    report=progress.fraction,
                )
            )

    def _checkpoint_list(self, ctx: RequestContext, params: CheckpointListParams) -> PlainJson:
        from .checkpoints import listing

        if params.machine:  # walked on the machine; only the listing crosses the link
            forwarded: Dict[str, Any] = {"folder": params.folder}
            if params.maxFiles is not None:
                forwarded["maxFiles"] = params.maxFiles
            return PlainJson(
                self._remote_trusted().agent_call(params.machine, "checkpoint/list", forwarded)
            )
        return PlainJson(
            listing.list_folder(params.folder, params.maxFiles, check=ctx.raise_if_cancelled)
        )

    def _checkpoint_scan(self, ctx: RequestContext, params: CheckpointScanParams) -> PlainJson:
        from .checkpoints import readers

        with checkpoint_progress(ctx, "Scanning checkpoints"):
            return PlainJson(readers.scan(params.paths, params.allow, ctx.raise_if_cancelled))


class _Progress:
    """Work-done progress for a checkpoint request, throttled to a few reports a second."""

    def __init__(self, ctx: RequestContext, title: str) -> None:
        self._progress = ctx.work_done_progress(title, cancellable=True)
        self._last = 0.0

    def report(self, message: Optional[str] = None, percentage: Optional[int] = None) -> None:
        self._progress.report(message=message, percentage=percentage)

    def fraction(self, done: float, message: Optional[str] = None) -> None:
        now = time.monotonic()
        if now - self._last < 0.2 and done < 1.0:
            return
        self._last = now
        self._progress.report(message=message, percentage=max(0, min(100, int(done * 100))))


class checkpoint_progress:  # a context manager, named like one
    def __init__(self, ctx: RequestContext, title: str) -> None:
        self._ctx = ctx
        self._progress = _Progress(ctx, title)

    def __enter__(self) -> _Progress:
        self._progress._progress.begin(percentage=0)
        return self._progress

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self._progress._progress.end("cancelled" if self._ctx.is_cancelled else "done")


def _setting(params: Any, path: Sequence[str]) -> Tuple[bool, Any]:
    """Look up ``params.settings.<path>``; also accepts dotted keys ("cells.markers")."""
    node = params.get("settings") if isinstance(params, dict) else None
    parts = list(path)
    while parts:
        if not isinstance(node, dict):
            return False, None
        for size in range(len(parts), 0, -1):
            key = ".".join(parts[:size])
            if key in node:
                node = node[key]
                parts = parts[size:]
                break
        else:
            return False, None
    return True, node


def _code_lens_refresh_support(params: Any) -> bool:
    node = params
    for key in ("capabilities", "workspace", "codeLens", "refreshSupport"):
        if not isinstance(node, dict):
            return False
        node = node.get(key)
    return node is True
