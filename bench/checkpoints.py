#!/usr/bin/env python3
"""Checkpoint inspection benchmarks: GPU Workbench's static reader against torch.load.

Side by side, in one run, on one machine:

- Inspect time and peak memory against file size at a fixed tensor count: one Llama layout
  (32 layers, 291 tensors) as safetensors of about 1 GB, 13 GB and 100 GB (sparse files
  made with truncate, real headers), and PyTorch zip files of 64 tensors at about 100 MB
  and 2 GB written by torch.save. Plus 1,000-tensor files of both kinds (the 50 ms goal).
- The .pt files loaded with torch.load(weights_only=True), the peer: time and peak memory.

Every measurement runs in a fresh subprocess; peak memory is the growth of that process's
peak RSS (VmHWM, reset just before the operation through /proc/self/clear_refs) over its
RSS after imports. Reader modules are imported before timing, as in the long-lived backend.
Each measurement is repeated and the median kept; the page cache is warm for both tools
(each .pt is read once before timing). Nothing is asserted: this is a report.

    /usr/bin/python3 bench/checkpoints.py [--dir DIR] [--quick] [--json OUT]

Needs a Python with torch (Debian: apt-get install python3-torch). Writes about 2.2 GB of
real data plus sparse files to --dir (default: a temporary folder, removed afterwards).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Dict, List, Tuple

BENCH_DIR = Path(__file__).resolve().parent
ROOT = BENCH_DIR.parent
SERVER_ROOT = ROOT / "server-python"

# Run in a child: measure one operation, print {"seconds", "baselineKiB", "peakKiB", ...}.
_CHILD = r"""
import json, sys, time
sys.path.insert(0, %(server)r)

def status(key):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])  # KiB
    return 0

def reset_peak():
    # Linux: writing 5 to clear_refs resets VmHWM (the peak RSS) to the current RSS.
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")

op, path = sys.argv[1], sys.argv[2]
if op == "torch":
    import torch
    reset_peak()
    base = status("VmRSS")
    t0 = time.perf_counter()
    obj = torch.load(path, weights_only=True)
    seconds = time.perf_counter() - t0
    extra = {"tensors": len(obj)}
else:
    from gpu_workbench.checkpoints import readers
    # The backend is long-lived: reader modules are imported once, not per file.
    from gpu_workbench.checkpoints import gguf, hf, numpy_fmt, pickle_vm, safetensors, torch_zip
    reset_peak()
    base = status("VmRSS")
    t0 = time.perf_counter()
    summary = readers.inspect(path)
    seconds = time.perf_counter() - t0
    extra = {"tensors": summary["tensorCount"], "parameters": summary["parameterCount"]}
peak = status("VmHWM")
print(json.dumps(dict(seconds=seconds, baselineKiB=base, peakKiB=peak, **extra)))
"""


def llama_layout(
    layers: int, hidden: int, inter: int, vocab: int, kv: int
) -> List[Tuple[str, List[int]]]:
    out = [("model.embed_tokens.weight", [vocab, hidden])]
    for i in range(layers):
        p = "model.layers.%d." % i
        out += [
            (p + "self_attn.q_proj.weight", [hidden, hidden]),
            (p + "self_attn.k_proj.weight", [kv, hidden]),
            (p + "self_attn.v_proj.weight", [kv, hidden]),
            (p + "self_attn.o_proj.weight", [hidden, hidden]),
            (p + "mlp.gate_proj.weight", [inter, hidden]),
            (p + "mlp.up_proj.weight", [inter, hidden]),
            (p + "mlp.down_proj.weight", [hidden, inter]),
            (p + "input_layernorm.weight", [hidden]),
            (p + "post_attention_layernorm.weight", [hidden]),
        ]
    out += [("model.norm.weight", [hidden]), ("lm_head.weight", [vocab, hidden])]
    return out


def sparse_safetensors(path: Path, layout: List[Tuple[str, List[int]]]) -> int:
    """A safetensors file with a real header and a sparse (unwritten) data section."""
    header: Dict[str, Any] = {"__metadata__": {"format": "pt"}}
    offset = 0
    for name, shape in layout:
        n = 2
        for d in shape:
            n *= d
        header[name] = {"dtype": "BF16", "shape": shape, "data_offsets": [offset, offset + n]}
        offset += n
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text)
        f.truncate(8 + len(text) + offset)
    return 8 + len(text) + offset


def torch_zip(path: Path, target_bytes: int, layers: int = 32) -> int:
    """A state dict of 64 float32 tensors (Llama-like names) written by torch.save, sized so
    that the file is about `target_bytes`: the tensor count is the same at every size."""
    import torch

    rows = max(1, target_bytes // (layers * 2048 * 4))
    sd = {}
    for i in range(layers):
        sd["model.layers.%d.mlp.up_proj.weight" % i] = torch.randn(rows, 2048)
        sd["model.layers.%d.input_layernorm.weight" % i] = torch.randn(2048)
    torch.save(sd, path)
    return path.stat().st_size


def torch_many(path: Path, count: int) -> None:
    """A state dict of `count` small tensors, as torch.save writes it."""
    import torch

    sd = {
        "model.layers.%d.%s" % (i // 10, "w%d" % (i % 10)): torch.randn(16, 16)
        for i in range(count)
    }
    torch.save(sd, path)


def run_child(op: str, path: Path, repeats: int) -> Dict[str, Any]:
    code = _CHILD % {"server": str(SERVER_ROOT)}
    runs = []
    for _ in range(repeats):
        out = subprocess.run(
            [sys.executable, "-c", code, op, str(path)], capture_output=True, text=True, check=False
        )
        if out.returncode != 0:
            raise RuntimeError("%s on %s failed:\n%s" % (op, path, out.stderr[-2000:]))
        runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    best = sorted(runs, key=lambda r: r["seconds"])[len(runs) // 2]
    return {
        "seconds": statistics.median(r["seconds"] for r in runs),
        "peakGrowthMiB": max(0.0, (best["peakKiB"] - best["baselineKiB"]) / 1024.0),
        "peakMiB": best["peakKiB"] / 1024.0,
        "tensors": best["tensors"],
    }


def warm(path: Path) -> None:
    with open(path, "rb") as f:
        while f.read(1 << 24):
            pass


def fmt_size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if n < 1024 or unit == "TiB":
            return "%.1f %s" % (n, unit) if unit != "B" else "%d B" % n
        n /= 1024.0
    return str(n)


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return "%s, %d vCPU, Python %s, %s" % (
        cpu,
        os.cpu_count() or 0,
        platform.python_version(),
        platform.platform(),
    )


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dir", help="where to write the files (default: a temporary folder)")
    parser.add_argument(
        "--quick", action="store_true", help="skip the 2 GB .pt and the 100 GB file; 1 repeat"
    )
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", default=str(BENCH_DIR / "results" / "checkpoints.json"))
    args = parser.parse_args()
    repeats = 1 if args.quick else args.repeats
    work = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="gpuwb-ckpt-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    rows: List[Dict[str, Any]] = []
    try:
        files: List[Tuple[str, Path, int]] = []
        # The same Llama layout (32 layers, 291 tensors) at three widths: ~1, ~13 and ~100 GB.
        specs = [
            (
                "safetensors, 1,002 tensors",
                "st-1000.safetensors",
                llama_layout(111, 1024, 2816, 32000, 1024),
            ),
            (
                "safetensors ~1 GB, 291 tensors",
                "st-1g.safetensors",
                llama_layout(32, 1024, 2816, 32000, 1024),
            ),
            (
                "safetensors ~13 GB, 291 tensors (Llama-7B)",
                "st-13g.safetensors",
                llama_layout(32, 4096, 11008, 32000, 4096),
            ),
        ]
        specs.append(
            (
                "safetensors, 100,000 tensors",
                "st-100k.safetensors",
                [
                    ("model.layers.%d.experts.%d.w" % (i // 100, i % 100), [64, 64])
                    for i in range(100_000)
                ],
            )
        )
        if not args.quick:
            specs.append(
                (
                    "safetensors ~100 GB, 291 tensors",
                    "st-100g.safetensors",
                    llama_layout(32, 11264, 30272, 32000, 11264),
                )
            )
        for label, name, layout in specs:
            size = sparse_safetensors(work / name, layout)
            files.append((label, work / name, size))
        small = work / "pt-1000.pt"
        torch_many(small, 1000)
        files.append(("PyTorch zip, 1,000 tensors", small, small.stat().st_size))
        pt_specs = [("PyTorch zip ~100 MB, 64 tensors", "pt-100m.pt", 100 << 20)]
        if not args.quick:
            pt_specs.append(("PyTorch zip ~2 GB, 64 tensors", "pt-2g.pt", 2 << 30))
        for label, name, target in pt_specs:
            size = torch_zip(work / name, target)
            files.append((label, work / name, size))
        for label, path, size in files:
            if path.suffix == ".pt":
                warm(path)
            r = run_child("gpuwb", path, repeats)
            rows.append({"file": label, "size": size, "tool": "gpuwb inspect", **r})
            print(
                "%-44s %10s  gpuwb  %8.2f ms  +%.1f MiB"
                % (label, fmt_size(size), r["seconds"] * 1000, r["peakGrowthMiB"]),
                flush=True,
            )
        for label, path, size in files:
            if path.suffix == ".pt":
                r = run_child("torch", path, max(1, min(repeats, 3)))
                rows.append(
                    {"file": label, "size": size, "tool": "torch.load(weights_only=True)", **r}
                )
                print(
                    "%-44s %10s  torch  %8.2f ms  +%.1f MiB"
                    % (label, fmt_size(size), r["seconds"] * 1000, r["peakGrowthMiB"]),
                    flush=True,
                )
    finally:
        if not args.dir:
            shutil.rmtree(work, ignore_errors=True)

    print()
    print("Machine: %s" % machine())
    print()
    print("| file | size | tool | time | peak memory growth |")
    print("|---|---|---|---|---|")
    for r in rows:
        print(
            "| %s | %s | %s | %.2f ms | %.1f MiB |"
            % (r["file"], fmt_size(r["size"]), r["tool"], r["seconds"] * 1000, r["peakGrowthMiB"])
        )
    ours = {r["file"]: r for r in rows if r["tool"] == "gpuwb inspect"}
    for r in rows:
        if r["tool"].startswith("torch") and r["file"] in ours:
            o = ours[r["file"]]
            print()
            print(
                "%s: gpuwb inspect is %.0fx faster than torch.load(weights_only=True) and grows peak memory %.0fx less (%.1f vs %.1f MiB)."
                % (
                    r["file"],
                    r["seconds"] / o["seconds"],
                    r["peakGrowthMiB"] / max(o["peakGrowthMiB"], 0.1),
                    o["peakGrowthMiB"],
                    r["peakGrowthMiB"],
                )
            )
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    with open(args.json, "w") as f:
        json.dump({"machine": machine(), "rows": rows}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
