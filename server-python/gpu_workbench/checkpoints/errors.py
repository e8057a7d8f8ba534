"""Errors of the checkpoint readers."""

from __future__ import annotations

from typing import Optional

from ..errors import ApplicationError


class CheckpointFormatError(ApplicationError):
    """The file is not a checkpoint we can read, or it is corrupt, truncated or over a limit.

    Readers raise this for every malformed input; anything else escaping a reader is a bug
    (the fuzz tests check that).
    """

    def __init__(
        self, message: str, hint: Optional[str] = None, detail: Optional[str] = None
    ) -> None:
        super().__init__("CheckpointFormat", message, detail=detail, hint=hint)


class Cancelled(Exception):
    """Raised through a reader when its `cancel` check fires."""
