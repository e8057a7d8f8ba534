"""Checkpoint test fixtures: torch-written files generated once per session.

torch is not a dependency of the backend; fixtures are written by tests/checkpoints/
torch_fixtures.py under a Python that has torch: $GPUWB_TORCH_PYTHON, else /usr/bin/python3
when it can import torch. Without one the torch tests skip, except under CI=true, where
they fail (a CI image must provide torch).
"""

from __future__ import annotations

import importlib.machinery
import json
import os
import subprocess
import types
from pathlib import Path
from typing import Any, Dict, Optional

import pytest

HERE = Path(__file__).resolve().parent
FALLBACK_TORCH_PYTHON = "/usr/bin/python3"


def _root_helpers() -> Dict[str, Any]:
    """The helpers of tests/conftest.py (spawn, backend_env, ...).

    Test modules here write `from conftest import spawn`; with this file present, that
    import finds this conftest, so it re-exports the root one's plain helpers (its fixtures
    are inherited by pytest anyway).
    """
    name = "_gpuwb_tests_root_conftest"
    module = types.ModuleType(name)
    module.__file__ = str(HERE.parent / "conftest.py")
    importlib.machinery.SourceFileLoader(name, module.__file__).exec_module(module)
    out: Dict[str, Any] = {}
    for name, value in vars(module).items():
        if name.startswith("_") or name in ("annotations", "pytest"):
            continue
        if type(value).__name__ == "FixtureFunctionDefinition" or hasattr(
            value, "_pytestfixturefunction"
        ):
            continue
        out[name] = value
    return out


globals().update({k: v for k, v in _root_helpers().items() if k not in globals()})


class TorchFixtures:
    """The generated files and truth.json (what torch.load found in each)."""

    def __init__(self, root: Path, truth: Dict[str, Any]) -> None:
        self.root = root
        self.truth = truth
        self.torch_version = truth.get("torch")

    def path(self, name: str) -> str:
        return str(self.root / name)

    def tensors(self, name: str) -> Any:
        return self.truth["files"][name].get("tensors", [])


def _unavailable(reason: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail("torch fixtures are required in CI: %s" % reason)
    pytest.skip(reason)


def _torch_python() -> Optional[str]:
    explicit = os.environ.get("GPUWB_TORCH_PYTHON")
    if explicit:
        return explicit
    if os.path.exists(FALLBACK_TORCH_PYTHON):
        return FALLBACK_TORCH_PYTHON
    return None


@pytest.fixture(scope="session")
def torch_fixtures(tmp_path_factory: pytest.TempPathFactory) -> TorchFixtures:
    python = _torch_python()
    if python is None:
        _unavailable("no Python with torch: set GPUWB_TORCH_PYTHON")
        raise AssertionError("unreachable")
    out = tmp_path_factory.mktemp("torch_fixtures")
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    try:
        proc = subprocess.run(
            [python, str(HERE / "torch_fixtures.py"), str(out)],
            capture_output=True,
            text=True,
            timeout=600,
            env=env,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        _unavailable("cannot run %s: %s" % (python, exc))
        raise AssertionError("unreachable") from None
    if proc.returncode != 0:
        missing = (
            "No module named 'torch'" in proc.stderr or "No module named 'numpy'" in proc.stderr
        )
        if missing and not os.environ.get("GPUWB_TORCH_PYTHON"):
            _unavailable("%s has no torch/numpy (set GPUWB_TORCH_PYTHON)" % python)
        pytest.fail("torch_fixtures.py failed under %s:\n%s" % (python, proc.stderr[-4000:]))
    truth = json.loads((out / "truth.json").read_text())
    return TorchFixtures(out, truth)
