"""The one model interface every method talks to: ``Denoiser``.

A ``Denoiser`` answers one question: *what is eps at (x, label, cond)?*  Everything model
specific lives in a subclass (an adapter): the network call, its prediction type, how a
condition is encoded and what the "unconditional" input is. This base class does the rest,
once, for every model:

* prediction types ``epsilon`` / ``v_prediction`` / ``sample`` (x0) are converted to eps here,
  with the (alpha, sigma) of the label the network was fed;
* classifier-free guidance ``eps = eps_u + w * (eps_c - eps_u)`` is formed here, and the
  conditional and unconditional outputs are both returned so hooks can see them;
* NFE is counted here.

**NFE convention.** One NFE is one evaluation of the (guided) eps field: a call of
:meth:`Denoiser.eps`. With guidance the network runs once on a batch of 2B (conditional and
unconditional halves together); that is still one NFE. ``net_calls`` counts forward passes of
the underlying network and ``net_rows`` the rows they processed, for cost accounting.
"""

from __future__ import annotations

from dataclasses import dataclass
import warnings
from typing import Any

import torch

from ..schedules import NoiseSchedule

PREDICTION_TYPES = ("epsilon", "v_prediction", "sample", "flow_prediction")


@dataclass
class EpsOutput:
    """Guided eps and the branches it was made of (``None`` where not computed)."""

    eps: torch.Tensor
    eps_cond: torch.Tensor | None
    eps_uncond: torch.Tensor | None
    #: the guided data prediction, set by models whose output determines it without dividing by
    #: alpha (flow models: x0 = x - sigma v); the steps use it at alpha = 0, where eps cannot
    x0: torch.Tensor | None = None


#: Guidance above this gives a UserWarning (typical values are 1-15; Stable Diffusion uses 7.5).
GUIDANCE_WARN = 50.0


def check_guidance(guidance: Any) -> float:
    """Classifier-free guidance w: a finite number >= 0 (0: unconditional, 1: no guidance).

    Values above ``GUIDANCE_WARN`` are allowed (a sweep may want to see the breakdown) but warn:
    typical values are 1-15, and at w = 1e6 the guided eps is w times the branch difference.
    """
    from ..checks import check_number

    hint = "pass e.g. guidance=3.0 (1 means no guidance; typical values are 1-15)"
    w = check_number("guidance", guidance, hint)
    if w < 0:
        raise ValueError(f"guidance must be a finite number >= 0 (got {guidance}); 0 is the unconditional model, "
                         "1 means no guidance, typical values are 1-15")
    if w > GUIDANCE_WARN:
        warnings.warn(f"guidance={w:g} is far above the typical 1-15 (Stable Diffusion uses 7.5): the guided "
                      "eps is eps_u + w (eps_c - eps_u), so expect saturated or non-finite states", UserWarning,
                      stacklevel=4)
    return w


def check_class_cond(cond: Any, batch: int, num_classes: int, name: str, device: torch.device) -> torch.Tensor:
    """A class condition (one id, or one per row) as a LongTensor of shape (batch,) on ``device``."""
    ids = f"a class id 0..{num_classes - 1}"
    items = list(cond) if isinstance(cond, (list, tuple)) else [cond]
    if any(isinstance(c, str) for c in items):
        raise TypeError(f"this model ({name}) is class-conditional: pass {ids}, not a prompt (got cond={cond!r}); "
                        "e.g. cond=3")
    try:
        c = torch.as_tensor(cond)
    except (TypeError, ValueError, RuntimeError):
        c = None
    if c is None or c.dtype not in _INT_DTYPES:  # floats (2.5, 3.0), bools, objects
        raise TypeError(f"cond must be an integer class id 0..{num_classes - 1} or a list of them, one per row "
                        f"(got {cond!r}); e.g. cond=3 or cond=[3, 8]")
    c = c.to(torch.long)
    if c.dim() == 0:
        c = c.expand(batch)
    if c.shape != (batch,):
        raise ValueError(f"cond must be one class id or {batch} of them (one per row); got shape {tuple(c.shape)}")
    if c.min() < 0 or c.max() >= num_classes:
        raise ValueError(f"class id out of range: got {c.tolist()}; {name} has classes 0..{num_classes - 1}")
    return c.to(device)


_INT_DTYPES = (torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64)


class Denoiser(torch.nn.Module):
    """Base class: subclasses implement :meth:`forward_raw` and set the attributes below.

    Attributes
    ----------
    schedule : NoiseSchedule
    sample_shape : tuple[int, ...]   shape of one sample (no batch dimension)
    num_classes : int | None         None when the model is unconditional
    prediction_type : str            what :meth:`forward_raw` returns
    name : str
    """

    name: str = "denoiser"
    is_latent: bool = False
    #: the range the model's *images* live in (pixel models: their inputs; latent models: what
    #: ``encode`` takes), or None when the data are not images (``gmm-2d``)
    image_range: tuple[float, float] | None = None

    def __init__(self, schedule: NoiseSchedule, sample_shape: tuple[int, ...], prediction_type: str = "epsilon",
                 num_classes: int | None = None):
        super().__init__()
        if prediction_type not in PREDICTION_TYPES:
            raise ValueError(
                f"unknown prediction_type {prediction_type!r}; choose one of {PREDICTION_TYPES} "
                "(diffusers' names: 'epsilon', 'v_prediction', 'sample', 'flow_prediction')"
            )
        if prediction_type == "flow_prediction" and not getattr(schedule, "is_flow", False):
            raise ValueError("prediction_type='flow_prediction' (a velocity v = eps - x0) belongs to a flow-matching "
                             "schedule (alpha = 1 - sigma); build the model with schedule=invlab.flow.FlowSchedule..."
                             f" (got {type(schedule).__name__})")
        self.schedule = schedule
        self.sample_shape = tuple(int(s) for s in sample_shape)
        self.prediction_type = prediction_type
        self.num_classes = num_classes
        self.reset_counters()

    # ------------------------------------------------------------ adapter API
    def forward_raw(self, x: torch.Tensor, label: float, cond: Any) -> torch.Tensor:
        """The network's own output for a batch ``x`` at ``label``; ``cond`` is already
        encoded by :meth:`encode_cond` (``None`` row entries mean "unconditional")."""
        raise NotImplementedError

    def null_cond(self, batch: int, like: torch.Tensor) -> Any:
        """The unconditional input for CFG (a null class, an empty prompt...)."""
        raise NotImplementedError(f"{type(self).__name__} has no unconditional input")

    def check_cond(self, cond: Any, batch: int, like: torch.Tensor) -> Any:
        """Validate and normalise a user condition; return what :meth:`forward_raw` takes."""
        if cond is not None:
            raise ValueError(f"{self.name} is unconditional; pass cond=None")
        return None

    def concat_cond(self, a: Any, b: Any) -> Any:
        return torch.cat([a, b])

    # ------------------------------------------------------- continuous conditions
    def embed_cond(self, cond: Any, batch: int, like: torch.Tensor) -> torch.Tensor:
        """The *continuous* form of an encoded condition (``None``: the unconditional input):
        a floating tensor with one row per sample that :meth:`forward_raw` accepts in place of
        the condition, and through which autograd flows (null-text inversion optimises the
        unconditional one). Class models: the class-embedding row(s); text models: the prompt
        embeddings; analytic mixtures: per-class log-weight offsets."""
        raise NotImplementedError(f"{type(self).__name__} has no continuous condition (embed_cond); "
                                  "methods that optimise the unconditional input (null-text) need one")

    def null_embedding(self, batch: int, like: torch.Tensor) -> torch.Tensor:
        """The unconditional input as a continuous tensor (``embed_cond(None, ...)``), detached."""
        return self.embed_cond(None, batch, like).detach()

    @staticmethod
    def is_embedding(cond: Any) -> bool:
        """True for a continuous condition (a floating tensor), False for ids / None."""
        return isinstance(cond, torch.Tensor) and cond.is_floating_point()

    # ------------------------------------------------------------- counters
    def reset_counters(self) -> None:
        self.nfe = 0
        self.net_calls = 0
        self.net_rows = 0

    # ------------------------------------------------------------- checks
    def check_input(self, x: torch.Tensor, what: str = "x") -> torch.Tensor:
        """Validate a batch of samples / latents: a floating tensor of shape (B, *sample_shape),
        B >= 1, finite, with data (not on the meta device). Any strides (channels-last, slices)
        and any real device or floating dtype are fine: the networks cast and move inputs."""
        from ..checks import check_tensor_device

        shape = ", ".join(map(str, self.sample_shape))
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"{what} must be a torch.Tensor of shape (B, {shape}); got {type(x).__name__}")
        if tuple(x.shape[1:]) != self.sample_shape or x.dim() != len(self.sample_shape) + 1:
            hint = " (add a batch dimension: x[None])" if tuple(x.shape) == self.sample_shape else ""
            raise ValueError(
                f"{what} has shape {tuple(x.shape)} but {self.name} takes (B, "
                f"{shape}){hint}"
            )
        if not x.is_floating_point():
            raise TypeError(f"{what} must be a floating tensor (got {x.dtype}); use x.float() or x.double()")
        if x.shape[0] == 0:
            raise ValueError(f"batch size is 0 ({what} has shape {tuple(x.shape)}); pass at least one sample")
        check_tensor_device(x, what, getattr(self, "device", None))
        if not torch.isfinite(x).all():
            raise ValueError(f"{what} contains NaN or inf; check the input image/latent before inverting")
        return x

    # ------------------------------------------------------------- eps
    def to_eps(self, out: torch.Tensor, x: torch.Tensor, label: float) -> torch.Tensor:
        """Convert a raw output of this model's prediction type to eps at ``label``."""
        lv = self.schedule.level(label)
        if self.prediction_type == "epsilon":
            return out
        if self.prediction_type == "v_prediction":  # v = alpha*eps - sigma*x0  =>  eps = sigma*x + alpha*v
            return lv.sigma * x + lv.alpha * out
        if self.prediction_type == "flow_prediction":  # v = eps - x0, alpha + sigma = 1  =>  eps = x + alpha*v
            return x + lv.alpha * out
        return (x - lv.alpha * out) / lv.sigma  # x0-prediction


    @property
    def is_conditional(self) -> bool:
        return self.num_classes is not None

    def eps(self, x: torch.Tensor, label: float, cond: Any = None, guidance: float = 1.0,
            uncond: Any = None) -> EpsOutput:
        """Guided eps at ``(x, label)``; counts one NFE.

        ``cond`` is what :meth:`check_cond` returned (``None``: unconditional).
        ``guidance=1`` runs only the conditional branch, ``guidance=0`` only the unconditional
        one, anything else both halves in one batch of 2B. ``uncond`` (also from
        :meth:`check_cond`) replaces the model's null input as the unconditional branch: a
        negative condition (negative-prompt inversion passes the source condition here).
        """
        self.nfe += 1
        b = x.shape[0]
        flow = self.prediction_type == "flow_prediction"
        if cond is None or guidance == 0.0:
            c = uncond if uncond is not None else (self.null_cond(b, x) if self.is_conditional else None)
            raw = self._net(x, label, c)
            e = self.to_eps(raw, x, label)
            return EpsOutput(e, None, e, self._x0_from_velocity(x, raw, label) if flow else None)
        if guidance == 1.0:
            raw = self._net(x, label, cond)
            e = self.to_eps(raw, x, label)
            return EpsOutput(e, e, None, self._x0_from_velocity(x, raw, label) if flow else None)
        xx = torch.cat([x, x])
        neg = uncond if uncond is not None else self.null_cond(b, x)
        if self.is_embedding(cond) != self.is_embedding(neg):  # one continuous: embed the other to match
            cond, neg = self.embed_cond(cond, b, x), self.embed_cond(neg, b, x)
        raw = self._net(xx, label, self.concat_cond(cond, neg))
        e_c, e_u = self.to_eps(raw, xx, label).chunk(2)
        x0 = None
        if flow:  # CFG on v equals CFG on eps (eps = x + alpha v is affine in v with the same x)
            v_c, v_u = raw.chunk(2)
            x0 = self._x0_from_velocity(x, v_u + guidance * (v_c - v_u), label)
        return EpsOutput(e_u + guidance * (e_c - e_u), e_c, e_u, x0)

    def _x0_from_velocity(self, x: torch.Tensor, v: torch.Tensor, label: float) -> torch.Tensor:
        """x0 = x - sigma v (flow models; no division, so it holds at sigma = 1 too)."""
        return x - self.schedule.level(label).sigma * v

    def _net(self, x: torch.Tensor, label: float, cond: Any) -> torch.Tensor:
        self.net_calls += 1
        self.net_rows += x.shape[0]
        return self.forward_raw(x, label, cond)

    # ------------------------------------------------------------- latents
    def encode(self, image: torch.Tensor) -> torch.Tensor:
        raise TypeError(f"{self.name} works in pixel space; it has no encoder (use the image itself)")

    def decode(self, latent: torch.Tensor) -> torch.Tensor:
        raise TypeError(f"{self.name} works in pixel space; it has no decoder (the latent is the image)")

    def extra_repr(self) -> str:
        return (f"name={self.name!r}, sample_shape={self.sample_shape}, prediction_type={self.prediction_type!r}, "
                f"num_classes={self.num_classes}")
