"""Figures of the flow-matching studies."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import matplotlib.pyplot as plt

from .core import save_figure

__all__ = ["plot_time_grid_audit"]

_STYLE = {"consistent": {"color": "#0072B2", "marker": "o", "ls": "-"},
          "reference": {"color": "#D55E00", "marker": "s", "ls": "--"}}


def plot_time_grid_audit(rows: Sequence[dict[str, Any]], title: str = "", save: str | Path | None = None):
    """Noise NMSE against the ODE's exact inverse, per step count, one line per time grid."""
    if not rows:
        raise ValueError("no rows to plot: pass the rows of invlab.studies.flowmatch.time_grid_audit")
    fig, ax = plt.subplots(figsize=(6.0, 3.6))
    for grid in sorted({r["time_grid"] for r in rows}):
        rs = sorted((r for r in rows if r["time_grid"] == grid), key=lambda r: r["steps"])
        label = {"consistent": "consistent: network fed the state's own sigma",
                 "reference": "reference pipeline: linear time i/(N+1), shifted increments"}.get(grid, grid)
        ax.loglog([r["steps"] for r in rs], [r["noise_nmse"] for r in rs], label=label, **_STYLE.get(grid, {}))
    ax.set_xlabel("inversion steps N")
    ax.set_ylabel("noise NMSE vs the ODE's exact inverse")
    ax.set_title(title or "RF-Inversion's two public time grids", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, save)
    return fig
