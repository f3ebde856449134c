"""Figures of the watermark study: ROC curves per protocol and the key's rings in a spectrum."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import matplotlib.pyplot as plt
import numpy as np

from .core import save_figure

__all__ = ["plot_watermark_roc", "plot_watermark_spectra", "roc_points"]

_PROTOCOL_STYLE = {"naive": {"color": "#D55E00", "ls": "-"}, "exact": {"color": "#0072B2", "ls": "-"},
                   "dpm-exact": {"color": "#009E73", "ls": "--"}, "dpm-naive-ddim": {"color": "#CC79A7", "ls": ":"}}


def roc_points(marked: Sequence[float], clean: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """(FPR, TPR) of the detector "watermarked when the score is at most a threshold", over every
    threshold (low scores mean watermarked: a distance or a log p-value)."""
    m, c = np.sort(np.asarray(marked, dtype=float)), np.sort(np.asarray(clean, dtype=float))
    if not len(m) or not len(c):
        raise ValueError("roc_points needs at least one watermarked and one clean score")
    thr = np.unique(np.concatenate([m, c]))
    tpr = np.searchsorted(m, thr, side="right") / len(m)
    fpr = np.searchsorted(c, thr, side="right") / len(c)
    return np.concatenate([[0.0], fpr]), np.concatenate([[0.0], tpr])


def plot_watermark_roc(rows: Sequence[dict[str, Any]], attacks: Sequence[str] | None = None, title: str = "",
                       save: str | Path | None = None):
    """One panel per attack, one ROC curve per protocol, from detection rows that kept their scores
    (``invlab.studies.watermark.detection(..., keep_scores=True)``). FPR on a log axis: the 1 % line is
    where Tree-Ring reports its TPR. Returns (figure, {(protocol, attack): (fpr, tpr)})."""
    rows = [r for r in rows if "log_p_marked" in r]
    if not rows:
        raise ValueError("no rows with scores: run invlab.studies.watermark.detection(..., keep_scores=True)")
    attacks = list(dict.fromkeys(r["attack"] for r in rows)) if attacks is None else list(attacks)
    fig, axes = plt.subplots(1, len(attacks), figsize=(3.3 * len(attacks), 3.4), squeeze=False)
    drawn = {}
    for ax, attack in zip(axes[0], attacks):
        for r in (r for r in rows if r["attack"] == attack):
            fpr, tpr = roc_points(r["log_p_marked"], r["log_p_clean"])
            drawn[(r["protocol"], attack)] = (fpr, tpr)
            ax.step(np.maximum(fpr, 1e-3), tpr, where="post", label=f"{r['protocol']} (AUC {r['auc']:.2f})",
                    **_PROTOCOL_STYLE.get(r["protocol"], {}))
        ax.axvline(0.01, color="0.6", lw=0.8)
        ax.set_xscale("log")
        ax.set_xlim(1e-3, 1)
        ax.set_ylim(-0.02, 1.02)
        ax.set_xlabel("false-positive rate (clean images)")
        ax.set_title(f"attack: {attack}", fontsize=9)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
    axes[0][0].set_ylabel("true-positive rate (watermarked)")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    save_figure(fig, save)
    return fig, drawn


def plot_watermark_spectra(key_values, mask, spectra: dict[str, Any], channel: int = 0, title: str = "",
                           save: str | Path | None = None):
    """|spectrum| on one channel: the key (rings inside the mask) and each named spectrum (e.g. the
    watermarked z_T, its naive and its exact inversion), with the mask's outline. ``key_values`` and each
    spectrum are complex (C, H, W) (one sample). Returns (figure, list of the drawn arrays)."""
    panels = {"key": np.abs(np.asarray(key_values)[channel]) * np.asarray(mask)[channel]}
    panels.update({k: np.abs(np.asarray(v)[channel]) for k, v in spectra.items()})
    vmax = max(float(p.max()) for p in panels.values())
    fig, axes = plt.subplots(1, len(panels), figsize=(2.6 * len(panels), 2.8), squeeze=False)
    m = np.asarray(mask)[channel].astype(float)
    for ax, (name, arr) in zip(axes[0], panels.items()):
        ax.imshow(arr, cmap="magma", vmin=0, vmax=vmax)
        ax.contour(m, levels=[0.5], colors="w", linewidths=0.7)
        ax.set_title(name, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    save_figure(fig, save)
    return fig, list(panels.values())
