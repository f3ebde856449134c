"""Data that ships inside packages: scikit-learn's digits (no download)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def digits_images(size: int = 16, split: str = "all", val_fraction: float = 0.1, seed: int = 0):
    """scikit-learn's 1,797 8x8 digits, upsampled (bilinear) to ``size`` and scaled to [-1, 1].

    ``split`` is "all", "train" or "val"; the split is a fixed permutation (``seed``).
    Returns ``(images (N, 1, size, size) float32, labels (N,) long)``.
    """
    from sklearn.datasets import load_digits

    if split not in ("all", "train", "val"):
        raise ValueError(f"split must be 'all', 'train' or 'val' (got {split!r})")
    d = load_digits()
    x = torch.tensor(d.images, dtype=torch.float32)[:, None] / 16.0 * 2.0 - 1.0
    y = torch.tensor(d.target, dtype=torch.long)
    if size != 8:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False).clamp(-1, 1)
    if split == "all":
        return x, y
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))
    n_val = int(round(val_fraction * len(x)))
    idx = perm[:n_val] if split == "val" else perm[n_val:]
    return x[idx], y[idx]
