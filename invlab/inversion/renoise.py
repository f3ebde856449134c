"""ReNoise inversion (Garibi et al., ECCV 2024): renoise each step, then average the predictions.

One inversion step cur -> nxt (nxt noisier, label t = nxt.label, the *target* label at every
network call). The DDIM sampling step nxt -> cur is affine in eps, so for a given eps it has an
exact algebraic inverse (methods.md §3.2, "InvStep")::

    InvStep(x_cur; eps) = alpha_nxt (x_cur - sigma_cur eps) / alpha_cur + sigma_nxt eps

(naive inversion is InvStep with eps taken at x_cur). ReNoise re-evaluates eps at its current
estimate of the unknown noisier state and re-applies InvStep from the *known* state::

    y^(0)   = x_cur
    eps^(k) = eps_theta(y^(k), t)                         k = 0 .. K      (K + 1 NFE)
    y^(k+1) = InvStep(x_cur; eps^(k))

a fixed-point iteration of the implicit DDIM equation (its fixed point is the exact inversion of
``method="exact"``, Algorithm 1). With averaging on, the step's result is
``x_next = InvStep(x_cur; mean of eps^(k) for a <= k < b)`` (equal to averaging the latents
y^(k+1), InvStep being affine in eps); if no k falls in [a, b) the result is y^(K+1).

**First steps** (reference code, pitfalls.md): a step whose *target* label t is below
``first_step_max_label`` (250) uses at most ``first_max_renoise_steps`` (5) renoising iterations
and the range ``first_average_range`` instead of ``average_range`` (8, 10). The test is on the
target label, so several early steps (3 of 10 DDIM steps, 13 of 50) get it. The reference's first
range is (0, 5): it averages in the naive prediction eps^(0), and eps^(5) only feeds the discarded
iterate y^(6) (an NFE spent but unused; the preset keeps and counts it). invlab's default is
(4, 6), the last two iterates as on the other steps (measured better, see ``ReNoiseOptions``).

**Noise regularisation** (editability, pix2pix-zero style; ``reg_steps > 0``): each regularised
eps takes ``reg_steps`` outer rounds of
  * a KL step  eps <- eps - lambda_kl clip(grad L_kl, +-kl_clip), where
    L_kl = sum over (sample, channel, patch x patch tile) of |log((v_r + f)/(v + f)) +
    (v + (m - m_r)^2)/(v_r + f) - 1|  (twice the Gaussian KL of eps's tile statistics (m, v)
    to the reference prediction's (m_r, v_r); unbiased variances; f = ``var_floor``);
  * ``ac_rolls`` auto-correlation steps  eps <- eps - lambda_ac grad L_ac / ac_rolls, where
    L_ac = sum over samples, channels and pyramid levels (2x2 average pooling until the height
    is <= 8) of mean(e * roll(e, s, H))^2 + mean(e * roll(e, s, W))^2, one random shift s in
    [ac_min_shift, H_level // 2) per level.
Which predictions are regularised (reference): the iterates' eps^(k) with k >= a (with averaging
off: k >= 1) and the averaged eps; the *average itself is taken over the unregularised*
predictions, while the iterates use the regularised ones. The gradients are through the
regulariser only (never the network), by autograd under a local ``torch.enable_grad()``; each
gradient is one backward pass, counted in ``extras["backward_passes"]``. The reference
prediction eps_ref costs one NFE per regularised step (``extras["nfe_reference"]``).

**Flat images.** The reference divides by the tile variance plus 1e-6; on a flat image (a white
background) that variance is 0 and, in float16, the KL gradient overflows to inf * 0 = NaN
(ReNoise issue #9). Here the regulariser always runs in float32 or wider, the variance floor is
``var_floor`` (default 1e-4 of the unit noise variance; the preset keeps 1e-6), and a sample whose
gradient is still non-finite keeps its eps for that update (counted in ``extras["reg_skipped"]``):
a constant image inverts to finite values.

Differences from the reference code (garibida/ReNoise-Inversion @ fa83238), all deliberate:
  * with guidance w != 1 and the regulariser on, the reference's first call pairs latents and
    embeddings crosswise, so its first eps is (1 - w) eps_u(clean) + w eps_c(y^(0))
    (pitfalls.md); invlab evaluates the guided eps and eps_ref as two separate, correct calls;
  * the reference seeds its roll generator per image and discards one ``randn`` of the latent's
    shape (the add_noise draw); invlab does the same with ``seed`` (the draw is the forward noise
    of ``reg_reference="noised"``), but bit-equal roll sequences across devices are not claimed;
  * noise correction (``perform_noise_correction``) applies to stochastic samplers only and is
    not part of DDIM inversion;
  * DDIM grids only: DPM-Solver++(2M) inversion is refused (use ``method="exact"``,
    Algorithm 2, which inverts its second-order steps).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..checks import check_choice, check_int, check_number
from .presets import fill_from_reference
from ..loop import Runner, Setup, progress
from ..models.base import EpsOutput
from ..schedules import Level
from ..steps import ddim_step, x0_from_eps

REG_REFERENCES = ("noised", "clean")
PRESETS = (None, "reference")
#: the reference's auto-correlation step lambda_ac = 20 is for 64 x 64 latents (SD / SDXL at 512 px):
#: L_ac is a sum of squared means over H*W pixels, so its gradient per element scales as 1/(H W)
REFERENCE_AC_PIXELS = 64 * 64
REFERENCE_LAMBDA_AC = 20.0


@dataclass
class ReNoiseOptions:
    """Options of ReNoise inversion. invlab's defaults, with the reference code's value (config.py
    ``RunConfig``, methods.md §3.3 / pitfalls.md) in brackets where it differs.

    renoise_steps: K, renoising iterations per step; each step costs K + 1 NFE (K = 0 is naive
        inversion, bit for bit) [9, the ``RunConfig`` default; the SD-1.5 DDIM example uses 1].
    average: average the noise predictions over ``average_range`` (True) or keep the last
        iterate [True].
    average_range: (a, b): iterations a <= k < b are averaged [(8, 10)].
    first_average_range: the range for first steps (target label < first_step_max_label): (4, 6),
        the last two of their 6 iterations, like (8, 10) for the others [(0, 5)]. The reference's
        range averages in eps^(0), the naive step's own prediction, and leaves eps^(5) unused;
        measured on gmm-digits (float64, seeds 0-2, w = 1 and 3), noise NMSE vs naive improves
        4.2-4.5x (10 steps) / 12-14x (50 steps) with (0, 5) and 17-18x / 3200-3700x with (4, 6).
        (``average=False`` measures better still there, 22x / 8000x: the iteration converges on the
        analytic models, and averaging is the paper's remedy for iterates that oscillate.)
    first_max_renoise_steps: K is capped at this on first steps [5].
    first_step_max_label: a step is a "first step" when its target label is below this, in train
        timesteps [250].
    reg_steps: outer rounds of the noise regulariser; None (default) or 0 = off [4: the reference
        *enables* it by default]. Off here because it is an editability prior, not an inversion one:
        it moves eps away from the network's prediction. ``preset="reference"`` (regulariser on,
        shift 0 allowed, clean eps_ref, floor 1e-6) ends *worse* than naive on gmm-digits: noise
        NMSE 1.5-2.0x naive's at 10 steps, 8.7-10x at 50 (float64, seeds 0-2, w = 1 and 3; with
        lambda_ac = 20 unscaled much the same). ``reg_steps=4`` with invlab's other defaults stays
        6-40x better than naive (seed-dependent), vs 17-3700x without the regulariser.
        ``preset="reference", reg_steps=0`` turns it off in the preset (None is the "unset" mark).
    lambda_kl: KL step size; scale-free (per-tile statistics) [0.065].
    lambda_ac: auto-correlation step size; None scales the reference's 20 (tuned to 64 x 64
        latents) by H*W / 4096, the factor by which the gradient of a mean over H*W pixels grows
        on smaller images (1.25 on 16 x 16 digits) [20 on 64 x 64 latents; the preset keeps None,
        which *is* 20 there, because 20 unscaled is a 64x larger step on 16 x 16 samples: on a
        flat gmm-digits image it makes the auto-correlation descent diverge to inf].
    ac_rolls: auto-correlation steps per outer round [5].
    ac_min_shift: smallest random roll; a shift of 0 makes the "correlation" the second moment
        and drives eps's variance to 0, so invlab starts at 1 [0].
    kl_clip: the KL gradient is clipped to +-kl_clip [100].
    patch: tile size of the KL statistics, in pixels (per channel) [4].
    var_floor: added to both tile variances (never 0: a flat image would give NaN) [1e-6].
    reg_reference: the KL term's reference prediction eps_ref at label t: "noised" = eps at
        alpha_t x0 + sigma_t n (n ~ N(0, I) drawn once per run from ``seed``; the paper's intent)
        or "clean" = eps at the clean x0 (what the reference code computes for SD, its
        ``add_noise`` being patched to return the clean latent) ["clean"].
    seed: seeds the regulariser's generator (forward noise n, then the roll shifts) [7865].
    preset: "reference" sets every field left at its invlab default to the reference value (so
        ``preset="reference", renoise_steps=1`` is the reference's SD-1.5 DDIM example, K = 1).

    Time label: every network call is fed the target (noisier) level's label t, as in the
    reference (``trajectory.config["label"] == "target"``); it is the label of the state y^(k)
    being evaluated, so there is no ``label`` option.
    """

    renoise_steps: int = 9
    average: bool = True
    average_range: tuple[int, int] = (8, 10)
    first_average_range: tuple[int, int] = (4, 6)
    first_max_renoise_steps: int = 5
    first_step_max_label: float = 250.0
    reg_steps: int | None = None
    lambda_kl: float = 0.065
    lambda_ac: float | None = None
    ac_rolls: int = 5
    ac_min_shift: int = 1
    kl_clip: float = 100.0
    patch: int = 4
    var_floor: float = 1e-4
    reg_reference: str = "noised"
    seed: int = 0
    preset: str | None = None

    def __post_init__(self):
        check_choice("preset", self.preset, PRESETS)
        if self.preset == "reference":  # every field still at its default takes the reference value
            fill_from_reference(self, ReNoiseOptions.reference())
        check_int("renoise_steps", self.renoise_steps, 0, 9)
        check_int("first_max_renoise_steps", self.first_max_renoise_steps, 0, 5)
        if not isinstance(self.average, bool):
            raise TypeError(f"average must be True or False (got {self.average!r})")
        for name in ("average_range", "first_average_range"):
            self._check_range(name, getattr(self, name))
        check_number("first_step_max_label", self.first_step_max_label, "a label in train timesteps, e.g. 250")
        if self.reg_steps is not None:
            check_int("reg_steps", self.reg_steps, 0, 4)
        check_int("ac_rolls", self.ac_rolls, 1, 5)
        check_int("ac_min_shift", self.ac_min_shift, 0, 1)
        check_int("patch", self.patch, 2, 4)
        check_int("seed", self.seed, 0, 0)
        for name in ("lambda_kl", "kl_clip", "var_floor") + (("lambda_ac",) if self.lambda_ac is not None else ()):
            v = check_number(name, getattr(self, name))
            if v < 0 or (v == 0 and name in ("kl_clip", "var_floor")):
                raise ValueError(f"{name} must be {'> 0' if name in ('kl_clip', 'var_floor') else '>= 0'} "
                                 f"(got {v}){'; a zero floor gives NaN on flat images' if name == 'var_floor' else ''}")
        check_choice("reg_reference", self.reg_reference, REG_REFERENCES)

    @staticmethod
    def _check_range(name, rng):
        ok = isinstance(rng, (tuple, list)) and len(rng) == 2 and all(
            isinstance(v, int) and not isinstance(v, bool) for v in rng)
        if not ok:
            raise TypeError(f"{name} must be a pair (a, b) of iteration indices (got {rng!r}); e.g. {name}=(8, 10)")
        if not 0 <= rng[0] < rng[1]:
            raise ValueError(f"{name} must be (a, b) with 0 <= a < b: iterations a <= k < b are averaged (got {rng!r})")

    @staticmethod
    def reference() -> "ReNoiseOptions":
        """The reference code's defaults (``RunConfig`` in src/config.py @ fa83238, methods.md §3.3;
        regulariser details from pitfalls.md and src/renoise_inversion.py)."""
        return ReNoiseOptions(renoise_steps=9, average=True, average_range=(8, 10), first_average_range=(0, 5),
                              first_max_renoise_steps=5, first_step_max_label=250.0, reg_steps=4, lambda_kl=0.065,
                              lambda_ac=None, ac_rolls=5, ac_min_shift=0, kl_clip=100.0, patch=4,
                              var_floor=1e-6, reg_reference="clean", seed=7865)


# ------------------------------------------------------------------ the inverse step and the regulariser
def inv_step(x_cur: torch.Tensor, eps: torch.Tensor, cur: Level, nxt: Level) -> torch.Tensor:
    """InvStep(x_cur; eps): the DDIM step nxt -> cur solved for the noisier state, eps given
    (alpha_nxt x0_hat + sigma_nxt eps with x0_hat = (x_cur - sigma_cur eps) / alpha_cur)."""
    return ddim_step(x0_from_eps(x_cur, eps, cur), eps, nxt)


def patch_kl(eps: torch.Tensor, ref: torch.Tensor, patch: int, var_floor: float) -> torch.Tensor:
    """Sum over (sample, channel, patch x patch tile) of |2 KL(N(m, v) || N(m_r, v_r))| with the
    floor f added to both variances: |log((v_r+f)/(v+f)) + (v + (m-m_r)^2)/(v_r+f) - 1|.
    Tiles that do not fit (H or W not a multiple of ``patch``) are left out, as ``unfold`` does."""
    def stats(x):
        b, c, h, w = x.shape
        x = x[:, :, : h - h % patch, : w - w % patch]
        tiles = x.reshape(b, c, h // patch, patch, w // patch, patch).transpose(3, 4).flatten(-2)
        return tiles.mean(-1), tiles.var(-1)

    m, v = stats(eps)
    m_r, v_r = stats(ref)
    kl = torch.log((v_r + var_floor) / (v + var_floor)) + (v + (m - m_r) ** 2) / (v_r + var_floor) - 1.0
    return kl.abs().sum()


def autocorr_loss(eps: torch.Tensor, gen: torch.Generator, min_shift: int) -> torch.Tensor:
    """Sum over samples, channels and pyramid levels of mean(e roll(e, s, H))^2 + mean(e roll(e, s, W))^2,
    one shift s per level drawn from ``gen`` in [min_shift, H_level // 2); levels halve by 2x2 average
    pooling until the height is <= 8."""
    loss = eps.new_zeros(())
    for b in range(eps.shape[0]):
        for c in range(eps.shape[1]):
            e = eps[b, c][None, None]
            while True:
                hi = max(e.shape[2] // 2, min_shift + 1)
                s = int(torch.randint(min_shift, hi, (1,), generator=gen))
                loss = loss + (e * torch.roll(e, s, dims=2)).mean() ** 2 + (e * torch.roll(e, s, dims=3)).mean() ** 2
                if e.shape[2] <= 8:
                    break
                e = F.avg_pool2d(e, kernel_size=2)
    return loss


def _descend(eps: torch.Tensor, loss_fn, step: float, clip: float | None, log: dict) -> torch.Tensor:
    """One gradient step on the regulariser (autograd through the loss only); a sample whose gradient
    or updated eps is non-finite keeps its eps (counted in log["reg_skipped"])."""
    v = eps.detach().requires_grad_(True)
    loss = loss_fn(v)
    (g,) = torch.autograd.grad(loss, v)
    log["backward_passes"] += 1
    if clip is not None:
        g = g.clamp(-clip, clip)
    new = eps - step * g
    ok = (torch.isfinite(g) & torch.isfinite(new)).flatten(1).all(1)
    if not bool(ok.all()):
        log["reg_skipped"] += int((~ok).sum())
        new = torch.where(ok.reshape(-1, *([1] * (g.dim() - 1))), new, eps)
    return new.detach(), float(loss.detach())


def regularize(eps: torch.Tensor, ref: torch.Tensor, opts: ReNoiseOptions, gen: torch.Generator, lambda_ac: float,
               log: dict) -> torch.Tensor:
    """The noise regulariser applied to one prediction (``opts.reg_steps`` outer rounds), in float32 or
    wider; returns eps in its own dtype and appends the losses to ``log``."""
    wide = torch.promote_types(eps.dtype, torch.float32)
    e, r = eps.detach().to(wide), ref.detach().to(wide)
    with torch.enable_grad():
        for _ in range(opts.reg_steps):
            if opts.lambda_kl > 0:
                e, loss = _descend(e, lambda v: patch_kl(v, r, opts.patch, opts.var_floor), opts.lambda_kl,
                                   opts.kl_clip, log)
                log["kl_losses"].append(loss)
            if lambda_ac > 0:
                for _ in range(opts.ac_rolls):
                    e, loss = _descend(e, lambda v: autocorr_loss(v, gen, opts.ac_min_shift),
                                       lambda_ac / opts.ac_rolls, None, log)
                    log["ac_losses"].append(loss)
    return e.to(eps.dtype)


def _rms(a: torch.Tensor) -> float:
    return float(a.detach().double().pow(2).mean().sqrt())


def _mean(ts: list):
    """Mean of a list of tensors (or Nones); one tensor is returned as it is (no arithmetic)."""
    if ts[0] is None:
        return None
    if len(ts) == 1:
        return ts[0]
    return sum(ts[1:], ts[0]) / len(ts)


def _check_reg_shape(setup: Setup, opts: ReNoiseOptions) -> float:
    """The regulariser needs images (C, H, W) with H, W >= patch; returns lambda_ac for them."""
    shape = setup.model.sample_shape
    if len(shape) != 3 or min(shape[1:]) < opts.patch:
        raise ValueError(f"the ReNoise noise regulariser works on image-shaped samples (C, H, W) with H, W >= "
                         f"patch={opts.patch}; {setup.model.name} has samples of shape {shape}. Use reg_steps=0.")
    if opts.lambda_ac is not None:
        return float(opts.lambda_ac)
    return REFERENCE_LAMBDA_AC * shape[1] * shape[2] / REFERENCE_AC_PIXELS


# ------------------------------------------------------------------ the runner
def invert_renoise(setup: Setup, hooks, opts: ReNoiseOptions, check_finite: bool = True, show_progress: bool = False):
    if setup.solver != "ddim":
        raise ValueError(f"ReNoise inverts DDIM steps (its inverse step is the DDIM step solved for the noisier "
                         f"state), not solver={setup.solver!r}: for DPM-Solver++(2M) grids use method='exact' "
                         "(Algorithm 2 inverts the second-order steps), or invert with solver='ddim'")
    reg = bool(opts.reg_steps)
    lambda_ac = _check_reg_shape(setup, opts) if reg else 0.0
    levels = list(reversed(setup.grid.levels))
    run = Runner(setup, hooks, {"direction": "invert", "method": "renoise", "label": "target",
                                "renoise_steps": opts.renoise_steps, "average": opts.average,
                                "reg_steps": opts.reg_steps or 0, "preset": opts.preset}, levels, check_finite)
    x0_clean = setup.x
    gen = noise = None
    if reg:  # the reference's per-image generator: one randn of the latent's shape, then the rolls
        gen = torch.Generator().manual_seed(opts.seed)
        noise = torch.randn(tuple(x0_clean.shape), generator=gen, dtype=x0_clean.dtype).to(x0_clean.device)
    with run.guard(), torch.no_grad():
        x = setup.x
        for i in progress(range(setup.steps), show_progress, "invert renoise"):
            cur, nxt = levels[i], levels[i + 1]
            first = nxt.label < opts.first_step_max_label
            K = min(opts.renoise_steps, opts.first_max_renoise_steps) if first else opts.renoise_steps
            lo, hi = opts.first_average_range if first else opts.average_range
            st = run.begin(i, nxt.label)
            st["x_cur"] = x
            extras = {"renoise_steps": K, "first_step": first, "averaged": [], "iterate_changes": []}
            log = {"kl_losses": [], "ac_losses": [], "backward_passes": 0, "reg_skipped": 0}
            ref = None

            def regularized(e):
                nonlocal ref
                if ref is None:  # eps_ref at label t: one NFE per regularised step
                    y_ref = x0_clean if opts.reg_reference == "clean" else ddim_step(x0_clean, noise, nxt)
                    ref = setup.eps(y_ref, nxt.label).eps
                return regularize(e, ref, opts, gen, lambda_ac, log)

            y, kept = x, []
            for k in range(K + 1):
                out = setup.eps(y, nxt.label)
                e = out.eps
                if opts.average and lo <= k < hi:
                    kept.append(out)
                    extras["averaged"].append(k)
                if reg and (k >= lo if opts.average else k >= 1):
                    e = regularized(e)
                y_new = inv_step(x, e, cur, nxt)
                extras["iterate_changes"].append(_rms(y_new - y))
                y = y_new
            if kept:
                final = EpsOutput(_mean([o.eps for o in kept]), _mean([o.eps_cond for o in kept]),
                                  _mean([o.eps_uncond for o in kept]))
                if reg:
                    final.eps = regularized(final.eps)
            else:
                final = EpsOutput(e, out.eps_cond, out.eps_uncond)
            if reg:
                extras.update(log, nfe_reference=int(ref is not None))
            run.set_eps(st, final)
            x = st["x_cur"]
            x0 = st["x0_hat"] = x0_from_eps(x, st["eps"], cur)
            x_next = ddim_step(x0, st["eps"], nxt)
            extras["final_change"] = _rms(x_next - y)   # the result vs the last iterate y^(K+1)
            x = run.finish(st, x_next, extras=extras)
    return run.trajectory(x)


__all__ = ["ReNoiseOptions", "autocorr_loss", "inv_step", "invert_renoise", "patch_kl", "regularize"]
