"""The bug gallery (notebook 14): the classic mistakes of hand-written inversion loops, each
reproduced on a model whose ground truth is known, with its fingerprint on the error curves.

A user's inversion loop usually looks like :func:`hand_inversion`: diffusers-style, on the
scheduler's ``timesteps`` and ``alphas_cumprod``. Each :class:`Bug` changes one line of it (or of
the code around it) and :func:`run_bug` measures, against the sampling trajectory the image came
from:

* ``accumulated``: NMSE of the loop's state to the true latent after each step (what drifts);
* ``local``: NMSE of one step of the same loop started from the *true* latent (what each step
  does on its own; ``accumulated`` minus this is what earlier steps carried in);
* ``residual``: a ground-truth-free signal you can compute on your own run: re-run the correct
  sampling step from the inverted state and compare with the state inversion came from
  (RMS per element). An exact inverse gives 0; a correct naive inversion gives a small, smooth
  curve; a bug shows as a spike or a level shift;
* ``noise_nmse``: the final z_T estimate against the true noise.

The analytic ``gmm-digits`` model (exact eps) makes every error the loop's, not a network's; the
VAE bugs need the latent model ``digits-latent``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from ..metrics import nmse
from ..schedules import Level

__all__ = ["BUGS", "Bug", "BugRun", "hand_inversion", "run_bug", "run_gallery"]


@dataclass(frozen=True)
class Bug:
    """One classic mistake: the buggy line, its fix, its fingerprint and how to spot it."""

    name: str
    title: str
    code: str           # the buggy line, as it appears in a hand-written loop
    fix: str            # the correct line
    fingerprint: str    # what the error curves show
    spot: str           # how to find it in your own run (no ground truth needed)
    needs: str = "pixel"          # "pixel" (gmm-digits) or "latent" (digits-latent)
    options: dict = field(default_factory=dict)


BUGS: dict[str, Bug] = {b.name: b for b in [
    Bug("none", "the correct loop", "x = a_next.sqrt() * x0_hat + (1 - a_next).sqrt() * eps",
        "(reference)", "small local errors, largest at the clean end, accumulating smoothly",
        "the forward residual is small and smooth; reconstruction is close"),
    Bug("unguarded-index", "t - 1000//N without the guard",
        "a_cur = alphas_cumprod[t - 1000 // N]",
        "a_cur = alphas_cumprod[t - 1000 // N] if t - 1000 // N >= 0 else final_alpha_cumprod",
        "a spike: the first step's local error is ~1e10 times the correct one's (the clean image is treated "
        "as if it sat at the noisiest level: a negative index wraps around in PyTorch); every later step carries it",
        "a single huge spike in the forward residual at the first step; print the (alpha, t) pairs your loop uses"),
    Bug("current-label", "current instead of target time label", "eps = unet(x, t_cur)", "eps = unet(x, t_next)",
        "the local curve changes shape (worse at the first step, better later) while the final error barely moves",
        "invert with both labels and compare reconstructions; record the label your loop feeds "
        "(invlab records t_model per step)"),
    Bug("skip-first", "skipped first step", "for t in timesteps_ascending[1:]:", "for t in timesteps_ascending:",
        "the local curve is the correct one, the accumulated one is not: the state 'after' the first step is the "
        "clean image itself, an error every later step carries",
        "your trajectory has N - 1 records and its first level is not the clean one"),
    Bug("skip-last", "skipped last step", "for t in timesteps_ascending[:-1]:", "for t in timesteps_ascending:",
        "invisible on the curves (every computed step is correct); the loop stops one level short, so its 'noise' "
        "is the second-noisiest latent",
        "the final level's label (and alpha) is not the sampler's first one; the recovered noise is too smooth"),
    Bug("guidance-mismatch", "inverted at another guidance than sampled (w = 3 vs 1)",
        "eps = eps_u + 3.0 * (eps_c - eps_u)  # the editing guidance; the image was sampled at w = 1",
        "eps = eps_u + w_sample * (eps_c - eps_u)",
        "each step inverts a different ODE; on a model whose classes separate early (the analytic mixture) only "
        "the noisy end's local errors move",
        "the reconstruction with the sampler's settings is poor even at many steps; check that guidance scale "
        "and prompt are passed identically to both loops", options={"guidance": "other"}),
    Bug("prompt-mismatch", "inverted with another prompt (class)", "cond = encode('a photo of a dog')  # sampled "
        "with 'cat'", "cond = the sampling prompt", "wrong at every step: local errors tens of times the correct ones, and a final error many times larger",
        "as above; diff the prompt embeddings of the two loops", options={"cond_shift": 1}),
    Bug("float16", "inverted in float16", "x = x.half()", "x = x.float()",
        "a floor near half precision's round-off: the first steps (where the correct errors are tiny) rise, the "
        "rest is unchanged",
        "invert twice with different seeds or batch orders: float16 runs disagree at the 1e-3 level",
        options={"dtype": torch.float16}),
    Bug("v-wrong-level", "v-prediction converted with the wrong level's alpha, sigma",
        "eps = a_cur.sqrt() * v + (1 - a_cur).sqrt() * x  # v was evaluated at t_next",
        "eps = a_next.sqrt() * v + (1 - a_next).sqrt() * x",
        "small: the local curve changes shape (worse at the first step, better later); it can even lower naive "
        "inversion's error, so it is not found by looking for bad numbers",
        "convert v to eps with the (alpha, sigma) of the label the network saw; check with one step from a "
        "known noisy latent", options={"v_level": "cur"}),
    Bug("dpm-as-ddim", "DPM-Solver++ sample inverted with DDIM's scheduler",
        "inverse = DDIMInverseScheduler.from_config(pipe.scheduler.config)  # pipe samples with DPM-Solver++",
        "invert with the sampler's own levels and update (invlab.invert(..., solver='dpmpp2m'))",
        "wrong from the first step (the inverse walks DDIM's noise levels, not the ones the sampler visited), "
        "then a final error somewhat above the correct inverse's",
        "print both schedulers' timesteps (or sigmas): they differ", options={"sampler": "dpmpp2m", "levels": "ddim"}),
    Bug("final-sigmas", "final_sigmas_type mismatch", "DPMSolverMultistepScheduler(final_sigmas_type='sigma_min')  "
        "# to invert a 'zero' sample", "the same scheduler config for both loops",
        "small: the first step starts from another clean level; the curve runs just above the correct inverse's",
        "compare the last sigma of the sampler's grid with the first of the inversion's",
        options={"sampler": "dpmpp2m", "grid": {"final_sigmas_type": "sigma_min"}}),
    Bug("vae-sample", "VAE posterior sample instead of its mean", "z = vae.encode(img).latent_dist.sample()",
        "z = vae.encode(img).latent_dist.mean", "an error before the first step (the starting latent is noisier than "
        "the encoder's mean) that every step carries", "encode twice: two different latents mean sample()",
        needs="latent", options={"encode": "sample"}),
    Bug("vae-scale", "missing VAE scaling factor", "z = vae.encode(img).latent_dist.mean",
        "z = vae.encode(img).latent_dist.mean * vae.config.scaling_factor",
        "wrong before the first step by the factor (NMSE near 1) and carried to the end; the local curve is correct",
        "the encoded latent's std should be near 1 (print it): scaled wrong, it is off by the factor",
        needs="latent", options={"encode": "unscaled"}),
]}


@dataclass
class BugRun:
    """What :func:`run_bug` measured (per step, in inversion order: clean -> noisy)."""

    bug: Bug
    accumulated: torch.Tensor
    local: torch.Tensor
    residual: torch.Tensor
    noise_nmse: float
    start_nmse: float
    labels: list[float]
    extras: dict[str, Any] = field(default_factory=dict)


def _levels(model, steps: int, solver: str, grid: dict | None = None) -> list[Level]:
    return list(model.schedule.grid(steps, solver, **(grid or {})).levels)[::-1]  # clean -> noisy


def _cfg_eps(model, x, label, cond, guidance):
    return model.eps(x, float(label), cond, guidance).eps


def hand_inversion(model, x0: torch.Tensor, steps: int, guidance: float, cond: Any, bug: str = "none",
                   solver: str = "ddim", start: torch.Tensor | None = None) -> tuple[list[torch.Tensor], Callable]:
    """A diffusers-style naive DDIM inversion loop with one bug switched on.

    Returns ``(states, step)``: the states after 0..N steps (the buggy ``skip-*`` loops repeat or
    stop early so that entry k is still the state meant for grid level k), and ``step(k, x)``, the
    loop's k-th step as a function (for local errors). ``start`` replaces ``x0`` as the loop's
    starting latent (the VAE bugs). ``bug="none"`` equals ``invlab.invert(..., method="naive")``.
    """
    if bug not in BUGS:
        raise ValueError(f"unknown bug {bug!r}; choose from {list(BUGS)}")
    o = BUGS[bug].options
    sched = model.schedule.scheduler(solver)
    ac = sched.alphas_cumprod.to(torch.float64)
    lv = _levels(model, steps, o.get("levels", solver), o.get("grid"))
    dtype = o.get("dtype", x0.dtype)
    c = model.check_cond(cond, x0.shape[0], x0)
    w = (3.0 if guidance == 1.0 else 1.0) if o.get("guidance") == "other" else guidance
    n_train = model.schedule.num_train_timesteps
    tmp_levels = []
    for k in range(steps):
        cur, nxt = lv[k], lv[k + 1]
        if bug == "unguarded-index" and k == 0:
            # t_cur = t_next - T // N is negative for the first step; alphas_cumprod[negative] wraps around
            t_cur = int(round(nxt.label)) - n_train // steps
            a = float(ac[t_cur])
            cur = Level(cur.label, a ** 0.5, (1 - a) ** 0.5)
        tmp_levels.append((cur, nxt))

    def step(k: int, x: torch.Tensor) -> torch.Tensor:
        cur, nxt = tmp_levels[k]
        xd = x.to(dtype)
        label = cur.label if bug == "current-label" else nxt.label
        eps = model.eps(xd, float(label), c, w).eps.to(dtype)
        if bug == "v-wrong-level":
            seen = nxt                                            # the level the network was evaluated at
            x0h = (xd - seen.sigma * eps) / seen.alpha
            v = seen.alpha * eps - seen.sigma * x0h               # what a v-prediction network returns there
            eps = cur.alpha * v + cur.sigma * xd                  # converted with the other level's alpha, sigma
        x0_hat = (xd - cur.sigma * eps) / cur.alpha
        return (nxt.alpha * x0_hat + nxt.sigma * eps).to(dtype)

    x = (x0 if start is None else start).to(dtype)
    states = [x]
    with torch.no_grad():
        for k in range(steps):
            if bug == "skip-first" and k == 0:
                states.append(x)                                  # the first step never happens
                continue
            if bug == "skip-last" and k == steps - 1:
                states.append(x)                                  # stops one level short
                continue
            x = step(k, x)
            states.append(x)
    return states, step


def _truth(model, z_T, steps, guidance, cond, solver):
    from ..sampling import sample
    from ..trace import Recorder

    ref = sample(model, z_T, steps, solver, guidance, cond, hooks=[Recorder(keys=("x_next",))])
    return ref, ref.latents().flip(0)                          # clean -> noisy


def _residual(model, states, steps, guidance, cond, solver="ddim"):
    """RMS of DDIM_{t->s}(x_hat_t) - x_hat_s per step: the correct sampling step re-run from the inverted state."""
    from ..steps import ddim_step, x0_from_eps

    lv = _levels(model, steps, solver)
    c = model.check_cond(cond, states[0].shape[0], states[0])
    out = []
    with torch.no_grad():
        for k in range(steps):
            s, t = lv[k + 1], lv[k]                                # sampling: noisier s -> cleaner t
            xs = states[k + 1].to(states[0].dtype if states[0].dtype != torch.float16 else torch.float32)
            eps = model.eps(xs, float(s.label), c, guidance).eps
            back = ddim_step(x0_from_eps(xs, eps, s), eps, t)
            out.append((back - states[k].to(back.dtype)).pow(2).mean().sqrt())
    return torch.stack(out).double()


def run_bug(model, z_T: torch.Tensor, steps: int, guidance: float, cond: Any, bug: str = "none") -> BugRun:
    """Sample from ``z_T`` (DDIM, or DPM-Solver++(2M) for the DPM bugs), then invert the sample
    with the buggy loop; every curve is measured against the sampling trajectory."""
    b = BUGS[bug] if bug in BUGS else None
    if b is None:
        raise ValueError(f"unknown bug {bug!r}; choose from {list(BUGS)}")
    if b.needs == "latent" and not getattr(model, "is_latent", False):
        raise ValueError(f"bug {bug!r} is about the VAE: run it on a latent model such as 'digits-latent'")
    solver = b.options.get("sampler", "ddim")
    ref, truth = _truth(model, z_T, steps, guidance, cond, solver)
    start = None
    if b.needs == "latent" or bug == "none" and getattr(model, "is_latent", False):
        image = model.decode(truth[0].float())
        mode = b.options.get("encode", "mean")
        if mode == "sample":
            start = model.encode(image, sample=True, generator=torch.Generator().manual_seed(0))
        elif mode == "unscaled":
            start = model.encode(image) / model.scaling_factor
        else:
            start = model.encode(image)
        start = start.to(truth.dtype)
    inv_cond = cond
    if b.options.get("cond_shift") and isinstance(cond, torch.Tensor):
        inv_cond = (cond + b.options["cond_shift"]) % int(model.num_classes)
    extras: dict[str, Any] = {}
    if solver == "dpmpp2m":                     # the correct inverse of this sampler: invlab's naive DPM-Solver++ inversion
        extras["reference_accumulated"] = _invlab_states_nmse(model, truth, steps, guidance, cond, None)
    if "grid" in b.options:                     # the bug is in the scheduler config: invlab's inversion on that grid
        st = _invlab_states(model, truth[0], steps, solver, guidance, inv_cond, b.options["grid"])
        step = None
    else:
        states, step = hand_inversion(model, truth[0], steps, guidance, inv_cond, bug, solver=solver, start=start)
        st = torch.stack([s.to(truth.dtype) for s in states])
    acc = torch.stack([nmse(st[k], truth[k]) for k in range(1, steps + 1)]).double()
    nan = torch.full((steps,), float("nan"), dtype=torch.float64)
    if step is None:
        loc = nan
    else:
        with torch.no_grad():
            loc = torch.stack([nmse(step(k, truth[k]).to(truth.dtype), truth[k + 1]) for k in range(steps)]).double()
    res = _residual(model, st, steps, guidance, cond, solver="ddim") if solver == "ddim" else nan
    return BugRun(b, acc, loc, res, float(nmse(st[-1], z_T.to(st.dtype))), float(nmse(st[0], truth[0])),
                  [lv.label for lv in _levels(model, steps, solver, b.options.get("grid"))][1:], extras)


def _invlab_states(model, x0, steps, solver, guidance, cond, grid):
    from ..inversion import invert
    from ..trace import Recorder

    inv = invert(model, x0, steps, solver, "naive", guidance, cond, hooks=[Recorder(keys=("x_next",))],
                 grid_overrides=grid)
    return inv.latents()


def _invlab_states_nmse(model, truth, steps, guidance, cond, grid):
    st = _invlab_states(model, truth[0], steps, "dpmpp2m", guidance, cond, grid)
    return torch.stack([nmse(st[k], truth[k]) for k in range(1, steps + 1)]).double()


def run_gallery(pixel_model, latent_model, steps: int, guidance: float, batch: int = 2, seed: int = 0,
                bugs: list[str] | None = None) -> dict[str, BugRun]:
    """Every bug (or ``bugs``) on a class-conditional pixel model and, for the VAE bugs, a latent model
    (None skips them); also the correct loop on each model ("none", "none (latent)")."""
    from ..sampling import noise

    names = list(BUGS) if bugs is None else list(bugs)
    out: dict[str, BugRun] = {}
    z = noise(pixel_model, batch, seed=seed, dtype=torch.float64)
    cond = torch.arange(batch) % int(pixel_model.num_classes or 1) if pixel_model.num_classes else None
    for name in names:
        if BUGS[name].needs == "pixel":
            out[name] = run_bug(pixel_model, z, steps, guidance, cond, name)
    if latent_model is not None and any(BUGS[n].needs == "latent" for n in names):
        zl = noise(latent_model, batch, seed=seed, dtype=torch.float32)
        cl = torch.arange(batch) % int(latent_model.num_classes or 1) if latent_model.num_classes else None
        out["none (latent)"] = run_bug(latent_model, zl, steps, guidance, cl, "none")
        for name in names:
            if BUGS[name].needs == "latent":
                out[name] = run_bug(latent_model, zl, steps, guidance, cl, name)
    return out
