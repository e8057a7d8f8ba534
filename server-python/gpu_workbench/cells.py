"""Splits a Python file into `# %%` cells (the percent format, plus `# In[ ]:` markers).

A marker line starts a cell; the text after the marker is the cell's title, and a title
starting with ``[markdown]`` (or ``[md]``) makes it a markdown cell. Text before the first
marker is a cell of its own when it has any non-blank line; a file without markers is one
cell. Lines are split like VS Code does (``\\r\\n``, ``\\r`` or ``\\n``) and are 0-based.
"""

from __future__ import annotations

import re
from typing import List, Optional, Pattern, Sequence

from .protocol import Cell

# Markers must start at column 0: an indented `# %%` inside a block is a comment.
DEFAULT_MARKERS: List[str] = [
    r"#\s*%%",
    r"#\s*In\[[ \d]*\]:?",
]

_LINE_BREAK = re.compile(r"\r\n|\r|\n")
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
    return _LINE_BREAK.split(text)


def _match_marker(line: str, patterns: Sequence[Pattern[str]]) -> Optional[str]:
    """Return the text after the marker (the raw title) when `line` is a marker line."""
    for pattern in patterns:
        match = pattern.match(line)
        if match is None:
            continue
        groups = match.groupdict()
        if groups.get("title") is not None:
            return groups["title"]
        return line[match.end() :]
    return None


def _trim_end(lines: Sequence[str], first: int, last: int) -> int:
    """Last index in [first, last] that is not blank, or first - 1 when all are blank."""
    while last >= first and not lines[last].strip():
        last -= 1
    return last


def parse_cells(text: str, markers: Optional[Sequence[str]] = None) -> List[Cell]:
    """Split `text` into cells; raises MarkerError for a bad marker regex."""
    patterns = compile_markers(markers)
    lines = split_lines(text)
    starts: List[int] = []
    titles: List[str] = []
    for number, line in enumerate(lines):
        title = _match_marker(line, patterns)
        if title is not None:
            starts.append(number)
            titles.append(title)

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
