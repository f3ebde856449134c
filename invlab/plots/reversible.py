"""Exact by construction (notebook 10): the step diagrams, round-off growth, quality vs the mixing
constant, and whether a recovered noise looks like noise."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

from .core import _np, save_figure
from .zoo import method_style

__all__ = ["DTYPE_STYLE", "draw_reversible_steps", "plot_noise_stats", "plot_quality_vs_mixing",
           "plot_round_trip_growth"]

#: one colour per dtype (colour-blind safe blue / orange / purple)
DTYPE_STYLE = {"float64": {"color": "#0072B2", "marker": "o"}, "float32": {"color": "#E69F00", "marker": "s"},
               "float16": {"color": "#CC79A7", "marker": "^"}}


def _box(ax, xy, text, color="#dde8f5"):
    x, y = xy
    ax.add_patch(FancyBboxPatch((x - 0.42, y - 0.2), 0.84, 0.4, boxstyle="round,pad=0.02", fc=color, ec="0.3"))
    ax.text(x, y, text, ha="center", va="center", fontsize=10)


def _arrow(ax, a, b, text="", color="0.2", style="-|>", ls="-", rad=0.0, off=(0, 0.12), fs=8):
    ax.add_patch(FancyArrowPatch(a, b, arrowstyle=style, mutation_scale=12, color=color, lw=1.4, linestyle=ls,
                                 connectionstyle=f"arc3,rad={rad}", shrinkA=14, shrinkB=14))
    if text:
        ax.text((a[0] + b[0]) / 2 + off[0], (a[1] + b[1]) / 2 + off[1], text, ha="center", va="center", fontsize=fs,
                color=color)


def draw_reversible_steps(save: str | Path | None = None):
    """Two schematic panels: EDICT's coupled pair and BDIA/BELM's two-state step, sampling (solid,
    left to right = noisier to cleaner) and the closed-form inverse (dashed, right to left)."""
    fig, (a, b) = plt.subplots(1, 2, figsize=(12, 4.2))
    for ax in (a, b):
        ax.set_xlim(-0.6, 6.6)
        ax.set_ylim(-0.9, 2.5)
        ax.axis("off")
    # EDICT: (x, y) at s -> x', y' (two DDIM steps, each fed the other latent) -> mix -> (x, y) at t
    _box(a, (0, 1.6), "$x_s$")
    _box(a, (0, 0.4), "$y_s$")
    _box(a, (3, 1.6), "$x'$")
    _box(a, (3, 0.4), "$y'$")
    _box(a, (6, 1.6), "$x_t$", "#e5f0dc")
    _box(a, (6, 0.4), "$y_t$", "#e5f0dc")
    _arrow(a, (0, 1.6), (3, 1.6), r"$a\,x_s + b\,\epsilon(y_s, s)$")
    _arrow(a, (0, 0.4), (3, 0.4), r"$a\,y_s + b\,\epsilon(x', s)$", off=(0, -0.16))
    _arrow(a, (0.2, 0.55), (2.8, 1.45), color="C0", style="-|>", ls=":")
    _arrow(a, (3.0, 1.4), (3.0, 0.6), color="C0", ls=":")
    _arrow(a, (3, 1.6), (6, 1.6), r"$p\,x' + (1-p)\,y'$")
    _arrow(a, (3, 0.4), (6, 0.4), r"$p\,y' + (1-p)\,x_t$", off=(0, -0.16))
    _arrow(a, (6, 0.55), (3, 1.45), r"inverse: un-mix ($\div p$), then undo", color="C3", ls="--", rad=0.35,
           off=(0.3, 1.0))
    a.text(3, -0.6, "2 network calls per step, both at level s; the inverse calls the network at the same points",
           ha="center", fontsize=8.5, color="0.3")
    a.set_title("EDICT: a coupled pair, each latent updated with the other's noise estimate", fontsize=10)
    # BDIA / BELM: u_r, u_s -> u_t from both states and one eps at s
    _box(b, (0, 1.0), "$u_r$")
    _box(b, (2.8, 1.0), "$u_s$")
    _box(b, (5.8, 1.0), "$u_t$", "#e5f0dc")
    _arrow(b, (0, 1.0), (2.8, 1.0), "previous step")
    _arrow(b, (0.1, 1.2), (5.7, 1.2), r"$c_1\,u_r$", rad=-0.35, off=(0, 0.8))
    _arrow(b, (2.8, 1.0), (5.8, 1.0), r"$c_2\,u_s + c_3\,\epsilon(u_s, s)$")
    _arrow(b, (5.7, 0.8), (0.1, 0.8), r"inverse: $u_r = (u_t - c_2 u_s - c_3\epsilon(u_s,s))/c_1$", color="C3",
           ls="--", rad=-0.3, off=(0, -1.05))
    b.text(2.9, -0.75, r"BDIA: $c_1=\gamma$ ($\div\gamma$ when inverted);  BELM: $c_1 = h_i^2\alpha_t/(h_{i+1}^2\alpha_r)$",
           ha="center", fontsize=8.5, color="0.3")
    b.set_title("BDIA / BELM: two consecutive states, one network call per step", fontsize=10)
    fig.tight_layout()
    save_figure(fig, save)
    return fig


def plot_round_trip_growth(rows: Sequence[Mapping[str, Any]], key: str = "image_err_u", cap: float = 1e9,
                           title: str = "", save: str | Path | None = None):
    """Round-trip error in units of the dtype's round-off (``key``), against steps; one panel per
    solver setting (``row["label"]``), one line per dtype. Values above ``cap`` (and non-finite runs)
    are drawn as triangles on the cap line: the axis stays within ``cap`` instead of spanning 40
    decades. A second row: the spread (std) of the inverted real-image latent, the state that grows."""
    labels = list(dict.fromkeys(r["label"] for r in rows))
    if not labels:
        raise ValueError("no rows to plot")
    fig, axes = plt.subplots(2, len(labels), figsize=(2.9 * len(labels), 5.4), squeeze=False, sharex=True)
    for j, lab in enumerate(labels):
        ax, ax2 = axes[0, j], axes[1, j]
        for dname, st in DTYPE_STYLE.items():
            rs = sorted((r for r in rows if r["label"] == lab and r["dtype"] == dname), key=lambda r: r["steps"])
            if not rs:
                continue
            xs = np.array([r["steps"] for r in rs], dtype=float)
            ys = np.array([r[key] for r in rs], dtype=float)
            over = ~np.isfinite(ys) | (ys > cap)
            yc = np.where(over, cap, np.maximum(ys, 1e-1))
            ax.loglog(xs, yc, color=st["color"], lw=1.4, label=dname)
            ax.scatter(xs[~over], yc[~over], color=st["color"], marker=st["marker"], s=18, zorder=3)
            ax.scatter(xs[over], yc[over], color=st["color"], marker="^", s=50, zorder=4, edgecolor="k", lw=0.5)
            if dname == "float64":
                zs = np.array([r.get("zhat_std", np.nan) for r in rs], dtype=float)
                ok = np.isfinite(zs)
                ax2.loglog(xs[ok], zs[ok], color="0.3", marker="o", ms=3)
        ax.axhline(cap, color="0.5", lw=0.8, ls=":")
        ax.set_ylim(1e-1, cap * 5)
        ax.set_title(lab, fontsize=9)
        ax.grid(True, which="major", alpha=0.3)
        ax2.axhline(1.0, color="k", lw=0.8, ls="--")
        ax2.set_xlabel("steps")
        ax2.grid(True, which="major", alpha=0.3)
        if j == 0:
            ax.set_ylabel("max round-trip error\n/ unit round-off u")
            ax2.set_ylabel("std of inverted image\n(float64; noise = 1)")
            ax.legend(fontsize=7, loc="upper left")
    fig.suptitle(title or "image -> invert -> reconstruct: error in units of u; triangles on the dotted line: "
                          f"> {cap:.0e} u or non-finite", fontsize=10)
    fig.tight_layout()
    save_figure(fig, save)
    return fig


def plot_quality_vs_mixing(rows: Sequence[Mapping[str, Any]], title: str = "", save: str | Path | None = None):
    """RMS distance of each solver's samples to DDIM's from the same z_T: EDICT against p, BDIA
    against gamma (one line per step count), BELM (no constant) as a dashed level per step count.
    The classifier's lowest accuracy on each line is written in the legend."""
    steps = sorted({r["steps"] for r in rows})
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), sharey=True)
    for ax, solver, opt, name in ((axes[0], "edict", "p", "EDICT mixing p"), (axes[1], "bdia", "gamma", r"BDIA $\gamma$")):
        for k, n in enumerate(steps):
            rs = sorted((r for r in rows if r["solver"] == solver and r["steps"] == n), key=lambda r: r["options"][opt])
            if not rs:
                continue
            xs = [r["options"][opt] for r in rs]
            ys = [r["rms_to_ddim"] for r in rs]
            accs = [r["accuracy"] for r in rs if r.get("accuracy") is not None]
            acc = f", accuracy >= {min(accs):.2f}" if accs else ""
            ax.semilogy(xs, ys, marker="o", color=f"C{k}", label=f"{n} steps{acc}")
            belm = [r for r in rows if r["solver"] == "belm" and r["steps"] == n]
            if belm:
                ax.axhline(belm[0]["rms_to_ddim"], color=f"C{k}", ls="--", lw=1,
                           label=f"BELM, {n} steps" if ax is axes[1] else None)
        ax.set_xlabel(name)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    axes[0].set_ylabel("RMS distance to DDIM's sample\n(same z_T)")
    fig.suptitle(title or "what exactness costs: how far the sampler moves from DDIM", fontsize=10)
    fig.tight_layout()
    save_figure(fig, save)
    return fig


def plot_noise_stats(table: Sequence[Mapping[str, Any]], noises: Mapping[str, Any], band: Mapping[str, float],
                     title: str = "", save: str | Path | None = None):
    """Top: the first recovered noise of each method (and a Gaussian draw for reference), one shared
    colour scale. Bottom: batch medians of the variance, the lag-1 spatial autocorrelation and the
    KS p-value, with the 4-sigma band of white noise shaded."""
    names = list(noises)
    fig = plt.figure(figsize=(max(8.0, 1.6 * len(names)), 5.2))
    gs = fig.add_gridspec(2, max(len(names), 3), height_ratios=[1, 1.1])
    for j, n in enumerate(names):
        ax = fig.add_subplot(gs[0, j])
        z = _np(noises[n])[0]
        ax.imshow(z[0] if z.ndim == 3 else z, cmap="RdBu_r", vmin=-3, vmax=3)
        ax.set_title(n, fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    rows = {r["name"]: r for r in table}
    xs = np.arange(len(names))
    specs = [("var", "variance", 1.0, band["var"], False), ("autocorr", "lag-1 autocorrelation", 0.0, band["autocorr"],
                                                                False),
             ("ks_p", "KS p-value vs N(0,1)", None, None, True)]
    ncol = max(len(names), 3)
    per = ncol // 3
    for k, (field, lab, centre, half, logy) in enumerate(specs):
        ax = fig.add_subplot(gs[1, k * per:(k + 1) * per if k < 2 else ncol])
        if field == "autocorr":
            vals = [np.nanmean([rows[n].get("autocorr_h") or np.nan, rows[n].get("autocorr_w") or np.nan])
                    for n in names]
        else:
            vals = [rows[n][field] for n in names]
        if logy:
            ax.set_yscale("log")
            ax.axhspan(1e-3, 1.0, color="0.85", zorder=0)
            vals = np.clip(np.asarray(vals, dtype=float), 1e-300, None)
        else:
            ax.axhspan(centre - half, centre + half, color="0.85", zorder=0)
            ax.axhline(centre, color="k", lw=0.8)
        ax.scatter(xs, vals, color=[method_style(n)["color"] for n in names], zorder=3)
        ax.set_xticks(xs)
        ax.set_xticklabels(names, rotation=45, fontsize=7, ha="right")
        ax.set_title(lab + " (grey: white noise)", fontsize=8)
        ax.grid(True, alpha=0.3)
    fig.suptitle(title or "is the recovered noise noise? (batch medians)", fontsize=10)
    fig.tight_layout()
    save_figure(fig, save)
    return fig
