"""Models behind one interface (:class:`Denoiser`) and the registry ``load_model`` reads."""

from __future__ import annotations

from typing import Any, Callable

from .base import PREDICTION_TYPES, Denoiser, EpsOutput
from .gaussian import GaussianMixture, gaussian_flow_map, gmm_2d, gmm_digits

#: name -> factory(**kwargs) -> Denoiser. Later adapters (trained nets, Stable Diffusion) register here.
REGISTRY: dict[str, Callable[..., Denoiser]] = {
    "gmm-2d": gmm_2d,
    "gmm-digits": gmm_digits,
}

DEFAULT_MODEL = "gmm-digits"


def register_model(name: str, factory: Callable[..., Denoiser]) -> None:
    REGISTRY[name] = factory


def available_models() -> list[str]:
    return sorted(REGISTRY)


def load_model(name: str = DEFAULT_MODEL, **kwargs: Any) -> Denoiser:
    """Load a model by name: one of :func:`available_models`.

    Analytic models (``"gmm-2d"``, ``"gmm-digits"``) are exact and need nothing downloaded.
    """
    if not isinstance(name, str):
        raise TypeError(f"model name must be a string, got {type(name).__name__}")
    if name in REGISTRY:
        return REGISTRY[name](**kwargs)
    raise ValueError(f"unknown model {name!r}; choose one of {available_models()}")


__all__ = ["Denoiser", "EpsOutput", "GaussianMixture", "PREDICTION_TYPES", "REGISTRY", "available_models",
           "gaussian_flow_map", "gmm_2d", "gmm_digits", "load_model", "register_model", "DEFAULT_MODEL"]
