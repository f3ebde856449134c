"""The bug gallery (notebook 14): each bug's error curves next to the correct loop's."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np

from .core import _np, save_figure

__all__ = ["plot_bug_gallery", "plot_bug_residuals", "plot_swap_in"]

CORRECT = "0.45"
BUGGY = "#D55E00"      # vermillion (colour-blind safe against the grey)


def _reference(runs: Mapping[str, Any], name: str):
    """The correct run a bug is compared with: the latent model's, or invlab's DPM inverse, or the pixel model's."""
    run = runs[name]
    if run.bug.needs == "latent":
        return runs.get("none (latent)"), "correct loop (latent model)"
    if "reference_accumulated" in run.extras:
        return None, "correct inverse of DPM-Solver++"
    return runs.get("none"), "correct loop"


def plot_bug_gallery(runs: Mapping[str, Any], names: Sequence[str] | None = None, ncols: int = 4,
                     suptitle: str = "", save: str | Path | None = None):
    """One panel per bug: NMSE to the true latent after each inversion step (solid: accumulated;
    dashed: one step started from the truth, the local error), the bug in vermillion over the
    correct run in grey. Both axes shared in spirit: log error, steps 1..N."""
    names = [n for n in (names or runs) if not n.startswith("none")]
    if not names:
        raise ValueError("no bug runs to plot (only the correct loops were given)")
    nrows = int(np.ceil(len(names) / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.3 * ncols, 2.7 * nrows), squeeze=False)
    for ax in axes.flat[len(names):]:
        ax.axis("off")
    for ax, name in zip(axes.flat, names):
        run = runs[name]
        ref, ref_label = _reference(runs, name)
        xs = np.arange(1, len(run.accumulated) + 1)
        if ref is not None:
            ax.semilogy(xs, np.clip(_np(ref.accumulated), 1e-20, None), color=CORRECT, lw=1.4)
            ax.semilogy(xs, np.clip(_np(ref.local), 1e-20, None), color=CORRECT, lw=1.0, ls="--")
        else:
            ax.semilogy(xs, np.clip(_np(run.extras["reference_accumulated"]), 1e-20, None), color=CORRECT, lw=1.4)
        ax.semilogy(xs, np.clip(_np(run.accumulated), 1e-20, None), color=BUGGY, lw=1.6)
        loc = _np(run.local)
        if np.isfinite(loc).any():
            ax.semilogy(xs, np.clip(loc, 1e-20, None), color=BUGGY, lw=1.0, ls="--")
        ax.set_title(run.bug.title, fontsize=8.5)
        ax.grid(True, which="major", alpha=0.3)
        ax.tick_params(labelsize=7)
    for ax in axes[-1]:
        ax.set_xlabel("inversion step", fontsize=8)
    for ax in axes[:, 0]:
        ax.set_ylabel("NMSE to the true latent", fontsize=8)
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color=BUGGY, lw=1.6, label="the bug: accumulated"),
               Line2D([], [], color=BUGGY, lw=1.0, ls="--", label="the bug: local (one step from the truth)"),
               Line2D([], [], color=CORRECT, lw=1.4, label="correct: accumulated"),
               Line2D([], [], color=CORRECT, lw=1.0, ls="--", label="correct: local")]
    fig.legend(handles=handles, loc="lower center", ncol=4, fontsize=8, frameon=False)
    if suptitle:
        fig.suptitle(suptitle, fontsize=10)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    save_figure(fig, save)
    return fig


def plot_bug_residuals(runs: Mapping[str, Any], names: Sequence[str] | None = None, suptitle: str = "",
                       save: str | Path | None = None):
    """The ground-truth-free signal: RMS of (correct sampling step from the inverted state) minus
    (the state inversion came from), per step, for each bug that has it, over the correct loop's."""
    names = [n for n in (names or runs) if not n.startswith("none") and np.isfinite(_np(runs[n].residual)).any()]
    if not names:
        raise ValueError("none of the runs has a forward residual (DDIM-sampled bugs only)")
    ncols = min(4, len(names))
    nrows = int(np.ceil(len(names) / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.3 * ncols, 2.5 * nrows), squeeze=False, sharey=True)
    for ax in axes.flat[len(names):]:
        ax.axis("off")
    for ax, name in zip(axes.flat, names):
        run = runs[name]
        ref, _ = _reference(runs, name)
        xs = np.arange(1, len(run.residual) + 1)
        if ref is not None:
            ax.semilogy(xs, np.clip(_np(ref.residual), 1e-20, None), color=CORRECT, lw=1.4)
        ax.semilogy(xs, np.clip(_np(run.residual), 1e-20, None), color=BUGGY, lw=1.4)
        ax.set_title(run.bug.title, fontsize=8.5)
        ax.grid(True, which="major", alpha=0.3)
        ax.tick_params(labelsize=7)
    for ax in axes[-1]:
        ax.set_xlabel("inversion step", fontsize=8)
    for ax in axes[:, 0]:
        ax.set_ylabel("forward residual (RMS)", fontsize=8)
    fig.suptitle(suptitle or "without ground truth: re-run the sampling step from each inverted state "
                             "(vermillion: the bug, grey: correct)", fontsize=10)
    fig.tight_layout()
    save_figure(fig, save)
    return fig


def plot_swap_in(steps: Sequence[int], noise_nmse: Sequence[float], baseline: float, title: str = "",
                 save: str | Path | None = None):
    """Final noise NMSE when one inversion step k is made exact (its eps swapped for the true
    one), against k, with the unmodified run as a line."""
    fig, ax = plt.subplots(figsize=(6.4, 3.4))
    ax.semilogy(np.asarray(steps) + 1, noise_nmse, marker="o", ms=3, color="#0072B2", label="step k made exact")
    ax.axhline(baseline, color=CORRECT, ls="--", label="no step changed")
    ax.set_xlabel("inversion step k whose eps is swapped for the true one")
    ax.set_ylabel("final noise NMSE")
    ax.set_title(title or "which step's error matters?", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, save)
    return fig
