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
samples it back with that sampler.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..loop import Runner, Setup, progress
from ..schedules import Level

FLOW_METHODS = ("rf-solver", "fireflow", "uni-inv")


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


def invert_rf_solver(setup: Setup, hooks, opts: RFSolverOptions, check_finite: bool = True,
                     show_progress: bool = False):
    def step(run, i, x, cur, nxt, levels, state):
        d = nxt.sigma - cur.sigma
        mid = cur.sigma + d / 2
        T = setup.model.schedule.num_train_timesteps
        st = run.begin(i, mid * T)
        st["x_cur"] = x
        v0, _ = _velocity(setup, x, cur.sigma)
        v_mid, out = _velocity(setup, x + (d / 2) * v0, mid)
        _record_eps(run, st, out)
        return run.finish(st, x + d * v_mid, extras={"t_first": cur.sigma * T})

    return _run(setup, hooks, "rf-solver", check_finite, show_progress, step)


def invert_fireflow(setup: Setup, hooks, opts: FireFlowOptions, check_finite: bool = True,
                    show_progress: bool = False):
    def step(run, i, x, cur, nxt, levels, state):
        d = nxt.sigma - cur.sigma
        mid = cur.sigma + d / 2
        T = setup.model.schedule.num_train_timesteps
        st = run.begin(i, mid * T)
        st["x_cur"] = x
        if "v_mid" in state:
            v0 = state["v_mid"]                       # the previous step's midpoint velocity, reused
            st["extras"]["reused_velocity"] = True
        else:
            v0, _ = _velocity(setup, x, cur.sigma)
            st["extras"]["reused_velocity"] = False
        v_mid, out = _velocity(setup, x + (d / 2) * v0, mid)
        state["v_mid"] = v_mid
        _record_eps(run, st, out)
        return run.finish(st, x + d * v_mid)

    return _run(setup, hooks, "fireflow", check_finite, show_progress, step)


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
