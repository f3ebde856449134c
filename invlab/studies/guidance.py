"""Reconstruction error as a function of the classifier-free guidance scale, per method."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any, Sequence

import torch

from ..metrics import nmse
from ..trace import ConvergenceWarning
from .errors import DEFAULT_METHODS, run_methods

__all__ = ["GuidanceSweep", "guidance_sweep", "convergence_map"]


@dataclass
class GuidanceSweep:
    """Per guidance scale w and method: noise NMSE, image NMSE, NFE per step, the exact solver's
    convergence (fraction of steps converged, mean inner iterations), and the images."""

    guidances: list[float]
    methods: list[str]
    rows: dict[tuple[float, str], dict[str, Any]] = field(default_factory=dict)
    originals: dict[float, torch.Tensor] = field(default_factory=dict)

    def series(self, key: str) -> dict[str, list[float]]:
        return {m: [self.rows[(w, m)][key] for w in self.guidances] for m in self.methods}

    def first_unconverged(self, method: str = "exact") -> float | None:
        """The smallest w at which some step of ``method`` did not converge (None if none)."""
        for w in self.guidances:
            if self.rows[(w, method)]["converged_fraction"] < 1.0:
                return w
        return None


def guidance_sweep(model, z_T: torch.Tensor, steps: int, guidances: Sequence[float], cond: Any,
                   methods: dict[str, dict[str, Any]] | None = None, solver: str = "ddim",
                   show_progress: bool = False) -> GuidanceSweep:
    methods = DEFAULT_METHODS if methods is None else methods
    sweep = GuidanceSweep([float(w) for w in guidances], list(methods))
    ws = sweep.guidances
    if show_progress:
        from tqdm.auto import tqdm

        ws = tqdm(ws, desc="guidance", leave=False)
    for w in ws:
        with warnings.catch_warnings():  # convergence is what the sweep measures: it is in the rows, not warned
            warnings.simplefilter("ignore", ConvergenceWarning)
            cmp = run_methods(model, z_T, steps, solver, w, cond, methods)
        sweep.originals[w] = cmp.reference.final
        for name, traj in cmp.runs.items():
            flags = [r.extras.get("converged") for r in traj.records if "converged" in r.extras]
            iters = [r.extras["iterations"] for r in traj.records if "iterations" in r.extras]
            back = cmp.resampled(name)
            sweep.rows[(w, name)] = {
                "noise_nmse": float(nmse(traj.final, z_T)),
                "image_nmse": float(nmse(back, cmp.reference.final)),
                "nfe_per_step": traj.nfe / len(traj),
                "converged_fraction": (sum(map(bool, flags)) / len(flags)) if flags else 1.0,
                "mean_iterations": (sum(iters) / len(iters)) if iters else 0.0,
                "reconstruction": back,
            }
    return sweep


def convergence_map(model, z_T: torch.Tensor, steps_list: Sequence[int], guidances: Sequence[float], cond: Any,
                    show_progress: bool = False) -> dict[str, Any]:
    """Where does exact inversion stop working? For every (steps, w): the fraction of steps whose
    inner solver converged, exact and naive noise NMSE. Returns arrays shaped (len(steps_list),
    len(guidances)) under "converged", "exact", "naive", plus the axes."""
    methods = {"naive": {"method": "naive"}, "exact": {"method": "exact"}}
    shape = (len(steps_list), len(guidances))
    out = {"steps": [int(n) for n in steps_list], "guidances": [float(w) for w in guidances],
           "converged": torch.zeros(shape, dtype=torch.float64), "exact": torch.zeros(shape, dtype=torch.float64),
           "naive": torch.zeros(shape, dtype=torch.float64)}
    cells = [(i, j) for i in range(shape[0]) for j in range(shape[1])]
    if show_progress:
        from tqdm.auto import tqdm

        cells = tqdm(cells, desc="steps x guidance", leave=False)
    for i, j in cells:
        sweep = guidance_sweep(model, z_T, out["steps"][i], [out["guidances"][j]], cond, methods)
        w = out["guidances"][j]
        out["converged"][i, j] = sweep.rows[(w, "exact")]["converged_fraction"]
        out["exact"][i, j] = sweep.rows[(w, "exact")]["noise_nmse"]
        out["naive"][i, j] = sweep.rows[(w, "naive")]["noise_nmse"]
    return out
