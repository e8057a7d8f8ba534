"""A fake `sky` CLI for tests: the subset SkyPilotProvider calls, state in a JSON file.

`write_fake_sky(dir, state)` writes an executable `sky` (a Python script, run with the
current interpreter) and its state file. Output follows SkyPilot's formats as of 2026
(skypilot-org/skypilot):
- `sky status` prints "Enabled Infra: ..." and the borderless, left-aligned table of
  sky/utils/cli_utils/status_utils.py (NAME  INFRA  RESOURCES  STATUS  AUTOSTOP  LAUNCHED,
  RESOURCES the short "1x g6.xlarge"); `-v` adds HEAD_IP and COMMAND and shows the full
  resources ("1x[spot](gpus=L4:1, cpus=4, mem=16, g6.xlarge, disk=256)"); status coloured
  with ANSI codes as colorama would, then the managed-jobs and services sections. Unknown
  names print "Cluster 'x' not found." with exit 0.
- `sky status -o json` prints a JSON list (indent 2) of records shaped like the API's
  StatusResponse (sky/schemas/api/responses.py); for unknown names it first prints
  "Cluster(s) not found: x." with ANSI bold on stdout, as skypilot issue #10713 reports.
- state["old"]: an older CLI, whose `status` rejects `-o` and `-v` with click's
  "No such option" error (exit 2) and whose table has the older columns
  (NAME  LAUNCHED  RESOURCES  REGION  STATUS  AUTOSTOP  COMMAND, "1x AWS(g6.xlarge, {'L4': 1})").
- state["json"] false (default true): a CLI with `-v` but without `-o json`.
Operations: stop/start/down of unknown clusters give "Cluster(s) not found (tip: see
`sky status`)." with exit 0, as SkyPilot does.

State: {"clusters": {name: {"status", "resources" (the full form), "infra", "launched_at",
"autostop", "to_down", "spot", "head_ip"}}, "json": bool, "old": bool,
"fail": {command: [exit_code, stderr]}, "calls": [[argv...], ...]}.
"""

from __future__ import annotations

import json
import stat
import sys
from pathlib import Path
from typing import Any, Dict

SCRIPT = r"""
import json, re, sys, time

STATE = __STATE__
GREEN, YELLOW, DIM, RESET = "\x1b[32m", "\x1b[33m", "\x1b[2m", "\x1b[0m"
BOLD, CYAN, BRIGHT = "\x1b[1m", "\x1b[36m", "\x1b[1m"


def nodes(res):
    m = re.match(r"^(\d+)x", res)
    return int(m.group(1)) if m else 1


def parts(res):
    m = re.search(r"\((.*)\)", res)
    return [p.strip() for p in m.group(1).split(",")] if m else []


def itype(res):
    return next((p for p in parts(res) if p and "=" not in p and p != "..."), None)


def short(res):
    # status_utils: the simplified "Nx instance_type" of resources_str for cloud VMs.
    return "%dx %s" % (nodes(res), itype(res)) if itype(res) else res


def older(c):
    # Releases before the INFRA column: "1x AWS(g6.xlarge, {'L4': 1})".
    res = c["resources"]
    gpu = re.search(r"gpus=([^:,)]+):(\d+)", res)
    spot = "[Spot]" if "[spot]" in res else ""
    inner = (itype(res) or "?") + spot
    if gpu:
        inner += ", {'%s': %s}" % gpu.groups()
    return "%dx %s(%s)" % (nodes(res), c["infra"].split("/")[0], inner)


def region_of(c):
    return (c["infra"].split("/") + ["-"])[1]


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
        old = bool(s.get("old"))
        as_json = False
        verbose = False
        names = []
        i = 0
        while i < len(args):
            a = args[i]
            if a in ("-o", "--output"):
                if old or not s.get("json", True):
                    usage("No such option: %s" % a)
                as_json = args[i + 1] == "json"
                i += 2
                continue
            if a in ("-v", "--verbose"):
                if old:
                    usage("No such option: %s" % a)
                verbose = True
                i += 1
                continue
            if a in ("-r", "--refresh", "-u", "--all-users"):
                i += 1
                continue
            names.append(a)
            i += 1
        chosen = [n for n in clusters if not names or n in names]
        if as_json:
            missing = [n for n in names if n not in clusters]
            if missing:
                print("Cluster(s) not found: %s%s%s." % (BOLD, ", ".join(missing), RESET))
            recs = []
            for n in chosen:
                c = clusters[n]
                cloud, _, region = c["infra"].partition("/")
                gpu = re.search(r"gpus=([^:,)]+):(\d+)", c["resources"])
                recs.append({
                    "name": n, "launched_at": int(c["launched_at"]),
                    "last_use": "sky launch -c %s" % n, "status": c["status"],
                    "autostop": c.get("autostop", -1), "to_down": c.get("to_down", False),
                    "owner": None, "metadata": {}, "cluster_hash": "h-" + n,
                    "cluster_ever_up": True, "status_updated_at": int(time.time()),
                    "user_hash": "abcd1234", "user_name": "alice", "workspace": "default",
                    "is_managed": False, "resources_str": short(c["resources"]),
                    "resources_str_full": c["resources"], "nodes": nodes(c["resources"]),
                    "cloud": cloud, "region": region.split("/")[0] or None, "cpus": "4",
                    "memory": "16",
                    "accelerators": "{'%s': %s}" % gpu.groups() if gpu else None,
                    "cluster_name_on_cloud": n + "-2ea4",
                })
            print(json.dumps(recs, indent=2))
            return
        if not old:
            print("%s%sEnabled Infra:%s aws, gcp\n" % (CYAN, BRIGHT, RESET))
        print("Clusters")
        rows = []
        for n in chosen:
            c = clusters[n]
            color = GREEN if c["status"] == "UP" else YELLOW
            auto = "-"
            if c.get("autostop", -1) >= 0:
                auto = "%dm" % c["autostop"]
            if c.get("to_down"):
                auto = ("(down)" if auto == "-" else auto + " (down)")
            status = color + c["status"] + RESET
            if old:
                rows.append([n, ago(c["launched_at"]), older(c), region_of(c), status, auto,
                             "sky launch -c %s" % n])
            else:
                row = [n, c["infra"], c["resources"] if verbose else short(c["resources"]),
                       status, auto, ago(c["launched_at"])]
                if verbose:
                    row += [c.get("head_ip") or "-", "sky launch -c %s" % n]
                rows.append(row)
        if rows:
            if old:
                cols = ["NAME", "LAUNCHED", "RESOURCES", "REGION", "STATUS", "AUTOSTOP",
                        "COMMAND"]
            else:
                cols = ["NAME", "INFRA", "RESOURCES", "STATUS", "AUTOSTOP", "LAUNCHED"]
                if verbose:
                    cols += ["HEAD_IP", "COMMAND"]
            print(table(cols, rows))
        missing = [repr(n) for n in names if n not in clusters]
        if missing:
            print("Cluster%s %s not found." % ("s" if len(missing) > 1 else "",
                                             ", ".join(missing)))
        elif not rows:
            print("No existing clusters.")
        print("")
        print("Managed jobs")
        print("No in-progress managed jobs.")
        print("")
        print("Services")
        print("No live services.")
        return
    if cmd == "launch":
        name, gpus, itype_arg, spot, idle, region = None, None, None, False, -1, None
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
                itype_arg = args[i + 1]; i += 2; continue
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
        kind = itype_arg or "g6.xlarge"
        spot_s = "[spot]" if spot else ""
        infra = region or "us-east-1"
        infra = infra if "/" in infra else "aws/" + infra
        cloud, _, rest = infra.partition("/")
        clusters[name] = {"status": "UP", "launched_at": time.time() - 30,
                          "resources": "1x%s(gpus=%s, cpus=4, mem=16, %s, disk=256)"
                          % (spot_s, gpu, kind),
                          "infra": cloud.upper() + "/" + rest, "autostop": idle,
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
