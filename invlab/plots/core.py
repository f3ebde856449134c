"""Shared plotting helpers: saving, image grids, per-step error curves, latent rows."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch

__all__ = ["save_figure", "plot_step_errors", "show_images", "plot_latent_rows", "plot_step_panel"]


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


def plot_step_errors(errors: Mapping[str, Sequence[float]], x_labels: Sequence[float] | None = None,
                     title: str = "ground-truth error after each inversion step", ylabel: str = "NMSE to the true latent",
                     ax=None, save: str | Path | None = None):
    """Error per step (log scale), one line per run. ``x_labels``: the level reached by each step."""
    from .zoo import METHOD_STYLE

    fig, ax = (ax.figure, ax) if ax is not None else plt.subplots(figsize=(6.4, 3.6))
    for name, e in errors.items():
        e = np.clip(_np(e), 1e-300, None)
        xs = np.arange(1, len(e) + 1) if x_labels is None else np.asarray(x_labels, dtype=float)
        style = {"color": METHOD_STYLE[name]["color"]} if name in METHOD_STYLE else {}  # one colour per method
        ax.semilogy(xs, e, marker="o", ms=3, lw=1.5, label=name, **style)
    ax.set_xlabel("inversion step" if x_labels is None else "timestep reached")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
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
    column. Rows whose name starts with "|" are error maps: drawn in 'magma' from 0 to their max.
    """
    names = list(rows)
    ncol = len(labels)
    fig, axes = plt.subplots(len(names), ncol, figsize=(scale * ncol + 0.8, scale * len(names)), squeeze=False)
    for r, name in enumerate(names):
        arr = _np(rows[name])[:, 0]
        is_err = name.startswith("|")
        kw = {"cmap": "magma", "vmin": 0, "vmax": max(float(arr.max()), 1e-12)} if is_err else \
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
            fig.colorbar(im, ax=axes[r, :].tolist(), fraction=0.02, pad=0.01)
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
        ax.imshow(err, cmap="magma", vmin=0, vmax=max(float(err.max()), 1e-12))
        ax.set_title(f"|error| max {err.max():.1e}", fontsize=8)
        ax.axis("off")
    ax = fig.add_subplot(gs[:, -1])
    for name, e in errors.items():
        ax.semilogy(np.arange(1, len(e) + 1), np.clip(_np(e), 1e-300, None), label=name)
    if step > 0:
        ax.axvline(step, color="k", lw=0.8, ls="--")
    ax.set_xlabel("inversion step")
    ax.set_ylabel("NMSE to truth")
    ax.legend(fontsize=8)
    ax.grid(True, which="both", alpha=0.3)
    fig.suptitle(f"after step {step} (level t={label:g})", fontsize=10)
    save_figure(fig, save)
    return fig, np.concatenate([d.ravel() for d in drawn]) if drawn else np.zeros(1)
