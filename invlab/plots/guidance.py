"""Plots for the guidance-sensitivity notebook."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np

from .core import _np, _positive, save_figure, series_styles

__all__ = ["plot_guidance_errors", "plot_reconstructions", "plot_convergence_map"]


def plot_guidance_errors(guidances: Sequence[float], panels: Mapping[str, Mapping[str, Sequence[float]]],
                         marks: Mapping[str, float | None] | None = None, save: str | Path | None = None,
                         suptitle: str | None = None, max_decades: float = 8.0):
    """One log-scale panel per quantity (e.g. "noise NMSE"), a line per method, x = guidance w.
    ``marks[panel]``: a w to mark with a vertical line (e.g. where a solver stops converging).
    When the methods sit more than ``max_decades`` decades apart (naive ~1e-2, exact ~1e-17), each
    quantity gets two panels, one above the other, each spanning only the decades its methods need."""
    from .core import _decade_groups, _span_at_least

    names = list(dict.fromkeys(n for series in panels.values() for n in series))
    pooled = {n: np.concatenate([_positive(series[n]) for series in panels.values() if n in series]) for n in names}
    groups = _decade_groups(pooled, max_decades)
    styles = series_styles(names)
    fig, axes = plt.subplots(len(groups), len(panels), figsize=(4.6 * len(panels), 3.6 if len(groups) == 1 else 5.6),
                             squeeze=False, sharex=True)
    for col, (title, series) in enumerate(panels.items()):
        for row, group in enumerate(groups):
            ax = axes[row, col]
            for name in group:
                if name in series:
                    ax.semilogy(guidances, _positive(series[name]), marker="o", label=name, **styles[name])
            if marks and marks.get(title) is not None:
                ax.axvline(marks[title], color="k", ls="--", lw=0.8, label="exact solver first fails to converge")
            if len(groups) > 1:
                _span_at_least(ax, [_positive(series[n]) for n in group if n in series])
            if row == 0:
                ax.set_title(title)
            if row == len(groups) - 1:
                ax.set_xlabel("guidance scale w")
            ax.grid(True, which="both", alpha=0.3)
            ax.legend(fontsize=8)
    if suptitle or len(groups) > 1:
        extra = "(two rows: the methods sit too many decades apart for one axis)" if len(groups) > 1 else ""
        fig.suptitle("\n".join(t for t in (suptitle, extra) if t), fontsize=10)
    fig.tight_layout()
    save_figure(fig, save)
    return fig


def plot_reconstructions(original, reconstructions: Mapping[str, object], title: str = "",
                         errors: Mapping[str, float] | None = None, save: str | Path | None = None,
                         vrange=(-1.2, 1.2)):
    """Rows: the original samples, then each method's reconstruction. Returns (figure, drawn array)."""
    rows = {"original": _np(original), **{k: _np(v) for k, v in reconstructions.items()}}
    n = rows["original"].shape[0]
    fig, axes = plt.subplots(len(rows), n, figsize=(1.3 * n + 1.0, 1.3 * len(rows)), squeeze=False)
    for r, (name, arr) in enumerate(rows.items()):
        for c in range(n):
            ax = axes[r, c]
            ax.imshow(arr[c, 0], cmap="gray", vmin=vrange[0], vmax=vrange[1])
            ax.set_xticks([])
            ax.set_yticks([])
        label = name if not errors or name not in errors else f"{name}\nNMSE {errors[name]:.1e}"
        axes[r, 0].set_ylabel(label, fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    save_figure(fig, save)
    return fig, np.concatenate([a.ravel() for a in rows.values()])


def plot_convergence_map(cmap: Mapping[str, object], save: str | Path | None = None, suptitle: str | None = None):
    """Two heat maps over (steps, guidance) from :func:`invlab.studies.guidance.convergence_map`:
    the fraction of converged solver steps, and exact inversion's noise NMSE over naive's.
    Perceptually uniform, colour-blind-safe maps (viridis, cividis), never red-green."""
    steps, ws = cmap["steps"], cmap["guidances"]
    conv = _np(cmap["converged"])
    gain = np.log10(np.clip(_np(cmap["exact"]), 1e-300, None)) - np.log10(np.clip(_np(cmap["naive"]), 1e-300, None))
    fig, axes = plt.subplots(1, 2, figsize=(10, 0.55 * len(steps) + 2.2))
    panels = ((conv, "fraction of steps converged", "viridis", 0.5, 1, "{:.0%}"),
              (gain, "log10(exact NMSE / naive NMSE)", "cividis", min(-8.0, float(gain.min())), 0, "{:.1f}"))
    for ax, (data, title, cm, lo, hi, fmt) in zip(axes, panels):
        im = ax.imshow(data, cmap=cm, vmin=lo, vmax=hi, aspect="auto")
        for i in range(len(steps)):
            for j in range(len(ws)):
                dark = (data[i, j] - lo) / (hi - lo) < 0.55  # white text on the dark end of the map
                ax.text(j, i, fmt.format(data[i, j]), ha="center", va="center", fontsize=8,
                        color="w" if dark else "k")
        ax.set_xticks(range(len(ws)), [f"{w:g}" for w in ws])
        ax.set_yticks(range(len(steps)), [str(n) for n in steps])
        ax.set_xlabel("guidance scale w")
        ax.set_ylabel("sampling steps")
        ax.set_title(title, fontsize=10)
        fig.colorbar(im, ax=ax, shrink=0.8)
    if suptitle:
        fig.suptitle(suptitle, fontsize=10)
    fig.tight_layout()
    save_figure(fig, save)
    return fig
