#!/usr/bin/env python3
"""GPU machines benchmark: listing 500 machines across providers.

Three providers are pre-populated locally, no network and no account needed:
- AWS EC2: moto's server (in this process), 200 g5.xlarge instances made with boto3
  run_instances, spread over the two regions the provider lists by default;
- Lambda Cloud and Linode: the contract fakes (server-python/tests/vms/fake_clouds.py, in
  this process), 150 instances each, all running.

Measured:
- backend: `vm/list` over JSON-RPC on one warm backend (first call separately: it includes
  building the boto3 session), median and p90 of --runs calls;
- CLI: `gpuwb vm list` wall time from a cold process (Node + backend start + vm/list +
  table), and the table render alone (renderVmList of src/cli/commands/vm.ts on the 500);
- tree: the GPU Machines tree's data side (src/vms/tree.ts, bundled with a minimal `vscode`
  stub): getChildren for the root and every provider plus getTreeItem for every node, i.e.
  what the extension computes per refresh. VS Code's own drawing of the rows is not included.

    python3 bench/vms.py [--runs N] [--json OUT]

Prints a Markdown table with the machine and writes bench/results/vms.json.
Python rather than Node: the fakes and moto run in this process, so populating 500
machines is direct (no HTTP round trips for the Lambda and Linode fakes).
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
CLI = ROOT / "dist" / "cli.js"
TOKEN = "bench-token-not-secret"
COUNTS = {"aws": 200, "lambda": 150, "linode": 150}
AWS_REGIONS = ["us-east-1", "us-west-2"]

sys.path.insert(0, str(BENCH_DIR))
sys.path.insert(0, str(SERVER_ROOT / "tests" / "vms"))

from kernels import Backend  # noqa: E402  (the JSON-RPC client of the kernel benchmark)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pct(xs: List[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(q * len(s)))]


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    node = subprocess.run(["node", "--version"], capture_output=True, text=True).stdout.strip()
    return "%s, %d CPUs, %s, Python %s, Node %s" % (
        cpu,
        os.cpu_count() or 0,
        platform.system(),
        platform.python_version(),
        node,
    )


# ---- populate ----


def populate_aws(url: str) -> None:
    import boto3

    for i, region in enumerate(AWS_REGIONS):
        ec2 = boto3.client("ec2", region_name=region, endpoint_url=url)
        image = ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]
        n = COUNTS["aws"] // len(AWS_REGIONS) + (1 if i < COUNTS["aws"] % len(AWS_REGIONS) else 0)
        made = 0
        while made < n:
            batch = min(50, n - made)
            ec2.run_instances(
                ImageId=image,
                InstanceType="g5.xlarge",
                MinCount=batch,
                MaxCount=batch,
                TagSpecifications=[
                    {
                        "ResourceType": "instance",
                        "Tags": [
                            {"Key": "Name", "Value": "bench-aws"},
                            {"Key": "gpu-workbench", "Value": "1"},
                        ],
                    }
                ],
            )
            made += batch


def populate_fakes(fake_lambda: Any, fake_linode: Any) -> None:
    with fake_lambda.lock:
        for i in range(COUNTS["lambda"]):
            inst = fake_lambda.add_instance(
                "gpu_1x_a10", "us-east-1", "bench-lambda-%03d" % i, "laptop"
            )
            inst["status"] = "active"
            inst["ip"] = "198.51.100.%d" % (i % 250 + 1)
    with fake_linode.lock:
        for i in range(COUNTS["linode"]):
            fake_linode.add_instance(
                type="g1-gpu-rtx6000-1",
                region="us-southeast",
                label="bench-linode-%03d" % i,
                status="running",
                tags=["gpu-workbench"],
            )


# ---- node side: CLI render and tree ----

NODE_RENDER = r"""
const esbuild = require(process.env.ROOT + "/node_modules/esbuild");
const fs = require("node:fs");
const path = require("node:path");
const os = require("node:os");
const data = JSON.parse(fs.readFileSync(process.env.LIST_JSON, "utf8"));
const providers = JSON.parse(fs.readFileSync(process.env.PROVIDERS_JSON, "utf8")).providers;
const dir = fs.mkdtempSync(path.join(os.tmpdir(), "gpuwb-bench-vms-"));
const stub = path.join(dir, "vscode-stub.js");
fs.writeFileSync(stub, `
class EventEmitter { constructor() { this.l = []; this.event = (f) => { this.l.push(f); return { dispose() {} }; }; }
  fire(v) { for (const f of this.l) f(v); } dispose() {} }
class MarkdownString { constructor(v = "") { this.value = v; this.isTrusted = false; this.supportThemeIcons = false; }
  appendMarkdown(s) { this.value += s; return this; } appendText(s) { this.value += s; return this; }
  appendCodeblock(s) { this.value += s; return this; } }
class ThemeIcon { constructor(id, color) { this.id = id; this.color = color; } }
class ThemeColor { constructor(id) { this.id = id; } }
class TreeItem { constructor(label, state) { this.label = label; this.collapsibleState = state; } }
module.exports = { EventEmitter, MarkdownString, ThemeIcon, ThemeColor, TreeItem,
  TreeItemCollapsibleState: { None: 0, Collapsed: 1, Expanded: 2 }, Disposable: class { dispose() {} } };
`);
const entry = path.join(dir, "entry.ts");
fs.writeFileSync(entry, `
export { renderVmList } from ${JSON.stringify(process.env.ROOT + "/src/cli/commands/vm")};
export { VmTreeProvider } from ${JSON.stringify(process.env.ROOT + "/src/vms/tree")};
`);
const out = path.join(dir, "bundle.js");
esbuild.buildSync({ entryPoints: [entry], bundle: true, platform: "node", format: "cjs", outfile: out,
  alias: { vscode: stub }, logLevel: "error" });
const m = require(out);
const runs = Number(process.env.RUNS);
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const render = [];
let text = "";
for (let i = 0; i < runs; i++) { const t0 = performance.now(); text = m.renderVmList(data); render.push(performance.now() - t0); }
const listeners = [];
const model = { providers, vms: data.vms, errors: data.errors, failure: null, loaded: true, lastRefresh: Date.now(),
  onDidChange: (f) => { listeners.push(f); return { dispose() {} }; }, anyRunning: true };
const tree = new m.VmTreeProvider(model, () => undefined);
const refresh = [];
let items = 0;
for (let i = 0; i < runs; i++) {
  const t0 = performance.now();
  items = 0;
  for (const top of tree.getChildren(undefined)) {
    tree.getTreeItem(top); items++;
    for (const child of tree.getChildren(top)) { tree.getTreeItem(child); items++; }
  }
  refresh.push(performance.now() - t0);
}
fs.rmSync(dir, { recursive: true, force: true });
console.log(JSON.stringify({ renderMs: render, renderLines: text.split("\n").length, treeMs: refresh, treeItems: items }));
"""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--cli-runs", type=int, default=5)
    ap.add_argument("--json", default=str(BENCH_DIR / "results" / "vms.json"))
    args = ap.parse_args()
    if not CLI.exists():
        print("dist/cli.js is missing: run `node esbuild.mjs` first", file=sys.stderr)
        return 2

    import logging

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # moto's request log
    from fake_clouds import start_all
    from moto.server import ThreadedMotoServer

    work = Path(tempfile.mkdtemp(prefix="gpuwb-bench-vms-"))
    home = work / "home"
    home.mkdir()
    port = free_port()
    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    moto.start()
    aws_url = "http://127.0.0.1:%d" % port
    fake_lambda, fake_linode = start_all(TOKEN)
    env_over = {
        "HOME": str(home),
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
        "GPUWB_AWS_ENDPOINT_URL": aws_url,
        "GPUWB_LAMBDA_API_URL": fake_lambda.url,
        "GPUWB_LINODE_API_URL": fake_linode.url,
        "GPUWB_LAMBDA_API_KEY": TOKEN,
        "GPUWB_LINODE_API_TOKEN": TOKEN,
    }
    saved = {k: os.environ.get(k) for k in env_over}
    os.environ.update(env_over)
    backend = None
    try:
        t0 = time.perf_counter()
        populate_aws(aws_url)
        populate_fakes(fake_lambda, fake_linode)
        populate_s = time.perf_counter() - t0
        credentials = {"lambda": {"apiKey": TOKEN}, "linode": {"apiToken": TOKEN}}
        params = {"providers": ["aws", "lambda", "linode"], "credentials": credentials}

        data_dir = work / "data"
        backend = Backend(sys.executable, data_dir, work / "backend.log")
        backend.initialize()
        t0 = time.perf_counter()
        first = backend.request("vm/list", params, timeout=300)
        first_ms = (time.perf_counter() - t0) * 1000
        warm: List[float] = []
        result: Dict[str, Any] = first
        for _ in range(args.runs):
            t0 = time.perf_counter()
            result = backend.request("vm/list", params, timeout=300)
            warm.append((time.perf_counter() - t0) * 1000)
        per_provider_ms: Dict[str, float] = {}
        for name in COUNTS:
            one = {"providers": [name], "credentials": credentials}
            times = []
            for _ in range(max(3, args.runs // 2)):
                t0 = time.perf_counter()
                backend.request("vm/list", one, timeout=300)
                times.append((time.perf_counter() - t0) * 1000)
            per_provider_ms[name] = round(statistics.median(times), 1)
        per = {p: sum(1 for v in result["vms"] if v["provider"] == p) for p in COUNTS}
        if result["errors"] or per != COUNTS:
            print("unexpected listing: %r errors=%r" % (per, result["errors"]), file=sys.stderr)
            return 1
        providers = backend.request("vm/providers", {"credentials": credentials}, timeout=120)
        list_json = work / "list.json"
        list_json.write_text(json.dumps(result))
        providers_json = work / "providers.json"
        providers_json.write_text(json.dumps(providers))

        # CLI from a cold process (same data directory: the ledger already knows the 500).
        cli_ms: List[float] = []
        cli_args = ["node", str(CLI), "--data-dir", str(data_dir), "vm", "list"]
        cli_args += ["--provider", "aws,lambda,linode"]
        for _ in range(args.cli_runs):
            t0 = time.perf_counter()
            r = subprocess.run(cli_args, capture_output=True, text=True)
            cli_ms.append((time.perf_counter() - t0) * 1000)
            if r.returncode != 0:
                print(r.stderr, file=sys.stderr)
                return 1
        cli_lines = len(r.stdout.splitlines())

        node = subprocess.run(
            ["node", "-e", NODE_RENDER],
            capture_output=True,
            text=True,
            env=dict(
                os.environ,
                ROOT=str(ROOT),
                LIST_JSON=str(list_json),
                PROVIDERS_JSON=str(providers_json),
                RUNS=str(args.runs),
            ),
        )
        if node.returncode != 0:
            print(node.stderr, file=sys.stderr)
            return 1
        ui = json.loads(node.stdout.strip().splitlines()[-1])
    finally:
        if backend is not None:
            backend.close()
        fake_lambda.close()
        fake_linode.close()
        moto.stop()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v

    med = statistics.median
    results = {
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": machine(),
        "machines": sum(COUNTS.values()),
        "perProvider": COUNTS,
        "populateSeconds": round(populate_s, 2),
        "backend": {
            "firstListMs": round(first_ms, 1),
            "listMs": [round(x, 1) for x in warm],
            "listMedianMs": round(med(warm), 1),
            "listP90Ms": round(pct(warm, 0.9), 1),
            "perProviderMedianMs": per_provider_ms,
        },
        "cli": {
            "vmListWallMs": [round(x, 1) for x in cli_ms],
            "vmListWallMedianMs": round(med(cli_ms), 1),
            "tableLines": cli_lines,
            "renderMedianMs": round(med(ui["renderMs"]), 2),
        },
        "tree": {
            "items": ui["treeItems"],
            "refreshMedianMs": round(med(ui["treeMs"]), 2),
            "refreshP90Ms": round(pct(ui["treeMs"], 0.9), 2),
            "note": "data side (getChildren + getTreeItem for every node) with a vscode stub; "
            "VS Code's drawing of the rows is not included",
        },
    }
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")

    b, c, t = results["backend"], results["cli"], results["tree"]
    print("Machine: %s\n" % results["machine"])
    print("| Listing 500 machines (200 EC2 in moto, 150 Lambda, 150 Linode fakes) | Time |")
    print("|---|---|")
    print(
        "| backend `vm/list`, first call (boto3 session, ledger inserts) | %.0f ms |"
        % b["firstListMs"]
    )
    print(
        "| backend `vm/list`, warm, median of %d (p90) | %.0f ms (%.0f ms) |"
        % (args.runs, b["listMedianMs"], b["listP90Ms"])
    )
    for name, ms in b["perProviderMedianMs"].items():
        print(
            "| backend `vm/list` of %s alone (%d machines), median | %.0f ms |"
            % (name, COUNTS[name], ms)
        )
    print(
        "| `gpuwb vm list` from a cold process, median of %d | %.0f ms |"
        % (args.cli_runs, c["vmListWallMedianMs"])
    )
    print("| CLI table render of the 500 rows | %.2f ms |" % c["renderMedianMs"])
    print(
        "| GPU Machines tree refresh, data side (%d items), median (p90) | %.2f ms (%.2f ms) |"
        % (t["items"], t["refreshMedianMs"], t["refreshP90Ms"])
    )
    print("\nwrote %s" % out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
