"""Exact inversion by backward Euler (Hong et al., "On Exact Inversion of DPM-Solvers").

Each sampling step x_t = Phi(x_s) is inverted by solving the implicit equation Phi(x_hat) = x_t
for the noisier state, starting from a naive estimate (see ``solvers.py`` for the inner solvers).

* **Algorithm 1** (first-order steps: every DDIM step, and the first/last DPM-Solver++(2M) step):
  Phi(y) = alpha_t x0_hat(y) + sigma_t eps(y, s), the sampler's own step with its own label.
* **Algorithm 2** (second-order DPM-Solver++(2M) steps s -> t with previous level r): both x_s
  and the older, noisier x_r are unknown. They are estimated by fine-grained naive DDIM
  inversion from x_t (sub-steps of ``substep`` train timesteps: t -> s -> r); the high-order
  term H is built from those estimates and frozen, and the first-order part is solved by
  backward Euler: DDIM(y; s -> t) + H = x_t.
  ``freeze="both"`` (the reference, default) freezes H entirely; ``freeze="past"`` keeps only
  the older state's prediction frozen and evaluates the current one at the iterate (no extra
  cost). "both" measures better on the analytic models: the two estimates come from the same
  naive path, so their errors largely cancel in the difference D1 = (x0_s - x0_r) / r0, while
  "past" pairs an exact x0_s with an approximate x0_r.

The sampler's order pattern is mirrored step by step from the grid (``Grid.orders``); the
timesteps are the scheduler's list (the reference's ``t - 1000//N`` is wrong once per
trajectory with linspace spacing).

Records: ``residual`` is the accepted iterate's residual (RMS); ``extras`` hold the inner
iterations' residuals and step sizes, ``converged``, ``diverged``, ``stop_reason``,
``iterations``, the NFE spent on the initial guess and (Algorithm 2) on the past-state estimate.
"""

from __future__ import annotations

import dataclasses
import math
import warnings
from dataclasses import dataclass

import torch

from ..loop import Runner, Setup, progress
from ..schedules import Level
from ..trace import ConvergenceWarning
from ..steps import ddim_step, dpmpp2m_high_order, x0_from_eps, x0_hat
from .presets import fill_from_reference
from .solvers import SolverOptions, solve

INITS = ("reuse", "naive", "extrapolate")
FREEZES = ("both", "past")


@dataclass
class ExactOptions(SolverOptions):
    """Options of exact inversion (inner-solver options are inherited from SolverOptions).

    init: initial guess of each step: "naive" (a target-label naive DDIM step, 1 NFE: the
        reference), "reuse" (default: a naive step with the eps the previous step's solver
        already computed at the known state, 0 NFE; the first step falls back to "naive") or
        "extrapolate" (0 NFE: the same naive-step form, with eps at the unknown level extrapolated
        linearly in lambda = log(alpha / sigma) from the solved eps of the previous two steps'
        levels; the first step falls back to "naive", the second to "reuse", and so does any step
        whose lambdas are not finite, e.g. a flow model's sigma = 1 end). The extrapolation is for
        first-order (Algorithm 1) steps, i.e. DDIM; Algorithm 2 steps keep their own initial guess
        (the fine-grained naive estimate) whatever ``init`` says, so under DPM-Solver++(2M) only its
        first and last steps are affected. It saves little on a trained network (digits, 50 steps:
        3.56 -> 3.50 NFE/step at w = 1; at 10 steps, w = 3, 11.1 vs 11.0) and is not the default;
        see benchmarks/results/exact_ddim.md.
    substep: Algorithm 2's fine-grained naive inversion step, in train timesteps (reference 10).
    freeze: Algorithm 2's high-order term: "both" (reference, default) or "past".
    rho_order2: step size for Algorithm 2 steps: None (= rho) or "10/t" (reference: 10 over
        the known level's integer timestep).
    rho_first, rho_last: step sizes of the two first-order steps that open and close an
        Algorithm 2 run (solver "dpmpp2m": the first inversion step undoes the last sampling step,
        the last undoes the first): None (= rho), a number, or "10/t". Reference: 1.0 on the
        first, "10/t" on the last (``forward_diffusion``'s ``step_size=1`` at i = 0 and
        ``step_size=10/t`` in "Lines 14-17"), both with the plateau scheduler. Runs without an
        order-2 step (DDIM) use rho everywhere, as the reference does.
    plateau_order2: whether Algorithm 2 steps use the plateau scheduler (reference: False, its
        order-2 correction runs with ``scheduler=False``).
    preset: "reference" sets every field left at its default to the reference code's value
        (see :meth:`reference`); e.g. ``preset="reference", tol=1e-9, tol_kind="rms"`` is the
        reference solver at invlab's tolerance.
    """

    init: str = "reuse"
    substep: int = 10
    freeze: str = "both"
    rho_order2: float | str | None = None
    rho_first: float | str | None = None
    rho_last: float | str | None = None
    plateau_order2: bool = True
    preset: str | None = None

    def __post_init__(self):
        if self.preset == "reference":  # every field still at its default takes the reference value
            fill_from_reference(self, ExactOptions.reference())
        elif self.preset is not None:
            raise ValueError(f"preset must be None or 'reference' (got {self.preset!r})")
        super().__post_init__()
        if self.init not in INITS:
            raise ValueError(f"init must be one of {INITS} (got {self.init!r})")
        if self.freeze not in FREEZES:
            raise ValueError(f"freeze must be one of {FREEZES} (got {self.freeze!r})")
        if int(self.substep) < 1:
            raise ValueError(f"substep must be a positive number of train timesteps (got {self.substep})")
        for name in ("rho_order2", "rho_first", "rho_last"):
            v = getattr(self, name)
            if not (v is None or v == "10/t" or (isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0)):
                raise ValueError(f"{name} must be None, a number > 0 or '10/t' (got {v!r})")

    @staticmethod
    def reference() -> "ExactOptions":
        """The reference code's defaults: forward step, rho 0.5 with a 20-iteration warm-up,
        halve after 20 non-improving iterations, <= 500 iterations, stop at summed squared error
        < 1e-3, naive init, H frozen, rho = 10/t on Algorithm 2 steps (there without plateau);
        in an Algorithm 2 run rho = 1.0 on the first inversion step and 10/t on the last."""
        return ExactOptions(inner="forward-step", tol=1e-3, tol_kind="sum_sq", max_iter=500, rho=0.5, warmup=20,
                            plateau_patience=20, plateau_factor=0.5, plateau_threshold=1e-4,
                            divergence_patience=10**9, init="naive", substep=10, freeze="both", rho_order2="10/t",
                            rho_first=1.0, rho_last="10/t", plateau_order2=False)


def _step_size(value: float | str | None, default: float, known: Level) -> float:
    """A step-size option: None -> ``default``; "10/t" -> 10 over the known level's timestep."""
    if value is None:
        return default
    return 10.0 / max(known.label, 1.0) if value == "10/t" else float(value)


def _naive(setup: Setup, x: torch.Tensor, cur: Level, nxt: Level, eps: torch.Tensor | None = None) -> torch.Tensor:
    """A naive DDIM inversion step cur -> nxt (target label unless ``eps`` is given)."""
    if eps is None:
        eps = setup.eps(x, nxt.label).eps
    return ddim_step(x0_from_eps(x, eps, cur), eps, nxt)


def _extrapolated_eps(history: list, target: Level) -> torch.Tensor | None:
    """eps at ``target`` extrapolated linearly in lambda from the last two (lambda, eps) pairs of
    ``history`` (solved levels, oldest first); None when there are fewer than two or a lambda is
    not finite (then the caller falls back to the "reuse" rule)."""
    if len(history) < 2:
        return None
    (l1, e1), (l2, e2) = history[-2], history[-1]
    lam = target.lam
    if not all(map(math.isfinite, (l1, l2, lam))) or l1 == l2:
        return None
    return e2 + (e2 - e1) * ((lam - l2) / (l2 - l1))


def _fine_naive(setup: Setup, x: torch.Tensor, a: Level, b: Level, substep: int) -> torch.Tensor:
    """Naive inversion from level a up to level b in sub-steps of ``substep`` train timesteps."""
    labels = []
    lab = a.label + substep
    while lab < b.label:
        labels.append(lab)
        lab += substep
    path = [a] + [setup.model.schedule.level(t) for t in labels] + [b]
    for u, v in zip(path, path[1:]):
        x = _naive(setup, x, u, v)
    return x


def invert_exact(setup: Setup, hooks, opts: ExactOptions, check_finite: bool = True, show_progress: bool = False):
    grid = setup.grid
    levels = list(reversed(grid.levels))
    n = setup.steps
    run = Runner(setup, hooks, {"direction": "invert", "method": "exact", "label": "own",
                                "inner": opts.inner, "init": opts.init, "freeze": opts.freeze,
                                "preset": opts.preset}, levels, check_finite)
    x = setup.x
    precision = getattr(setup.model, "dtype", None)  # a network's own compute dtype, if it has one
    cached_eps = None  # eps(x, label of x's level) from the previous step's last Phi evaluation
    solved = []        # init="extrapolate": (lambda, eps) of the last two solved levels, oldest first
    alg2 = 2 in grid.orders  # a run with order-2 steps: its first and last steps take rho_first / rho_last
    no_plateau = SolverOptions(**{f.name: getattr(opts, f.name) for f in dataclasses.fields(SolverOptions)})
    no_plateau.plateau_patience = None
    with run.guard(), torch.no_grad():
        for i in progress(range(n), show_progress, f"invert exact/{opts.inner}"):
            j = n - 1 - i                     # the sampling step being inverted: levels s -> t
            t, s = grid.levels[j + 1], grid.levels[j]
            order = grid.orders[j]
            st = run.begin(i, s.label, order)
            st["x_cur"] = x
            nfe0 = setup.model.nfe
            extras = {}
            solver_opts = opts
            if order == 1:
                guess = None
                if opts.init == "extrapolate":
                    guess = _extrapolated_eps(solved, s)
                    if guess is None:
                        guess = cached_eps       # the first two steps: the "reuse" rule
                elif opts.init == "reuse":
                    guess = cached_eps
                init = _naive(setup, x, t, s, guess)
                H = None
                rho = opts.rho
                if alg2 and i == 0:
                    rho = _step_size(opts.rho_first, opts.rho, t)
                elif alg2 and i == n - 1:
                    rho = _step_size(opts.rho_last, opts.rho, t)
            else:
                r = grid.levels[j - 1]
                y_s = _fine_naive(setup, x, t, s, opts.substep)
                y_r = _fine_naive(setup, y_s, s, r, opts.substep)
                x0_r = x0_from_eps(y_r, setup.eps(y_r, r.label).eps, r)
                extras["nfe_past_estimate"] = setup.model.nfe - nfe0
                H = None
                if opts.freeze == "both":
                    x0_s = x0_from_eps(y_s, setup.eps(y_s, s.label).eps, s)
                    H = dpmpp2m_high_order(x0_s, x0_r, r, s, t, grid.solver_type)
                init = y_s
                rho = _step_size(opts.rho_order2, opts.rho, t)
                if not opts.plateau_order2:
                    solver_opts = no_plateau
            extras["nfe_init"] = setup.model.nfe - nfe0

            last = {}

            def phi(y, s=s, t=t, H=H, x0_r=(x0_r if order == 2 else None), r=(r if order == 2 else None), last=last):
                out = setup.eps(y, s.label)
                x0 = x0_hat(y, out.eps, s, out.x0)      # a flow model's own x0 at sigma = 1
                val = ddim_step(x0, out.eps, t)
                if order == 2:
                    val = val + (H if H is not None else dpmpp2m_high_order(x0, x0_r, r, s, t, grid.solver_type))
                last.update(y=y, aux=(out, x0))
                return val, (out, x0)

            res = solve(phi, x, init, solver_opts, rho=rho, precision=precision)
            extras.update(tol=res.tol, inner_residuals=res.residuals, step_sizes=res.step_sizes,
                          converged=res.converged, diverged=res.diverged, stop_reason=res.stop_reason,
                          iterations=res.iterations)
            if res.aux is not None:
                out, x0 = res.aux
            elif last and torch.equal(res.x, last["y"]):  # the best iterate is the last one evaluated
                out, x0 = last["aux"]
            else:  # the accepted iterate is not the last one evaluated: evaluate it once more
                out = setup.eps(res.x, s.label)
                x0 = x0_hat(res.x, out.eps, s, out.x0)
            st["eps"], st["eps_cond"], st["eps_uncond"], st["x0_hat"] = out.eps, out.eps_cond, out.eps_uncond, x0
            cached_eps = out.eps
            solved = (solved + [(s.lam, out.eps)])[-2:]
            x = run.finish(st, res.x, residual=min(res.residuals) if res.residuals else None, extras=extras)
    traj = run.trajectory(x)
    warn_unconverged(traj)
    return traj


def warn_unconverged(traj, stacklevel: int = 4, advice: str | None = None) -> None:
    """One :class:`~invlab.trace.ConvergenceWarning` naming the steps whose solve missed its tolerance
    (worded for ``traj.config["method"]``; ``advice`` replaces the closing hint)."""
    conv = traj.convergence()
    if not conv or not conv["failed_steps"]:
        return
    failed = conv["failed_steps"]
    tols = sorted({r.extras.get("tol") for r in traj.records if r.extras.get("tol") is not None})
    shown = ", ".join(map(str, failed[:10])) + (", ..." if len(failed) > 10 else "")
    if advice is None:
        advice = ("More steps, lower guidance, a larger max_iter or inner='anderson' usually help; see "
                  "traj.convergence() and each record's extras.")
    method = traj.config.get("method", "exact")
    warnings.warn(
        f"{method} inversion did not converge at {len(failed)} of {conv['solved']} steps (steps {shown}; "
        f"worst residual {conv['max_residual']:.2g} vs tolerance {tols[-1] if tols else '?':g}): those steps are "
        "no better than the solver's last iterate. " + advice, ConvergenceWarning, stacklevel=stacklevel)
