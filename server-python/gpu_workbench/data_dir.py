"""Resolves and creates the backend's private data directory."""

from __future__ import annotations

import logging
import os
from typing import Mapping, Optional

log = logging.getLogger(__name__)

DATA_DIR_ENV = "GPUWB_DATA_DIR"
APP_DIR_NAME = "gpu-workbench"


def resolve_data_directory(option: Optional[str], environ: Mapping[str, str]) -> str:
    """Pick the data directory: explicit option, then $GPUWB_DATA_DIR, then XDG, then ~/.local/share.

    The result is an absolute path; it is not created here.
    """
    if option:
        return os.path.abspath(os.path.expanduser(option))
    from_env = environ.get(DATA_DIR_ENV)
    if from_env:
        return os.path.abspath(os.path.expanduser(from_env))
    xdg = environ.get("XDG_DATA_HOME")
    # The XDG spec says relative values must be ignored.
    if xdg and os.path.isabs(xdg):
        return os.path.join(xdg, APP_DIR_NAME)
    return os.path.join(os.path.expanduser("~"), ".local", "share", APP_DIR_NAME)


def ensure_data_directory(path: str) -> bool:
    """Create `path` (mode 0o700, private to the user) if missing; False if that failed.

    Failure is logged rather than raised so the server still starts and can report it.
    """
    try:
        os.makedirs(path, mode=0o700, exist_ok=True)
        return True
    except OSError as exc:
        log.error("cannot create data directory %s: %s", path, exc)
        return False
