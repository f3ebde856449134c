"""Is the recovered noise noise? Ground-truth-free statistics of an inverted z_T_hat (issue 13, item 4).

For a batch of recovered noises (shape ``(B, *sample_shape)``), each sample is tested on its own
against what a standard normal draw would show:

* ``mean`` and ``var`` (unbiased) over the sample's entries: 0 and 1 for N(0, I);
* ``autocorr_h`` / ``autocorr_w``: the spatial lag-1 autocorrelation along the last two axes
  (rows, columns; pooled over channels), with the sample's own mean removed: ~0 for white noise,
  large for an image-like latent (None for samples without two spatial axes, e.g. gmm-2d);
* ``normal_p``: D'Agostino–Pearson's K^2 test (``scipy.stats.normaltest``: skewness and kurtosis,
  any mean/variance) on the standardised entries; ``ks_p``: Kolmogorov–Smirnov against N(0, 1)
  itself (``scipy.stats.kstest``), which also fails a wrong mean or scale.

Under N(0, I) with n entries the mean and each autocorrelation are ~N(0, 1/n), so
:func:`white_noise_band` gives the |z| < 4 band; the p-values are uniform.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np
import torch

__all__ = ["NoiseStats", "noise_stats", "noise_stats_table", "white_noise_band"]

FIELDS = ("mean", "var", "autocorr_h", "autocorr_w", "normal_p", "ks_p")


@dataclass
class NoiseStats:
    """Per-sample statistics (arrays of length B; autocorrelations None without spatial axes)."""

    mean: np.ndarray
    var: np.ndarray
    autocorr_h: np.ndarray | None
    autocorr_w: np.ndarray | None
    normal_p: np.ndarray
    ks_p: np.ndarray
    n: int
    extras: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, float | None]:
        """Median over the batch of every statistic (and n, the entries per sample)."""
        out: dict[str, float | None] = {}
        for k in FIELDS:
            v = getattr(self, k)
            out[k] = None if v is None else float(np.median(v))
        out["n"] = self.n
        return out

    def looks_like_noise(self, alpha: float = 1e-3) -> np.ndarray:
        """Per sample: inside the 4-sigma white-noise band for mean, variance and autocorrelation,
        and neither normality test rejects at ``alpha``."""
        band = white_noise_band(self.n)
        ok = (np.abs(self.mean) < band["mean"]) & (np.abs(self.var - 1) < band["var"])
        for a in (self.autocorr_h, self.autocorr_w):
            if a is not None:
                ok &= np.abs(a) < band["autocorr"]
        return ok & (self.normal_p > alpha) & (self.ks_p > alpha)


def white_noise_band(n: int, k: float = 4.0) -> dict[str, float]:
    """k-sigma half-widths of the statistics of n iid N(0, 1) entries (var: sqrt(2/(n-1)))."""
    return {"mean": k / math.sqrt(n), "var": k * math.sqrt(2.0 / (n - 1)), "autocorr": k / math.sqrt(n)}


def _lag1(x: np.ndarray, axis: int) -> float:
    a = np.moveaxis(x, axis, -1)
    num = float((a[..., 1:] * a[..., :-1]).sum())
    den = float((x * x).sum())
    return num / den if den > 0 else float("nan")


def noise_stats(z: torch.Tensor) -> NoiseStats:
    """Statistics of each sample of ``z`` (``(B, ...)``; any floating dtype, computed in float64)."""
    from scipy import stats

    if not isinstance(z, torch.Tensor) or not z.is_floating_point():
        raise TypeError(f"z must be a floating tensor of recovered noises (B, ...); got {type(z).__name__}")
    if z.dim() < 2:
        raise ValueError(f"z must have a batch axis: shape (B, ...) (got {tuple(z.shape)}); use z[None] for one sample")
    x = z.detach().to("cpu", torch.float64).numpy()
    b = x.shape[0]
    flat = x.reshape(b, -1)
    n = flat.shape[1]
    if n < 8:
        raise ValueError(f"each sample has {n} entries; the normality test needs at least 8")
    if not np.isfinite(flat).all():
        raise ValueError("z has non-finite entries (the inversion diverged); nothing to test")
    mean = flat.mean(1)
    var = flat.var(1, ddof=1)
    spatial = x.ndim >= 3 and x.shape[-1] > 1 and x.shape[-2] > 1
    ah = aw = None
    if spatial:
        c = x - mean.reshape((b,) + (1,) * (x.ndim - 1))
        ah = np.array([_lag1(c[i], -2) for i in range(b)])
        aw = np.array([_lag1(c[i], -1) for i in range(b)])
    std = np.sqrt(var)[:, None]
    standardised = (flat - mean[:, None]) / np.where(std > 0, std, 1.0)
    normal_p = np.array([stats.normaltest(standardised[i]).pvalue for i in range(b)])
    ks_p = np.array([stats.kstest(flat[i], "norm").pvalue for i in range(b)])
    return NoiseStats(mean, var, ah, aw, normal_p, ks_p, n)


def noise_stats_table(noises: Mapping[str, torch.Tensor]) -> list[dict[str, Any]]:
    """One row per named batch of noises (e.g. ``{"naive": inv.final, "edict": ...}``): the batch
    medians of :meth:`NoiseStats.summary` plus the fraction that :meth:`looks_like_noise`."""
    rows = []
    for name, z in noises.items():
        s = noise_stats(z)
        rows.append({"name": name, **s.summary(), "looks_like_noise": float(s.looks_like_noise().mean())})
    return rows
