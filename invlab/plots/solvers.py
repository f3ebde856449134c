"""Plots for exact inversion's inner solvers: residual curves, cost vs accuracy, NFE per step."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np

from .core import _np, _positive, save_figure, series_styles

__all__ = ["plot_inner_residuals", "plot_residual_fans", "plot_tradeoff", "plot_nfe_breakdown", "plot_singular_values"]


def _floor(a) -> np.ndarray:
    return np.clip(_np(a), 1e-300, None)


def plot_inner_residuals(curves: Mapping[str, Sequence[float]], tol: float | Mapping[str, float] | None = None,
                         highlight: str | None = None, title: str = "residual of one step vs inner iteration",
                         ax=None, save: str | Path | None = None):
    """Residual ||Phi(y_k) - x_t|| after each inner iteration k, one line per solver.

    ``tol``: a tolerance line (one number, or one per solver name). ``highlight``: draw that
    solver bold and the others faint. Returns (figure, the highlighted curve or all concatenated).
    """
    fig, ax = (ax.figure, ax) if ax is not None else plt.subplots(figsize=(6.4, 3.6))
    drawn = []
    styles = series_styles(list(curves))
    for k, (name, c) in enumerate(curves.items()):
        c = _floor(c)
        bold = highlight is None or name == highlight
        ax.semilogy(np.arange(len(c)), c, marker="o", ms=3 if bold else 2, lw=2.0 if bold else 1.0,
                    alpha=1.0 if bold else 0.35, color=styles[name]["color"], label=name)
        if bold:
            drawn.append(c)
        if isinstance(tol, Mapping) and name in tol and bold:
            ax.axhline(tol[name], color=styles[name]["color"], lw=0.8, ls=":")
    if tol is not None and not isinstance(tol, Mapping):
        ax.axhline(tol, color="k", lw=0.8, ls=":", label=f"tol {tol:g}")
    ax.set_xlabel("inner iteration (evaluations of Phi after the initial guess)")
    ax.set_ylabel("residual")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    save_figure(fig, save)
    return fig, (np.concatenate(drawn) if drawn else np.zeros(1))


def plot_residual_fans(fans: Mapping[str, Sequence[Sequence[float]]], tol: Mapping[str, float] | None = None,
                       ylabel: Mapping[str, str] | None = None, save: str | Path | None = None,
                       suptitle: str | None = None):
    """One panel per solver: every inversion step's residual curve, coloured by step
    (dark = first step, near the clean image; light = last, near the noise)."""
    names = list(fans)
    fig, axes = plt.subplots(1, len(names), figsize=(3.3 * len(names), 3.2), squeeze=False)
    cmap = plt.get_cmap("viridis")
    for ax, name in zip(axes[0], names):
        curves = fans[name]
        n = max(len(curves) - 1, 1)
        for i, c in enumerate(curves):
            c = _floor(c)
            ax.semilogy(np.arange(len(c)), c, lw=0.9, color=cmap(i / n), alpha=0.8)
        if tol and name in tol:
            ax.axhline(tol[name], color="r", lw=0.8, ls=":")
        its = [len(c) - 1 for c in curves]
        ax.set_title(f"{name}\n(iterations {min(its)}-{max(its)}, mean {np.mean(its):.1f})", fontsize=9)
        ax.set_xlabel("inner iteration")
        ax.grid(True, which="both", alpha=0.3)
        ax.set_ylabel((ylabel or {}).get(name, "residual (RMS)"), fontsize=8)
    sm = plt.cm.ScalarMappable(cmap=cmap, norm=plt.Normalize(1, max(len(c) for c in fans.values())))
    fig.colorbar(sm, ax=axes[0].tolist(), fraction=0.02, pad=0.01, label="inversion step k")
    if suptitle:
        fig.suptitle(suptitle, fontsize=10, y=1.04)
    save_figure(fig, save)
    return fig


def plot_tradeoff(points: Mapping[str, tuple[Sequence[float], Sequence[float]]],
                  labels: Mapping[str, Sequence[str]] | None = None, baselines: Mapping[str, float] | None = None,
                  title: str = "accuracy vs cost", xlabel: str = "NFE per inversion step",
                  ylabel: str = "final noise NMSE", save: str | Path | None = None):
    """Error vs cost, one line per solver: ``points[name] = (costs, errors)``; ``labels[name]``
    annotates each point (e.g. its tolerance); ``baselines`` draws horizontal reference lines."""
    fig, ax = plt.subplots(figsize=(6.6, 4.0))
    styles = series_styles(list(points))
    for k, (name, (cost, err)) in enumerate(points.items()):
        cost, err = _np(cost), _positive(err)
        c = styles[name]["color"]
        ax.semilogy(cost, err, marker="o", ms=4, lw=1.5, color=c, label=name)
        for j, txt in enumerate((labels or {}).get(name, [])):
            ax.annotate(txt, (cost[j], err[j]), textcoords="offset points", xytext=(4, 3), fontsize=6, color=c)
    for j, (name, v) in enumerate((baselines or {}).items()):
        ax.axhline(v, color="gray", ls=["--", ":", "-."][j % 3], lw=1.0, label=name)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    save_figure(fig, save)
    return fig


def plot_nfe_breakdown(parts: Mapping[str, Sequence[float]], order: Sequence[int] | None = None,
                       x_labels: Sequence[float] | None = None, title: str = "where the NFE of each step go",
                       save: str | Path | None = None):
    """Stacked bars per inversion step (``parts[name]`` = NFE per step); ``order`` is written
    above each bar (the sampler's order on the step being inverted)."""
    fig, ax = plt.subplots(figsize=(6.6, 3.4))
    n = len(next(iter(parts.values())))
    xs = np.arange(1, n + 1)
    bottom = np.zeros(n)
    styles = series_styles(list(parts))  # parts are not methods: colours apart from the methods'
    for name, v in parts.items():
        v = _np(v)
        ax.bar(xs, v, bottom=bottom, label=name, color=styles[name]["color"])
        bottom += v
    if order is not None:
        for x, o, b in zip(xs, order, bottom):
            ax.text(x, b, f"o{int(o)}", ha="center", va="bottom", fontsize=7)
    ax.set_xticks(xs, [str(x) if n <= 25 or x % 5 == 0 or x == 1 else "" for x in xs], fontsize=7)
    ax.set_xlabel("inversion step k (1 = the step from the clean end; o1/o2: order of the sampling step inverted)",
                  fontsize=8)
    if x_labels is not None:  # the timestep each step reaches, on top
        top = ax.twiny()
        top.set_xlim(ax.get_xlim())
        ks = np.unique(np.linspace(1, n, min(6, n)).round().astype(int))
        top.set_xticks(ks, [f"{x_labels[k - 1]:g}" for k in ks], fontsize=7)
        top.set_xlabel("timestep reached", fontsize=8)
    ax.set_ylabel("NFE")
    ax.set_title(title)
    ax.legend(fontsize=8)
    ax.set_ylim(0, bottom.max() * 1.15)
    save_figure(fig, save)
    return fig


def plot_singular_values(curves: Mapping[str, Sequence[float]], title: str = "", save: str | Path | None = None):
    """Sorted singular values (log scale), one line per step/model: how well-conditioned a step is."""
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    for name, sv in curves.items():
        ax.semilogy(np.arange(1, len(sv) + 1), _positive(sv), label=name)
    ax.set_xlabel("index (largest first)")
    ax.set_ylabel("singular value of dPhi/dy")
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, save)
    return fig
