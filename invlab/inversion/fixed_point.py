"""Fixed-point inversion: AIDI (Pan et al., ICCV 2023) and FPI (Meiri et al., 2023).

Each inversion step cur -> nxt (nxt the noisier level) asks for the state z at nxt that the
inverse DDIM step reproduces when the network is evaluated at z itself:

    e(z)            = eps_theta(z, label)                       (guided eps; label: see below)
    InvStep(x; e)   = alpha_nxt (x - sigma_cur e) / alpha_cur + sigma_nxt e
    f(z)            = InvStep(x_cur; e(z))                      (affine in e)
    solve             z = f(z)                                  (a fixed point of f)

Naive inversion is one application of f at the known state, f(x_cur); fixed-point inversion
iterates from there. Accelerations (``acceleration=``):

* ``"plain"`` (FPI): z_{k+1} = (1 - rho) z_k + rho f(z_k), rho = ``relaxation`` (1: z <- f(z)).
* ``"aidi-e"`` (AIDI's empirical 2-point acceleration): z_{k+1} = (1 - mix) g_{k-1} + mix g_k
  with g_k = (1 - rho) z_k + rho f(z_k), mix = 1/2 in AIDI; as f is affine in e, an average of
  two map values is one inverse step with the averaged eps.
* ``"anderson"`` (AIDI-A): Anderson (type II) on g: the last iterates are mixed with the
  weights (summing to 1) that minimise the mixed residual ||sum_j a_j (f(z_j) - z_j)||.

All three run through ``solvers.solve`` on the residual r(z) = z - f(z) (forward-step,
"two-point" and Anderson with step rho), so tolerances by dtype, the divergence stop and the
per-iteration bookkeeping are exact inversion's. The step returns f(z*) at the accepted iterate
z* (as the reference codes do), so each record's (x_cur, eps, x0_hat, x_next) is one exact inverse
DDIM step with eps = e(z*) and x0_hat = (x_cur - sigma_cur eps) / alpha_cur.

**Fixed-point vs ``method="exact"``.** Exact inversion solves the *sampler's* step
Phi(z) = x_cur with Phi(z) = alpha_cur (z - sigma_nxt e) / alpha_nxt + sigma_cur e and
e = eps_theta(z, nxt) (the sampler's own label, the noisier level's). For a fixed e, InvStep and
the DDIM step are inverse affine maps, hence, with the same e,

    f(z) - z = -(alpha_nxt / alpha_cur) (Phi(z) - x_cur).

* ``label="target"`` (the default, AIDI's and FPI's ε_θ(z, t) with t the noisier target) on a
  DDIM grid: the two equations are **the same** and have the same roots. Plain iteration is
  exact's forward step z <- z - rho (Phi(z) - x_cur) with rho = alpha_nxt / alpha_cur (< 1),
  and the residuals differ by that factor. Both methods land on the same state to tolerance.
* ``label="current"``: the network sees the noisier z with the *known* level's label,
  e = eps_theta(z, cur). That is no sampler's step: the fixed point does not satisfy Phi(z) =
  x_cur; the sampler misses x_cur from it by about as much as from a naive step.
* DPM-Solver++(2M) grids: this method applies the first-order (DDIM) inverse at **every** step,
  as naive inversion does (records carry ``order=1``; ``config["orders"]`` keeps the sampler's).
  Exact inversion solves the second-order steps' own equation (Algorithm 2); here the fixed
  point of the DDIM relation is only as good as DDIM approximates the 2M step.
* Bookkeeping: exact returns its root z*, this method f(z*); residuals here are RMS of
  z - f(z).

Records: ``residual`` is the accepted iterate's RMS of z - f(z); ``extras`` hold the inner
``inner_residuals`` and ``step_sizes``, ``converged``, ``diverged``, ``stop_reason``,
``iterations``, ``tol``, ``nfe_init`` (1 for the naive start, 0 for ``init="current"``) and
``reevaluated`` (1 when the accepted iterate was not the last one evaluated and f had to be
evaluated there once more). NFE per step = nfe_init + iterations + 1 + reevaluated.

**Reference defaults** (``preset="reference"``; methods.md §4, pitfalls.md "Fixed-point"):
AIDI has no official code; its values come from the re-implementation wmchen/diffusion-inversion
(methods.md §4.1); FPI's from dvirsamuel/FPI (§4.2).

* start: z^(0) = x_cur, so the first map evaluation is the naive step (AIDI §4.1 "starting from
  z^(0) = z_{t-1}"; FPI's loop starts at the known latent) -> ``init="current"``. Same cost as
  our default ``init="naive"`` (z_0 = f(x_cur)); for "plain" with rho = 1 the iterates are the
  same, for the accelerations x_cur joins the history.
* iterations: AIDI 5 per step after the naive evaluation (config) -> ``max_iter=6`` network
  calls; FPI ``num_iter`` 20 in main.py (30 is ``invert()``'s default) -> ``max_iter=20``.
  Neither stops on a tolerance (FPI prints its convergence score, unused); we keep our
  tolerance stop, which changes a result by less than the tolerance.
* returned state: the map's value at the last iterate, not the best (pitfalls.md) ->
  ``keep="last"``; no divergence stop -> ``divergence_patience`` 10**9.
* Anderson window m = 3 (§4.1), read as 3 stored iterates, i.e. ``memory=2`` differences;
  mixing parameter 1 -> ``relaxation=1``. AIDI-E: ``mix=0.5``.
* label: the target (noisier) level's, as both codes do.

Where we differ on purpose: AIDI-E's re-implementation evaluates the network at both points of
every average (1 + 2n calls per step, pitfalls.md) although the older value was computed one
iteration before; we keep it (1 + n calls, same iterates). It returns the last *average* rather
than a map value; we return f at the accepted iterate (equal at convergence). The reference
budgets (5, 20 iterations) were set for Stable Diffusion at 50 steps with no stopping rule; our
defaults instead iterate to a dtype tolerance (``DEFAULT_TOL``) with at most 50 calls per step,
so every step's ``converged`` flag means the equation is solved on the model at hand.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..checks import check_choice, check_int, check_number
from ..loop import Runner, Setup, progress
from ..steps import ddim_step, x0_from_eps
from .exact import warn_unconverged
from .presets import fill_from_reference
from .solvers import SolverOptions, solve

ACCELERATIONS = ("anderson", "aidi-e", "plain")
LABELS = ("target", "current")
INITS = ("naive", "current")
KEEPS = ("best", "last")
_INNER = {"plain": "forward-step", "aidi-e": "two-point", "anderson": "anderson"}


@dataclass
class FixedPointOptions:
    """Options of fixed-point inversion (AIDI / FPI).

    acceleration: "anderson" (AIDI-A, default: fewest NFE on our models), "aidi-e" (2-point
        average) or "plain" (FPI).
    label: the label the network is fed at the unknown state: "target" (the noisier level's;
        default, as AIDI/FPI and naive's default) or "current" (the known level's).
    max_iter: most network evaluations per step, the naive start's included (>= 2); a solve that
        stops unconverged with keep="best" may spend one more to evaluate its best iterate.
    tol: RMS tolerance on z - f(z) per sample; None picks ``DEFAULT_TOL`` for the dtype.
    relaxation: rho in g(z) = (1 - rho) z + rho f(z) (1 = the plain map; < 1 damps).
    mix: "aidi-e": weight of the newest point (AIDI: 0.5; > 1 extrapolates).
    memory: "anderson": number of differences kept (AIDI's window of 3 iterates = 2).
    init: "naive" (default: z_0 = f(x_cur), the naive step) or "current" (z_0 = x_cur; the first
        evaluation is then the naive step; the reference codes).
    keep: what an unconverged solve returns: "best" (the best iterate; default) or "last".
    divergence_patience: stop after the residual grew this many iterations in a row.
    preset: "reference" sets every field left at its default to the reference code's value
        for the chosen acceleration (see :meth:`reference` and the module docstring); as with
        exact inversion's preset, a value passed equal to our default counts as left out.
    """

    acceleration: str = "anderson"
    label: str = "target"
    max_iter: int = 50
    tol: float | None = None
    relaxation: float = 1.0
    mix: float = 0.5
    memory: int = 5
    init: str = "naive"
    keep: str = "best"
    divergence_patience: int = 4
    preset: str | None = None

    def __post_init__(self):
        check_choice("preset", self.preset, (None, "reference"))
        check_choice("acceleration", self.acceleration, ACCELERATIONS)
        if self.preset == "reference":  # every field still at its default takes the reference value
            fill_from_reference(self, FixedPointOptions.reference(self.acceleration), keep=("preset", "acceleration"))
        check_choice("label", self.label, LABELS)
        check_choice("init", self.init, INITS)
        check_choice("keep", self.keep, KEEPS)
        check_int("max_iter", self.max_iter, 2, 50)
        check_int("memory", self.memory, 1, 5)
        check_int("divergence_patience", self.divergence_patience, 1, 4)
        if self.tol is not None and not check_number("tol", self.tol, "None picks a default for the dtype") > 0:
            raise ValueError(f"tol must be > 0 (got {self.tol}); None picks a default for the dtype")
        if not check_number("relaxation", self.relaxation, "e.g. relaxation=1.0") > 0:
            raise ValueError(f"relaxation must be > 0 (got {self.relaxation}); 1 is the plain map, < 1 damps")
        if not check_number("mix", self.mix, "e.g. mix=0.5") > 0:
            raise ValueError(f"mix must be > 0 (got {self.mix}); 0.5 averages the last two points (AIDI-E)")

    @staticmethod
    def reference(acceleration: str = "anderson") -> "FixedPointOptions":
        """The reference codes' defaults: AIDI (wmchen re-implementation: 1 + 5 calls per step,
        Anderson window 3, AIDI-E halves) for "anderson"/"aidi-e", FPI (20 calls, main.py) for
        "plain"; start at x_cur, return the last iterate's map value, no divergence stop."""
        return FixedPointOptions(acceleration=acceleration, label="target", max_iter=20 if acceleration == "plain" else 6,
                                 relaxation=1.0, mix=0.5, memory=2, init="current", keep="last",
                                 divergence_patience=10**9)

    def solver_options(self) -> SolverOptions:
        """The inner solve's options (its max_iter counts evaluations after the start's first)."""
        return SolverOptions(inner=_INNER[self.acceleration], tol=self.tol, max_iter=self.max_iter - (
            2 if self.init == "naive" else 1), rho=self.relaxation, memory=self.memory,
            divergence_patience=self.divergence_patience)


def invert_fixed_point(setup: Setup, hooks, opts: FixedPointOptions, check_finite: bool = True,
                       show_progress: bool = False):
    levels = list(reversed(setup.grid.levels))
    run = Runner(setup, hooks, {"direction": "invert", "method": "fixed-point", "label": opts.label,
                                "acceleration": opts.acceleration, "init": opts.init, "preset": opts.preset,
                                "inverse_step": "ddim"}, levels, check_finite)
    inner = opts.solver_options()
    precision = getattr(setup.model, "dtype", None)  # a network's own compute dtype, if it has one
    x = setup.x
    with run.guard(), torch.no_grad():
        for i in progress(range(setup.steps), show_progress, f"invert fixed-point/{opts.acceleration}"):
            cur, nxt = levels[i], levels[i + 1]
            t_model = nxt.label if opts.label == "target" else cur.label
            st = run.begin(i, t_model)
            st["x_cur"] = x
            nfe0 = setup.model.nfe
            last = {}

            def fmap(z, x=x, cur=cur, nxt=nxt, t_model=t_model, last=last):
                """f(z) = InvStep(x_cur; e(z)) and the eps output it used."""
                out = setup.eps(z, t_model)
                fz = ddim_step(x0_from_eps(x, out.eps, cur), out.eps, nxt)
                last.update(z=z, aux=(fz, out))
                return fz, out

            def residual(z):  # r(z) = z - f(z), solved for 0
                fz, out = fmap(z)
                return z - fz, (fz, out)

            start = fmap(x)[0] if opts.init == "naive" else x
            nfe_init = setup.model.nfe - nfe0
            res = solve(residual, torch.zeros_like(x), start, inner, precision=precision, mix=opts.mix,
                        keep=opts.keep)
            aux, reevaluated = res.aux, 0
            if aux is None and last and torch.equal(res.x, last["z"]):
                aux = last["aux"]            # the best iterate is the last one evaluated
            if aux is None:                  # evaluate the map at the accepted iterate once more
                aux, reevaluated = fmap(res.x), 1
            run.set_eps(st, aux[1])
            x = st["x_cur"]
            x0 = st["x0_hat"] = x0_from_eps(x, st["eps"], cur)
            extras = dict(acceleration=opts.acceleration, tol=res.tol, inner_residuals=res.residuals,
                          step_sizes=res.step_sizes, converged=res.converged, diverged=res.diverged,
                          stop_reason=res.stop_reason, iterations=res.iterations, nfe_init=nfe_init,
                          reevaluated=reevaluated)
            accepted = min(res.residuals) if reevaluated else res.residuals[-1]
            x = run.finish(st, ddim_step(x0, st["eps"], nxt), residual=accepted, extras=extras)
    traj = run.trajectory(x)
    warn_unconverged(traj, advice="More steps, lower guidance, a larger max_iter or acceleration='anderson' "
                                  "usually help; see traj.convergence() and each record's extras.")
    return traj
