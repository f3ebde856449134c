"""Do the ground-truth-free diagnostics of ``invlab.diagnose`` track the true error? (issue 14, item 1)

On generated images the truth is known: sample x0 from a known z_T and keep the sampling
trajectory x_0..x_N (levels clean -> noisy after flipping). Then, for a diagnosed inversion of x0:

* **per step** (naive DDIM inversion, several step counts and guidances): the true local error
  ``RMS(naive_step_k(x_k) - x_{k+1})`` (the method's step started from the *true* state, against
  the true next state) against ``forward_residual[k]`` and ``local_error[k]``; the true
  trajectory's x0-prediction drift ``RMS(x0_hat(x_{k+1}) - x_0)`` against ``x0_drift[k]``;
* **per run** (naive, exact and fixed-point inversions at every setting): the true noise error
  ``RMS(z_T_hat - z_T)`` against the round trip's ``recon_rmse``, the largest ``local_error``, the
  largest ``forward_residual``, PSNR and the recovered noise's distance from white noise
  (``|var - 1| + |autocorr|``).

Correlations are Pearson's on log10 values (errors span decades; values are floored at 1e-16),
reported with the number of points; PSNR enters as -PSNR/20 (a log10 RMS in disguise).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import torch

__all__ = ["DiagnoseValidation", "validate_diagnose"]

FLOOR = 1e-16


def _log(v) -> np.ndarray:
    return np.log10(np.maximum(np.asarray(v, dtype=float), FLOOR))


def _corr(a, b) -> float:
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    ok = np.isfinite(a) & np.isfinite(b)
    if ok.sum() < 3 or np.std(a[ok]) == 0 or np.std(b[ok]) == 0:
        return float("nan")
    return float(np.corrcoef(a[ok], b[ok])[0, 1])


@dataclass
class DiagnoseValidation:
    """Per-step and per-run pairs (diagnostic, truth) and their correlations."""

    steps: dict[str, np.ndarray]          # pooled per-step arrays of the naive runs
    runs: list[dict[str, Any]]            # one row per diagnosed run
    correlations: dict[str, float]
    counts: dict[str, int] = field(default_factory=dict)

    def table(self) -> str:
        lines = [f"{'diagnostic vs truth':58s} {'r':>7s} {'points':>7s}"]
        for k, v in self.correlations.items():
            lines.append(f"{k:58s} {v:7.3f} {self.counts.get(k, 0):7d}")
        return "\n".join(lines)


def _true_local_naive(model, truth: torch.Tensor, levels, cond, w) -> np.ndarray:
    """RMS(naive_step_k(x_k) - x_{k+1}) with the true states (target label, as invlab's naive)."""
    from ..steps import ddim_step, x0_from_eps

    out = []
    c = model.check_cond(cond, truth.shape[1], truth[0])
    with torch.no_grad():
        for k in range(len(levels) - 1):
            cur, nxt = levels[k], levels[k + 1]
            eps = model.eps(truth[k], float(nxt.label), c, w).eps
            step = ddim_step(x0_from_eps(truth[k], eps, cur), eps, nxt)
            out.append(float((step - truth[k + 1]).double().pow(2).mean().sqrt()))
    return np.array(out)


def _true_drift(model, truth: torch.Tensor, levels, cond, w) -> np.ndarray:
    from ..steps import x0_hat

    c = model.check_cond(cond, truth.shape[1], truth[0])
    out = []
    with torch.no_grad():
        for k in range(1, len(levels)):
            o = model.eps(truth[k], float(levels[k].label), c, w)
            x0 = x0_hat(truth[k], o.eps, levels[k], o.x0)
            out.append(float((x0 - truth[0]).double().pow(2).mean().sqrt()))
    return np.array(out)


def validate_diagnose(model, steps: Sequence[int] = (5, 10, 20, 50), guidance: Sequence[float] = (1.0, 3.0),
                      methods: Sequence[Any] = ("naive", ("fixed-point, 2 iterations", "fixed-point", {"max_iter": 2}), "exact"), batch: int = 2, seed: int = 0,
                      cond: Any = "auto") -> DiagnoseValidation:
    """Diagnose inversions of generated images and pair each diagnostic with its true counterpart
    (see the module docstring). ``cond="auto"``: classes 0, 1, ... for class-conditional models
    (None otherwise); guidance values other than 1 need a condition. ``methods``: names, or
    ``(label, method, options)`` for a method with options (a budget-limited solve gives errors
    between naive's and exact's)."""
    from ..diagnose import diagnose
    from ..sampling import noise, sample
    from ..trace import ConvergenceWarning, Recorder

    if cond == "auto":
        cond = (torch.arange(batch) % int(model.num_classes)).tolist() if model.num_classes else None
    dtype = torch.float64 if getattr(model, "dtype", torch.float64) == torch.float64 else torch.float32
    z = noise(model, batch, seed=seed, dtype=dtype)
    pooled: dict[str, list] = {"forward_residual": [], "local_error": [], "true_local": [], "x0_drift": [],
                               "true_drift": [], "attribution": []}
    runs = []
    for n in steps:
        for w in guidance:
            c = cond if (cond is not None or w == 1.0) else None
            if c is None and w != 1.0:
                continue
            ref = sample(model, z, n, "ddim", w, c, hooks=[Recorder(keys=("x_next",))])
            truth = ref.latents().flip(0)                     # clean -> noisy
            for entry in methods:
                label, m, opts = (entry, entry, {}) if isinstance(entry, str) else entry
                with warnings.catch_warnings():     # a budget-limited solve warns by design
                    warnings.simplefilter("ignore", ConvergenceWarning)
                    d = diagnose(model, ref.final, cond=c, steps=n, method=m, guidance=w, **opts)
                true_noise = float((d.inversion.final - z).double().pow(2).mean().sqrt())
                nl = d.noise
                white = (abs(nl["var"] - 1) + abs(nl.get("autocorr_h") or 0) + abs(nl.get("autocorr_w") or 0)
                         if "var" in nl else float("nan"))
                runs.append({"steps": n, "guidance": w, "method": label, "true_noise_rmse": true_noise,
                             "recon_rmse": d.reconstruction["recon_rmse"], "psnr": d.reconstruction["psnr"],
                             "max_local_error": float(np.max(d.local_error)),
                             "max_forward_residual": float(np.max(d.forward_residual)), "noise_whiteness_gap": white})
                if label == "naive":
                    levels = list(d.inversion.levels)
                    pooled["forward_residual"].append(d.forward_residual)
                    pooled["local_error"].append(d.local_error)
                    pooled["attribution"].append(d.attribution)
                    pooled["true_local"].append(_true_local_naive(model, truth, levels, c, w))
                    pooled["x0_drift"].append(d.x0_drift)
                    pooled["true_drift"].append(_true_drift(model, truth, levels, c, w))
    st = {k: np.concatenate(v) if v else np.array([]) for k, v in pooled.items()}
    tn = _log([r["true_noise_rmse"] for r in runs])
    corr = {
        "per step: forward residual vs true local error (naive)": _corr(_log(st["forward_residual"]), _log(st["true_local"])),
        "per step: local error vs true local error (naive)": _corr(_log(st["local_error"]), _log(st["true_local"])),
        "per step: x0 drift vs the true trajectory's drift (naive)": _corr(st["x0_drift"], st["true_drift"]),
        "per run: recon RMS vs true noise RMSE": _corr(_log([r["recon_rmse"] for r in runs]), tn),
        "per run: max local error vs true noise RMSE": _corr(_log([r["max_local_error"] for r in runs]), tn),
        "per run: max forward residual vs true noise RMSE": _corr(_log([r["max_forward_residual"] for r in runs]), tn),
        "per run: -PSNR/20 vs true noise RMSE": _corr([-(r["psnr"] if r["psnr"] is not None else np.nan) / 20
                                                       for r in runs], tn),
        "per run: noise whiteness gap vs true noise RMSE": _corr(_log([r["noise_whiteness_gap"] for r in runs]), tn),
    }
    naive = [r for r in runs if r["method"] == "naive"]
    tnn = _log([r["true_noise_rmse"] for r in naive])
    corr["naive runs only: recon RMS vs true noise RMSE"] = _corr(_log([r["recon_rmse"] for r in naive]), tnn)
    corr["naive runs only: max local error vs true noise RMSE"] = _corr(_log([r["max_local_error"] for r in naive]), tnn)
    counts = {k: (len(st["true_local"]) if k.startswith("per step") else len(naive) if k.startswith("naive")
                  else len(runs)) for k in corr}
    return DiagnoseValidation(st, runs, corr, counts)
