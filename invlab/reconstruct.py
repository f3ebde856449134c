"""``invlab.reconstruct``: regenerate x0_hat from an inversion, as its method prescribes.

Most methods return only a noise: their reconstruction is ``sample(model, inversion.final)``
on the inversion's own grid, guidance and condition. Methods that carry side information say
how to use it here (``RECONSTRUCTIONS``):

* ``negative-prompt``: the source condition is CFG's unconditional input at every step;
* ``direct``: each step's output is moved onto the stored pivot (DirectInversion's offsets);
* ``null-text``: step i uses the null embedding optimised for it as CFG's unconditional input;
* ``algebraic`` (EDICT, BDIA, BELM): sampling restarts from the pair ``.final``, ``.companion``.

A changed ``cond`` is how an edit is made (where the method allows one).
"""

from __future__ import annotations

from typing import Any, Callable

import torch

from .models.base import Denoiser
from .sampling import sample
from .trace import FunctionIntervention, Trajectory

#: methods whose result is just a noise: reconstruction is sampling from ``.final``
NOISE_ONLY = ("naive", "easyinv", "exact", "fixed-point", "renoise", "newton", "rf-solver", "fireflow", "uni-inv", "rf-inversion")


def _plain(model, inversion, steps, solver, guidance, cond, hooks, **kw) -> Trajectory:
    return sample(model, inversion.final, steps, solver, guidance, cond, hooks, **kw)


def _negative_prompt(model, inversion, steps, solver, guidance, cond, hooks, **kw) -> Trajectory:
    """eps = eps_u' + w (eps_c - eps_u') with eps_u' = eps(x, c_src): the CFG of ``Denoiser.eps``
    with the source condition as its unconditional input (no extra NFE)."""
    return sample(model, inversion.final, steps, solver, guidance, cond, hooks, uncond=inversion.cond, **kw)


def _null_text(model, inversion, steps, solver, guidance, cond, hooks, **kw) -> Trajectory:
    """eps = eps_u(phi_i) + w (eps_c - eps_u(phi_i)): sampling step i uses the null embedding
    optimised for it (record ``steps - 1 - i``'s extras["null_embedding"])."""
    phis = [r.extras.get("null_embedding") for r in inversion.records]
    if any(p is None for p in phis):
        raise ValueError("this 'null-text' inversion has no optimised embeddings in record.extras['null_embedding'] "
                         "(was it interrupted?); run invlab.invert(..., method='null-text') again")
    return sample(model, inversion.final, steps, solver, guidance, cond, hooks, uncond_steps=phis[::-1], **kw)


def _direct(model, inversion, steps, solver, guidance, cond, hooks, **kw) -> Trajectory:
    """z_bar_t = z_rec + (z*_t - z_rec): sampling step j lands on the pivot that inversion step
    ``steps - 1 - j`` started from (record.extras["pivot"])."""
    if cond is not inversion.cond:
        new = model.check_cond(cond, inversion.final.shape[0], inversion.final)
        same = (new is None and inversion.cond is None) or (
            isinstance(new, torch.Tensor) and isinstance(inversion.cond, torch.Tensor)
            and new.shape == inversion.cond.shape and torch.equal(new.to(inversion.cond.device), inversion.cond))
        if not same:
            raise ValueError("a 'direct' inversion reconstructs its source branch only: its offsets move that branch "
                             "onto the pivots, so with another cond they would undo the edit (the reference adds "
                             "them to the source branch of a dual-branch editor). Reconstruct with cond=None")
    pivots = [r.extras.get("pivot") for r in inversion.records]
    if any(p is None for p in pivots):
        raise ValueError("this 'direct' inversion has no pivots in record.extras['pivot']; run "
                         "invlab.invert(..., method='direct') again")
    n = len(pivots)

    def snap(index: int, tensors: dict) -> dict:
        x_rec = tensors["x_next"]
        offset = pivots[n - 1 - index].to(device=x_rec.device, dtype=x_rec.dtype) - x_rec
        return {"x_next": x_rec + offset, "extras": {"offset": offset}}

    hook_list = [] if hooks is None else (list(hooks) if isinstance(hooks, (list, tuple)) else [hooks])
    return sample(model, inversion.final, steps, solver, guidance, cond,
                  hook_list + [FunctionIntervention(snap, {"x_next"}, stage="step")], **kw)


def _algebraic(model, inversion, steps, solver, guidance, cond, hooks, **kw) -> Trajectory:
    """The exact-by-construction solvers: sample from the inversion's pair (``.final`` and
    ``.companion``) with the options it was made with (``config["solver_options"]``)."""
    if inversion.companion is None:
        raise ValueError("this 'algebraic' inversion has no .companion (the second latent); run "
                         f"invlab.invert(..., solver={solver!r}) again")
    return sample(model, inversion.final, steps, solver, guidance, cond, hooks,
                  solver_options=dict(inversion.config["solver_options"]), companion=inversion.companion, **kw)


#: method name -> fn(model, inversion, steps, solver, guidance, cond, hooks, **sample_keywords)
RECONSTRUCTIONS: dict[str, Callable[..., Trajectory]] = {
    **{m: _plain for m in NOISE_ONLY}, "negative-prompt": _negative_prompt, "direct": _direct,
    "null-text": _null_text, "algebraic": _algebraic,
}


def register_reconstruction(method: str, fn: Callable[..., Trajectory]) -> None:
    RECONSTRUCTIONS[method] = fn


def reconstruct(model: Denoiser, inversion: Trajectory, steps: int | None = None, guidance: float | None = None,
                cond: Any = None, solver: str | None = None, hooks: Any = None, *,
                grid_overrides: dict | None = None, check_finite: bool = True,
                show_progress: bool = False) -> Trajectory:
    """Regenerate x0_hat from the result of ``invlab.invert``, as its method prescribes.

    ``steps`` and ``solver`` default to the inversion's and must equal them (``.final`` is the
    start of that grid); ``guidance`` defaults to the call's guidance of the inversion
    (``config["reconstruct_guidance"]`` where the method inverted at another one, else
    ``config["guidance"]``); ``cond`` defaults to the inversion's condition (``inversion.cond``):
    another one makes an edit. Returns the sampling :class:`Trajectory`; ``.final`` is x0_hat.
    Raises ``ValueError`` for a trajectory from ``invlab.sample``, an interrupted inversion, another
    model, another grid, or a method ``reconstruct`` does not know.
    """
    if not isinstance(inversion, Trajectory):
        raise TypeError(f"inversion must be the Trajectory returned by invlab.invert; got {type(inversion).__name__}")
    if not isinstance(model, Denoiser):
        raise TypeError(f"model must be an invlab Denoiser (from invlab.load_model); got {type(model).__name__}")
    cfg = inversion.config
    if cfg.get("direction") != "invert":
        raise ValueError("reconstruct takes the result of invlab.invert, but this Trajectory is a run of "
                         f"invlab.sample (direction {cfg.get('direction')!r}); its .final already is a sample")
    if cfg.get("interrupted"):
        raise ValueError(f"this inversion was interrupted after {len(inversion.records)} of {cfg['steps']} steps "
                         "(config['interrupted']); its .final is not a noise on the grid: run the inversion again")
    if cfg["model"] != model.name:
        raise ValueError(f"this inversion was made with model {cfg['model']!r}, not {model.name!r}: reconstruct "
                         "with the model that inverted it")
    steps = cfg["steps"] if steps is None else steps
    solver = cfg["solver"] if solver is None else solver
    if steps != cfg["steps"] or solver != cfg["solver"]:
        raise ValueError(f"the inversion ran on a {cfg['steps']}-step {cfg['solver']!r} grid, but reconstruct was "
                         f"asked for steps={steps}, solver={solver!r}: its .final starts that grid only; leave steps and "
                         "solver unset (or invert again on the grid you want)")
    if grid_overrides is None and cfg["spacing"] != model.schedule.config.get("timestep_spacing", cfg["spacing"]):
        grid_overrides = {"timestep_spacing": cfg["spacing"]}
    grid = model.schedule.grid(steps, solver, **(grid_overrides or {}))
    labels = list(grid.labels)
    if labels != list(cfg["timesteps"]):
        raise ValueError(f"the inversion's timesteps {_short(cfg['timesteps'])} differ from the sampler's "
                         f"{_short(labels)}; pass the grid_overrides the inversion used")
    ends = [(lv.alpha, lv.sigma) for lv in (inversion.levels[0], inversion.levels[-1])]
    want = [(lv.alpha, lv.sigma) for lv in (grid.levels[-1], grid.levels[0])]
    if any(abs(a - b) > 1e-9 * max(1.0, abs(b)) for e, w in zip(ends, want) for a, b in zip(e, w)):
        raise ValueError(f"the inversion's noise levels differ from the sampler's at the same timesteps (clean end "
                         f"sigma {ends[0][1]:.3g} vs {want[0][1]:.3g}, noisy end {ends[1][1]:.3g} vs {want[1][1]:.3g}): "
                         "it used other scheduler settings (e.g. final_sigmas_type); pass the grid_overrides the "
                         "inversion used")
    method = cfg.get("method")
    if method not in RECONSTRUCTIONS:
        from .checks import suggest

        raise ValueError(f"reconstruct does not know how method {method!r} regenerates an image"
                         f"{suggest(method, RECONSTRUCTIONS)}; known: {sorted(RECONSTRUCTIONS)} "
                         "(invlab.reconstruct.register_reconstruction adds one)")
    if guidance is None:
        guidance = cfg.get("reconstruct_guidance", cfg["guidance"])
    if cond is None:
        cond = inversion.cond
    return RECONSTRUCTIONS[method](model, inversion, steps, solver, guidance, cond, hooks,
                                  grid_overrides=grid_overrides, check_finite=check_finite,
                                  show_progress=show_progress)


def _short(labels) -> str:
    labels = list(labels)
    return str(labels) if len(labels) <= 6 else f"[{labels[0]}, {labels[1]}, ..., {labels[-1]}] ({len(labels)})"


class _CallableModule(__import__("types").ModuleType):
    """``invlab.reconstruct`` is this module once anything imports it by name (``from
    invlab.reconstruct import RECONSTRUCTIONS``: Python then binds the package attribute to the
    module, not to the function); calling it calls :func:`reconstruct` either way."""

    def __call__(self, *args: Any, **kwargs: Any) -> Trajectory:
        return reconstruct(*args, **kwargs)


__import__("sys").modules[__name__].__class__ = _CallableModule
