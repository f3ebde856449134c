"""Plots for the kalman notebook(s)."""

from __future__ import annotations

__all__: list[str] = []
