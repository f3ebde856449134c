"""Compute behind the latent notebook(s): pure functions returning arrays/trajectories."""

from __future__ import annotations

__all__: list[str] = []
