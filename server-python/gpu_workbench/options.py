"""Lenient parsing of LSP initializationOptions: bad values fall back to defaults with a warning."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Tuple

from .log import LEVELS, parse_level

# A JavaScript named group `(?<name>` (not the lookbehinds `(?<=` / `(?<!`); Python < 3.12
# only knows `(?P<name>`. Settings are written for the extension, so accept the JS spelling.
_JS_NAMED_GROUP = re.compile(r"(?<!\\)((?:\\\\)*)\(\?<(?![=!])")


@dataclass
class InitOptions:
    """Validated initializationOptions."""

    dataDirectory: Optional[str] = None
    trusted: bool = True
    logLevel: Optional[int] = None  # a logging level; None keeps the startup level
    cellMarkers: Optional[List[str]] = None  # regexes that start a cell; None: the defaults
    vms: Optional[Dict[str, Any]] = None  # VM provider settings, passed through to vms.service
    gpu: Optional[Dict[str, Any]] = None  # GPU health settings, validated by gpu.sampler
    remote: Optional[Dict[str, Any]] = None  # remote machines: {"knownHostsFile": path}


def python_regex(source: str) -> str:
    """Rewrite JavaScript-only regex syntax that Python's `re` spells differently."""
    return _JS_NAMED_GROUP.sub(r"\1(?P<", source)


def parse_markers(raw: Any, where: str) -> Tuple[Optional[List[str]], Optional[str]]:
    """Validate a list of marker regexes: (markers, None), or (None, warning) for the defaults.

    Each must be a string that compiles with Python's `re` (after `python_regex`); one bad
    entry rejects the whole list, since a partial list would split cells unexpectedly.
    """
    if not isinstance(raw, list) or not raw:
        return None, "%s must be a non-empty list of strings; using the default markers" % where
    markers: List[str] = []
    for i, item in enumerate(raw):
        if not isinstance(item, str) or not item:
            return None, "%s[%d] must be a non-empty string; using the default markers" % (
                where,
                i,
            )
        source = python_regex(item)
        try:
            re.compile(source)
        except re.error as exc:
            return (
                None,
                "%s[%d] (%r) is not a valid regular expression (%s); using the defaults"
                % (
                    where,
                    i,
                    item,
                    exc,
                ),
            )
        markers.append(source)
    return markers, None


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
    if "cellMarkers" in raw and raw["cellMarkers"] is not None:
        markers, warning = parse_markers(raw["cellMarkers"], "initializationOptions.cellMarkers")
        options.cellMarkers = markers
        if warning is not None:
            warnings.append(warning)
    if "vms" in raw and raw["vms"] is not None:
        if isinstance(raw["vms"], dict):
            options.vms = dict(raw["vms"])
        else:
            warnings.append("initializationOptions.vms must be an object; using defaults")
    if "gpu" in raw and raw["gpu"] is not None:
        if isinstance(raw["gpu"], dict):
            options.gpu = dict(raw["gpu"])
        else:
            warnings.append("initializationOptions.gpu must be an object; using defaults")
    if "remote" in raw and raw["remote"] is not None:
        if isinstance(raw["remote"], dict):
            options.remote = dict(raw["remote"])
        else:
            warnings.append("initializationOptions.remote must be an object; using defaults")
    return options, warnings
