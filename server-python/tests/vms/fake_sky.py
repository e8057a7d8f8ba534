"""A fake `sky` CLI for tests: the subset SkyPilotProvider calls, state in a JSON file.

`write_fake_sky(dir, state)` writes an executable `sky` (a Python script, run with the
current interpreter) and its state file. Output follows SkyPilot's documented formats:
`sky status` prints the borderless, left-aligned table of sky/utils/cli_utils/status_utils.py
(NAME  INFRA  RESOURCES  STATUS  AUTOSTOP  LAUNCHED), status coloured with ANSI codes as
colorama would, then the managed-jobs and services sections; unknown clusters give
"Cluster(s) not found (tip: see `sky status`)." with exit 0, as SkyPilot does.
`-o json` is accepted only when state["json"] is true (newer CLIs); otherwise click's
"No such option" error (exit 2) is printed.

State: {"clusters": {name: {"status", "resources", "infra", "launched_at", "autostop",
"to_down", "spot"}}, "json": bool, "fail": {command: [exit_code, stderr]},
"calls": [[argv...], ...]}.
"""

from __future__ import annotations

import json
import stat
import sys
from pathlib import Path
from typing import Any, Dict

SCRIPT = r"""
import json, sys, time

STATE = __STATE__
GREEN, YELLOW, DIM, RESET = "\x1b[32m", "\x1b[33m", "\x1b[2m", "\x1b[0m"


def load():
    with open(STATE) as f:
        return json.load(f)


def save(s):
    with open(STATE, "w") as f:
        json.dump(s, f)


def ago(t):
    d = max(0, int(time.time() - t))
    if d < 60:
        return "a few secs ago"
    if d < 3600:
        n = d // 60
        return "%d min%s ago" % (n, "" if n == 1 else "s")
    if d < 86400:
        n = d // 3600
        return "%d hr%s ago" % (n, "" if n == 1 else "s")
    n = d // 86400
    return "%d day%s ago" % (n, "" if n == 1 else "s")


def table(cols, rows):
    # sky's log_utils.create_table: prettytable, border=False, align="l", left padding 0,
    # right padding 2; widths ignore ANSI codes.
    def vis(s):
        import re
        return len(re.sub(r"\x1b\[[0-9;]*m", "", s))
    widths = [max([len(c)] + [vis(r[i]) for r in rows]) for i, c in enumerate(cols)]
    out = []
    for r in [cols] + rows:
        cells = [v + " " * (widths[i] - vis(v) + 2) for i, v in enumerate(r)]
        out.append("".join(cells).rstrip())
    return "\n".join(out)


def usage(msg, cmd="status"):
    sys.stderr.write("Usage: sky %s [OPTIONS] [CLUSTERS]...\nTry 'sky %s -h' for help.\n\n"
                     "Error: %s\n" % (cmd, cmd, msg))
    sys.exit(2)


def not_found():
    print("Cluster(s) not found (tip: see `sky status`).")
    sys.exit(0)


def main(argv):
    s = load()
    s.setdefault("calls", []).append(argv)
    save(s)
    if not argv:
        usage("Missing command.", "")
    cmd, args = argv[0], argv[1:]
    fail = s.get("fail", {}).get(cmd)
    if fail:
        sys.stderr.write(fail[1] + "\n")
        sys.exit(fail[0])
    clusters = s.setdefault("clusters", {})
    if cmd == "status":
        as_json = False
        names = []
        i = 0
        while i < len(args):
            a = args[i]
            if a in ("-o", "--output"):
                if not s.get("json"):
                    usage("No such option: %s" % a)
                as_json = args[i + 1] == "json"
                i += 2
                continue
            if a in ("-r", "--refresh", "-a", "--all"):
                i += 1
                continue
            names.append(a)
            i += 1
        chosen = [n for n in clusters if not names or n in names]
        if as_json:
            recs = []
            for n in chosen:
                c = clusters[n]
                recs.append({"name": n, "status": c["status"], "launched_at": c["launched_at"],
                             "resources_str": c["resources"], "infra": c["infra"],
                             "autostop": c.get("autostop", -1), "to_down": c.get("to_down", False),
                             "head_ip": c.get("head_ip")})
            print(json.dumps(recs))
            return
        if names and not chosen:
            print("Cluster %s not found." % ", ".join(repr(n) for n in names))
            return
        print("Clusters")
        if not chosen:
            print("No existing clusters.")
        else:
            rows = []
            for n in chosen:
                c = clusters[n]
                color = GREEN if c["status"] == "UP" else YELLOW
                auto = "-"
                if c.get("autostop", -1) >= 0:
                    auto = "%dm" % c["autostop"]
                if c.get("to_down"):
                    auto = ("(down)" if auto == "-" else auto + " (down)")
                rows.append([n, c["infra"], c["resources"], color + c["status"] + RESET, auto,
                             ago(c["launched_at"])])
            print(table(["NAME", "INFRA", "RESOURCES", "STATUS", "AUTOSTOP", "LAUNCHED"], rows))
        print("")
        print("Managed jobs")
        print("No in-progress managed jobs.")
        print("")
        print("Services")
        print("No live services.")
        return
    if cmd == "launch":
        name, gpus, itype, spot, idle, region = None, None, None, False, -1, None
        i = 0
        while i < len(args):
            a = args[i]
            if a == "--":
                break
            if a in ("-c", "--cluster"):
                name = args[i + 1]; i += 2; continue
            if a == "--gpus":
                gpus = args[i + 1]; i += 2; continue
            if a == "--instance-type":
                itype = args[i + 1]; i += 2; continue
            if a in ("--region", "--infra"):
                region = args[i + 1]; i += 2; continue
            if a in ("-i", "--idle-minutes-to-autostop"):
                idle = int(args[i + 1]); i += 2; continue
            if a in ("--disk-size", "--image-id"):
                i += 2; continue
            if a == "--use-spot":
                spot = True; i += 1; continue
            if a in ("-y", "--yes", "-d", "--detach-run"):
                i += 1; continue
            usage("No such option: %s" % a, "launch")
        if not name:
            usage("Missing option '-c'.", "launch")
        print("Considered resources (1 node):")
        print("Launching a new cluster '%s'. Proceed? [Y/n]: " % name)
        print("Provisioning cluster %s..." % name)
        gpu = (gpus or "L4:1") if ":" in (gpus or "L4:1") else gpus + ":1"
        itype = itype or "g6.xlarge"
        spot_s = "[spot]" if spot else ""
        clusters[name] = {"status": "UP", "launched_at": time.time() - 30,
                          "resources": "1x(gpus=%s, %s%s, cpus=4, mem=16, disk=256)"
                          % (gpu, itype, spot_s),
                          "infra": "AWS (%s)" % (region or "us-east-1"), "autostop": idle,
                          "to_down": False, "spot": spot, "head_ip": "3.3.3.3"}
        save(s)
        print("Cluster launched: %s." % name)
        return
    if cmd in ("start", "stop", "down", "autostop"):
        names = [a for a in args if not a.startswith("-") and not a.isdigit()]
        if not names:
            usage("Missing argument 'CLUSTERS...'.", cmd)
        name = names[0]
        if name not in clusters:
            not_found()
        c = clusters[name]
        if cmd == "stop":
            if c.get("spot"):
                sys.stderr.write("sky.exceptions.NotSupportedError: Stopping spot instances "
                                 "is currently not supported on AWS.\n")
                sys.exit(1)
            c["status"] = "STOPPED"
            print("Cluster %s stopped." % name)
        elif cmd == "start":
            c["status"] = "UP"
            print("Cluster %s started." % name)
        elif cmd == "down":
            del clusters[name]
            print("Cluster %s terminated." % name)
        else:
            if "--cancel" in args:
                c["autostop"], c["to_down"] = -1, False
            else:
                c["autostop"] = int(args[args.index("-i") + 1])
                c["to_down"] = "--down" in args
        save(s)
        return
    usage("No such command '%s'." % cmd, "")


main(sys.argv[1:])
"""


def write_fake_sky(directory: Path, state: Dict[str, Any]) -> Path:
    """Write `sky` and its state file into `directory`; return the executable's path."""
    state_path = directory / "sky-state.json"
    state_path.write_text(json.dumps(state))
    exe = directory / "sky"
    exe.write_text("#!%s\n" % sys.executable + SCRIPT.replace("__STATE__", repr(str(state_path))))
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return exe


def read_state(directory: Path) -> Dict[str, Any]:
    return json.loads((directory / "sky-state.json").read_text())


def set_state(directory: Path, **changes: Any) -> None:
    state = read_state(directory)
    state.update(changes)
    (directory / "sky-state.json").write_text(json.dumps(state))
