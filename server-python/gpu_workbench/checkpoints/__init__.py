"""Checkpoint inspection without loading tensors or running pickle code.

Readers (one module per format) fill a `model.Reading`; `readers.inspect` summarizes it,
`stats` reads tensor values straight from their bytes, `diff` compares two checkpoints.
Standard library only; numpy is used for statistics when the backend's Python has it.
"""

from __future__ import annotations
