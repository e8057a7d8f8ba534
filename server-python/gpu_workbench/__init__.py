"""GPU Workbench backend: a JSON-RPC 2.0 server spoken over stdio with LSP framing."""

from __future__ import annotations

__version__ = "0.1.0"
