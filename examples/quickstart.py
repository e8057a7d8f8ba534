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

# %% A small computation
squares = [n * n for n in range(10)]
sum(squares)
