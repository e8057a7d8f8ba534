"""Logging setup: everything goes to stderr, because stdout carries the protocol."""

from __future__ import annotations

import logging
import sys
from typing import Optional

LOG_LEVEL_ENV = "GPUWB_LOG_LEVEL"
TRACE = 5
LEVELS = {
    "trace": TRACE,
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}
_logger = logging.getLogger("gpu_workbench")


def parse_level(name: object) -> Optional[int]:
    """Map a level name (case-insensitive) to a logging level, or None if unknown."""
    if not isinstance(name, str):
        return None
    return LEVELS.get(name.strip().lower())


def configure(level_name: Optional[str]) -> None:
    """Install the stderr handler on the package logger; unknown names fall back to INFO."""
    logging.addLevelName(TRACE, "TRACE")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    _logger.handlers[:] = [handler]
    _logger.propagate = False
    level = parse_level(level_name) if level_name else logging.INFO
    _logger.setLevel(level if level is not None else logging.INFO)
    if level_name and level is None:
        _logger.warning("unknown %s %r; using info", LOG_LEVEL_ENV, level_name)


def set_level(level: int) -> None:
    """Change the package log level at runtime (e.g. from initializationOptions)."""
    _logger.setLevel(level)
