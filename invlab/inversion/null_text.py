"""Null-text inversion (NTI; Mokady, Hertz, Aberman, Pritch, Cohen-Or, CVPR 2023).

**Pivot.** Naive DDIM inversion with the source condition c at w = 1 gives the pivots
z*_0 (the input), z*_1, ..., z*_T (``.final``).

**Optimisation**, down the sampling grid from z_bar_T = z*_T. Sampling step i goes from level
s to level t (t less noisy) and must land on the pivot z*_t. With the conditional prediction
eps_c = eps_theta(z_bar_s, s, c) fixed, the unconditional input phi_i (a continuous embedding,
initialised from phi_{i-1}; phi_{-1} = the model's null input) is optimised by Adam:

    eps(phi)   = eps_theta(z_bar_s, s, phi) + w (eps_c - eps_theta(z_bar_s, s, phi))
    L(phi)     = || DDIM_step(z_bar_s; eps(phi)) - z*_t ||^2 / n        (mean squared error)
    lr_i       = lr (1 - i / lr_decay_over)
    stop       after the Adam step at which L < early_stop + i * early_stop_slope

(at most ``inner_steps`` Adam steps; each is one NFE and one backward pass through the network),
then z_bar_t = DDIM_step(z_bar_s; eps(phi_i)), a fresh guided evaluation. Cost per step: one NFE
for eps_c, one per Adam step, one for the final guided step; ``extras["backward_passes"]``
counts the backward passes.

**Output.** The phi_i are the method's side information: ``invlab.reconstruct`` samples from
``.final`` with phi_i as CFG's unconditional input at sampling step i (``sample(uncond_steps=)``)
and reproduces the optimisation's z_bar path exactly; an edit changes ``cond`` and keeps the
phi_i. Inversion record k (level k -> k + 1) is the pivot step; sampling step i = steps - 1 - k
optimises against that record's start state z*_k, and its results land in record k's extras:
``null_embedding`` (phi_i), ``null_losses`` (L before each Adam step), ``null_final_loss``
(L at phi_i), ``null_inner_steps``, ``null_lr``, ``backward_passes``, ``nfe_pivot``,
``nfe_null``; ``record.nfe`` is their sum, so ``trajectory.nfe`` is the whole cost.

**Continuous unconditional input** (``Denoiser.embed_cond``): SD's empty-prompt CLIP embedding
(``(B, 77, 768)`` at SD-1.5 size), the tiny UNets' null-class embedding row (``(B, 128)`` /
``(B, 256)``), the analytic mixtures' per-class log-weight offsets (``(B, num_classes)``; zeros =
the full mixture). One embedding per sample; a batch optimises each row as if it were alone (a
row that meets the early stop is frozen while the others go on).

**Reference** (the prompt-to-prompt notebook; cure-lab/PnPInversion ``NullInversion``): batch 1,
50 DDIM steps, w = 7.5, ``inner_steps`` 10, lr 1e-2 (1 - i/100) whatever the number of steps,
early stop 1e-5 + i 2e-5 tested after the Adam step, a new Adam optimiser per step. invlab's
default differs only in the decay: over ``2 * steps`` (= 100 at the reference's 50 steps), so a
10-step run decays as a 50-step one does. The learning rate is tuned to CLIP embeddings (entries
of order 1); on the tiny UNets the null-to-class distance per coordinate is about 1.4, the same
order, so lr = 1e-2 is kept.

DDIM grids only; ``guidance`` must be > 1 (at w = 1 the unconditional input has no effect).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from ..checks import check_choice, check_int, check_number
from ..loop import Setup
from ..steps import ddim_step, x0_from_eps
from ..trace import NonFiniteError
from .naive import LABELS, NaiveOptions, invert_naive
from .negative_prompt import pivot_setup
from .presets import fill_from_reference

PRESETS = (None, "reference")


@dataclass
class NullTextOptions:
    """Options of null-text inversion; the reference's value in brackets where it differs.

    inner_steps: most Adam steps per sampling step (the NFE knob: each costs one NFE and one
        backward pass) [10].
    lr: Adam's learning rate at the first sampling step [1e-2].
    lr_decay_over: the learning rate of sampling step i is lr (1 - i / lr_decay_over); None means
        2 * steps [100, whatever the number of steps; it must exceed steps - 1].
    early_stop: a step stops once its loss is below early_stop + i * early_stop_slope [1e-5].
    early_stop_slope: [2e-5].
    label: the pivot inversion's time label, "target" or "current" ["target"].
    inversion_guidance: CFG scale of the pivot inversion [1.0]; None inverts with ``guidance``.
    preset: "reference" sets every field left at its default to the reference's value.
    """

    inner_steps: int = 10
    lr: float = 1e-2
    lr_decay_over: float | None = None
    early_stop: float = 1e-5
    early_stop_slope: float = 2e-5
    label: str = "target"
    inversion_guidance: float | None = 1.0
    preset: str | None = None

    def __post_init__(self):
        check_choice("preset", self.preset, PRESETS)
        if self.preset == "reference":
            fill_from_reference(self, NullTextOptions.reference())
        check_int("inner_steps", self.inner_steps, 0, 10)
        check_choice("label", self.label, LABELS)
        if check_number("lr", self.lr, "e.g. lr=1e-2") <= 0:
            raise ValueError(f"lr must be > 0 (got {self.lr}); the reference uses 1e-2")
        if self.lr_decay_over is not None and check_number("lr_decay_over", self.lr_decay_over) <= 0:
            raise ValueError(f"lr_decay_over must be > 0 or None (2 x steps); got {self.lr_decay_over}")
        for name in ("early_stop", "early_stop_slope"):
            if check_number(name, getattr(self, name)) < 0:
                raise ValueError(f"{name} must be >= 0 (got {getattr(self, name)}); 0 never stops early")
        if self.inversion_guidance is not None:
            from ..models.base import check_guidance

            self.inversion_guidance = check_guidance(self.inversion_guidance)

    @staticmethod
    def reference() -> "NullTextOptions":
        """The prompt-to-prompt notebook's ``NullInversion`` (PnPInversion ``models/p2p/inversion.py``)."""
        return NullTextOptions(inner_steps=10, lr=1e-2, lr_decay_over=100.0, early_stop=1e-5,
                               early_stop_slope=2e-5, label="target", inversion_guidance=1.0)


def invert_null_text(setup: Setup, hooks, opts: NullTextOptions, check_finite: bool = True,
                     show_progress: bool = False):
    model, w, n = setup.model, setup.guidance, setup.steps
    if setup.solver != "ddim":
        raise ValueError(f"null-text inversion optimises against DDIM steps; solver={setup.solver!r} is not "
                         "supported (use solver='ddim', or method='exact' for DPM-Solver++(2M))")
    if setup.cond is None or w == 1.0:
        raise ValueError(f"null-text inversion optimises CFG's unconditional input, which has no effect at "
                         f"guidance={w:g}{' without a condition' if setup.cond is None else ''}: pass cond=... and "
                         "guidance > 1 (the reference: 7.5), or use method='naive'")
    try:
        null0 = model.null_embedding(setup.x.shape[0], setup.x)
    except NotImplementedError as exc:
        raise ValueError(f"null-text inversion needs a continuous unconditional input: {exc}") from None
    decay = 2.0 * n if opts.lr_decay_over is None else float(opts.lr_decay_over)
    if decay <= n - 1:
        raise ValueError(f"lr_decay_over={opts.lr_decay_over:g} makes the learning rate <= 0 by sampling step "
                         f"{int(decay)} of {n}; pass lr_decay_over=None (2 x steps) or a value above {n - 1}")
    config = {"method": "null-text", "reconstruct_guidance": w, "preset": opts.preset, "inner_steps": opts.inner_steps,
              "lr": opts.lr, "lr_decay_over": decay, "early_stop": opts.early_stop,
              "early_stop_slope": opts.early_stop_slope}
    traj = invert_naive(pivot_setup(setup, opts.inversion_guidance), hooks, NaiveOptions(label=opts.label),
                        check_finite, show_progress, config=config, pivots=True)
    done = 0
    try:
        phi = null0
        z = traj.final
        levels = traj.levels  # inversion order: levels[k] -> levels[k + 1]
        for i in range(n):
            k = n - 1 - i
            rec = traj.records[k]
            s, t = levels[k + 1], levels[k]
            target = rec.extras["pivot"]
            phi, z, info = _optimise_step(setup, z, s, t, target, phi, i, opts.lr * (1.0 - i / decay), opts,
                                          check_finite)
            info["nfe_pivot"] = rec.nfe
            rec.extras.update(info)
            rec.nfe += info["nfe_null"]
            rec.seconds += info["seconds_null"]
            done += 1
    except BaseException as exc:
        traj.config.update(interrupted=True, error=type(exc).__name__, null_steps_done=done)
        try:
            exc.partial_trajectory = traj
        except AttributeError:
            pass
        raise
    return traj


def _optimise_step(setup: Setup, z: torch.Tensor, s, t, target: torch.Tensor, phi: torch.Tensor, i: int,
                   lr: float, opts: NullTextOptions, check_finite: bool):
    model, w = setup.model, setup.guidance
    t0, nfe0 = time.perf_counter(), model.nfe
    dims = tuple(range(1, z.dim()))
    threshold = opts.early_stop + i * opts.early_stop_slope
    with torch.no_grad():
        eps_c = model.eps(z, s.label, setup.cond, 1.0).eps
    param = phi.detach().clone().requires_grad_(True)
    adam = torch.optim.Adam([param], lr=lr)
    active = torch.ones(z.shape[0], dtype=torch.bool, device=param.device)
    losses: list[float] = []
    steps_taken = torch.zeros(z.shape[0], dtype=torch.long)
    for _ in range(opts.inner_steps):
        with torch.enable_grad():
            eps_u = model.eps(z, s.label, None, 0.0, uncond=param).eps
            eps = eps_u + w * (eps_c - eps_u)
            z_prev = ddim_step(x0_from_eps(z, eps, s), eps, t)
            row_loss = (z_prev - target).pow(2).mean(dims)  # per sample: rows are optimised independently
            if check_finite and not torch.isfinite(row_loss).all():
                raise NonFiniteError(f"null-text: non-finite loss at sampling step {i} (level {s.label:g} -> "
                                     f"{t.label:g}); try a smaller lr or float64")
            adam.zero_grad(set_to_none=True)
            row_loss.sum().backward()
        frozen = param.detach()[~active].clone()
        adam.step()
        with torch.no_grad():
            if frozen.numel():
                param[~active] = frozen  # rows that met the early stop keep their embedding
        losses.append(float(row_loss.detach().mean()))
        steps_taken += active.cpu().long()
        active = active & (row_loss.detach().to(active.device) >= threshold)
        if not active.any():
            break
    phi = param.detach()
    with torch.no_grad():
        out = model.eps(z, s.label, setup.cond, w, uncond=phi)
        z_next = ddim_step(x0_from_eps(z, out.eps, s), out.eps, t)
        final_loss = float((z_next - target).pow(2).mean())
    if check_finite and not torch.isfinite(z_next).all():
        raise NonFiniteError(f"null-text: non-finite state at sampling step {i} (level {s.label:g} -> {t.label:g})")
    info = {"null_embedding": phi, "null_losses": losses, "null_final_loss": final_loss,
            "null_inner_steps": int(steps_taken.max()), "null_inner_steps_per_sample": steps_taken.tolist(),
            "null_lr": lr, "backward_passes": len(losses), "nfe_null": model.nfe - nfe0,
            "seconds_null": time.perf_counter() - t0}
    return phi, z_next, info
