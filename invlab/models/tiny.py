"""Small trained networks that ship inside invlab: ``digits``, ``digits-latent``, ``digits-flow`` and ``photos``.

The digits models are diffusers ``UNet2DModel`` s trained by :mod:`invlab.train` on scikit-learn's digits:

* ``digits`` works on 1x16x16 images in [-1, 1];
* ``digits-latent`` is Stable Diffusion in miniature: an ``AutoencoderKL`` maps 1x32x32 images
  to 4x8x8 latents (times a ``scaling_factor``, as SD's VAE does) and the UNet works on those;
* ``photos`` is the same layout on real photographs: RGB 3x64x64 crops <-> 4x16x16 latents, the class
  being the source photograph (see :mod:`invlab.photos`).

Both predict eps on Stable Diffusion's scaled_linear schedule and take a class id 0..9; the
class-embedding row 10 is the *null class* (the unconditional input for classifier-free
guidance, learnt by label dropout). The network runs in its own dtype (float32 by default);
inputs of another dtype are cast in and the output cast back to the input's dtype.
Weights are not trainable here (``requires_grad=False``), but autograd flows through the
inputs, so gradient-based methods (null-text, ...) work.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from ..schedules import NoiseSchedule
from ..checks import check_device, check_dtype, check_image_range, check_tensor_device
from .base import Denoiser, check_class_cond

#: networks see dense inputs, so channels-last or strided tensors give exactly the contiguous result
_DENSE = torch.contiguous_format
ASSETS = Path(__file__).resolve().parent.parent / "assets"


def _read_config(folder: Path, prefix: str) -> dict[str, Any]:
    path = Path(folder) / f"{prefix}.json"
    if not path.is_file():
        raise FileNotFoundError(
            f"missing {path}; train it with `python -m invlab.train` (see invlab/assets/README.md) "
            "or pass the folder that holds it as weights_dir="
        )
    return json.loads(path.read_text())


def _load_module(module: torch.nn.Module, folder: Path, prefix: str, dtype: torch.dtype,
                 device: str | torch.device) -> torch.nn.Module:
    from safetensors.torch import load_file

    path = Path(folder) / f"{prefix}.safetensors"
    if not path.is_file():
        raise FileNotFoundError(f"missing weights {path}; train them with `python -m invlab.train` "
                                "or pass the folder that holds them as weights_dir=")
    # Cast the tensors, then assign them: no random init, and no ModelMixin.to() (which warns).
    state = {k: v.to(device=device, dtype=dtype) for k, v in load_file(str(path)).items()}
    module.load_state_dict(state, strict=True, assign=True)
    return module.eval().requires_grad_(False)


def _check_dtype(dtype: Any) -> torch.dtype:
    return check_dtype(dtype)


def _build_unet(cfg: dict[str, Any]):
    from diffusers import UNet2DModel

    with torch.device("meta"):  # no random init: the weights are assigned from the file
        return UNet2DModel(**cfg)


class ClassUNetDenoiser(Denoiser):
    """A class-conditional ``UNet2DModel`` (eps-prediction) behind the :class:`Denoiser` interface.

    ``cond`` is a class id (int) or one id per row; internally a LongTensor, with
    ``null_class`` in the rows that are unconditional.
    """

    image_range = (-1.0, 1.0)  # the pixel model's inputs; the latent model's encode() input

    def __init__(self, unet: torch.nn.Module, schedule: NoiseSchedule, num_classes: int, null_class: int,
                 name: str, prediction_type: str = "epsilon", config: dict[str, Any] | None = None):
        shape = (unet.config.in_channels, unet.config.sample_size, unet.config.sample_size)
        super().__init__(schedule, shape, prediction_type, num_classes)
        self.unet = unet
        self.null_class = int(null_class)
        self.name = name
        self.config = dict(config or {})

    @property
    def dtype(self) -> torch.dtype:
        return next(self.unet.parameters()).dtype

    @property
    def device(self) -> torch.device:
        return next(self.unet.parameters()).device

    # ----------------------------------------------------------- conditions
    def check_cond(self, cond: Any, batch: int, like: torch.Tensor) -> torch.Tensor | None:
        if cond is None:
            return None
        if self.is_embedding(cond):  # a class embedding (e.g. an optimised null-text embedding)
            return self._check_embedding(cond, batch)
        return check_class_cond(cond, batch, self.num_classes, self.name, like.device)

    @property
    def embedding_dim(self) -> int:
        return int(self.unet.class_embedding.embedding_dim)

    def _check_embedding(self, emb: torch.Tensor, batch: int) -> torch.Tensor:
        d = self.embedding_dim
        if emb.dim() == 1:
            emb = emb[None]
        if emb.dim() != 2 or emb.shape[1] != d or emb.shape[0] not in (1, batch):
            raise ValueError(f"a class embedding for {self.name} has shape (1 or {batch}, {d}); got "
                             f"{tuple(emb.shape)} (model.embed_cond(cond, batch, x) makes one from a class id)")
        if not torch.isfinite(emb).all():
            raise ValueError("the class embedding contains NaN or inf")
        return emb.expand(batch, d)

    def null_cond(self, batch: int, like: torch.Tensor) -> torch.Tensor:
        return torch.full((batch,), self.null_class, dtype=torch.long, device=like.device)

    def embed_cond(self, cond: Any, batch: int, like: torch.Tensor) -> torch.Tensor:
        """Class id(s) -> the UNet's class-embedding rows ``(batch, embedding_dim)`` in the
        network's dtype (``None``: the null class's row); an embedding passes through."""
        if cond is None:
            cond = self.null_cond(batch, like)
        if self.is_embedding(cond):
            return self._check_embedding(cond, batch)
        return self.unet.class_embedding(cond.to(self.device))

    # ----------------------------------------------------------- network
    def forward_raw(self, x: torch.Tensor, label: float, cond: torch.Tensor | None) -> torch.Tensor:
        if cond is None:  # an unconditional call on a conditional net means the null class
            cond = self.null_cond(x.shape[0], x)
        t = torch.tensor(float(label), dtype=torch.float32, device=self.device)
        x_in = x.to(device=self.device, dtype=self.dtype, memory_format=_DENSE)
        if not self.is_embedding(cond):
            out = self.unet(x_in, t, class_labels=cond.to(self.device)).sample
            return out.to(device=x.device, dtype=x.dtype)
        # A continuous class embedding: the UNet adds class_embedding(labels) to its time
        # embedding; a forward hook swaps that lookup's output for the given rows (autograd
        # flows into them), the placeholder labels are never used.
        emb = cond.to(device=self.device, dtype=self.dtype).expand(x.shape[0], -1)
        handle = self.unet.class_embedding.register_forward_hook(lambda module, args, output: emb)
        try:
            placeholder = torch.zeros(x.shape[0], dtype=torch.long, device=self.device)
            out = self.unet(x_in, t, class_labels=placeholder).sample
        finally:
            handle.remove()
        return out.to(device=x.device, dtype=x.dtype)


class LatentClassUNetDenoiser(ClassUNetDenoiser):
    """:class:`ClassUNetDenoiser` on the latents of an ``AutoencoderKL``: SD's layout in miniature.

    ``encode(image)`` = ``scaling_factor * E(image)`` (the posterior mean by default), and
    ``decode(latent)`` = ``D(latent / scaling_factor)``; images are in [-1, 1].
    """

    is_latent = True

    def __init__(self, unet: torch.nn.Module, vae: torch.nn.Module, scaling_factor: float, **kwargs: Any):
        super().__init__(unet, **kwargs)
        self.vae = vae
        self.scaling_factor = float(scaling_factor)
        down = 2 ** (len(vae.config.block_out_channels) - 1)
        self.image_shape = (vae.config.in_channels, self.sample_shape[1] * down, self.sample_shape[2] * down)

    def _check_image(self, image: torch.Tensor) -> torch.Tensor:
        shape = ", ".join(map(str, self.image_shape))
        if not isinstance(image, torch.Tensor) or not image.is_floating_point():
            got = image.dtype if isinstance(image, torch.Tensor) else type(image).__name__
            raise TypeError(f"image must be a floating torch.Tensor of shape (B, {shape}) in [-1, 1] (got {got}); "
                            "e.g. image.float() / 127.5 - 1 for uint8 images")
        if image.dim() != 4 or tuple(image.shape[1:]) != self.image_shape:
            hint = " (add a batch dimension: image[None])" if tuple(image.shape) == self.image_shape else (
                f"; resize it, e.g. torch.nn.functional.interpolate(image, size={self.image_shape[1:]}, "
                "mode='bilinear')" if image.dim() == 4 and image.shape[1] == self.image_shape[0] else "")
            raise ValueError(f"image has shape {tuple(image.shape)} but {self.name} encodes (B, {shape}){hint}")
        if image.shape[0] == 0:
            raise ValueError("batch size is 0 (image has shape (0, ...)); pass at least one image")
        check_tensor_device(image, "image", self.device)
        check_image_range(image, "images", *self.image_range, stacklevel=4)
        return image

    def encode(self, image: torch.Tensor, sample: bool = False, generator: torch.Generator | None = None) -> torch.Tensor:
        """Image in [-1, 1] ``(B, *image_shape)`` (digits-latent: 1x32x32) -> scaled latent (4x8x8; mean, or a
        posterior sample)."""
        image = self._check_image(image)
        post = self.vae.encode(image.to(device=self.device, dtype=self.dtype, memory_format=_DENSE)).latent_dist
        if sample:
            z = post.mean + post.std * torch.randn(post.mean.shape, generator=generator, dtype=post.mean.dtype).to(post.mean.device)
        else:
            z = post.mode()
        return (z * self.scaling_factor).to(device=image.device, dtype=image.dtype)

    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        """Scaled latent (digits-latent: 4x8x8) -> image ``(B, *image_shape)`` (roughly in [-1, 1]; not clamped)."""
        latent = self.check_input(latent, "latent")
        z = latent.to(device=self.device, dtype=self.dtype, memory_format=_DENSE)
        img = self.vae.decode(z / self.scaling_factor).sample
        return img.to(device=latent.device, dtype=latent.dtype)


# ---------------------------------------------------------------------------- factories
def digits(dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu",
           weights_dir: str | Path | None = None) -> ClassUNetDenoiser:
    """The shipped pixel model: class-conditional eps-UNet on 1x16x16 digits (``weights_dir``:
    a folder written by ``python -m invlab.train digits --out ...`` instead of the shipped one)."""
    return _pixel_unet("digits_unet", "digits", NoiseSchedule.from_config, dtype, device, weights_dir)


def _pixel_unet(prefix: str, name: str, schedule_from, dtype: Any, device: Any,
                weights_dir: str | Path | None) -> ClassUNetDenoiser:
    """A shipped class-conditional pixel UNet ``<prefix>.{json,safetensors}``; ``schedule_from`` builds
    its schedule from the json's scheduler config (VP or flow)."""
    folder = Path(weights_dir) if weights_dir is not None else ASSETS
    dtype, device = _check_dtype(dtype), check_device(device)
    cfg = _read_config(folder, prefix)
    unet = _load_module(_build_unet(cfg["unet"]), folder, prefix, dtype, device)
    return ClassUNetDenoiser(unet, schedule_from(cfg["scheduler"]), cfg["num_classes"], cfg["null_class"],
                             name=name, prediction_type=cfg["prediction_type"], config=cfg)


def digits_latent(dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu",
                  weights_dir: str | Path | None = None) -> LatentClassUNetDenoiser:
    """The shipped latent model: AutoencoderKL (1x32x32 <-> 4x8x8) + class-conditional latent eps-UNet."""
    return _latent_unet("digits_latent", "digits-latent", dtype, device, weights_dir)


def photos(dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu",
           weights_dir: str | Path | None = None) -> LatentClassUNetDenoiser:
    """The shipped model of real photographs: AutoencoderKL (RGB 3x64x64 <-> 4x16x16) + a latent eps-UNet
    conditioned on the source photograph (ten classes, :data:`invlab.photos.PHOTO_CLASSES`), trained on
    crops of the photographs bundled with scikit-image and scikit-learn (``python -m invlab.train photos``).
    Stored in float16, computed in ``dtype``."""
    return _latent_unet("photos", "photos", dtype, device, weights_dir)


def _latent_unet(prefix: str, name: str, dtype: Any, device: Any, weights_dir: str | Path | None) -> LatentClassUNetDenoiser:
    """A shipped latent model: ``<prefix>_vae.{json,safetensors}`` + ``<prefix>_unet.{json,safetensors}``."""
    from diffusers import AutoencoderKL

    folder = Path(weights_dir) if weights_dir is not None else ASSETS
    dtype, device = _check_dtype(dtype), check_device(device)
    cfg = _read_config(folder, f"{prefix}_unet")
    vcfg = _read_config(folder, f"{prefix}_vae")
    unet = _load_module(_build_unet(cfg["unet"]), folder, f"{prefix}_unet", dtype, device)
    with torch.device("meta"):
        vae = AutoencoderKL(**vcfg["vae"])
    vae = _load_module(vae, folder, f"{prefix}_vae", dtype, device)
    return LatentClassUNetDenoiser(unet, vae, vcfg["scaling_factor"], schedule=NoiseSchedule.from_config(cfg["scheduler"]),
                                   num_classes=cfg["num_classes"], null_class=cfg["null_class"], name=name,
                                   prediction_type=cfg["prediction_type"], config=cfg)


def digits_flow(dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu",
                weights_dir: str | Path | None = None) -> ClassUNetDenoiser:
    """The shipped rectified-flow pixel model: the ``digits`` UNet trained for the velocity
    ``v = eps - x0`` on the straight path (``python -m invlab.train digits-flow``), on diffusers'
    FlowMatchEulerDiscreteScheduler grid (no shift); fed sigma * 1000."""
    from ..flow import FlowSchedule

    return _pixel_unet("digits_flow_unet", "digits-flow", FlowSchedule.from_config, dtype, device, weights_dir)


__all__ = ["ClassUNetDenoiser", "LatentClassUNetDenoiser", "digits", "digits_flow", "digits_latent", "photos"]
