"""Models behind one interface (:class:`Denoiser`) and the registry ``load_model`` reads."""

from __future__ import annotations

from typing import Any, Callable

from .base import PREDICTION_TYPES, Denoiser, EpsOutput
from .gaussian import GaussianMixture, gaussian_flow_map, gmm_2d, gmm_digits



def _digits(**kwargs: Any) -> Denoiser:  # lazy: diffusers' UNet is imported on first use only
    from .tiny import digits

    return digits(**kwargs)


def _digits_latent(**kwargs: Any) -> Denoiser:
    from .tiny import digits_latent

    return digits_latent(**kwargs)


#: name -> factory(**kwargs) -> Denoiser. Later adapters (trained nets, Stable Diffusion) register here.
REGISTRY: dict[str, Callable[..., Denoiser]] = {
    "gmm-2d": gmm_2d,
    "gmm-digits": gmm_digits,
    "digits": _digits,
    "digits-latent": _digits_latent,
}

DEFAULT_MODEL = "gmm-digits"


def register_model(name: str, factory: Callable[..., Denoiser]) -> None:
    REGISTRY[name] = factory


def available_models() -> list[str]:
    return sorted(REGISTRY)


def load_model(name: str = DEFAULT_MODEL, **kwargs: Any) -> Denoiser:
    """Load a model by name: one of :func:`available_models`.

    Analytic models (``"gmm-2d"``, ``"gmm-digits"``) are exact and need nothing downloaded;
    ``"digits"`` / ``"digits-latent"`` are small trained UNets shipped in the package; any other
    name that is a local diffusers pipeline folder or a hub id ("owner/name") loads a Stable
    Diffusion 1.x/2.x pipeline (see :func:`invlab.models.sd.load_sd`).
    """
    if not isinstance(name, str):
        raise TypeError(f"model name must be a string, got {type(name).__name__}")
    if name in REGISTRY:
        return REGISTRY[name](**kwargs)
    from .sd import looks_like_pipeline  # a local diffusers folder or a hub id "owner/name"

    if looks_like_pipeline(name):
        from .sd import load_sd

        return load_sd(name, **kwargs)
    raise ValueError(f"unknown model {name!r}; choose one of {available_models()}")


__all__ = ["Denoiser", "EpsOutput", "GaussianMixture", "PREDICTION_TYPES", "REGISTRY", "available_models",
           "gaussian_flow_map", "gmm_2d", "gmm_digits", "load_model", "register_model", "DEFAULT_MODEL"]
