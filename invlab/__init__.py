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
    """Standard normal z_T of shape ``(batch, *model.sample_shape)`` (drawn on the CPU, then moved).

    ``batch`` is an int >= 1; ``seed`` an int (or None: the global RNG); ``generator`` a CPU
    ``torch.Generator`` that overrides ``seed``. The draw is in float64, then cast to ``dtype``,
    so a seed gives the same noise on every device and dtype (up to rounding).
    """
    from .checks import check_batch, check_device, check_dtype, check_int

    if not isinstance(model, Denoiser):
        raise TypeError(f"model must be an invlab Denoiser (from invlab.load_model); got {type(model).__name__}")
    batch = check_batch(batch)
    dtype, device = check_dtype(dtype), check_device(device)
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None (got {type(generator).__name__})")
    if generator is None and seed is not None:
        generator = torch.Generator().manual_seed(check_int("seed", seed, example=0))
    if generator is not None and generator.device.type != "cpu":
        raise ValueError(f"generator must be a CPU generator (the noise is drawn on the CPU, then moved); "
                         f"got one on {generator.device}")
    return torch.randn((batch, *model.sample_shape), generator=generator, dtype=torch.float64).to(device=device, dtype=dtype)


__all__ = ["ConvergenceWarning", "RecordingCapWarning", "Denoiser", "FunctionIntervention", "Grid", "Intervention", "Level", "METHODS", "NoiseSchedule",
           "NonFiniteError", "Observer", "Recorder", "StepRecord", "Trajectory", "available_models", "invert", "invert_decoder",
           "load_model", "metrics", "noise", "sample"]
