"""Build and script the stand-in libnvidia-ml (fake_nvml.c) and nvidia-smi (fake_nvidia_smi.c).

Standard library only, so it works as a helper module for any test and as a CLI:

    python3 server-python/tests/gpu/fake_nvml.py build --out DIR [--conf-compute] [-D FLAG]

prints DIR, which then holds libnvidia-ml.so.1 and nvidia-smi. Run a process with
LD_LIBRARY_PATH=DIR (read at process start, so a fresh process) and
GPUWB_FAKE_NVML_SCRIPT=/path/to/script; the script format is described at the top of
fake_nvml.c. `write_script` replaces a script atomically so a running process picks up the
change on its next NVML call.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, Iterable, List, NoReturn, Optional, Sequence, Union

HERE = Path(__file__).resolve().parent
LIB_SOURCE = HERE / "fake_nvml.c"
SMI_SOURCE = HERE / "fake_nvidia_smi.c"
LIB_NAME = "libnvidia-ml.so.1"
SMI_NAME = "nvidia-smi"
STAMP_NAME = ".fake_nvml.stamp"
StrPath = Union[str, "os.PathLike[str]"]


class BuildUnavailable(RuntimeError):
    """No C compiler here (tests skip on it)."""


def _flags(conf_compute: bool, defines: Iterable[str]) -> List[str]:
    flags = ["-DFAKE_CONF_COMPUTE"] if conf_compute else []
    for define in defines:
        flag = define if define.startswith("-D") else "-D" + define
        if flag not in flags:
            flags.append(flag)
    return sorted(flags)


def build(
    out_dir: StrPath,
    conf_compute: bool = False,
    defines: Sequence[str] = (),
) -> Path:
    """Compile the stand-in library and nvidia-smi into out_dir; return out_dir.

    `defines` are extra fake_nvml.c flags (e.g. "FAKE_OLD_THROTTLE_ONLY"). Skips the
    calling test (pytest.skip) when gcc is missing; outside pytest raises BuildUnavailable.
    Cached: nothing is recompiled while the sources and flags are unchanged.
    """
    out = Path(out_dir).resolve()
    flags = _flags(conf_compute, defines)
    gcc = shutil.which("gcc") or shutil.which("cc")
    if gcc is None:
        _skip("gcc is not installed: cannot build the stand-in libnvidia-ml")
    digest = hashlib.sha256()
    for source in (LIB_SOURCE, SMI_SOURCE):
        digest.update(source.read_bytes())
    digest.update(" ".join(flags).encode())
    stamp = out / STAMP_NAME
    lib, smi = out / LIB_NAME, out / SMI_NAME
    if (
        lib.exists()
        and smi.exists()
        and stamp.exists()
        and stamp.read_text().strip() == digest.hexdigest()
    ):
        return out
    out.mkdir(parents=True, exist_ok=True)
    # Build beside the targets and rename into place, so a concurrent user of the same
    # directory never sees a half-written library.
    with tempfile.TemporaryDirectory(dir=str(out)) as tmp:
        tmp_lib = Path(tmp) / LIB_NAME
        tmp_smi = Path(tmp) / SMI_NAME
        _run(
            [
                gcc,
                "-shared",
                "-fPIC",
                "-O2",
                *flags,
                "-o",
                str(tmp_lib),
                str(LIB_SOURCE),
                "-lpthread",
            ]
        )
        os.replace(str(tmp_lib), str(lib))
        _run(
            [
                gcc,
                "-O2",
                "-o",
                str(tmp_smi),
                str(SMI_SOURCE),
                "-L" + str(out),
                "-l:" + LIB_NAME,
                "-Wl,-rpath," + str(out),
                "-ldl",
            ]
        )
        os.replace(str(tmp_smi), str(smi))
    stamp.write_text(digest.hexdigest() + "\n")
    return out


def _run(command: List[str]) -> None:
    proc = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        raise RuntimeError(
            "build failed: %s\n%s" % (" ".join(command), proc.stdout.decode(errors="replace"))
        )


def _skip(reason: str) -> NoReturn:
    if "pytest" in sys.modules:
        import pytest

        pytest.skip(reason)
    raise BuildUnavailable(reason)


def write_script(path: StrPath, text: str) -> Path:
    """Replace the script at `path` atomically (write + rename) with a newer mtime than the
    file it replaces, so the library sees the change even within one clock tick."""
    target = Path(path)
    try:
        previous = target.stat().st_mtime_ns
    except OSError:
        previous = 0
    tmp = target.with_name(".%s.%d.tmp" % (target.name, os.getpid()))
    tmp.write_text(text)
    mtime = max(time.time_ns(), previous + 1_000_000)
    os.utime(str(tmp), ns=(mtime, mtime))
    os.replace(str(tmp), str(target))
    return target


def env(lib_dir: StrPath, script: StrPath, **extra: str) -> Dict[str, str]:
    """An environment for a process that should load the stand-in: LD_LIBRARY_PATH first,
    the script named, and the server package importable."""
    result = dict(os.environ)
    result["LD_LIBRARY_PATH"] = str(lib_dir)
    result["GPUWB_FAKE_NVML_SCRIPT"] = str(script)
    result["PYTHONPATH"] = str(HERE.parent.parent)
    result.pop("GPUWB_FAKE_NVML_CALLS", None)
    result.update(extra)
    return result


def gpu_line(index: int, **values: object) -> str:
    """A `gpu` script line, e.g. gpu_line(0, util=50, lost=1)."""
    return "gpu %d %s" % (index, " ".join("%s=%s" % kv for kv in values.items()))


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="compile libnvidia-ml.so.1 and nvidia-smi into --out")
    b.add_argument("--out", required=True)
    b.add_argument("--conf-compute", action="store_true", help="-DFAKE_CONF_COMPUTE")
    b.add_argument("-D", dest="defines", action="append", default=[], help="another flag")
    args = parser.parse_args(argv)
    try:
        out = build(args.out, conf_compute=args.conf_compute, defines=args.defines)
    except (BuildUnavailable, RuntimeError) as exc:
        print(exc, file=sys.stderr)
        return 1
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
