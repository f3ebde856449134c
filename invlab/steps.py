"""Sampler steps as pure functions "from s to t".

Symbols (DPM-Solver notation, see ``invlab.schedules``): a level carries alpha, sigma and
lambda = log(alpha/sigma); h = lambda_t - lambda_s. Nothing here knows which way the noise
goes: sampling calls these with t less noisy than s, naive inversion with t noisier than s.
No ``no_grad`` here: gradient-based methods differentiate through these functions.
"""

from __future__ import annotations

import math

import torch

from .schedules import Level


def x0_from_eps(x_s: torch.Tensor, eps: torch.Tensor, s: Level) -> torch.Tensor:
    """Data prediction from a noise prediction: x0_hat = (x_s - sigma_s eps) / alpha_s.

    At alpha_s = 0 (a flow model's sigma = 1 level) it is not determined by eps: refused; see
    :func:`x0_hat`."""
    if s.alpha == 0.0:
        raise ValueError(
            f"the data prediction at level {s.label:g} (alpha = 0, pure noise) cannot be computed from eps "
            "(x0 = (x - sigma eps) / alpha is 0/0 there); only a velocity (flow) prediction determines it. This step "
            "needs x0 at the sigma = 1 end of a flow grid, which this method does not support yet: on flow models "
            "invert with method='naive', 'exact', 'fixed-point', 'renoise', 'easyinv', 'negative-prompt' or 'direct'")
    return (x_s - s.sigma * eps) / s.alpha


def x0_hat(x_s: torch.Tensor, eps: torch.Tensor, s: Level, x0_model: torch.Tensor | None = None) -> torch.Tensor:
    """The data prediction a step uses: from eps where alpha_s > 0 (the same in every
    parameterisation), the model's own ``x0_model`` at alpha_s = 0, where eps does not determine it
    (a flow model's sigma = 1 level: ``x0 = x - sigma v`` from its velocity)."""
    if s.alpha == 0.0 and x0_model is not None:
        return x0_model
    return x0_from_eps(x_s, eps, s)


def ddim_step(x0_hat: torch.Tensor, eps: torch.Tensor, t: Level) -> torch.Tensor:
    """DDIM (eta = 0), = DPM-Solver++ order 1: x_t = alpha_t x0_hat + sigma_t eps.

    Equivalent to (sigma_t/sigma_s) x_s - alpha_t (e^{-h} - 1) x0_hat (methods.md §0);
    this form is the one diffusers' DDIMScheduler.step and DDIMInverseScheduler.step use.
    """
    return t.alpha * x0_hat + t.sigma * eps


def dpmpp2m_high_order(x0_s: torch.Tensor, x0_r: torch.Tensor, r: Level, s: Level, t: Level,
                       solver_type: str = "midpoint") -> torch.Tensor:
    """The second-order term H of DPM-Solver++(2M) for the step s -> t (previous level r).

        h = lambda_t - lambda_s,  h0 = lambda_s - lambda_r,  r0 = h0 / h
        D1 = (x0_s - x0_r) / r0
        midpoint:  H = -1/2 alpha_t (e^{-h} - 1) D1
        heun:      H =  alpha_t ((e^{-h} - 1)/h + 1) D1

    so that x_t = ddim_step(x0_s, eps_s, t) + H  (the DDIM part is the first-order update).
    """
    h = t.lam - s.lam
    h0 = s.lam - r.lam
    r0 = h0 / h
    d1 = (x0_s - x0_r) / r0
    phi = math.expm1(-h)  # e^{-h} - 1
    if solver_type == "midpoint":
        return (-0.5 * t.alpha * phi) * d1
    if solver_type == "heun":
        return (t.alpha * (phi / h + 1.0)) * d1
    raise ValueError(f"unknown solver_type {solver_type!r}; use 'midpoint' or 'heun'")
