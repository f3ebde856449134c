"""The equal-budget comparison: error against cost (both log), one panel per model, Pareto front."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Collection, Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter

from ..metrics import pareto_front
from .core import save_figure

__all__ = ["METHOD_STYLE", "method_style", "plot_pareto"]

#: one colour and one marker per method (and method variant), for every figure that compares methods
METHOD_STYLE: dict[str, dict[str, str]] = {
    "naive": {"color": "0.35", "marker": "o"},
    "easyinv": {"color": "C8", "marker": "v"},
    "exact": {"color": "C0", "marker": "s"},
    "fixed-point": {"color": "C1", "marker": "D"},
    "newton": {"color": "C2", "marker": "^"},
    "newton-sign": {"color": "C7", "marker": "<"},
    "renoise": {"color": "C3", "marker": "P"},
    "null-text": {"color": "C4", "marker": "X"},
    "null-text-lr0.1": {"color": "C9", "marker": ">"},
    "negative-prompt": {"color": "C5", "marker": "*"},
    "direct": {"color": "C6", "marker": "h"},
    "edict": {"color": "#8c6d31", "marker": "p"},
    "bdia": {"color": "#17becf", "marker": "d"},
    "belm": {"color": "#393b79", "marker": "8"},
    "rf-solver": {"color": "#e377c2", "marker": "o"},
    "fireflow": {"color": "#bcbd22", "marker": "s"},
    "uni-inv": {"color": "#2ca02c", "marker": "^"},
    "rf-inversion": {"color": "#9467bd", "marker": "D"},
    "N(0, I) draw": {"color": "k", "marker": "."},
}
_SPARE_MARKERS = "p>d8H"


def method_style(name: str) -> dict[str, str]:
    """The colour and marker of a method (or variant); names not in :data:`METHOD_STYLE` get a
    spare colour and marker, the same one every time for the same name."""
    if name in METHOD_STYLE:
        return dict(METHOD_STYLE[name])
    k = sum(map(ord, name))
    return {"color": f"C{k % 10}", "marker": _SPARE_MARKERS[k % len(_SPARE_MARKERS)]}


def plot_pareto(panels: Mapping[str, Sequence[Mapping[str, Any]]], ncols: int | None = None,
                front_of: Collection[str] | None = None, floor: float | None = None,
                xlabel: str = "inversion NFE", ylabel: str = "image NMSE (median over the batch)",
                hollow_label: str | None = None, filled_label: str | None = None, front_label: str = "Pareto front",
                suptitle: str | None = None, save: str | Path | None = None):
    """Error against cost on log axes, one panel per key of ``panels``, with the Pareto front.

    Each point is a mapping with ``series`` (the method: colour and marker from
    :func:`method_style`), ``cost``, ``error`` and optionally ``hollow`` (True: an open marker, e.g.
    another step count, named by ``hollow_label`` / ``filled_label`` in the legend). Errors at or
    below ``floor`` (0 included: a reconstruction exact by construction) are drawn on the floor, a
    dotted line; ``floor=None`` puts it one decade below the smallest positive error of the
    figure, so that the axes span only the decades the errors need. The front (a staircase:
    the lowest error reachable at each cost) is taken over the points whose series is in
    ``front_of`` (default: all). Returns (figure, {panel: the points on its front}).
    """
    names = list(panels)
    if floor is None:
        pos = [p["error"] for v in panels.values() for p in v if p["error"] > 0 and np.isfinite(p["error"])]
        floor = 10.0 ** (np.floor(np.log10(min(pos))) - 1) if pos else 1e-16
    ncols = ncols or len(names) or 1
    nrows = max(1, int(np.ceil(len(names) / ncols)))
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.4 * ncols + 1.8, 3.0 * nrows), squeeze=False)
    seen: dict[str, dict[str, str]] = {}
    fronts: dict[str, list[Mapping[str, Any]]] = {}
    for ax in axes.flat[len(names):]:
        ax.axis("off")
    for ax, name in zip(axes.flat, names):
        pts = [p for p in panels[name] if np.isfinite(p["cost"]) and not np.isnan(p["error"])]
        for p in pts:
            st = method_style(p["series"])
            seen.setdefault(p["series"], st)
            hollow = bool(p.get("hollow", False))
            ax.scatter([p["cost"]], [max(p["error"], floor)], s=36, marker=st["marker"], linewidths=1.2,
                       facecolors="none" if hollow else st["color"], edgecolors=st["color"], zorder=3)
        cand = [p for p in pts if front_of is None or p["series"] in front_of]
        idx = pareto_front([p["cost"] for p in cand], [max(p["error"], floor) for p in cand])
        front = [cand[i] for i in idx]
        fronts[name] = front
        if front:
            xs = [p["cost"] for p in front]
            ys = [max(p["error"], floor) for p in front]
            ax.step(xs + [xs[-1] * 1.5], ys + [ys[-1]], where="post", color="k", lw=1.0, alpha=0.7, zorder=2)
        if any(p["error"] <= floor for p in pts):
            ax.axhline(floor, color="k", lw=0.6, ls=":", zorder=1)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(FuncFormatter(lambda v, _: f"{v:g}" if f"{v:g}"[0] in "25" else ""))
        ax.set_title(name, fontsize=9)
        ax.grid(True, which="major", alpha=0.3)
        ax.tick_params(which="both", labelsize=8)
    for ax in axes[-1]:
        ax.set_xlabel(xlabel, fontsize=8)
    for ax in axes[:, 0]:
        ax.set_ylabel(ylabel, fontsize=8)
    handles = [Line2D([], [], ls="", marker=st["marker"], color=st["color"], label=s) for s, st in seen.items()]
    if hollow_label or filled_label:
        handles += [Line2D([], [], ls="", marker="o", color="0.3", label=filled_label or "filled"),
                    Line2D([], [], ls="", marker="o", color="0.3", markerfacecolor="none",
                           label=hollow_label or "hollow")]
    handles += [Line2D([], [], color="k", lw=1.0, label=front_label),
                Line2D([], [], color="k", lw=0.6, ls=":", label=f"error <= {floor:.0e} (e.g. 0), on the floor")]
    fig.legend(handles=handles, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8, frameon=False)
    if suptitle:
        fig.suptitle(suptitle, fontsize=10)
    fig.tight_layout()
    save_figure(fig, save)
    return fig, fronts
