"""Kernels: detached worker processes (worker.py), their folders, and the backend's manager."""

from __future__ import annotations
