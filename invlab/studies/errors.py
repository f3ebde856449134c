"""Run several inversion methods on the same sampled images and compare them against the truth.

The images come from ``invlab.sample``, so the sampling trajectory is the ground truth at every
level: every method's per-step error is known exactly (``Comparison.step_errors``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from ..inversion import invert
from ..metrics import nmse
from ..sampling import sample
from ..trace import Recorder, Trajectory

__all__ = ["Comparison", "DEFAULT_METHODS", "local_step_errors", "restart_from_truth", "run_methods"]

#: display name -> invert() keywords
DEFAULT_METHODS: dict[str, dict[str, Any]] = {
    "naive": {"method": "naive"},
    "easyinv": {"method": "easyinv"},
    "exact": {"method": "exact"},
}


@dataclass
class Comparison:
    """The sampling run (truth) and one inversion per method, all on the same grid."""

    z_T: torch.Tensor
    reference: Trajectory
    runs: dict[str, Trajectory]
    settings: dict[str, Any]
    _back: dict[str, torch.Tensor] = field(default_factory=dict, repr=False)

    def step_errors(self, metric: str = "nmse") -> dict[str, torch.Tensor]:
        return {k: t.errors_to(self.reference, metric) for k, t in self.runs.items()}

    def noise_nmse(self) -> dict[str, float]:
        return {k: float(nmse(t.final, self.z_T)) for k, t in self.runs.items()}

    def resampled(self, name: str) -> torch.Tensor:
        """x0_hat: the image regenerated from the method's result as the method prescribes
        (``invlab.reconstruct``: the sampler from the inverted noise, plus the side information of
        null-text, negative-prompt or direct inversion), at the comparison's guidance (cached)."""
        if name not in self._back:
            from ..reconstruct import reconstruct

            s = self.settings
            self._back[name] = reconstruct(s["model"], self.runs[name], guidance=s["guidance"],
                                           grid_overrides=s.get("grid_overrides"), hooks=[Recorder(keys=())]).final
        return self._back[name]

    def image_nmse(self) -> dict[str, float]:
        return {k: float(nmse(self.resampled(k), self.reference.final)) for k in self.runs}

    def nfe_per_step(self) -> dict[str, float]:
        return {k: t.nfe / len(t) for k, t in self.runs.items()}

    def x0_predictions(self, ks: list[int], sample_index: int = 0) -> dict[str, torch.Tensor]:
        """For every run (and the truth): the model's clean-image prediction x0_hat at the latent
        reached after inversion steps ``ks``, each evaluated with its own level's label."""
        from ..steps import x0_from_eps

        s = self.settings
        model = s["model"]
        run = next(iter(self.runs.values()))
        sources = {"truth": run.aligned(self.reference), **{k: t.latents() for k, t in self.runs.items()}}
        out = {}
        with torch.no_grad():
            for name, lat in sources.items():
                x = lat[ks, sample_index].to(self.z_T.dtype)
                c = s["cond"]
                if c is not None:
                    c = torch.as_tensor(c).reshape(-1)[sample_index].expand(len(ks))
                c = model.check_cond(c, len(ks), x)
                rows = [x0_from_eps(x[i:i + 1], model.eps(x[i:i + 1], run.levels[k].label,
                                                          None if c is None else c[i:i + 1], s["guidance"]).eps,
                                    run.levels[k]) for i, k in enumerate(ks)]
                out[name] = torch.cat(rows)
        return out

    def latents_at(self, k: int, sample_index: int = 0) -> dict[str, torch.Tensor]:
        """Every run's latent after inversion step k (k = 0: the input), plus the truth."""
        out = {"truth": self.runs[next(iter(self.runs))].aligned(self.reference)[k, sample_index]}
        for name, t in self.runs.items():
            out[name] = t.latents()[k, sample_index]
        return out


def run_methods(model, z_T: torch.Tensor, steps: int = 50, solver: str = "ddim", guidance: float = 1.0,
                cond: Any = None, methods: dict[str, dict[str, Any]] | None = None,
                show_progress: bool = False, grid_overrides: dict | None = None) -> Comparison:
    """Sample from ``z_T``, then invert the sample with every method in ``methods`` (all on the
    solver's grid, changed by ``grid_overrides`` if given, e.g. ``{"final_sigmas_type": "sigma_min"}``)."""
    methods = DEFAULT_METHODS if methods is None else methods
    keep = [Recorder(keys=("x_next", "x0_hat"))]
    ref = sample(model, z_T, steps, solver, guidance, cond, hooks=keep, grid_overrides=grid_overrides)
    runs = {}
    items = methods.items()
    if show_progress:
        from tqdm.auto import tqdm

        items = tqdm(list(items), desc="methods", leave=False)
    for name, kw in items:
        kw = dict(kw)
        if kw.get("gain") == "oracle":
            kw["reference"] = ref
        runs[name] = invert(model, ref.final, steps, solver, guidance=guidance, cond=cond, hooks=keep,
                            grid_overrides=grid_overrides, **kw)
    settings = {"model": model, "steps": steps, "solver": solver, "guidance": guidance, "cond": cond,
                "grid_overrides": grid_overrides}
    return Comparison(z_T, ref, runs, settings)


def local_step_errors(comparison: Comparison, metric: str = "nmse", label: str = "target") -> torch.Tensor:
    """The error each naive step makes on its own: start the step from the *true* latent and
    compare its output with the true next latent. Accumulated error minus these is what the
    earlier steps' mistakes contributed."""
    from ..metrics import get
    from ..steps import ddim_step, x0_from_eps

    fn = get(metric, ("nmse", "rmse"))
    s = comparison.settings
    model = s["model"]
    run = next(iter(comparison.runs.values()))
    truth = run.aligned(comparison.reference)
    c = model.check_cond(s["cond"], truth.shape[1], truth[0])
    out = []
    with torch.no_grad():
        for k in range(len(run)):
            cur, nxt = run.levels[k], run.levels[k + 1]
            x = truth[k].to(comparison.z_T.dtype)
            eps = model.eps(x, nxt.label if label == "target" else cur.label, c, s["guidance"]).eps
            out.append(fn(ddim_step(x0_from_eps(x, eps, cur), eps, nxt), truth[k + 1]))
    return torch.stack(out)


def restart_from_truth(comparison: Comparison, ks, method: str = "naive") -> dict[int, dict[str, object]]:
    """The counterfactual "what if the first k steps had been perfect?": invert again with
    ``method``, but after step k - 1 replace the state by the *true* latent at level k (an
    intervention hook, ``FunctionIntervention`` at stage "step"), so only steps k, k+1, ... make
    errors. ``k = 0`` is the plain run. Returns k -> {"noise_nmse": final noise NMSE (batch mean),
    "errors": the per-step error curve to the truth, NaN for the steps that end on the truth}."""
    from ..trace import FunctionIntervention

    s = comparison.settings
    model = s["model"]
    base = comparison.runs[method] if method in comparison.runs else next(iter(comparison.runs.values()))
    truth = base.aligned(comparison.reference)
    x0 = comparison.reference.final
    out = {}
    for k in ks:
        k = int(k)
        if not 0 <= k < len(base):
            raise ValueError(f"restart step k={k} must be in 0..{len(base) - 1} (the run has {len(base)} steps)")
        hooks = [Recorder(keys=("x_next",))]
        if k > 0:
            true_k = truth[k].to(dtype=x0.dtype, device=x0.device)
            hooks.append(FunctionIntervention(lambda i, t, k=k, z=true_k: {"x_next": z} if i == k - 1 else None,
                                              {"x_next"}, stage="step"))
        run = invert(model, x0, s["steps"], s["solver"], method=method, guidance=s["guidance"], cond=s["cond"],
                     hooks=hooks)
        errors = run.errors_to(comparison.reference).to(torch.float64)
        errors[:k] = float("nan")  # steps 1..k end on the true latent by construction (error 0): not plotted
        out[k] = {"noise_nmse": float(nmse(run.final, comparison.z_T)), "errors": errors}
    return out
