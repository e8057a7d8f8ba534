"""This machine as a provider: always there, never created or stopped, and free.

One Vm, id "local": the host name, running, price 0.0 (the only provider whose cost is
truly 0), GPUs from `nvidia-smi --query-gpu=name --format=csv,noheader` when it exists
(short timeout; absent or failing means 0 GPUs) and launched_at = boot time.

Settings (tests): {"nvidiaSmiPath": path} overrides the nvidia-smi lookup on PATH;
{"procDir": path} overrides /proc. Settings naming an executable end in "Path" so
that the service can drop them in an untrusted workspace (they would run a program).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from typing import Dict, List, Optional, Tuple

from .base import Check, Provider, Vm, no_check

NVIDIA_SMI_TIMEOUT = 5.0


def summarize_gpus(names: List[str]) -> Tuple[Optional[str], int]:
    """(model, count) from nvidia-smi name lines: one model, or distinct ones joined."""
    names = [n.strip() for n in names if n.strip()]
    if not names:
        return None, 0
    distinct: List[str] = []
    for n in names:
        if n not in distinct:
            distinct.append(n)
    return " + ".join(distinct), len(names)


class LocalProvider(Provider):
    name = "local"
    display_name = "This machine"
    capabilities: List[str] = []
    credential_fields: List[str] = []
    notes = ["The machine the backend runs on; it cannot be created, started or stopped here."]

    def list(self, credentials: Dict[str, str], check: Check = no_check) -> List[Vm]:
        check()
        model, count, detail = self._gpus()
        return [
            Vm(
                self.name,
                "local",
                socket.gethostname() or "localhost",
                "running",
                gpu_model=model,
                gpu_count=count,
                price_per_hour=0.0,
                launched_at=self._boot_time(),
                capabilities=[],
                detail=detail,
            )
        ]

    # ---- helpers ----

    def _gpus(self) -> Tuple[Optional[str], int, Optional[str]]:
        exe = self.settings.get("nvidiaSmiPath") or shutil.which("nvidia-smi")
        if not exe:
            return None, 0, None
        try:
            proc = subprocess.run(
                [str(exe), "--query-gpu=name", "--format=csv,noheader"],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                timeout=NVIDIA_SMI_TIMEOUT,
                check=False,
            )
        except subprocess.TimeoutExpired:
            return None, 0, "nvidia-smi timed out"
        except OSError as e:
            return None, 0, "nvidia-smi failed: %s" % (e.strerror or e)
        if proc.returncode != 0:
            text = (
                proc.stderr.decode("utf-8", "replace").strip()
                or proc.stdout.decode("utf-8", "replace").strip()
            )
            line = text.splitlines()[-1] if text else "exit %d" % proc.returncode
            return None, 0, "nvidia-smi failed: %s" % line[:200]
        model, count = summarize_gpus(proc.stdout.decode("utf-8", "replace").splitlines())
        return model, count, None

    def _boot_time(self) -> Optional[float]:
        proc_dir = str(self.settings.get("procDir") or "/proc")
        try:
            with open(os.path.join(proc_dir, "stat"), encoding="ascii", errors="replace") as f:
                for line in f:
                    if line.startswith("btime "):
                        return float(line.split()[1])
        except (OSError, ValueError, IndexError):
            pass
        try:
            with open(os.path.join(proc_dir, "uptime"), encoding="ascii") as f:
                return time.time() - float(f.read().split()[0])
        except (OSError, ValueError, IndexError):
            pass
        if sys.platform == "darwin":
            return _sysctl_boottime()
        return None


def _sysctl_boottime() -> Optional[float]:
    """macOS: `sysctl -n kern.boottime` prints `{ sec = 1700000000, usec = 0 } ...`."""
    try:
        out = subprocess.run(
            ["sysctl", "-n", "kern.boottime"],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            timeout=2,
            check=False,
        ).stdout.decode("ascii", "replace")
        sec = out.split("sec =", 1)[1].split(",", 1)[0]
        return float(sec.strip())
    except (OSError, subprocess.SubprocessError, IndexError, ValueError):
        return None
