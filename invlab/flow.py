"""Flow-matching (rectified-flow) schedules: SD3 / FLUX-style models under invlab's one interface.

A rectified-flow model is trained on the straight path between data and noise::

    x_sigma = (1 - sigma) * x0 + sigma * eps,      sigma in [0, 1]

so it is the same Gaussian corruption as the VP models with ``(alpha, sigma) = (1 - sigma, sigma)``
(``alpha + sigma = 1`` instead of ``alpha^2 + sigma^2 = 1``). Every step of ``invlab.steps`` is written
in (alpha, sigma) form and therefore carries over unchanged: with the velocity
``v = eps - x0`` the DDIM step from s to t is exactly the flow-matching Euler step::

    alpha_t x0_hat + sigma_t eps_hat  =  x_s + (sigma_t - sigma_s) v          (alpha = 1 - sigma)

which is what diffusers' ``FlowMatchEulerDiscreteScheduler.step`` computes. invlab's solver name for
it on a flow model is ``"euler"`` (``"ddim"`` is accepted too: it is the same step).

The noisiest level is sigma = 1, where alpha = 0 and lambda = log(alpha / sigma) = -inf. There the
noise prediction is the input itself (eps = x) and the data prediction cannot be computed from it
(``x0 = (x - sigma eps) / alpha`` is 0/0); flow models predict the velocity, from which
``x0 = x - sigma v`` needs no division, and invlab's steps use that prediction at alpha = 0
(``invlab.steps.x0_hat``). A method that would divide by alpha = 0 stops with an error that says so.

Labels: the network is fed diffusers' own timesteps, ``sigma * num_train_timesteps`` (fractional);
a label maps back to ``sigma = label / num_train_timesteps``.

Shift: the grid is diffusers' ``set_timesteps``: ``sigma' = shift sigma / (1 + (shift - 1) sigma)``
(static shift, SD3: 3.0) or, with ``use_dynamic_shifting`` (FLUX), the exponential time shift with
``mu`` from the image's sequence length (``calculate_mu``) or given.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any, Mapping

from .schedules import Grid, Level, check_steps

#: Stable Diffusion 3's scheduler config (static shift 3.0).
SD3_FLOW_CONFIG: dict[str, Any] = {"num_train_timesteps": 1000, "shift": 3.0, "use_dynamic_shifting": False}
#: FLUX.1's scheduler config (dynamic shift between 0.5 and 1.15 over 256..4096 image tokens).
FLUX_FLOW_CONFIG: dict[str, Any] = {"num_train_timesteps": 1000, "shift": 3.0, "use_dynamic_shifting": True,
                                    "base_shift": 0.5, "max_shift": 1.15, "base_image_seq_len": 256,
                                    "max_image_seq_len": 4096}
#: the solvers a flow schedule lays out grids for ("ddim" is the same step as "euler")
FLOW_SOLVERS = ("euler", "ddim")
#: sampler options diffusers' flow scheduler has that would make a step something other than Euler
_NOT_EULER = ("stochastic_sampling", "invert_sigmas", "use_karras_sigmas", "use_exponential_sigmas",
              "use_beta_sigmas")


def calculate_mu(image_seq_len: int, base_seq_len: int = 256, max_seq_len: int = 4096, base_shift: float = 0.5,
                 max_shift: float = 1.15) -> float:
    """FLUX's dynamic shift: ``mu`` linear in the number of image tokens, ``base_shift`` at
    ``base_seq_len`` and ``max_shift`` at ``max_seq_len`` (diffusers' pipelines compute it this way)."""
    slope = (max_shift - base_shift) / (max_seq_len - base_seq_len)
    return float(image_seq_len * slope + (base_shift - slope * base_seq_len))


@dataclass(frozen=True)
class FlowSchedule:
    """A rectified-flow schedule from a diffusers ``FlowMatchEulerDiscreteScheduler`` config.

    ``image_seq_len`` (optional): the model's number of image tokens, used for ``mu`` when the
    config has ``use_dynamic_shifting``; a grid can also be given ``mu=`` directly.
    """

    config: Mapping[str, Any]
    image_seq_len: int | None = field(default=None)

    is_flow = True

    @classmethod
    def from_config(cls, config: Mapping[str, Any] | None = None, image_seq_len: int | None = None) -> "FlowSchedule":
        """Build from a diffusers flow scheduler config (``scheduler.config`` or a dict; None: SD3's)."""
        from diffusers import FlowMatchEulerDiscreteScheduler

        cfg = dict(SD3_FLOW_CONFIG if config is None else config)
        cfg.pop("_class_name", None)
        cfg.pop("_diffusers_version", None)
        for key in _NOT_EULER:
            if cfg.get(key):
                raise ValueError(f"{key}=True makes the flow scheduler's step something other than the Euler step "
                                 f"invlab inverts; build the schedule with {key}=False")
        sched = FlowMatchEulerDiscreteScheduler.from_config(cfg)
        clean = {k: v for k, v in dict(sched.config).items() if not k.startswith("_")}
        if image_seq_len is not None and (isinstance(image_seq_len, bool) or not isinstance(image_seq_len, int)
                                          or image_seq_len < 1):
            raise ValueError(f"image_seq_len must be a positive number of image tokens (got {image_seq_len!r})")
        return cls(config=clean, image_seq_len=image_seq_len)

    @classmethod
    def sd3(cls) -> "FlowSchedule":
        return cls.from_config(SD3_FLOW_CONFIG)

    @property
    def num_train_timesteps(self) -> int:
        return int(self.config["num_train_timesteps"])

    def level(self, t: float) -> Level:
        """The level a network assumes when it is fed label ``t``: sigma = t / T, alpha = 1 - sigma."""
        T = self.num_train_timesteps
        t = float(t)
        if not (0.0 <= t <= T):
            raise ValueError(f"flow timestep label {t} is outside [0, {T}] (labels are sigma * {T})")
        sigma = t / T
        return Level(label=t, alpha=1.0 - sigma, sigma=sigma)

    def alpha(self, t: float) -> float:
        return self.level(t).alpha

    def sigma(self, t: float) -> float:
        return self.level(t).sigma

    def lam(self, t: float) -> float:
        return self.level(t).lam

    # ------------------------------------------------------------------ grids
    def scheduler(self, solver: str = "euler", **overrides: Any):
        """A fresh ``FlowMatchEulerDiscreteScheduler`` on this config (``overrides``: config entries)."""
        from diffusers import FlowMatchEulerDiscreteScheduler

        from .checks import suggest

        self._check_solver(solver)
        known = set(inspect.signature(FlowMatchEulerDiscreteScheduler.__init__).parameters) - {"self"}
        for key in overrides:
            if key not in known:
                raise ValueError(f"unknown flow scheduler option {key!r}{suggest(key, known)} in grid_overrides; "
                                 f"FlowMatchEulerDiscreteScheduler has {sorted(known)} (and mu= for dynamic shift)")
        cfg = {**self.config, **overrides}
        for key in _NOT_EULER:
            if cfg.get(key):
                raise ValueError(f"{key}=True makes the step something other than Euler; leave it False")
        return FlowMatchEulerDiscreteScheduler.from_config(cfg)

    def mu(self, mu: float | None = None) -> float | None:
        """The dynamic shift used for a grid: ``mu`` as given, else from ``image_seq_len``; None
        for a static-shift config. A dynamic config without either is refused."""
        if not self.config.get("use_dynamic_shifting"):
            if mu is not None:
                raise ValueError("mu= is for schedules with use_dynamic_shifting=True (FLUX); this one has a static "
                                 f"shift={self.config.get('shift')}")
            return None
        if mu is not None:
            return float(mu)
        if self.image_seq_len is None:
            raise ValueError("this flow schedule shifts dynamically (use_dynamic_shifting=True): pass "
                             "grid_overrides={'mu': ...} or build it with FlowSchedule.from_config(config, "
                             "image_seq_len=...) so mu follows the image size, as diffusers' pipelines do")
        c = self.config
        return calculate_mu(self.image_seq_len, c["base_image_seq_len"], c["max_image_seq_len"], c["base_shift"],
                            c["max_shift"])

    def grid(self, steps: int, solver: str = "euler", **overrides: Any) -> Grid:
        """The grid ``FlowMatchEulerDiscreteScheduler.set_timesteps(steps)`` lays out, noisiest first,
        ending at sigma = 0. ``overrides`` are scheduler-config entries (e.g. ``shift=1.0``) and
        ``mu`` (dynamic shift)."""
        check_steps(steps, self.num_train_timesteps)
        mu = self.mu(overrides.pop("mu", None))
        sched = self.scheduler(solver, **overrides)
        sched.set_timesteps(steps, mu=mu)
        labels = [float(t) for t in sched.timesteps.tolist()]
        if len(labels) != steps or any(a <= b for a, b in zip(labels, labels[1:])):
            raise ValueError(f"the flow scheduler laid out {labels[:4]}... for steps={steps}: not {steps} distinct "
                             "decreasing timesteps; use fewer steps")
        if float(sched.sigmas[-1]) != 0.0:
            raise ValueError(f"the flow grid ends at sigma = {float(sched.sigmas[-1]):g}, not 0 (shift_terminal?); "
                             "invlab's flow grids end at the data")
        levels = [self.level(t) for t in labels] + [Level(label=0.0, alpha=1.0, sigma=0.0)]
        return Grid("ddim", tuple(levels), (1,) * steps, "flow")

    @staticmethod
    def _check_solver(solver: str) -> None:
        if solver not in FLOW_SOLVERS:
            raise ValueError(f"solver {solver!r} has no grid on a flow-matching schedule; use one of {FLOW_SOLVERS} "
                             "(the flow Euler step, which is DDIM in (1 - sigma, sigma) form)")


def is_flow(schedule: Any) -> bool:
    return bool(getattr(schedule, "is_flow", False))


__all__ = ["FLOW_SOLVERS", "FLUX_FLOW_CONFIG", "FlowSchedule", "SD3_FLOW_CONFIG", "calculate_mu", "is_flow"]

