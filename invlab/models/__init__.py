"""Models behind one interface (:class:`Denoiser`) and the registry ``load_model`` reads."""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any, Callable

from ..checks import check_options, unknown
from .base import PREDICTION_TYPES, Denoiser, EpsOutput
from .gaussian import GaussianMixture, gaussian_flow_map, gmm_2d, gmm_2d_flow, gmm_digits, gmm_digits_flow
from .tiny import digits, digits_flow, digits_latent, photos  # tiny.py imports diffusers inside its factories only

#: name -> factory(**kwargs) -> Denoiser. Later adapters (trained nets, Stable Diffusion) register here.
REGISTRY: dict[str, Callable[..., Denoiser]] = {
    "gmm-2d": gmm_2d,
    "gmm-digits": gmm_digits,
    "gmm-2d-flow": gmm_2d_flow,
    "gmm-digits-flow": gmm_digits_flow,
    "digits": digits,
    "digits-latent": digits_latent,
    "digits-flow": digits_flow,
    "photos": photos,
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

    Every model takes ``device=``; the networks take ``dtype=`` (the dtype they compute in), the
    analytic mixtures only ``dtype=torch.float64`` (they compute in the latents' own dtype).
    """
    if not isinstance(name, str):
        raise TypeError(f"model name must be a string, got {type(name).__name__}; e.g. load_model('gmm-digits')")
    if name in REGISTRY:
        _check_kwargs(f"load_model({name!r})", REGISTRY[name], kwargs)
        return REGISTRY[name](**kwargs)
    from .sd import load_sd, looks_like_pipeline  # a local diffusers folder or a hub id "owner/name"

    path = Path(name).expanduser()
    if path.is_file():
        raise ValueError(f"{name!r} is a file; load_model takes a pipeline folder (the one save_pretrained() wrote, "
                         f"holding unet/, vae/, ...), a hub id 'owner/name' or one of {available_models()}")
    if _looks_like_path(name) and not path.is_dir():
        raise ValueError(f"no such folder {name!r}: pass an existing pipeline folder written by save_pretrained(), "
                         f"a hub id 'owner/name', or one of the built-in models {available_models()}")
    from .sd3 import is_sd3_folder, load_sd3

    if is_sd3_folder(Path(name).expanduser()):              # an SD3-style (rectified-flow) pipeline folder
        _check_kwargs(f"load_model({name!r})", load_sd3, kwargs)
        return load_sd3(name, **kwargs)
    if looks_like_pipeline(name):
        _check_kwargs(f"load_model({name!r})", load_sd, kwargs)
        return load_sd(name, **kwargs)
    raise unknown("model", name, available_models(), " (or a Stable Diffusion pipeline folder / hub id 'owner/name')")


def _looks_like_path(name: str) -> bool:
    """A filesystem path rather than a hub id: absolute, ~, ./ or ../, or more than one '/'."""
    return (name.startswith(("/", "~", "./", "../", ".\\")) or name.count("/") > 1 or "\\" in name
            or name.endswith("/"))


def _check_kwargs(where: str, factory: Callable[..., Any], kwargs: dict[str, Any]) -> None:
    params = inspect.signature(factory).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    check_options(where, kwargs, [k for k, p in params.items() if p.kind is not inspect.Parameter.VAR_POSITIONAL
                                  and k != "name"])


__all__ = ["Denoiser", "EpsOutput", "GaussianMixture", "PREDICTION_TYPES", "REGISTRY", "available_models",
           "gaussian_flow_map", "gmm_2d", "gmm_digits", "load_model", "register_model", "DEFAULT_MODEL"]
