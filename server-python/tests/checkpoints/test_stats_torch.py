"""Statistics of a checkpoint written by torch.save, checked against torch's own numbers.

The fixture is made by a Python that has torch (GPUWB_TORCH_PYTHON, else /usr/bin/python3,
else python3 on PATH): it saves a state dict with f32/f64/f16/bf16/int/bool tensors, a
transposed view and a slice with a storage offset, and writes what torch computes for
each tensor (min, max, mean, population std over finite values; NaN/Inf counts; zero
fraction) to JSON. Without such a Python the test is skipped, except under CI=true where
it fails.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
from typing import Any, Dict, Optional

import pytest

from gpu_workbench.checkpoints import decode, stats

ENGINES = ["numpy", "stdlib"] if decode.numpy_module() is not None else ["stdlib"]

SCRIPT = r"""
import json, sys, torch
out = sys.argv[1]
torch.manual_seed(1234)
base = torch.randn(40, 30)
base[3, 4] = float("nan")
base[5, 6] = float("inf")
base[7, 8] = float("-inf")
base[9, :5] = 0.0
sd = {
    "f32": base,
    "f64": torch.randn(257, dtype=torch.float64) * 1e3,
    "f16": (torch.randn(16, 33) * 100).half(),
    "bf16": torch.randn(64, 65).bfloat16(),
    "i64": torch.randint(-10**12, 10**12, (300,)),
    "i32": torch.randint(-2**31, 2**31 - 1, (17, 3), dtype=torch.int32),
    "i16": torch.randint(-2**15, 2**15 - 1, (200,), dtype=torch.int16),
    "i8": torch.randint(-128, 127, (99,), dtype=torch.int8),
    "u8": torch.randint(0, 255, (10, 10), dtype=torch.uint8),
    "bool": torch.rand(77) > 0.3,
    "transposed": base.t(),
    "slice": base[10:30, 5:25:2],
    "scalar": torch.tensor(2.5),
    "empty": torch.zeros(0, 3),
}
big = torch.randn(512, 1024)
sd["big_t"] = big.t()
torch.save({"state_dict": sd, "epoch": 3}, out + "/model.pt")

def summary(t):
    x = t.double().reshape(-1) if t.dtype != torch.bool else t.to(torch.float64).reshape(-1)
    fin = x[torch.isfinite(x)]
    r = {
        "numel": x.numel(),
        "nan": int(torch.isnan(x).sum()),
        "inf": int(torch.isinf(x).sum()),
        "zero": float((x == 0).sum()) / x.numel() if x.numel() else None,
        "min": None, "max": None, "mean": None, "std": None,
    }
    if fin.numel():
        r.update(min=float(fin.min()), max=float(fin.max()), mean=float(fin.mean()),
                 std=float(fin.std(unbiased=False)))
    return r

with open(out + "/expected.json", "w") as f:
    json.dump({k: summary(v) for k, v in sd.items()}, f)
"""


def torch_python() -> Optional[str]:
    for candidate in (
        os.environ.get("GPUWB_TORCH_PYTHON"),
        "/usr/bin/python3",
        shutil.which("python3"),
    ):
        if not candidate or not os.path.exists(candidate):
            continue
        probe = subprocess.run(
            [candidate, "-c", "import torch, numpy"], capture_output=True, timeout=120
        )
        if probe.returncode == 0:
            return candidate
    return None


@pytest.fixture(scope="module")
def torch_checkpoint(tmp_path_factory):
    python = torch_python()
    if python is None:
        if os.environ.get("CI") == "true":
            pytest.fail("no Python with torch found (set GPUWB_TORCH_PYTHON)")
        pytest.skip("no Python with torch")
    out = tmp_path_factory.mktemp("torch")
    subprocess.run([python, "-c", SCRIPT, str(out)], check=True, timeout=300)
    with open(out / "expected.json") as f:
        expected = json.load(f)
    return str(out / "model.pt"), expected


def _close(got: Optional[float], want: Optional[float], rel: float) -> bool:
    if got is None or want is None:
        return got is None and want is None
    return math.isclose(got, want, rel_tol=rel, abs_tol=1e-9 * max(1.0, abs(want)))


@pytest.mark.parametrize("engine", ENGINES)
def test_stats_match_torch(torch_checkpoint, engine):
    path, expected = torch_checkpoint
    result = stats.compute(path, engine=engine, max_elements=1 << 40, time_budget_ms=1e9)
    json.dumps(result, allow_nan=False)
    got: Dict[str, Any] = {}
    for entry in result["stats"]:
        got[entry["name"].rsplit(".", 1)[-1]] = entry  # "state_dict.f32" -> "f32"
    assert set(got) == set(expected)
    for name, want in expected.items():
        entry = got[name]
        assert entry["error"] is None, (name, entry["error"])
        assert entry["numel"] == want["numel"], name
        assert entry["count"] == want["numel"] and entry["sampled"] is False, name
        assert entry["nanCount"] == want["nan"], name
        assert entry["infCount"] == want["inf"], name
        assert _close(entry["zeroFraction"], want["zero"], 1e-12), name
        assert _close(entry["min"], want["min"], 0), name
        assert _close(entry["max"], want["max"], 0), name
        assert _close(entry["mean"], want["mean"], 1e-9), (name, entry["mean"], want["mean"])
        assert _close(entry["std"], want["std"], 1e-9), (name, entry["std"], want["std"])
        if want["min"] is not None:
            hist = entry["histogram"]
            finite = want["numel"] - want["nan"] - want["inf"]
            assert sum(hist["counts"]) == finite, name
            assert hist["edges"][0] <= want["min"] and hist["edges"][-1] >= want["max"]


def test_views_equal_their_bases(torch_checkpoint):
    """The transposed view has exactly the statistics of the tensor it views."""
    path, _ = torch_checkpoint
    result = stats.compute(path, max_elements=1 << 40, time_budget_ms=1e9)
    got = {e["name"].rsplit(".", 1)[-1]: e for e in result["stats"]}
    for key in ("count", "nanCount", "infCount", "min", "max", "histogram"):
        assert got["f32"][key] == got["transposed"][key], key
    assert math.isclose(got["f32"]["mean"], got["transposed"]["mean"], rel_tol=1e-12)


def test_sampled_torch_tensor(torch_checkpoint):
    path, expected = torch_checkpoint
    result = stats.compute(path, max_elements=50_000)
    got = {e["name"].rsplit(".", 1)[-1]: e for e in result["stats"]}
    entry = got["big_t"]
    assert entry["sampled"] is True and entry["count"] < expected["big_t"]["numel"]
    assert abs(entry["mean"] - expected["big_t"]["mean"]) < 0.05
    assert abs(entry["std"] - expected["big_t"]["std"]) < 0.05
