"""Exact by construction (issue 13): what EDICT, BDIA and BELM's closed-form inverses cost.

Four measurements, each returning plain rows (dicts) for a table, a plot or a test:

* :func:`round_trip_growth`: image -> invert -> reconstruct, and z_T -> sample -> invert, per
  solver, option, dtype and step count: the max abs error, the same error in units of the dtype's
  unit round-off, and the spread of the inverted real-image latent (the state that explodes);
* :func:`quality_vs_ddim`: the solvers' samples against DDIM's from the same z_T (RMS distance,
  and the digit classifier's accuracy on class-conditional digit models);
* :func:`recovered_noises` and :func:`edit_rows`: real images inverted with each method (naive,
  exact, the three solvers), the ground-truth-free statistics of their z_T_hat
  (:mod:`invlab.studies.noise_stats`), and what sampling that z_T_hat with *another* class does;
* :func:`solve_vs_construct`: exact by solving (``method="exact"`` on DDIM, notebook 06) against
  exact by construction at one step count: NFE per step, round trip in float32 and float64.

Nothing is asserted here; tests and notebook 10 check the numbers.
"""

from __future__ import annotations

import math
import time
from typing import Any, Sequence

import torch

from ..reversible import REVERSIBLE

__all__ = ["DTYPES", "SOLVER_SETTINGS", "edit_rows", "option_label", "quality_vs_ddim", "recovered_noises",
           "round_trip_growth", "solve_vs_construct"]

DTYPES = {"float16": torch.float16, "float32": torch.float32, "float64": torch.float64}

#: the option values swept by default: EDICT's p, BDIA's gamma (BELM has none)
SOLVER_SETTINGS: dict[str, list[dict[str, float]]] = {
    "edict": [{"p": p} for p in (0.8, 0.9, 0.93, 0.97, 1.0)],
    "bdia": [{"gamma": g} for g in (0.5, 0.8, 0.9, 0.96, 1.0)],
    "belm": [{}],
}


def option_label(solver: str, opts: dict | None) -> str:
    """'edict p=0.93', 'bdia gamma=0.5', 'belm', 'ddim'."""
    opts = opts or {}
    return " ".join([solver] + [f"{k}={v:g}" for k, v in opts.items()])


def _quiet():
    from ..trace import Recorder

    return [Recorder(keys=())]


def _check_settings(settings: Sequence[tuple[str, dict]]) -> list[tuple[str, dict]]:
    out = []
    for item in settings:
        if not (isinstance(item, (tuple, list)) and len(item) == 2 and isinstance(item[1], dict)):
            raise TypeError(f"settings are (solver, options) pairs, e.g. ('edict', {{'p': 0.93}}); got {item!r}")
        if item[0] not in REVERSIBLE:
            raise ValueError(f"solver {item[0]!r} is not exact by construction; choose from {REVERSIBLE}")
        out.append((item[0], dict(item[1])))
    return out


def _dtype(name: str) -> torch.dtype:
    if name not in DTYPES:
        raise ValueError(f"dtype {name!r} is not one of {sorted(DTYPES)}")
    return DTYPES[name]


def round_trip_growth(model, x: torch.Tensor, settings: Sequence[tuple[str, dict]], dtypes: Sequence[str],
                      steps_list: Sequence[int], guidance: float = 1.0, cond: Any = None,
                      noise_seed: int = 1) -> list[dict[str, Any]]:
    """Round trips of real inputs ``x`` and of Gaussian noise, per (solver, options), dtype and steps.

    Row keys: solver, label, options, dtype, steps; ``image_err`` (max abs of reconstruct(invert(x))
    - x), ``noise_err`` (max abs of invert(sample(z)) - z, inverted with the sample's companion),
    ``image_err_u`` / ``noise_err_u`` (the same divided by the dtype's unit round-off
    ``torch.finfo(dtype).eps / 2``), ``zhat_std`` (standard deviation of the inverted real-image
    latent: 1 for Gaussian noise), ``nfe_per_step`` and ``finite`` (False when a non-finite value
    stopped a run: the errors are then inf).
    """
    from ..trace import NonFiniteError
    from ..inversion import invert
    from ..reconstruct import reconstruct
    from ..sampling import noise, sample

    rows = []
    for solver, opts in _check_settings(settings):
        for dname in dtypes:
            dtype = _dtype(dname)
            u = torch.finfo(dtype).eps / 2
            for steps in steps_list:
                row: dict[str, Any] = {"solver": solver, "label": option_label(solver, opts), "options": opts,
                                       "dtype": dname, "steps": int(steps)}
                try:
                    xi = x.to(dtype)
                    inv = invert(model, xi, steps, solver, guidance=guidance, cond=cond, hooks=_quiet(), **opts)
                    rec = reconstruct(model, inv, hooks=_quiet())
                    row["image_err"] = (rec.final.double() - xi.double()).abs().max().item()
                    row["zhat_std"] = inv.final.double().std().item()
                    row["nfe_per_step"] = inv.nfe / steps
                    z = noise(model, x.shape[0], seed=noise_seed, dtype=dtype)
                    fwd = sample(model, z, steps, solver, guidance, cond, hooks=_quiet(), solver_options=opts or None)
                    back = invert(model, fwd.final, steps, solver, guidance=guidance, cond=cond, hooks=_quiet(),
                                  companion=fwd.companion, **opts)
                    row["noise_err"] = (back.final.double() - z.double()).abs().max().item()
                    row["finite"] = True
                except NonFiniteError:
                    row.update(image_err=math.inf, noise_err=math.inf, finite=False)
                    row.setdefault("zhat_std", math.inf)
                row["image_err_u"] = row["image_err"] / u
                row["noise_err_u"] = row["noise_err"] / u
                rows.append(row)
    return rows


def quality_vs_ddim(model, steps_list: Sequence[int], settings: Sequence[tuple[str, dict]], guidance: float = 3.0,
                    batch: int = 20, seed: int = 0) -> list[dict[str, Any]]:
    """Each solver's samples against DDIM's from the same z_T (float32, classes ``arange(batch) % K``).

    Row keys: solver, label, options, steps, ``rms_to_ddim`` (RMS over the batch of the pixel
    difference), ``accuracy`` (the digit classifier :func:`invlab.quality.classify` against the
    requested class; None for models that are not 16x16 digit images or not class-conditional),
    ``nfe_per_step``, ``seconds``. The first row of every step count is DDIM itself.
    """
    from ..sampling import noise, sample

    k = int(model.num_classes or 0)
    cond = torch.arange(batch) % k if k else None
    classify = _classifier(model)
    rows = []
    for steps in steps_list:
        z = noise(model, batch, seed=seed, dtype=torch.float32)
        t0 = time.perf_counter()
        ref = sample(model, z, steps, "ddim", guidance, cond, hooks=_quiet())
        rows.append(_quality_row(model, "ddim", {}, steps, ref, ref.final, cond, classify, time.perf_counter() - t0))
        for solver, opts in _check_settings(settings):
            t0 = time.perf_counter()
            out = sample(model, z, steps, solver, guidance, cond, hooks=_quiet(), solver_options=opts or None)
            rows.append(_quality_row(model, solver, opts, steps, out, ref.final, cond, classify,
                                     time.perf_counter() - t0))
    return rows


def _classifier(model):
    shape = tuple(getattr(model, "image_shape", None) or model.sample_shape)
    if not model.num_classes or shape != (1, 16, 16):
        return None
    from ..quality import classify

    return classify


def _images(model, x):
    return model.decode(x) if getattr(model, "is_latent", False) else x


def _quality_row(model, solver, opts, steps, traj, ref, cond, classify, seconds):
    img = _images(model, traj.final)
    acc = None
    if classify is not None:
        acc = float((classify(img) == cond.numpy()).mean())
    return {"solver": solver, "label": option_label(solver, opts), "options": dict(opts), "steps": int(steps),
            "rms_to_ddim": (traj.final.double() - ref.double()).pow(2).mean().sqrt().item(),
            "accuracy": acc, "nfe_per_step": traj.nfe / steps, "seconds": seconds}


#: the methods of item 4: (name, solver, method, options)
NOISE_METHODS: tuple[tuple[str, str, str | None, dict], ...] = (
    ("naive", "ddim", "naive", {}),
    ("exact", "ddim", "exact", {}),
    ("edict", "edict", None, {}),
    ("bdia", "bdia", None, {}),
    ("belm", "belm", None, {}),
)


def recovered_noises(model, x: torch.Tensor, cond: Any, steps: int, guidance: float = 1.0,
                     methods: Sequence[tuple[str, str, str | None, dict]] = NOISE_METHODS) -> dict[str, Any]:
    """Invert real inputs ``x`` with each method; returns ``{name: inversion Trajectory}`` (in order).

    ``methods``: (name, solver, method, options) tuples, by default naive and exact DDIM inversion
    and the three solvers' algebraic inverses with invlab's defaults.
    """
    from ..inversion import invert

    out = {}
    for name, solver, method, opts in methods:
        out[name] = invert(model, x, steps, solver, method, guidance, cond, hooks=_quiet(), **opts)
    return out


def edit_rows(model, inversions: dict[str, Any], source_cond: torch.Tensor, target_cond: torch.Tensor,
              x: torch.Tensor) -> tuple[list[dict[str, Any]], dict[str, torch.Tensor]]:
    """Regenerate each inversion with the source class (reconstruction) and with ``target_cond``
    (the start of an edit), through :func:`invlab.reconstruct` (which carries the solvers' pairs).

    Rows: name, ``recon_rms`` (reconstruction vs input), ``edit_rms`` (edit vs input: how much
    changed), ``edit_accuracy`` (the digit classifier says the target class; None when the model has
    no classifier), ``recon_accuracy`` (it says the source class). Also returns the edited images.
    """
    from ..reconstruct import reconstruct

    classify = _classifier(model)
    rows, edits = [], {}
    src = _images(model, x).double()
    for name, inv in inversions.items():
        rec = _images(model, reconstruct(model, inv, cond=source_cond, hooks=_quiet()).final).double()
        ed = _images(model, reconstruct(model, inv, cond=target_cond, hooks=_quiet()).final).double()
        edits[name] = ed
        row = {"name": name, "recon_rms": (rec - src).pow(2).mean().sqrt().item(),
               "edit_rms": (ed - src).pow(2).mean().sqrt().item(), "edit_accuracy": None, "recon_accuracy": None}
        if classify is not None:
            row["edit_accuracy"] = float((classify(ed.float()) == target_cond.numpy()).mean())
            row["recon_accuracy"] = float((classify(rec.float()) == source_cond.numpy()).mean())
        rows.append(row)
    return rows, edits


def solve_vs_construct(model, x: torch.Tensor, steps: int, guidance: float = 1.0, cond: Any = None,
                       dtypes: Sequence[str] = ("float32", "float64")) -> list[dict[str, Any]]:
    """Exact by solving (DDIM, ``method="exact"``, Algorithm 1 with its defaults) against exact by
    construction (EDICT, BDIA, BELM with invlab's defaults) on real inputs ``x``.

    Rows: name, dtype, ``nfe_per_step`` (inversion), ``image_err`` (max abs of the reconstruction
    of ``x``), ``sampler`` (which sampler the recovered noise belongs to), ``tol`` (the exact
    method's per-step RMS stopping tolerance from its records; None for the algebraic inverses).
    """
    from ..inversion import invert
    from ..reconstruct import reconstruct

    rows = []
    for name, solver, method in (("exact (solve, DDIM)", "ddim", "exact"), ("edict", "edict", None),
                                 ("bdia", "bdia", None), ("belm", "belm", None)):
        for dname in dtypes:
            xi = x.to(_dtype(dname))
            inv = invert(model, xi, steps, solver, method, guidance, cond, hooks=_quiet())
            rec = reconstruct(model, inv, hooks=_quiet())
            tols = [r.extras.get("tol") for r in inv.records if r.extras.get("tol") is not None]
            rows.append({"name": name, "dtype": dname, "nfe_per_step": inv.nfe / steps,
                         "image_err": (rec.final.double() - xi.double()).abs().max().item(),
                         "sampler": "DDIM" if solver == "ddim" else solver.upper(),
                         "tol": max(tols) if tols else None})
    return rows
