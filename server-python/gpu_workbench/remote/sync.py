"""Copy a local folder to a machine over its SSH connection (remote/sync).

rsync over the same connection (``-e`` = the host's ssh argv without the destination, so
the ControlMaster socket is reused) when rsync exists on both sides; otherwise a gzip'd tar
stream built here with tarfile and unpacked by ``tar -xz`` on the machine. Both respect
``.gitignore`` files (at every level) and always leave out ``.git/``, ``__pycache__/``,
``.venv/`` and ``node_modules/``. Nothing on the machine is ever deleted.

A first pass (rsync ``--dry-run --stats``; for tar, a comparison with ``find -printf`` on
the machine by size and mtime) counts what would be sent; more than ``max_bytes`` is
refused before anything is copied. The result is protocol.RemoteSyncResult minus
``machine`` (the caller adds it).
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import tarfile
import tempfile
import threading
import time
from typing import IO, Any, Callable, Dict, List, Optional, Sequence, Tuple

from ..errors import ApplicationError, RequestCancelled

DEFAULT_MAX_BYTES = 500 * 1024 * 1024
SAMPLE_SIZE = 200
ALWAYS_EXCLUDED = (".git", "__pycache__", ".venv", "node_modules")  # directories
MAX_BYTES_SETTING = "gpuWorkbench.remote.syncMaxMegabytes"

Progress = Callable[[float, str], None]
Cancelled = Callable[[], bool]

_STATS_BYTES = re.compile(r"Total transferred file size:\s*([\d,.]+)")
_PROGRESS2 = re.compile(r"^\s*([\d,]+)\s+(\d+)%\s+(\S+)\s+(\S+)")


def _no_progress(fraction: float, message: str) -> None:
    pass


def _never() -> bool:
    return False


def _text(data: Any) -> str:
    if data is None:
        return ""
    if isinstance(data, bytes):
        return data.decode("utf-8", "replace")
    return str(data)


def _mib(n: int) -> str:
    return "%.1f MiB" % (n / (1024.0 * 1024.0))


# ======================= .gitignore rules =======================


def _translate(pattern: str) -> str:
    """A gitignore glob (no leading/trailing slash handling) as a regex for a relative path."""
    out: List[str] = []
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("/**", i) and i + 3 == n:
            out.append("/.*")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif c == "*":
            out.append("[^/]*")
            i += 1
        elif c == "?":
            out.append("[^/]")
            i += 1
        elif c == "[":
            end = pattern.find("]", i + 2 if pattern[i + 1 : i + 2] in ("!", "]") else i + 1)
            if end < 0:
                out.append(re.escape(c))
                i += 1
            else:
                body = pattern[i + 1 : end]
                if body.startswith("!"):
                    body = "^" + body[1:]
                out.append("[" + body.replace("\\", "\\\\") + "]")
                i = end + 1
        elif c == "\\" and i + 1 < n:
            out.append(re.escape(pattern[i + 1]))
            i += 2
        else:
            out.append(re.escape(c))
            i += 1
    return "".join(out) + r"\Z"


class _Rule:
    __slots__ = ("base", "dir_only", "negate", "regex", "with_slash")

    def __init__(self, base: str, line: str) -> None:
        self.base = base  # the folder holding the .gitignore, relative ("" for the root)
        self.negate = line.startswith("!")
        if self.negate:
            line = line[1:]
        self.dir_only = line.endswith("/")
        line = line.rstrip("/")
        self.with_slash = "/" in line
        line = line.lstrip("/")
        self.regex = re.compile(_translate(line))

    def matches(self, rel: str, is_dir: bool) -> bool:
        if self.dir_only and not is_dir:
            return False
        if self.base:
            if not rel.startswith(self.base + "/"):
                return False
            rel = rel[len(self.base) + 1 :]
        if self.with_slash:
            return bool(self.regex.match(rel))
        return bool(self.regex.match(rel.rsplit("/", 1)[-1]))


def parse_gitignore(text: str, base: str = "") -> List[_Rule]:
    """Rules of one .gitignore whose folder is `base` (relative, "" for the top)."""
    rules: List[_Rule] = []
    for raw in text.splitlines():
        line = raw.rstrip("\r")
        if not line.endswith("\\ "):
            line = line.rstrip(" ")
        if not line or line.startswith("#"):
            continue
        if line in ("!", "/"):
            continue
        rules.append(_Rule(base, line))
    return rules


def ignored(rules: Sequence[_Rule], rel: str, is_dir: bool) -> bool:
    """The last matching rule decides; no match means kept."""
    result = False
    for rule in rules:
        if rule.matches(rel, is_dir):
            result = not rule.negate
    return result


def walk(local_path: str) -> List[Tuple[str, int, float]]:
    """(relative path, size, mtime) of every regular file that would be synced, sorted.

    Links to files are followed (the tar fallback sends their content; rsync -a sends the
    link); links to folders are not entered.
    """
    found: List[Tuple[str, int, float]] = []

    def visit(directory: str, rel_dir: str, rules: List[_Rule]) -> None:
        try:
            with open(os.path.join(directory, ".gitignore"), encoding="utf-8") as f:
                rules = rules + parse_gitignore(f.read(), rel_dir)
        except (OSError, UnicodeDecodeError):
            pass
        try:
            entries = sorted(os.scandir(directory), key=lambda e: e.name)
        except OSError:
            return
        for entry in entries:
            rel = entry.name if not rel_dir else rel_dir + "/" + entry.name
            try:
                is_dir = entry.is_dir(follow_symlinks=False)
            except OSError:
                continue
            if is_dir:
                if entry.name in ALWAYS_EXCLUDED or ignored(rules, rel, True):
                    continue
                visit(entry.path, rel, rules)
                continue
            if ignored(rules, rel, False):
                continue
            try:
                st = os.stat(entry.path)
            except OSError:
                continue
            if not os.path.isfile(entry.path):
                continue
            found.append((rel, st.st_size, st.st_mtime))

    visit(local_path, "", [])
    return found


# ======================= the remote side =======================


def _remote_shell_path(path: str) -> str:
    """`path` quoted for the remote shell; a leading ~/ stays expandable."""
    if path == "~":
        return '"$HOME"'
    if path.startswith("~/"):
        return '"$HOME"/' + shlex.quote(path[2:])
    return shlex.quote(path)


def _probe(host: Any) -> Tuple[str, bool]:
    """($HOME on the machine, whether rsync is on its PATH)."""
    result = host.run(
        'printf "%s\\n" "$HOME"; if command -v rsync >/dev/null 2>&1; '
        "then echo rsync=yes; else echo rsync=no; fi",
        timeout=30,
    )
    out = _text(result.stdout).splitlines()
    if result.returncode != 0 or len(out) < 2:
        raise ApplicationError(
            "RemoteUnavailable",
            "Cannot run commands on the machine to sync",
            detail=_text(result.stderr).strip() or None,
        )
    return out[0].strip(), out[-1].strip() == "rsync=yes"


def _resolve(remote_path: Optional[str], local_path: str, home: str) -> str:
    if not remote_path:
        remote_path = "~/gpu-workbench/" + os.path.basename(os.path.normpath(local_path))
    if remote_path == "~":
        return home
    if remote_path.startswith("~/"):
        return home.rstrip("/") + "/" + remote_path[2:].rstrip("/")
    if not remote_path.startswith("/"):
        return home.rstrip("/") + "/" + remote_path.rstrip("/")
    return remote_path.rstrip("/") or "/"


def _too_big(total: int, files: int, max_bytes: int) -> ApplicationError:
    return ApplicationError(
        "InvalidState",
        "Sync refused: %s in %d files would be sent, more than the limit of %s"
        % (_mib(total), files, _mib(max_bytes)),
        hint="Raise the setting %s, or add large files to .gitignore" % MAX_BYTES_SETTING,
    )


def _ssh_for_rsync(base: List[str]) -> str:
    return " ".join(shlex.quote(a) for a in base[:-1])


# ======================= rsync =======================


def _rsync_common(host: Any, local_path: str, remote: str, files_from: str) -> List[str]:
    """rsync of exactly the files `walk` chose (--files-from): the same .gitignore rules
    as the tar path, negations included, which rsync's own gitignore filter cannot do."""
    base = host.base_argv()
    return [
        "rsync",
        "-az",
        "--itemize-changes",
        "--out-format=%i %n",
        "--files-from=" + files_from,
        "-e",
        _ssh_for_rsync(base),
        local_path.rstrip("/") + "/",
        "%s:%s/" % (base[-1], remote),
    ]


def _rsync_supports_progress2() -> bool:
    try:
        out = subprocess.run(
            ["rsync", "--version"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, timeout=10
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return False
    m = re.search(rb"version\s+(\d+)\.(\d+)", out or b"")
    return bool(m) and (int(m.group(1)), int(m.group(2))) >= (3, 1)


def _run_rsync(
    argv: List[str], cancelled: Cancelled, on_line: Callable[[str], None]
) -> Tuple[int, str]:
    """Run rsync, feeding each stdout line (split at \\n and \\r) to on_line; kill on cancel."""
    proc = subprocess.Popen(
        argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    err_chunks: List[bytes] = []

    def read_err() -> None:
        assert proc.stderr is not None
        err_chunks.append(proc.stderr.read())

    t = threading.Thread(target=read_err, daemon=True)
    t.start()
    stop = threading.Event()

    def watch() -> None:
        while not stop.wait(0.1):
            if cancelled():
                try:
                    proc.kill()
                except OSError:
                    pass
                return

    w = threading.Thread(target=watch, daemon=True)
    w.start()
    stdout: Any = proc.stdout  # a BufferedReader: read1 returns what is there
    pending = b""
    try:
        while True:
            chunk = stdout.read1(65536)
            if not chunk:
                break
            pending += chunk
            parts = re.split(rb"[\r\n]", pending)
            pending = parts.pop()
            for part in parts:
                if part:
                    on_line(part.decode("utf-8", "replace"))
        if pending:
            on_line(pending.decode("utf-8", "replace"))
        code = proc.wait()
    finally:
        stop.set()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    t.join(5)
    if cancelled():
        raise RequestCancelled("sync cancelled")
    return code, b"".join(err_chunks).decode("utf-8", "replace")


def _rsync_failed(code: int, err: str) -> ApplicationError:
    return ApplicationError(
        "RemoteUnavailable", "rsync failed (exit %d)" % code, detail=err.strip()[-2000:] or None
    )


def _sent_file(line: str) -> Optional[str]:
    """The path of a file sent from an itemized line ("%i %n": "<f+++++++++ path")."""
    item, _, name = line.partition(" ")
    if name and len(item) >= 9 and item[0] == "<" and item[1] == "f":
        return name
    return None


def _sync_rsync(
    host: Any,
    local_path: str,
    remote: str,
    dry_run: bool,
    max_bytes: int,
    progress: Progress,
    cancelled: Cancelled,
) -> Tuple[int, int, List[str]]:
    with tempfile.NamedTemporaryFile(
        "w", encoding="utf-8", suffix=".files", prefix="gpuwb-sync-", delete=False
    ) as listing:
        for rel, _size, _mtime in walk(local_path):
            listing.write(rel + "\n")
    try:
        return _sync_rsync_listed(
            host,
            _rsync_common(host, local_path, remote, listing.name),
            dry_run,
            max_bytes,
            progress,
            cancelled,
        )
    finally:
        try:
            os.unlink(listing.name)
        except OSError:
            pass


def _sync_rsync_listed(
    host: Any,
    common: List[str],
    dry_run: bool,
    max_bytes: int,
    progress: Progress,
    cancelled: Cancelled,
) -> Tuple[int, int, List[str]]:
    names: List[str] = []
    stats: List[str] = []

    def first_line(line: str) -> None:
        name = _sent_file(line)
        if name is not None:
            names.append(name)
        else:
            stats.append(line)

    progress(0.0, "Counting files to send")
    code, err = _run_rsync(
        [*common[:1], "--dry-run", "--stats", *common[1:]], cancelled, first_line
    )
    if code != 0:
        raise _rsync_failed(code, err)
    total = 0
    for line in stats:
        m = _STATS_BYTES.search(line)
        if m:
            total = int(re.sub(r"[,.]", "", m.group(1)))
    if total > max_bytes:
        raise _too_big(total, len(names), max_bytes)
    if dry_run or not names:
        return len(names), total, names

    extra = ["--info=progress2"] if _rsync_supports_progress2() else []

    def second_line(line: str) -> None:
        m = _PROGRESS2.match(line)
        if m and not _sent_file(line):
            done = int(m.group(1).replace(",", ""))
            fraction = min(1.0, done / total) if total else int(m.group(2)) / 100.0
            progress(fraction, "%s of %s sent (%s)" % (_mib(done), _mib(total), m.group(3)))

    code, err = _run_rsync([*common[:1], *extra, *common[1:]], cancelled, second_line)
    if code != 0:
        raise _rsync_failed(code, err)
    progress(1.0, "Sent %d files" % len(names))
    return len(names), total, names


# ======================= tar =======================


def _remote_listing(host: Any, remote: str) -> Optional[Dict[str, Tuple[int, int]]]:
    """{relative path: (size, whole-second mtime)} of files already on the machine; None when
    the listing cannot be had (then everything is sent)."""
    q = _remote_shell_path(remote)
    result = host.run(
        "if [ -d %s ]; then cd %s && find . -type f -printf '%%P\\t%%s\\t%%T@\\n'; fi" % (q, q),
        timeout=120,
    )
    if result.returncode != 0:
        return None
    listing: Dict[str, Tuple[int, int]] = {}
    for line in _text(result.stdout).splitlines():
        parts = line.rsplit("\t", 2)
        if len(parts) != 3:
            continue
        try:
            listing[parts[0]] = (int(parts[1]), int(float(parts[2])))
        except ValueError:
            continue
    return listing


class _Counting:
    """File-like that forwards writes to a pipe and checks for cancellation."""

    def __init__(self, out: IO[bytes], cancelled: Cancelled) -> None:
        self._out = out
        self._cancelled = cancelled
        self.written = 0

    def write(self, data: bytes) -> int:
        if self._cancelled():
            raise RequestCancelled("sync cancelled")
        self._out.write(data)
        self.written += len(data)
        return len(data)

    def flush(self) -> None:
        self._out.flush()


def _sync_tar(
    host: Any,
    local_path: str,
    remote: str,
    dry_run: bool,
    max_bytes: int,
    progress: Progress,
    cancelled: Cancelled,
) -> Tuple[int, int, List[str]]:
    progress(0.0, "Counting files to send")
    files = walk(local_path)
    existing = _remote_listing(host, remote)
    if existing:
        files = [f for f in files if existing.get(f[0]) != (f[1], int(f[2]))]
    names = [f[0] for f in files]
    total = sum(f[1] for f in files)
    if cancelled():
        raise RequestCancelled("sync cancelled")
    if total > max_bytes:
        raise _too_big(total, len(files), max_bytes)
    if dry_run or not files:
        return len(files), total, names

    q = _remote_shell_path(remote)
    command = "mkdir -p %s && tar -xzf - -C %s --no-same-owner" % (q, q)
    proc = subprocess.Popen(
        [*host.base_argv(), command],
        stdin=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    assert proc.stdin is not None and proc.stderr is not None
    err: List[bytes] = []
    stderr = proc.stderr
    reader = threading.Thread(target=lambda: err.append(stderr.read()), daemon=True)
    reader.start()
    sink = _Counting(proc.stdin, cancelled)
    done = 0
    try:
        with tarfile.open(fileobj=sink, mode="w|gz", dereference=True) as archive:  # type: ignore[arg-type]
            for rel, size, _ in files:
                path = os.path.join(local_path, *rel.split("/"))
                try:
                    info = archive.gettarinfo(path, arcname=rel)
                    info.uid = info.gid = 0
                    info.uname = info.gname = ""
                    with open(path, "rb") as f:
                        archive.addfile(info, f)
                except FileNotFoundError:
                    continue  # removed meanwhile
                done += size
                progress(
                    min(1.0, done / total) if total else 1.0,
                    "%s of %s sent" % (_mib(done), _mib(total)),
                )
        proc.stdin.close()
    except RequestCancelled:
        proc.kill()
        proc.wait()
        raise
    except BrokenPipeError:
        pass
    finally:
        if cancelled() and proc.poll() is None:
            proc.kill()
    try:
        code = proc.wait(timeout=600)
    except subprocess.TimeoutExpired:
        proc.kill()
        code = proc.wait()
    reader.join(5)
    if code != 0:
        raise ApplicationError(
            "RemoteUnavailable",
            "Unpacking on the machine failed (exit %d)" % code,
            detail=b"".join(err).decode("utf-8", "replace").strip()[-2000:] or None,
        )
    progress(1.0, "Sent %d files" % len(files))
    return len(files), total, names


# ======================= entry point =======================


def sync(
    host: Any,
    local_path: str,
    remote_path: Optional[str],
    dry_run: bool,
    max_bytes: int = DEFAULT_MAX_BYTES,
    progress: Progress = _no_progress,
    cancelled: Cancelled = _never,
    method: Optional[str] = None,
) -> Dict[str, Any]:
    """Send `local_path` to `remote_path` (default ~/gpu-workbench/<folder name>) on `host`.

    `method`: None picks rsync when both sides have it, else tar; "rsync" or "tar" forces one.
    Returns RemoteSyncResult without `machine`.
    """
    started = time.monotonic()
    local_path = os.path.abspath(os.path.expanduser(local_path))
    if not os.path.isdir(local_path):
        raise ApplicationError("NotFound", "Folder not found: %s" % local_path)
    if method not in (None, "rsync", "tar"):
        raise ValueError("method must be rsync or tar")
    home, remote_rsync = _probe(host)
    remote = _resolve(remote_path, local_path, home)
    if method is None:
        method = "rsync" if remote_rsync and shutil.which("rsync") else "tar"
    elif method == "rsync" and not (remote_rsync and shutil.which("rsync")):
        raise ApplicationError(
            "InvalidState",
            "rsync is not installed %s" % ("here" if remote_rsync else "on the machine"),
        )
    if method == "rsync":
        parent = remote.rsplit("/", 1)[0] or "/"
        made = host.run("mkdir -p %s" % _remote_shell_path(parent), timeout=30)
        if made.returncode != 0:
            raise ApplicationError(
                "RemoteUnavailable",
                "Cannot create %s on the machine" % parent,
                detail=_text(made.stderr).strip() or None,
            )
        files, total, names = _sync_rsync(
            host, local_path, remote, dry_run, max_bytes, progress, cancelled
        )
    else:
        files, total, names = _sync_tar(
            host, local_path, remote, dry_run, max_bytes, progress, cancelled
        )
    return {
        "localPath": local_path,
        "remotePath": remote,
        "method": method,
        "files": files,
        "bytes": total,
        "sample": names[:SAMPLE_SIZE],
        "dryRun": bool(dry_run),
        "durationMs": (time.monotonic() - started) * 1000.0,
    }
