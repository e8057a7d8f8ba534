# GPU Workbench quickstart.
#
# Each "# %%" line starts a cell. The GPU Workbench status bar item (bottom left) shows
# whether the backend is ready; click it for the logs, or run "GPU Workbench: Show
# Backend Status" from the Command Palette.
#
# Run every cell on a persistent kernel from a terminal in the repository:
#     node dist/cli.js run examples/quickstart.py

# %% Imports and a first result
import platform
import sys

print(f"Python {platform.python_version()} at {sys.executable}")

# %% Is a GPU visible?
import shutil
import subprocess

if shutil.which("nvidia-smi"):
    subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv"], check=False)
else:
    print("No nvidia-smi on this machine: run the cells on a GPU VM instead.")

# %% A plot (matplotlib when installed, else a small PNG drawn with the standard library)
try:
    import math

    import matplotlib.pyplot as plt

    xs = [i / 10 for i in range(100)]
    plt.plot(xs, [math.sin(x) for x in xs])
    plt.title("sin(x)")
    plt.show()
except ImportError:
    import struct
    import zlib

    class Gradient:
        def _repr_png_(self, width=96, height=32):
            rows = b"".join(
                b"\x00" + bytes(c for x in range(width) for c in (x * 2, y * 8, 160))
                for y in range(height)
            )

            def chunk(kind, data):
                crc = zlib.crc32(kind + data) & 0xFFFFFFFF
                return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

            header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
            idat = chunk(b"IDAT", zlib.compress(rows))
            return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + idat + chunk(b"IEND", b"")

    display(Gradient())  # noqa: F821 - display() is a builtin in GPU Workbench kernels

# %% A small computation
squares = [n * n for n in range(10)]
sum(squares)
