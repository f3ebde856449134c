"""``invlab.edit``: invert a real image with one condition, regenerate it with another.

Editing is what inversion is for. Three choices make an edit:

* **depth** (partial inversion, SDEdit's "strength"): invert only the last ``k = round(depth * N)``
  steps of the N-step grid, so sampling restarts from the intermediate level ``N - k`` instead of
  z_T. Less depth keeps more of the source (pose, stroke width), more depth lets the new
  condition change more. Both runs walk the same partial grid: the last ``k + 1`` levels of the
  N-step grid, whose first step is first order (DPM-Solver++(2M) has no history there; an
  inversion of that grid inverts exactly the sampler that restarts there);
* **method**: any method of ``invlab.METHODS``, regenerated as the method prescribes
  (``invlab.reconstruct``'s rules: negative-prompt's source condition as CFG's unconditional
  input, null-text's optimised embeddings, the pair of the exact-by-construction solvers);
* **mask** (background-preserving edit, Blended Latent Diffusion's rule): after every sampling step
  the state outside the mask is replaced by the inversion's state at the same level,
  ``x_j <- m * x_j + (1 - m) * z*_j`` (m = 1 where the edit may happen), so the background follows
  the source's own trajectory and only the masked region is regenerated.

DirectInversion (``method="direct"``) adds its offsets to the *source* branch of a dual-branch
editor (prompt-to-prompt); the target branch, which is the edit, is plain sampling from its z_T.
With no attention sharing between branches here, its edit is that target branch (plus the mask
blend, whose background states are DirectInversion's pivots).

Metrics (:func:`edit_metrics`, PIE-Bench's protocol where it fits our images): background
preservation outside the mask -- PSNR (data range 1), MSE and SSIM, on images mapped to [0, 1];
edit success on digits by the course's classifier (:func:`digit_success`) and, for any
conditional model, by the model's own likelihood ratio (:func:`class_log_ratio`).

    import invlab
    model = invlab.load_model("gmm-digits")
    out = invlab.edit.edit(model, image_of_a_3, source=3, target=8, steps=50, method="exact",
                           depth=0.6, guidance=3.0, mask=left_half)
    out.image                                   # the edited image; out.inversion, out.sample: the runs
    invlab.edit.edit_metrics(image_of_a_3, out.image, mask=left_half)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F

from .loop import Setup
from .models.base import Denoiser
from .schedules import Grid
from .trace import FunctionIntervention, Observer, Trajectory

#: methods whose regeneration needs their own side information (see ``_regeneration``)
_SPECIAL = ("negative-prompt", "null-text", "algebraic", "direct")


@dataclass
class EditResult:
    """What :func:`edit` returns.

    ``edited``: the regenerated sample (a latent for latent models); ``image``: it decoded (pixel
    models: the same tensor); ``source``: the input in the model's sample space; ``source_image``:
    the input image; ``inversion`` / ``sample``: the two runs on the partial grid (``k`` steps,
    sampling starts at grid index ``start`` of the N-step grid); ``mask``: the mask in the sample
    space (None without one); ``config``: the call's settings.
    """

    edited: torch.Tensor
    image: torch.Tensor
    source: torch.Tensor
    source_image: torch.Tensor
    inversion: Trajectory
    sample: Trajectory
    mask: torch.Tensor | None
    start: int
    k: int
    config: dict[str, Any] = field(default_factory=dict)

    @property
    def nfe(self) -> int:
        return self.inversion.nfe + self.sample.nfe


def partial_grid(grid: Grid, k: int) -> Grid:
    """The last ``k`` steps of ``grid`` (its levels ``N - k .. N``) as a grid of its own.

    Its first step is first order: a multistep sampler restarting at an intermediate level has no
    earlier data prediction (diffusers' img2img restart does the same); later steps keep the
    grid's order pattern (and its lower-order final step)."""
    n = grid.steps
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= n:
        raise ValueError(f"k must be an int in 1..{n} (the number of steps to keep); got {k!r}")
    return Grid(grid.solver, tuple(grid.levels[n - k:]), (1,) + tuple(grid.orders[n - k + 1:]), grid.spacing,
                grid.solver_type)


def depth_steps(depth: Any, steps: int) -> int:
    """``k = round(depth * steps)`` (at least 1) for a depth in (0, 1]."""
    if isinstance(depth, bool) or not isinstance(depth, (int, float)) or not math.isfinite(depth) \
            or not 0.0 < depth <= 1.0:
        raise ValueError(f"depth must be a fraction in (0, 1] of the steps to invert (1: all the way to z_T; "
                         f"0.5: half way, SDEdit's strength); got {depth!r}")
    return max(1, int(math.floor(depth * steps + 0.5)))


def _partial_setup(model, x, steps, k, solver, guidance, cond, what, grid_overrides, uncond=None,
                   uncond_steps=None) -> Setup:
    setup = Setup(model, x, steps, solver, guidance, cond, what, grid_overrides, uncond=uncond)
    setup.grid = partial_grid(setup.grid, k)
    setup.steps = k
    if uncond_steps is not None:
        if len(uncond_steps) != k:
            raise ValueError(f"uncond_steps must hold {k} conditions, one per step (got {len(uncond_steps)})")
        setup.uncond_steps = [None if u is None else model.check_cond(u, x.shape[0], x) for u in uncond_steps]
    return setup


class _States(Observer):
    """Keeps every step's output state on the run's device (the blend needs them all)."""

    def __init__(self):
        self.states: list[torch.Tensor] = []

    def on_step(self, record, tensors):
        self.states.append(tensors["x_next"].detach().clone())


def sample_space_mask(model: Denoiser, mask: torch.Tensor, batch: int) -> torch.Tensor:
    """A mask ``(B or 1, 1, H, W)`` (1 = may be edited) in the model's sample space, as a float
    tensor broadcastable to ``(batch, *model.sample_shape)``. On a latent model a mask at image
    resolution is max-pooled to the latent grid (a latent cell is editable when any of its pixels
    is), so no background latent is touched by the edit's decoder footprint of the masked cells."""
    if not isinstance(mask, torch.Tensor):
        raise TypeError(f"mask must be a tensor (B or 1, 1, H, W) with 1 where the edit may happen; got "
                        f"{type(mask).__name__}")
    if mask.dim() == 2:
        mask = mask[None, None]
    elif mask.dim() == 3:
        mask = mask[:, None]
    if mask.dim() != 4 or mask.shape[1] != 1 or mask.shape[0] not in (1, batch):
        raise ValueError(f"mask must have shape (1 or {batch}, 1, H, W) (or (H, W)); got {tuple(mask.shape)}")
    m = mask.to(torch.float64)
    if not torch.isfinite(m).all() or m.min() < 0 or m.max() > 1:
        raise ValueError("mask values must lie in [0, 1] (1 where the edit may happen, 0 where the source is kept)")
    size = tuple(model.sample_shape[-2:])
    if tuple(m.shape[-2:]) != size:
        if not model.is_latent:
            raise ValueError(f"mask is {tuple(m.shape[-2:])} but {model.name}'s images are {size}: give a mask of "
                             "the image's size")
        if m.shape[-2] % size[0] or m.shape[-1] % size[1]:
            raise ValueError(f"mask {tuple(m.shape[-2:])} is not a whole multiple of the latent grid {size}; give "
                             "it at the image's or the latent's resolution")
        m = F.adaptive_max_pool2d(m, size)
    return m


def _as_sample(model: Denoiser, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(sample-space tensor, image) from an image or, on a latent model, an image or a latent."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"x0 must be a tensor (B, C, H, W); got {type(x).__name__}")
    if model.is_latent and tuple(x.shape[1:]) != tuple(model.sample_shape):
        with torch.no_grad():
            return model.encode(x), x
    if model.is_latent:
        with torch.no_grad():
            return x, model.decode(x)
    return x, x


def _regeneration(method: str, inversion: Trajectory) -> dict[str, Any]:
    """The sampler's extra inputs a method's inversion prescribes (``invlab.reconstruct``'s rules)."""
    if method == "negative-prompt":
        return {"uncond": inversion.cond}
    if method == "null-text":
        phis = [r.extras.get("null_embedding") for r in inversion.records]
        if any(p is None for p in phis):
            raise ValueError("the 'null-text' inversion holds no optimised embeddings; run it again")
        return {"uncond_steps": phis[::-1]}
    if method == "algebraic":
        return {"companion": inversion.companion, "solver_options": dict(inversion.config["solver_options"])}
    return {}


def edit(model: Denoiser, x0: torch.Tensor, source: Any = None, target: Any = None, *, steps: int = 50,
         solver: str = "ddim", method: str | None = None, depth: float = 1.0, guidance: float = 1.0,
         inversion_guidance: float | None = None, mask: torch.Tensor | None = None, options: Any = None,
         hooks: Any = None, grid_overrides: dict | None = None, check_finite: bool = True,
         show_progress: bool = False, **method_options: Any) -> EditResult:
    """Invert ``x0`` under ``source`` for ``depth`` of the grid, regenerate under ``target``.

    ``x0``: images ``(B, C, H, W)`` in [-1, 1]; on a latent model an image (encoded here) or a
    latent. ``source`` / ``target``: conditions (class ids, prompts); ``target=None`` keeps
    ``source`` (a reconstruction). ``steps``, ``solver``: the N-step grid; ``depth`` in (0, 1]:
    the fraction of it inverted (1: all the way to z_T, then this equals ``invlab.invert``
    followed by ``invlab.reconstruct`` with ``cond=target``). ``method`` / ``options`` /
    ``**method_options``: as in ``invlab.invert``. ``guidance``: CFG scale of the regeneration;
    ``inversion_guidance``: that of the inversion (default ``guidance``, so that the round trip
    with ``target = source`` is the method's reconstruction). ``mask``: ``(B or 1, 1, H, W)`` with 1
    where the edit may happen (image or latent resolution); outside it every sampling step's
    output is replaced by the inversion's state at that level, the last one by the source itself
    (so a pixel model's background is the source bit for bit; a latent model's differs by what
    the decoder mixes in from the edited cells). Not with ``solver="edict"`` (its second latent
    is out of the blend's reach). ``hooks`` go to the regeneration.

    ``method="direct"``: DirectInversion's offsets belong to the source branch of a dual-branch
    editor, which is not built here, so its edit is plain regeneration from its w = 1 pivots
    (with a mask, the background follows those pivots); with ``target = source`` it is therefore
    not a reconstruction (``invlab.reconstruct`` applies the offsets).
    """
    from .inversion import METHODS, make_options
    from .reconstruct import RECONSTRUCTIONS
    from .reversible import REVERSIBLE, run_reversible
    from .sampling import run_sampler

    if not isinstance(model, Denoiser):
        raise TypeError(f"model must be an invlab Denoiser (from invlab.load_model); got {type(model).__name__}")
    if method is None:
        method = "algebraic" if solver in REVERSIBLE else "naive"
    if method not in RECONSTRUCTIONS or method not in METHODS:
        from .checks import unknown

        raise unknown("method", method, sorted(set(METHODS) & set(RECONSTRUCTIONS)))
    if (solver in REVERSIBLE) != (method == "algebraic"):
        raise ValueError(f"solver={solver!r} with method={method!r}: the exact-by-construction solvers {REVERSIBLE} "
                         "are inverted by method='algebraic' only, and 'algebraic' inverts only them")
    z0, image = _as_sample(model, x0)
    n = steps
    from .schedules import check_steps

    k = depth_steps(depth, check_steps(n, model.schedule.num_train_timesteps))
    if target is None:
        target = source
    if method in ("negative-prompt", "null-text", "direct") and inversion_guidance is not None:
        raise ValueError(f"method {method!r} sets its inversion's guidance by its own option 'inversion_guidance'; "
                         "pass it as a method option, not as edit(..., inversion_guidance=...)")
    if mask is not None and solver == "edict":
        raise ValueError("a mask cannot be used with solver='edict': the blend reaches EDICT's first latent only, so "
                         "its second latent keeps the regenerated background and the coupled steps then pull apart "
                         "(3 -> 8 on digits: 25% read as 8 with the mask, 100% without). Use solver='bdia' or 'belm' "
                         "(both states pass through the blend) or a DDIM method, or edit without the mask")
    w_inv = guidance if inversion_guidance is None else inversion_guidance
    # the mask is checked before any network call (a wrong shape fails at once)
    m = None if mask is None else sample_space_mask(model, mask, z0.shape[0]).to(device=z0.device, dtype=z0.dtype)
    opts = make_options(method, options, **method_options)
    setup = _partial_setup(model, z0, n, k, solver, w_inv, source, "x0", grid_overrides)
    recorder = _States()
    if method == "algebraic":
        inversion = run_reversible(setup, [recorder], opts, "invert", None, check_finite, show_progress)
    else:
        inversion = METHODS[method][1](setup, [recorder], opts, check_finite=check_finite,
                                       show_progress=show_progress)
    extra = _regeneration(method, inversion)
    hook_list = [] if hooks is None else (list(hooks) if isinstance(hooks, (list, tuple)) else [hooks])
    if m is not None:
        # the inversion's state at each sampling level: level j + 1 of the partial grid is inversion
        # step k - 2 - j's output, and the clean end (j = k - 1) is the source itself
        targets = recorder.states[::-1][1:] + [z0]

        def blend(index: int, tensors: dict) -> dict:
            keep = targets[index].to(device=tensors["x_next"].device, dtype=tensors["x_next"].dtype)
            return {"x_next": m * tensors["x_next"] + (1 - m) * keep}

        hook_list.append(FunctionIntervention(blend, {"x_next"}, stage="step"))
    regen = _partial_setup(model, inversion.final, n, k, solver, guidance, target, "z_T", grid_overrides,
                           uncond=extra.get("uncond"), uncond_steps=extra.get("uncond_steps"))
    if method == "algebraic":
        from .reversible import as_options

        sample = run_reversible(regen, hook_list, as_options(extra["solver_options"]), "sample", extra["companion"],
                                check_finite, show_progress)
    else:
        sample = run_sampler(regen, hook_list, check_finite=check_finite, show_progress=show_progress)
    edited = sample.final
    with torch.no_grad():
        out_image = model.decode(edited) if model.is_latent else edited
    config = {"model": model.name, "steps": n, "k": k, "depth": depth, "solver": solver, "method": method,
              "guidance": guidance, "inversion_guidance": w_inv, "masked": m is not None}
    return EditResult(edited, out_image, z0, image, inversion, sample, m, n - k, k, config)


# ---------------------------------------------------------------------------------------- metrics
def _unit(images: torch.Tensor, value_range: tuple[float, float]) -> torch.Tensor:
    lo, hi = value_range
    return ((images.double() - lo) / (hi - lo)).clamp(0, 1)


def _image_mask(mask: torch.Tensor | None, images: torch.Tensor) -> torch.Tensor:
    if mask is None:
        return torch.zeros_like(images[:, :1], dtype=torch.float64)
    m = mask.to(device=images.device, dtype=torch.float64)
    if m.dim() == 2:
        m = m[None, None]
    if m.dim() != 4 or m.shape[1] != 1 or tuple(m.shape[-2:]) != tuple(images.shape[-2:]):
        raise ValueError(f"mask must be (B or 1, 1, H, W) at the images' size {tuple(images.shape[-2:])}; got "
                         f"{tuple(mask.shape)}")
    return m.expand(images.shape[0], 1, *images.shape[-2:])


def edit_metrics(source: torch.Tensor, edited: torch.Tensor, mask: torch.Tensor | None = None,
                 value_range: tuple[float, float] = (-1.0, 1.0)) -> dict[str, torch.Tensor]:
    """Background preservation between ``source`` and ``edited`` images ``(B, C, H, W)``, per image.

    PIE-Bench's protocol on images mapped to [0, 1]: ``psnr`` (dB, data range 1) and ``mse`` over
    the pixels outside ``mask`` (1 = edited region; None: the whole image is background). Unlike
    PIE-Bench, which zeroes the edited region in both images and averages over the whole image,
    PSNR and MSE here average over the background pixels only (zeroed pixels would inflate them
    by the edited area's share). ``ssim`` is PIE-Bench's: SSIM of the two images multiplied by
    (1 - mask) (SSIM needs a whole image; its kernel shrinks for tiny images). A mask covering
    the whole image gives NaN (PIE-Bench drops those). Also ``changed``: the RMS change inside the
    mask (how much was edited; NaN without a mask).
    """
    from .metrics import ssim

    if not isinstance(source, torch.Tensor) or not isinstance(edited, torch.Tensor):
        raise TypeError("source and edited must be image tensors (B, C, H, W)")
    if source.shape != edited.shape or source.dim() != 4:
        raise ValueError(f"source and edited must be image batches of one shape (B, C, H, W); got "
                         f"{tuple(source.shape)} and {tuple(edited.shape)}")
    a, b = _unit(source, value_range), _unit(edited, value_range)
    m = _image_mask(mask, a)
    bg = (1 - m).expand_as(a)
    area = bg.sum(dim=(1, 2, 3))
    mse = (bg * (a - b) ** 2).sum(dim=(1, 2, 3)) / area
    mse = torch.where(area > 0, mse, torch.full_like(mse, float("nan")))
    psnr = 10 * torch.log10(1.0 / mse)
    s = torch.stack([ssim((a[i:i + 1] * bg[i:i + 1]), (b[i:i + 1] * bg[i:i + 1]), data_range=1.0)
                     for i in range(a.shape[0])])
    s = torch.where(area > 0, s, torch.full_like(s, float("nan")))
    fg = m.expand_as(a)
    inside = fg.sum(dim=(1, 2, 3))
    changed = ((fg * (a - b) ** 2).sum(dim=(1, 2, 3)) / inside).sqrt()
    return {"psnr": psnr, "mse": mse, "ssim": s, "changed": changed}


def digit_success(images: torch.Tensor, target: Any) -> torch.Tensor:
    """True where the course's digit classifier (``invlab.quality.classify``) reads ``target``
    in the image (``(B, 1, H, W)`` in [-1, 1], H and W multiples of 8)."""
    from .quality import classify

    got = torch.as_tensor(classify(images))
    want = torch.as_tensor(target).reshape(-1).expand(images.shape[0]).to(got.dtype)
    return got == want


def class_log_ratio(model: Denoiser, x0: torch.Tensor, cond_a: Any, cond_b: Any, *, levels: int = 32,
                    draws: int = 4, seed: int = 0) -> torch.Tensor:
    """The model's own evidence for ``cond_a`` over ``cond_b`` at the clean ``x0`` (sample space):
    an estimate of log p(x0 | a) - log p(x0 | b) from the difference of the two conditions'
    diffusion ELBOs. In the VP convention the ELBO's noise-dependent part is
    (1/2) * integral ||x0 - x0_hat||^2 dSNR = integral ||eps - eps_hat(x_t)||^2 d(lambda) (x0's error
    is eps's divided by alpha/sigma), so

        log-ratio ~= sum_i (lambda_i - lambda_{i+1}) * mean_eps( ||eps - eps(x_t, b)||^2 - ||eps - eps(x_t, a)||^2 )

    over ``levels`` equal label intervals of the schedule, each at its midpoint label, with
    ``draws`` noises per interval shared by both conditions (their difference then has little
    variance). Positive: the model finds ``x0`` likelier under ``a``. The schedule's ends truncate
    the integral, which shrinks the magnitude (most for a wrong condition near the clean end) but
    not the sign. It needs only the model, so it measures edit success where no classifier
    exists (photos). Returns one value per sample (float64, on the CPU). NFE: 2 x levels x draws."""
    if not isinstance(model, Denoiser):
        raise TypeError(f"model must be an invlab Denoiser; got {type(model).__name__}")
    if isinstance(levels, bool) or not isinstance(levels, int) or levels < 2:
        raise ValueError(f"levels must be an int >= 2 (got {levels!r}); e.g. levels=32")
    if isinstance(draws, bool) or not isinstance(draws, int) or draws < 1:
        raise ValueError(f"draws must be an int >= 1 (got {draws!r})")
    if not isinstance(x0, torch.Tensor):
        raise TypeError(f"x0 must be a tensor (B, *model.sample_shape); got {type(x0).__name__}")
    x0 = model.check_input(x0, "x0")
    cond_a, cond_b = (model.check_cond(c, x0.shape[0], x0) for c in (cond_a, cond_b))
    T = model.schedule.num_train_timesteps
    labels = torch.linspace(0, T - 1, levels + 1, dtype=torch.float64)
    lv = [model.schedule.level(float(t)) for t in labels]
    gen = torch.Generator().manual_seed(seed)
    total = torch.zeros(x0.shape[0], dtype=torch.float64)
    with torch.no_grad():
        for i in range(levels):
            mid = model.schedule.level(float((labels[i] + labels[i + 1]) / 2))  # the interval's midpoint label
            weight = lv[i].lam - lv[i + 1].lam                                   # d(lambda) of the interval
            for _ in range(draws):
                eps = torch.randn(x0.shape, generator=gen, dtype=torch.float64).to(device=x0.device, dtype=x0.dtype)
                xt = mid.alpha * x0 + mid.sigma * eps
                ea = model.eps(xt, mid.label, cond_a).eps
                eb = model.eps(xt, mid.label, cond_b).eps
                da = ((eps - ea).double() ** 2).flatten(1).sum(1)
                db = ((eps - eb).double() ** 2).flatten(1).sum(1)
                total += (weight * (db - da) / draws).cpu()
    return total


class _CallableModule(__import__("types").ModuleType):
    """``invlab.edit`` is this module (``invlab.edit.edit_metrics``, ``invlab.edit.EditResult``);
    calling it calls :func:`edit` (``invlab.edit(model, x0, 3, 8, ...)``), as ``invlab.reconstruct`` does."""

    def __call__(self, *args: Any, **kwargs: Any) -> EditResult:
        return edit(*args, **kwargs)


__import__("sys").modules[__name__].__class__ = _CallableModule
