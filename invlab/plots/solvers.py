"""Plots for the solvers notebook(s)."""

from __future__ import annotations

__all__: list[str] = []
