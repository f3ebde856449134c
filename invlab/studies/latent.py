"""Latent models: how much of an image's round-trip error is the autoencoder's, how much the inversion's.

A latent diffusion model inverts latents, not images. The image chain is

    x --(encoder E, or decoder inversion)--> z0 --(invert the diffusion)--> z_T_hat
      --(sample)--> z0_hat --(decoder D)--> x_hat

and its pixel error splits into an **autoencoder part** ``|D(z0) - x|^2`` (what the image loses
before the diffusion model ever sees it) and a **diffusion-inversion part**
``|D(z0_hat) - D(z0)|^2`` (what inverting and re-sampling the latent loses). The two parts do
not add up exactly (a cross term), so the total ``|D(z0_hat) - x|^2`` is reported too.
Mean squared errors are per pixel, images in [-1, 1].
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import torch

from ..inversion import invert, invert_decoder
from ..metrics import nmse
from ..sampling import sample
from ..trace import Recorder

__all__ = ["ChainResult", "LATENT_METHODS", "compare_decoder_inversion", "generate_images", "image_chain", "mse",
           "region_errors", "split_table"]

#: display name -> invert() keywords for the latent diffusion inversion
LATENT_METHODS: dict[str, dict[str, Any]] = {"naive": {"method": "naive"}, "exact": {"method": "exact"}}


def mse(a: torch.Tensor, b: torch.Tensor, per_sample: bool = False) -> torch.Tensor | float:
    """Mean squared error per entry (per sample with ``per_sample=True``)."""
    d = (a.double() - b.double()).pow(2).reshape(a.shape[0], -1).mean(1)
    return d if per_sample else float(d.mean())


def compare_decoder_inversion(model, images: torch.Tensor, methods: tuple[str, ...] = ("adam", "gradient-free"),
                              iterations: int = 100, show_progress: bool = False, **options: Any) -> dict:
    """Decoder inversion of ``images`` with each method (same start: the encoder's posterior mean).

    Returns method -> :class:`~invlab.inversion.decoder.DecoderInversionResult`; each holds the
    encoder's pixel MSE (``encoder_error``), its own (``decoder_error``) and the loss per iteration.
    """
    warmup = min(10, max(iterations // 10, 0))
    return {m: invert_decoder(model, images, method=m, iterations=iterations, warmup=warmup,
                              show_progress=show_progress, **options) for m in methods}


@dataclass
class ChainResult:
    """One (latent source, inversion method) pass through the image chain, per sample where useful."""

    source: str
    method: str
    latent: torch.Tensor          # z0: the latent that was inverted
    noise: torch.Tensor           # z_T_hat
    latent_back: torch.Tensor     # z0_hat: sampled again from z_T_hat
    image_back: torch.Tensor      # D(z0_hat)
    vae_mse: float                # |D(z0) - x|^2
    diffusion_mse: float          # |D(z0_hat) - D(z0)|^2
    total_mse: float              # |D(z0_hat) - x|^2
    latent_nmse: float            # |z0_hat - z0|^2 / |z0|^2
    noise_nmse: float | None      # |z_T_hat - z_T|^2 / |z_T|^2 when the true noise is known
    source_latent_nmse: float | None  # |z0 - z0_true|^2 / |z0_true|^2 when the true latent is known
    nfe_per_step: float
    per_sample_total: torch.Tensor = field(repr=False, default=None)

    def row(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in ("source", "method", "vae_mse", "diffusion_mse", "total_mse", "latent_nmse",
                                              "noise_nmse", "source_latent_nmse", "nfe_per_step")}


def image_chain(model, images: torch.Tensor, latents: Mapping[str, torch.Tensor], steps: int, guidance: float,
                cond: Any, methods: Mapping[str, Mapping[str, Any]] | None = None, true_noise: torch.Tensor | None = None,
                true_latent: torch.Tensor | None = None, solver: str = "ddim",
                show_progress: bool = False) -> dict[tuple[str, str], ChainResult]:
    """Run every latent in ``latents`` (source name -> z0, e.g. the encoder's and the decoder-
    inverted one) through inversion with every method, re-sample and decode; split the errors.

    ``true_noise`` / ``true_latent``: known for generated images (then the noise NMSE and the
    source latent's own error are filled in).
    """
    methods = LATENT_METHODS if methods is None else methods
    jobs = [(src, m) for src in latents for m in methods]
    if show_progress:
        from tqdm.auto import tqdm

        jobs = tqdm(jobs, desc="latent chain", leave=False)
    out: dict[tuple[str, str], ChainResult] = {}
    decoded: dict[str, torch.Tensor] = {}
    with torch.no_grad():
        for src, m in jobs:
            z0 = latents[src]
            if src not in decoded:
                decoded[src] = model.decode(z0)
            inv = invert(model, z0, steps, solver, guidance=guidance, cond=cond, hooks=[Recorder(keys=())],
                         **dict(methods[m]))
            back = sample(model, inv.final, steps, solver, guidance, cond, hooks=[Recorder(keys=())]).final
            img = model.decode(back)
            out[(src, m)] = ChainResult(
                source=src, method=m, latent=z0, noise=inv.final, latent_back=back, image_back=img,
                vae_mse=mse(decoded[src], images), diffusion_mse=mse(img, decoded[src]), total_mse=mse(img, images),
                latent_nmse=float(nmse(back, z0)),
                noise_nmse=None if true_noise is None else float(nmse(inv.final, true_noise.to(inv.final.dtype))),
                source_latent_nmse=None if true_latent is None else float(nmse(z0, true_latent.to(z0.dtype))),
                nfe_per_step=inv.nfe / len(inv), per_sample_total=mse(img, images, per_sample=True))
    return out


def generate_images(model, batch: int, steps: int, guidance: float, cond: Any, seed: int = 0,
                    dtype: torch.dtype = torch.float32):
    """Images whose latent and noise are known: z_T -> sample -> z0 -> D(z0). Returns (z_T, z0, image)."""
    from .. import noise

    z_T = noise(model, batch, seed=seed, dtype=dtype)
    with torch.no_grad():
        z0 = sample(model, z_T, steps, "ddim", guidance, cond, hooks=[Recorder(keys=())]).final
        img = model.decode(z0)
    return z_T, z0, img


def split_table(results: Mapping[tuple[str, str], ChainResult]) -> list[dict[str, Any]]:
    """The chain's rows as plain dicts (for printing and publishing)."""
    return [r.row() for r in results.values()]


def region_errors(reconstruction: torch.Tensor, images: torch.Tensor, clamp: bool = False) -> dict[str, Any]:
    """Where in the image a reconstruction errs: squared error (averaged over the batch) by region.

    Regions of an ``(B, C, H, W)`` image: the four ``corners`` (single pixels, in the order top-left,
    top-right, bottom-left, bottom-right), the rest of the one-pixel ``edge`` ring, and the
    ``interior``. ``clamp=True`` first clamps the reconstruction to [-1, 1] (the data's range), which
    can only help where the decoder *overshoots* the range. Also returned: the mean reconstructed
    value at each corner (``corner_values``), the ``worst_corner`` error, and ``corner_share``, the
    fraction of the whole image's MSE (``total``) that the four corner pixels carry.
    """
    r = reconstruction.double().clamp(-1, 1) if clamp else reconstruction.double()
    e = (r - images.double()).pow(2).mean(dim=(0, 1))          # (H, W) map
    corner_idx = ((0, 0), (0, -1), (-1, 0), (-1, -1))
    corners = [float(e[i, j]) for i, j in corner_idx]
    ring = torch.zeros_like(e, dtype=torch.bool)
    ring[0], ring[-1], ring[:, 0], ring[:, -1] = True, True, True, True
    edge = ring.clone()
    for i, j in corner_idx:
        edge[i, j] = False
    return {"corners": corners, "worst_corner": max(corners), "edge": float(e[edge].mean()),
            "interior": float(e[~ring].mean()), "total": float(e.mean()),
            "corner_share": float(sum(corners) / e.sum()) if float(e.sum()) > 0 else 0.0,
            "corner_values": [float(r[:, :, i, j].mean()) for i, j in corner_idx]}
