"""GPU telemetry and health: NVML through ctypes (nvidia-smi as the fallback), health
verdicts, a long-lived sampler and the checks command. Standard library only."""

from __future__ import annotations
