"""LSP features for `# %%` cells: code lenses, folding ranges and document symbols.

Everything is derived from `cells.parse_cells`, cached on the `Document` (so per uri and
version) and per marker set. Only cells that start with a marker line get features: the
leading code before the first marker and a file without markers get none.

Positions are LSP positions: 0-based lines, characters in UTF-16 code units.
"""

from __future__ import annotations

from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from .cells import parse_cells, split_lines
from .documents import Document
from .protocol import Cell

RUN_CELL = "gpuWorkbench.runCell"
RUN_ABOVE = "gpuWorkbench.runAbove"
RUN_BELOW = "gpuWorkbench.runBelow"
RUN_ALL = "gpuWorkbench.runAll"

FOLDING_REGION = "region"
SYMBOL_NAMESPACE = 3  # SymbolKind.Namespace: code cells
SYMBOL_STRING = 15  # SymbolKind.String: markdown cells


class ParsedCells:
    """Cells of one document text plus the lines they index, and the features built from them.

    Feature results are memoized here (so per uri, version and markers) and shared between
    requests: callers must not mutate them.
    """

    __slots__ = ("cells", "lines", "marked", "results")

    def __init__(self, cells: List[Cell], lines: List[str]) -> None:
        self.cells = cells
        self.lines = lines
        # Cells that start with a marker line (not the leading code, not a marker-less file).
        self.marked = [c for c in cells if c.codeStartLine == c.startLine + 1]
        self.results: Dict[Any, List[Dict[str, Any]]] = {}


def parsed_cells(doc: Document, markers: Optional[Sequence[str]]) -> ParsedCells:
    """Parse `doc` with `markers` (None: the defaults), reusing the result for this version."""
    key: Tuple[Any, ...] = ("cells", None if markers is None else tuple(markers))
    parsed = doc.cache.get(key)
    if parsed is None:
        # Validated markers only reach here, so parse_cells does not raise MarkerError.
        parsed = ParsedCells(parse_cells(doc.text, markers), split_lines(doc.text))
        doc.cache[key] = parsed
    return parsed


def _utf16_length(text: str) -> int:
    if text.isascii():
        return len(text)
    return len(text.encode("utf-16-le")) // 2


def _position(line: int, character: int) -> Dict[str, int]:
    return {"line": line, "character": character}


def _line_range(parsed: ParsedCells, start: int, end: int) -> Dict[str, Any]:
    """From the start of line `start` to the end of line `end`."""
    return {
        "start": _position(start, 0),
        "end": _position(end, _utf16_length(parsed.lines[end])),
    }


def _lens(
    line_range: Dict[str, Any], title: str, command: str, arguments: List[Any]
) -> Dict[str, Any]:
    return {
        "range": line_range,
        "command": {"title": title, "command": command, "arguments": arguments},
    }


def _memo(
    parsed: ParsedCells, key: Any, build: Callable[[], List[Dict[str, Any]]]
) -> List[Dict[str, Any]]:
    result = parsed.results.get(key)
    if result is None:
        result = parsed.results[key] = build()
    return result


def code_lenses(parsed: ParsedCells, uri: str) -> List[Dict[str, Any]]:
    """Run Cell / Run Above / Run Below on every marked code cell, Run All on the first one.

    Run Above appears only when a code cell (the leading code included) lies above.
    """
    return _memo(parsed, ("codeLens", uri), lambda: _code_lenses(parsed, uri))


def _code_lenses(parsed: ParsedCells, uri: str) -> List[Dict[str, Any]]:
    lenses: List[Dict[str, Any]] = []
    code_above = False
    first = True
    for cell in parsed.cells:
        if cell.kind != "code":
            continue
        if cell.codeStartLine != cell.startLine + 1:  # leading code: no marker to hang lenses on
            code_above = True
            continue
        line = cell.startLine
        where = _line_range(parsed, line, line)
        lenses.append(_lens(where, "Run Cell", RUN_CELL, [uri, line]))
        if code_above:
            lenses.append(_lens(where, "Run Above", RUN_ABOVE, [uri, line]))
        lenses.append(_lens(where, "Run Below", RUN_BELOW, [uri, line]))
        if first:
            lenses.append(_lens(where, "Run All", RUN_ALL, [uri]))
            first = False
        code_above = True
    return lenses


def folding_ranges(parsed: ParsedCells) -> List[Dict[str, Any]]:
    """One region per marked cell, marker line to last non-blank line, when that is later."""
    return _memo(parsed, "foldingRange", lambda: _folding_ranges(parsed))


def _folding_ranges(parsed: ParsedCells) -> List[Dict[str, Any]]:
    return [
        {"startLine": cell.startLine, "endLine": cell.endLine, "kind": FOLDING_REGION}
        for cell in parsed.marked
        if cell.endLine > cell.startLine
    ]


def document_symbols(parsed: ParsedCells) -> List[Dict[str, Any]]:
    """One DocumentSymbol per marked cell, named by its title or "Cell N" (N counts all cells)."""
    return _memo(parsed, "documentSymbol", lambda: _document_symbols(parsed))


def _document_symbols(parsed: ParsedCells) -> List[Dict[str, Any]]:
    symbols: List[Dict[str, Any]] = []
    for cell in parsed.marked:
        markdown = cell.kind == "markdown"
        symbol: Dict[str, Any] = {
            "name": cell.title or "Cell %d" % (cell.index + 1),
            "kind": SYMBOL_STRING if markdown else SYMBOL_NAMESPACE,
            "range": _line_range(parsed, cell.startLine, cell.endLine),
            "selectionRange": _line_range(parsed, cell.startLine, cell.startLine),
        }
        if markdown:
            symbol["detail"] = "markdown"
        symbols.append(symbol)
    return symbols
