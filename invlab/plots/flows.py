"""Plots for the 2-D flows notebook: fields over density contours, paths, one step up close."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np

from .zoo import METHOD_STYLE
from .core import _np, save_figure

__all__ = ["plot_corner_step", "plot_flow_fields", "plot_flow_paths", "plot_round_trips"]

#: default look of a named path
#: sampling is drawn in orange (it is not an inversion method); the methods take the course's colours
#: (:data:`invlab.plots.zoo.METHOD_STYLE`): naive dark grey, EasyInv olive, exact blue; the near-exact
#: flow is a wide light-grey band underneath
SAMPLING_COLOR = "#d95f02"
FLOW_STYLE = {"color": "0.72", "lw": 2.6, "ls": "-"}
PATH_STYLES = {
    "near-exact flow": FLOW_STYLE,
    "DDIM (coarse)": {"color": SAMPLING_COLOR, "lw": 1.4, "ls": "-", "marker": "o", "ms": 3},
    "naive inversion": {"color": METHOD_STYLE["naive"]["color"], "lw": 1.4, "ls": "--", "marker": "x", "ms": 4},
    "easyinv": {"color": METHOD_STYLE["easyinv"]["color"], "lw": 1.4, "ls": "--", "marker": "x", "ms": 4},
    "exact inversion": {"color": METHOD_STYLE["exact"]["color"], "lw": 1.4, "ls": ":", "marker": "+", "ms": 6},
}


def _contours(ax, X, Y, density, levels: int = 8, cmap: str = "Greys"):
    d = _np(density)
    ax.contourf(X, Y, d, levels=levels, cmap=cmap, alpha=0.55)
    ax.set_aspect("equal")


def plot_flow_fields(X: np.ndarray, Y: np.ndarray, panels: Sequence[Mapping], AX: np.ndarray, AY: np.ndarray,
                     data_density=None, save: str | Path | None = None, suptitle: str | None = None):
    """One panel per noise level: the noisy marginal's density (filled contours on X, Y), the
    data's density (line contours, optional) and a field as arrows at the points AX, AY.

    ``panels``: dicts with keys ``title``, ``density`` (X-shaped), ``U``, ``V`` (AX-shaped arrow
    parts). Arrows are scaled per panel so that the longest is 0.9 of the arrow-grid spacing;
    their lengths compare within a panel, not across panels.
    """
    n = len(panels)
    fig, axes = plt.subplots(1, n, figsize=(3.3 * n, 3.5), squeeze=False)
    spacing = float(np.abs(AX[0, 1] - AX[0, 0]))
    for ax, p in zip(axes[0], panels):
        _contours(ax, X, Y, p["density"], cmap="Blues")
        if data_density is not None:
            ax.contour(X, Y, _np(data_density), levels=4, colors="k", linewidths=0.6, alpha=0.6)
        U, V = _np(p["U"]), _np(p["V"])
        longest = float(np.sqrt(U**2 + V**2).max()) or 1.0
        ax.quiver(AX, AY, U, V, color="tab:red", angles="xy", scale_units="xy", scale=longest / (0.9 * spacing),
                  width=0.005)
        ax.set_title(p["title"], fontsize=9)
        ax.set_xlim(X.min(), X.max())
        ax.set_ylim(Y.min(), Y.max())
        ax.set_xticks([])
        ax.set_yticks([])
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout()
    save_figure(fig, save)
    return fig


def plot_flow_paths(X: np.ndarray, Y: np.ndarray, density, paths: Mapping[str, np.ndarray],
                    starts: np.ndarray | None = None, title: str | None = None, ax=None,
                    styles: Mapping[str, dict] | None = None, save: str | Path | None = None):
    """Paths of several points over the data's density: ``paths[name]`` is (L, B, 2), noisiest
    state first. ``starts`` (B, 2): the true noise, drawn as black dots (the target of inversion)."""
    fig, ax = (ax.figure, ax) if ax is not None else plt.subplots(figsize=(5.2, 5.2))
    _contours(ax, X, Y, density)
    styles = {**PATH_STYLES, **(styles or {})}
    for name, arr in paths.items():
        a = _np(arr)
        st = dict(styles.get(name, {"lw": 1.2}))
        ms = st.pop("ms", None)
        marker = st.pop("marker", None)
        for b in range(a.shape[1]):
            ax.plot(a[:, b, 0], a[:, b, 1], label=name if b == 0 else None,
                    **({**st, "marker": marker, "ms": ms} if marker and len(a) < 80 else st))
        ax.plot(a[0, :, 0], a[0, :, 1], ls="none", marker="s", ms=4, color=st.get("color", "k"), alpha=0.8)
    if starts is not None:
        s = _np(starts)
        ax.plot(s[:, 0], s[:, 1], "ko", ms=4, label="true noise z_T")
    ax.set_xlim(X.min(), X.max())
    ax.set_ylim(Y.min(), Y.max())
    ax.legend(fontsize=7, loc="lower left")
    if title:
        ax.set_title(title, fontsize=9)
    save_figure(fig, save)
    return fig


def plot_corner_step(path: np.ndarray, x_s: np.ndarray, x_t_exact: np.ndarray, x_t_ddim: np.ndarray,
                     eps_s: np.ndarray, eps_t: np.ndarray, x_s_naive: np.ndarray, iterates: np.ndarray | None = None,
                     eps_scale: float | None = None, title: str | None = None, save: str | Path | None = None):
    """One large step for one point, up close.

    ``path`` (n, 2): the near-exact flow from x_s; ``x_t_ddim``: where one DDIM step lands.
    Thick arrows: ``-eps`` (times ``eps_scale``) where it was evaluated: at x_s (orange, what the
    sampling step used) and at x_t (dark grey, naive's colour: what the naive inverse uses). Thin lines: the sampling
    step x_s -> x_t and the step the naive inverse assumes, from its answer ``x_s_naive`` to x_t.
    ``iterates`` (k, 2): exact inversion's fixed-point iterates (optional). ``eps_scale=None``
    draws the orange arrow half as long as the DDIM step (both arrows share the scale)."""
    p = _np(path)
    fig, ax = plt.subplots(figsize=(5.8, 5.2))
    naive, exact = METHOD_STYLE["naive"]["color"], METHOD_STYLE["exact"]["color"]
    ax.plot(p[:, 0], p[:, 1], color=FLOW_STYLE["color"], lw=FLOW_STYLE["lw"], label="near-exact flow from x_s")
    xs, xe, xd, xn = (_np(v) for v in (x_s, x_t_exact, x_t_ddim, x_s_naive))
    ax.plot([xs[0], xd[0]], [xs[1], xd[1]], color=SAMPLING_COLOR, lw=1.0, label="DDIM step x_s -> x_t")
    ax.plot([xn[0], xd[0]], [xn[1], xd[1]], color=naive, lw=1.0, ls="--", label="step the naive inverse assumes")
    ax.plot(*xs, "ko", ms=6, label="x_s (true start)")
    ax.plot(*xe, "o", color="0.45", ms=6, mfc="white", label="flow's x_t")
    ax.plot(*xd, "o", color=SAMPLING_COLOR, ms=6, label="DDIM's x_t (known to the inverse)")
    ax.plot(*xn, "X", color=naive, ms=8, label="naive inverse of x_t")
    kw = {"angles": "xy", "scale_units": "xy", "scale": 1.0, "width": 0.008}
    if eps_scale is None:
        eps_scale = 0.5 * float(np.linalg.norm(xd - xs)) / max(float(np.linalg.norm(_np(eps_s))), 1e-12)
    es, et = -eps_scale * _np(eps_s), -eps_scale * _np(eps_t)
    ax.quiver(*xs, *es, color=SAMPLING_COLOR, label="-eps(x_s, s): used by sampling", **kw)
    ax.quiver(*xd, *et, color=naive, label="-eps(x_t, s): used by the naive inverse", **kw)
    if iterates is not None:
        it = _np(iterates)
        ax.plot(it[:, 0], it[:, 1], ":", color=exact, marker=".", ms=4, label="exact: fixed-point iterates")
    pts = np.vstack([p, xs[None], xe[None], xd[None], xn[None], (xs + es)[None], (xd + et)[None]])
    lo, hi = pts.min(0), pts.max(0)
    pad = 0.12 * (hi - lo).max() + 1e-3
    ax.set_xlim(lo[0] - pad, hi[0] + pad)
    ax.set_ylim(lo[1] - pad, hi[1] + pad)
    ax.set_aspect("equal")
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5))
    ax.grid(alpha=0.3)
    if title:
        ax.set_title(title, fontsize=9)
    save_figure(fig, save)
    return fig


def plot_round_trips(steps: Sequence[int], errors: Mapping[str, Sequence[float]], save: str | Path | None = None,
                     floor: float = 1e-20, title: str = "round trip z_T -> x_0 -> z_T_hat", max_decades: float = 8.0):
    """Noise NMSE of the round trip against the number of steps, one line per method (log-log).
    Methods that sit more than ``max_decades`` decades apart (naive ~1e-2, exact ~1e-18) are drawn
    in two panels, each spanning only the decades its methods need. Values at or below ``floor``
    are not drawn."""
    from .core import _decade_groups, _positive, _span_at_least, series_styles

    series = {k: np.where(_positive(v) > floor, _positive(v), np.nan) for k, v in errors.items()}
    styles = series_styles(list(series))
    groups = _decade_groups(series, max_decades)
    fig, axes = plt.subplots(len(groups), 1, figsize=(5.4, 3.6 if len(groups) == 1 else 5.6), sharex=True,
                             squeeze=False)
    for ax, names in zip(axes[:, 0], groups):
        for name in names:
            ax.loglog(steps, series[name], marker="o", label=name, **styles[name])
        if len(groups) > 1:
            _span_at_least(ax, [series[n] for n in names])
        ax.set_ylabel("noise NMSE")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    ax = axes[-1, 0]
    ax.set_xticks(list(steps))
    ax.set_xticklabels([str(n) for n in steps])
    ax.minorticks_off()
    for a in axes[:, 0]:
        a.xaxis.set_minor_locator(plt.NullLocator())
    ax.set_xlabel("DDIM steps")
    if len(groups) > 1:
        fig.suptitle(title + "\n(two panels: the methods sit too many decades apart for one axis)", fontsize=10)
        fig.tight_layout()
    else:
        axes[0, 0].set_title(title, fontsize=10)
    save_figure(fig, save)
    return fig
