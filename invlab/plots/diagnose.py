"""The one-page report of ``invlab.diagnose``: images, per-step diagnostics, the recovered noise."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import MaxNLocator

from .core import _np, run_title, save_figure

__all__ = ["plot_diagnosis"]


def _arr(v) -> np.ndarray:
    return np.array([np.nan if x is None else x for x in (v or [])], dtype=float)


def _show(ax, img, title: str, cmap: str = "gray", vmin=-1.0, vmax=1.0) -> None:
    a = _np(img)
    if a.ndim == 4:
        a = a[0]
    if a.ndim == 3:
        a = a[0] if a.shape[0] not in (3,) else np.clip((a.transpose(1, 2, 0) + 1) / 2, 0, 1)
    if a.ndim == 2:
        ax.imshow(a, cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
    elif a.ndim == 3:
        ax.imshow(a, interpolation="nearest")
    else:  # not an image (gmm-2d): print the values
        ax.text(0.5, 0.5, np.array2string(np.ravel(a)[:8], precision=3), ha="center", va="center", fontsize=7,
                transform=ax.transAxes)
    ax.set_title(title, fontsize=8.5)
    ax.set_xticks([])
    ax.set_yticks([])


def plot_diagnosis(report: Mapping[str, Any], images: Mapping[str, Any] | None = None,
                   save: str | Path | None = None):
    """``report``: :meth:`invlab.diagnose.Diagnosis.to_json`; ``images``: "image", "reconstruction"
    (in [-1, 1]) and "noise" (z_T_hat), first sample shown. Steps numbered 1..N (clean -> noisy)."""
    images = dict(images or {})
    run, st, rec, noise = report["run"], report["steps"], report["reconstruction"], report["noise"]
    n = len(st["index"])
    xs = np.arange(1, n + 1)
    fig = plt.figure(figsize=(11, 8.2))
    gs = fig.add_gridspec(3, 4, height_ratios=[1.0, 1.05, 1.05], hspace=0.55, wspace=0.38)
    # row 1: the images
    if "image" in images:
        _show(fig.add_subplot(gs[0, 0]), images["image"], "your image")
    if "reconstruction" in images:
        title = "reconstruction" + (f"\nPSNR {rec['psnr']:.1f} dB" if rec.get("psnr") is not None else "")
        if rec.get("ssim") is not None:
            title += f", SSIM {rec['ssim']:.3f}"
        _show(fig.add_subplot(gs[0, 1]), images["reconstruction"], title)
    if "image" in images and "reconstruction" in images:
        diff = np.abs(_np(images["reconstruction"]) - _np(images["image"]))
        top = float(np.nanmax(diff)) if diff.size else 1.0
        _show(fig.add_subplot(gs[0, 2]), diff, f"|difference| (max {top:.2g})", cmap="magma", vmin=0.0,
              vmax=max(top, 1e-12))
    if "noise" in images:
        z = _np(images["noise"])
        _show(fig.add_subplot(gs[0, 3]), z, "recovered noise z_T (ch. 0)", cmap="RdBu_r", vmin=-3, vmax=3)
    # row 2: per-step curves
    ax = fig.add_subplot(gs[1, :2])
    fr = _arr(st["forward_residual"])
    ax.semilogy(xs, np.clip(fr, 1e-18, None), "o-", color="#D55E00", ms=3, lw=1.4, label="forward residual")
    if st.get("local_error") is not None:
        le = _arr(st["local_error"])
        ax.semilogy(xs, np.clip(le, 1e-18, None), "s--", color="#0072B2", ms=3, lw=1.2,
                    label="local error (vs an exact step)")
    ax.set_xlabel("inversion step (1 = clean end)", fontsize=8)
    ax.set_ylabel("RMS", fontsize=8)
    ax.set_title("per step: does the sampler's step undo it?", fontsize=9)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    ax.tick_params(labelsize=7)
    ax = fig.add_subplot(gs[1, 2:])
    ax.plot(xs, _arr(st["x0_drift"]), "o-", color="0.35", ms=3, lw=1.2, label="x0-prediction drift")
    ax.set_xlabel("inversion step", fontsize=8)
    ax.set_ylabel("RMS to the image's latent", fontsize=8)
    ax.set_title("does the inverted state still mean the image?", fontsize=9)
    ax.grid(True, alpha=0.3)
    ax.tick_params(labelsize=7)
    # row 3: attribution, noise histogram, text
    ax = fig.add_subplot(gs[2, :2])
    att = _arr(st["attribution"])
    ax.bar(xs, att, color=np.where(att >= 0, "#D55E00", "#009E73"), width=0.8)
    ax.axhline(0, color="0.3", lw=0.8)
    ax.set_xlabel("inversion step undone", fontsize=8)
    ax.set_ylabel("growth of the gap (RMS)", fontsize=8)
    ax.set_title(f"where the round trip loses it (sum = {rec['recon_rmse']:.3g}, latent RMS)", fontsize=9)
    ax.grid(True, axis="y", alpha=0.3)
    ax.tick_params(labelsize=7)
    ax = fig.add_subplot(gs[2, 2])
    if "noise" in images:
        z = np.ravel(_np(images["noise"]))
        z = z[np.isfinite(z)]
        if z.size:
            ax.hist(z, bins=40, density=True, color="0.7")
            g = np.linspace(-4, 4, 200)
            ax.plot(g, np.exp(-g**2 / 2) / np.sqrt(2 * np.pi), color="#0072B2", lw=1.2, label="N(0, 1)")
            ax.legend(fontsize=7)
    ax.set_title("recovered noise: histogram", fontsize=9)
    ax.tick_params(labelsize=7)
    ax = fig.add_subplot(gs[2, 3])
    ax.axis("off")
    lines = []

    def fmt(v, f=".3g"):
        return "n/a" if v is None else format(v, f)

    if "error" in noise:
        lines.append(f"noise stats: {noise['error'][:60]}")
    else:
        lines += [f"mean {fmt(noise.get('mean'))}   var {fmt(noise.get('var'))}",
                  f"autocorr h {fmt(noise.get('autocorr_h'))}  w {fmt(noise.get('autocorr_w'))}",
                  f"normality p {fmt(noise.get('normal_p'))}   KS p {fmt(noise.get('ks_p'))}",
                  f"looks like noise: {fmt(noise.get('looks_like_noise'), '.0%')} of the batch"]
    solver = report.get("solver")
    if solver:
        failed = solver.get("failed_steps") or []
        lines.append(f"inner solves: {solver['converged']}/{solver['solved']} converged"
                     + (f" (not {', '.join(str(s + 1) for s in failed[:6])})" if failed else ""))
    nfe = report.get("nfe", {})
    lines.append("NFE:")
    lines += [f"  {k.replace('_', ' ')} {v}" for k, v in nfe.items()]
    ax.text(0.0, 1.0, "\n".join(lines), va="top", ha="left", fontsize=7.5, family="monospace",
            transform=ax.transAxes, wrap=True)
    for a in fig.axes:
        if a.get_xlabel().startswith("inversion step"):
            a.xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.suptitle(run_title(f"diagnose: {run['method']} inversion, {run['solver']}", run["model"], run["steps"],
                           run["guidance"]), fontsize=11)
    save_figure(fig, save)
    return fig
