"""A fake nvidia-smi that answers from the recorded outputs in data/ (see data/README.md).

`answer(argv, machine)` is what a machine's nvidia-smi prints for argv: (exit status,
stdout, stderr). It honours the arguments the way the real tool does: --query-gpu prints
only the fields asked for, in the order asked, and a field that driver does not know fails
the whole query with `Field "x" is not a valid field to query.`. `FixtureRunner` feeds it
to SmiSource in-process; `install_fake_smi` writes an executable `nvidia-smi` script that
calls it, so the real spawn path runs end to end.
"""

from __future__ import annotations

import csv
import json
import stat
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from gpu_workbench.gpu.smi import Completed

DATA = Path(__file__).resolve().parent / "data"
INDEX = json.loads((DATA / "fixtures.json").read_text(encoding="utf-8"))
MACHINES: Dict[str, Dict[str, Any]] = INDEX["machines"]
COLUMNS: List[str] = INDEX["columns"]


def read(name: str) -> str:
    return (DATA / name).read_text(encoding="utf-8")


def columns(machine: Dict[str, Any]) -> List[str]:
    """The fields of a machine's recorded query, in file order."""
    return [c.replace("{throttle}", machine["throttle"]) for c in COLUMNS]


def answer(argv: List[str], machine: Dict[str, Any]) -> Tuple[int, str, str]:
    """(rc, stdout, stderr) of `nvidia-smi <argv>` on a recorded machine."""
    if "fail" in machine:
        return machine["rc"], read(machine["fail"]), ""
    if not argv:
        if machine.get("smi") is None:
            return 255, "", "Unknown Error\n"
        return machine.get("smi_rc", 0), read(machine["smi"]), ""
    option, _, value = argv[0].partition("=")
    if option == "--query-gpu":
        return _query(value.split(","), argv[1:], machine)
    if option == "--query-compute-apps":
        want = "gpu_uuid,pid,process_name,used_memory"
        if value != want:
            return 2, 'Field "%s" is not a valid field to query.\n\n' % value, ""
        return 0, read(machine["apps"]), ""
    if option == "--query-remapped-rows":
        if machine.get("remap") is None:
            return (
                2,
                "Invalid combination of input arguments. Please run 'nvidia-smi -h' for help.\n",
                "",
            )
        return 0, read(machine["remap"]), ""
    return 2, "Invalid combination of input arguments. Please run 'nvidia-smi -h' for help.\n", ""


def _query(fields: List[str], rest: List[str], machine: Dict[str, Any]) -> Tuple[int, str, str]:
    if rest != ["--format=csv,noheader,nounits"]:
        return 2, "Invalid combination of input arguments.\n", ""
    recorded = columns(machine)
    picks: List[int] = []
    for field in fields:
        prefix, _, rest_name = field.partition(".")
        if field in recorded and (
            not field.endswith("reasons.active") or prefix in machine["knows"]
        ):
            picks.append(recorded.index(field))
        elif prefix in machine["knows"] and machine["throttle"] + "." + rest_name in recorded:
            picks.append(recorded.index(machine["throttle"] + "." + rest_name))
        else:
            return 2, 'Field "%s" is not a valid field to query.\n\n' % field, ""
    out = []
    for line in read(machine["query"]).splitlines():
        if not line.strip():
            continue
        if line.startswith("Unable to determine"):
            out.append(line)
            continue
        cells = next(csv.reader([line], skipinitialspace=True))
        out.append(", ".join(cells[i] for i in picks))
    return machine["rc"], "\n".join(out) + "\n", ""


class FixtureRunner:
    """An in-process SmiSource runner answering from a recorded machine; records argv."""

    def __init__(self, machine: str, overrides: Optional[Dict[str, Any]] = None) -> None:
        self.machine = dict(MACHINES[machine])
        self.machine.update(overrides or {})
        self.calls: List[List[str]] = []

    def __call__(self, argv: List[str], timeout: float) -> Completed:
        self.calls.append(list(argv[1:]))
        rc, out, err = answer(list(argv[1:]), self.machine)
        return Completed(rc, out, err)

    def count(self, option: str) -> int:
        return sum(1 for call in self.calls if call and call[0].startswith(option))


FAKE_SCRIPT = """#!{python}
import json, sys, time
sys.path.insert(0, {tests!r})
sys.path.insert(0, {server!r})
config = json.loads({config!r})
with open(config["log"], "a") as log:
    log.write(json.dumps(sys.argv[1:]) + "\\n")
if config.get("hang"):
    time.sleep(config["hang"])
from smi_fakes import answer
rc, out, err = answer(sys.argv[1:], config["machine"])
sys.stdout.write(out)
sys.stderr.write(err)
sys.exit(rc)
"""


def install_fake_smi(
    folder: Path, machine: str, hang: float = 0.0, overrides: Optional[Dict[str, Any]] = None
) -> Path:
    """Write an executable `nvidia-smi` into folder that answers as `machine`; returns the
    log file where it appends each run's argv (one JSON list per line)."""
    folder.mkdir(parents=True, exist_ok=True)
    log = folder / "calls.log"
    entry = dict(MACHINES[machine])
    entry.update(overrides or {})
    config = json.dumps({"machine": entry, "log": str(log), "hang": hang})
    script = folder / "nvidia-smi"
    script.write_text(
        FAKE_SCRIPT.format(
            python=sys.executable,
            tests=str(Path(__file__).resolve().parent),
            server=str(Path(__file__).resolve().parents[2]),
            config=config,
        ),
        encoding="utf-8",
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return log


def logged_calls(log: Path) -> List[List[str]]:
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines() if line]
