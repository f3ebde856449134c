"""Compute behind the 2-D flows notebook: fields, paths and single steps of the probability-flow ODE.

Everything here works for any :class:`~invlab.models.base.Denoiser`, but it is meant for the
2-D mixture ``"gmm-2d"`` whose eps is exact, so every picture shows the algorithm, not a network.

The DDIM step in scaled coordinates ``y = x / alpha`` with ``rho = sigma / alpha`` is an Euler
step of ``dy/drho = eps(x)``: many small DDIM steps trace the probability-flow ODE, a few large
ones cut its corners. Naive inversion runs the same Euler step upwards with eps taken at the
known (less noisy) end; exact inversion finds the start point whose forward step lands on it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch

from ..inversion import invert
from ..metrics import nmse
from ..sampling import sample
from ..schedules import Level
from ..steps import ddim_step, x0_from_eps
from ..trace import Recorder, Trajectory

__all__ = ["CornerStep", "FlowPaths", "corner_step", "density_grid", "denoising_field", "fine_path",
           "flow_paths", "grid_points", "naive_inverse_step", "round_trip_errors", "worst_corner"]


def grid_points(lim: float = 3.2, n: int = 21) -> tuple[np.ndarray, np.ndarray, torch.Tensor]:
    """A square n x n grid on [-lim, lim]^2: meshgrid arrays X, Y and the points as a (n*n, 2) tensor."""
    xs = np.linspace(-lim, lim, n)
    X, Y = np.meshgrid(xs, xs)
    return X, Y, torch.from_numpy(np.stack([X.ravel(), Y.ravel()], 1)).double()


def density_grid(model, X: np.ndarray, Y: np.ndarray, label: float | None = None) -> np.ndarray:
    """The model's exact density (all classes) on a meshgrid: of the data (``label=None``) or of
    the noisy marginal at ``label``. Needs a model with ``log_prob`` (the Gaussian mixtures)."""
    if not hasattr(model, "log_prob"):
        raise TypeError(f"{getattr(model, 'name', model)} has no exact density; use an analytic mixture such as 'gmm-2d'")
    pts = torch.from_numpy(np.stack([X.ravel(), Y.ravel()], 1)).double()
    return model.log_prob(pts, label).exp().numpy().reshape(X.shape)


def _cond(model, cond, n, like):
    if cond is None:
        return None
    c = torch.as_tensor(cond)
    if c.dim() == 0:
        c = c.expand(n)
    return model.check_cond(c, n, like)


def denoising_field(model, points: torch.Tensor, label: float, cond: Any = None, guidance: float = 1.0) -> torch.Tensor:
    """-eps at ``points`` and ``label``: the direction a sampling step moves a point (in the scaled
    coordinates x/alpha), = sigma * score of the noisy marginal. Shape like ``points``."""
    with torch.no_grad():
        c = _cond(model, cond, points.shape[0], points)
        return -model.eps(points, label, c, guidance if c is not None else 1.0).eps


def _sub_levels(model, s: Level, t: Level, substeps: int) -> list[Level]:
    """``substeps`` sub-steps from s to t, evenly spaced in the timestep label (end levels exact)."""
    labels = np.linspace(s.label, t.label, substeps + 1)[1:-1]
    return [s] + [model.schedule.level(float(lab)) for lab in labels] + [t]


def fine_path(model, x: torch.Tensor, s: Level, t: Level, substeps: int = 100, cond: Any = None,
              guidance: float = 1.0) -> torch.Tensor:
    """Integrate the flow from level s to level t with ``substeps`` small DDIM steps (works in
    either direction). Returns every sub-step's state, ``(substeps + 1, B, ...)``; the last row is
    a near-exact value of the flow map (first order: error ~ 1/substeps of one big step's)."""
    c = _cond(model, cond, x.shape[0], x)
    out = [x]
    with torch.no_grad():
        levels = _sub_levels(model, s, t, substeps)
        for a, b in zip(levels, levels[1:]):
            lab = a.label if b.sigma < a.sigma else b.label      # sampling: own label; upwards: target label
            e = model.eps(x, lab, c, guidance if c is not None else 1.0).eps
            x = ddim_step(x0_from_eps(x, e, a), e, b)
            out.append(x)
    return torch.stack(out)


@dataclass
class FlowPaths:
    """Paths of several points on one grid: near-exact flow, coarse DDIM, and an inversion back up.

    ``exact_fine``: the near-exact polyline, (steps * substeps + 1, B, 2), noisiest first;
    ``exact``: its states at the grid's levels, (steps + 1, B, 2); ``ddim``: the coarse sampler's
    states; ``inverted``: the inversion's states in the same (sampling) order, so ``inverted[0]``
    is the recovered noise. ``noise_nmse`` compares it with ``z_T``; ``nfe`` is the inversion's cost.
    """

    z_T: torch.Tensor
    labels: list[float]
    exact_fine: torch.Tensor
    exact: torch.Tensor
    ddim: torch.Tensor
    inverted: torch.Tensor
    method: str
    noise_nmse: float
    nfe: int
    sampling: Trajectory
    inversion: Trajectory


def flow_paths(model, z_T: torch.Tensor, steps: int = 10, guidance: float = 1.0, cond: Any = None,
               method: str = "naive", substeps: int = 100, **method_kw: Any) -> FlowPaths:
    """Sample ``z_T`` with ``steps`` DDIM steps, integrate the same points with many small steps
    (``substeps`` per grid interval), and invert the DDIM sample with ``method``."""
    keep = [Recorder(keys=("x_next",))]
    fwd = sample(model, z_T, steps, "ddim", guidance, cond, hooks=keep)
    if method == "easyinv" and method_kw.get("gain") == "oracle":
        method_kw["reference"] = fwd
    inv = invert(model, fwd.final, steps, "ddim", method=method, guidance=guidance, cond=cond, hooks=keep, **method_kw)
    pieces, at_levels, x = [z_T[None]], [z_T], z_T
    for s, t in zip(fwd.levels, fwd.levels[1:]):
        p = fine_path(model, x, s, t, substeps, cond, guidance)
        pieces.append(p[1:])
        x = p[-1]
        at_levels.append(x)
    return FlowPaths(z_T=z_T, labels=[lv.label for lv in fwd.levels], exact_fine=torch.cat(pieces),
                     exact=torch.stack(at_levels), ddim=fwd.latents(), inverted=inv.latents().flip(0), method=method,
                     noise_nmse=float(nmse(inv.final, z_T)), nfe=inv.nfe, sampling=fwd, inversion=inv)


def naive_inverse_step(model, x_t: torch.Tensor, t: Level, s: Level, cond: Any = None,
                       guidance: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """One naive inversion step from the known x_t up to level s: eps is taken at x_t (with s's
    label), because x_s is unknown. Returns (x_s estimate, the eps it used)."""
    c = _cond(model, cond, x_t.shape[0], x_t)
    with torch.no_grad():
        e = model.eps(x_t, s.label, c, guidance if c is not None else 1.0).eps
        return ddim_step(x0_from_eps(x_t, e, t), e, s), e


@dataclass
class CornerStep:
    """One large sampling step s -> t and its inverse, for a few points.

    ``path``: the near-exact flow from x_s (substeps + 1, B, 2); ``x_t_exact`` its end;
    ``x_t_ddim``: the DDIM step's end (eps taken at x_s only); ``eps_s``: eps(x_s, s), what the
    sampling step used; ``eps_t``: eps(x_t_ddim, s), what the naive inverse uses instead;
    ``x_s_naive``: the naive inverse from x_t_ddim; ``fixed_point``: iterates of
    x <- (alpha_s/alpha_t) x_t + (sigma_s - alpha_s sigma_t / alpha_t) eps(x, s) started at x_t
    (its first iterate is the naive inverse; its limit solves the step exactly).
    """

    s: Level
    t: Level
    x_s: torch.Tensor
    path: torch.Tensor
    x_t_exact: torch.Tensor
    x_t_ddim: torch.Tensor
    eps_s: torch.Tensor
    eps_t: torch.Tensor
    x_s_naive: torch.Tensor
    fixed_point: torch.Tensor

    @property
    def corner_cut(self) -> torch.Tensor:
        """Distance between the DDIM step's end and the flow's end, per point."""
        return (self.x_t_ddim - self.x_t_exact).flatten(1).norm(dim=1)

    @property
    def naive_miss(self) -> torch.Tensor:
        """Distance between the naive inverse and the true start x_s, per point."""
        return (self.x_s_naive - self.x_s).flatten(1).norm(dim=1)


def corner_step(model, x_s: torch.Tensor, s: Level, t: Level, cond: Any = None, guidance: float = 1.0,
                substeps: int = 200, iterations: int = 30) -> CornerStep:
    """One large DDIM step from x_s (level s) to level t, next to the near-exact flow, and its
    naive inverse next to the exact one (by fixed-point iteration on the step's equation)."""
    c = _cond(model, cond, x_s.shape[0], x_s)
    w = guidance if c is not None else 1.0
    path = fine_path(model, x_s, s, t, substeps, cond, guidance)
    with torch.no_grad():
        e_s = model.eps(x_s, s.label, c, w).eps
        x_t = ddim_step(x0_from_eps(x_s, e_s, s), e_s, t)
        x_naive, e_t = naive_inverse_step(model, x_t, t, s, cond, guidance)
        a, b = s.alpha / t.alpha, s.sigma - s.alpha * t.sigma / t.alpha
        its, x = [x_t], x_t
        for _ in range(iterations):
            x = a * x_t + b * model.eps(x, s.label, c, w).eps
            its.append(x)
    return CornerStep(s, t, x_s, path, path[-1], x_t, e_s, e_t, x_naive, torch.stack(its))


def worst_corner(model, paths: FlowPaths, cond: Any = None, guidance: float = 1.0, point: int = 0) -> int:
    """The sampling step at which one large DDIM step, started on the near-exact path, cuts the
    corner the most for one point: the largest ||DDIM(x_i) - x_{i+1}|| / ||x_{i+1} - x_i||
    with x_i the near-exact states at the grid's levels."""
    x = paths.exact[:, point:point + 1]
    c = None if cond is None else _cond(model, cond, paths.exact.shape[1], paths.exact[0])[point:point + 1]
    w = guidance if c is not None else 1.0
    levels = paths.sampling.levels
    devs = []
    with torch.no_grad():
        for i in range(len(levels) - 1):
            s, t = levels[i], levels[i + 1]
            e = model.eps(x[i], s.label, c, w).eps
            d = ddim_step(x0_from_eps(x[i], e, s), e, t)
            devs.append(float((d - x[i + 1]).norm() / (x[i + 1] - x[i]).norm().clamp_min(1e-12)))
    return int(np.argmax(devs))


def round_trip_errors(model, z_T: torch.Tensor, steps_list: Sequence[int], methods: dict[str, dict[str, Any]],
                      guidance: float = 1.0, cond: Any = None) -> dict[str, list[float]]:
    """Noise NMSE of sample -> invert round trips, for every method (name -> invert keywords)
    and every number of DDIM steps."""
    out: dict[str, list[float]] = {k: [] for k in methods}
    for n in steps_list:
        fwd = sample(model, z_T, n, "ddim", guidance, cond, hooks=[Recorder(keys=("x_next",))])
        for name, kw in methods.items():
            kw = dict(kw)
            if kw.get("gain") == "oracle":
                kw["reference"] = fwd
            inv = invert(model, fwd.final, n, "ddim", guidance=guidance, cond=cond, hooks=[Recorder(keys=())], **kw)
            out[name].append(float(nmse(inv.final, z_T)))
    return out
