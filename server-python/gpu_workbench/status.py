"""Builds the record returned by ``workbench/status``."""

from __future__ import annotations

import os
import platform
import sys
import time
from typing import List

from . import __version__
from .protocol import PythonInfo, StatusResult

SERVER_NAME = "gpu-workbench"


def python_info() -> PythonInfo:
    """Describe the interpreter running the backend."""
    return PythonInfo(
        executable=sys.executable or "",
        version=platform.python_version(),
        implementation=platform.python_implementation(),
    )


def build_status(
    started_monotonic: float, data_directory: str, trusted: bool, capabilities: List[str]
) -> StatusResult:
    """Assemble the status record; `started_monotonic` is time.monotonic() at startup."""
    return StatusResult(
        name=SERVER_NAME,
        version=__version__,
        pid=os.getpid(),
        uptimeSeconds=max(0.0, time.monotonic() - started_monotonic),
        python=python_info(),
        dataDirectory=data_directory,
        trusted=trusted,
        capabilities=list(capabilities),
    )
