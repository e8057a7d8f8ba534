"""`.env` parsing."""

from __future__ import annotations

from gpu_workbench.kernels.envfile import load_env_file, parse_env


def test_basic_assignments_comments_and_export():
    values, warnings = parse_env(
        "# comment\n\nA=1\nexport B = two words \n  C=3 # trailing comment\nD=x#not-a-comment\nE=\n"
    )
    assert values == {"A": "1", "B": "two words", "C": "3", "D": "x#not-a-comment", "E": ""}
    assert warnings == []


def test_quotes_and_escapes():
    values, _ = parse_env(
        "S='single ${HOME} \\n raw'\n"
        'D="double\\tq \\"x\\" \\\\ \\$HOME"\n'
        'H="with # hash" # comment\n'
        'M="line1\nline2"\n'
        "AFTER=ok\n"
    )
    assert values["S"] == "single ${HOME} \\n raw"
    assert values["D"] == 'double\tq "x" \\ $HOME'
    assert values["H"] == "with # hash"
    assert values["M"] == "line1\nline2"
    assert values["AFTER"] == "ok"


def test_expansion_from_base_and_earlier_keys():
    values, _ = parse_env(
        'ROOT=/data\nPATH_X=${ROOT}/x\nFULL="${HOME_DIR}:${PATH_X}"\nMISSING=${NOPE}!\nDEF=${NOPE:-fallback}\nLATER=${LAST}\nLAST=1\n',
        {"HOME_DIR": "/home/u"},
    )
    assert values["PATH_X"] == "/data/x"
    assert values["FULL"] == "/home/u:/data/x"
    assert values["MISSING"] == "!"
    assert values["DEF"] == "fallback"
    assert values["LATER"] == ""
    assert "HOME_DIR" not in values


def test_escaped_dollar_is_not_expanded():
    values, _ = parse_env('P="\\${ROOT}"\n', {"ROOT": "/r"})
    assert values["P"] == "${ROOT}"


def test_crlf_bom_and_bad_lines_warn():
    values, warnings = parse_env('\ufeffA=1\r\nnot an assignment\r\n1BAD=x\r\nQ="open\r\n')
    assert values == {"A": "1"}
    assert len(warnings) == 3
    assert warnings[0].startswith("line 2:")


def test_later_definition_wins(tmp_path):
    path = tmp_path / ".env"
    path.write_text("A=1\nA=2\n", encoding="utf-8")
    values, _ = load_env_file(str(path))
    assert values == {"A": "2"}
