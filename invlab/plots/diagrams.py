"""Drawn diagrams (no data): the sampling step against the inverse step (notebook 01), EasyInv's
blend as a Kalman predict / measure / update loop (notebook 05), and a latent model's image chain
(notebook 07). Symbols are the notebooks' own."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

from .core import save_figure

__all__ = ["draw_kalman_loop", "draw_latent_chain", "draw_step_diagram"]

_KNOWN = "#e5f0dc"      # a state the step knows
_SOUGHT = "#f7e1d7"     # the state a step computes
_NET = "#fff3c4"        # a network call


def _box(ax, xy, text, color="#dde8f5", w=0.9, h=0.44, fs=10):
    """A rounded box of width ``w`` (data units) centred on ``xy``."""
    x, y = xy
    ax.add_patch(FancyBboxPatch((x - w / 2, y - h / 2), w, h, boxstyle="round,pad=0.02", fc=color, ec="0.3"))
    ax.text(x, y, text, ha="center", va="center", fontsize=fs)


def _arrow(ax, a, b, text="", color="0.2", style="-|>", ls="-", rad=0.0, off=(0, 0.14), fs=8.5):
    """An arrow from point ``a`` to point ``b`` (give box edges, not centres), labelled at its middle."""
    ax.add_patch(FancyArrowPatch(a, b, arrowstyle=style, mutation_scale=12, color=color, lw=1.4, linestyle=ls,
                                 connectionstyle=f"arc3,rad={rad}", shrinkA=2, shrinkB=2))
    if text:
        ax.text((a[0] + b[0]) / 2 + off[0], (a[1] + b[1]) / 2 + off[1], text, ha="center", va="center", fontsize=fs,
                color=color)


def _canvas(width: float, height: float, xlim: tuple[float, float], ylim: tuple[float, float], ncols: int = 1):
    fig, axes = plt.subplots(1, ncols, figsize=(width, height), squeeze=False)
    for ax in axes[0]:
        ax.set_xlim(*xlim)
        ax.set_ylim(*ylim)
        ax.axis("off")
    return fig, list(axes[0])


def draw_step_diagram(save: str | Path | None = None):
    """One DDIM step two ways. Left, sampling from the noisier level s to t: the network is called at
    the known x_s. Right, naive inversion from t up to s: the network should be called at x_s, which is
    unknown, so it is called at the known x_t instead (fed the label s) - the approximation whose error
    notebooks 01-03 measure."""
    fig, (a, b) = _canvas(12, 3.8, (-0.8, 6.8), (-1.0, 2.3), ncols=2)
    # sampling: x_s (known) -> eps(x_s, s) -> x0_hat -> x_t
    _box(a, (0, 1.2), "$x_s$", _KNOWN, w=0.8)
    _box(a, (3, 1.2), r"$\hat\varepsilon=\varepsilon_\theta(x_s, s)$", _NET, w=1.9)
    _box(a, (6, 1.2), "$x_t$", _SOUGHT, w=0.8)
    _arrow(a, (0.4, 1.2), (2.05, 1.2), "network at\nthe known $x_s$", off=(0, 0.3))
    _arrow(a, (3.95, 1.2), (5.6, 1.2), r"$\alpha_t\hat x_0+\sigma_t\hat\varepsilon$", off=(0, 0.22))
    a.text(3, 0.35, r"$\hat x_0=(x_s-\sigma_s\hat\varepsilon)/\alpha_s$", ha="center", fontsize=9, color="0.3")
    a.text(3, -0.55, "noisier s  $\\longrightarrow$  cleaner t: every input is known;\n"
           "the step *defines* the sample, so there is nothing to approximate", ha="center", fontsize=8.5, color="0.3")
    a.set_title("sampling: from s to t (one network call)", fontsize=10)
    # inversion: x_t (known) -> eps(x_t, s) (should be at x_s) -> x_s
    _box(b, (0, 1.2), "$x_t$", _KNOWN, w=0.8)
    _box(b, (3, 1.2), r"$\hat\varepsilon=\varepsilon_\theta(x_t, s)$", _NET, w=1.9)
    _box(b, (6, 1.2), "$x_s$", _SOUGHT, w=0.8)
    _arrow(b, (0.4, 1.2), (2.05, 1.2), "network at\nthe known $x_t$", off=(0, 0.3))
    _arrow(b, (3.95, 1.2), (5.6, 1.2), r"$\alpha_s\hat x_0+\sigma_s\hat\varepsilon$", off=(0, 0.22))
    _arrow(b, (6.0, 1.45), (3.3, 1.45), r"wanted: $\varepsilon_\theta(x_s, s)$, but $x_s$ is unknown", color="C3",
           ls="--", rad=0.35, off=(0, 0.72))
    b.text(3, 0.35, r"$\hat x_0=(x_t-\sigma_t\hat\varepsilon)/\alpha_t$", ha="center", fontsize=9, color="0.3")
    b.text(3, -0.55, "cleaner t  $\\longrightarrow$  noisier s: the prediction is taken one level off;\n"
           "its error is what naive inversion accumulates", ha="center", fontsize=8.5, color="0.3")
    b.set_title("naive inversion: from t back to s (one network call)", fontsize=10)
    fig.tight_layout()
    save_figure(fig, save)
    return fig


def draw_kalman_loop(save: str | Path | None = None):
    """EasyInv's blend as one turn of a Kalman filter: the naive inversion step *predicts* x_bar from
    the known latent y = z_i, the previous latent is the *measurement*, and the update
    z_{i+1} = eta x_bar + (1 - eta) y = x_bar + K (y - x_bar), K = 1 - eta, closes the loop."""
    fig, (ax,) = _canvas(10, 5.6, (-1.4, 7.8), (-1.6, 4.4))
    _box(ax, (0, 1.3), "$y = z_i$", _KNOWN, w=1.1)
    _box(ax, (3.2, 2.3), r"prediction $\bar x$", _NET, w=1.6)
    _box(ax, (3.2, 0.3), r"innovation $\nu = y-\bar x$", w=2.0)
    _box(ax, (6.4, 1.3), "$z_{i+1}$", _SOUGHT, w=1.0)
    _arrow(ax, (0.4, 1.55), (2.4, 2.3), "predict: the naive step\n" r"$\bar x=$ DDIM-inverse$(z_i)$", off=(-0.55, 0.45))
    _arrow(ax, (0.4, 1.05), (2.2, 0.3), "measure: the previous latent\n(observation $H=I$)", off=(-0.55, -0.45))
    _arrow(ax, (3.2, 2.06), (3.2, 0.54), "", off=(0.55, 0))
    _arrow(ax, (4.0, 2.3), (6.0, 1.55), r"weight $\eta$ on $\bar x$", off=(0.45, 0.3))
    _arrow(ax, (4.2, 0.3), (6.0, 1.05), r"gain $K = 1-\eta$ on $\nu$", off=(0.6, -0.3))
    ax.text(6.4, 0.85, r"$z_{i+1}=\eta\,\bar x+(1-\eta)\,y$" "\n" r"$=\bar x+K\,\nu$", ha="center", va="top",
            fontsize=9.5)
    _arrow(ax, (6.4, 1.52), (0.0, 1.52), r"next step: $i \leftarrow i+1$, $y \leftarrow z_{i+1}$", color="C0", ls=":",
           rad=0.62, off=(0, 2.72))
    ax.text(3.2, -1.1, r"EasyInv: constant $\eta$ (0.5) inside a window of steps; the oracle: the least-squares"
            r" $\eta^\star$ per step, from the true latent", ha="center", fontsize=8.5, color="0.3")
    ax.set_title("EasyInv's blend as a Kalman update: predict, measure, update", fontsize=10)
    fig.tight_layout()
    save_figure(fig, save)
    return fig


def draw_latent_chain(save: str | Path | None = None):
    """A latent model's round trip: image x -> encoder (or decoder inversion) -> latent z0 ->
    diffusion inversion -> noise z_T_hat -> sampling -> z0_hat -> decoder -> x_hat, with the two parts
    of the error (the autoencoder's and the diffusion inversion's) marked."""
    fig, (ax,) = _canvas(13, 3.9, (-0.9, 12.9), (-1.4, 2.3))
    xs = [0, 3, 6, 9, 12]
    w = 1.5
    _box(ax, (xs[0], 1.2), "image $x$", _KNOWN, w=w)
    _box(ax, (xs[1], 1.2), "latent $z_0$", w=w)
    _box(ax, (xs[2], 1.2), r"noise $\hat z_T$", _SOUGHT, w=w)
    _box(ax, (xs[3], 1.2), r"latent $\hat z_0$", w=w)
    _box(ax, (xs[4], 1.2), r"$\hat x = D(\hat z_0)$", w=w)
    labels = ["encoder $s\\,E(x)$\nor decoder inversion", "invert the diffusion\n(naive / exact)",
              "sample\n(same solver, $w$, class)", "decoder\n$D(z/s)$"]
    for k, lab in enumerate(labels):
        _arrow(ax, (xs[k] + w / 2, 1.2), (xs[k + 1] - w / 2, 1.2), lab, off=(0, 0.5))
    # the two error parts, under the chain
    _arrow(ax, (xs[0], 0.95), (xs[1], 0.95), "", color="C1", style="<|-|>", rad=0.25)
    ax.text(1.5, 0.25, r"autoencoder part $\|D(z_0)-x\|^2$", ha="center", fontsize=8.5, color="C1")
    _arrow(ax, (xs[1], 0.95), (xs[3], 0.95), "", color="C0", style="<|-|>", rad=0.25)
    ax.text(6, 0.0, r"diffusion-inversion part $\|D(\hat z_0)-D(z_0)\|^2$", ha="center", fontsize=8.5, color="C0")
    ax.text(6, -1.05, r"total $\|\hat x - x\|^2$ (the two parts plus a cross term); pixels in $[-1, 1]$,"
            " latents 4x8x8 for a 1x32x32 digit", ha="center", fontsize=8.5, color="0.3")
    ax.set_title("a latent model's round trip: the diffusion model only ever sees latents", fontsize=10)
    fig.tight_layout()
    save_figure(fig, save)
    return fig
