"""The malicious corpus against the checkpoint readers: everything flagged, nothing run.

For every file of malicious_corpus: (a) `readers.read` and `readers.scan` give the
documented verdict and report the globals exactly as written; (b) no payload's sentinel
appears after reading it in process, through the real backend over JSON-RPC, or by
scanning; (c) tensors next to the payload are still listed. (d) The control test loads the
same files the way a victim would, in a subprocess, and checks that every sentinel *does*
appear, so these tests would notice a reader that executed anything.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional

import pytest
from malicious_corpus import ENTRIES, Entry, Sentinels, by_name, write_corpus

from conftest import backend_env, spawn
from gpu_workbench.checkpoints import readers

# A reader bug that called webbrowser.open would run this instead of a browser.
BROWSER = "touch %s"


class Corpus:
    def __init__(self, root: Path) -> None:
        self.files = root / "files"
        self.sentinels = Sentinels(str(root / "sentinels"))
        self.paths = write_corpus(str(self.files), self.sentinels)

    def fired(self, grace: float = 0.3) -> List[str]:
        """Entries whose sentinel appeared (after a grace period for asynchronous payloads)."""
        time.sleep(grace)
        return [e.name for e in ENTRIES if e.fired(self.sentinels)]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Corpus]:
    previous = os.environ.get("BROWSER")
    os.environ["BROWSER"] = BROWSER
    c = Corpus(tmp_path_factory.mktemp("malicious"))
    try:
        yield c
    finally:
        c.sentinels.close()
        if previous is None:
            os.environ.pop("BROWSER", None)
        else:
            os.environ["BROWSER"] = previous


def problems(entry: Entry, safety: Dict[str, Any], tensor_names: Optional[List[str]]) -> List[str]:
    """What a reader's result gets wrong about `entry` (empty when it is right)."""
    out: List[str] = []
    verdict = safety.get("verdict")
    if verdict not in entry.verdicts:
        out.append(
            "verdict %r, expected %s (summary: %s; findings: %s)"
            % (verdict, " or ".join(entry.verdicts), safety.get("summary"), safety.get("findings"))
        )
    reported = safety.get("globals") or []
    for flag in entry.flags:
        matches = [
            g for g in reported if g.get("module") == flag.module and g.get("name") == flag.name
        ]
        if not matches:
            out.append(
                "global %s.%s not reported as written; reported: %s"
                % (flag.module, flag.name, ["%s.%s" % (g["module"], g["name"]) for g in reported])
            )
            continue
        if not any(g.get("classification") in flag.classifications for g in matches):
            out.append(
                "global %s.%s classified %s, expected %s"
                % (
                    flag.module,
                    flag.name,
                    [g.get("classification") for g in matches],
                    " or ".join(flag.classifications),
                )
            )
        if flag.where and not any(flag.where in str(g.get("where")) for g in matches):
            out.append(
                "global %s.%s found in %s, expected in %s"
                % (flag.module, flag.name, [g.get("where") for g in matches], flag.where)
            )
    for module, name in entry.not_globals:
        if any(g.get("module") == module and g.get("name") == name for g in reported):
            out.append("decoy %s.%s reported, but the pickle never imports it" % (module, name))
    if tensor_names is not None:
        for expected in entry.tensors:
            if not any(n == expected or n.endswith("." + expected) for n in tensor_names):
                out.append("tensor %r not listed; listed: %s" % (expected, tensor_names))
    return out


# ---- the corpus itself ----


def test_corpus_is_large_and_documented() -> None:
    names = [e.name for e in ENTRIES]
    assert len(names) >= 30
    assert len(set(names)) == len(names)
    assert len({e.stem for e in ENTRIES}) == len(ENTRIES), "sentinels must be distinct"
    for e in ENTRIES:
        assert e.description and e.flagged_for, e.name
        assert set(e.verdicts) <= {"unsafe", "unknown"}, e.name
        # Only an import the file does not name (EXT*) may lack an expected global.
        assert e.flags or "EXT" in e.flagged_for, e.name


# ---- (a), (b), (c): the readers in process ----


@pytest.mark.parametrize("name", [e.name for e in ENTRIES])
def test_read_flags_the_payload_and_runs_nothing(corpus: Corpus, name: str) -> None:
    entry = by_name(name)
    reading = readers.read(corpus.paths[name])
    found = problems(entry, reading.safety.to_json(), [t.name for t in reading.tensors])
    assert not corpus.fired(grace=0.0), "reading ran a payload"
    assert not found, "%s (%s):\n  %s" % (name, entry.description, "\n  ".join(found))


def test_inspect_runs_nothing(corpus: Corpus) -> None:
    failures: List[str] = []
    for e in ENTRIES:
        try:
            summary = readers.inspect(corpus.paths[e.name])
            json.dumps(summary)  # plain JSON, as the backend sends it
        except Exception as exc:
            failures.append("%s: %s: %s" % (e.name, type(exc).__name__, exc))
    assert corpus.fired() == [], "inspect ran a payload"
    assert not failures, "inspect failed:\n" + "\n".join(failures)


def test_scan_flags_every_file_found_by_content_and_runs_nothing(corpus: Corpus) -> None:
    result = readers.scan([str(corpus.files)])
    by_path = {r["path"]: r for r in result["results"]}
    assert corpus.fired() == [], "scan ran a payload"
    found: List[str] = []
    for e in ENTRIES:
        r = by_path.get(os.path.abspath(corpus.paths[e.name]))
        if r is None:
            found.append("%s: not scanned (not recognized by content)" % e.name)
            continue
        found += ["%s: %s" % (e.name, p) for p in problems(e, r, None)]
    assert not found, "\n".join(found)


# ---- the real backend over JSON-RPC ----


def test_backend_flags_every_file_and_runs_nothing(corpus: Corpus, tmp_path: Path) -> None:
    session = spawn(backend_env({"GPUWB_DATA_DIR": str(tmp_path / "data"), "BROWSER": BROWSER}))
    found: List[str] = []
    try:
        session.initialize()
        for e in ENTRIES:
            response = session.request(
                "checkpoint/inspect", {"path": corpus.paths[e.name]}, timeout=30
            )
            if "error" in response:
                found.append("%s: inspect failed: %s" % (e.name, response["error"].get("message")))
                continue
            summary = response["result"]
            names = [t["name"] for t in summary["tensors"]]
            found += ["%s: %s" % (e.name, p) for p in problems(e, summary["safety"], names)]
        response = session.request("checkpoint/scan", {"paths": [str(corpus.files)]}, timeout=60)
        assert "result" in response, response
        verdicts = {r["path"]: r["verdict"] for r in response["result"]["results"]}
        for e in ENTRIES:
            verdict = verdicts.get(os.path.abspath(corpus.paths[e.name]))
            if verdict not in e.verdicts:
                found.append("%s: scan verdict %r" % (e.name, verdict))
    finally:
        session.close()
    assert corpus.fired() == [], "the backend ran a payload"
    assert not found, "\n".join(found)


# ---- (d) control: the payloads are live ----


def _torch_python() -> Optional[str]:
    for candidate in (os.environ.get("GPUWB_TORCH_PYTHON"), "/usr/bin/python3"):
        if not candidate or not os.path.exists(candidate):
            continue
        probe = subprocess.run(
            [candidate, "-c", "import importlib.util as u; print(bool(u.find_spec('torch')))"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        if probe.stdout.strip() == "True":
            return candidate
    return None


def _run_victim(python: str, corpus: Corpus, entries: List[Entry]) -> List[Dict[str, str]]:
    jobs = [{"path": corpus.paths[e.name], "live": e.live, "setup": e.setup} for e in entries]
    script = str(Path(__file__).with_name("malicious_corpus.py"))
    env = dict(os.environ, BROWSER=BROWSER, PIP_NO_INPUT="1")
    done = subprocess.run(
        [python, script, "--victim", json.dumps(jobs)],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=str(corpus.files),
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_payloads_are_live_when_loaded_like_a_victim(tmp_path: Path) -> None:
    live = Corpus(tmp_path)  # its own sentinels: the readers' tests must not see these fire
    try:
        has = {name: importlib.util.find_spec(name) is not None for name in ("pip", "numpy")}
        plain = [
            e
            for e in ENTRIES
            if e.needs != "torch"
            and (e.needs != "pip" or has["pip"])
            and (e.live != "numpy" or has["numpy"])
        ]
        outcomes = _run_victim(sys.executable, live, plain)
        tried = list(plain)
        torch_python = _torch_python()
        if torch_python is not None:
            with_torch = [e for e in ENTRIES if e.needs == "torch"]
            outcomes += _run_victim(torch_python, live, with_torch)
            tried += with_torch
        deadline = time.monotonic() + 10  # Popen and friends finish asynchronously
        missing = [e for e in tried if not e.fired(live.sentinels)]
        while missing and time.monotonic() < deadline:
            time.sleep(0.1)
            missing = [e for e in missing if not e.fired(live.sentinels)]
        report = {os.path.basename(o["path"]): o["outcome"] for o in outcomes}
        assert not missing, "payloads that did not fire: %s" % {
            e.name: report.get(e.name) for e in missing
        }
        assert len(tried) >= 25, "too few payloads could be tried: %s" % [e.name for e in tried]
        if torch_python is None:
            pytest.skip("no Python with torch: the zip and legacy payloads were not run")
    finally:
        live.sentinels.close()
