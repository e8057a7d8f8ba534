"""The agent's package: bundling this package, installing it on a machine, listing interpreters.

The agent is the ``gpu_workbench`` package itself. `bundle` makes a deterministic tar.gz of
its ``*.py`` files; its version is a hash of their relative paths and contents, so any
change makes a new version. `install` copies it once per version into
``${XDG_CACHE_HOME:-$HOME/.cache}/gpu-workbench/agent/<version>/`` of the remote user:
extracted into a temporary folder, verified by the remote Python against the version, and
only then renamed into place and marked ``.complete``. Folders of other versions are left
alone (kernels started by an older agent keep running; nothing imports from there again).

Remote scripts travel base64-encoded inside ``python -c`` so no remote shell (sh, bash,
zsh, fish) can mangle them; each step is one ssh round trip through the master.
"""

from __future__ import annotations

import base64
import gzip
import io
import json
import os
import shlex
import tarfile
import threading
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

from ..errors import ApplicationError
from .ssh import SshHost

MIN_PYTHON = (3, 8)
PACKAGE = "gpu_workbench"
INSTALL_TIMEOUT = 180.0
INTERPRETERS_BUDGET = 10.0

# Shared verbatim by the local bundle and the remote checks (Python 2 parses it too, so an
# old interpreter reports its version instead of a syntax error).
_HASH_CODE = r"""
import hashlib as _hashlib, os as _os

def agent_digest(pairs):
    h = _hashlib.sha256()
    for rel, data in sorted(pairs):
        h.update(rel.encode("utf-8") + b"\0" + str(len(data)).encode("ascii") + b"\0")
        h.update(data)
    return h.hexdigest()[:16]

def agent_files(root):
    pairs = []
    top = _os.path.join(root, "gpu_workbench")
    for folder, dirs, names in _os.walk(top):
        dirs[:] = sorted(d for d in dirs if d not in ("__pycache__", "tests"))
        for name in names:
            if name.endswith(".py"):
                full = _os.path.join(folder, name)
                rel = _os.path.relpath(full, root).replace(_os.sep, "/")
                with open(full, "rb") as f:
                    pairs.append((rel, f.read()))
    return pairs

def cache_root():
    base = _os.environ.get("XDG_CACHE_HOME") or ""
    if not _os.path.isabs(base):
        base = _os.path.join(_os.path.expanduser("~"), ".cache")
    return _os.path.join(base, "gpu-workbench", "agent")
"""

_PROBE = r"""
import json, os, sys
info = {"python": sys.executable, "version": "%d.%d.%d" % tuple(sys.version_info[:3]),
        "ok": tuple(sys.version_info[:2]) >= (3, 8), "complete": False}
if info["ok"]:
    folder = os.path.join(cache_root(), VERSION)
    info["path"] = folder
    try:
        with open(os.path.join(folder, ".complete")) as f:
            marked = f.read().strip() == VERSION
        info["complete"] = marked and agent_digest(agent_files(folder)) == VERSION
    except (IOError, OSError):
        pass
sys.stdout.write("\n" + json.dumps(info) + "\n")
"""

_INSTALL = r"""
import io, json, os, shutil, sys, tarfile, tempfile

def report(**info):
    sys.stdout.write("\n" + json.dumps(info) + "\n")
    sys.exit(0)

data = sys.stdin.buffer.read()
parent = cache_root()
os.makedirs(parent, mode=0o700, exist_ok=True)
final = os.path.join(parent, VERSION)
tmp = tempfile.mkdtemp(prefix=".tmp-", dir=parent)
try:
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
            for member in tar.getmembers():
                parts = member.name.split("/")
                if not member.isfile() or parts[0] != "gpu_workbench" or ".." in parts or "" in parts:
                    raise ValueError("unexpected member %r" % member.name)
                target = os.path.join(tmp, *parts)
                os.makedirs(os.path.dirname(target), exist_ok=True)
                source = tar.extractfile(member)
                with open(target, "wb") as out:
                    out.write(source.read())
    except (tarfile.TarError, ValueError, OSError, EOFError) as exc:
        report(ok=False, reason="unreadable archive: %s" % exc)
    got = agent_digest(agent_files(tmp))
    if got != VERSION:
        report(ok=False, reason="checksum %s, expected %s" % (got, VERSION))
    if os.path.isdir(final):
        aside = tempfile.mkdtemp(prefix=".old-", dir=parent)
        os.rename(final, os.path.join(aside, "agent"))
        shutil.rmtree(aside, ignore_errors=True)
    try:
        os.rename(tmp, final)
    except OSError:
        if agent_digest(agent_files(final)) != VERSION:  # not a concurrent install of ours
            raise
    marker = os.path.join(final, ".complete.tmp")
    with open(marker, "w") as f:
        f.write(VERSION + "\n")
    os.replace(marker, os.path.join(final, ".complete"))
    report(ok=True, path=final)
finally:
    shutil.rmtree(tmp, ignore_errors=True)
"""

_INTERPRETERS = r"""
import glob, json, os, re, shutil, subprocess, sys, time
from concurrent.futures import ThreadPoolExecutor

BUDGET = %(budget)r
START = time.monotonic()
HOME = os.path.expanduser("~")
CHECK = ("import sys\nsys.stdout.write('%%d.%%d.%%d\\n' %% tuple(sys.version_info[:3]))\n"
         "try:\n    import importlib.util as u\n"
         "    sys.stdout.write('%%s\\n' %% (u.find_spec('torch') is not None))\n"
         "except Exception:\n    sys.stdout.write('None\\n')\n")
candidates = []  # (path, kind, name)

def add(path, kind=None, name=None):
    if path and os.path.isfile(path) and os.access(path, os.X_OK):
        candidates.append((os.path.abspath(path), kind, name))

add(sys.executable)
for exe in ("python3", "python"):
    add(shutil.which(exe))
for path in sorted(glob.glob("/usr/bin/python3*")):
    if re.match(r"^python3(\.\d+)?$", os.path.basename(path)):
        add(path)
for root in (os.path.join(HOME, d) for d in ("miniconda3", "anaconda3", "miniforge3", "mambaforge")):
    add(os.path.join(root, "bin", "python"), "conda", "base")
    for env in sorted(glob.glob(os.path.join(root, "envs", "*"))):
        add(os.path.join(env, "bin", "python"), "conda", os.path.basename(env))
add("/opt/conda/bin/python", "conda", "base")
for env in sorted(glob.glob("/opt/conda/envs/*")):
    add(os.path.join(env, "bin", "python"), "conda", os.path.basename(env))
for path in [os.path.join(HOME, ".venv", "bin", "python"), os.path.join(HOME, "venv", "bin", "python")] + sorted(glob.glob(os.path.join(HOME, "*", "bin", "python"))) + sorted(glob.glob(os.path.join(HOME, "*", ".venv", "bin", "python"))):
    add(path)

def classify(path, kind, name):
    prefix = os.path.dirname(os.path.dirname(path))
    if os.path.isfile(os.path.join(prefix, "pyvenv.cfg")):
        folder = os.path.basename(prefix)
        parent = os.path.dirname(prefix)
        if (folder.startswith(".") or folder in ("venv", "env")) and os.path.realpath(parent) != os.path.realpath(HOME):
            folder = os.path.basename(parent) + "/" + folder
        return "venv", folder, os.path.realpath(prefix)
    if kind == "conda" or os.path.isdir(os.path.join(prefix, "conda-meta")):
        return "conda", name or os.path.basename(prefix), os.path.realpath(prefix)
    return "system", os.path.basename(path), ""

seen = set()
entries = []
for path, kind, name in candidates:
    kind, name, env = classify(path, kind, name)
    key = (os.path.realpath(path), env)
    if key in seen:
        continue
    seen.add(key)
    entries.append({"path": path, "kind": kind, "name": name})

def probe(entry):
    left = BUDGET - (time.monotonic() - START)
    if left <= 0.2:
        return
    try:
        out = subprocess.run([entry["path"], "-c", CHECK], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, timeout=min(left, 5.0)).stdout.decode("utf-8", "replace").split()
    except Exception:
        return
    if out:
        entry["version"] = out[0]
        entry["hasTorch"] = {"True": True, "False": False}.get(out[1] if len(out) > 1 else "")

with ThreadPoolExecutor(max_workers=8) as pool:
    list(pool.map(probe, entries))
result = [dict(e, version=e.get("version"), hasTorch=e.get("hasTorch")) for e in entries if e.get("version")]
sys.stdout.write("\n" + json.dumps(result) + "\n")
"""

_bundle_lock = threading.Lock()
_bundle_cache: Optional[Tuple[str, bytes]] = None


def _helpers() -> Dict[str, Any]:
    namespace: Dict[str, Any] = {}
    exec(compile(_HASH_CODE, "<agent hash>", "exec"), namespace)
    return namespace


def package_root() -> Path:
    """The folder that contains the gpu_workbench package."""
    return Path(__file__).resolve().parent.parent.parent


def bundle() -> Tuple[str, bytes]:
    """(version, tar.gz bytes) of the package's *.py files; deterministic, cached per process."""
    global _bundle_cache
    with _bundle_lock:
        if _bundle_cache is None:
            helpers = _helpers()
            pairs = helpers["agent_files"](str(package_root()))
            version = helpers["agent_digest"](pairs)
            raw = io.BytesIO()
            # Nested, not one parenthesized `with`: this file also runs on Python 3.8.
            with gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as gz:  # noqa: SIM117
                with tarfile.open(fileobj=gz, mode="w", format=tarfile.USTAR_FORMAT) as tar:
                    for rel, data in sorted(pairs):
                        info = tarfile.TarInfo(rel)
                        info.size = len(data)
                        info.mtime = 0
                        info.mode = 0o644
                        info.uid = info.gid = 0
                        info.uname = info.gname = ""
                        tar.addfile(info, io.BytesIO(data))
            _bundle_cache = (version, raw.getvalue())
        return _bundle_cache


def _python_command(python: str, script: str) -> str:
    encoded = base64.b64encode(script.encode("utf-8")).decode("ascii")
    code = 'import base64;exec(base64.b64decode("%s"))' % encoded
    return "%s -c %s" % (shlex.quote(python), shlex.quote(code))


def _run_script(
    host: SshHost,
    python: str,
    script: str,
    input: Optional[bytes] = None,
    timeout: float = 60,
) -> Any:
    """Run a Python script remotely and return the JSON value on its last output line."""
    result = host.run(_python_command(python, script), input=input, timeout=timeout)
    if result.returncode == 255:
        host.raise_for_ssh(result)
    stderr = result.stderr.decode("utf-8", "replace").strip()
    if result.returncode in (126, 127):
        raise ApplicationError(
            "RemoteUnavailable",
            "%s is not installed on %s" % (python, host.label),
            detail=stderr[-500:] or None,
            hint="Install python3 on the machine or choose another interpreter",
        )
    lines = [line for line in result.stdout.decode("utf-8", "replace").splitlines() if line.strip()]
    if result.returncode != 0 or not lines:
        raise ApplicationError(
            "RemoteUnavailable",
            "%s on %s failed (exit status %d)" % (python, host.label, result.returncode),
            detail=stderr[-1000:] or None,
            hint="Check that %s runs on the machine, or choose another interpreter" % python,
        )
    try:
        return json.loads(lines[-1])
    except ValueError:
        raise ApplicationError(
            "RemoteUnavailable",
            "%s on %s gave an unexpected answer" % (python, host.label),
            detail=lines[-1][:500],
        ) from None


def _with_version(script: str, version: str) -> str:
    return "VERSION = %r\n%s\n%s" % (version, _HASH_CODE, script)


def install(
    host: SshHost, python: str = "python3", check: Callable[[], None] = lambda: None
) -> Dict[str, Any]:
    """Make sure this version of the agent is on the machine; one round trip when it is.

    Returns {"path", "version", "python" (absolute interpreter path), "pythonVersion"}.
    """
    version, data = bundle()
    probe = _run_script(host, python, _with_version(_PROBE, version))
    if not probe.get("ok"):
        raise ApplicationError(
            "RemoteUnavailable",
            "The agent needs Python %d.%d or newer; %s on %s is Python %s"
            % (*MIN_PYTHON, python, host.label, probe.get("version", "?")),
            hint="Install python3 (3.8 or newer) on the machine or choose another interpreter",
        )
    info = {
        "path": probe["path"],
        "version": version,
        "python": probe["python"],
        "pythonVersion": probe["version"],
    }
    if probe.get("complete"):
        return info
    check()
    installed = _run_script(
        host, python, _with_version(_INSTALL, version), input=data, timeout=INSTALL_TIMEOUT
    )
    if not installed.get("ok"):
        raise ApplicationError(
            "RemoteUnavailable",
            "The agent copy on %s is corrupt" % host.label,
            detail=installed.get("reason"),
            hint="Try connecting again; if it persists, check the disk space of the machine",
        )
    info["path"] = installed.get("path") or info["path"]
    return info


def interpreters(host: SshHost, python: str) -> List[Dict[str, Any]]:
    """The Python interpreters on the machine (protocol.RemoteInterpreter dicts), one round trip."""
    script = _INTERPRETERS % {"budget": INTERPRETERS_BUDGET}
    found = _run_script(host, python, script, timeout=INTERPRETERS_BUDGET + 30)
    if not isinstance(found, list):
        return []
    return [
        {
            "path": str(item["path"]),
            "version": str(item["version"]),
            "kind": item.get("kind")
            if item.get("kind") in ("system", "conda", "venv")
            else "system",
            "name": str(item.get("name") or os.path.basename(str(item["path"]))),
            "hasTorch": item.get("hasTorch"),
        }
        for item in found
        if isinstance(item, dict) and item.get("path") and item.get("version")
    ]
