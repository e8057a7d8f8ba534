"""cells/parse: percent-format and In[ ] markers, titles, markdown, leading code, CRLF."""

from __future__ import annotations

import pytest

from gpu_workbench.cells import MarkerError, parse_cells
from gpu_workbench.convert import to_json


def _cells(text, markers=None):
    return to_json(parse_cells(text, markers))


def test_percent_markers_titles_and_ranges():
    text = (
        "# %% Load data\nimport os\nx = 1\n\n#%%\nprint(x)\n# %% [markdown] Notes\n# Some *text*\n"
    )
    cells = _cells(text)
    assert cells == [
        {
            "index": 0,
            "kind": "code",
            "title": "Load data",
            "startLine": 0,
            "codeStartLine": 1,
            "endLine": 2,
            "code": "import os\nx = 1",
        },
        {
            "index": 1,
            "kind": "code",
            "title": "",
            "startLine": 4,
            "codeStartLine": 5,
            "endLine": 5,
            "code": "print(x)",
        },
        {
            "index": 2,
            "kind": "markdown",
            "title": "Notes",
            "startLine": 6,
            "codeStartLine": 7,
            "endLine": 7,
            "code": "# Some *text*",
        },
    ]


def test_in_brackets_markers():
    text = "# In[ ]:\na = 1\n\n\n# In[12]:\nb = 2\n"
    cells = _cells(text)
    assert [(c["startLine"], c["code"], c["title"]) for c in cells] == [
        (0, "a = 1", ""),
        (4, "b = 2", ""),
    ]


def test_leading_code_becomes_a_cell():
    cells = _cells("import torch\n\n# %% second\nx = 2")
    assert [
        (c["index"], c["title"], c["startLine"], c["codeStartLine"], c["endLine"]) for c in cells
    ] == [
        (0, "", 0, 0, 0),
        (1, "second", 2, 3, 3),
    ]
    assert cells[0]["code"] == "import torch"


def test_blank_leading_text_is_not_a_cell():
    cells = _cells("\n\n   \n# %%\nx")
    assert len(cells) == 1 and cells[0]["startLine"] == 3


def test_no_markers_is_one_cell():
    cells = _cells("a = 1\nb = 2\n")
    assert len(cells) == 1
    assert cells[0]["code"] == "a = 1\nb = 2"
    assert (cells[0]["startLine"], cells[0]["codeStartLine"], cells[0]["endLine"]) == (0, 0, 1)
    assert len(_cells("")) == 1


def test_crlf_and_cr_line_breaks():
    cells = _cells("# %% a\r\nx = 1\r\ny = 2\r\n# %% b\ry = 3")
    assert [(c["title"], c["code"], c["startLine"], c["endLine"]) for c in cells] == [
        ("a", "x = 1\ny = 2", 0, 2),
        ("b", "y = 3", 3, 4),
    ]


def test_empty_cell_and_indented_marker_is_not_a_marker():
    cells = _cells("# %%\n# %% next\ndef f():\n    # %% inside\n    return 1\n")
    assert [(c["title"], c["endLine"], c["code"]) for c in cells] == [
        ("", 0, ""),
        ("next", 4, "def f():\n    # %% inside\n    return 1"),
    ]


def test_custom_markers_and_title_group():
    cells = _cells("## cell: one\na\n## cell: two\nb", [r"## cell:\s*(?P<title>.*)"])
    assert [(c["title"], c["code"]) for c in cells] == [("one", "a"), ("two", "b")]
    with pytest.raises(MarkerError):
        parse_cells("x", ["("])


def test_rpc_round_trip(ready):
    response = ready.request("cells/parse", {"text": "# %% [md]\n# hi\n# %%\n1"})
    cells = response["result"]["cells"]
    assert [c["kind"] for c in cells] == ["markdown", "code"]
