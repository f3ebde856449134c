"""The flow-era inversion methods, written as the ODE solvers they are (flow-matching models only).

A flow model's probability-flow ODE is ``dx/dsigma = v(x, sigma)`` with the velocity
``v = eps - x0``. Inversion integrates it from sigma = 0 (the image) up the grid to sigma = 1 (the
noise), with steps ``Delta_i = sigma_{i+1} - sigma_i > 0`` (the model's own grid, walked backwards):

* ``"naive"`` is the explicit Euler step ``x' = x + Delta v(x, sigma_i)`` (DDIM inversion in
  (1 - sigma, sigma) form; registered for every model);
* ``"rf-solver"`` (RF-Solver, Wang et al. 2025) is the **explicit midpoint rule**, 2 NFE per step:
  ``x_mid = x + Delta/2 v(x, sigma_i)``, ``x' = x + Delta v(x_mid, sigma_i + Delta/2)``. Its paper
  writes it as a second-order Taylor step with a finite-difference time derivative,
  ``x + Delta v0 + 1/2 Delta^2 (v_mid - v0) / (Delta/2)``, which is the same number;
* ``"fireflow"`` (FireFlow, Deng et al. 2025) is the midpoint rule with the first evaluation replaced
  by the previous step's midpoint velocity (the first step is a full midpoint step): N + 1 NFE for
  N steps;
* ``"uni-inv"`` (Uni-Inv, Jiao et al. 2025) is one fixed-point iteration of the **backward-Euler**
  inverse ``Z_{i+1} = Z_i + Delta_i v(Z_{i+1}, sigma_{i+1})`` per step, started from a prediction that
  reuses the last velocity: ``v_i = v(Zhat_{i+1}, sigma_{i+1})``, ``Z_{i+1} = Z_i + Delta_i v_i``,
  ``Zhat_{i+2} = Z_{i+1} + Delta_{i+1} v_i``; the first prediction is an Euler step from sigma = 0
  (N + 1 NFE; ``zero_initial=True`` skips that call, Zhat_1 = Z_0: N NFE).

Labels: the network is fed ``sigma * T`` of the point it is evaluated at (its own time), as the
reference code does (the midpoint at sigma + Delta/2). The grid is the model's
``FlowMatchEulerDiscreteScheduler`` grid (invlab's ``"euler"`` sampler's), so a reconstruction
samples it back with that sampler. Where this differs from the authors' code: RF-Solver's and
FireFlow's repositories step on FLUX's grid, ``linspace(1, 0, N + 1)`` shifted, not on
``set_timesteps(N)``'s (at N = 10, shift 3 the two differ by up to 0.24 in sigma); these methods
have no ``preset="reference"`` for that grid yet (RF-Inversion's ``time_grid="reference"`` has it).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..loop import Runner, Setup, progress
from ..schedules import Level

FLOW_METHODS = ("rf-solver", "fireflow", "uni-inv", "rf-inversion")


@dataclass
class RFSolverOptions:
    """RF-Solver has no options (the midpoint rule, 2 NFE per step)."""


@dataclass
class FireFlowOptions:
    """FireFlow has no options (midpoint with the previous midpoint velocity, N + 1 NFE)."""


@dataclass
class UniInvOptions:
    """zero_initial: skip the model call at sigma = 0 (the first prediction is the image itself), as
    Uni-Inv's option of that name does: N instead of N + 1 NFE."""

    zero_initial: bool = False

    def __post_init__(self):
        if not isinstance(self.zero_initial, bool):
            raise TypeError(f"zero_initial must be True or False (got {self.zero_initial!r})")


def _check_flow(setup: Setup, method: str) -> list[Level]:
    if not getattr(setup.model.schedule, "is_flow", False):
        raise ValueError(f"method {method!r} integrates a flow-matching model's ODE dx/dsigma = v; "
                         f"{setup.model.name!r} is a VP (eps) model. On it use method='naive' (Euler in x/alpha "
                         "against sigma/alpha) or 'exact'; for flow models load e.g. 'gmm-digits-flow'")
    return list(reversed(setup.grid.levels))


def _velocity(setup: Setup, x: torch.Tensor, sigma: float):
    """The guided velocity and the model output at (x, sigma): v = eps - x0."""
    T = setup.model.schedule.num_train_timesteps
    out = setup.eps(x, sigma * T)
    return out.eps - out.x0, out


def _run(setup: Setup, hooks, method: str, check_finite: bool, show_progress: bool, step_fn, extra=None):
    levels = _check_flow(setup, method)
    config = {"direction": "invert", "method": method, **(extra or {})}
    run = Runner(setup, hooks, config, levels, check_finite)
    state: dict = {}
    with run.guard(), torch.no_grad():
        x = setup.x
        for i in progress(range(setup.steps), show_progress, f"invert {method}"):
            cur, nxt = levels[i], levels[i + 1]
            x = step_fn(run, i, x, cur, nxt, levels, state)
    return run.trajectory(x)


def _record_eps(run: Runner, st: dict, out) -> None:
    run.set_eps(st, out)
    st["x0_hat"] = out.x0


def _midpoint_step(setup: Setup, reuse: bool):
    """One explicit midpoint step; ``reuse`` takes the previous step's midpoint velocity as the first
    evaluation (FireFlow) once there is one, instead of calling the network at the current point."""
    T = setup.model.schedule.num_train_timesteps

    def step(run, i, x, cur, nxt, levels, state):
        d = nxt.sigma - cur.sigma
        mid = cur.sigma + d / 2
        st = run.begin(i, mid * T)
        st["x_cur"] = x
        reused = reuse and "v_mid" in state
        v0 = state["v_mid"] if reused else _velocity(setup, x, cur.sigma)[0]
        v_mid, out = _velocity(setup, x + (d / 2) * v0, mid)
        state["v_mid"] = v_mid
        _record_eps(run, st, out)
        extras = {"reused_velocity": reused} if reuse else {"t_first": cur.sigma * T}
        return run.finish(st, x + d * v_mid, extras=extras)

    return step


def invert_rf_solver(setup: Setup, hooks, opts: RFSolverOptions, check_finite: bool = True,
                     show_progress: bool = False):
    return _run(setup, hooks, "rf-solver", check_finite, show_progress, _midpoint_step(setup, reuse=False))


def invert_fireflow(setup: Setup, hooks, opts: FireFlowOptions, check_finite: bool = True,
                    show_progress: bool = False):
    return _run(setup, hooks, "fireflow", check_finite, show_progress, _midpoint_step(setup, reuse=True))


def invert_uni_inv(setup: Setup, hooks, opts: UniInvOptions, check_finite: bool = True,
                   show_progress: bool = False):
    def step(run, i, x, cur, nxt, levels, state):
        d = nxt.sigma - cur.sigma
        st = run.begin(i, nxt.label)
        st["x_cur"] = x
        if i == 0:                                    # the first prediction Zhat_1
            if opts.zero_initial:
                state["pred"] = x
            else:
                v_init, _ = _velocity(setup, x, cur.sigma)
                state["pred"] = x + d * v_init
        pred = state["pred"]
        v, out = _velocity(setup, pred, nxt.sigma)    # at the predicted point, the target label
        _record_eps(run, st, out)
        x_next = x + d * v                            # the correction, added to the corrected state
        # how far the prediction was from the corrected state (0 would mean a converged backward-Euler step)
        st["extras"]["prediction_gap"] = float((pred - x_next).pow(2).mean().sqrt())
        if i + 1 < len(levels) - 1:
            state["pred"] = x_next + (levels[i + 2].sigma - nxt.sigma) * v   # velocity reuse
        return run.finish(st, x_next)

    return _run(setup, hooks, "uni-inv", check_finite, show_progress, step,
                extra={"zero_initial": opts.zero_initial})


# ---------------------------------------------------------------------------------------- RF-Inversion
TIME_GRIDS = ("consistent", "reference")


@dataclass
class RFInversionOptions:
    """RF-Inversion's controlled forward ODE (Rout et al., ICLR 2025, Algorithm 1).

    A target noise ``y1 ~ N(0, I)`` is drawn once (``seed``; the default is deliberately not 0, since
    ``invlab.noise(model, n, seed=0)`` draws the very same tensor, and a y1 equal to a sampled image's
    true noise makes every gamma look perfect). Each step evaluates the velocity
    ``u = v(Y, t)`` and the straight-line velocity towards y1, ``u_cond = (y1 - Y) / (1 - t)``, and moves
    ``Y <- Y + Delta (u + gamma (u_cond - u))``. ``gamma = 0`` is plain Euler inversion (the network fed
    the current level's label); ``gamma = 1`` walks the straight line to y1 and ends on it, whatever the
    image. Reference default ``gamma = 0.5`` (28 steps; the reference inverts without a prompt, guidance
    0: pass ``cond=None``).

    time_grid: "consistent" (default) evaluates at the grid's own sigma and steps by that grid's
    increments (the model's flow grid walked backwards, as a mirrored inverse scheduler does);
    "reference" reproduces the diffusers community pipeline: the network and u_cond see the linear
    time ``t_i = i / (N + 1)`` while Y moves by the shifted FLUX grid's increments taken in *denoising*
    order (``linspace(1, 0, N + 1)`` shifted; the smallest steps first). The two are the time-grid
    discrepancy between public implementations (``invlab.studies.flow.time_grid_audit`` measures it).
    """

    gamma: float = 0.5
    seed: int = 2410
    time_grid: str = "consistent"

    def __post_init__(self):
        from ..checks import check_choice

        if isinstance(self.gamma, bool) or not isinstance(self.gamma, (int, float)) or not 0 <= self.gamma <= 1:
            raise ValueError(f"gamma must be a number in [0, 1] (0: plain Euler inversion, 1: straight to y1); "
                             f"got {self.gamma!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise TypeError(f"seed must be an int (it draws y1); got {self.seed!r}")
        check_choice("time_grid", self.time_grid, TIME_GRIDS)


def flux_sigmas(schedule, steps: int, mu: float | None = None) -> list[float]:
    """The FLUX reference code's grid: ``linspace(1, 0, steps + 1)`` shifted (static shift, or the
    exponential time shift with ``mu`` for dynamic schedules), in denoising order (1 ... 0)."""
    import math

    cfg = schedule.config
    out = []
    for k in range(steps + 1):
        s = 1.0 - k / steps
        if s <= 0.0:
            out.append(0.0)
        elif cfg.get("use_dynamic_shifting"):
            m = schedule.mu(mu)
            out.append(math.exp(m) / (math.exp(m) + (1.0 / s - 1.0)))
        else:
            sh = float(cfg.get("shift", 1.0))
            out.append(sh * s / (1.0 + (sh - 1.0) * s))
    return out


def invert_rf_inversion(setup: Setup, hooks, opts: RFInversionOptions, check_finite: bool = True,
                        show_progress: bool = False):
    levels = _check_flow(setup, "rf-inversion")
    n = setup.steps
    T = setup.model.schedule.num_train_timesteps
    if opts.time_grid == "consistent":
        times = [lv.sigma for lv in levels[:-1]]                       # evaluation times = the state's own sigma
        deltas = [b.sigma - a.sigma for a, b in zip(levels, levels[1:])]
    else:
        den = flux_sigmas(setup.model.schedule, n)
        deltas = [den[k] - den[k + 1] for k in range(n)]              # denoising-order increments, smallest first
        times = [i / (n + 1) for i in range(n)]                        # the linear time the network is fed
        reached = [0.0]
        for d in deltas:
            reached.append(reached[-1] + d)
        levels = [Level(label=s * T, alpha=1.0 - s, sigma=s) for s in reached]
    gen = torch.Generator().manual_seed(opts.seed)
    x = setup.x
    y1 = torch.randn(x.shape, generator=gen, dtype=torch.float64).to(device=x.device, dtype=x.dtype)
    config = {"direction": "invert", "method": "rf-inversion", "gamma": opts.gamma, "seed": opts.seed,
              "time_grid": opts.time_grid}
    run = Runner(setup, hooks, config, levels, check_finite)
    with run.guard(), torch.no_grad():
        for i in progress(range(n), show_progress, "invert rf-inversion"):
            t = times[i]
            st = run.begin(i, t * T)
            st["x_cur"] = x
            u, out = _velocity(setup, x, t)
            _record_eps(run, st, out)
            x = st["x_cur"]
            u_cond = (y1 - x) / (1.0 - t)
            st["extras"].update(t_model_sigma=t, delta=deltas[i])
            x = run.finish(st, x + deltas[i] * (u + opts.gamma * (u_cond - u)))
    traj = run.trajectory(x)
    traj.config["y1_seed"] = opts.seed
    return traj
