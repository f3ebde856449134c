"""Figures of the flow-matching studies."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import matplotlib.pyplot as plt

from .core import save_figure

__all__ = ["plot_gamma_tradeoff", "plot_solver_family", "plot_time_grid_audit", "plot_vp_vs_flow_paths"]

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


def plot_vp_vs_flow_paths(vp_path, flow_path, vp_rescaled=None, density=None, X=None, Y=None, points: int = 12,
                          title: str = "", save: str | Path | None = None):
    """Two panels of 2-D sampling paths (``(K, B, 2)``, noisiest first): the VP model's and the flow
    model's, from the same noise; ``vp_rescaled`` (the VP path divided by alpha + sigma) drawn dashed
    over the flow panel. ``density`` on the grid ``X, Y``: grey contours of the data."""
    import numpy as np

    from .core import _np
    from .zoo import method_style

    vp, fl = _np(vp_path)[:, :points], _np(flow_path)[:, :points]
    fig, axes = plt.subplots(1, 2, figsize=(9.6, 4.4), sharex=True, sharey=True)
    c = method_style("naive")["color"]
    for ax, path, name in ((axes[0], vp, "VP (DDIM) paths"), (axes[1], fl, "flow (Euler) paths")):
        if density is not None:
            ax.contour(X, Y, density, levels=8, cmap="Greys", linewidths=0.7)
        for b in range(path.shape[1]):
            ax.plot(path[:, b, 0], path[:, b, 1], color=c, lw=1.1, label="path" if b == 0 else None)
        ax.scatter(path[0, :, 0], path[0, :, 1], s=14, color="k", marker="x", label="start (noisiest level)", zorder=3)
        ax.scatter(path[-1, :, 0], path[-1, :, 1], s=14, color="#0072B2", label="end (image)", zorder=3)
        ax.set_title(name, fontsize=10)
        ax.set_aspect("equal")
        ax.grid(True, alpha=0.2)
    if vp_rescaled is not None:
        r = _np(vp_rescaled)[:, :points]
        for b in range(r.shape[1]):
            axes[1].plot(r[:, b, 0], r[:, b, 1], color="#D55E00", ls="--", lw=1.0,
                         label="VP path / (alpha + sigma)" if b == 0 else None)
    axes[1].legend(fontsize=7, loc="lower right")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    save_figure(fig, save)
    return fig, np.concatenate([vp.ravel(), fl.ravel()])


def plot_solver_family(rows: Sequence[dict[str, Any]], title: str = "", save: str | Path | None = None):
    """Noise NMSE against NFE (both log), one line per method over its step counts; one panel per
    target ("sampler": inverting the Euler sampler that made the image; "ode": the ODE's own inverse)."""
    from .zoo import method_style

    if not rows:
        raise ValueError("no rows to plot: pass the rows of invlab.studies.flowmatch.solver_family")
    targets = list(dict.fromkeys(r["target"] for r in rows))
    names = {"sampler": "truth: the noise the N-step Euler sampler started from",
             "ode": "truth: the ODE's exact inverse of a fine sample"}
    fig, axes = plt.subplots(1, len(targets), figsize=(5.2 * len(targets), 4.0), squeeze=False)
    for ax, target in zip(axes[0], targets):
        for method in dict.fromkeys(r["method"] for r in rows):
            rs = sorted((r for r in rows if r["target"] == target and r["method"] == method), key=lambda r: r["nfe"])
            st = method_style(method)
            ax.loglog([r["nfe"] for r in rs], [max(r["noise_nmse"], 1e-18) for r in rs], label=method,
                      color=st["color"], marker=st["marker"])
        ax.set_xlabel("NFE (network evaluations for the whole inversion)")
        ax.set_ylabel("noise NMSE")
        ax.set_title(names.get(target, target), fontsize=9)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    save_figure(fig, save)
    return fig


def plot_gamma_tradeoff(rows: Sequence[dict[str, Any]], current: float | None = None, images=None,
                        reconstruction=None, title: str = "", save: str | Path | None = None):
    """RF-Inversion's trade-off: image NMSE of the reconstruction (faithfulness) against the inverted
    noise's NMSE to the drawn target y1 (how controlled/Gaussian it is), one point per gamma; with
    ``current``, that gamma is marked and (``images``, ``reconstruction``) drawn beside the curve.
    Returns (figure, drawn array)."""
    import numpy as np

    from .core import _np
    from .zoo import method_style

    if not rows:
        raise ValueError("no rows to plot: pass the rows of invlab.studies.flowmatch.rf_inversion_gammas")
    rs = sorted(rows, key=lambda r: r["gamma"])
    with_images = images is not None and reconstruction is not None
    fig = plt.figure(figsize=(9.6 if with_images else 5.4, 3.9))
    ax = fig.add_subplot(1, 2 if with_images else 1, 1)
    xs = [max(r["y1_nmse"], 1e-12) for r in rs]
    ys = [r["image_nmse"] for r in rs]
    st = method_style("rf-inversion")
    ax.loglog(xs, ys, color=st["color"], marker=st["marker"])
    for r, x, y in zip(rs, xs, ys):
        ax.annotate(f"γ={r['gamma']:g}", (x, y), fontsize=7, textcoords="offset points", xytext=(4, 4))
    if current is not None:
        r = min(rs, key=lambda r: abs(r["gamma"] - current))
        ax.scatter([max(r["y1_nmse"], 1e-12)], [r["image_nmse"]], s=120, facecolors="none", edgecolors="k", zorder=3)
    ax.set_xlabel("noise NMSE to the drawn target y1 (1e-12 floor)")
    ax.set_ylabel("image NMSE of the reconstruction")
    ax.grid(True, which="both", alpha=0.3)
    ax.set_title("down: more faithful; left: closer to y1 (more controlled)", fontsize=9)
    drawn = [np.asarray(xs), np.asarray(ys)]
    if with_images:
        a, b = _np(images), _np(reconstruction)
        n = a.shape[0]
        for k in range(n):
            for row, arr in enumerate((a, b)):
                sub = fig.add_subplot(2, 2 * n, row * 2 * n + n + k + 1)
                img = arr[k, 0] if arr.shape[1] == 1 else np.clip((arr[k].transpose(1, 2, 0) + 1) / 2, 0, 1)
                sub.imshow(img, cmap="gray", vmin=-1.2, vmax=1.2)
                sub.set_xticks([])
                sub.set_yticks([])
                if k == 0:
                    sub.set_ylabel("source" if row == 0 else f"γ = {current:g}", fontsize=8)
        drawn += [a.ravel(), b.ravel()]
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    save_figure(fig, save)
    return fig, np.concatenate(drawn)
