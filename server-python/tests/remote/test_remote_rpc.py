"""Remote execution end to end: the real backend connects over OpenSSH to a test host in a
network namespace (its own address, a real sshd), installs the agent there, runs kernels on
it, and survives the link being cut during a cell and the client being killed outright:
every line arrives exactly once, in order.

The "VM" shares this machine's filesystem (a namespace isolates the network only), but its
sshd sets XDG_CACHE_HOME/XDG_DATA_HOME to the namespace host's temporary folder, so the
agent and its kernels live apart from the local backend's data directory.
"""

from __future__ import annotations

import re
import shutil
import sys
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

import pytest
from shapes import assert_shape

from conftest import SERVER_ROOT, KernelClient, Session, backend_env, spawn
from gpu_workbench import protocol

sys.path.insert(0, str(Path(__file__).resolve().parent))
import netns

MACHINE_ALIAS = "vm"
LINES = 200  # printed every 50 ms: 10 s
CELL = (
    "import time, sys\n"
    "for i in range(%d):\n"
    "    print('line %%04d' %% i, flush=True)\n"
    "    time.sleep(0.05)\n" % LINES
)


@pytest.fixture(scope="module")
def vm() -> Iterator[Any]:
    netns.require_available()
    host = netns.NamespaceHost()
    try:
        yield host
    finally:
        host.close()


def backend(
    tmp_path: Path,
    vm: Any,
    known_hosts: Optional[str] = None,
    package: Optional[Path] = None,
) -> Session:
    extra = {"GPUWB_DATA_DIR": str(tmp_path / "local-data"), "GPUWB_LOG_LEVEL": "debug"}
    args = None
    if package is not None:  # another copy of the package first on the path (a newer agent)
        args = [
            sys.executable,
            "-c",
            "import sys; sys.path.insert(0, %r); from gpu_workbench.__main__ import main; main()"
            % str(package),
        ]
    session = spawn(backend_env(extra), args)
    session.initialize(
        {
            "vms": {"ssh": {"configFile": str(vm.ssh_config)}},
            "remote": {"knownHostsFile": known_hosts or str(vm.known_hosts)},
        }
    )
    return session


def result(session: Session, method: str, params: Any, timeout: float = 90.0) -> Any:
    response = session.request(method, params, timeout)
    assert "result" in response, response
    return response["result"]


def connect(session: Session) -> Dict[str, Any]:
    return result(session, "remote/connect", {"provider": "ssh", "id": MACHINE_ALIAS}, 180)


def lines_of(session: Session, kernel_id: str, execution: str, timeout: float) -> List[str]:
    """Every stream line of one execution, until its reply (all kernel/event notifications)."""
    text: List[str] = []
    seqs: List[int] = []
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        assert left > 0, "no reply within %.0f s; got %d lines" % (timeout, len("".join(text)))
        message = session.wait_for(
            lambda m: (
                isinstance(m, dict)
                and m.get("method") == "kernel/event"
                and m["params"]["kernelId"] == kernel_id
            ),
            left,
        )
        event = message["params"]["event"]
        if isinstance(event.get("seq"), int):
            seqs.append(event["seq"])
        if event.get("executionId") != execution:
            continue
        if event.get("type") == "stream":
            text.append(event.get("text", ""))
        if event.get("type") == "reply":
            break
    assert seqs == sorted(set(seqs)), "events repeated or out of order"
    return "".join(text).splitlines()


def test_unknown_host_key_is_asked_then_trusted(tmp_path: Path, vm: Any) -> None:
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    session = backend(tmp_path, vm, known_hosts=str(empty))
    try:
        response = session.request("remote/connect", {"provider": "ssh", "id": MACHINE_ALIAS}, 120)
        error = response.get("error")
        assert error and error["data"]["kind"] == "HostKeyUnknown", response
        fingerprint = error["data"]["detail"]
        assert re.search(r"SHA256:\S+", fingerprint), fingerprint
        fingerprint = re.search(r"SHA256:\S+", fingerprint).group(0)  # type: ignore[union-attr]
        result(session, "remote/trustHost", {"machine": "ssh/vm", "fingerprint": fingerprint})
        assert fingerprint.split(":")[1][:8] and empty.read_text().strip()
        machine = connect(session)
        assert_shape(protocol.RemoteMachine, machine)
        assert machine["state"] == "connected"
        assert machine["agentVersion"]
        assert any(i["kind"] == "system" for i in machine["interpreters"]), machine
    finally:
        session.close()


def test_cells_run_on_the_machine(tmp_path: Path, vm: Any) -> None:
    session = backend(tmp_path, vm)
    try:
        connect(session)
        project = str(Path(vm.tmp) / "project")  # the "VM" shares this disk: stay in tmp
        info = result(session, "kernel/start", {"machine": "ssh/vm", "cwd": project})
        assert info["kernelId"].endswith("@ssh/vm") and info["machine"] == "ssh/vm"
        kernel_id = info["kernelId"]
        execution = result(
            session,
            "kernel/execute",
            {
                "kernelId": kernel_id,
                "code": "import os\nprint(os.environ.get('GPUWB_VM_MARKER'), os.getcwd())",
            },
        )["executionId"]
        out = lines_of(session, kernel_id, execution, 60)
        assert out and out[0].startswith("1 "), out
        assert out[0].endswith("/project"), out
        listed = result(session, "kernel/list", {})["kernels"]
        assert kernel_id in [k["kernelId"] for k in listed]
        result(session, "kernel/shutdown", {"kernelId": kernel_id})
    finally:
        session.close()


def test_every_line_arrives_once_when_the_link_drops(tmp_path: Path, vm: Any) -> None:
    session = backend(tmp_path, vm)
    try:
        connect(session)
        kernel_id = result(session, "kernel/start", {"machine": "ssh/vm"})["kernelId"]
        execution = result(session, "kernel/execute", {"kernelId": kernel_id, "code": CELL})[
            "executionId"
        ]
        time.sleep(1.5)
        vm.link_down()
        try:
            session.wait_for(
                lambda m: (
                    isinstance(m, dict)
                    and m.get("method") == "remote/state"
                    and m["params"]["state"] == "reconnecting"
                ),
                30,
            )
            time.sleep(2.0)
        finally:
            vm.link_up()
        session.wait_for(
            lambda m: (
                isinstance(m, dict)
                and m.get("method") == "remote/state"
                and m["params"]["state"] == "connected"
                and m["params"]["reconnects"] >= 1  # not the first connect's, still queued
            ),
            60,
        )
        out = lines_of(session, kernel_id, execution, 60)
        assert out == ["line %04d" % i for i in range(LINES)], out[:5]
        machines = result(session, "remote/list", {})["machines"]
        assert machines[0]["reconnects"] >= 1
        result(session, "kernel/shutdown", {"kernelId": kernel_id})
    finally:
        vm.link_up()
        session.close()


def test_a_fresh_backend_reattaches_and_gets_the_rest(tmp_path: Path, vm: Any) -> None:
    first = backend(tmp_path, vm)
    seen: List[str] = []
    last_seq = 0
    try:
        connect(first)
        kernel_id = result(first, "kernel/start", {"machine": "ssh/vm"})["kernelId"]
        execution = result(first, "kernel/execute", {"kernelId": kernel_id, "code": CELL})[
            "executionId"
        ]
        deadline = time.monotonic() + 30
        while len(seen) < 20 and time.monotonic() < deadline:
            message = first.wait_for(
                lambda m: isinstance(m, dict) and m.get("method") == "kernel/event", 20
            )
            event = message["params"]["event"]
            last_seq = max(last_seq, event.get("seq") or 0)
            if event.get("type") == "stream" and event.get("executionId") == execution:
                seen.extend(event["text"].splitlines())
    finally:
        first.proc.kill()  # the client side dies outright, no shutdown
        first.proc.wait(10)
    second = backend(tmp_path, vm)
    try:
        connect(second)
        result(second, "kernel/attach", {"kernelId": kernel_id, "since": last_seq})
        rest = lines_of(second, kernel_id, execution, 60)
        assert seen + rest == ["line %04d" % i for i in range(LINES)]
        result(second, "kernel/shutdown", {"kernelId": kernel_id})
    finally:
        second.close()


def test_remote_checkpoint_inspection_equals_local_and_sends_only_the_summary(
    tmp_path: Path, vm: Any
) -> None:
    from checkpoints.writers import write_safetensors  # the stats and diff tests' writer

    path = Path(vm.tmp) / "big.safetensors"
    block = bytes(4 * 1024 * 1024)
    write_safetensors(
        str(path), [("w%d" % i, "F32", [1024, 1024], block) for i in range(16)]
    )  # 64 MiB
    session = backend(tmp_path, vm)
    try:
        connect(session)
        local = result(session, "checkpoint/inspect", {"path": str(path)})
        before = vm.link_bytes()
        remote = result(session, "checkpoint/inspect", {"path": str(path), "machine": "ssh/vm"})
        crossed = vm.link_bytes() - before
        for key in ("format", "tensors", "totals", "parameters"):
            if key in local:
                assert remote[key] == local[key], key
        assert crossed < 1_000_000, "%d bytes crossed the link for a 64 MiB file" % crossed
        assert path.stat().st_size > 60_000_000
    finally:
        session.close()


def test_agent_upgrade_keeps_running_kernels(tmp_path: Path, vm: Any) -> None:
    session = backend(tmp_path, vm)
    try:
        first = connect(session)
        kernel_id = result(session, "kernel/start", {"machine": "ssh/vm"})["kernelId"]
        result(session, "kernel/execute", {"kernelId": kernel_id, "code": "x = 41"})
    finally:
        session.close()
    # A newer agent: the same package with one file changed (a new version hash).
    newer = tmp_path / "newer"
    shutil.copytree(SERVER_ROOT / "gpu_workbench", newer / "gpu_workbench")
    with open(newer / "gpu_workbench" / "__init__.py", "a") as f:
        f.write("\n# a newer agent\n")
    session = backend(tmp_path, vm, package=newer)
    try:
        second = connect(session)
        assert second["agentVersion"] != first["agentVersion"]
        result(session, "kernel/attach", {"kernelId": kernel_id, "since": 0})
        execution = result(
            session, "kernel/execute", {"kernelId": kernel_id, "code": "print(x + 1)"}
        )["executionId"]
        assert lines_of(session, kernel_id, execution, 60)[-1] == "42"
        result(session, "kernel/shutdown", {"kernelId": kernel_id})
    finally:
        session.close()


def test_not_connected_is_a_clear_error(tmp_path: Path, vm: Any) -> None:
    session = backend(tmp_path, vm)
    try:
        response = session.request("kernel/execute", {"kernelId": "abc@ssh/vm", "code": "1"}, 20)
        assert response["error"]["data"]["kind"] == "RemoteUnavailable", response
        assert "Connect" in (response["error"]["data"].get("hint") or "")
    finally:
        session.close()


def test_a_hung_link_stalls_only_its_machine_and_cells_keep_their_order(
    tmp_path: Path, vm: Any
) -> None:
    session = backend(tmp_path, vm)
    try:
        connect(session)
        kernel_id = result(session, "kernel/start", {"machine": "ssh/vm"})["kernelId"]
        vm.link_down()  # packets vanish: the agent's answers hang until keepalive gives up
        try:
            hung = session.send_request("kernel/execute", {"kernelId": kernel_id, "code": "1"})
            # Local calls are answered at once; before lanes they waited behind `hung`.
            ping = session.request("workbench/ping", {}, 30)
            parsed = session.request("cells/parse", {"text": "# %%\nx = 1\n"}, 30)
            assert "result" in ping and "result" in parsed, (ping, parsed)
            with session._cond:  # the hung call is still unanswered
                assert not any(
                    isinstance(m, dict) and m.get("id") == hung for m in session._messages
                ), "the remote call finished before the link came back"
        finally:
            vm.link_up()
        # It ends (answered, or failed if keepalive gave the link up); nothing waits forever.
        session.response(hung, 60)
        deadline = time.monotonic() + 60
        while result(session, "remote/list", {})["machines"][0]["state"] != "connected":
            assert time.monotonic() < deadline, "the machine did not come back"
            time.sleep(0.2)
        # Back to back, without waiting: they reach the kernel in the order sent.
        ids = [
            session.send_request(
                "kernel/execute", {"kernelId": kernel_id, "code": "print('cell %d')" % i}
            )
            for i in range(8)
        ]
        executions = [session.response(i, 60)["result"]["executionId"] for i in ids]
        out = [lines_of(session, kernel_id, e, 60) for e in executions]
        assert out == [["cell %d" % i] for i in range(8)], out
        result(session, "kernel/shutdown", {"kernelId": kernel_id})
    finally:
        vm.link_up()
        session.close()


def test_autostop_info_reads_the_countdown_without_changing_it(tmp_path: Path, vm: Any) -> None:
    marker = Path(vm.tmp) / "autostop-acted"
    session = backend(tmp_path, vm)
    try:
        connect(session)
        started = result(
            session,
            "remote/autostop",
            {"machine": "ssh/vm", "idleMinutes": 30, "command": "touch %s" % marker},
        )
        assert started["running"] and started["idleMinutes"] == 30, started
        deadline = time.monotonic() + 30
        while True:  # the watchdog's first tick finds the machine idle
            info = result(session, "remote/autostopInfo", {"machine": "ssh/vm"})
            assert_shape(protocol.RemoteAutostopInfo, info)
            if info["actAt"] is not None:
                break
            assert time.monotonic() < deadline, info
            time.sleep(0.2)
        assert info["machine"] == "ssh/vm" and info["running"] and info["idleMinutes"] == 30
        assert info["actAt"] == info["idleSince"] + 30 * 60, info
        assert info["reason"].startswith("idle"), info
        again = result(session, "remote/autostopInfo", {"machine": "ssh/vm"})
        assert again["idleSince"] == info["idleSince"], "reading it must not restart the timer"
        stopped = result(session, "remote/autostop", {"machine": "ssh/vm", "idleMinutes": 0})
        assert not stopped["running"]
        assert not result(session, "remote/autostopInfo", {"machine": "ssh/vm"})["running"]
        assert not marker.exists()
        response = session.request("remote/autostopInfo", {"machine": "ssh/other"}, 20)
        assert response["error"]["data"]["kind"] == "RemoteUnavailable", response
    finally:
        session.close()


def test_interrupt_restart_variables_input_and_rich_outputs_work_as_locally(
    tmp_path: Path, vm: Any
) -> None:
    session = backend(tmp_path, vm)
    kernels = KernelClient(session)
    try:
        connect(session)
        kid = kernels.start(machine="ssh/vm")["kernelId"]
        assert kid.endswith("@ssh/vm")
        # Variables.
        kernels.run(kid, "numbers = [1, 2, 3]\nlabel = 'abc'")
        by_name = {
            v["name"]: v for v in kernels.call("kernel/variables", {"kernelId": kid})["variables"]
        }
        assert by_name["numbers"]["type"] == "list" and by_name["numbers"]["length"] == 3
        assert by_name["label"]["repr"] == "'abc'"
        # An input prompt answered from here.
        eid = kernels.execute(kid, "name = input('who? ')\nprint('hi', name)")
        request = kernels.wait_event(kid, lambda e: e.get("type") == "input_request", 30)
        assert request["executionId"] == eid and request["prompt"] == "who? "
        kernels.call("kernel/inputReply", {"kernelId": kid, "executionId": eid, "value": "ada"})
        assert kernels.reply(kid, eid, 30)["status"] == "ok"
        assert "hi ada" in kernels.stdout(kid, eid)
        # Rich output: an image and HTML, as display data.
        eid = kernels.execute(
            kid,
            "class P:\n"
            "    def _repr_png_(self):\n"
            "        return b'\\x89PNG\\r\\n\\x1a\\nfake'\n"
            "    def _repr_html_(self):\n"
            "        return '<b>bold</b>'\n"
            "P()",
        )
        assert kernels.reply(kid, eid, 30)["status"] == "ok"
        result = [e for e in kernels.outputs(kid, eid) if e.get("type") == "execute_result"]
        assert result and result[0]["data"]["text/html"] == "<b>bold</b>", result
        assert result[0]["data"]["image/png"], result
        # Interrupt a running cell: KeyboardInterrupt on the VM, the kernel lives on.
        eid = kernels.execute(kid, "import time\nprint('start', flush=True)\ntime.sleep(60)")
        kernels.wait_event(
            kid, lambda e: e.get("type") == "stream" and "start" in e.get("text", ""), 30
        )
        outcome = kernels.call("kernel/interrupt", {"kernelId": kid})["outcome"]
        assert outcome == "interrupted", outcome
        reply = kernels.reply(kid, eid, 30)
        assert reply["status"] == "interrupted", reply
        assert kernels.run(kid, "print(label)", 30)["status"] == "ok"
        # Restart: the same kernel id, its variables gone.
        kernels.call("kernel/restart", {"kernelId": kid}, 60)
        eid = kernels.execute(kid, "print('label' in globals())")
        assert kernels.reply(kid, eid, 30)["status"] == "ok"
        assert kernels.stdout(kid, eid).strip() == "False"
        kernels.call("kernel/shutdown", {"kernelId": kid})
    finally:
        session.close()


def test_a_reconnecting_machine_with_kernels_is_not_idle_for_autostop(tmp_path: Path) -> None:
    from gpu_workbench.remote.manager import RemoteManager, _Connection

    manager = RemoteManager(str(tmp_path), lambda *a: None, lambda *a: None)
    c = _Connection("aws/i-1", "box", None, "python3")
    manager._connections["aws/i-1"] = c
    assert not manager.kernels_unseen("aws/i-1")  # connecting, no kernels yet
    c.kernels["k1"] = 42
    for state, unseen in (
        ("connecting", True),
        ("reconnecting", True),
        ("connected", False),
        ("failed", False),
    ):
        c.state = state
        assert manager.kernels_unseen("aws/i-1") is unseen, state
    assert not manager.kernels_unseen("aws/other")
