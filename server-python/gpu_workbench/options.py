"""Lenient parsing of LSP initializationOptions: bad values fall back to defaults with a warning."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, List, Optional, Tuple

from .log import LEVELS, parse_level


@dataclass
class InitOptions:
    """Validated initializationOptions."""

    dataDirectory: Optional[str] = None
    trusted: bool = True
    logLevel: Optional[int] = None  # a logging level; None keeps the startup level


def parse_init_options(raw: Any) -> Tuple[InitOptions, List[str]]:
    """Return the options plus warnings describing every value that was ignored.

    A client bug in options should degrade behaviour, not make initialize fail.
    """
    options = InitOptions()
    warnings: List[str] = []
    if raw is None:
        return options, warnings
    if not isinstance(raw, dict):
        warnings.append("initializationOptions must be an object; using defaults")
        return options, warnings
    if "dataDirectory" in raw and raw["dataDirectory"] is not None:
        value = raw["dataDirectory"]
        if isinstance(value, str) and value.strip():
            options.dataDirectory = value
        else:
            warnings.append(
                "initializationOptions.dataDirectory must be a non-empty string; using the default"
            )
    if "trusted" in raw and raw["trusted"] is not None:
        value = raw["trusted"]
        if isinstance(value, bool):
            options.trusted = value
        else:
            warnings.append("initializationOptions.trusted must be a boolean; using true")
    if "logLevel" in raw and raw["logLevel"] is not None:
        level = parse_level(raw["logLevel"])
        if level is not None:
            options.logLevel = level
        else:
            warnings.append(
                "initializationOptions.logLevel must be one of %s; keeping the current level"
                % ", ".join(LEVELS)
            )
    return options, warnings
