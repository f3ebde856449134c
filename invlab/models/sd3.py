"""Stable Diffusion 3-style pipelines (MMDiT transformer, rectified flow) as one invlab Denoiser.

The transformer predicts the flow velocity ``v = eps - x0`` (``prediction_type="flow_prediction"``) and
is fed diffusers' timesteps ``sigma * 1000``; the schedule is the pipeline's
``FlowMatchEulerDiscreteScheduler`` config as an :class:`invlab.flow.FlowSchedule` (static shift, or
dynamic shift with ``mu`` from the latent's number of image tokens, as diffusers' pipelines compute it).

Prompts are encoded by the pipeline's own ``encode_prompt`` (two CLIP encoders, and T5 when present:
``with_t5=False`` or a folder without ``text_encoder_3`` gives T5's zeros, as diffusers does). The
encoded condition is one floating tensor per row, the sequence embeddings flattened with the pooled
projection appended, ``(B, L * D + P)``: :meth:`SD3Denoiser.pack` / :meth:`unpack` convert. That keeps
CFG's batching and negative prompts working unchanged (null-text's optimised unconditional input fits the same
form, but null-text does not run on flow models yet: it needs x0 at sigma = 1).

Loading follows the SD adapter's rules: safetensors only, no remote code, offline from a folder or the
cache. :func:`save_tiny_sd3_pipeline` writes a tiny randomly initialised pipeline for tests.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from ..checks import check_device, check_dtype
from ..flow import FlowSchedule
from .base import Denoiser
from .sd import _DENSE, TINY_VAE_CONFIG, StableDiffusionDenoiser, _write_tiny_tokenizer, prompt_list, resolve_pipeline

#: a tiny SD3 transformer (4x8x8 latents, patch 2: 16 image tokens)
TINY_SD3_TRANSFORMER_CONFIG: dict[str, Any] = {
    "sample_size": 8, "patch_size": 2, "in_channels": 4, "num_layers": 2, "attention_head_dim": 8,
    "num_attention_heads": 2, "joint_attention_dim": 32, "caption_projection_dim": 16,
    "pooled_projection_dim": 32, "out_channels": 4, "pos_embed_max_size": 8,
}


_SD3_COMPONENTS = ("transformer", "vae", "text_encoder", "text_encoder_2", "tokenizer", "tokenizer_2", "scheduler")


class SD3Denoiser(StableDiffusionDenoiser):
    """A diffusers ``SD3Transformer2DModel`` + ``AutoencoderKL`` + the pipeline's text encoders."""

    def __init__(self, pipe: Any, negative_prompt: str = "", height: int | None = None, width: int | None = None,
                 max_sequence_length: int = 256, name: str = "stable-diffusion-3"):
        transformer, vae = pipe.transformer, pipe.vae
        factor = 2 ** (len(vae.config.block_out_channels) - 1)
        height = int(height or transformer.config.sample_size * factor)
        width = int(width or transformer.config.sample_size * factor)
        patch = int(transformer.config.patch_size)
        for what, v in (("height", height), ("width", width)):
            if v <= 0 or v % (factor * patch):
                raise ValueError(f"{what}={v} must be a positive multiple of {factor * patch} (the VAE downsamples by "
                                 f"{factor}, the transformer patches by {patch})")
        latent = (transformer.config.in_channels, height // factor, width // factor)
        tokens = (latent[1] // patch) * (latent[2] // patch)
        schedule = FlowSchedule.from_config(dict(pipe.scheduler.config), image_seq_len=tokens)
        Denoiser.__init__(self, schedule, latent, "flow_prediction", None)
        self.transformer, self.vae = transformer, vae
        self._pipe = pipe                                  # the text side: encode_prompt, tokenizers, encoders
        self.vae_scale_factor = factor
        self.image_shape = (vae.config.in_channels, height, width)
        self.scaling_factor = float(vae.config.scaling_factor)
        shift = getattr(vae.config, "shift_factor", None)
        self.shift_factor = float(shift) if shift is not None else 0.0
        self.negative_prompt = negative_prompt
        self.max_sequence_length = int(max_sequence_length)
        self.name = name
        self._null: dict[Any, torch.Tensor] = {}
        self._shape: tuple[int, int, int] | None = None     # (L, D, P) of this pipeline's embeddings

    @property
    def dtype(self) -> torch.dtype:
        return next(self.transformer.parameters()).dtype

    @property
    def device(self) -> torch.device:
        return next(self.transformer.parameters()).device

    # ----------------------------------------------------------- text
    def pack(self, prompt_embeds: torch.Tensor, pooled: torch.Tensor) -> torch.Tensor:
        """``(B, L, D)`` sequence embeddings and ``(B, P)`` pooled projections -> ``(B, L * D + P)``."""
        b, L, D = prompt_embeds.shape
        self._shape = (L, D, pooled.shape[-1])
        return torch.cat([prompt_embeds.reshape(b, L * D), pooled], dim=-1)

    def unpack(self, cond: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self._shape is None:
            self.null_cond(1, cond)                        # learn (L, D, P) from the negative prompt
        L, D, P = self._shape
        return cond[:, :L * D].reshape(-1, L, D), cond[:, L * D:]

    @torch.no_grad()
    def encode_prompt(self, prompts: list[str]) -> torch.Tensor:
        """The pipeline's own prompt encoding (CLIP-L, CLIP-G and T5 or its zeros), packed."""
        embeds, _, pooled, _ = self._pipe.encode_prompt(prompts, None, None, device=self.device,
                                                       do_classifier_free_guidance=False,
                                                       max_sequence_length=self.max_sequence_length)
        return self.pack(embeds.to(self.dtype), pooled.to(self.dtype))

    def check_cond(self, cond: Any, batch: int, like: torch.Tensor) -> torch.Tensor | None:
        if cond is None:
            return None
        text = "this model is text-conditional: pass a prompt (str), a list of prompts or packed embeddings"
        prompts = prompt_list(cond, batch, text)
        if prompts is not None:
            return self.encode_prompt(prompts)
        if isinstance(cond, torch.Tensor) and cond.is_floating_point():
            width = self.null_cond(1, like).shape[-1]
            if cond.dim() == 1:
                cond = cond[None]
            if cond.dim() != 2 or cond.shape[-1] != width or cond.shape[0] not in (1, batch):
                raise ValueError(f"packed SD3 embeddings must have shape (1 or {batch}, {width}) = (B, L*D + P); got "
                                 f"{tuple(cond.shape)} (model.pack(prompt_embeds, pooled) makes one)")
            return cond.expand(batch, -1).to(device=self.device, dtype=self.dtype)
        raise TypeError(f"{text}; got {type(cond).__name__} {cond!r:.60}")

    def null_cond(self, batch: int, like: torch.Tensor) -> torch.Tensor:
        key = (self.device, self.dtype)
        if key not in self._null:
            self._null[key] = self.encode_prompt([self.negative_prompt])
        return self._null[key].expand(batch, -1)

    def embed_cond(self, cond: Any, batch: int, like: torch.Tensor) -> torch.Tensor:
        if cond is None:
            return self.null_cond(batch, like)
        return cond.expand(batch, -1)

    # ----------------------------------------------------------- network
    def forward_raw(self, x: torch.Tensor, label: float, cond: torch.Tensor | None) -> torch.Tensor:
        if cond is None:
            cond = self.null_cond(x.shape[0], x)
        embeds, pooled = self.unpack(cond.to(device=self.device, dtype=self.dtype))
        t = torch.full((x.shape[0],), float(label), dtype=self.dtype, device=self.device)
        out = self.transformer(hidden_states=x.to(device=self.device, dtype=self.dtype, memory_format=_DENSE),
                               encoder_hidden_states=embeds, pooled_projections=pooled, timestep=t).sample
        return out.to(device=x.device, dtype=x.dtype)


def is_sd3_folder(where: str | Path) -> bool:
    """True when a pipeline folder's ``model_index.json`` names a Stable Diffusion 3 pipeline."""
    index = Path(where) / "model_index.json"
    if not index.is_file():
        return False
    return "StableDiffusion3" in str(json.loads(index.read_text()).get("_class_name", ""))


def load_sd3(name: str, dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu",
             negative_prompt: str = "", with_t5: bool = True, height: int | None = None, width: int | None = None,
             max_sequence_length: int = 256, revision: str | None = None,
             local_files_only: bool | None = None) -> SD3Denoiser:
    """Load an SD3-style pipeline from a hub id or a local folder (safetensors only, no remote code).

    ``with_t5=False`` (or a folder without ``text_encoder_3``) leaves T5 out: its part of the prompt
    embedding is zeros, as diffusers does without it."""
    from diffusers import StableDiffusion3Pipeline

    dtype, device = check_dtype(dtype), check_device(device)
    path = Path(name).expanduser()
    if path.is_dir():
        missing = [f"{c}/" for c in _SD3_COMPONENTS if not (path / c).is_dir()]
        missing += [f"{c}/diffusion_pytorch_model.safetensors" for c in ("transformer", "vae")
                    if (path / c).is_dir() and not any((path / c).glob("diffusion_pytorch_model*.safetensors"))]
        if missing:
            raise ValueError(f"{str(path)!r} is not a complete Stable Diffusion 3 pipeline folder: it lacks {missing}; "
                             "pass the folder StableDiffusion3Pipeline.save_pretrained() wrote (safetensors weights)")
        where, local = str(path), True
    else:
        where, local = resolve_pipeline(name, revision, local_files_only, None)
    kwargs: dict[str, Any] = {}
    if not with_t5 or not (Path(where) / "text_encoder_3").is_dir():
        kwargs.update(text_encoder_3=None, tokenizer_3=None)
    pipe = StableDiffusion3Pipeline.from_pretrained(where, dtype=dtype, use_safetensors=True,
                                                    local_files_only=local, revision=revision, **kwargs)
    for m in (pipe.transformer, pipe.vae, pipe.text_encoder, pipe.text_encoder_2, pipe.text_encoder_3):
        if m is not None:
            m.to(device).eval().requires_grad_(False)
    return SD3Denoiser(pipe, negative_prompt, height, width, max_sequence_length, name=str(name))


def save_tiny_sd3_pipeline(folder: str | Path, seed: int = 0, shift: float = 3.0,
                           dynamic_shift: bool = False) -> Path:
    """Write a tiny randomly initialised SD3 pipeline (transformer, VAE, two CLIP text encoders with
    projections and their tokenizers, flow scheduler; no T5) with ``save_pretrained``: 16x16 RGB images,
    4x8x8 latents. ``dynamic_shift=True`` writes FLUX-style dynamic shifting."""
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection, CLIPTokenizer

    folder = Path(folder)
    torch.manual_seed(seed)
    SD3Transformer2DModel(**TINY_SD3_TRANSFORMER_CONFIG).save_pretrained(folder / "transformer")
    AutoencoderKL(**{**TINY_VAE_CONFIG, "shift_factor": 0.05, "scaling_factor": 1.2}).save_pretrained(folder / "vae")
    for enc, tok in (("text_encoder", "tokenizer"), ("text_encoder_2", "tokenizer_2")):
        _write_tiny_tokenizer(folder / tok)
        tokenizer = CLIPTokenizer.from_pretrained(folder / tok)
        cfg = CLIPTextConfig(vocab_size=len(tokenizer), hidden_size=16, intermediate_size=37, num_hidden_layers=2,
                             num_attention_heads=4, max_position_embeddings=77, projection_dim=16, bos_token_id=0,
                             eos_token_id=1, pad_token_id=1)
        CLIPTextModelWithProjection(cfg).save_pretrained(folder / enc)
        tokenizer.save_pretrained(folder / tok)
    sched = {"num_train_timesteps": 1000, "shift": shift}
    if dynamic_shift:
        sched.update(use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15, base_image_seq_len=16,
                     max_image_seq_len=256)
    FlowMatchEulerDiscreteScheduler(**sched).save_pretrained(folder / "scheduler")
    (folder / "model_index.json").write_text(json.dumps({
        "_class_name": "StableDiffusion3Pipeline", "_diffusers_version": "0.30.0",
        "transformer": ["diffusers", "SD3Transformer2DModel"], "vae": ["diffusers", "AutoencoderKL"],
        "text_encoder": ["transformers", "CLIPTextModelWithProjection"], "tokenizer": ["transformers", "CLIPTokenizer"],
        "text_encoder_2": ["transformers", "CLIPTextModelWithProjection"],
        "tokenizer_2": ["transformers", "CLIPTokenizer"], "text_encoder_3": [None, None], "tokenizer_3": [None, None],
        "scheduler": ["diffusers", "FlowMatchEulerDiscreteScheduler"],
    }, indent=1))
    return folder


__all__ = ["SD3Denoiser", "TINY_SD3_TRANSFORMER_CONFIG", "is_sd3_folder", "load_sd3", "save_tiny_sd3_pipeline"]
