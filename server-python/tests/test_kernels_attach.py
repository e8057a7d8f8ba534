"""Kernels outlive backends: re-attach after a backend dies, share a kernel, idle timeout."""

from __future__ import annotations

import json

from conftest import process_gone, spawn_kernel_backend, wait_until

PRINTER = (
    "import time\nfor i in range(40):\n    print('line', i, flush=True)\n    time.sleep(0.05)\n"
)


def test_new_backend_resumes_after_backend_killed(kernel_data):
    first = spawn_kernel_backend(kernel_data)
    second = None
    try:
        kid = first.start()["kernelId"]
        eid = first.execute(kid, PRINTER)
        first.wait_event(kid, lambda e: "line 3\n" in first.stdout(kid, eid))
        first.session.proc.kill()
        first.session.wait_exit()
        wait_until(lambda: first.session.closed, what="first backend's stdout to close")
        first.pull_all()
        seen_first = first.seqs(kid)
        assert seen_first == list(range(1, len(seen_first) + 1))
        assert not any(e.get("type") == "reply" for e in first.events[kid])

        second = spawn_kernel_backend(kernel_data)
        info = second.call("kernel/attach", {"kernelId": kid, "since": seen_first[-1]})
        assert info["kernelId"] == kid
        assert second.reply(kid, eid, timeout=10)["status"] == "ok"
        seen_second = second.seqs(kid)
        union = seen_first + seen_second
        assert sorted(union) == list(range(1, max(union) + 1))
        assert len(set(union)) == len(union)
        text = "".join(
            e["text"]
            for e in first.events[kid] + second.events[kid]
            if e.get("type") == "stream" and e.get("executionId") == eid
        )
        assert text == "".join("line %d\n" % i for i in range(40))
        # It is usable from the new backend.
        assert second.run(kid, "print('still here')")["status"] == "ok"
    finally:
        first.session.close()
        if second is not None:
            second.session.close()


def test_two_backends_share_a_kernel(kernel_data):
    one = spawn_kernel_backend(kernel_data)
    two = spawn_kernel_backend(kernel_data)
    try:
        info = one.start(name="shared")
        kid = info["kernelId"]
        listed = {k["kernelId"]: k for k in two.call("kernel/list")["kernels"]}
        assert listed[kid]["name"] == "shared"
        assert listed[kid]["pid"] == info["pid"]
        assert listed[kid]["state"] == "idle"
        attached = two.call("kernel/attach", {"kernelId": kid})
        assert attached["state"] == "idle"
        two.pull_all()  # the replay arrives before the reply
        assert two.events[kid][0]["type"] == "start"
        eid = one.execute(kid, "print('to both')")
        for client in (one, two):
            assert client.reply(kid, eid)["status"] == "ok"
            assert client.stdout(kid, eid) == "to both\n"
        # The second backend can drive it as well; the first sees that too.
        eid2 = two.execute(kid, "print('from two')")
        assert one.reply(kid, eid2)["status"] == "ok"
        assert one.stdout(kid, eid2) == "from two\n"
    finally:
        one.session.close()
        two.session.close()


def test_attach_to_an_ended_kernel_replays_the_journal(kernel_data):
    one = spawn_kernel_backend(kernel_data)
    try:
        kid = one.start()["kernelId"]
        said = one.run(kid, "print('bye')")["executionId"]
        eid = one.execute(kid, "import os\nos._exit(7)")
        one.wait_event(kid, lambda e: e.get("type") == "died", timeout=5)
    finally:
        one.session.close()
    two = spawn_kernel_backend(kernel_data)
    try:
        info = two.call("kernel/attach", {"kernelId": kid, "since": 0})
        assert info["state"] == "dead"
        died = two.wait_event(kid, lambda e: e.get("type") == "died")
        assert died["exitCode"] == 7
        assert two.stdout(kid, said) == "bye\n"
        assert two.reply(kid, eid)["status"] == "died"
        seqs = two.seqs(kid)
        assert seqs == list(range(1, len(seqs) + 1))
        assert info["lastSeq"] == seqs[-1]
    finally:
        two.session.close()


def test_idle_timeout_ends_kernel_without_clients(kernel_data):
    one = spawn_kernel_backend(kernel_data)
    kid = one.start(idleTimeoutSeconds=1)["kernelId"]
    meta = json.loads((kernel_data / "kernels" / kid / "kernel.json").read_text())
    # A clean exit: the backend closes its connections and leaves the kernel running.
    one.call("shutdown")
    one.session.notify("exit")
    assert one.session.wait_exit() == 0
    assert not process_gone(meta["pid"])
    ended = kernel_data / "kernels" / kid / "ended.json"
    wait_until(ended.exists, timeout=10, what="ended.json")
    assert json.loads(ended.read_text())["reason"] == "idle"
    wait_until(
        lambda: process_gone(meta["pid"]) and process_gone(meta["monitorPid"]),
        timeout=5,
        what="kernel and monitor to exit",
    )
    two = spawn_kernel_backend(kernel_data)
    try:
        listed = {k["kernelId"]: k for k in two.call("kernel/list")["kernels"]}
        assert listed[kid]["state"] == "exited"
        error = two.error("kernel/execute", {"kernelId": kid, "code": "1"})
        assert error["data"]["kind"] == "KernelDied"
        assert "idle" in error["message"]
    finally:
        two.session.close()
