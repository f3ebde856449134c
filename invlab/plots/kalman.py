"""Plots for the Kalman-view notebook: gains per step, innovations, errors before/after the blend."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import MaxNLocator

from .core import _np, _positive, save_figure, series_styles

__all__ = ["plot_blend_errors", "plot_final_errors", "plot_gains"]


def plot_gains(steps: Sequence[int], gains: Mapping[str, Sequence[float]], spread: Mapping[str, tuple] | None = None,
               save: str | Path | None = None, title: str = "weight on the prediction per blended step"):
    """eta per step for each gain rule (left axis), with the Kalman gain K = 1 - eta on the right
    axis. ``spread[name] = (lo, hi)`` arrays shade a per-sample range."""
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    styles = series_styles(list(gains))
    for name, g in gains.items():
        ax.plot(steps, _np(g), marker="o", ms=3, label=name, **styles[name])
        if spread and name in spread:
            lo, hi = spread[name]
            ax.fill_between(steps, _np(lo), _np(hi), alpha=0.2, color=styles[name]["color"])
    ax.axhline(1.0, color="k", lw=0.8, ls=":")
    ax.set_xlabel("inversion step k")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel("eta (weight on the naive prediction)")
    sec = ax.secondary_yaxis("right", functions=(lambda e: 1 - e, lambda k: 1 - k))
    sec.set_ylabel("K = 1 - eta (gain on the measurement)")
    ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    save_figure(fig, save)
    return fig


def plot_blend_errors(steps: Sequence[int], innovation: Sequence[float], errors: Mapping[str, Sequence[float]],
                      save: str | Path | None = None, suptitle: str | None = None):
    """Left: the innovation's relative size ||y - x_bar|| / ||x_bar|| per step. Right: NMSE to the
    true latent of the prediction, the measurement and the blended outputs (log scale)."""
    fig, (a, b) = plt.subplots(1, 2, figsize=(10.5, 3.6))
    a.plot(steps, _np(innovation), marker="o", ms=3, color="tab:purple")
    a.set_xlabel("inversion step k")
    a.xaxis.set_major_locator(MaxNLocator(integer=True))
    a.set_ylabel("||innovation|| / ||prediction||")
    a.set_title("innovation size (= the naive step's relative length)", fontsize=9)
    a.grid(alpha=0.3)
    styles = series_styles(list(errors))
    for name, e in errors.items():
        b.semilogy(steps, _positive(e), marker="o", ms=3, label=name, **styles[name])
    b.set_xlabel("inversion step k")
    b.xaxis.set_major_locator(MaxNLocator(integer=True))
    b.set_ylabel("NMSE to the true latent")
    b.set_title("error before and after the blend", fontsize=9)
    b.grid(True, which="both", alpha=0.3)
    b.legend(fontsize=8)
    if suptitle:
        fig.suptitle(suptitle, fontsize=10)
    fig.tight_layout()
    save_figure(fig, save)
    return fig


def plot_final_errors(values: Mapping[str, float], save: str | Path | None = None,
                      title: str = "final noise NMSE", ax=None):
    """One dot per run on a log axis, its value written beside it (a dot chart, not log-scale
    bars: a bar's length on a log axis depends on where the axis happens to start)."""
    fig, ax = (ax.figure, ax) if ax is not None else plt.subplots(figsize=(5.2, 0.45 * len(values) + 1.4))
    names = list(values)
    v = np.array([float(values[k]) for k in names])
    styles = series_styles(names)
    for y, (name, x) in enumerate(zip(names, v)):
        ax.plot([x], [y], "o", ms=8, color=styles[name]["color"])
        ax.annotate(f"{x:.3g}", (x, y), textcoords="offset points", xytext=(8, 0), va="center", fontsize=8)
    ax.set_yticks(range(len(names)), names)
    ax.invert_yaxis()
    ax.set_xscale("log")
    pos = v[np.isfinite(v) & (v > 0)]
    if len(pos):
        lo, hi = np.log10(pos.min()), np.log10(pos.max())
        pad = max(0.15 * (hi - lo), 0.1)
        ax.set_xlim(10 ** (lo - pad), 10 ** (hi + 2 * pad))
    ax.set_ylim(len(names) - 0.5, -0.5)
    ax.set_xlabel("NMSE to the true z_T (log scale)")
    ax.set_title(title, fontsize=10)
    ax.grid(axis="x", which="both", alpha=0.3)
    fig.tight_layout()
    save_figure(fig, save)
    return fig
