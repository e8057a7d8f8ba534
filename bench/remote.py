#!/usr/bin/env python3
"""Remote execution benchmark: a trivial cell's round trip over the persistent channel,
against a fresh `ssh host python3 -c` per call and against a local kernel; the overhead
over the link's own round trip; and the time to reconnect after the link returns.

The "machine" is a test host in a network namespace with its own address and a real sshd
(server-python/tests/remote/netns.py; needs root and iproute2), reached over a veth pair.

    python3 bench/remote.py [--runs N] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
SERVER_ROOT = ROOT / "server-python"
sys.path.insert(0, str(SERVER_ROOT / "tests"))
sys.path.insert(0, str(SERVER_ROOT / "tests" / "remote"))
sys.path.insert(0, str(SERVER_ROOT))

import netns  # noqa: E402

from conftest import Session, backend_env, spawn  # noqa: E402


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return "%s, %d CPUs, %s, Python %s" % (
        cpu,
        os.cpu_count() or 0,
        platform.system(),
        platform.python_version(),
    )


def ms(xs: List[float]) -> str:
    s = sorted(xs)
    return "%.2f ms (p90 %.2f)" % (statistics.median(s) * 1000, s[int(0.9 * (len(s) - 1))] * 1000)


def cell_round_trip(session: Session, kernel_id: str) -> float:
    """kernel/execute of `1+1` until its reply event."""
    start = time.perf_counter()
    response = session.request("kernel/execute", {"kernelId": kernel_id, "code": "1+1"}, 30)
    execution = response["result"]["executionId"]
    session.wait_for(
        lambda m: (
            isinstance(m, dict)
            and m.get("method") == "kernel/event"
            and m["params"]["kernelId"] == kernel_id
            and m["params"]["event"].get("executionId") == execution
            and m["params"]["event"].get("type") == "reply"
        ),
        30,
    )
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--json", default=str(BENCH_DIR / "results" / "remote.json"))
    args = parser.parse_args()
    reason = netns.available()
    if reason is not None:
        print("cannot make the test host here: %s" % reason, file=sys.stderr)
        return 2
    work = Path(tempfile.mkdtemp(prefix="gpuwb-bench-remote-"))
    host = netns.NamespaceHost()
    results: Dict[str, Any] = {"machine": machine(), "date": time.strftime("%Y-%m-%d")}
    session = spawn(backend_env({"GPUWB_DATA_DIR": str(work / "data")}))
    try:
        session.initialize(
            {
                "vms": {"ssh": {"configFile": str(host.ssh_config)}},
                "remote": {"knownHostsFile": str(host.known_hosts)},
            }
        )
        t = time.perf_counter()
        connected = session.request("remote/connect", {"provider": "ssh", "id": "vm"}, 180)
        assert "result" in connected, connected
        results["firstConnectSeconds"] = time.perf_counter() - t
        t = time.perf_counter()
        session.request("remote/disconnect", {"machine": "ssh/vm"}, 60)
        session.request("remote/connect", {"provider": "ssh", "id": "vm"}, 180)
        results["connectAgentInstalledSeconds"] = time.perf_counter() - t

        local = session.request("kernel/start", {}, 60)["result"]["kernelId"]
        remote = session.request("kernel/start", {"machine": "ssh/vm"}, 60)["result"]["kernelId"]
        for k in (local, remote):
            for _ in range(5):
                cell_round_trip(session, k)
        local_times = [cell_round_trip(session, local) for _ in range(args.runs)]
        remote_times = [cell_round_trip(session, remote) for _ in range(args.runs)]

        # The link's own round trip: a TCP handshake to the machine's sshd (SYN, SYN-ACK).
        handshakes: List[float] = []
        for _ in range(50):
            t = time.perf_counter()
            with socket.create_connection((host.address, host.port), timeout=5):
                handshakes.append(time.perf_counter() - t)
        rtt = statistics.median(handshakes)
        fresh_times: List[float] = []
        failures = 0
        while len(fresh_times) < max(5, args.runs // 10) and failures < 10:
            t = time.perf_counter()
            done = subprocess.run(host.ssh_argv("python3 -c 'print(1+1)'"), capture_output=True)
            if done.returncode == 0:
                fresh_times.append(time.perf_counter() - t)
            else:  # sshd throttles bursts of new connections (MaxStartups): try again
                failures += 1
                time.sleep(0.5)

        # Reconnect: cut the link, wait until the backend notices, restore it, time to connected.
        host.link_down()
        session.wait_for(
            lambda m: (
                isinstance(m, dict)
                and m.get("method") == "remote/state"
                and m["params"]["state"] == "reconnecting"
            ),
            60,
        )
        t = time.perf_counter()
        host.link_up()
        session.wait_for(
            lambda m: (
                isinstance(m, dict)
                and m.get("method") == "remote/state"
                and m["params"]["state"] == "connected"
                and m["params"]["reconnects"] >= 1  # not the first connect's, still queued
            ),
            120,
        )
        reconnect = time.perf_counter() - t
        for k in (local, remote):
            session.request("kernel/shutdown", {"kernelId": k}, 30)
    finally:
        session.close()
        host.close()

    local_median = statistics.median(local_times)
    remote_median = statistics.median(remote_times)
    results.update(
        local=local_times,
        remote=remote_times,
        freshSsh=fresh_times,
        linkRttSeconds=rtt,
        reconnectSeconds=reconnect,
    )
    print("Machine: %s" % results["machine"])
    print()
    print("| `1+1` round trip | median (p90) | vs remote kernel |")
    print("|---|---|---|")
    print("| local kernel | %s | %.2fx |" % (ms(local_times), local_median / remote_median))
    print("| remote kernel over the persistent channel | %s | 1x |" % ms(remote_times))
    print(
        "| fresh `ssh host python3 -c` per call | %s | %.0fx |"
        % (ms(fresh_times), statistics.median(fresh_times) / remote_median)
    )
    print()
    if rtt is not None:
        print(
            "Link round trip (TCP handshake over the veth): %.3f ms; remote minus local: %.2f ms; "
            "remote minus local minus link RTT: %.2f ms"
            % (
                rtt * 1000,
                (remote_median - local_median) * 1000,
                (remote_median - local_median - rtt) * 1000,
            )
        )
    print(
        "First connect (agent install): %.2f s; connect with the agent installed: %.2f s; "
        "reconnect after the link returns: %.2f s"
        % (results["firstConnectSeconds"], results["connectAgentInstalledSeconds"], reconnect)
    )
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
