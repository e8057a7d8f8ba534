"""Short throughput tests with torch, run in the user's interpreter by gpu/checks.py.

    <python> torch_bench.py [--device cuda|cpu] [--seconds S] [--size N]

A standalone script: standard library plus torch, Python 3.8+, nothing from gpu_workbench.
It prints ONE JSON object on stdout and always exits 0 (a missing torch is a result, not an
error):

    {"torch": "2.3.0" | null, "cuda": bool, "cudaVersion": "12.1" | null,
     "devices": [{"index", "name", "matmulTflops", "dtype", "bandwidthGBs"}],
     "p2p": [{"src", "dst", "GBs", "peer"}] | null, "allReduceGBs": float | null,
     "errors": [{"device": int | null, "test": str, "message": str}], "notes": [str]}

On stderr: `PROGRESS <fraction> <message>` lines, and `PARTIAL <json>` after each phase (the
result so far, for a caller that has to kill the script at its timeout).

- matmul: square N x N (default 8192 on a GPU, 1024 on the CPU) in bf16 where the GPU has
  it (compute capability >= 8), else fp16; fp32 on the CPU. Warm-up, then CUDA-synchronized
  timing over about `--seconds`; TFLOPS = 2 N^3 iterations / time.
- bandwidth: device-to-device copy of a large buffer; GB/s = bytes read + written / time.
- p2p (2+ GPUs): a copy from each GPU to each other one (one direction per pair), GB/s =
  bytes / time; `peer` is torch.cuda.can_device_access_peer.
- allReduceGBs (2+ GPUs): single-process NCCL all-reduce (torch.cuda.nccl), reported as the
  nccl-tests "bus bandwidth" (size / time * 2 (n - 1) / n); null with a note when this
  torch has no NCCL.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

GiB = 1 << 30
MiB = 1 << 20


def progress(fraction: float, message: str) -> None:
    sys.stderr.write("PROGRESS %.3f %s\n" % (max(0.0, min(1.0, fraction)), message))
    sys.stderr.flush()


def partial(result: Dict[str, Any]) -> None:
    sys.stderr.write("PARTIAL %s\n" % json.dumps(result))
    sys.stderr.flush()


def error_text(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    first = text[0] if text else ""
    return ("%s: %s" % (type(exc).__name__, first))[:300]


def timed(step: Callable[[], Any], sync: Callable[[], None], seconds: float) -> Tuple[int, float]:
    """Run `step` repeatedly for about `seconds` after a warm-up; (iterations, elapsed)."""
    step()
    sync()
    start = time.perf_counter()
    step()
    sync()
    once = max(time.perf_counter() - start, 1e-6)
    chunk = max(1, min(1000, int(seconds / 5.0 / once)))
    iterations = 0
    start = time.perf_counter()
    elapsed = 0.0
    while True:
        for _ in range(chunk):
            step()
        sync()
        iterations += chunk
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return iterations, elapsed


def run(device: str, seconds: float, size: Optional[int]) -> Dict[str, Any]:
    result: Dict[str, Any] = {
        "torch": None,
        "cuda": False,
        "cudaVersion": None,
        "devices": [],
        "p2p": None,
        "allReduceGBs": None,
        "errors": [],
        "notes": [],
    }
    errors: List[Dict[str, Any]] = result["errors"]
    progress(0.0, "importing torch")
    try:
        import torch  # pyright: ignore[reportMissingImports]
    except Exception as exc:  # ImportError, or a broken install (OSError on a missing .so)
        errors.append({"device": None, "test": "import", "message": error_text(exc)})
        return result
    result["torch"] = str(getattr(torch, "__version__", "unknown"))
    result["cudaVersion"] = getattr(torch.version, "cuda", None)
    try:
        result["cuda"] = bool(torch.cuda.is_available())
    except Exception as exc:
        errors.append({"device": None, "test": "cuda", "message": error_text(exc)})
    if device == "cuda" and not result["cuda"]:
        result["notes"].append("CUDA is not available to this torch")
        return result

    if device == "cpu":
        n = size or 1024
        name = platform.processor() or platform.machine() or "cpu"
        entry = bench_device(torch, None, name, n, seconds, errors, 0.0, 1.0)
        result["devices"].append(entry)
        progress(1.0, "done")
        return result

    count = torch.cuda.device_count()
    n = size or 8192
    multi = count >= 2
    device_share = 0.8 if multi else 1.0
    for index in range(count):
        try:
            name = torch.cuda.get_device_name(index)
        except Exception as exc:
            name = "cuda:%d" % index
            errors.append({"device": index, "test": "name", "message": error_text(exc)})
        base = device_share * index / count
        span = device_share / count
        result["devices"].append(bench_device(torch, index, name, n, seconds, errors, base, span))
        partial(result)
    if multi:
        result["p2p"] = bench_p2p(torch, count, seconds, errors, 0.8, 0.15)
        partial(result)
        result["allReduceGBs"] = bench_all_reduce(torch, count, seconds, errors, result["notes"])
    progress(1.0, "done")
    return result


def bench_device(
    torch: Any,
    index: Optional[int],
    name: str,
    n: int,
    seconds: float,
    errors: List[Dict[str, Any]],
    base: float,
    span: float,
) -> Dict[str, Any]:
    """Matmul TFLOPS and copy bandwidth on one device (index None: the CPU)."""
    label = "CPU" if index is None else "GPU %d" % index
    entry: Dict[str, Any] = {
        "index": 0 if index is None else index,
        "name": name,
        "matmulTflops": None,
        "dtype": None,
        "bandwidthGBs": None,
    }
    if index is None:
        dev = torch.device("cpu")
        dtype = torch.float32

        def sync() -> None:
            return None

    else:
        dev = torch.device("cuda", index)
        major = torch.cuda.get_device_capability(index)[0]
        dtype = torch.bfloat16 if major >= 8 else torch.float16

        def sync() -> None:
            torch.cuda.synchronize(dev)

    entry["dtype"] = str(dtype).replace("torch.", "")

    progress(base, "matmul on %s (%s, N=%d)" % (label, entry["dtype"], n))
    a = b = c = None
    try:
        a = torch.randn(n, n, device=dev, dtype=dtype)
        b = torch.randn(n, n, device=dev, dtype=dtype)
        c = torch.empty(n, n, device=dev, dtype=dtype)

        def step() -> None:
            torch.matmul(a, b, out=c)

        iterations, elapsed = timed(step, sync, seconds)
        entry["matmulTflops"] = round(2.0 * n**3 * iterations / elapsed / 1e12, 4)
    except Exception as exc:  # OOM, cuBLAS errors, an XID mid-run...
        errors.append({"device": entry["index"], "test": "matmul", "message": error_text(exc)})
    finally:
        a = b = c = None
        release(torch, index)

    progress(base + span * 0.6, "memory bandwidth on %s" % label)
    src: Any = None  # Any: the closure below sees them as tensors, `finally` frees them
    dst: Any = None
    try:
        nbytes = buffer_bytes(torch, index)
        src = torch.empty(nbytes // 4, device=dev, dtype=torch.float32).fill_(1.0)
        dst = torch.empty_like(src)

        def copy() -> None:
            dst.copy_(src)

        iterations, elapsed = timed(copy, sync, seconds / 2.0)
        nbytes = src.numel() * 4
        entry["bandwidthGBs"] = round(2.0 * nbytes * iterations / elapsed / 1e9, 2)
    except Exception as exc:
        errors.append({"device": entry["index"], "test": "bandwidth", "message": error_text(exc)})
    finally:
        src = dst = None
        release(torch, index)
    progress(base + span, "%s done" % label)
    return entry


def buffer_bytes(torch: Any, index: Optional[int]) -> int:
    """A copy buffer well beyond any cache: 1 GiB on a GPU (less when memory is short),
    256 MiB on the CPU."""
    if index is None:
        return 256 * MiB
    want = GiB
    try:
        free, _total = torch.cuda.mem_get_info(index)
        want = min(want, int(free) // 4)
    except Exception:
        pass
    return max(64 * MiB, want - want % MiB)


def release(torch: Any, index: Optional[int]) -> None:
    if index is None:
        return
    try:
        torch.cuda.synchronize(index)
        torch.cuda.empty_cache()
    except Exception:
        pass


def bench_p2p(
    torch: Any,
    count: int,
    seconds: float,
    errors: List[Dict[str, Any]],
    base: float,
    span: float,
) -> List[Dict[str, Any]]:
    """One copy direction per GPU pair; about 2 s in all however many pairs there are."""
    pairs = [(i, j) for i in range(count) for j in range(count) if i < j]
    budget = max(0.02, min(0.25, min(2.0, seconds * 2.0) / max(1, len(pairs))))
    out: List[Dict[str, Any]] = []
    for k, (i, j) in enumerate(pairs):
        progress(base + span * k / len(pairs), "peer copy GPU %d -> GPU %d" % (i, j))
        entry: Dict[str, Any] = {"src": i, "dst": j, "GBs": None, "peer": None}
        src = dst = None
        try:
            entry["peer"] = bool(torch.cuda.can_device_access_peer(i, j))
            nbytes = 256 * MiB
            src = torch.empty(nbytes // 4, device="cuda:%d" % i, dtype=torch.float32).fill_(1.0)
            dst = torch.empty(nbytes // 4, device="cuda:%d" % j, dtype=torch.float32)

            def sync_pair(i: int = i, j: int = j) -> None:
                torch.cuda.synchronize(i)
                torch.cuda.synchronize(j)

            iterations, elapsed = timed(
                lambda s=src, d=dst: d.copy_(s, non_blocking=True), sync_pair, budget
            )
            entry["GBs"] = round(nbytes * iterations / elapsed / 1e9, 2)
        except Exception as exc:
            errors.append({"device": i, "test": "p2p %d->%d" % (i, j), "message": error_text(exc)})
        finally:
            src = dst = None
            release(torch, i)
            release(torch, j)
        out.append(entry)
    return out


def bench_all_reduce(
    torch: Any,
    count: int,
    seconds: float,
    errors: List[Dict[str, Any]],
    notes: List[str],
) -> Optional[float]:
    """Bus bandwidth of a single-process NCCL all-reduce over every GPU, or None."""
    progress(0.95, "all-reduce over %d GPUs" % count)
    try:
        from torch.cuda import nccl  # pyright: ignore[reportMissingImports]
    except Exception:
        notes.append("all-reduce skipped: this torch has no torch.cuda.nccl (p2p is measured)")
        return None
    tensors = []
    try:
        nbytes = 256 * MiB
        tensors = [
            torch.ones(nbytes // 4, device="cuda:%d" % i, dtype=torch.float32) for i in range(count)
        ]
        if not nccl.is_available(tensors):
            notes.append("all-reduce skipped: NCCL is not available to this torch")
            return None

        def step() -> None:
            nccl.all_reduce(tensors)

        def sync() -> None:
            for i in range(count):
                torch.cuda.synchronize(i)

        iterations, elapsed = timed(step, sync, max(0.1, min(1.0, seconds / 2.0)))
        algbw = nbytes * iterations / elapsed / 1e9
        return round(algbw * 2.0 * (count - 1) / count, 2)
    except Exception as exc:
        errors.append({"device": None, "test": "all-reduce", "message": error_text(exc)})
        return None
    finally:
        tensors = []
        for i in range(count):
            release(torch, i)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    parser.add_argument("--seconds", type=float, default=1.0, help="timing per test")
    parser.add_argument("--size", type=int, default=None, help="matmul N")
    args = parser.parse_args(argv)
    seconds = max(0.01, min(10.0, args.seconds))
    size = args.size if args.size and args.size > 0 else None
    try:
        result = run(args.device, seconds, size)
    except Exception as exc:  # never a traceback instead of the JSON
        result = {
            "torch": None,
            "cuda": False,
            "cudaVersion": None,
            "devices": [],
            "p2p": None,
            "allReduceGBs": None,
            "errors": [{"device": None, "test": "bench", "message": error_text(exc)}],
            "notes": [],
        }
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
