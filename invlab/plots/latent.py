"""Plots for latent models: decoder-inversion curves, the error split, image panels."""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np

from .core import _np, _positive, save_figure, series_styles

__all__ = ["plot_decoder_losses", "plot_error_split", "plot_image_panel"]


def plot_decoder_losses(losses: Mapping[str, Sequence[float]], encoder_error: float | None = None,
                        title: str = "decoder inversion: pixel MSE per iteration", save: str | Path | None = None):
    """Pixel MSE of D(z_k) against the image at each iteration k, one line per method; the
    encoder's error D(E(x)) as a dashed line (iteration 0 of every curve starts there)."""
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    styles = series_styles(list(losses))
    for name, v in losses.items():
        v = _positive(v)
        ax.semilogy(np.arange(len(v)), v, lw=1.6, label=name, **styles[name])
    if encoder_error is not None:
        ax.axhline(encoder_error, color="k", ls="--", lw=1.0, label="encoder D(E(x))")
    ax.set_xlabel("iteration")
    ax.set_ylabel("pixel MSE")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    save_figure(fig, save)
    return fig


def plot_error_split(rows: Mapping[str, Mapping[str, float]], parts: Sequence[str] = ("vae_mse", "diffusion_mse", "total_mse"),
                     part_labels: Sequence[str] = ("autoencoder |D(z0) - x|²", "diffusion inversion |D(z0_hat) - D(z0)|²",
                                                   "total |D(z0_hat) - x|²"),
                     title: str = "where the image error comes from", save: str | Path | None = None):
    """A dot chart on a log axis (not log-scale bars, whose length depends on an arbitrary
    baseline): for every chain (``rows[name][part]``) its autoencoder part, its
    diffusion-inversion part and the total pixel MSE, one marker each. A part that is exactly 0
    (e.g. the autoencoder part of a generated image, decoded from its own latent) sits on a
    dotted floor line one decade below the smallest positive value, marked "exactly 0", so the axis
    spans only the decades the errors need."""
    names = list(rows)
    vals = np.array([[float(rows[n][p]) for n in names] for p in parts])
    pos = vals[np.isfinite(vals) & (vals > 0)]
    floor = 10.0 ** (np.floor(np.log10(pos.min())) - 1) if pos.size else 1e-16
    fig, ax = plt.subplots(figsize=(max(6.4, 1.5 * len(names) + 2), 3.8))
    xs = np.arange(len(names))
    width = 0.6 / len(parts)
    markers = ["s", "^", "o", "D", "v"]
    colors = ["#1b9e77", "#d95f02", "0.15", "#7570b3", "#e7298a"]
    for k, lab in enumerate(part_labels):
        v = vals[k]
        shown = np.where(v > 0, v, floor)
        x = xs + (k - (len(parts) - 1) / 2) * width
        ax.plot(x, shown, ls="", marker=markers[k % 5], ms=7, color=colors[k % 5], label=lab,
                mfc=colors[k % 5] if k == len(parts) - 1 else "none", mew=1.5)
        for xi, vi, si in zip(x, v, shown):
            if vi <= 0:
                ax.annotate("exactly 0", (xi, si), textcoords="offset points", xytext=(0, 6), ha="center", fontsize=7)
    if (vals <= 0).any():
        ax.axhline(floor, color="0.5", ls=":", lw=1)
    ax.set_yscale("log")
    ax.set_xticks(xs)
    ax.set_xticklabels(names, fontsize=8)
    for x in xs[1:]:
        ax.axvline(x - 0.5, color="0.85", lw=0.8)
    ax.set_ylabel("pixel MSE (log scale)")
    ax.set_title(title)
    ax.grid(True, axis="y", which="major", alpha=0.3)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    fig.tight_layout()
    save_figure(fig, save)
    return fig


def plot_image_panel(images: Mapping[str, np.ndarray], reference: str | None = None, title: str | None = None,
                     save: str | Path | None = None, vrange=(-1, 1)):
    """One image per column (single channel); with ``reference``, a second row of |image - reference|
    maps on a shared colour scale. Returns (figure, the drawn arrays concatenated)."""
    names = list(images)
    arrs = {k: _np(v).reshape(_np(v).shape[-2:]) for k, v in images.items()}
    rows = 2 if reference is not None else 1
    fig, axes = plt.subplots(rows, len(names), figsize=(1.7 * len(names), 1.9 * rows), squeeze=False)
    drawn = []
    diffs = {k: np.abs(arrs[k] - arrs[reference]) for k in names} if reference is not None else {}
    vmax = max([float(d.max()) for d in diffs.values()] + [1e-12])
    for c, k in enumerate(names):
        ax = axes[0, c]
        ax.imshow(arrs[k], cmap="gray", vmin=vrange[0], vmax=vrange[1])
        ax.set_title(k, fontsize=7)
        ax.axis("off")
        drawn.append(arrs[k])
        if reference is not None:
            ax = axes[1, c]
            ax.imshow(diffs[k], cmap="magma", vmin=0, vmax=vmax)
            ax.set_title(f"MSE {float((diffs[k] ** 2).mean()):.1e}", fontsize=7)
            ax.axis("off")
            drawn.append(diffs[k])
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    save_figure(fig, save)
    return fig, np.concatenate([d.ravel() for d in drawn])
