"""Entry point: ``python -m gpu_workbench`` serves JSON-RPC on stdio."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from typing import BinaryIO, List, Optional, Tuple

from . import __version__


def _claim_stdio() -> Tuple[BinaryIO, BinaryIO]:
    """Take private binary handles on stdin/stdout and point fds 0/1 elsewhere.

    Only the protocol writer may touch stdout: fd 1 becomes a copy of stderr, so a stray
    print() (or a C library writing to fd 1) lands in the log instead of corrupting the
    framing; fd 0 becomes /dev/null so child processes cannot steal our input.
    """
    in_fd = os.dup(0)
    out_fd = os.dup(1)
    os.dup2(2, 1)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    sys.stdout = sys.stderr
    if sys.platform == "win32":
        import msvcrt

        # No CRLF translation: Content-Length counts exact bytes.
        msvcrt.setmode(in_fd, os.O_BINARY)  # type: ignore[attr-defined]
        msvcrt.setmode(out_fd, os.O_BINARY)  # type: ignore[attr-defined]
    return os.fdopen(in_fd, "rb"), os.fdopen(out_fd, "wb")


def _ignore_signal(signum: int, frame: object) -> None:
    """SIGINT handler of the backend: nothing (see main)."""


def main(argv: Optional[List[str]] = None) -> int:
    """Parse arguments and run the server; returns only for --version/--help."""
    parser = argparse.ArgumentParser(
        prog="gpu_workbench", description="GPU Workbench backend (JSON-RPC over stdio)"
    )
    parser.add_argument("--version", action="version", version=__version__)
    parser.parse_args(argv)

    # Record the parent before anything slow happens, so its death is detectable.
    initial_ppid = os.getppid()
    # A server ends by `shutdown`/`exit`, end of input or its parent's death; never by the
    # Ctrl-C a terminal sends to the CLI's whole process group (the CLI then still needs
    # the backend to cancel requests and stop watches cleanly). A handler, not SIG_IGN: an
    # ignored signal stays ignored in children after exec, and kernels must get SIGINT.
    signal.signal(signal.SIGINT, _ignore_signal)
    input_stream, output_stream = _claim_stdio()

    from . import log
    from .parent_watch import ParentWatch
    from .server import Server

    log.configure(os.environ.get(log.LOG_LEVEL_ENV))
    watch = ParentWatch(initial_ppid=initial_ppid)
    watch.start()
    code = Server(parent_watch=watch).run(input_stream, output_stream)
    try:
        output_stream.flush()
        sys.stderr.flush()
    except Exception:
        pass
    checks = sys.modules.get("gpu_workbench.gpu.checks")
    if checks is not None:
        checks.kill_running()  # a cancelled GPU check's benchmark must not outlive us
    # os._exit: do not wait for handler threads still running (e.g. a cancelled slow request).
    os._exit(code)
    return code  # unreachable; keeps type checkers happy


if __name__ == "__main__":
    sys.exit(main())
