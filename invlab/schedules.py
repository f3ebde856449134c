"""Noise schedules and timestep grids.

Convention (VP, written once for the whole package)::

    x_t = alpha_t * x0 + sigma_t * eps,      alpha_t**2 + sigma_t**2 = 1
    lambda_t = log(alpha_t / sigma_t)        (half log-SNR)

diffusers stores ``alphas_cumprod`` (DDPM's alpha-bar); it appears here only in the
conversion ``alpha_t = sqrt(alpha_bar_t)``, ``sigma_t = sqrt(1 - alpha_bar_t)``.

A *grid* is the list of noise levels one sampler visits, taken from the diffusers
scheduler's own ``set_timesteps`` (never from ``t - T // N``), so "leading", "trailing"
and "linspace" spacing all work. Sampling walks a grid from index 0 (noisiest) to
index N (cleanest); inversion walks the same grid backwards.
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np
import torch

SOLVERS = ("ddim", "dpmpp2m", "edict", "bdia", "belm")
#: exact-by-construction samplers (``invlab.reversible``): they walk the DDIM grid
REVERSIBLE_SOLVERS = ("edict", "bdia", "belm")
SPACINGS = ("leading", "trailing", "linspace")

#: Stable Diffusion 1.x/2.x scheduler config (scaled_linear betas, 1000 train steps).
SD_SCHEDULER_CONFIG: dict[str, Any] = {
    "num_train_timesteps": 1000,
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "clip_sample": False,
    "set_alpha_to_one": False,
    "steps_offset": 1,
    "prediction_type": "epsilon",
    "timestep_spacing": "leading",
}


@dataclass(frozen=True)
class Level:
    """One noise level of a grid: the label the network sees and its (alpha, sigma)."""

    label: float
    alpha: float
    sigma: float

    @property
    def lam(self) -> float:
        """Half log-SNR lambda = log(alpha / sigma); +inf at a clean level (sigma = 0), -inf at pure
        noise (alpha = 0: a flow-matching model's sigma = 1 end)."""
        if self.sigma == 0.0:
            return math.inf
        if self.alpha == 0.0:
            return -math.inf
        return math.log(self.alpha) - math.log(self.sigma)


@dataclass(frozen=True)
class Grid:
    """The levels one sampler visits, noisiest first, plus the sampler's order pattern.

    ``levels[i] -> levels[i + 1]`` is sampling step ``i``; ``orders[i]`` is the order the
    sampler uses on that step (1 for DDIM; DPM-Solver++(2M) uses 1 on its first step and on
    its last when diffusers' ``lower_order_final`` rule applies).
    """

    solver: str
    levels: tuple[Level, ...]
    orders: tuple[int, ...]
    spacing: str
    solver_type: str = "midpoint"

    @property
    def steps(self) -> int:
        return len(self.levels) - 1

    @property
    def labels(self) -> list[float]:
        return [lv.label for lv in self.levels]

    def alphas(self) -> np.ndarray:
        return np.array([lv.alpha for lv in self.levels])

    def sigmas(self) -> np.ndarray:
        return np.array([lv.sigma for lv in self.levels])


@dataclass(frozen=True)
class NoiseSchedule:
    """VP schedule from a diffusers scheduler config.

    ``alphas_cumprod`` is kept exactly as diffusers computes it (float32), stored as float64.
    """

    config: Mapping[str, Any]
    alphas_cumprod: torch.Tensor = field(repr=False)

    @classmethod
    def from_config(cls, config: Mapping[str, Any] | None = None) -> "NoiseSchedule":
        """Build from a diffusers scheduler config (``scheduler.config`` or a dict)."""
        from diffusers import DDIMScheduler

        cfg = dict(SD_SCHEDULER_CONFIG if config is None else config)
        sched = DDIMScheduler.from_config(cfg)
        return cls(config=dict(sched.config), alphas_cumprod=sched.alphas_cumprod.double())

    @classmethod
    def stable_diffusion(cls) -> "NoiseSchedule":
        return cls.from_config(SD_SCHEDULER_CONFIG)

    @property
    def num_train_timesteps(self) -> int:
        return int(self.config["num_train_timesteps"])

    def alpha_bar(self, t: float) -> float:
        """alpha_bar at a (possibly fractional) label; linear in log alpha_bar between integers."""
        T = self.num_train_timesteps
        if not (0 <= t <= T - 1):
            raise ValueError(f"timestep label {t} is outside [0, {T - 1}]")
        lo = int(math.floor(t))
        if lo == t:
            return float(self.alphas_cumprod[lo])
        hi = lo + 1
        w = t - lo
        la = (1 - w) * math.log(float(self.alphas_cumprod[lo])) + w * math.log(float(self.alphas_cumprod[hi]))
        return math.exp(la)

    def level(self, t: float) -> Level:
        """The level a network assumes when it is fed label ``t``."""
        ab = self.alpha_bar(float(t))
        return Level(label=float(t), alpha=math.sqrt(ab), sigma=math.sqrt(1.0 - ab))

    def alpha(self, t: float) -> float:
        return self.level(t).alpha

    def sigma(self, t: float) -> float:
        return self.level(t).sigma

    def lam(self, t: float) -> float:
        return self.level(t).lam

    # ------------------------------------------------------------------ grids
    def scheduler(self, solver: str, **overrides: Any):
        """A fresh diffusers scheduler of the kind ``solver`` names, on this schedule's config.

        ``overrides`` must be config entries of that scheduler (e.g. ``timestep_spacing``)."""
        from diffusers import DDIMScheduler, DPMSolverMultistepScheduler

        from .checks import check_choice, suggest, unknown

        if solver not in SOLVERS:
            raise unknown("solver", solver, SOLVERS)
        cls = DPMSolverMultistepScheduler if solver == "dpmpp2m" else DDIMScheduler
        known = set(inspect.signature(cls.__init__).parameters) - {"self"} | set(self.config)
        for key in overrides:
            if key not in known:
                raise ValueError(f"unknown scheduler option {key!r}{suggest(key, known)} in grid_overrides; the "
                                 f"{cls.__name__} config has {sorted(k for k in known if not k.startswith('_'))}")
        if "timestep_spacing" in overrides:
            check_choice("timestep_spacing", overrides["timestep_spacing"], SPACINGS)
        cfg = {**self.config, **overrides}
        if solver != "dpmpp2m":  # DDIM and the exact-by-construction samplers share DDIM's grid
            return DDIMScheduler.from_config(cfg)
        cfg.setdefault("solver_order", 2)
        cfg.setdefault("algorithm_type", "dpmsolver++")
        return DPMSolverMultistepScheduler.from_config(cfg)

    def grid(self, steps: int, solver: str = "ddim", **overrides: Any) -> Grid:
        """The sampling grid diffusers uses for ``steps`` steps of ``solver``.

        ``overrides`` are scheduler-config entries, e.g. ``timestep_spacing="trailing"``.
        A step count the scheduler cannot lay out on this schedule (labels outside
        [0, T - 1], repeated labels, fewer labels than steps; e.g. DDIM with "leading" spacing
        and ``steps_offset=1`` at steps = T) is refused with the largest count that works.
        """
        check_steps(steps, self.num_train_timesteps)
        sched = self.scheduler(solver, **overrides)
        cfg = sched.config
        if cfg.get("clip_sample") or cfg.get("thresholding"):
            raise ValueError(
                "clip_sample/thresholding make a sampling step non-invertible; "
                "build the schedule with clip_sample=False and thresholding=False"
            )
        sched.set_timesteps(steps)
        labels = [float(t) for t in sched.timesteps.tolist()]
        problem = self._grid_problem(labels, steps)
        if problem:
            raise ValueError(self._grid_message(sched, solver, steps, problem))
        if solver != "dpmpp2m":  # "ddim" and REVERSIBLE_SOLVERS
            levels = [self.level(t) for t in labels]
            final_ab = float(sched.final_alpha_cumprod)
            levels.append(Level(label=0.0, alpha=math.sqrt(final_ab), sigma=math.sqrt(1.0 - final_ab)))
            orders = (1,) * steps
            return Grid(solver, tuple(levels), orders, cfg["timestep_spacing"])
        return self._dpm_grid(sched, labels, steps)

    def _grid_problem(self, labels: list[float], steps: int) -> str | None:
        """Why a scheduler's timesteps are not a grid of ``steps`` steps (None when they are)."""
        T = self.num_train_timesteps
        if len(labels) != steps:
            return f"the scheduler laid out {len(labels)} timesteps for {steps} steps"
        bad = [t for t in labels if not 0 <= t <= T - 1]
        if bad:
            return f"timestep label {bad[0]:g} lies outside [0, {T - 1}]"
        if any(a <= b for a, b in zip(labels, labels[1:])):
            return "the timestep labels repeat"
        return None

    def _grid_message(self, sched, solver: str, steps: int, problem: str) -> str:
        """The refusal: what went wrong and the largest step count below ``steps`` that works."""
        best = None
        for n in range(steps - 1, 0, -1):
            sched.set_timesteps(n)
            if self._grid_problem([float(t) for t in sched.timesteps.tolist()], n) is None:
                best = n
                break
        cfg = sched.config
        name = {"ddim": "DDIM", "dpmpp2m": "DPM-Solver++(2M)"}.get(solver, f"{solver.upper()} (DDIM's grid)")
        where = (f"{name} with timestep_spacing={cfg['timestep_spacing']!r} and steps_offset={cfg['steps_offset']} "
                 f"on this {self.num_train_timesteps}-step schedule")
        return (f"steps={steps} does not fit {where} ({problem}); the largest step count below {steps} that does "
                f"is {best}: use steps={best}, or another spacing via grid_overrides={{'timestep_spacing': ...}} "
                f"(one of {SPACINGS})")

    @staticmethod
    def _dpm_grid(sched, labels: list[float], steps: int) -> Grid:
        cfg = sched.config
        if cfg["algorithm_type"] != "dpmsolver++" or cfg["solver_order"] != 2:
            raise ValueError(
                "invlab's 'dpmpp2m' is DPM-Solver++ of order 2; build it with "
                "algorithm_type='dpmsolver++', solver_order=2"
            )
        if cfg["solver_type"] not in ("midpoint", "heun"):
            raise ValueError(f"unsupported solver_type {cfg['solver_type']!r}; use 'midpoint' or 'heun'")
        levels = []
        # diffusers keeps sigma in the VE form sigma_k = sigma_t / alpha_t.
        for i, ve in enumerate(sched.sigmas.double().tolist()):
            alpha = 1.0 / math.sqrt(ve * ve + 1.0)
            sigma = ve * alpha
            label = labels[i] if i < len(labels) else 0.0
            levels.append(Level(label=label, alpha=alpha, sigma=sigma))
        n = len(labels)
        orders = []
        for i in range(n):
            last_first_order = i == n - 1 and (
                cfg["euler_at_final"]
                or (cfg["lower_order_final"] and n < 15)
                or cfg["final_sigmas_type"] == "zero"
            )
            orders.append(1 if (i == 0 or last_first_order) else 2)
        return Grid("dpmpp2m", tuple(levels), tuple(orders), cfg["timestep_spacing"], cfg["solver_type"])


def check_steps(steps: Any, num_train_timesteps: int = 1000) -> int:
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)):
        raise TypeError(f"steps must be an int (got {type(steps).__name__}); pass e.g. steps=50")
    if steps <= 0:
        raise ValueError(f"steps must be a positive integer (got {steps}); pass e.g. steps=50")
    if steps > num_train_timesteps:
        raise ValueError(
            f"steps={steps} exceeds the schedule's {num_train_timesteps} train timesteps; use fewer steps"
        )
    return int(steps)
