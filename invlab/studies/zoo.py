"""Every inversion method on the same footing: equal NFE budgets, same images, same metrics.

For one model, guidance and number of DDIM steps, :func:`run_zoo` samples x0 from known noise
z_T (or takes a given x0, e.g. real images: ``x0=``), inverts x0 with every *entry* (a label, a
method of ``invlab.METHODS`` and its options), regenerates x0_hat with ``invlab.reconstruct`` (as
each method prescribes: side information of null-text, negative-prompt and direct inversion
included) and returns one row per entry.

**Budgets.** :func:`matched_entries` gives every method that has a cost knob the setting that
spends at most ``m`` NFE per step (``m * steps`` in all), for each multiple ``m`` of naive
inversion's cost (:data:`KNOBS`, one rule per method; the rules are read off each method's
accounting, see there). A method without a knob (naive, EasyInv, negative-prompt, direct) costs
1x and appears once. A method registered later that has no rule here runs once at its defaults,
so a new method is never silently left out. :data:`EXTRA_KNOBS` holds opt-in variants (null-text at
lr 0.1), passed as ``matched_entries(..., extra=EXTRA_KNOBS)``.

**Sampled or real.** By default x0 is sampled from z_T at the guidance of the inversion
(``source`` "sampled"): the noise error is known, and the images are exactly what the sampler
makes, which favours naive inversion. With ``x0=`` (the model's input: images for pixel models,
latents for latent models, e.g. from :func:`invlab.studies.families.real_digits`) that input is
inverted instead (``source`` "real"): there is no true noise (``noise_nmse`` is NaN) and the
condition defaults to ``labels``. This is where the condition-repairing methods (null-text,
negative-prompt) earn their cost.

**Rows** (:data:`ROW_FIELDS`): every error is the **median over the batch** of per-sample values
(robust to one sample whose solve diverged; the per-sample values are kept in ``*_samples``):

* ``source``: "sampled" (x0 sampled from known noise) or "real" (x0 given);
* ``noise_nmse``: ||z_T_hat - z_T||^2 / ||z_T||^2 (for the pivot methods, naive inversion at w = 1,
  so it measures their pivot, not what they reconstruct with); NaN for a given x0 (no truth);
* ``image_nmse``: ||x0_hat - x0||^2 / ||x0||^2 on images: for latent models both latents are
  decoded first (``latent_nmse`` is then the error of the latents themselves);
* ``psnr`` (dB), ``ssim``: on the images clamped to [-1, 1], data range 2 (``psnr`` is inf for a
  reconstruction equal to the input);
* ``nfe``: the inversion's ``trajectory.nfe`` (one NFE = one guided-eps evaluation, a CFG pair
  included; Newton's tangent-carrying passes count, as the method counts them);
  ``nfe_reconstruct``: the reconstruction's; ``backward_passes``: sum of the records'
  ``extras["backward_passes"]`` (0 where absent); ``jvp_passes``: Newton's Jacobian-vector products
  (also inside ``nfe``); ``seconds_invert`` / ``seconds_reconstruct``: wall clock;
* ``converged_steps`` / ``solved_steps``: for methods that solve an equation per step;
* ``error``: ``None``, or why the method refused this configuration (the row's numbers are then
  NaN): a refusal is recorded, never raised.
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch

from ..metrics import nmse, pareto_front, psnr, ssim
from ..trace import Recorder

__all__ = ["EXTRA_KNOBS", "Entry", "KNOBS", "KNOB_NAMES", "NO_KNOB", "ROW_FIELDS", "default_cond", "matched_entries",
           "pareto_front", "pareto_points", "run_zoo", "series", "uses_side_info", "winners"]

#: methods whose cost is fixed at one NFE per step (no budget knob)
NO_KNOB = ("naive", "easyinv", "negative-prompt", "direct")
#: methods that only apply to their own solvers or models (the exact-by-construction samplers; the flow
#: solvers, on flow-matching models), not to a VP model's DDIM grid
OWN_SOLVERS_ONLY = ("algebraic", "rf-solver", "fireflow", "uni-inv", "rf-inversion")


def _exact(m: int) -> dict | None:
    # reuse init (0 NFE, the first step 1) + max_iter + 1 Phi evaluations + 1 re-evaluation of the
    # accepted iterate when the solve stops unconverged: <= max_iter + 2 per step
    return {"max_iter": m - 2} if m >= 2 else None


def _fixed_point(m: int) -> dict | None:
    # keep="best" (the default) may spend one NFE more than max_iter per step, to evaluate its best
    # iterate: max_iter = m - 1. At m = 2 (max_iter >= 2) keep="last" (the reference codes' choice),
    # which spends exactly max_iter. (keep="last" at every budget measured worse at 8x and 16x on
    # digits-latent, w = 7.5, 10 steps: the last Anderson iterate of an unconverged solve.)
    if m < 2:
        return None
    return {"max_iter": 2, "keep": "last"} if m == 2 else {"max_iter": m - 1}


def _renoise(m: int) -> dict | None:
    # K + 1 NFE per step (first steps capped at first_max_renoise_steps, so fewer there); the average
    # over the last two predictions, as the default (8, 10) does for K = 9; K = 1 takes the last iterate
    k = m - 1
    if k < 1:
        return None
    return {"renoise_steps": k, "average_range": (k - 1, k + 1)} if k >= 2 else {"renoise_steps": 1, "average": False}


def _newton(m: int) -> dict | None:
    # reuse init (0 NFE, the first step 1); u Newton updates with at most k GMRES products each:
    # (u + 1) residual evaluations + u k JVPs <= m. k = 2 (measured on gmm-digits / digits: two
    # Krylov directions per update beat one, and more updates beat longer solves at equal NFE)
    k = 2
    u = (m - 1) // (k + 1)
    if u < 1:
        return None
    return {"max_iter": u, "krylov_iters": k}


def _newton_sign(m: int) -> dict | None:
    # the released code's sign step (preset="reference"): max_iter candidates, one NFE each
    return {"preset": "reference", "max_iter": m} if m >= 2 else None


def _null_text(m: int) -> dict | None:
    # pivot (1) + eps_c (1) + inner_steps Adam steps (1 NFE + 1 backward pass each) + the final guided step (1)
    return {"inner_steps": m - 3} if m >= 4 else None


def _null_text_lr(lr: float) -> Callable[[int], dict | None]:
    # the same budget rule at another Adam learning rate (the reference 1e-2 is tuned to CLIP
    # embeddings; the class embeddings of the digit models need larger steps)
    def rule(m: int) -> dict | None:
        opts = _null_text(m)
        return None if opts is None else {**opts, "lr": lr}

    return rule


#: variant name -> (method, rule: NFE per step m -> the options that spend at most m per step, or None)
KNOBS: dict[str, tuple[str, Callable[[int], dict | None]]] = {
    "exact": ("exact", _exact),
    "fixed-point": ("fixed-point", _fixed_point),
    "renoise": ("renoise", _renoise),
    "newton": ("newton", _newton),
    "newton-sign": ("newton", _newton_sign),
    "null-text": ("null-text", _null_text),
}

#: opt-in variants with the same form as :data:`KNOBS` (``matched_entries(..., extra=EXTRA_KNOBS)``):
#: null-text at lr 0.1, ten times the reference's 1e-2
EXTRA_KNOBS: dict[str, tuple[str, Callable[[int], dict | None]]] = {
    "null-text-lr0.1": ("null-text", _null_text_lr(0.1)),
}

#: method -> the option that sets its budget
KNOB_NAMES = {"exact": "max_iter", "fixed-point": "max_iter", "renoise": "renoise_steps",
              "newton": "max_iter, krylov_iters", "newton-sign": "max_iter", "null-text": "inner_steps",
              "null-text-lr0.1": "inner_steps (lr 0.1)"}


@dataclass(frozen=True)
class Entry:
    """One inversion to run: a display label, a method and its options; ``multiple`` is the
    intended budget in NFE per step (None: the method's own cost)."""

    label: str
    method: str
    options: dict = field(default_factory=dict)
    multiple: float | None = None


def matched_entries(multiples: Sequence[int] = (2, 4, 8), methods: Sequence[str] | None = None,
                    extra: Mapping[str, tuple[str, Callable[[int], dict | None]]] | None = None) -> list[Entry]:
    """Entries at matched budgets: for every method with a knob (:data:`KNOBS`) and every multiple
    ``m`` it can reach, the setting that spends at most ``m`` NFE per step; every method without
    one (:data:`NO_KNOB`) once, at 1x; any other method once at its defaults.

    ``methods`` defaults to ``invlab.METHODS`` at call time (so a method registered later is
    included); names not registered are skipped. ``extra``: more variants of the form of
    :data:`KNOBS` (e.g. :data:`EXTRA_KNOBS`), each labelled ``"{variant} {m}x"`` after the method's own.
    """
    from ..inversion import METHODS

    knobs = dict(KNOBS)
    for v in extra or {}:
        if v in knobs:
            raise ValueError(f"extra variant {v!r} is already in KNOBS")
    knobs.update(extra or {})
    names = [m for m in METHODS if m not in OWN_SOLVERS_ONLY] if methods is None else [m for m in methods if m in METHODS]
    out: list[Entry] = []
    for name in names:
        if name in NO_KNOB:
            out.append(Entry(name, name, {}, 1))
            continue
        variants = [v for v, (meth, _) in knobs.items() if meth == name]
        if not variants:
            out.append(Entry(f"{name} (defaults)", name, {}, None))
            continue
        for v in variants:
            rule = knobs[v][1]
            for m in multiples:
                opts = rule(int(m))
                if opts is not None:
                    out.append(Entry(f"{v} {m}x", name, opts, m))
    return out


def default_cond(model, batch: int, prompt: str = "a photo of a digit") -> Any:
    """Class ids 0, 1, ... for class models, ``prompt`` for text models, None when unconditional."""
    if model.num_classes:
        return torch.arange(batch) % model.num_classes
    return prompt if model.is_conditional else None


def uses_side_info(method: str) -> bool:
    """Whether ``invlab.reconstruct`` needs more than the inverted noise for this method (per-step
    embeddings, a swapped condition, stored pivots): such a method is compared on image error
    with an advantage the noise-only methods do not have."""
    from ..reconstruct import NOISE_ONLY

    return method not in NOISE_ONLY


def _images(model, x: torch.Tensor) -> torch.Tensor:
    if getattr(model, "is_latent", False):
        with torch.no_grad():
            return model.decode(x)
    return x


def _median(v: torch.Tensor | Sequence[float]) -> float:
    a = np.asarray(v.detach().double().cpu() if isinstance(v, torch.Tensor) else v, dtype=float)
    return float(np.median(a)) if a.size else float("nan")


def _per_sample_ssim(a: torch.Tensor, b: torch.Tensor) -> list[float]:
    return [float(ssim(a[i:i + 1], b[i:i + 1], data_range=2.0)) for i in range(a.shape[0])]


#: the fields of every row :func:`run_zoo` returns
ROW_FIELDS = ("model", "source", "method", "label", "options", "side_info", "guidance", "steps", "solver", "batch",
              "dtype", "multiple", "budget_nfe", "nfe", "nfe_per_step", "nfe_reconstruct", "backward_passes",
              "jvp_passes", "seconds_invert", "seconds_reconstruct", "noise_nmse", "image_nmse", "latent_nmse", "psnr",
              "ssim", "converged_steps", "solved_steps", "aggregate", "noise_nmse_samples", "image_nmse_samples",
              "error", "input", "reconstruction")


def _row(model, entry: Entry, guidance: float, steps: int, solver: str, batch: int, dtype,
         source: str = "sampled") -> dict[str, Any]:
    nan = float("nan")
    row = dict.fromkeys(ROW_FIELDS)
    row.update(model=model.name, source=source, method=entry.method, label=entry.label, options=dict(entry.options),
               side_info=uses_side_info(entry.method),
               guidance=float(guidance), steps=int(steps), solver=solver, batch=int(batch), dtype=str(dtype),
               multiple=entry.multiple, budget_nfe=None if entry.multiple is None else int(entry.multiple * steps),
               nfe=0, nfe_per_step=nan, nfe_reconstruct=0, backward_passes=0, jvp_passes=0, seconds_invert=nan,
               seconds_reconstruct=nan, noise_nmse=nan, image_nmse=nan, psnr=nan, ssim=nan, aggregate="median",
               noise_nmse_samples=[], image_nmse_samples=[])
    return row


def run_zoo(model, entries: Sequence[Entry], steps: int = 10, guidance: float = 1.0, batch: int | None = None,
            seed: int = 0, cond: Any = "default", dtype: torch.dtype | None = None, solver: str = "ddim",
            show_progress: bool = False, keep_images: bool = False, x0: torch.Tensor | None = None,
            labels: Any = None) -> list[dict[str, Any]]:
    """Sample x0 from z_T = ``invlab.noise(model, batch, seed)`` (or take the given ``x0``), then
    invert and reconstruct it with every entry; one row (:data:`ROW_FIELDS`) per entry, errors the
    median over the batch.

    ``x0``: the model's input to invert instead of a sample (images in [-1, 1] for pixel models,
    latents for latent models, shape ``(B, *model.sample_shape)``), e.g. the first value of
    :func:`invlab.studies.families.real_digits`; the rows then have ``source`` "real" and NaN noise
    errors (no true noise), ``batch`` is ``B`` (a different ``batch`` raises) and ``seed`` is unused.
    ``labels``: with ``x0``, the class ids of its images, the default condition.
    ``batch``: the number of samples (default 4). ``cond``: "default" picks ``labels`` when given,
    else :func:`default_cond` (class ids 0..batch-1 mod the number of classes, a prompt for text
    models); anything else is passed to sample / invert as it is. ``dtype``: of z_T, x0 and the
    states (default: the model's own, float64 for the analytic mixtures). A method that raises on
    this configuration gives a row with ``error`` set and NaN errors.
    ``keep_images``: each row also holds the input images (``input``; decoded for latent models)
    and the entry's reconstruction (``reconstruction``), CPU tensors (else both None).
    """
    from ..inversion import invert
    from ..reconstruct import reconstruct
    from ..sampling import noise, sample

    dtype = dtype or getattr(model, "dtype", torch.float32)
    no_rec = [Recorder(keys=())]
    if x0 is not None:
        if not isinstance(x0, torch.Tensor) or tuple(x0.shape[1:]) != tuple(model.sample_shape) or x0.dim() < 2:
            got = tuple(x0.shape) if isinstance(x0, torch.Tensor) else type(x0).__name__
            raise ValueError(f"x0 must be a tensor of shape (B, {', '.join(map(str, model.sample_shape))}) "
                             f"(the model's input: {'latents' if getattr(model, 'is_latent', False) else 'images'}); "
                             f"got {got}")
        if batch is not None and int(batch) != x0.shape[0]:
            raise ValueError(f"batch={batch} but x0 holds {x0.shape[0]} samples; leave batch out with x0")
        batch = int(x0.shape[0])
        source = "real"
        x0 = x0.detach().to(dtype)
        z = None
        if labels is not None:
            labels = torch.as_tensor(labels).long()
            if labels.shape != (batch,):
                raise ValueError(f"labels must hold one class id per sample of x0 ({batch}); got shape "
                                 f"{tuple(labels.shape)}")
        if isinstance(cond, str) and cond == "default":
            cond = labels if labels is not None else default_cond(model, batch)
    else:
        if labels is not None:
            raise ValueError("labels go with x0 (the class ids of given images); for sampled images pass cond=")
        batch = 4 if batch is None else int(batch)
        source = "sampled"
        if isinstance(cond, str) and cond == "default":
            cond = default_cond(model, batch)
        z = noise(model, batch, seed=seed, dtype=dtype)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fwd = sample(model, z, steps, solver, guidance, cond, hooks=no_rec)
        x0 = fwd.final
    img0 = _images(model, x0)
    img0_c = img0.clamp(-1, 1)
    rows = []
    items = list(entries)
    if show_progress:
        from tqdm.auto import tqdm

        items = tqdm(items, desc=f"{model.name} w={guidance:g} N={steps}", leave=False)
    for entry in items:
        row = _row(model, entry, guidance, steps, solver, batch, dtype, source)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # convergence warnings: the row carries converged_steps
                model.reset_counters()
                t0 = time.perf_counter()
                inv = invert(model, x0, steps, solver, entry.method, guidance, cond, hooks=no_rec, **entry.options)
                t1 = time.perf_counter()
                back = reconstruct(model, inv, hooks=no_rec)
                t2 = time.perf_counter()
        except Exception as exc:  # a refusal (grid, model, guidance) or a failure: recorded, not raised
            row["error"] = f"{type(exc).__name__}: {exc}"[:300]
            rows.append(row)
            continue
        x_hat = back.final
        img = _images(model, x_hat)
        noise_s = (nmse(inv.final, z, reduction="none") if z is not None
                   else torch.full((batch,), float("nan"), dtype=torch.float64))
        image_s = nmse(img, img0, reduction="none")
        conv = inv.convergence()
        row.update(
            nfe=int(inv.nfe), nfe_per_step=inv.nfe / steps, nfe_reconstruct=int(back.nfe),
            backward_passes=int(sum(r.extras.get("backward_passes", 0) for r in inv.records)),
            jvp_passes=int(sum(r.extras.get("jvp_passes", 0) for r in inv.records)),
            seconds_invert=t1 - t0, seconds_reconstruct=t2 - t1,
            noise_nmse=_median(noise_s), image_nmse=_median(image_s),
            latent_nmse=_median(nmse(x_hat, x0, reduction="none")) if getattr(model, "is_latent", False) else None,
            psnr=_median(psnr(img.clamp(-1, 1), img0_c, data_range=2.0)),
            ssim=_median(_per_sample_ssim(img.clamp(-1, 1), img0_c)),
            converged_steps=None if conv is None else conv["converged"],
            solved_steps=None if conv is None else conv["solved"],
            noise_nmse_samples=[float(v) for v in noise_s], image_nmse_samples=[float(v) for v in image_s])
        if keep_images:
            row.update(input=img0.detach().cpu(), reconstruction=img.detach().cpu())
        rows.append(row)
    return rows


def series(row: dict[str, Any]) -> str:
    """The method variant a row belongs to: its label without the budget ("newton-sign 4x" ->
    "newton-sign"), or the whole label for an entry without one."""
    return row["label"].rsplit(" ", 1)[0] if row.get("multiple") is not None and row["label"].endswith("x") \
        else row["label"]


def pareto_points(rows: Sequence[dict[str, Any]], metric: str = "image_nmse", with_images: bool = False,
                  hollow_steps: int | None = None) -> list[dict[str, Any]]:
    """The rows that ran, as points for :func:`invlab.plots.plot_pareto`: ``series`` (the method
    variant), ``label``, ``cost`` (inversion NFE), ``error`` (``metric``), ``side_info``, ``model``,
    ``guidance``, ``steps``, ``source``, ``hollow`` (steps == ``hollow_steps``) and, with ``with_images``, the
    row's ``reconstruction`` (run :func:`run_zoo` with ``keep_images=True``)."""
    out = []
    for r in rows:
        if r.get("error") or math.isnan(r[metric]):
            continue
        p = {"series": series(r), "label": r["label"], "cost": r["nfe"], "error": r[metric],
             "side_info": r["side_info"], "model": r["model"], "guidance": r["guidance"], "steps": r["steps"],
             "source": r.get("source", "sampled"), "hollow": hollow_steps is not None and r["steps"] == hollow_steps}
        if with_images:
            p["reconstruction"] = r.get("reconstruction")
        out.append(p)
    return out


def winners(rows: Sequence[dict[str, Any]], metric: str = "image_nmse", slack: int = 1,
            noise_only: bool = False, tie_factor: float = 2.0, round_off: float = 1e-11) -> list[dict[str, Any]]:
    """For each (model, guidance, steps, source) and each budget multiple m present: the row with the lowest
    ``metric`` among the rows that spent at most m * steps + ``slack`` NFE (``slack``: the first
    step's initial guess that exact and Newton inversion cannot reuse). Equal values go to the
    lower NFE. ``noise_only``: compare only the methods whose result is a noise alone (no side
    information). Sampled and real rows are never compared with each other. Returns dicts with
    model, guidance, steps, source, multiple, label, method, nfe, the
    metric's value, the runner-up's label and value, and ``tie``: True when the runner-up is within
    ``tie_factor`` of the winner or both are below ``round_off`` (float round-off: no winner)."""
    out = []
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["model"], r["guidance"], r["steps"], r.get("source", "sampled")), []).append(r)
    for (model, w, n, source), rs in groups.items():
        ok = [r for r in rs if r["error"] is None and not math.isnan(r[metric])
              and not (noise_only and r["side_info"])]
        for m in sorted({r["multiple"] for r in rs if r["multiple"] is not None}):
            pool = sorted((r for r in ok if r["nfe"] <= m * n + slack), key=lambda r: (r[metric], r["nfe"]))
            if not pool:
                continue
            best = pool[0]
            second = pool[1] if len(pool) > 1 else None
            out.append({"model": model, "guidance": w, "steps": n, "source": source, "multiple": m,
                        "label": best["label"], "method": best["method"], "nfe": best["nfe"], metric: best[metric],
                        "runner_up": None if second is None else second["label"],
                        f"runner_up_{metric}": None if second is None else second[metric],
                        "tie": second is not None and (second[metric] <= tie_factor * best[metric] or
                                                       max(best[metric], second[metric]) < round_off)})
    return out
