"""Lanes (rpc.Route.lane): requests of one key run off the read loop, one at a time, in the
order they arrived; a blocked lane stalls neither the read loop nor other lanes."""

from __future__ import annotations

import json
import os
import threading
from typing import Any, Dict, List, Optional

from conftest import encode
from gpu_workbench.framing import FrameReader, FrameWriter
from gpu_workbench.rpc import Connection, Route, Router
from gpu_workbench.server import _machine_lane

WAIT = 20.0


class _Router(Router):
    """`work {lane, n}` records n when it runs, blocking while its lane's gate is closed;
    `fast` answers inline; `boom` raises in a lane."""

    def __init__(self) -> None:
        self.gates: Dict[str, threading.Event] = {}
        self.ran: List[Any] = []
        self.lock = threading.Lock()
        self.routes = {
            "work": Route(
                self._work, lane=lambda p: p.get("lane") if isinstance(p, dict) else None
            ),
            "fast": Route(lambda ctx, p: "fast"),
            "boom": Route(self._boom, lane=lambda p: p["lane"]),
        }

    def gate(self, lane: str) -> threading.Event:
        with self.lock:
            return self.gates.setdefault(lane, threading.Event())

    def _work(self, ctx: Any, params: Any) -> Any:
        lane = params.get("lane")
        if lane is not None:
            assert self.gate(lane).wait(WAIT), "gate %s never opened" % lane
        with self.lock:
            self.ran.append((lane, params["n"]))
        return params["n"]

    def _boom(self, ctx: Any, params: Any) -> Any:
        raise RuntimeError("boom")

    def resolve(self, method: str, is_request: bool) -> Optional[Route]:
        return self.routes.get(method)


class _Peer:
    def __init__(self, router: Router) -> None:
        c_read, s_write = os.pipe()
        s_read, c_write = os.pipe()
        self._to_server = os.fdopen(c_write, "wb", buffering=0)
        self._from_server = FrameReader(os.fdopen(c_read, "rb", buffering=0))
        conn = Connection(
            FrameReader(os.fdopen(s_read, "rb", buffering=0)),
            FrameWriter(os.fdopen(s_write, "wb", buffering=0)),
            router,
        )
        self.thread = threading.Thread(target=conn.serve, daemon=True)
        self.thread.start()
        self._next = 0

    def send(self, method: str, params: Any = None) -> int:
        self._next += 1
        self._to_server.write(
            encode({"jsonrpc": "2.0", "id": self._next, "method": method, "params": params})
        )
        return self._next

    def reply(self) -> Dict[str, Any]:
        body = self._from_server.read_message()
        assert body is not None, "the server closed the connection"
        return json.loads(body)

    def close(self) -> None:
        self._to_server.close()
        self.thread.join(WAIT)


def test_a_blocked_lane_stalls_neither_the_read_loop_nor_other_lanes() -> None:
    router = _Router()
    peer = _Peer(router)
    try:
        a1 = peer.send("work", {"lane": "a", "n": 1})
        a2 = peer.send("work", {"lane": "a", "n": 2})
        b1 = peer.send("work", {"lane": "b", "n": 3})
        f = peer.send("fast")
        # Lane a is closed: the fast inline request answers first.
        assert peer.reply()["id"] == f
        router.gate("b").set()
        assert peer.reply() == {"jsonrpc": "2.0", "id": b1, "result": 3}
        router.gate("a").set()
        ids = [peer.reply()["id"], peer.reply()["id"]]
        assert ids == [a1, a2]
        assert [n for lane, n in router.ran if lane == "a"] == [1, 2]
    finally:
        peer.close()


def test_order_within_a_lane_holds_for_many_requests_and_after_a_failure() -> None:
    router = _Router()
    router.gate("a").set()
    peer = _Peer(router)
    try:
        sent = [peer.send("work", {"lane": "a", "n": i}) for i in range(50)]
        boom = peer.send("boom", {"lane": "a"})
        after = peer.send("work", {"lane": "a", "n": 50})
        replies = [peer.reply() for _ in range(52)]
        assert [r["id"] for r in replies] == [*sent, boom, after]
        assert replies[50]["error"]["code"] == -32603
        assert [n for _, n in router.ran] == list(range(51))
    finally:
        peer.close()


def test_requests_without_a_lane_key_run_as_before() -> None:
    router = _Router()
    peer = _Peer(router)
    try:
        i = peer.send("work", {"n": 7})  # lane() gives None: inline on the read loop
        assert peer.reply() == {"jsonrpc": "2.0", "id": i, "result": 7}
        j = peer.send("work", "not an object")  # lane() cannot read it: the handler reports
        assert peer.reply()["id"] == j
    finally:
        peer.close()


def test_machine_lane_keys_remote_kernels_by_machine() -> None:
    assert _machine_lane({"kernelId": "k1@ssh/vm"}) == "machine:ssh/vm"
    assert _machine_lane({"kernelId": "k2@ssh/vm", "code": "x"}) == "machine:ssh/vm"
    assert _machine_lane({"kernelId": "k1@aws/i-1"}) == "machine:aws/i-1"
    assert _machine_lane({"kernelId": "local-kernel"}) is None
    assert _machine_lane({"kernelId": 5}) is None
    assert _machine_lane(None) is None
    assert _machine_lane([]) is None
