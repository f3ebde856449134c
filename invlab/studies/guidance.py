"""Reconstruction error as a function of the classifier-free guidance scale, per method."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any, Sequence

import torch

from ..metrics import nmse
from ..trace import ConvergenceWarning
from .errors import DEFAULT_METHODS, run_methods

__all__ = ["GuidanceSweep", "guidance_sweep", "convergence_map", "second_roots"]


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


def second_roots(model, z_T: torch.Tensor, steps: int, guidance: float, cond: Any, rel: float = 1e-4) -> list[dict[str, Any]]:
    """Test the explanation "a large step's equation has more than one solution".

    Sample from ``z_T`` (the true latent at every level is then known), invert with exact
    inversion, and per sample find the first step whose solve *converged* but whose result left
    the truth (NMSE > ``rel``) while its input was still on the truth (NMSE < ``rel`` ** 2). At that
    step the true noisier latent y* solves the same equation Phi(y) = x_t as the solver's y_hat
    (the sampler produced x_t from y*), so two different roots are exhibited. Returns one dict per
    such sample: sample, step, levels, ``root_distance`` (NMSE between y_hat and y*),
    ``residual_solver`` / ``residual_truth`` / ``residual_midpoint`` (RMS of Phi(y) - x_t at each
    and halfway between them: large there means two separate roots, not one flat valley) and the
    solver's ``tol``."""
    from ..inversion import invert
    from ..sampling import sample
    from ..trace import Recorder
    from .solvers import ddim_phi

    ref = sample(model, z_T, steps, "ddim", guidance, cond, hooks=[Recorder(keys=("x_next",))])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        inv = invert(model, ref.final, steps, "ddim", "exact", guidance, cond, hooks=[Recorder(keys=("x_cur", "x_next"))])
    truth = inv.aligned(ref)                        # truth[k]: the true latent at the inversion's level k
    c_all = model.check_cond(cond, z_T.shape[0], z_T)
    found = []
    with torch.no_grad():
        for b in range(z_T.shape[0]):
            for k, r in enumerate(inv.records):
                x_t, y_hat = r.x_cur[b:b + 1].to(z_T.dtype), r.x_next[b:b + 1].to(z_T.dtype)
                t_true, y_true = truth[k][b:b + 1].to(z_T.dtype), truth[k + 1][b:b + 1].to(z_T.dtype)
                if float(nmse(x_t, t_true)) >= rel ** 2:
                    break                              # the input already left the truth: no clean test
                if float(nmse(y_hat, y_true)) <= rel:
                    continue
                if not r.extras.get("converged"):
                    break                              # an unconverged step: not a root
                lt, ls = inv.levels[k], inv.levels[k + 1]
                c = None if c_all is None else c_all[b:b + 1]
                res = [float((ddim_phi(model, y, ls, lt, c, guidance) - x_t).pow(2).mean().sqrt())
                       for y in (y_hat, y_true, (y_hat + y_true) / 2)]
                found.append({"sample": b, "step": k, "from_label": ls.label, "to_label": lt.label,
                              "root_distance": float(nmse(y_hat, y_true)), "residual_solver": res[0],
                              "residual_truth": res[1], "residual_midpoint": res[2], "tol": r.extras.get("tol")})
                break
    return found
