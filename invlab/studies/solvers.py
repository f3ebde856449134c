"""Exact inversion's inner solvers, measured: residual curves, cost vs accuracy, Algorithm 2, precision.

Everything here runs :func:`invlab.invert` with ``method="exact"`` on images *sampled* from known
noise, so the noise error of every run is known exactly. The per-step records carry what the
inner solver did (``extras["inner_residuals"]``, ``["iterations"]``, ``["converged"]``, ...); the
helpers below turn those lists into arrays for plots and tables.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from ..inversion import invert
from ..metrics import nmse
from ..sampling import sample
from ..schedules import Level
from ..steps import ddim_step, x0_from_eps
from ..trace import Recorder, Trajectory
from .errors import Comparison, run_methods

__all__ = ["INNER_SOLVERS", "DPM_VARIANTS", "SweepPoint", "compare_inner_solvers", "ddim_phi", "dpm_variants",
           "inner_residuals", "last_step_singular_values", "nfe_breakdown", "precision_study", "solver_table",
           "step_singular_values", "tolerance_sweep"]

#: display name -> invert() keywords for exact inversion of DDIM with each inner solver
INNER_SOLVERS: dict[str, dict[str, Any]] = {
    "anderson": {"method": "exact", "inner": "anderson"},
    "forward-step": {"method": "exact", "inner": "forward-step"},
    "gradient": {"method": "exact", "inner": "gradient"},
    "reference": {"method": "exact", "preset": "reference"},
}

#: display name -> invert() keywords for inverting DPM-Solver++(2M)
DPM_VARIANTS: dict[str, dict[str, Any]] = {
    "naive DDIM inversion": {"method": "naive"},
    "Alg. 2, freeze both": {"method": "exact", "freeze": "both"},
    "Alg. 2, freeze past": {"method": "exact", "freeze": "past"},
}


def ddim_phi(model, y: torch.Tensor, s: Level, t: Level, cond: Any = None, guidance: float = 1.0) -> torch.Tensor:
    """Phi(y): the DDIM sampling step from level s (state y) to level t, the map exact inversion
    solves backwards (``cond`` as :meth:`Denoiser.check_cond` returns it)."""
    eps = model.eps(y, s.label, cond, guidance).eps
    return ddim_step(x0_from_eps(y, eps, s), eps, t)


def inner_residuals(traj: Trajectory, sum_sq: bool = False) -> list[np.ndarray]:
    """Per inversion step: the inner solver's residual after each evaluation of Phi
    (entry 0 is the initial guess's residual).

    The solver records its own stopping measure: the RMS per element (worst sample) by default,
    or the batch's *summed* squared error when it ran with ``tol_kind="sum_sq"`` (the reference
    preset). ``sum_sq=True`` says the run used the latter and converts it to the batch's RMS,
    sqrt(sum / number of entries), so that all solvers share one axis.
    """
    numel = traj.final.numel()
    out = []
    for r in traj.records:
        v = np.asarray(r.extras.get("inner_residuals", []), dtype=float)
        out.append(np.sqrt(v / numel) if sum_sq else v)
    return out


def compare_inner_solvers(model, z_T: torch.Tensor, steps: int = 50, guidance: float = 1.0, cond: Any = None,
                          solvers: Mapping[str, Mapping[str, Any]] | None = None, solver: str = "ddim",
                          show_progress: bool = False) -> Comparison:
    """Sample from ``z_T``, then invert exactly with every inner solver in ``solvers`` (default
    :data:`INNER_SOLVERS`). Returns a :class:`~invlab.studies.errors.Comparison`."""
    methods = {k: dict(v) for k, v in (INNER_SOLVERS if solvers is None else solvers).items()}
    return run_methods(model, z_T, steps, solver, guidance, cond, methods, show_progress=show_progress)


def solver_table(comparison: Comparison) -> dict[str, dict[str, float]]:
    """Per run: noise NMSE, NFE per step, mean/max inner iterations, steps converged, seconds."""
    out = {}
    noise = comparison.noise_nmse()
    for name, traj in comparison.runs.items():
        its = np.array([r.extras.get("iterations", 0) for r in traj.records], dtype=float)
        out[name] = {
            "noise_nmse": noise[name],
            "nfe_per_step": traj.nfe / len(traj),
            "mean_iterations": float(its.mean()),
            "max_iterations": float(its.max()),
            "converged_fraction": float(np.mean([bool(r.extras.get("converged", False)) for r in traj.records])),
            "diverged_steps": int(sum(bool(r.extras.get("diverged", False)) for r in traj.records)),
            "seconds": traj.seconds,
        }
    return out


@dataclass
class SweepPoint:
    """One inversion of a tolerance sweep."""

    tol: float
    noise_nmse: float
    nfe_per_step: float
    seconds: float
    converged_fraction: float


def tolerance_sweep(model, z_T: torch.Tensor, steps: int, guidance: float, cond: Any,
                    tolerances: Mapping[str, Sequence[float]],
                    solvers: Mapping[str, Mapping[str, Any]] | None = None, solver: str = "ddim",
                    reference: Trajectory | None = None, show_progress: bool = False) -> dict[str, list[SweepPoint]]:
    """For each solver name in ``tolerances``: invert the same sample once per tolerance ``tol``
    and record the final noise NMSE against ``z_T`` and the cost (NFE per step, seconds).

    ``solvers`` maps names to invert() keywords (default :data:`INNER_SOLVERS`); the tolerance is
    passed as ``tol=`` (for the reference preset that is its summed squared error unless the
    keywords also set ``tol_kind="rms"``). ``reference``: the sampling run, if already made.
    """
    solvers = INNER_SOLVERS if solvers is None else solvers
    if reference is None:
        reference = sample(model, z_T, steps, solver, guidance, cond, hooks=[Recorder(keys=())])
    jobs = [(name, tol) for name, tols in tolerances.items() for tol in tols]
    if show_progress:
        from tqdm.auto import tqdm

        jobs = tqdm(jobs, desc="tolerance sweep", leave=False)
    out: dict[str, list[SweepPoint]] = {name: [] for name in tolerances}
    for name, tol in jobs:
        if name not in solvers:
            raise ValueError(f"unknown solver {name!r}; choose from {sorted(solvers)}")
        t0 = time.perf_counter()
        traj = invert(model, reference.final, steps, solver, guidance=guidance, cond=cond,
                      hooks=[Recorder(keys=())], **{**solvers[name], "tol": float(tol)})
        out[name].append(SweepPoint(float(tol), float(nmse(traj.final, z_T)), traj.nfe / len(traj),
                                    time.perf_counter() - t0,
                                    float(np.mean([bool(r.extras.get("converged")) for r in traj.records]))))
    return out


def dpm_variants(model, z_T: torch.Tensor, steps: int = 10, guidance: float = 1.0, cond: Any = None,
                 variants: Mapping[str, Mapping[str, Any]] | None = None, show_progress: bool = False,
                 grid_overrides: dict | None = None) -> Comparison:
    """Sample with DPM-Solver++(2M) from ``z_T`` and invert it with each variant (default
    :data:`DPM_VARIANTS`: naive DDIM inversion on the same grid, Algorithm 2 with the high-order
    term frozen entirely or only its past part); ``grid_overrides`` changes the scheduler's config
    (e.g. ``{"final_sigmas_type": "sigma_min"}``)."""
    methods = {k: dict(v) for k, v in (DPM_VARIANTS if variants is None else variants).items()}
    return run_methods(model, z_T, steps, "dpmpp2m", guidance, cond, methods, show_progress=show_progress,
                       grid_overrides=grid_overrides)


def nfe_breakdown(traj: Trajectory) -> dict[str, np.ndarray]:
    """Per inversion step: the order, and where its NFE went -- the fine-grained past-state
    estimate (Algorithm 2 only), the rest of the initial guess, and the inner solve."""
    order = np.array([r.order for r in traj.records])
    total = np.array([r.nfe for r in traj.records], dtype=float)
    past = np.array([r.extras.get("nfe_past_estimate", 0) for r in traj.records], dtype=float)
    init = np.array([r.extras.get("nfe_init", 0) for r in traj.records], dtype=float) - past
    solve = total - past - init
    return {"order": order, "past_estimate": past, "init": init, "solve": solve, "total": total}


def precision_study(model, z_T: torch.Tensor, steps: int, guidance: float, cond: Any,
                    dtypes: Sequence[torch.dtype] = (torch.float64, torch.float32),
                    methods: Mapping[str, Mapping[str, Any]] | None = None) -> dict[str, dict[str, Any]]:
    """Naive and exact inversion of DDIM, in each dtype (the model, the sampler and the inversion
    all run in it). Per dtype: noise NMSE per method, per-step ground-truth errors, NFE per step."""
    methods = {"naive": {"method": "naive"}, "exact": {"method": "exact"}} if methods is None else methods
    out: dict[str, dict[str, Any]] = {}
    for dt in dtypes:
        cmp = run_methods(model, z_T.to(dt), steps, "ddim", guidance, cond, {k: dict(v) for k, v in methods.items()})
        out[str(dt).replace("torch.", "")] = {"noise_nmse": cmp.noise_nmse(), "step_errors": cmp.step_errors(),
                                              "nfe_per_step": cmp.nfe_per_step(), "comparison": cmp}
    return out



def step_singular_values(model, y: torch.Tensor, s: Level, t: Level, cond: Any = None, guidance: float = 1.0,
                         max_dim: int = 4096) -> np.ndarray:
    """Singular values (descending) of the Jacobian dPhi/dy of one DDIM step s -> t at the state
    ``y`` (one sample, shape (1, ...)), by autograd.

    Backward Euler solves Phi(y) = x_t. Where Phi has tiny singular values the step nearly erases
    those directions of y: a small residual then still allows a large error in y, whatever the
    solver (the error can be up to residual / smallest singular value). Dense Jacobian: only for
    samples of at most ``max_dim`` entries (the digits models, not Stable Diffusion).
    """
    if y.shape[0] != 1:
        raise ValueError(f"pass one sample, shape (1, ...) (got batch {y.shape[0]}); e.g. y[:1]")
    if y[0].numel() > max_dim:
        raise ValueError(f"a dense Jacobian of {y[0].numel()} entries is too large here (max_dim={max_dim})")
    c = model.check_cond(cond, 1, y)
    y0 = y.detach()

    def f(v):
        return ddim_phi(model, v.view_as(y0), s, t, c, guidance).flatten()

    with torch.enable_grad():
        J = torch.autograd.functional.jacobian(f, y0.flatten())
    return torch.linalg.svdvals(J.double()).cpu().numpy()


def last_step_singular_values(comparison: Comparison, sample_index: int = 0) -> np.ndarray:
    """:func:`step_singular_values` of the *last sampling step* of ``comparison.reference`` (the
    first step every inversion method takes), at the true state, for one sample. For a
    second-order step this is the Jacobian of its DDIM part: the map Algorithm 2 solves once the
    high-order term is frozen."""
    ref = comparison.reference
    st = comparison.settings
    y = ref.latents()[-2][sample_index:sample_index + 1]
    cond = st["cond"]
    if isinstance(cond, torch.Tensor) and cond.dim() > 0:
        cond = cond[sample_index:sample_index + 1]
    return step_singular_values(st["model"], y, ref.levels[-2], ref.levels[-1], cond, st["guidance"])
