"""Splits a Python file into `# %%` cells (the percent format, plus `# In[ ]:` markers).

A marker line starts a cell; the text after the marker is the cell's title, and a title
starting with ``[markdown]`` (or ``[md]``) makes it a markdown cell. Text before the first
marker is a cell of its own when it has any non-blank line; a file without markers is one
cell. Lines are split like VS Code does (``\\r\\n``, ``\\r`` or ``\\n``) and are 0-based.
"""

from __future__ import annotations

import re
from typing import List, Match, Optional, Pattern, Sequence, Tuple

from .protocol import Cell

# Markers must start at column 0: an indented `# %%` inside a block is a comment.
DEFAULT_MARKERS: List[str] = [
    r"#\s*%%",
    r"#\s*In\[[ \d]*\]:?",
]

_MARKDOWN_TAG = re.compile(r"^\[(markdown|md)\]\s*", re.IGNORECASE)


class MarkerError(ValueError):
    """A marker regex does not compile."""


def compile_markers(markers: Optional[Sequence[str]]) -> List[Pattern[str]]:
    """Compile marker regexes (matched at the start of a line); None means the defaults."""
    sources = DEFAULT_MARKERS if markers is None else list(markers)
    compiled: List[Pattern[str]] = []
    for i, source in enumerate(sources):
        try:
            compiled.append(re.compile(source))
        except re.error as exc:
            raise MarkerError(
                "markers[%d] is not a valid regular expression: %s" % (i, exc)
            ) from None
    return compiled


def split_lines(text: str) -> List[str]:
    """Split on \\r\\n, \\r and \\n (not on the other characters str.splitlines() knows)."""
    if "\r" in text:  # str methods are several times faster than re.split
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    return text.split("\n")


def _match_marker(line: str, patterns: Sequence[Pattern[str]]) -> Optional[str]:
    """Return the text after the marker (the raw title) when `line` is a marker line."""
    for pattern in patterns:
        match = pattern.match(line)
        if match is not None:
            return _title(line, match)
    return None


def _title(line: str, match: Match[str]) -> str:
    title = match.groupdict().get("title")
    return title if title is not None else line[match.end() :]


# Constructs whose meaning changes when patterns are joined into one alternation:
# numbered or named backreferences and global inline flags such as `(?i)`.
_NOT_JOINABLE = re.compile(r"\\[1-9]|\(\?P=|\(\?[aiLmsux]+\)")


def _joined(patterns: Sequence[Pattern[str]]) -> Optional[Pattern[str]]:
    """One pattern equivalent to trying `patterns` in order, or None when not safe.

    Scanning a 10k-line file with one `match` per line instead of one per pattern
    halves the time of the scan, which dominates parsing.
    """
    if len(patterns) < 2:
        return patterns[0] if patterns else None
    flags = {p.flags for p in patterns}
    if len(flags) != 1 or any(_NOT_JOINABLE.search(p.pattern) for p in patterns):
        return None
    try:
        return re.compile("|".join("(?:%s)" % p.pattern for p in patterns), flags.pop())
    except re.error:  # e.g. the same group name in two patterns
        return None


def _marker_lines(lines: Sequence[str], patterns: Sequence[Pattern[str]]) -> List[Tuple[int, str]]:
    """(line number, raw title) of every marker line."""
    found: List[Tuple[int, str]] = []
    joined = _joined(patterns)
    if joined is not None:
        match_line = joined.match
        for number, line in enumerate(lines):
            match = match_line(line)
            if match is not None:
                found.append((number, _title(line, match)))
        return found
    for number, line in enumerate(lines):
        title = _match_marker(line, patterns)
        if title is not None:
            found.append((number, title))
    return found


def _trim_end(lines: Sequence[str], first: int, last: int) -> int:
    """Last index in [first, last] that is not blank, or first - 1 when all are blank."""
    while last >= first and not lines[last].strip():
        last -= 1
    return last


def parse_cells(text: str, markers: Optional[Sequence[str]] = None) -> List[Cell]:
    """Split `text` into cells; raises MarkerError for a bad marker regex."""
    patterns = compile_markers(markers)
    lines = split_lines(text)
    found = _marker_lines(lines, patterns)
    starts = [number for number, _ in found]
    titles = [title for _, title in found]

    cells: List[Cell] = []

    def add(kind: str, title: str, start: int, body_start: int, body_end: int) -> None:
        last = _trim_end(lines, body_start, body_end)
        code = "\n".join(lines[body_start : last + 1]) if last >= body_start else ""
        cells.append(
            Cell(
                index=len(cells),
                kind=kind,
                title=title,
                startLine=start,
                codeStartLine=body_start,
                endLine=max(last, start),
                code=code,
            )
        )

    if not starts:
        add("code", "", 0, 0, len(lines) - 1)
        return cells
    if any(line.strip() for line in lines[: starts[0]]):
        add("code", "", 0, 0, starts[0] - 1)
    for i, start in enumerate(starts):
        end = starts[i + 1] - 1 if i + 1 < len(starts) else len(lines) - 1
        title = titles[i].strip()
        kind = "code"
        tag = _MARKDOWN_TAG.match(title)
        if tag is not None:
            kind = "markdown"
            title = title[tag.end() :].strip()
        add(kind, title, start, start + 1, end)
    return cells
