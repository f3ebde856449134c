"""Exact-by-construction samplers: EDICT, BDIA and BELM, with their algebraic inverses.

These change the *sampler* so that every step can be undone in closed form (methods.md §7).
They run on the DDIM grid of the diffusers scheduler (``schedules.NoiseSchedule.grid``):
sampling walks ``levels[0]`` (noisiest) to ``levels[N]``; a step "from s to t" has s noisier.

State with more than one latent
-------------------------------
* **EDICT** carries a pair (x, y) at the same level. Sampling from noise starts with
  x = y = z_T; inverting an image starts with x = y = image. ``Trajectory.final`` is x,
  ``Trajectory.companion`` is y.
* **BDIA / BELM** carry two consecutive states. Sampling from noise makes its first step with
  plain DDIM; inverting an image makes its first step with one DDIM-inversion step, fed the
  *known* (clean) level's label. ``Trajectory.final`` is the state at the run's last level,
  ``Trajectory.companion`` the state at the level before it (sampling: level N - 1; inversion:
  level 1, the second noisiest).

Passing ``companion=`` to :func:`invlab.sample` (or to :func:`invlab.invert` with
``method="algebraic"``) replaces that first step by the given state (0 NFE): that is how an
inversion's pair regenerates the image exactly, and how a sample's pair inverts back to z_T.
``invlab.reconstruct`` passes it. Without it, sampling from ``inversion.final`` alone starts a
different path (the first DDIM step does not land on the stored second state).

Update rules (the step functions below; ``a = alpha_t/alpha_s``, ``b = sigma_t - a sigma_s``
is the DDIM step written as ``x_t = a x_s + b eps``):

* EDICT (p = mixing weight), with both network calls at the noisier level s's label::

      first'  = a first + b eps(second, s)
      second' = a second + b eps(first', s)        (first = x, or y on odd steps with leapfrog)
      x_new   = p x' + (1 - p) y'
      y_new   = p y' + (1 - p) x_new               (mixing order never alternates)

* BDIA (gamma in (0, 1]), with u_prev at level r (noisier than s) and u at s::

      u_next = gamma u_prev - gamma DDIM_{s->r}(u) + DDIM_{s->t}(u),  DDIM_{s->j}(u) = alpha_j x0(u) + sigma_j eps(u, s)

* BELM (O-BELM, order 2; rho = sigma/alpha, h_i = rho_s - rho_t, h_{i+1} = rho_r - rho_s)::

      u_next = (h_i^2/h_{i+1}^2)(alpha_t/alpha_r) u_prev + ((h_{i+1}^2 - h_i^2)/h_{i+1}^2)(alpha_t/alpha_s) u
               - (h_i (h_i + h_{i+1})/h_{i+1}) alpha_t eps(u, s)

Each inverse evaluates the network at exactly the same (state, label) pairs, which is why it
is exact in exact arithmetic. Round-off is amplified by EDICT's un-mixing (gain up to 1/p^2 per
step) and BDIA's division by gamma; BELM's inverse coefficients are large near the clean end.

Cost: EDICT 2 NFE per step; BDIA and BELM 1 (0 for a first step replaced by ``companion``).

Records: ``t_model`` is the label the network saw (EDICT: the noisier level's, both ways; BDIA/BELM:
the middle state's level; the first inversion step: the clean level's); EDICT's ``eps`` is its first
evaluation of the step and ``extras["x_first"]`` says which latent was updated first; BDIA/BELM's
``extras["kind"]`` is "ddim", "companion" (the stored state, no network call) or "bidirectional".
``config["solver_options"]`` holds the resolved options (``invlab.reconstruct`` reuses them).

Where invlab differs from the reference code (methods.md §7, pitfalls.md):

* every solver walks the diffusers DDIM grid of the model's schedule, final level included (BELM's
  code ends at alpha-bar = 1 and labels its first inversion call 1; here the grid's last level and
  its label);
* sampling from an inversion's pair spends no network call on the first step (BELM's code spends
  one and discards it);
* EDICT returns x as ``final`` (the pair is kept whole in ``companion``); BDIA's default gamma is
  1.0 (the reference's editing code uses 0.5: ``preset="reference"``).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable

import torch

from .schedules import Level
from .steps import x0_from_eps

REVERSIBLE = ("edict", "bdia", "belm")

#: invlab's defaults per solver (options that do not apply to a solver are None)
DEFAULTS: dict[str, dict[str, Any]] = {
    "edict": {"p": 0.93, "leapfrog": True},
    "bdia": {"gamma": 1.0},
    "belm": {"order": 2},
}
#: the reference code's defaults (salesforce/EDICT mix_weight 0.93 with leapfrog steps; BDIA's
#: ``BDIA_editing`` gamma 0.5; BELM's O-BELM, order 2)
REFERENCE: dict[str, dict[str, Any]] = {
    "edict": {"p": 0.93, "leapfrog": True},
    "bdia": {"gamma": 0.5},
    "belm": {"order": 2},
}
_APPLIES = {"p": "edict", "leapfrog": "edict", "gamma": "bdia", "order": "belm"}


@dataclass
class ReversibleOptions:
    """Options of the exact-by-construction samplers (and of ``method="algebraic"``).

    p: EDICT's mixing weight in (0, 1] (default 0.93; p = 1 is the reference's reconstruction
        setting; the inverse divides by p twice per step).
    leapfrog: EDICT alternates which latent is updated first (x on even sampling steps, y on
        odd ones; default True, as the reference).
    gamma: BDIA's gamma in (0, 1] (invlab default 1.0: no division in the inverse; the
        reference's editing default is 0.5; its text-to-image advice is 0.5 at 10 steps, 1.0 at 40).
    order: BELM's number of states (2: O-BELM, the LTE-optimal two-step rule; the only one).
    preset: "reference" takes every option left unset from the reference code (:data:`REFERENCE`).

    Options left None take invlab's default for the solver (:data:`DEFAULTS`); an option of
    another solver (e.g. ``gamma`` with ``solver="edict"``) is an error.
    """

    p: float | None = None
    leapfrog: bool | None = None
    gamma: float | None = None
    order: int | None = None
    preset: str | None = None

    def __post_init__(self):
        if self.preset not in (None, "reference"):
            raise ValueError(f"preset must be None or 'reference' (got {self.preset!r})")
        if self.p is not None:
            if isinstance(self.p, bool) or not isinstance(self.p, (int, float)) or not 0.0 < float(self.p) <= 1.0:
                raise ValueError(f"p (EDICT's mixing weight) must be a number in (0, 1] (got {self.p!r}); the "
                                 "inverse divides by p, so p = 0 is not invertible; the reference uses 0.93")
        if self.gamma is not None:
            if (isinstance(self.gamma, bool) or not isinstance(self.gamma, (int, float))
                    or not 0.0 < float(self.gamma) <= 1.0):
                raise ValueError(f"gamma (BDIA) must be a number in (0, 1] (got {self.gamma!r}); the inverse "
                                 "divides by gamma, so gamma = 0 is not invertible")
        if self.leapfrog is not None and not isinstance(self.leapfrog, bool):
            raise TypeError(f"leapfrog must be True or False (got {self.leapfrog!r})")
        if self.order is not None and (isinstance(self.order, bool) or self.order != 2):
            raise ValueError(f"order (BELM) must be 2 (got {self.order!r}): invlab implements O-BELM, the "
                             "LTE-optimal two-step rule; order 1 has no network term and is not a sampler")

    def resolved(self, solver: str) -> dict[str, Any]:
        """The concrete options for ``solver`` (refuses options of another solver)."""
        if solver not in REVERSIBLE:
            raise ValueError(f"solver options (p, leapfrog, gamma, order) belong to the exact-by-construction "
                             f"solvers {REVERSIBLE}, not {solver!r}")
        for name, owner in _APPLIES.items():
            if getattr(self, name) is not None and owner != solver:
                raise ValueError(f"option {name}={getattr(self, name)!r} belongs to solver {owner!r}, not "
                                 f"{solver!r}; {solver!r} takes {sorted(DEFAULTS[solver])}")
        base = REFERENCE[solver] if self.preset == "reference" else DEFAULTS[solver]
        return {k: (getattr(self, k) if getattr(self, k) is not None else v) for k, v in base.items()}


def as_options(solver_options: Any) -> ReversibleOptions:
    """``solver_options`` of ``invlab.sample``: None, a dict of keywords or ReversibleOptions."""
    if solver_options is None:
        return ReversibleOptions()
    if isinstance(solver_options, ReversibleOptions):
        return solver_options
    if isinstance(solver_options, dict):
        from .checks import check_options

        check_options("solver_options", solver_options, [f.name for f in dataclasses.fields(ReversibleOptions)])
        return ReversibleOptions(**solver_options)
    raise TypeError(f"solver_options must be None, a dict (e.g. {{'p': 0.9}}) or ReversibleOptions "
                    f"(got {type(solver_options).__name__})")


# ---------------------------------------------------------------------------- pure steps
def ddim_coeffs(s: Level, t: Level) -> tuple[float, float]:
    """(a, b) with DDIM_{s->t}(x) = a x + b eps: a = alpha_t/alpha_s, b = sigma_t - a sigma_s."""
    a = t.alpha / s.alpha
    return a, t.sigma - a * s.sigma


def ddim_to(u: torch.Tensor, eps: torch.Tensor, s: Level, j: Level) -> torch.Tensor:
    """DDIM_{s->j}(u) = alpha_j x0(u) + sigma_j eps with eps = eps(u, s) (either direction)."""
    return j.alpha * x0_from_eps(u, eps, s) + j.sigma * eps


EpsFn = Callable[[torch.Tensor], torch.Tensor]


def edict_step(x: torch.Tensor, y: torch.Tensor, eps_fn: EpsFn, s: Level, t: Level, p: float,
               x_first: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """One EDICT sampling step s -> t of the pair (x, y); ``eps_fn(z)`` = eps(z, label of s)."""
    a, b = ddim_coeffs(s, t)
    first, second = (x, y) if x_first else (y, x)
    first_i = a * first + b * eps_fn(second)
    second_i = a * second + b * eps_fn(first_i)
    x_i, y_i = (first_i, second_i) if x_first else (second_i, first_i)
    x_new = p * x_i + (1 - p) * y_i
    y_new = p * y_i + (1 - p) * x_new
    return x_new, y_new


def edict_inverse(x_new: torch.Tensor, y_new: torch.Tensor, eps_fn: EpsFn, s: Level, t: Level, p: float,
                  x_first: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """The inverse of :func:`edict_step`: un-mix (y, then x), undo the updates in mirrored order."""
    a, b = ddim_coeffs(s, t)
    y_i = (y_new - (1 - p) * x_new) / p
    x_i = (x_new - (1 - p) * y_i) / p
    first_i, second_i = (x_i, y_i) if x_first else (y_i, x_i)
    second = (second_i - b * eps_fn(first_i)) / a
    first = (first_i - b * eps_fn(second)) / a
    return (first, second) if x_first else (second, first)


def bdia_step(u_prev: torch.Tensor, u: torch.Tensor, eps: torch.Tensor, r: Level, s: Level, t: Level,
              gamma: float) -> torch.Tensor:
    """BDIA s -> t from (u_prev at r, u at s), eps = eps(u, s):
    gamma u_prev - gamma DDIM_{s->r}(u) + DDIM_{s->t}(u)."""
    return gamma * u_prev - gamma * ddim_to(u, eps, s, r) + ddim_to(u, eps, s, t)


def bdia_inverse(u_next: torch.Tensor, u: torch.Tensor, eps: torch.Tensor, r: Level, s: Level, t: Level,
                 gamma: float) -> torch.Tensor:
    """The state at r from (u at s, u_next at t): (u_next - DDIM_{s->t}(u)) / gamma + DDIM_{s->r}(u)."""
    return (u_next - ddim_to(u, eps, s, t)) / gamma + ddim_to(u, eps, s, r)


def belm_coeffs(r: Level, s: Level, t: Level) -> tuple[float, float, float]:
    """O-BELM's (c_prev, c_cur, c_eps) for u_next = c_prev u_prev + c_cur u + c_eps eps(u, s)."""
    h_i = s.sigma / s.alpha - t.sigma / t.alpha
    h_n = r.sigma / r.alpha - s.sigma / s.alpha
    c_prev = (h_i * h_i) / (h_n * h_n) * (t.alpha / r.alpha)
    c_cur = (h_n * h_n - h_i * h_i) / (h_n * h_n) * (t.alpha / s.alpha)
    c_eps = -(h_i * (h_i + h_n) / h_n) * t.alpha
    return c_prev, c_cur, c_eps


def belm_step(u_prev: torch.Tensor, u: torch.Tensor, eps: torch.Tensor, r: Level, s: Level,
              t: Level) -> torch.Tensor:
    c_prev, c_cur, c_eps = belm_coeffs(r, s, t)
    return c_prev * u_prev + c_cur * u + c_eps * eps


def belm_inverse(u_next: torch.Tensor, u: torch.Tensor, eps: torch.Tensor, r: Level, s: Level,
                 t: Level) -> torch.Tensor:
    c_prev, c_cur, c_eps = belm_coeffs(r, s, t)
    return (u_next - c_cur * u - c_eps * eps) / c_prev


# ---------------------------------------------------------------------------- runners
def _companion(companion: Any, x: torch.Tensor) -> torch.Tensor | None:
    if companion is None:
        return None
    if not isinstance(companion, torch.Tensor):
        raise TypeError(f"companion must be a tensor (a Trajectory's .companion), got {type(companion).__name__}")
    if companion.shape != x.shape:
        raise ValueError(f"companion has shape {tuple(companion.shape)} but the state has {tuple(x.shape)}; pass "
                         "the .companion of the same run")
    return companion.detach().to(device=x.device, dtype=x.dtype)


def _pair_step(solver: str, o: dict, u_prev, u, eps, r, s, t, inverse: bool):
    if solver == "bdia":
        fn = bdia_inverse if inverse else bdia_step
        return fn(u_prev, u, eps, r, s, t, o["gamma"])
    fn = belm_inverse if inverse else belm_step
    return fn(u_prev, u, eps, r, s, t)


def run_reversible(setup, hooks, opts: ReversibleOptions, direction: str, companion: Any = None,
                   check_finite: bool = True, show_progress: bool = False, config: dict | None = None):
    """Sample (``direction="sample"``, setup.x = z_T) or invert (``"invert"``, setup.x = image)
    with one of :data:`REVERSIBLE`; returns a Trajectory with ``.companion`` set."""
    from .loop import Runner, progress

    solver = setup.solver
    o = opts.resolved(solver)
    grid = setup.grid
    lv = list(grid.levels)
    n = setup.steps
    inv = direction == "invert"
    levels = lv[::-1] if inv else lv
    cfg = {"direction": direction, "method": "algebraic" if inv else solver,
           "label": "noisier" if solver == "edict" else "own", "solver_options": dict(o),
           "companion_given": companion is not None, **(config or {})}
    if opts.preset is not None:
        cfg["preset"] = opts.preset
    run = Runner(setup, hooks, cfg, levels, check_finite)
    x = setup.x
    y = _companion(companion, x)
    with run.guard(), torch.no_grad():
        if solver == "edict":
            if y is None:
                y = x.clone()
            for j in progress(range(n), show_progress, f"{direction} edict"):
                k = n - 1 - j if inv else j                     # the sampling step s -> t
                s, t = lv[k], lv[k + 1]
                x_first = not (o["leapfrog"] and k % 2 == 1)
                st = run.begin(j, s.label)
                st["x_cur"] = x
                calls: list[torch.Tensor] = []

                def eps_fn(z, _s=s, _st=st, _j=j):
                    out = setup.eps(z, _s.label, _j if not inv else n - 1 - _j)
                    if not calls:
                        run.set_eps(_st, out)
                        calls.append(_st["eps"])
                        return _st["eps"]
                    run._guard(_st, "eps", out.eps)
                    calls.append(out.eps)
                    return out.eps

                if inv:
                    x_new, y = edict_inverse(x, y, eps_fn, s, t, o["p"], x_first)
                else:
                    x_new, y = edict_step(x, y, eps_fn, s, t, o["p"], x_first)
                run._guard(st, "companion", y)
                x = run.finish(st, x_new, extras={"x_first": x_first})
            return _with_companion(run.trajectory(x), y)

        # BDIA / BELM: (u_prev, u) = the two latest states, u_prev the one further along the loop's past
        u_prev, u = None, x
        for j in progress(range(n), show_progress, f"{direction} {solver}"):
            cur, nxt = levels[j], levels[j + 1]
            st = run.begin(j, cur.label)
            st["x_cur"] = u
            if j == 0:
                if y is not None:                                 # the stored second state: no step to take
                    st["eps"] = None
                    new = y
                    st["extras"]["kind"] = "companion"
                else:                                             # plain DDIM (inversion: known level's label)
                    run.set_eps(st, setup.eps(u, cur.label, 0 if not inv else n - 1))
                    u = st["x_cur"]
                    st["x0_hat"] = x0_from_eps(u, st["eps"], cur)
                    new = ddim_to(u, st["eps"], cur, nxt)
                    st["extras"]["kind"] = "ddim"
            else:
                k = n - j if inv else j                           # the middle level's grid index
                r, s, t = lv[k - 1], lv[k], lv[k + 1]
                run.set_eps(st, setup.eps(u, s.label, k))
                u = st["x_cur"]
                st["x0_hat"] = x0_from_eps(u, st["eps"], s)
                new = _pair_step(solver, o, u_prev, u, st["eps"], r, s, t, inverse=False) if not inv else \
                    _pair_step(solver, o, u_prev, u, st["eps"], r, s, t, inverse=True)
                st["extras"]["kind"] = "bidirectional"
            new = run.finish(st, new)
            u_prev, u = u, new
        return _with_companion(run.trajectory(u), u_prev)


def _with_companion(traj, companion):
    traj.companion = companion
    return traj
