"""Helpers shared by the HTTP provider tests: log capture and a recording sleep."""

from __future__ import annotations

import logging
from contextlib import contextmanager
from typing import Iterator, List


@contextmanager
def captured_logs() -> Iterator[List[str]]:
    """Every gpu_workbench log record at DEBUG, formatted with its arguments."""
    lines: List[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(self.format(record))

    logger = logging.getLogger("gpu_workbench")
    handler = Collect(logging.DEBUG)
    old = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield lines
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old)


class Sleeps:
    """A stand-in for time.sleep that records the waits instead of waiting."""

    def __init__(self) -> None:
        self.calls: List[float] = []

    def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)
