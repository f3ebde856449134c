"""Plots for the flows notebook(s)."""

from __future__ import annotations

__all__: list[str] = []
