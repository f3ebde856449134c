"""Error measures and the standard round trips.

Conventions: ``nmse(a, b) = ||a - b||^2 / ||b||^2`` per sample (``b`` is the reference),
averaged over the batch -- the "T0T"/"0T0" NMSE of the exact-inversion paper.
PSNR and SSIM come from torchmetrics, on images with a stated ``data_range``.
"""

from __future__ import annotations

from typing import Any

import torch


def _flat(a: torch.Tensor, b: torch.Tensor):
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {tuple(a.shape)} vs {tuple(b.shape)}")
    if a.dim() < 2:
        raise ValueError("expected batched tensors (B, ...)")
    return a.reshape(a.shape[0], -1).double(), b.reshape(b.shape[0], -1).double()


def nmse(a: torch.Tensor, b: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """||a - b||^2 / ||b||^2 per sample; ``reduction`` "mean" (default) or "none"."""
    a, b = _flat(a, b)
    per = ((a - b) ** 2).sum(1) / (b**2).sum(1).clamp_min(1e-300)
    return per.mean() if reduction == "mean" else per


def rmse(a: torch.Tensor, b: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Root-mean-square difference per sample."""
    a, b = _flat(a, b)
    per = ((a - b) ** 2).mean(1).sqrt()
    return per.mean() if reduction == "mean" else per


def psnr(a: torch.Tensor, b: torch.Tensor, data_range: float = 2.0) -> torch.Tensor:
    """PSNR in dB (torchmetrics); images in [-1, 1] have ``data_range=2``."""
    from torchmetrics.functional.image import peak_signal_noise_ratio

    return peak_signal_noise_ratio(a.double(), b.double(), data_range=data_range, dim=tuple(range(1, a.dim())))


def ssim(a: torch.Tensor, b: torch.Tensor, data_range: float = 2.0) -> torch.Tensor:
    """SSIM (torchmetrics) for image batches (B, C, H, W); kernel shrunk for tiny images."""
    from torchmetrics.functional.image import structural_similarity_index_measure

    if a.dim() != 4:
        raise ValueError(f"ssim needs image batches (B, C, H, W), got shape {tuple(a.shape)}")
    k = min(11, (min(a.shape[-2:]) // 2) * 2 - 1)
    return structural_similarity_index_measure(a.double(), b.double(), data_range=data_range, kernel_size=k)


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
