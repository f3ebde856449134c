"""Glue for running the course's analysis on any model (notebook 08): conditioning, images, a summary."""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["conditioning", "describe", "to_images"]


def conditioning(model, batch: int, label: int | None = None, prompt: str | None = None) -> Any:
    """The ``cond`` argument for ``batch`` samples: class ``label`` for class-conditional models
    (``None``: labels 0, 1, 2, ... in turn), ``prompt`` for text models, ``None`` otherwise."""
    if model.num_classes:
        if label is None:
            return torch.arange(batch) % model.num_classes
        if not isinstance(label, int) or isinstance(label, bool) or not 0 <= label < model.num_classes:
            raise ValueError(f"CLASS must be an integer in [0, {model.num_classes}) for {model.name} (got {label!r}); "
                             "None cycles through the classes")
        return torch.full((batch,), label, dtype=torch.long)
    if model.is_conditional:
        if not isinstance(prompt, str):
            raise ValueError(f"{model.name} is text-conditional: set PROMPT to a string (got {prompt!r})")
        return [prompt] * batch
    return None


def to_images(model, x: torch.Tensor) -> torch.Tensor:
    """What a person looks at: the decoded image for latent models, the sample itself otherwise."""
    with torch.no_grad():
        return model.decode(x) if model.is_latent else x


def describe(model) -> dict[str, Any]:
    """A few facts about a model, for the top of a notebook."""
    from ..models.gaussian import GaussianMixture

    if isinstance(model, GaussianMixture):
        kind = "analytic Gaussian mixture (exact eps: errors are the method's alone)"
    elif model.is_latent:
        kind = "latent diffusion network (a VAE maps images to latents)"
    else:
        kind = "pixel-space diffusion network"
    if model.num_classes:
        conditioning_kind = f"{model.num_classes} classes"
    elif model.is_conditional:
        conditioning_kind = "text prompts"
    else:
        conditioning_kind = "none"
    params = sum(p.numel() for p in model.parameters())
    return {"name": model.name, "kind": kind, "sample shape": tuple(model.sample_shape),
            "prediction type": model.prediction_type, "conditioning": conditioning_kind,
            "parameters": params, "train timesteps": len(model.schedule.alphas_cumprod)}
