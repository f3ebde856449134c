"""The compute behind notebook 09's family sections: invert real images with several methods,
regenerate them as each method prescribes, and read each method's own per-step trace.

Real images have no ground-truth noise, so the measure here is the round trip: the image NMSE
between the input and ``invlab.reconstruct`` of the inversion (per sample), at a given NFE and
number of backward passes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np
import torch

from ..metrics import nmse
from ..trace import Recorder, Trajectory

__all__ = ["RoundTrip", "direct_offsets", "null_text_trace", "real_digits", "round_trips"]


def real_digits(model, batch: int, seed: int = 0, dtype: torch.dtype | None = None):
    """``batch`` held-out scikit-learn digits (the validation split, a seeded draw) as the model's
    input: images in [-1, 1] at the model's size for pixel models, their encoder latents for
    latent models. Returns ``(x0, labels, images)``."""
    from ..data import digits_images

    size = model.image_shape[-1] if getattr(model, "is_latent", False) else model.sample_shape[-1]
    images, labels = digits_images(size=size, split="val")
    idx = torch.randperm(len(images), generator=torch.Generator().manual_seed(int(seed)))[:batch]
    dtype = dtype or getattr(model, "dtype", torch.float32)
    images, labels = images[idx].to(dtype), labels[idx]
    with torch.no_grad():
        x0 = model.encode(images) if getattr(model, "is_latent", False) else images
    return x0, labels, images


@dataclass
class RoundTrip:
    """One method on one batch: its inversion, its reconstruction and what they cost."""

    inversion: Trajectory
    reconstruction: Trajectory
    image_nmse: np.ndarray          # per sample, against the input (decoded images for latent models)
    nfe: int                        # the inversion's
    backward_passes: int

    @property
    def median_nmse(self) -> float:
        return float(np.median(self.image_nmse))


def round_trips(model, x0: torch.Tensor, steps: int, guidance: float, cond: Any,
                methods: Mapping[str, Mapping[str, Any]], show_progress: bool = False) -> dict[str, RoundTrip]:
    """Invert ``x0`` with every entry of ``methods`` (display name -> ``invert`` keywords, including
    ``method``) at ``guidance``, then regenerate it with ``invlab.reconstruct``."""
    from ..inversion import invert
    from ..reconstruct import reconstruct

    latent = getattr(model, "is_latent", False)
    with torch.no_grad():
        ref = model.decode(x0) if latent else x0
    out = {}
    items = list(methods.items())
    if show_progress:
        from tqdm.auto import tqdm

        items = tqdm(items, desc="methods", leave=False)
    for name, kw in items:
        kw = dict(kw)
        inv = invert(model, x0, steps, "ddim", guidance=guidance, cond=cond, hooks=[Recorder(keys=())], **kw)
        rec = reconstruct(model, inv, hooks=[Recorder(keys=("x_next",))])
        with torch.no_grad():
            img = model.decode(rec.final) if latent else rec.final
        err = nmse(img, ref, reduction="none").detach().double().cpu().numpy()
        back = sum(int(r.extras.get("backward_passes", 0)) for r in inv.records)
        out[name] = RoundTrip(inv, rec, err, int(inv.nfe), back)
    return out


def null_text_trace(inversion: Trajectory) -> dict[str, np.ndarray]:
    """Per *sampling* step i (0 = the noisiest) of a null-text inversion: the loss before the first
    Adam step (the null input it started from) and after the last (the optimised one), the
    early-stop threshold, the Adam steps taken and the learning rate."""
    if inversion.config.get("method") != "null-text":
        raise ValueError(f"null_text_trace takes a method='null-text' inversion (got {inversion.config.get('method')!r})")
    recs = inversion.records[::-1]
    before = np.array([r.extras["null_losses"][0] if r.extras["null_losses"] else r.extras["null_final_loss"]
                       for r in recs])
    after = np.array([r.extras["null_final_loss"] for r in recs])
    cfg = inversion.config
    i = np.arange(len(recs))
    return {"step": i, "loss_before": before, "loss_after": after,
            "threshold": cfg["early_stop"] + i * cfg["early_stop_slope"],
            "inner_steps": np.array([r.extras["null_inner_steps"] for r in recs]),
            "lr": np.array([r.extras["null_lr"] for r in recs])}


def direct_offsets(reconstruction: Trajectory) -> np.ndarray:
    """RMS of DirectInversion's offset z*_t - z_rec at each sampling step (per step, worst sample):
    how far the guided source branch would have left the pivot path without the correction."""
    rows = []
    for r in reconstruction.records:
        off = r.extras.get("offset")
        if off is None:
            raise ValueError("direct_offsets takes the reconstruction of a method='direct' inversion "
                             "(invlab.reconstruct(model, inversion)); its records carry extras['offset']")
        rows.append(float(off.double().flatten(1).pow(2).mean(1).sqrt().max()))
    return np.array(rows)
