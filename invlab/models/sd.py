"""Stable Diffusion 1.x / 2.x through diffusers, behind the :class:`Denoiser` interface.

    model = invlab.load_model("stable-diffusion-v1-5/stable-diffusion-v1-5", dtype=torch.float16, device="cuda")
    model = invlab.load_model("/path/to/a/pipeline/folder")          # save_pretrained output

What the adapter owns (and nothing else does):

* **text conditioning**: ``cond`` is a prompt (str), one prompt per row (list of str), or
  precomputed CLIP embeddings ``(B, L, D)``; the unconditional input for classifier-free
  guidance is the embedding of ``negative_prompt`` (default: the empty prompt);
* **the VAE**: ``encode(image in [-1, 1]) = scaling_factor * E(image)`` (posterior mean) and
  ``decode(latent) = D(latent / scaling_factor)``;
* **prediction type**: taken from the pipeline's scheduler config (``epsilon`` for SD 1.x and
  2.x-base, ``v_prediction`` for SD 2.x 768); the base class converts it to eps;
* **dtype and device**: the networks run in ``dtype`` on ``device``; inputs are cast in and
  outputs cast back to the input's dtype.

Weights load from safetensors only, with no remote code. A hub id that is not in the local
Hugging Face cache fails at once when offline (``HF_HUB_OFFLINE=1`` or ``local_files_only=True``),
with a message that says how to get the weights.

Also here: the published Stable-Diffusion-1.5 UNet architecture with random weights
(:func:`sd15_unet`), for timings that match real SD cost without downloading anything, and a
tiny random pipeline (:func:`save_tiny_pipeline`) for offline tests and CPU demos.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import torch

from ..schedules import NoiseSchedule
from ..checks import check_device, check_dtype, check_image_range, check_tensor_device
from .base import PREDICTION_TYPES, Denoiser

#: networks see dense inputs, so channels-last or strided tensors give exactly the contiguous result
_DENSE = torch.contiguous_format
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_COMPONENTS = ("unet", "vae", "text_encoder", "tokenizer", "scheduler")  # the parts of a pipeline invlab reads


def looks_like_pipeline(name: str) -> bool:
    """True for an existing local folder or a string shaped like a hub id ``owner/name``."""
    return Path(name).expanduser().is_dir() or bool(_HUB_ID.match(name))


def _offline() -> bool:
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
        return True
    try:
        from huggingface_hub import constants

        return bool(constants.HF_HUB_OFFLINE)
    except ImportError:  # pragma: no cover - huggingface_hub comes with diffusers
        return False


def _not_available(name: str, why: str) -> FileNotFoundError:
    return FileNotFoundError(
        f"Stable Diffusion weights {name!r} are not available offline ({why}). Either run once online "
        f"(unset HF_HUB_OFFLINE and call invlab.load_model({name!r}), or `hf download {name}`) so they are "
        "cached, or pass a local folder written by a diffusers pipeline's save_pretrained()."
    )


#: component -> (files it needs, weight-file stem or None): what diffusers / transformers read from each subfolder
_NEEDS = {
    "unet": (("config.json",), "diffusion_pytorch_model"),
    "vae": (("config.json",), "diffusion_pytorch_model"),
    "text_encoder": (("config.json",), "model"),
    "tokenizer": (("vocab.json", "merges.txt"), None),
    "scheduler": (("scheduler_config.json",), None),
}


def _missing_files(path: Path, variant: str | None) -> list[str]:
    """What a pipeline folder lacks (subfolders, configs, safetensors weights), as readable notes."""
    missing = [f"{c}/" for c in _COMPONENTS if not (path / c).is_dir()]
    if missing:
        return missing
    notes = []
    for comp, (files, stem) in _NEEDS.items():
        notes += [f"{comp}/{f}" for f in files if not (path / comp / f).is_file()]
        if stem is not None:
            name = f"{stem}.{variant}.safetensors" if variant else f"{stem}.safetensors"
            if not ((path / comp / name).is_file() or (path / comp / f"{name}.index.json").is_file()):
                other = sorted(p.name for p in (path / comp).glob(f"{stem}*.bin"))
                notes.append(f"{comp}/{name}" + (f" (it has {other[0]}, but invlab loads safetensors only)"
                                                  if other else ""))
    return notes


def resolve_pipeline(name: str, revision: str | None = None, local_files_only: bool | None = None,
                     variant: str | None = None) -> tuple[str, bool]:
    """Where to load ``name`` from: ``(path or hub id, local_files_only)``; fails fast when the
    weights cannot be had (a local folder is checked for every file invlab reads)."""
    path = Path(name).expanduser()
    if path.is_dir():
        missing = _missing_files(path, variant)
        if missing:
            raise ValueError(f"{str(path)!r} is not a complete Stable Diffusion pipeline folder: it lacks {missing}; "
                             "pass the folder a pipeline's save_pretrained() wrote (with unet/, vae/, text_encoder/, "
                             "tokenizer/, scheduler/ and their safetensors weights)")
        return str(path), True
    if not _HUB_ID.match(name):
        raise ValueError(f"{name!r} is neither a local folder nor a hub id of the form 'owner/name'")
    offline = _offline() if local_files_only is None else bool(local_files_only)
    from huggingface_hub import try_to_load_from_cache

    cached = try_to_load_from_cache(name, "model_index.json", revision=revision)
    if isinstance(cached, str):
        return name, True
    if offline:
        raise _not_available(name, "it is not in the Hugging Face cache, no local folder has that name, "
                                   "and downloads are off")
    return name, False


def prompt_list(cond: Any, batch: int, text: str) -> list[str] | None:
    """A prompt or one prompt per row as a list of ``batch`` prompts; None when ``cond`` is not text
    (an embedding, checked by the caller). ``text`` opens the error for a list of non-strings."""
    if isinstance(cond, str):
        return [cond] * batch
    if not isinstance(cond, (list, tuple)):
        return None
    if not all(isinstance(p, str) for p in cond):
        raise TypeError(f"{text}, not class ids (got cond={cond!r}); e.g. cond='a photo of a cat'")
    if len(cond) != batch:
        raise ValueError(f"cond must be one prompt or {batch} prompts (one per row); got {len(cond)} prompts")
    return list(cond)


class StableDiffusionDenoiser(Denoiser):
    """A diffusers ``UNet2DConditionModel`` + ``AutoencoderKL`` + CLIP text encoder as one Denoiser."""

    is_latent = True
    image_range = (-1.0, 1.0)  # what encode() takes

    def __init__(self, unet: torch.nn.Module, vae: torch.nn.Module, text_encoder: torch.nn.Module, tokenizer: Any,
                 schedule: NoiseSchedule, prediction_type: str = "epsilon", negative_prompt: str = "",
                 height: int | None = None, width: int | None = None, name: str = "stable-diffusion"):
        factor = 2 ** (len(vae.config.block_out_channels) - 1)
        height = int(height or unet.config.sample_size * factor)
        width = int(width or unet.config.sample_size * factor)
        for what, v in (("height", height), ("width", width)):
            if v <= 0 or v % factor:
                raise ValueError(f"{what}={v} must be a positive multiple of {factor} (the VAE downsamples by {factor})")
        super().__init__(schedule, (unet.config.in_channels, height // factor, width // factor), prediction_type, None)
        self.unet, self.vae, self.text_encoder, self.tokenizer = unet, vae, text_encoder, tokenizer
        self.vae_scale_factor = factor
        self.image_shape = (vae.config.in_channels, height, width)
        self.scaling_factor = float(vae.config.scaling_factor)
        shift = getattr(vae.config, "shift_factor", None)
        self.shift_factor = float(shift) if shift is not None else 0.0
        self.negative_prompt = negative_prompt
        self.name = name
        self._null: dict[Any, torch.Tensor] = {}

    @property
    def is_conditional(self) -> bool:  # text-conditional: CFG has an unconditional input
        return True

    @property
    def dtype(self) -> torch.dtype:
        return next(self.unet.parameters()).dtype

    @property
    def device(self) -> torch.device:
        return next(self.unet.parameters()).device

    # ----------------------------------------------------------- text
    @torch.no_grad()
    def encode_prompt(self, prompts: list[str]) -> torch.Tensor:
        """CLIP last hidden states ``(B, max_length, D)`` of padded prompts (as SD pipelines do)."""
        tok = self.tokenizer(prompts, padding="max_length", max_length=self.tokenizer.model_max_length,
                             truncation=True, return_tensors="pt")
        ids = tok.input_ids.to(self.text_encoder.device)
        return self.text_encoder(ids)[0].to(dtype=self.dtype)

    def check_cond(self, cond: Any, batch: int, like: torch.Tensor) -> torch.Tensor | None:
        if cond is None:
            return None
        text = "this model is text-conditional: pass a prompt (str), a list of prompts or embeddings (B, L, D)"
        prompts = prompt_list(cond, batch, text)
        if prompts is not None:
            return self.encode_prompt(prompts)
        if isinstance(cond, torch.Tensor) and cond.is_floating_point():
            dim = self.unet.config.cross_attention_dim
            if cond.dim() == 2:
                cond = cond[None]
            if cond.dim() != 3 or cond.shape[-1] != dim or cond.shape[0] not in (1, batch):
                raise ValueError(f"prompt embeddings must have shape (1 or {batch}, L, {dim}); got {tuple(cond.shape)}")
            return cond.expand(batch, -1, -1).to(device=self.device, dtype=self.dtype)
        raise TypeError(f"{text}; got {type(cond).__name__} {cond!r:.60}; a class id belongs to class-conditional "
                        "models such as 'digits'")

    def null_cond(self, batch: int, like: torch.Tensor) -> torch.Tensor:
        key = (self.device, self.dtype)
        if key not in self._null:
            self._null[key] = self.encode_prompt([self.negative_prompt])
        return self._null[key].expand(batch, -1, -1)

    def embed_cond(self, cond: Any, batch: int, like: torch.Tensor) -> torch.Tensor:
        """Prompts already are continuous: their CLIP embeddings ``(batch, L, D)`` pass through;
        ``None`` is the negative prompt's embedding (the empty prompt by default)."""
        if cond is None:
            return self.null_cond(batch, like)
        return cond.expand(batch, -1, -1)

    # ----------------------------------------------------------- network
    def forward_raw(self, x: torch.Tensor, label: float, cond: torch.Tensor | None) -> torch.Tensor:
        if cond is None:
            cond = self.null_cond(x.shape[0], x)
        t = torch.tensor(float(label), dtype=torch.float32, device=self.device)
        out = self.unet(x.to(device=self.device, dtype=self.dtype, memory_format=_DENSE), t,
                        encoder_hidden_states=cond.to(device=self.device, dtype=self.dtype)).sample
        return out.to(device=x.device, dtype=x.dtype)

    # ----------------------------------------------------------- latents
    def encode(self, image: torch.Tensor) -> torch.Tensor:
        """Image ``(B, *image_shape)`` in [-1, 1] -> scaled latent ``(B, *sample_shape)`` (posterior mean).

        The image must have the pipeline's size (``image_shape``, set by ``height=`` / ``width=``
        of :func:`load_sd`); autograd flows through the VAE to the image."""
        c, h, w = self.image_shape
        if not isinstance(image, torch.Tensor) or not image.is_floating_point():
            got = image.dtype if isinstance(image, torch.Tensor) else type(image).__name__
            raise TypeError(f"image must be a floating torch.Tensor (B, {c}, {h}, {w}) in [-1, 1] (got {got}); "
                            "e.g. image.float() / 127.5 - 1 for uint8 images")
        if image.dim() != 4 or image.shape[1] != c:
            hint = " (add a batch dimension: image[None])" if tuple(image.shape) == self.image_shape else ""
            raise ValueError(f"image must have shape (B, {c}, {h}, {w}); got {tuple(image.shape)}{hint}")
        if tuple(image.shape[-2:]) != (h, w):
            raise ValueError(f"image is {image.shape[-2]}x{image.shape[-1]} but this pipeline was loaded for {h}x{w} "
                             f"images (latents {tuple(self.sample_shape)}); resize the image, or load the model "
                             f"with height={image.shape[-2]}, width={image.shape[-1]} (multiples of "
                             f"{self.vae_scale_factor})")
        if image.shape[0] == 0:
            raise ValueError("batch size is 0 (image has shape (0, ...)); pass at least one image")
        check_tensor_device(image, "image", self.device)
        check_image_range(image, "images", *self.image_range, stacklevel=3)
        x = image.to(device=self.device, dtype=self.vae.dtype, memory_format=_DENSE)
        z = self.vae.encode(x).latent_dist.mode()
        return ((z - self.shift_factor) * self.scaling_factor).to(device=image.device, dtype=image.dtype)

    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        """Scaled latent -> image in (roughly) [-1, 1]."""
        latent = self.check_input(latent, "latent")
        z = latent.to(device=self.device, dtype=self.vae.dtype, memory_format=_DENSE)
        z = z / self.scaling_factor + self.shift_factor
        return self.vae.decode(z).sample.to(device=latent.device, dtype=latent.dtype)


def load_sd(name: str, dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu",
            negative_prompt: str = "", prediction_type: str | None = None, variant: str | None = None,
            revision: str | None = None, local_files_only: bool | None = None, height: int | None = None,
            width: int | None = None) -> StableDiffusionDenoiser:
    """Load a Stable-Diffusion-1.x/2.x-style pipeline from a hub id or a local folder.

    ``prediction_type`` overrides the scheduler config's (``"epsilon"`` or ``"v_prediction"``);
    ``variant="fp16"`` picks the half-precision files of repositories that have them.
    """
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer

    dtype, device = check_dtype(dtype), check_device(device)
    if prediction_type is not None and prediction_type not in PREDICTION_TYPES:
        raise ValueError(f"prediction_type must be one of {PREDICTION_TYPES} or None (read it from the scheduler)")
    where, local = resolve_pipeline(name, revision, local_files_only, variant)
    common = {"revision": revision, "local_files_only": local}
    try:
        sched_cfg = _scheduler_config(where, common)
        unet = UNet2DConditionModel.from_pretrained(where, subfolder="unet", torch_dtype=dtype, variant=variant,
                                                    use_safetensors=True, low_cpu_mem_usage=False, **common)
        vae = AutoencoderKL.from_pretrained(where, subfolder="vae", torch_dtype=dtype, variant=variant,
                                            use_safetensors=True, low_cpu_mem_usage=False, **common)
        text_encoder = CLIPTextModel.from_pretrained(where, subfolder="text_encoder", torch_dtype=dtype, variant=variant,
                                                     use_safetensors=True, **common)
        tokenizer = CLIPTokenizer.from_pretrained(where, subfolder="tokenizer", **common)
    except OSError as err:
        if local and not Path(where).is_dir():
            raise _not_available(name, f"the cache is incomplete: {err}") from err
        raise
    for m in (unet, vae, text_encoder):
        if next(m.parameters()).device != torch.device(device):
            m.to(device)
        m.eval().requires_grad_(False)
    sched_cfg.update(clip_sample=False, thresholding=False)
    pred = prediction_type or sched_cfg.get("prediction_type", "epsilon")
    return StableDiffusionDenoiser(unet, vae, text_encoder, tokenizer, NoiseSchedule.from_config(sched_cfg), pred,
                                   negative_prompt, height, width, name=str(name))


def _scheduler_config(where: str, common: dict[str, Any]) -> dict[str, Any]:
    from diffusers import DDIMScheduler

    cfg = DDIMScheduler.load_config(where, subfolder="scheduler", **common)
    return {k: v for k, v in dict(cfg).items() if not k.startswith("_")}


# ---------------------------------------------------------------------------- architectures
#: The published Stable Diffusion 1.5 UNet config (860M parameters; 64x64x4 latents, CLIP-L 768).
SD15_UNET_CONFIG: dict[str, Any] = {
    "sample_size": 64,
    "in_channels": 4,
    "out_channels": 4,
    "center_input_sample": False,
    "flip_sin_to_cos": True,
    "freq_shift": 0,
    "down_block_types": ["CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"],
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"],
    "block_out_channels": [320, 640, 1280, 1280],
    "layers_per_block": 2,
    "downsample_padding": 1,
    "mid_block_scale_factor": 1,
    "act_fn": "silu",
    "norm_num_groups": 32,
    "norm_eps": 1e-5,
    "cross_attention_dim": 768,
    "attention_head_dim": 8,
}

#: A tiny UNet of the same layout (cross-attention blocks, 4-channel latents) for CPU tests.
TINY_UNET_CONFIG: dict[str, Any] = {
    "sample_size": 8,
    "in_channels": 4,
    "out_channels": 4,
    "down_block_types": ["CrossAttnDownBlock2D", "DownBlock2D"],
    "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D"],
    "block_out_channels": [32, 64],
    "layers_per_block": 1,
    "norm_num_groups": 8,
    "cross_attention_dim": 32,
    "attention_head_dim": 4,
}

TINY_VAE_CONFIG: dict[str, Any] = {
    "in_channels": 3,
    "out_channels": 3,
    "down_block_types": ["DownEncoderBlock2D", "DownEncoderBlock2D"],
    "up_block_types": ["UpDecoderBlock2D", "UpDecoderBlock2D"],
    "block_out_channels": [16, 32],
    "layers_per_block": 1,
    "latent_channels": 4,
    "norm_num_groups": 8,
    "sample_size": 16,
    "scaling_factor": 0.18215,
}


def random_unet(config: dict[str, Any] | str = "sd15", dtype: torch.dtype = torch.float32,
                device: str | torch.device = "cpu", seed: int = 0):
    """A ``UNet2DConditionModel`` with random weights: ``"sd15"`` (the published SD-1.5
    architecture, for GPU timings that match real SD cost), ``"tiny"`` or a config dict."""
    from diffusers import UNet2DConditionModel

    if isinstance(config, str):
        table = {"sd15": SD15_UNET_CONFIG, "tiny": TINY_UNET_CONFIG}
        if config not in table:
            raise ValueError(f"unknown UNet config {config!r}; choose one of {sorted(table)} or pass a dict")
        config = table[config]
    torch.manual_seed(seed)
    unet = UNet2DConditionModel(**config)
    if dtype != torch.float32 or torch.device(device) != torch.device("cpu"):
        unet = unet.to(device=device, dtype=dtype)
    return unet.eval().requires_grad_(False)


def sd15_unet(dtype: torch.dtype = torch.float16, device: str | torch.device = "cpu", seed: int = 0):
    """The Stable-Diffusion-1.5 UNet architecture with random weights (no download)."""
    return random_unet("sd15", dtype, device, seed)


def _write_tiny_tokenizer(folder: Path) -> None:
    """A CLIP BPE tokenizer over lowercase letters, digits and a few merges (no download)."""
    chars = list("abcdefghijklmnopqrstuvwxyz0123456789.,!?'-")
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for c in chars:
        vocab.setdefault(c, len(vocab))
        vocab.setdefault(c + "</w>", len(vocab))
    merges = ["t h", "th e</w>", "a n", "an d</w>", "o f</w>"]
    for m in merges:
        vocab.setdefault(m.replace(" ", ""), len(vocab))
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    (folder / "tokenizer_config.json").write_text(json.dumps({
        "model_max_length": 77, "bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>",
        "unk_token": "<|endoftext|>", "pad_token": "<|endoftext|>", "tokenizer_class": "CLIPTokenizer",
    }))


def save_tiny_pipeline(folder: str | Path, prediction_type: str = "epsilon", seed: int = 0) -> Path:
    """Write a tiny randomly initialised SD-style pipeline (UNet, VAE, CLIP text model and
    tokenizer, DDIM scheduler) with ``save_pretrained``: 16x16 RGB images, 4x8x8 latents."""
    from diffusers import AutoencoderKL, DDIMScheduler
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    if prediction_type not in ("epsilon", "v_prediction"):
        raise ValueError(f"prediction_type must be 'epsilon' or 'v_prediction' (got {prediction_type!r})")
    folder = Path(folder)
    _write_tiny_tokenizer(folder / "tokenizer")
    tokenizer = CLIPTokenizer.from_pretrained(folder / "tokenizer")
    torch.manual_seed(seed)
    random_unet("tiny", seed=seed).save_pretrained(folder / "unet")
    AutoencoderKL(**TINY_VAE_CONFIG).save_pretrained(folder / "vae")
    text_cfg = CLIPTextConfig(vocab_size=len(tokenizer), hidden_size=TINY_UNET_CONFIG["cross_attention_dim"],
                              intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
                              max_position_embeddings=77, bos_token_id=0, eos_token_id=1, pad_token_id=1)
    CLIPTextModel(text_cfg).save_pretrained(folder / "text_encoder")
    tokenizer.save_pretrained(folder / "tokenizer")
    from ..schedules import SD_SCHEDULER_CONFIG

    DDIMScheduler.from_config({**SD_SCHEDULER_CONFIG, "prediction_type": prediction_type}).save_pretrained(
        folder / "scheduler")
    (folder / "model_index.json").write_text(json.dumps({
        "_class_name": "StableDiffusionPipeline", "_diffusers_version": "0.30.0",
        "unet": ["diffusers", "UNet2DConditionModel"], "vae": ["diffusers", "AutoencoderKL"],
        "text_encoder": ["transformers", "CLIPTextModel"], "tokenizer": ["transformers", "CLIPTokenizer"],
        "scheduler": ["diffusers", "DDIMScheduler"], "safety_checker": [None, None],
        "feature_extractor": [None, None], "requires_safety_checker": False,
    }, indent=1))
    return folder


__all__ = ["SD15_UNET_CONFIG", "StableDiffusionDenoiser", "TINY_UNET_CONFIG", "TINY_VAE_CONFIG", "load_sd",
           "looks_like_pipeline", "random_unet", "resolve_pipeline", "save_tiny_pipeline", "sd15_unet"]
