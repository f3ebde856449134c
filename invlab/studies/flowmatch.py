"""Flow-matching studies (issue 16): the time-grid audit of RF-Inversion's public implementations.

RF-Inversion's diffusers community pipeline feeds the network a *linear* time ``i / (N + 1)`` while it
moves the state by the *shifted* grid's increments taken in denoising order (smallest first); a mirrored
inverse scheduler instead evaluates at the shifted grid's own sigma and steps by its increments walked
backwards. :func:`time_grid_audit` runs both on the same image and compares each with the truth: the
inverse of the probability-flow ODE itself, solved finely (the midpoint rule, ``fine_steps`` steps).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import torch

from ..inversion import invert
from ..inversion.flow_solvers import TIME_GRIDS
from ..metrics import nmse

__all__ = ["FLOW_FAMILY", "GammaSweep", "diffusers_euler_loop", "fine_path", "order_of", "rf_inversion_gammas", "vp_path_as_flow",
           "solver_family", "straightness", "time_grid_audit"]


def time_grid_audit(model, x0: torch.Tensor, steps_list: Sequence[int], cond: Any = None, guidance: float = 1.0,
                    gamma: float = 0.0, fine_steps: int = 1000) -> list[dict[str, Any]]:
    """RF-Inversion on both time grids against the ODE's exact inverse.

    Rows: steps, time_grid, ``noise_nmse`` (NMSE of the inverted state against the fine ODE solve; with
    ``gamma = 0`` both grids solve that ODE), ``label_gap`` (largest |time fed to the network - sigma
    of the state it is fed with|: 0 on the consistent grid), ``first_delta`` / ``last_delta`` (the
    increments of the first and last inversion step), ``nfe``.
    """
    if not getattr(model.schedule, "is_flow", False):
        raise ValueError(f"the time-grid audit needs a flow-matching model (e.g. 'gmm-digits-flow'); got {model.name!r}")
    if not steps_list:
        raise ValueError("steps_list must name at least one step count, e.g. [10, 28]")
    truth = invert(model, x0, fine_steps, "euler", "rf-solver", guidance, cond).final
    rows = []
    for n in steps_list:
        for grid in TIME_GRIDS:
            before = model.nfe
            inv = invert(model, x0, n, "euler", "rf-inversion", guidance, cond, gamma=gamma, time_grid=grid)
            sig = [lv.sigma for lv in inv.levels]
            fed = [r.extras["t_model_sigma"] for r in inv.records]
            rows.append({"steps": n, "time_grid": grid, "noise_nmse": float(nmse(inv.final, truth)),
                         "label_gap": max(abs(f - s) for f, s in zip(fed, sig[:-1])),
                         "first_delta": inv.records[0].extras["delta"], "last_delta": inv.records[-1].extras["delta"],
                         "nfe": model.nfe - before})
    return rows





# ---------------------------------------------------------------------------------------------------------
# Notebook 11: the oracle loop, path straightness, the solver family at equal NFE, RF-Inversion's gamma
def diffusers_euler_loop(model, z: torch.Tensor, steps: int, guidance: float = 1.0, cond: Any = None,
                         mu: float | None = None) -> torch.Tensor:
    """Sample with a loop driven by diffusers' ``FlowMatchEulerDiscreteScheduler.step`` (the oracle), fed
    the model's raw velocity at the scheduler's own timesteps, with guidance on the velocity."""
    from diffusers import FlowMatchEulerDiscreteScheduler

    if not getattr(model.schedule, "is_flow", False):
        raise ValueError(f"diffusers_euler_loop needs a flow-matching model (e.g. 'gmm-digits-flow'); got {model.name!r}")
    sched = FlowMatchEulerDiscreteScheduler.from_config(dict(model.schedule.config))
    sched.set_timesteps(steps, mu=mu)
    c = model.check_cond(cond, z.shape[0], z)
    null = model.null_cond(z.shape[0], z) if c is not None else None
    x = z.clone()
    with torch.no_grad():
        for t in sched.timesteps:
            v = model.forward_raw(x, float(t), c)
            if c is not None and guidance != 1.0:
                v_u = model.forward_raw(x, float(t), null)
                v = v_u + guidance * (v - v_u)
            x = sched.step(v, t, x).prev_sample
    return x


def fine_path(model, z: torch.Tensor, steps: int = 400, guidance: float = 1.0, cond: Any = None) -> torch.Tensor:
    """The sampler's path from ``z`` with many small steps ("euler" on a flow model, "ddim" on a VP one),
    every state kept: ``(steps + 1, B, ...)``, noisiest first."""
    from ..sampling import sample
    from ..trace import Recorder

    solver = "euler" if getattr(model.schedule, "is_flow", False) else "ddim"
    return sample(model, z, steps, solver, guidance, cond, hooks=[Recorder(keys=("x_next",))]).latents()


def straightness(path: torch.Tensor) -> torch.Tensor:
    """Length of each point's polyline over the straight distance between its ends, ``(B,)``: 1 for a
    straight path, larger the more it bends. ``path`` is ``(K, B, ...)``."""
    if path.dim() < 3 or path.shape[0] < 2:
        raise ValueError(f"path must be (K >= 2, B, ...) states along the path; got shape {tuple(path.shape)}")
    p = path.flatten(2)
    length = (p[1:] - p[:-1]).norm(dim=-1).sum(0)
    chord = (p[-1] - p[0]).norm(dim=-1)
    return length / chord


#: display name -> invert() keywords of the flow solver family (the order notebook 11 draws them in)
FLOW_FAMILY: dict[str, dict[str, Any]] = {
    "naive": {"method": "naive"},               # explicit Euler
    "rf-solver": {"method": "rf-solver"},       # explicit midpoint
    "fireflow": {"method": "fireflow"},         # midpoint, reusing the last midpoint velocity
    "uni-inv": {"method": "uni-inv"},           # one backward-Euler correction
    "exact": {"method": "exact"},               # backward Euler, solved
}


def solver_family(model, z: torch.Tensor, steps_list: Sequence[int], cond: Any = None, guidance: float = 1.0,
                  methods: dict[str, dict[str, Any]] | None = None, fine_steps: int = 1000) -> list[dict[str, Any]]:
    """Every flow solver at several step counts, against two truths.

    ``target="sampler"``: the image is the Euler sampler's output from ``z`` at the *same* N steps, the
    truth is ``z`` (inverting the sampler you used). ``target="ode"``: the image is a fine Euler sample
    (``fine_steps``: the probability-flow ODE's own image, as close as a "real" image gets), the truth
    its inverse under the ODE, solved with the midpoint rule at ``fine_steps`` steps. Rows: target,
    method, steps, nfe, noise_nmse.
    """
    from ..inversion import invert
    from ..sampling import sample

    if not getattr(model.schedule, "is_flow", False):
        raise ValueError(f"solver_family needs a flow-matching model (e.g. 'gmm-digits-flow'); got {model.name!r}")
    if not steps_list:
        raise ValueError("steps_list must name at least one step count, e.g. [5, 10, 20]")
    methods = FLOW_FAMILY if methods is None else methods
    ode_image = sample(model, z, fine_steps, "euler", guidance, cond).final
    ode_noise = invert(model, ode_image, fine_steps, "euler", "rf-solver", guidance, cond).final
    rows = []
    for n in steps_list:
        euler_image = sample(model, z, n, "euler", guidance, cond).final
        for target, image, truth in (("sampler", euler_image, z), ("ode", ode_image, ode_noise)):
            for name, kw in methods.items():
                inv = invert(model, image, n, "euler", guidance=guidance, cond=cond, **kw)
                rows.append({"target": target, "method": name, "steps": n, "nfe": inv.nfe,
                             "noise_nmse": float(nmse(inv.final, truth))})
    return rows


def order_of(rows: Sequence[dict[str, Any]], method: str, target: str = "ode") -> float:
    """The fitted slope of log noise NMSE against log steps for one method (NMSE ~ N^slope: -2 for a
    first-order solver, -4 for a second-order one)."""
    import math

    pts = sorted((r["steps"], r["noise_nmse"]) for r in rows if r["method"] == method and r["target"] == target)
    pts = [(math.log(n), math.log(e)) for n, e in pts if e > 0]
    if len(pts) < 2:
        raise ValueError(f"need at least two step counts with a positive error for {method!r} ({target})")
    mx = sum(p[0] for p in pts) / len(pts)
    my = sum(p[1] for p in pts) / len(pts)
    return sum((x - mx) * (y - my) for x, y in pts) / sum((x - mx) ** 2 for x, _ in pts)


@dataclass
class GammaSweep:
    """RF-Inversion at several gamma on the same images: the inverted noise, its distance to the drawn
    target y1, and the image sampled back from it (rows hold the numbers, tensors the pictures)."""

    images: torch.Tensor
    y1: torch.Tensor
    gammas: list[float]
    rows: list[dict[str, Any]]
    noises: dict[float, torch.Tensor] = field(default_factory=dict)
    reconstructions: dict[float, torch.Tensor] = field(default_factory=dict)


def rf_inversion_gammas(model, images: torch.Tensor, steps: int, gammas: Sequence[float], cond: Any = None,
                        guidance: float = 1.0, seed: int = 2410, resample_cond: Any = "same",
                        invert_guidance: float | None = None) -> GammaSweep:
    """RF-Inversion's gamma trade-off. For each gamma: invert ``images`` (condition ``cond``, guidance
    ``invert_guidance``, default ``guidance``), measure ``y1_nmse`` (how close the inverted noise is to
    the drawn target y1, 0 at gamma = 1), ``noise_std`` and ``image_nmse`` (the Euler sample from the
    inverted noise, under ``resample_cond`` at ``guidance``, against the source: faithfulness).
    RF-Inversion's reference inverts without a prompt: ``cond=None, invert_guidance=1.0``."""
    from ..inversion import invert
    from ..sampling import sample

    if not gammas:
        raise ValueError("gammas must name at least one value in [0, 1], e.g. [0, 0.5, 1]")
    back_cond = cond if isinstance(resample_cond, str) and resample_cond == "same" else resample_cond
    gen = torch.Generator().manual_seed(seed)
    y1 = torch.randn(images.shape, generator=gen, dtype=torch.float64).to(images)
    sweep = GammaSweep(images=images, y1=y1, gammas=[float(g) for g in gammas], rows=[])
    for g in sweep.gammas:
        inv = invert(model, images, steps, "euler", "rf-inversion", guidance if invert_guidance is None else invert_guidance,
                     cond, gamma=g, seed=seed)
        back = sample(model, inv.final, steps, "euler", guidance, back_cond).final
        sweep.noises[g], sweep.reconstructions[g] = inv.final, back
        sweep.rows.append({"gamma": g, "y1_nmse": float(nmse(inv.final, y1)), "noise_std": float(inv.final.std()),
                           "image_nmse": float(nmse(back, images)), "nfe": inv.nfe})
    return sweep


def vp_path_as_flow(traj) -> tuple[list[float], torch.Tensor]:
    """A VP sampling trajectory (states recorded) in flow coordinates: the flow time
    ``s = sigma / (alpha + sigma)`` of each level and the states divided by ``alpha + sigma``. A VP
    model and the flow model of the same data share one probability-flow ODE up to this change of
    variables, so the result lies on the flow model's path (notebook 11, section 2)."""
    levels = traj.levels
    if any(lv.alpha + lv.sigma <= 0 for lv in levels):
        raise ValueError("every level needs alpha + sigma > 0")
    lat = traj.latents()
    scale = torch.tensor([lv.alpha + lv.sigma for lv in levels], dtype=lat.dtype).view(-1, *([1] * (lat.dim() - 1)))
    return [lv.sigma / (lv.alpha + lv.sigma) for lv in levels], lat / scale
