"""``invlab.invert``: every inversion method behind one call.

A method is registered with an options dataclass (its documented defaults) and a runner
``fn(setup, hooks, options, check_finite=..., show_progress=...) -> Trajectory``.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import torch

from ..checks import check_options, unknown
from ..loop import Setup
from ..models.base import Denoiser
from ..reversible import REVERSIBLE, ReversibleOptions
from ..trace import Trajectory
from .decoder import DecoderInversionOptions, DecoderInversionResult, invert_decoder
from .direct import DirectOptions, invert_direct
from .algebraic import invert_algebraic
from .easyinv import EasyInvBlend, EasyInvOptions, invert_easyinv
from .exact import ExactOptions, invert_exact
from .fixed_point import FixedPointOptions, invert_fixed_point
from .flow_solvers import (FireFlowOptions, RFInversionOptions, RFSolverOptions, UniInvOptions, invert_fireflow,
                           invert_rf_inversion, invert_rf_solver, invert_uni_inv)
from .naive import NaiveOptions, invert_naive
from .newton import NewtonOptions, invert_newton
from .negative_prompt import NegativePromptOptions, invert_negative_prompt
from .null_text import NullTextOptions, invert_null_text
from .renoise import ReNoiseOptions, invert_renoise
from .solvers import SolverOptions

#: method name -> (options dataclass, runner)
METHODS: dict[str, tuple[type, Callable[..., Trajectory]]] = {
    "naive": (NaiveOptions, invert_naive),
    "easyinv": (EasyInvOptions, invert_easyinv),
    "exact": (ExactOptions, invert_exact),
    "fixed-point": (FixedPointOptions, invert_fixed_point),
    "newton": (NewtonOptions, invert_newton),
    "renoise": (ReNoiseOptions, invert_renoise),
    "null-text": (NullTextOptions, invert_null_text),
    "negative-prompt": (NegativePromptOptions, invert_negative_prompt),
    "direct": (DirectOptions, invert_direct),
    "algebraic": (ReversibleOptions, invert_algebraic),
    "rf-solver": (RFSolverOptions, invert_rf_solver),
    "fireflow": (FireFlowOptions, invert_fireflow),
    "uni-inv": (UniInvOptions, invert_uni_inv),
    "rf-inversion": (RFInversionOptions, invert_rf_inversion),
}


def register_method(name: str, options_cls: type, runner: Callable[..., Trajectory]) -> None:
    METHODS[name] = (options_cls, runner)


def make_options(method: str, options: Any = None, **kwargs: Any):
    """Build a method's options from an options object and/or keyword overrides."""
    if method not in METHODS:
        raise unknown("method", method, sorted(METHODS))
    cls = METHODS[method][0]
    if options is not None and not isinstance(options, cls):
        raise TypeError(f"options for method {method!r} must be a {cls.__name__}, got {type(options).__name__}")
    check_options(f"method {method!r}", kwargs, [f.name for f in dataclasses.fields(cls)])
    return dataclasses.replace(options, **kwargs) if options is not None else cls(**kwargs)


def invert(model: Denoiser, x0: torch.Tensor, steps: int = 50, solver: str = "ddim", method: str | None = None,
           guidance: float = 1.0, cond: Any = None, hooks: Any = None, *, options: Any = None,
           grid_overrides: dict | None = None, check_finite: bool = True, show_progress: bool = False,
           **kwargs: Any) -> Trajectory:
    """Invert ``x0`` (a clean sample, shape ``(B, *model.sample_shape)``) to an estimate of z_T.

    ``solver`` names the sampler being inverted ("ddim" | "dpmpp2m"): its grid (and order
    pattern) is walked backwards. ``method`` picks the algorithm (see ``METHODS``); its options
    come from ``options=`` (the method's dataclass) and/or keywords, e.g. ``label="current"``.
    Returns a :class:`Trajectory` whose ``.final`` estimates z_T.

    Inputs: on a pixel model (``digits``, ``gmm-digits``) ``x0`` is an image batch in [-1, 1]
    (values far outside raise, [0, 1] images warn); on a latent model it is a latent (e.g.
    ``model.encode(image)``) and is not range-checked. Any floating dtype works (the network
    runs in its own dtype; the state stays in ``x0``'s), any strides, any real device (moved
    for each network call). Inputs that require grad are fine: the run is under
    ``torch.no_grad()``, so the trajectory and ``.final`` are detached (no graph); for
    gradients call ``model.eps`` and ``invlab.steps`` directly.

    ``method=None`` (default) is "naive" for "ddim"/"dpmpp2m" and "algebraic" (the closed-form
    inverse, ``invlab.reversible``) for the exact-by-construction solvers "edict", "bdia",
    "belm", which no other method inverts; the result's ``.companion`` holds their second latent
    (``invlab.reconstruct`` passes it back). ``companion=`` (a sample's ``.companion``) replaces
    the documented initial second state (EDICT: y = image; BDIA/BELM: one DDIM-inversion step).
    """
    if method is None:
        method = "algebraic" if solver in REVERSIBLE else "naive"
    if (solver in REVERSIBLE) != (method == "algebraic"):
        if method == "algebraic":
            raise ValueError(f"method 'algebraic' inverts the exact-by-construction solvers {REVERSIBLE} in closed "
                             f"form; solver={solver!r} has no closed-form inverse: use method='exact' (or another "
                             "method) for it")
        if method in METHODS:
            raise ValueError(f"solver={solver!r} is exact by construction: it is inverted by its own closed-form "
                             f"inverse, method='algebraic' (the default for it), not method={method!r}, whose "
                             "equations assume a DDIM/DPM-Solver step")
    companion = kwargs.pop("companion", None) if method == "algebraic" else None
    opts = make_options(method, options, **kwargs)
    setup = Setup(model, x0, steps, solver, guidance, cond, "x0", grid_overrides)
    runner = METHODS[method][1]
    if method == "algebraic":
        return runner(setup, hooks, opts, check_finite=check_finite, show_progress=show_progress, companion=companion)
    return runner(setup, hooks, opts, check_finite=check_finite, show_progress=show_progress)


__all__ = ["METHODS", "DecoderInversionOptions", "DecoderInversionResult", "DirectOptions", "invert_decoder", "EasyInvBlend", "EasyInvOptions", "ExactOptions", "FixedPointOptions", "NaiveOptions", "NewtonOptions", "NegativePromptOptions", "NullTextOptions", "ReNoiseOptions", "ReversibleOptions", "SolverOptions", "invert", "make_options", "register_method"]
