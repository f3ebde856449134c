"""Inner solvers for the backward-Euler equation Phi(x) = target of one inversion step.

Phi is the *sampler's* step (from the unknown noisier state x to the known one); exact
inversion finds x with Phi(x) = target. Every solver works on the residual r(x) = Phi(x) -
target and costs one NFE per evaluation of Phi:

* ``"forward-step"`` (the exact-inversion paper's reference): x <- x - rho_k r(x). The Jacobian
  of Phi is replaced by the identity; converges when Phi is close to a shifted identity.
* ``"gradient"``: x <- x - rho_k J^T r(x), the true gradient of 1/2 ||r||^2 through the network
  by autograd (a backward pass per iteration on top of the NFE).
* ``"anderson"``: Anderson acceleration (type II, memory m) of the forward-step map
  G(x) = x - rho r(x): the next iterate mixes the last m iterates with the weights that best
  cancel their residuals (a least-squares problem per sample).
* ``"two-point"`` (AIDI-E's empirical acceleration): x_{k+1} = (1 - mix) G(x_{k-1}) + mix G(x_k)
  with the same G (the first iteration is a plain step); each G value is kept, so one Phi per
  iteration. Written for fixed-point inversion (``fixed_point.py``), usable by any caller.

Tolerances are per element (RMS of the residual per sample), so they do not depend on the
tensor size; the reference's summed squared error is available as ``tol_kind="sum_sq"``.
Every iteration's residual and step size is recorded. A residual that grows for
``divergence_patience`` iterations in a row, or turns non-finite, stops the solve at the best
iterate so far with ``diverged=True``; it is never silent. A solve that runs out of iterations
returns its best iterate, or with ``keep="last"`` its last one (and what Phi returned there).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch

from ..checks import check_choice, check_int, check_number

SOLVER_NAMES = ("anderson", "forward-step", "gradient", "two-point")

#: default RMS tolerance per dtype: a few ulps above each type's round-off on O(1) latents
DEFAULT_TOL = {torch.float64: 1e-9, torch.float32: 1e-6, torch.float16: 2e-3, torch.bfloat16: 1e-2}


def coarser_dtype(a: torch.dtype, b: torch.dtype | None) -> torch.dtype:
    """The less precise of two floating dtypes (``a`` when ``b`` is None or not floating)."""
    if b is None or not b.is_floating_point:
        return a
    return b if torch.finfo(b).eps > torch.finfo(a).eps else a


@dataclass
class SolverOptions:
    """Inner-solver options (defaults: Anderson, tolerance by dtype, at most 50 iterations).

    inner: the inner solver, "anderson" | "forward-step" | "gradient" | "two-point".
    tol: stopping tolerance; None picks ``DEFAULT_TOL`` for the state's dtype.
    tol_kind: "rms" (per element, per sample; default) or "sum_sq" (the reference's summed
        squared error over the whole tensor).
    max_iter: most Phi evaluations after the initial guess's.
    rho: step size of the forward-step map (the reference: 0.5).
    warmup: iterations of linear warm-up rho_k = rho (k+1)/warmup (reference: 20; 0 = off).
    plateau_patience: halve rho (x plateau_factor) after this many iterations without a relative
        improvement of plateau_threshold (reference: 20, 0.5, 1e-4; None = off).
    memory: Anderson's history length m.
    divergence_patience: stop after the residual grew this many iterations in a row.
    """

    inner: str = "anderson"
    tol: float | None = None
    tol_kind: str = "rms"
    max_iter: int = 50
    rho: float = 1.0
    warmup: int = 0
    plateau_patience: int | None = None
    plateau_factor: float = 0.5
    plateau_threshold: float = 1e-4
    memory: int = 5
    divergence_patience: int = 4

    def __post_init__(self):
        check_choice("inner", self.inner, SOLVER_NAMES)
        if self.tol is not None and not check_number("tol", self.tol, "None picks a default for the dtype") > 0:
            raise ValueError(f"tol must be > 0 (got {self.tol}); None picks a default for the dtype")
        check_choice("tol_kind", self.tol_kind, ("rms", "sum_sq"))
        check_int("max_iter", self.max_iter, 0, 50)
        for name in ("warmup", "memory", "divergence_patience"):
            check_int(name, getattr(self, name))
        if self.plateau_patience is not None:
            check_int("plateau_patience", self.plateau_patience)
        if not check_number("rho", self.rho, "e.g. rho=1.0") > 0:
            raise ValueError(f"rho must be > 0 (got {self.rho})")
        if self.warmup < 0 or self.memory < 1 or self.divergence_patience < 1:
            raise ValueError("warmup must be >= 0, memory >= 1 and divergence_patience >= 1")
        if self.plateau_patience is not None and self.plateau_patience < 1:
            raise ValueError("plateau_patience must be >= 1 or None")
        if not (0 < self.plateau_factor < 1):
            raise ValueError(f"plateau_factor must be in (0, 1) (got {self.plateau_factor})")

    def tolerance(self, dtype: torch.dtype) -> float:
        return self.tol if self.tol is not None else DEFAULT_TOL.get(dtype, 1e-6)


@dataclass
class SolveResult:
    x: torch.Tensor
    converged: bool
    diverged: bool
    iterations: int
    stop_reason: str
    residuals: list[float] = field(default_factory=list)     # error measure after each Phi evaluation
    step_sizes: list[float] = field(default_factory=list)
    aux: object = None   # what Phi returned alongside the value at x (only when x is the last iterate)
    tol: float = float("nan")  # the stopping tolerance that was used


def _measure(r: torch.Tensor, kind: str) -> torch.Tensor:
    """Per-sample error measure of a residual: RMS, or (batch-wide) summed squares."""
    flat = r.detach().reshape(r.shape[0], -1).double()
    if kind == "rms":
        return flat.pow(2).mean(1).sqrt()
    return flat.pow(2).sum().expand(r.shape[0])


def solve(phi: Callable[[torch.Tensor], tuple[torch.Tensor, object]], target: torch.Tensor, x0: torch.Tensor,
          opts: SolverOptions, rho: float | None = None, precision: torch.dtype | None = None,
          mix: float = 0.5, keep: str = "best") -> SolveResult:
    """Solve ``phi(x)[0] == target`` from ``x0``. ``phi`` returns (value, aux); one NFE per call.

    ``precision``: the dtype the network computes in, when it differs from the state's (e.g. a
    float32 UNet driven by a float64 state). The default tolerance follows the coarser of the
    two, since no iteration can push the residual below the network's own round-off.
    ``mix``: the newest point's weight in ``"two-point"``. ``keep``: what a solve that reaches
    ``max_iter`` returns, "best" (the best iterate per sample; ``aux`` None) or "last" (the last
    iterate with its ``aux``)."""
    check_choice("keep", keep, ("best", "last"))
    tol = opts.tolerance(coarser_dtype(target.dtype, precision))
    rho = float(opts.rho if rho is None else rho)
    B = x0.shape[0]
    x = x0.detach()
    best_x, best_err = x.clone(), torch.full((B,), float("inf"), dtype=torch.float64, device=x.device)
    residuals: list[float] = []
    steps: list[float] = []
    hist_x: list[torch.Tensor] = []
    hist_f: list[torch.Tensor] = []
    g_prev = None  # "two-point": G at the previous iterate
    grows, plateau_count, plateau_ref = 0, 0, float("inf")
    prev_err = float("inf")
    k = 0
    while True:
        if opts.inner == "gradient":
            with torch.enable_grad():
                xg = x.detach().requires_grad_(True)
                val, aux = phi(xg)
                r = val - target
                (g,) = torch.autograd.grad(0.5 * r.pow(2).sum(), xg)
            r, g = r.detach(), g.detach()
        else:
            val, aux = phi(x)
            r = val - target
        err = _measure(r, opts.tol_kind)
        worst = float(err.max())
        residuals.append(worst)
        if not torch.isfinite(r).all():
            return SolveResult(best_x, False, True, k, "non-finite residual", residuals, steps, None, tol)
        improved = err < best_err
        if improved.any():
            m = improved.reshape(-1, *([1] * (x.dim() - 1)))
            best_x = torch.where(m, x, best_x)
            best_err = torch.where(improved, err, best_err)
        if worst < tol:
            return SolveResult(x, True, False, k, "converged", residuals, steps, aux, tol)
        grows = grows + 1 if worst > prev_err else 0
        prev_err = worst
        if grows >= opts.divergence_patience:
            return SolveResult(best_x, False, True, k, "residual grew", residuals, steps, None, tol)
        if k >= opts.max_iter:
            if keep == "last":
                return SolveResult(x, False, False, k, "max_iter", residuals, steps, aux, tol)
            return SolveResult(best_x, False, False, k, "max_iter", residuals, steps, None, tol)
        # step size: warm-up, then plateau halving
        rho_k = rho * min(1.0, (k + 1) / opts.warmup) if opts.warmup else rho
        if opts.plateau_patience is not None and k >= opts.warmup:
            if worst < plateau_ref * (1 - opts.plateau_threshold):
                plateau_ref, plateau_count = worst, 0
            else:
                plateau_count += 1
                if plateau_count > opts.plateau_patience:
                    rho, plateau_count = rho * opts.plateau_factor, 0
            rho_k = rho
        steps.append(rho_k)
        if opts.inner == "forward-step":
            x = x - rho_k * r
        elif opts.inner == "gradient":
            x = x - rho_k * g
        elif opts.inner == "two-point":
            g_new = x - rho_k * r
            x, g_prev = (g_new if g_prev is None else (1 - mix) * g_prev + mix * g_new), g_new
        else:
            x = _anderson(x, -rho_k * r, hist_x, hist_f, opts.memory)
        k += 1


def _anderson(x: torch.Tensor, f: torch.Tensor, hist_x: list, hist_f: list, memory: int) -> torch.Tensor:
    """One Anderson (type II) update; f = G(x) - x. Least squares in float64, per sample."""
    B = x.shape[0]
    hist_x.append(x.reshape(B, -1).double())
    hist_f.append(f.reshape(B, -1).double())
    if len(hist_x) > memory + 1:
        hist_x.pop(0)
        hist_f.pop(0)
    xk, fk = hist_x[-1], hist_f[-1]
    if len(hist_x) == 1:
        return (xk + fk).reshape(x.shape).to(x.dtype)
    dX = torch.stack([hist_x[i + 1] - hist_x[i] for i in range(len(hist_x) - 1)], -1)   # (B, d, m)
    dF = torch.stack([hist_f[i + 1] - hist_f[i] for i in range(len(hist_f) - 1)], -1)
    A = dF.transpose(1, 2) @ dF                                                       # (B, m, m)
    # Tikhonov term relative to the scale of A, floored at a *normal* float64 (a row already solved
    # exactly has A = 0: a subnormal floor such as 1e-312 made LAPACK return NaN for it); with A = 0
    # and a zero right-hand side, gamma = 0 and the row takes a plain fixed-point step.
    reg = (1e-12 * A.diagonal(dim1=1, dim2=2).sum(-1)).clamp_min(1e-200)
    A = A + reg[:, None, None] * torch.eye(A.shape[-1], dtype=A.dtype, device=A.device)
    gamma = torch.linalg.solve(A, (dF.transpose(1, 2) @ fk[..., None]))               # (B, m, 1)
    new = xk + fk - ((dX + dF) @ gamma)[..., 0]
    return new.reshape(x.shape).to(x.dtype)
