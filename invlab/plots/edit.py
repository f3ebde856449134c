"""Figures of the editing study: an edit strip, the preservation / success trade-off, the floor."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np

from .core import _np, save_figure
from .zoo import method_style

__all__ = ["plot_edit_strip", "plot_edit_tradeoff", "plot_edit_floor"]


def _show(ax, img: np.ndarray, vrange=(-1, 1)) -> None:
    if img.shape[0] == 3:
        ax.imshow(np.clip((np.transpose(img, (1, 2, 0)) - vrange[0]) / (vrange[1] - vrange[0]), 0, 1))
    else:
        ax.imshow(img[0], cmap="gray", vmin=vrange[0], vmax=vrange[1])
    ax.set_xticks([])
    ax.set_yticks([])


def plot_edit_strip(source, columns: Mapping[str, Any], region=None, diff: bool = True, title: str = "",
                    save: str | Path | None = None):
    """Rows: images; columns: the source, then each named result (edits, reconstructions), then (``diff``)
    the last column's |change| from the source averaged over channels. ``region`` (1, 1, H, W): the
    editable region, outlined in every panel. Returns (figure, the |change| maps (N, H, W))."""
    src = _np(source)
    cols = {k: _np(v) for k, v in columns.items()}
    if any(v.shape != src.shape for v in cols.values()):
        raise ValueError(f"every column must have the source's shape {src.shape}")
    n = src.shape[0]
    names = ["source", *cols]
    ncol = len(names) + int(diff)
    fig, axes = plt.subplots(n, ncol, figsize=(1.55 * ncol, 1.55 * n + 0.4), squeeze=False)
    last = cols[names[-1]] if cols else src
    change = np.abs(last - src).mean(axis=1) / 2   # [0, 1] units
    outline = None if region is None else np.asarray(_np(region))[0, 0]
    for i in range(n):
        for j, name in enumerate(names):
            ax = axes[i][j]
            _show(ax, src[i] if name == "source" else cols[name][i])
            if outline is not None:
                ax.contour(outline, levels=[0.5], colors="#E69F00", linewidths=0.8)
            if i == 0:
                ax.set_title(name, fontsize=8)
        if diff:
            ax = axes[i][-1]
            ax.imshow(change[i], cmap="magma", vmin=0, vmax=max(float(change.max()), 1e-12))
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(f"|{names[-1]} - source|", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    save_figure(fig, save)
    return fig, change


def plot_edit_tradeoff(points: Mapping[tuple[str, bool], Mapping[str, Sequence[float]]], cap: float = 60.0,
                       success_label: str = "edit success", title: str = "", save: str | Path | None = None):
    """The trade-off per method (``invlab.studies.edit.tradeoff_points``): x = background PSNR outside
    the region (dB, inf drawn at ``cap``), y = edit success (left) and the model's log-ratio for the
    target (right); one line per method through its depths (labelled), solid free, dashed masked.
    Returns (figure, {(method, masked): (x, y_success)})."""
    fig, axes = plt.subplots(1, 2, figsize=(9.5, 3.8))
    drawn = {}
    for (method, masked), d in points.items():
        st = method_style(method)
        x = np.asarray(d["bg_psnr"], dtype=float)
        for ax, key in zip(axes, ("success", "log_ratio")):
            y = np.asarray(d[key], dtype=float)
            ax.plot(x, y, ls="--" if masked else "-", marker=st["marker"], color=st["color"], ms=5,
                    label=f"{method}{' + mask' if masked else ''}", alpha=0.9)
            for xi, yi, dep in zip(x, y, d["depth"]):
                ax.annotate(f"{dep:g}", (xi, yi), fontsize=6, xytext=(2, 2), textcoords="offset points")
        drawn[(method, masked)] = (x, np.asarray(d["success"], dtype=float))
    for ax, ylab in zip(axes, (success_label, "log p(x|target) - log p(x|source)  (nats)")):
        ax.set_xlabel(f"background PSNR outside the region (dB; bit-exact at {cap:g})")
        ax.set_ylabel(ylab)
        ax.grid(True, alpha=0.3)
    axes[1].axhline(0, color="0.5", lw=0.8)
    axes[0].legend(fontsize=7, loc="best")
    axes[0].set_title("numbers on the points: inversion depth", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    save_figure(fig, save)
    return fig, drawn


def plot_edit_floor(table: Sequence[Mapping[str, Any]], ceiling: float | None = None, title: str = "",
                    save: str | Path | None = None):
    """Background PSNR against guidance per method (``invlab.studies.edit.floor_table``): the
    reconstruction (target = source; solid), the free edit (dotted) and the masked edit (dashed).
    ``ceiling``: the autoencoder's own PSNR, drawn as a grey line. Returns (figure, {method: recon PSNRs})."""
    fig, ax = plt.subplots(figsize=(5.6, 3.8))
    drawn = {}
    for method in dict.fromkeys(r["method"] for r in table):
        rs = sorted((r for r in table if r["method"] == method), key=lambda r: r["guidance"])
        w = [r["guidance"] for r in rs]
        st = method_style(method)
        rec = [r["recon_bg_psnr"] for r in rs]
        ax.plot(w, rec, "-", marker=st["marker"], color=st["color"], label=f"{method}: reconstruction")
        for key, ls, what in (("edit_bg_psnr", ":", "edit"), ("masked_bg_psnr", "--", "edit + mask")):
            ys = [r.get(key, np.nan) for r in rs]
            if np.isfinite(ys).any():
                ax.plot(w, ys, ls, marker=st["marker"], color=st["color"], alpha=0.7, label=f"{method}: {what}")
        drawn[method] = np.asarray(rec, dtype=float)
    if ceiling is not None:
        ax.axhline(ceiling, color="0.5", lw=1, label="autoencoder alone")
    ax.set_xlabel("guidance scale w")
    ax.set_ylabel("background PSNR (dB)")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=6.5, loc="best", ncol=2)
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    save_figure(fig, save)
    return fig, drawn
