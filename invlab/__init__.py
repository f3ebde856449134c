"""invlab: diffusion inversion you can watch, step by step.

    import invlab
    model = invlab.load_model("gmm-digits")          # exact, embedded, no download
    z_T = invlab.noise(model, 8, seed=0)
    fwd = invlab.sample(model, z_T, steps=50, solver="ddim", guidance=3.0, cond=3)
    inv = invlab.invert(model, fwd.final, steps=50, method="naive", guidance=3.0, cond=3)
    inv.errors_to(fwd)                                # ground-truth error after every step
"""

from __future__ import annotations

import torch

from . import metrics
from .inversion import METHODS, invert, invert_decoder
from .models import Denoiser, available_models, load_model
from .sampling import sample
from .schedules import Grid, Level, NoiseSchedule
from .trace import (ConvergenceWarning, FunctionIntervention, Intervention, NonFiniteError, Observer, Recorder,
                    RecordingCapWarning, StepRecord, Trajectory)

__version__ = "0.1.0"


def noise(model: Denoiser, batch: int = 1, seed: int | None = 0, dtype: torch.dtype = torch.float64,
          device: str | torch.device = "cpu", generator: torch.Generator | None = None) -> torch.Tensor:
    """Standard normal z_T of shape ``(batch, *model.sample_shape)`` (drawn on the CPU, then moved)."""
    if generator is None:
        generator = torch.Generator().manual_seed(seed) if seed is not None else None
    return torch.randn((batch, *model.sample_shape), generator=generator, dtype=torch.float64).to(device=device, dtype=dtype)


__all__ = ["ConvergenceWarning", "RecordingCapWarning", "Denoiser", "FunctionIntervention", "Grid", "Intervention", "Level", "METHODS", "NoiseSchedule",
           "NonFiniteError", "Observer", "Recorder", "StepRecord", "Trajectory", "available_models", "invert", "invert_decoder",
           "load_model", "metrics", "noise", "sample"]
