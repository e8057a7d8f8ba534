"""Parses `.env` files the way most tools agree on.

- ``KEY=VALUE`` per line; blank lines and lines starting with ``#`` are ignored; an optional
  ``export`` prefix is allowed; spaces around ``=`` and the key are ignored.
- Unquoted values end at `` #`` (a comment after whitespace) and are stripped.
- ``'single quoted'`` values are literal. ``"double quoted"`` values understand ``\\n``,
  ``\\t``, ``\\r``, ``\\"``, ``\\\\`` and ``\\$``. Quoted values may span lines.
- ``${VAR}`` and ``${VAR:-default}`` are expanded (unquoted and double-quoted values) from the
  environment so far: the base environment plus the keys defined above in the file. An
  unknown variable expands to the empty string. Bare ``$VAR`` is left as it is.
- ``KEY`` alone (no ``=``) is skipped with a warning, as is any line that is not an assignment.
"""

from __future__ import annotations

import re
from typing import Dict, List, Mapping, Optional, Tuple

_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*$")
_EXPORT = re.compile(r"^export\s+")
_EXPANSION = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "\\": "\\", "$": "$"}
# Marks an escaped `$` so expansion leaves it alone; restored afterwards.
_DOLLAR_GUARD = "\x00gpuwb-dollar\x00"


def _expand(value: str, env: Mapping[str, str]) -> str:
    def replace(match: "re.Match[str]") -> str:
        name, default = match.group(1), match.group(2)
        found = env.get(name, "")
        if not found and default is not None:
            return default
        return found

    return _EXPANSION.sub(replace, value)


def _unescape_double(raw: str) -> str:
    out: List[str] = []
    i = 0
    while i < len(raw):
        char = raw[i]
        if char == "\\" and i + 1 < len(raw) and raw[i + 1] in _ESCAPES:
            nxt = raw[i + 1]
            out.append(_DOLLAR_GUARD if nxt == "$" else _ESCAPES[nxt])
            i += 2
            continue
        out.append(char)
        i += 1
    return "".join(out)


def _find_closing(text: str, start: int, quote: str) -> int:
    """Index of the closing quote at or after `start`, honouring backslashes in "…"; -1 if none."""
    i = start
    while i < len(text):
        char = text[i]
        if quote == '"' and char == "\\":
            i += 2
            continue
        if char == quote:
            return i
        i += 1
    return -1


def parse_env(
    text: str, base: Optional[Mapping[str, str]] = None
) -> Tuple[Dict[str, str], List[str]]:
    """Parse `.env` text; return (values defined in the file, warnings with line numbers).

    `base` is the environment that ``${VAR}`` sees besides the file's own earlier keys.
    """
    env: Dict[str, str] = dict(base or {})
    values: Dict[str, str] = {}
    warnings: List[str] = []
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    if text.startswith("\ufeff"):
        text = text[1:]
    lines = text.split("\n")
    i = 0
    while i < len(lines):
        number = i + 1
        line = lines[i].strip()
        i += 1
        if not line or line.startswith("#"):
            continue
        line = _EXPORT.sub("", line, count=1)
        key, sep, rest = line.partition("=")
        key = key.strip()
        if not sep or not _KEY.match(key):
            warnings.append("line %d: not a KEY=VALUE assignment; skipped" % number)
            continue
        rest = rest.lstrip()
        if rest[:1] in ("'", '"'):
            quote = rest[0]
            body = rest[1:]
            close = _find_closing(body, 0, quote)
            # A quoted value may continue on the following lines.
            while close < 0 and i < len(lines):
                body += "\n" + lines[i]
                i += 1
                close = _find_closing(body, 0, quote)
            if close < 0:
                warnings.append("line %d: unterminated %s quote; skipped" % (number, quote))
                continue
            raw = body[:close]
            trailing = body[close + 1 :].strip()
            if trailing and not trailing.startswith("#"):
                warnings.append("line %d: text after the closing quote ignored" % number)
            if quote == "'":
                value = raw
            else:
                value = _expand(_unescape_double(raw), env).replace(_DOLLAR_GUARD, "$")
        else:
            comment = re.search(r"\s#", rest)
            if comment is not None:
                rest = rest[: comment.start()]
            value = _expand(rest.strip(), env)
        values[key] = value
        env[key] = value
    return values, warnings


def load_env_file(
    path: str, base: Optional[Mapping[str, str]] = None
) -> Tuple[Dict[str, str], List[str]]:
    """Read and parse a `.env` file (UTF-8); OSError propagates to the caller."""
    with open(path, encoding="utf-8", errors="replace") as f:
        return parse_env(f.read(), base)
