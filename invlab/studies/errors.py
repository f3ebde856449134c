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

__all__ = ["Comparison", "DEFAULT_METHODS", "run_methods"]

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
        """x0_hat: the sampler run again from the method's inverted noise (cached)."""
        if name not in self._back:
            s = self.settings
            self._back[name] = sample(s["model"], self.runs[name].final, s["steps"], s["solver"], s["guidance"],
                                      s["cond"], hooks=[Recorder(keys=())]).final
        return self._back[name]

    def image_nmse(self) -> dict[str, float]:
        return {k: float(nmse(self.resampled(k), self.reference.final)) for k in self.runs}

    def nfe_per_step(self) -> dict[str, float]:
        return {k: t.nfe / len(t) for k, t in self.runs.items()}

    def latents_at(self, k: int, sample_index: int = 0) -> dict[str, torch.Tensor]:
        """Every run's latent after inversion step k (k = 0: the input), plus the truth."""
        out = {"truth": self.runs[next(iter(self.runs))].aligned(self.reference)[k, sample_index]}
        for name, t in self.runs.items():
            out[name] = t.latents()[k, sample_index]
        return out


def run_methods(model, z_T: torch.Tensor, steps: int = 50, solver: str = "ddim", guidance: float = 1.0,
                cond: Any = None, methods: dict[str, dict[str, Any]] | None = None,
                show_progress: bool = False) -> Comparison:
    """Sample from ``z_T``, then invert the sample with every method in ``methods``."""
    methods = DEFAULT_METHODS if methods is None else methods
    keep = [Recorder(keys=("x_next", "x0_hat"))]
    ref = sample(model, z_T, steps, solver, guidance, cond, hooks=keep)
    runs = {}
    items = methods.items()
    if show_progress:
        from tqdm.auto import tqdm

        items = tqdm(list(items), desc="methods", leave=False)
    for name, kw in items:
        kw = dict(kw)
        if kw.get("gain") == "oracle":
            kw["reference"] = ref
        runs[name] = invert(model, ref.final, steps, solver, guidance=guidance, cond=cond, hooks=keep, **kw)
    settings = {"model": model, "steps": steps, "solver": solver, "guidance": guidance, "cond": cond}
    return Comparison(z_T, ref, runs, settings)
