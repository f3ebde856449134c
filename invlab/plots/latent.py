"""Plots for the latent notebook(s)."""

from __future__ import annotations

__all__: list[str] = []
