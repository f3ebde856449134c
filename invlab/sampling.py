"""``invlab.sample``: DDIM and DPM-Solver++(2M) exactly as diffusers runs them."""

from __future__ import annotations

from typing import Any

import torch

from .loop import Runner, Setup, progress
from .models.base import Denoiser
from .steps import ddim_step, dpmpp2m_high_order, x0_hat
from .trace import Trajectory


def sample(model: Denoiser, z_T: torch.Tensor, steps: int = 50, solver: str = "ddim", guidance: float = 1.0,
           cond: Any = None, hooks: Any = None, *, uncond: Any = None, uncond_steps: Any = None,
           grid_overrides: dict | None = None, solver_options: Any = None, companion: torch.Tensor | None = None,
           check_finite: bool = True, show_progress: bool = False) -> Trajectory:
    """Sample from noise ``z_T`` (shape ``(B, *model.sample_shape)``) down the solver's grid.

    solver: "ddim" (eta = 0) or "dpmpp2m" (DPM-Solver++(2M), diffusers' order pattern:
    first step first order; last step first order when ``lower_order_final`` applies).
    The timesteps are those of the diffusers scheduler built from ``model.schedule.config``
    (``grid_overrides`` changes its config, e.g. ``{"timestep_spacing": "trailing"}``).
    Returns a :class:`Trajectory`; ``.final`` is the sample. ``uncond`` (a condition like
    ``cond``) replaces the model's null input as CFG's unconditional branch (a negative prompt
    or class); ``config["uncond"]`` is True when one was given. ``uncond_steps`` gives one
    unconditional input per step instead (a list of ``steps`` conditions or embeddings, e.g.
    null-text inversion's optimised null embeddings; ``invlab.reconstruct`` passes them).

    ``z_T`` is noise (not range-checked); any floating dtype, strides or real device works, and
    an input that requires grad is fine: the run is under ``torch.no_grad()``, so the
    trajectory and ``.final`` are detached.

    Exact-by-construction solvers "edict", "bdia", "belm" (``invlab.reversible``) walk DDIM's
    grid; ``solver_options`` (a dict or ``invlab.reversible.ReversibleOptions``: EDICT's ``p``
    and ``leapfrog``, BDIA's ``gamma``, BELM's ``order``, ``preset="reference"``) sets them, and
    ``companion`` (an inversion's ``.companion``) is the second latent they start from;
    ``.companion`` of the result is the sample's own second latent.
    """
    from .reversible import REVERSIBLE, as_options, run_reversible

    if solver in REVERSIBLE:
        opts = as_options(solver_options)
        setup = Setup(model, z_T, steps, solver, guidance, cond, "z_T", grid_overrides, uncond=uncond,
                      uncond_steps=uncond_steps)
        extra = {"uncond": True} if uncond is not None or uncond_steps is not None else None
        return run_reversible(setup, hooks, opts, "sample", companion, check_finite, show_progress, extra)
    if solver_options is not None or companion is not None:
        raise ValueError(f"solver_options and companion belong to the exact-by-construction solvers {REVERSIBLE}, "
                         f"not solver={solver!r}")
    setup = Setup(model, z_T, steps, solver, guidance, cond, "z_T", grid_overrides, uncond=uncond,
                  uncond_steps=uncond_steps)
    return run_sampler(setup, hooks, check_finite=check_finite, show_progress=show_progress)


def run_sampler(setup: Setup, hooks: Any = None, *, check_finite: bool = True, show_progress: bool = False) -> Trajectory:
    """The DDIM / DPM-Solver++(2M) loop of :func:`sample` on a validated :class:`Setup`: it walks
    ``setup.grid`` from its first level (a grid may start at an intermediate level, e.g. the last
    k steps of an N-step grid in ``invlab.edit``; its ``orders`` say where the history restarts)."""
    solver, grid = setup.solver, setup.grid
    config = {"direction": "sample", "method": solver, "label": "own"}
    if setup.uncond is not None or setup.uncond_steps is not None:
        config["uncond"] = True
    run = Runner(setup, hooks, config, grid.levels, check_finite)
    with run.guard(), torch.no_grad():
        x = setup.x
        x0_prev = None  # the data prediction of the previous step (DPM-Solver++ history)
        for i in progress(range(setup.steps), show_progress, f"sample {solver}"):
            r, s, t = grid.levels[max(i - 1, 0)], grid.levels[i], grid.levels[i + 1]
            order = grid.orders[i]
            st = run.begin(i, s.label, order)
            st["x_cur"] = x
            run.set_eps(st, setup.eps(x, s.label, i))
            x = st["x_cur"]
            x0 = st["x0_hat"] = x0_hat(x, st["eps"], s, st["x0_model"])
            x_next = ddim_step(x0, st["eps"], t)
            if order == 2:
                x_next = x_next + dpmpp2m_high_order(x0, x0_prev, r, s, t, grid.solver_type)
            x0_prev = x0
            x = run.finish(st, x_next)
    return run.trajectory(x)


def noise(model: Denoiser, batch: int = 1, seed: int | None = 0, dtype: torch.dtype = torch.float64,
          device: str | torch.device = "cpu", generator: torch.Generator | None = None) -> torch.Tensor:
    """Standard normal z_T of shape ``(batch, *model.sample_shape)`` (drawn on the CPU, then moved).

    ``batch`` is an int >= 1; ``seed`` an int (or None: the global RNG); ``generator`` a CPU
    ``torch.Generator`` that overrides ``seed``. The draw is in float64, then cast to ``dtype``,
    so a seed gives the same noise on every device and dtype (up to rounding).
    """
    from .checks import check_batch, check_device, check_dtype, check_int

    if not isinstance(model, Denoiser):
        raise TypeError(f"model must be an invlab Denoiser (from invlab.load_model); got {type(model).__name__}")
    batch = check_batch(batch)
    dtype, device = check_dtype(dtype), check_device(device)
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None (got {type(generator).__name__})")
    if generator is None and seed is not None:
        generator = torch.Generator().manual_seed(check_int("seed", seed, example=0))
    if generator is not None and generator.device.type != "cpu":
        raise ValueError(f"generator must be a CPU generator (the noise is drawn on the CPU, then moved); "
                         f"got one on {generator.device}")
    return torch.randn((batch, *model.sample_shape), generator=generator, dtype=torch.float64).to(device=device, dtype=dtype)
