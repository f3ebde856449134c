"""Shared plotting helpers: saving, image grids, per-step error curves, latent rows."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import MaxNLocator
import torch

__all__ = ["save_figure", "run_title", "series_styles", "plot_step_errors", "show_images", "plot_latent_rows",
           "plot_step_panel"]


def save_figure(fig, save: str | Path | None, dpi: int = 120) -> None:
    if save is None:
        return
    path = Path(save)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, bbox_inches="tight")


def _np(x) -> np.ndarray:
    if isinstance(x, torch.Tensor):
        return x.detach().double().cpu().numpy()
    return np.asarray(x, dtype=float)


def run_title(what: str, model: str | None = None, steps: int | None = None, w: float | None = None) -> str:
    """A figure title that names the run: "what (model, N steps, w = g)"."""
    ctx = [str(model)] if model is not None else []
    if steps is not None:
        ctx.append(f"{steps} steps")
    if w is not None:
        ctx.append(f"w = {w:g}")
    return f"{what} ({', '.join(ctx)})" if ctx else what


#: colours for series that are not methods (variants, parts, settings): Dark2, apart from the methods' tab10
_OTHER_COLORS = ["#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e", "#e6ab02", "#a6761d", "#666666"]


def _method_of(name: str) -> str | None:
    """The method a display name belongs to ("naive float32", "exact: local" -> "naive", "exact")."""
    from .zoo import METHOD_STYLE

    for key in sorted(METHOD_STYLE, key=len, reverse=True):
        if name == key or (name.startswith(key) and not name[len(key)].isalnum() and name[len(key)] != "-"):
            return key
    return None


def series_styles(names: Sequence[str]) -> dict[str, dict[str, str]]:
    """Colour and line style of each series of one figure, from the course's one map
    (:data:`invlab.plots.zoo.METHOD_STYLE`): a series named after a method ("naive",
    "exact float32", "naive: local") takes that method's colour; when up to four series share a
    method they differ by line style. Other names (variants, settings) get a colour of their own
    from a palette apart from the methods' (the same for the same name, moved if two collide)."""
    from .zoo import METHOD_STYLE

    methods = {n: _method_of(n) for n in names}
    count: dict[str, int] = {}
    for m in methods.values():
        if m is not None:
            count[m] = count.get(m, 0) + 1
    out: dict[str, dict[str, str]] = {}
    used: set[str] = set()
    seen: dict[str, int] = {}
    dashes = ["-", "--", ":", "-."]
    for n in names:
        m = methods[n]
        if m is not None and (count[m] <= len(dashes) or n == m):  # the method's own run keeps its colour
            k = seen.get(m, 0)
            seen[m] = k + 1
            out[n] = {"color": METHOD_STYLE[m]["color"], "ls": dashes[k]}
            used.add(METHOD_STYLE[m]["color"])
    for n in names:
        if n in out:
            continue
        k = sum(map(ord, n))
        c = _OTHER_COLORS[k % len(_OTHER_COLORS)]
        if c in used:
            c = next((c2 for c2 in _OTHER_COLORS if c2 not in used), c)
        used.add(c)
        out[n] = {"color": c, "ls": "-"}
    return out


def _positive(e) -> np.ndarray:
    """Errors for a log axis: zeros and non-finite values become NaN (not drawn), never 1e-300."""
    e = _np(e).astype(float).ravel()
    return np.where(np.isfinite(e) & (e > 0), e, np.nan)


def _decade_groups(series: Mapping[str, np.ndarray], max_decades: float) -> list[list[str]]:
    """Split series into two groups (separate panels) when together they span more than
    ``max_decades`` and their typical levels are far apart; else one group."""
    meds = {k: np.nanmedian(np.log10(v)) for k, v in series.items() if np.isfinite(v).any()}
    if len(meds) < 2:
        return [list(series)]
    lo = min(np.nanmin(np.log10(v)) for v in series.values() if np.isfinite(v).any())
    hi = max(np.nanmax(np.log10(v)) for v in series.values() if np.isfinite(v).any())
    order = sorted(meds, key=meds.get, reverse=True)
    gaps = [meds[a] - meds[b] for a, b in zip(order, order[1:])]
    j = int(np.argmax(gaps))
    if hi - lo <= max_decades or gaps[j] < 3:
        return [list(series)]
    top = set(order[:j + 1])
    return [[k for k in series if k in top], [k for k in series if k not in top]]


def _span_at_least(ax, arrays, decades: float = 2.0) -> None:
    """Widen a log axis to at least ``decades`` decades around its data, so that a panel holding
    only nearby values does not blow a few per cent up to the full height."""
    vals = np.concatenate([np.ravel(a) for a in arrays]) if arrays else np.array([])
    vals = vals[np.isfinite(vals) & (vals > 0)]
    if not len(vals):
        return
    lo, hi = np.log10(vals.min()), np.log10(vals.max())
    if hi - lo < decades:
        mid = 0.5 * (lo + hi)
        ax.set_ylim(10 ** (mid - decades / 2), 10 ** (mid + decades / 2))


def plot_step_errors(errors: Mapping[str, Sequence[float]], x_labels: Sequence[float] | None = None,
                     title: str = "ground-truth error after each inversion step", ylabel: str = "NMSE to the true latent",
                     ax=None, save: str | Path | None = None, max_decades: float = 8.0):
    """Error after each inversion step (log scale), one line per run.

    The x axis is the course's one step numbering: inversion step k = 1..N, the k-th step from
    the clean end. ``x_labels`` (the timestep each step reaches) label a secondary axis on top.
    Colours come from :func:`series_styles` (one colour per method across the course). When the
    runs together span more than ``max_decades`` decades (naive ~1e-2 beside exact ~1e-17), they
    are drawn in two panels, each with the decades its runs need (not with ``ax=``).
    """
    series = {k: _positive(v) for k, v in errors.items()}
    styles = series_styles(list(series))
    groups = [list(series)] if ax is not None else _decade_groups(series, max_decades)
    if ax is not None:
        fig, axes = ax.figure, [ax]
    else:
        fig, axes = plt.subplots(len(groups), 1, figsize=(6.4, 3.6 if len(groups) == 1 else 5.6), sharex=True,
                                 squeeze=False)
        axes = list(axes[:, 0])
    for a, names in zip(axes, groups):
        for name in names:
            e = series[name]
            xs = np.arange(1, len(e) + 1)
            a.semilogy(xs, e, marker="o", ms=3, lw=1.5, label=name, **styles[name])
        if len(groups) > 1:
            _span_at_least(a, [series[n] for n in names])
        a.set_ylabel(ylabel if len(groups) == 1 else "NMSE", fontsize=9 if len(groups) > 1 else None)
        a.grid(True, which="both", alpha=0.3)
        a.legend(fontsize=8)
    axes[-1].set_xlabel("inversion step k (1 = the step from the clean end)")
    axes[-1].xaxis.set_major_locator(MaxNLocator(integer=True))
    if x_labels is not None and len(x_labels):
        labels = np.asarray(x_labels, dtype=float)
        top = axes[0].twiny()
        top.set_xlim(axes[0].get_xlim())
        ks = np.unique(np.linspace(1, len(labels), min(6, len(labels))).round().astype(int))
        top.set_xticks(ks, [f"{labels[k - 1]:g}" for k in ks], fontsize=7)
        top.set_xlabel("timestep reached", fontsize=8)
    if len(groups) > 1:
        fig.suptitle(title + "\n(two panels: the runs sit too many decades apart for one axis)", fontsize=10)
        fig.tight_layout()
    else:
        axes[0].set_title(title, fontsize=10)
    save_figure(fig, save)
    return fig


def show_images(images, rows: int = 1, titles: Sequence[str] | None = None, row_labels: Sequence[str] | None = None,
                cmap: str = "gray", vrange: tuple[float, float] | None = (-1, 1), save: str | Path | None = None,
                scale: float = 1.3, suptitle: str | None = None):
    """A grid of single-channel (or 3-channel) images given as (N, C, H, W), row-major."""
    arr = _np(images)
    n = arr.shape[0]
    cols = int(np.ceil(n / rows))
    fig, axes = plt.subplots(rows, cols, figsize=(scale * cols, scale * rows), squeeze=False)
    for k, ax in enumerate(axes.flat):
        ax.set_xticks([])
        ax.set_yticks([])
        if k >= n:
            ax.axis("off")
            continue
        img = arr[k]
        if img.shape[0] == 1:
            img = img[0]
        elif img.shape[0] == 3:
            img = np.transpose(img, (1, 2, 0))
            if vrange is not None:
                img = (img - vrange[0]) / (vrange[1] - vrange[0])
            img = np.clip(img, 0, 1)
        else:  # a latent with several channels: show the first
            img = img[0]
        kw = {} if vrange is None or img.ndim == 3 else {"vmin": vrange[0], "vmax": vrange[1]}
        ax.imshow(img, cmap=cmap, **kw)
        if titles is not None and k < len(titles) and titles[k]:
            ax.set_title(titles[k], fontsize=8)
        if row_labels is not None and k % cols == 0:
            ax.set_ylabel(row_labels[k // cols], fontsize=8)
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout()
    save_figure(fig, save)
    return fig


def plot_latent_rows(rows: Mapping[str, torch.Tensor], labels: Sequence[float], save: str | Path | None = None,
                     vrange=(-2.5, 2.5), suptitle: str | None = None, scale: float = 1.4):
    """Rows of one sample's latents at the same levels, e.g. truth vs each inversion method.

    ``rows[name]`` is (n_levels, C, H, W) (first channel shown); ``labels`` the timestep of each
    column. Rows whose name starts with "|" are error maps: drawn in 'magma' on one colour scale
    shared by all of them (0 to the largest error of any), with one colour bar, so that maps side by
    side compare directly.
    """
    names = list(rows)
    err_max = max([float(_np(rows[n])[:, 0].max()) for n in names if n.startswith("|")] + [1e-12])
    err_rows = [r for r, n in enumerate(names) if n.startswith("|")]
    im_err = None
    ncol = len(labels)
    fig, axes = plt.subplots(len(names), ncol, figsize=(scale * ncol + 0.8, scale * len(names)), squeeze=False)
    for r, name in enumerate(names):
        arr = _np(rows[name])[:, 0]
        is_err = name.startswith("|")
        kw = {"cmap": "magma", "vmin": 0, "vmax": err_max} if is_err else \
             {"cmap": "gray", "vmin": vrange[0], "vmax": vrange[1]}
        for c in range(ncol):
            ax = axes[r, c]
            im = ax.imshow(arr[c], **kw)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(f"t={labels[c]:g}", fontsize=8)
            if c == 0:
                ax.set_ylabel(name, fontsize=8)
        if is_err:
            im_err = im
    if im_err is not None:
        fig.colorbar(im_err, ax=[axes[r, c] for r in err_rows for c in range(ncol)], fraction=0.02, pad=0.01,
                     label="|error| (one scale)")
    if suptitle:
        fig.suptitle(suptitle)
    save_figure(fig, save)
    return fig


def plot_step_panel(latents: Mapping[str, torch.Tensor], errors: Mapping[str, Sequence[float]], step: int,
                    label: float, vrange=(-2.5, 2.5), save: str | Path | None = None):
    """One inversion step for several methods: each latent (and its |error| to the truth) at
    that step, and the error curves with the step marked. Returns (figure, drawn arrays)."""
    names = [k for k in latents if k != "truth"]
    truth = _np(latents["truth"])[0]
    fig = plt.figure(figsize=(2.0 * (len(names) + 1) + 4.2, 4.2))
    gs = fig.add_gridspec(2, len(names) + 2, width_ratios=[1] * (len(names) + 1) + [2.6])
    drawn = []
    err_max = max([float(np.abs(_np(latents[n])[0] - truth).max()) for n in names] + [1e-12])  # one scale for all maps
    ax = fig.add_subplot(gs[0, 0])
    ax.imshow(truth, cmap="gray", vmin=vrange[0], vmax=vrange[1])
    ax.set_title("truth", fontsize=9)
    ax.axis("off")
    for j, name in enumerate(names, start=1):
        lat = _np(latents[name])[0]
        err = np.abs(lat - truth)
        drawn += [lat, err]
        ax = fig.add_subplot(gs[0, j])
        ax.imshow(lat, cmap="gray", vmin=vrange[0], vmax=vrange[1])
        ax.set_title(name, fontsize=9)
        ax.axis("off")
        ax = fig.add_subplot(gs[1, j])
        ax.imshow(err, cmap="magma", vmin=0, vmax=err_max)
        ax.set_title(f"|error| max {err.max():.1e}", fontsize=8)
        ax.axis("off")
    ax = fig.add_subplot(gs[:, -1])
    styles = series_styles(list(errors))
    for name, e in errors.items():
        ax.semilogy(np.arange(1, len(e) + 1), _positive(e), label=name, **styles[name])
    if step > 0:
        ax.axvline(step, color="k", lw=0.8, ls="--")
    ax.set_xlabel("inversion step k")
    ax.set_ylabel("NMSE to truth")
    ax.legend(fontsize=8)
    ax.grid(True, which="both", alpha=0.3)
    fig.suptitle(f"after inversion step {step} (level t={label:g}); |error| maps on one scale, 0 to {err_max:.1e}",
                 fontsize=10)
    save_figure(fig, save)
    return fig, np.concatenate([d.ravel() for d in drawn]) if drawn else np.zeros(1)
