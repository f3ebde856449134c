"""Figures of notebook 09's family sections: round-trip errors, null-text's and direct inversion's traces."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np

from .core import save_figure
from .zoo import METHOD_STYLE, method_style

__all__ = ["plot_direct_offsets", "plot_null_text_trace", "plot_round_trip_errors", "plot_zoo_budget"]


def _series(name: str) -> str:
    """The method a display name belongs to ("null-text lr 0.1" -> "null-text"), for its colour."""
    for key in sorted(METHOD_STYLE, key=len, reverse=True):
        if name.startswith(key):
            return key
    return name


def plot_round_trip_errors(errors: Mapping[str, Sequence[float]], nfe: Mapping[str, int] | None = None,
                           floor: float | None = None, title: str = "round-trip error per image",
                           xlabel: str = "image NMSE (input vs reconstruction)", save: str | Path | None = None):
    """One row per method: every sample's error (dots) and the median (a bar mark), on a log axis;
    errors at or below ``floor`` (0: exact by construction) sit on the floor, a dotted line marked
    "≤ floor". ``floor=None``: one decade below the smallest positive error, so the axis spans only
    the decades the errors need."""
    names = list(errors)
    if floor is None:
        pos = [v for e in errors.values() for v in np.asarray(e, dtype=float).ravel() if v > 0 and np.isfinite(v)]
        floor = 10.0 ** (np.floor(np.log10(min(pos))) - 1) if pos else 1e-16
    fig, ax = plt.subplots(figsize=(6.6, 0.45 * len(names) + 1.2))
    for k, name in enumerate(names):
        e = np.asarray(errors[name], dtype=float)
        st = method_style(_series(name))
        shown = np.maximum(e, floor)
        ax.scatter(shown, np.full(len(e), k), s=22, color=st["color"], marker=st["marker"], alpha=0.7, zorder=3)
        ax.plot([np.median(shown)] * 2, [k - 0.3, k + 0.3], color=st["color"], lw=2.5, zorder=4)
    labels = [f"{n}  ({nfe[n]} NFE)" if nfe and n in nfe else n for n in names]
    ax.set_yticks(range(len(names)), labels)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.axvline(floor, color="0.5", ls=":", lw=1)
    ax.text(floor, len(names) - 0.45, f" ≤ {floor:.0e}", fontsize=7, color="0.4", va="bottom")
    ax.set_xlabel(xlabel)
    ax.set_title(title)
    ax.grid(True, axis="x", which="major", alpha=0.3)
    fig.tight_layout()
    save_figure(fig, save)
    return fig


def plot_null_text_trace(traces: Mapping[str, Mapping[str, np.ndarray]], title: str = "null-text inversion, step by step",
                         save: str | Path | None = None, n_steps: int | None = None):
    """Left: each sampling step's loss against its pivot before (open) and after (filled) the
    optimisation, with the early-stop threshold; right: Adam steps taken. One colour per run.

    ``tr["step"]`` are sampling-step indices i (0 = noisiest); the x axis uses the course's one
    numbering, inversion step k = N - i (1 = the step from the clean end), ``N = n_steps``
    (default: the largest i + 1)."""
    N = n_steps if n_steps is not None else max(int(np.max(t["step"])) for t in traces.values()) + 1
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 3.4), gridspec_kw={"width_ratios": [3, 2]})
    for k, (name, tr) in enumerate(traces.items()):
        c = f"C{(4 + 5 * k) % 10}"
        k_inv = N - np.asarray(tr["step"])
        a1.semilogy(k_inv, tr["loss_before"], "o", mfc="none", color=c, ms=4, label=f"{name}: null input (before)")
        a1.semilogy(k_inv, tr["loss_after"], "o-", color=c, ms=3, lw=1.2, label=f"{name}: optimised (after)")
        a2.plot(k_inv, tr["inner_steps"], "o-", color=c, ms=3, lw=1.2, label=name)
    tr = next(iter(traces.values()))
    a1.semilogy(N - np.asarray(tr["step"]), tr["threshold"], "k--", lw=1, label="early-stop threshold")
    a1.set_xlabel("inversion step k (1 = the step from the clean end)")
    a1.set_ylabel("MSE to the pivot z*")
    a1.set_title(title)
    a1.grid(True, which="both", alpha=0.3)
    a1.legend(fontsize=7)
    a2.set_xlabel("inversion step k")
    a2.set_ylabel("Adam steps taken")
    a2.set_ylim(-0.5, max(int(t["inner_steps"].max()) for t in traces.values()) + 0.5)
    a2.set_title("cost per step (1 NFE + 1 backward each)")
    a2.grid(True, alpha=0.3)
    a2.legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, save)
    return fig


def plot_direct_offsets(offsets: Mapping[str, np.ndarray], title: str = "DirectInversion: the offset added at each step",
                        save: str | Path | None = None):
    """RMS of the offset z*_t - z_rec per sampling step (worst sample), one line per guidance;
    ``offsets[name][i]`` belongs to sampling step i (0 = noisiest), drawn at the course's inversion
    step k = N - i (1 = the step from the clean end)."""
    fig, ax = plt.subplots(figsize=(6.4, 3.4))
    for k, (name, o) in enumerate(offsets.items()):
        o = np.asarray(o, dtype=float)
        ax.semilogy(len(o) - np.arange(len(o)), np.where(o > 0, o, np.nan), "o-", ms=3, lw=1.2,
                    color=f"C{(6 + k) % 10}", label=name)
    ax.set_xlabel("inversion step k (1 = the step from the clean end)")
    ax.set_ylabel("RMS of z*_t − z_rec")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, save)
    return fig


def plot_zoo_budget(points: Sequence[Mapping], budget_nfe: float, chosen: Mapping[str, Mapping] | None = None,
                    image=None, floor: float | None = None, title: str = "", save: str | Path | None = None):
    """The method-zoo widget's figure. Left: image error against inversion NFE (log-log), the runs
    within ``budget_nfe`` in colour (the others faint), the budget as a dashed line. Right (when
    ``chosen`` is given): for each chosen method, the reconstruction of its best run within the
    budget (``point["reconstruction"]``, sample 0) above its difference from ``image``, on one
    shared colour scale.

    ``points``: mappings with ``series``, ``label``, ``cost``, ``error``; ``chosen``: method ->
    its best point (or None when nothing fits the budget)."""
    chosen = dict(chosen or {})
    ncol = len(chosen)
    fig = plt.figure(figsize=(5.2 + 1.3 * max(ncol + 1, 1), 3.8))
    gs = fig.add_gridspec(2, 1 + max(ncol + 1, 1), width_ratios=[3.8] + [1.0] * max(ncol + 1, 1))
    ax = fig.add_subplot(gs[:, 0])
    errs = [p["error"] for p in points if np.isfinite(p["error"]) and p["error"] > 0]
    if floor is None:
        floor = 10.0 ** (np.floor(np.log10(min(errs))) - 1) if errs else 1e-16
    for p in points:
        st = method_style(p["series"])
        inside = p["cost"] <= budget_nfe and p["series"] in chosen
        ax.scatter([p["cost"]], [max(p["error"], floor)], s=40 if inside else 22, marker=st["marker"],
                   color=st["color"], alpha=1.0 if inside else 0.18, zorder=3 if inside else 2)
    for name, p in chosen.items():
        if p is not None:
            st = method_style(name)
            ax.scatter([p["cost"]], [max(p["error"], floor)], s=140, facecolors="none", edgecolors=st["color"],
                       linewidths=1.6, zorder=4)
    ax.axvline(budget_nfe, color="k", ls="--", lw=1)
    ax.text(budget_nfe, ax.get_ylim()[1] if errs else 1.0, " budget", va="top", fontsize=8)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("inversion NFE")
    ax.set_ylabel("image NMSE (median over the batch)")
    ax.set_title(title or "runs within the budget (circled: each method's best)", fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    if ncol and image is not None:
        img0 = _first(image)
        diffs = [(_first(p["reconstruction"]) - img0) for p in chosen.values() if p is not None]
        lim = max([float(np.abs(d).max()) for d in diffs] + [1e-12])
        cells = [("image", img0, None)] + [(n, None if p is None else _first(p["reconstruction"]), p)
                                           for n, p in chosen.items()]
        for j, (name, rec, p) in enumerate(cells):
            top, bottom = fig.add_subplot(gs[0, 1 + j]), fig.add_subplot(gs[1, 1 + j])
            for a in (top, bottom):
                a.set_xticks([])
                a.set_yticks([])
            if rec is None:
                top.text(0.5, 0.5, "nothing\nwithin\nbudget", ha="center", va="center", fontsize=7, transform=top.transAxes)
                bottom.axis("off")
                top.set_title(name, fontsize=7)
                continue
            top.imshow(_show(rec), cmap="gray", vmin=-1, vmax=1)
            top.set_title(name if p is None else f"{p['label']}\n{p['cost']:g} NFE", fontsize=7)
            if j == 0:
                bottom.axis("off")
                bottom.text(0.5, 0.5, f"differences\n(±{lim:.1e})", ha="center", va="center", fontsize=7,
                            transform=bottom.transAxes)
            else:
                bottom.imshow(_show(rec - img0), cmap="RdBu_r", vmin=-lim, vmax=lim)
    fig.tight_layout()
    save_figure(fig, save)
    return fig


def _first(x) -> np.ndarray:
    """Sample 0 of an image batch as a numpy array (C, H, W)."""
    a = x.detach().double().cpu().numpy() if hasattr(x, "detach") else np.asarray(x, dtype=float)
    return a[0]


def _show(a: np.ndarray) -> np.ndarray:
    return a[0] if a.shape[0] == 1 else np.transpose((a + 1) / 2, (1, 2, 0)).clip(0, 1)
