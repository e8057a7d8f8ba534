"""Event intake: connections to workers and forwarding their journal as ``kernel/event``.

Every journaled message is forwarded in seq order without duplicates; a hole in the
live stream is filled from the journal on disk, or reported as a ``gap`` when the disk
no longer has it. When a worker's socket ends, the forwarder waits briefly for the
monitor's ``ended.json`` and forwards what the monitor appended (``reply died``,
``died``), so a death is reported within about a second.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any, Callable, Dict

from . import store
from .connection import WorkerConnection, WorkerUnavailable
from .launcher import wait_until
from .state import KernelHandle, apply_message, load_disk

log = logging.getLogger(__name__)

Notify = Callable[[str, Dict[str, Any]], None]

# How long a closed socket waits for the monitor's ended.json before giving up on it.
EOF_WAIT_FOR_ENDED = 1.5
CATCH_UP_TIMEOUT = 10.0


class EventForwarder:
    """Connects to workers and forwards their messages to ``notify`` for one backend."""

    def __init__(self, data_directory: str, notify: Notify) -> None:
        self.data_directory = data_directory
        self._notify = notify
        # Set by the manager's close(): nothing is forwarded and closes are not followed up.
        self.closed = False

    def connect(self, k: KernelHandle, disk: store.DiskKernel, since: int) -> None:
        """Open a connection with hello{since}; return once the replay has been forwarded."""
        path = disk.socket_path
        if path is None:
            raise WorkerUnavailable("kernel.json names no socket")
        conn = WorkerConnection(
            path,
            lambda c, message: self.on_message(k, c, message),
            lambda c, intentional: self.on_close(k, c, intentional),
        )
        with k.lock:
            old, k.conn = k.conn, conn
            k.last_seq = since
            if disk.kernel is not None:
                k.kernel = disk.kernel
        if old is not None and old is not conn:
            old.close()
        try:
            welcome = conn.open(since)
        except WorkerUnavailable:
            with k.lock:
                if k.conn is conn:
                    k.conn = None
            raise
        last = welcome.get("lastSeq")
        kernel_json = welcome.get("kernel")
        with k.lock:
            if isinstance(kernel_json, dict):
                k.kernel = kernel_json
            if isinstance(last, int) and not isinstance(last, bool):
                deadline = time.monotonic() + CATCH_UP_TIMEOUT
                while k.last_seq < last and not conn.ended.is_set():
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    k.changed.wait(remaining)
            if k.ended is None and k.state == "starting":
                k.state = "idle"

    def on_message(self, k: KernelHandle, conn: WorkerConnection, message: Dict[str, Any]) -> None:
        """A message from the worker's socket (on its read loop)."""
        with k.lock:
            if k.conn is not conn:
                return  # a connection being replaced
            if message.get("type") == "welcome":
                # A client that claims more than the journal holds would drop new messages.
                last = message.get("lastSeq")
                if isinstance(last, int) and not isinstance(last, bool) and last < k.last_seq:
                    k.last_seq = last
                return
            self.deliver(k, message)

    def deliver(self, k: KernelHandle, message: Dict[str, Any]) -> None:
        """Forward one message in seq order (lock held); fills holes from the disk journal."""
        if message.get("type") == "gap":
            to = message.get("to")
            if isinstance(to, int) and not isinstance(to, bool):
                k.last_seq = max(k.last_seq, to)
            self.send_event(k, message)
            return
        seq = message.get("seq")
        if not isinstance(seq, int) or isinstance(seq, bool):
            log.debug("kernel %s sent an unsequenced %s", k.kernel_id, message.get("type"))
            return
        if seq <= k.last_seq:
            return  # already forwarded
        if seq > k.last_seq + 1:
            missing, _ = store.read_journal(k.directory, k.last_seq)
            for old in missing:
                if old["seq"] >= seq:
                    break
                if old["seq"] == k.last_seq + 1:
                    apply_message(k, old)
                    k.last_seq = old["seq"]
                    self.send_event(k, old)
            if seq > k.last_seq + 1:
                gap = {"type": "gap", "from": k.last_seq + 1, "to": seq - 1}
                self.send_event(k, gap)
        apply_message(k, message)
        k.last_seq = seq
        self.send_event(k, message)
        k.changed.notify_all()

    def send_event(self, k: KernelHandle, event: Dict[str, Any]) -> None:
        """Notify the client of one event; a failing notify is logged, never raised."""
        if self.closed:
            return
        try:
            self._notify("kernel/event", {"kernelId": k.kernel_id, "event": event})
        except Exception:
            log.exception("cannot forward a kernel event")

    def on_close(self, k: KernelHandle, conn: WorkerConnection, intentional: bool) -> None:
        """The socket ended: wait briefly for ended.json, forward the monitor's messages."""
        if intentional or self.closed:
            return
        with k.lock:
            if k.conn is not conn:
                return
        ended_path = os.path.join(k.directory, store.ENDED_JSON)
        wait_until(lambda: os.path.exists(ended_path), EOF_WAIT_FOR_ENDED)
        with k.lock:
            if k.conn is not conn:
                return
            self.replay_from_disk(k, k.last_seq, explicit=False)
            k.conn = None
        self.refresh_ended(k)
        with k.lock:
            k.changed.notify_all()
        log.info("kernel %s disconnected (state %s)", k.kernel_id, k.state)

    def replay_from_disk(self, k: KernelHandle, since: int, explicit: bool) -> None:
        """Forward journaled messages with seq > since from disk (explicit: an attach)."""
        messages, first = store.read_journal(k.directory, since)
        with k.lock:
            if explicit:
                k.last_seq = since
                if first is not None and first > since + 1:
                    self.send_event(k, {"type": "gap", "from": since + 1, "to": first - 1})
                    k.last_seq = first - 1
            for message in messages:
                self.deliver(k, message)
            k.changed.notify_all()

    def refresh_ended(self, k: KernelHandle) -> None:
        """Pick up ended.json (or notice a kernel that died without one)."""
        disk = load_disk(self.data_directory, k)
        with k.lock:
            if disk.ended is not None:
                k.ended = disk.ended
                k.state = store.ended_state(disk.ended)
            elif disk.kernel is not None and not disk.kernel_alive() and not disk.monitor_alive():
                k.ended = {"reason": "died", "exitCode": None, "signal": None}
                k.state = "dead"
            else:
                return
            k.running = None
            k.queue = []
            k.active.clear()
            k.changed.notify_all()
