"""Error measures and the standard round trips.

Conventions: ``nmse(a, b) = ||a - b||^2 / ||b||^2`` per sample (``b`` is the reference),
averaged over the batch -- the "T0T"/"0T0" NMSE of the exact-inversion paper.
PSNR and SSIM come from torchmetrics, on images with a stated ``data_range``.
"""

from __future__ import annotations

from typing import Any

import torch

from .checks import check_choice, check_number, unknown

REDUCTIONS = ("mean", "none")


def _flat(a: torch.Tensor, b: torch.Tensor):
    for name, t in (("a", a), ("b", b)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor (B, ...); got {type(t).__name__}")
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {tuple(a.shape)} vs {tuple(b.shape)}; compare tensors of the same shape")
    if a.dim() < 2:
        raise ValueError(f"expected batched tensors (B, ...), got shape {tuple(a.shape)}; "
                         "add a batch dimension: x[None]")
    if a.shape[0] == 0:
        raise ValueError("batch size is 0; pass at least one sample")
    return a.reshape(a.shape[0], -1).double(), b.reshape(b.shape[0], -1).double()


def _reduce(per: torch.Tensor, reduction: str) -> torch.Tensor:
    return per.mean() if reduction == "mean" else per


def nmse(a: torch.Tensor, b: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """||a - b||^2 / ||b||^2 per sample; ``reduction`` "mean" (default) or "none". float64 (differentiable)."""
    check_choice("reduction", reduction, REDUCTIONS)
    a, b = _flat(a, b)
    return _reduce(((a - b) ** 2).sum(1) / (b**2).sum(1).clamp_min(1e-300), reduction)


def rmse(a: torch.Tensor, b: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Root-mean-square difference per sample (float64, differentiable)."""
    check_choice("reduction", reduction, REDUCTIONS)
    a, b = _flat(a, b)
    return _reduce(((a - b) ** 2).mean(1).sqrt(), reduction)


def _image_pair(fn: str, a: torch.Tensor, b: torch.Tensor, data_range: Any) -> float:
    """Check an image pair and its ``data_range`` (default 2: images in [-1, 1]).

    With the default, images whose values pass 1.5 on *both* sides of the comparison (so not one
    diverged reconstruction, but e.g. [0, 255] images) are refused: the PSNR would be ~42 dB low.
    """
    _flat(a, b)
    if data_range is None:
        top = min(float(a.detach().abs().max()), float(b.detach().abs().max()))
        if top > 1.5:
            raise ValueError(f"{fn}: images have values up to {top:.4g} but the default data_range=2 assumes [-1, 1]; "
                             "pass data_range=255 for [0, 255] images (data_range=1 for [0, 1]), or rescale them "
                             "with x/127.5 - 1")
        return 2.0
    r = check_number("data_range", data_range,
                     "the width of the images' value range, e.g. 2 for [-1, 1], 255 for uint8")
    if r <= 0:
        raise ValueError(f"data_range must be > 0 (got {data_range}); 2 for [-1, 1] images, 255 for [0, 255]")
    return r


def psnr(a: torch.Tensor, b: torch.Tensor, data_range: float | None = None) -> torch.Tensor:
    """PSNR in dB (torchmetrics), per sample. ``data_range``: the width of the images' value range;
    None (default) means 2, images in [-1, 1] (and refuses [0, 255] images: pass data_range=255)."""
    from torchmetrics.functional.image import peak_signal_noise_ratio

    r = _image_pair("psnr", a, b, data_range)
    return peak_signal_noise_ratio(a.double(), b.double(), data_range=r, dim=tuple(range(1, a.dim())))


def ssim(a: torch.Tensor, b: torch.Tensor, data_range: float | None = None) -> torch.Tensor:
    """SSIM (torchmetrics) for image batches (B, C, H, W); kernel shrunk for tiny images.
    ``data_range`` as in :func:`psnr` (None: 2, images in [-1, 1])."""
    from torchmetrics.functional.image import structural_similarity_index_measure

    if isinstance(a, torch.Tensor) and a.dim() != 4:
        raise ValueError(f"ssim needs image batches (B, C, H, W), got shape {tuple(a.shape)}")
    r = _image_pair("ssim", a, b, data_range)
    if min(a.shape[-2:]) < 3:
        raise ValueError(f"ssim needs images of at least 3x3 pixels, got {tuple(a.shape[-2:])}")
    k = min(11, (min(a.shape[-2:]) // 2) * 2 - 1)
    return structural_similarity_index_measure(a.double(), b.double(), data_range=r, kernel_size=k)


def pareto_front(costs: Any, errors: Any) -> list[int]:
    """Indices of the non-dominated points when both ``costs`` and ``errors`` are minimised, in
    increasing cost. Point i is dominated when some j has cost_j <= cost_i and error_j <= error_i
    with at least one strict; equal points are all kept; NaN points are never on the front."""
    import numpy as np

    c = np.asarray(costs, dtype=float).ravel()
    e = np.asarray(errors, dtype=float).ravel()
    if c.shape != e.shape:
        raise ValueError(f"costs and errors must have the same length (got {c.size} and {e.size})")
    ok = np.flatnonzero(np.isfinite(c) & ~np.isnan(e))
    front = []
    for i in ok:
        dominated = (c[ok] <= c[i]) & (e[ok] <= e[i]) & ((c[ok] < c[i]) | (e[ok] < e[i]))
        if not dominated.any():
            front.append(int(i))
    return sorted(front, key=lambda i: (c[i], e[i]))


#: name -> metric, for code that picks one by name
METRICS = {"nmse": nmse, "rmse": rmse, "psnr": psnr, "ssim": ssim}


def get(name: str, choices: Any = None):
    """The metric called ``name`` (one of ``choices``, default all of :data:`METRICS`)."""
    choices = list(METRICS) if choices is None else list(choices)
    if name not in choices:
        raise unknown("metric", name, choices)
    return METRICS[name]


def noise_reconstruction(model, z_T: torch.Tensor, steps: int = 50, solver: str = "ddim", method: str = "naive",
                         guidance: float = 1.0, cond: Any = None, **options: Any) -> dict[str, Any]:
    """z_T -> sample -> x0 -> invert -> z_T_hat. Returns the trajectories and noise NMSE."""
    from .inversion import invert
    from .sampling import sample

    fwd = sample(model, z_T, steps, solver, guidance, cond)
    inv = invert(model, fwd.final, steps, solver, method, guidance, cond, **options)
    return {"sample": fwd, "inversion": inv, "noise_nmse": float(nmse(inv.final, z_T)),
            "step_errors": inv.errors_to(fwd)}


def image_reconstruction(model, x0: torch.Tensor, steps: int = 50, solver: str = "ddim", method: str = "naive",
                         guidance: float = 1.0, cond: Any = None, **options: Any) -> dict[str, Any]:
    """x0 -> invert -> z_T_hat -> sample -> x0_hat. Returns the trajectories and image NMSE."""
    from .inversion import invert
    from .sampling import sample

    inv = invert(model, x0, steps, solver, method, guidance, cond, **options)
    back = sample(model, inv.final, steps, solver, guidance, cond)
    return {"inversion": inv, "sample": back, "image_nmse": float(nmse(back.final, x0))}
