"""Naive DDIM inversion: the DDIM step on the reversed grid, with eps taken at the known state.

    eps     = eps_theta(x_cur, label)                  (the unknown x_next replaced by x_cur)
    x0_hat  = (x_cur - sigma_cur eps) / alpha_cur
    x_next  = alpha_next x0_hat + sigma_next eps       (x_next is the noisier level)

``label="target"`` feeds the network the next (noisier) level's label: the prompt-to-prompt /
diffusers ``DDIMInverseScheduler`` convention and the default. ``label="current"`` feeds the
current level's label (diffusers ``DPMSolverMultistepInverseScheduler``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..checks import check_choice
from ..loop import Runner, Setup, progress
from ..steps import ddim_step, x0_from_eps

LABELS = ("target", "current")


@dataclass
class NaiveOptions:
    """Options of naive inversion.

    label: which level's timestep label the network is fed: "target" (default) or "current".
    """

    label: str = "target"

    def __post_init__(self):
        check_choice("label", self.label, LABELS)


def invert_naive(setup: Setup, hooks, opts: NaiveOptions, check_finite: bool = True, show_progress: bool = False,
                 *, config: dict | None = None, pivots: bool = False):
    """``config`` adds to / overrides the trajectory's config (methods built on naive inversion
    name themselves there); ``pivots=True`` keeps each step's start state (the pivot z*) in
    ``record.extras["pivot"]`` whatever the Recorder keeps (DirectInversion needs them)."""
    levels = list(reversed(setup.grid.levels))
    config = {"direction": "invert", "method": "naive", "label": opts.label, **(config or {})}
    run = Runner(setup, hooks, config, levels, check_finite)
    with run.guard(), torch.no_grad():
        x = setup.x
        for i in progress(range(setup.steps), show_progress, f"invert {config['method']}"):
            cur, nxt = levels[i], levels[i + 1]
            t_model = nxt.label if opts.label == "target" else cur.label
            st = run.begin(i, t_model)
            st["x_cur"] = x
            run.set_eps(st, setup.eps(x, t_model))
            x = st["x_cur"]
            if pivots:
                st["extras"]["pivot"] = x.detach().clone()
            x0 = st["x0_hat"] = x0_from_eps(x, st["eps"], cur)
            x = run.finish(st, ddim_step(x0, st["eps"], nxt))
    return run.trajectory(x)
