"""invlab: diffusion inversion you can watch, step by step.

    import invlab
    model = invlab.load_model("gmm-digits")          # exact, embedded, no download
    z_T = invlab.noise(model, 8, seed=0)
    fwd = invlab.sample(model, z_T, steps=50, solver="ddim", guidance=3.0, cond=3)
    inv = invlab.invert(model, fwd.final, steps=50, method="naive", guidance=3.0, cond=3)
    inv.errors_to(fwd)                                # ground-truth error after every step

The names below are imported on first use (PEP 562), so ``import invlab`` itself is instant and
torch (about 1 s), diffusers (about 3 s: the trained nets) and torchmetrics are imported only
when something needs them (``benchmarks/import_time.py`` measures it).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

#: public name -> the submodule that defines it
_EXPORTS = {
    "ConvergenceWarning": "trace", "FunctionIntervention": "trace", "Intervention": "trace",
    "NonFiniteError": "trace", "Observer": "trace", "Recorder": "trace", "RecordingCapWarning": "trace",
    "StepRecord": "trace", "Trajectory": "trace",
    "Grid": "schedules", "Level": "schedules", "NoiseSchedule": "schedules",
    "Denoiser": "models", "available_models": "models", "load_model": "models",
    "METHODS": "inversion", "invert": "inversion", "invert_decoder": "inversion",
    "sample": "sampling", "noise": "sampling", "reconstruct": "reconstruct", "FlowSchedule": "flow",
    "Diagnosis": "diagnose", "diagnose": "diagnose",
}
_SUBMODULES = {"bench", "checks", "data", "edit", "exercises", "flow", "inversion", "loop", "metrics", "models", "nbsetup", "notebooks",
               "plots", "quality", "report", "reversible", "sampling", "schedules", "solutions", "steps", "studies",
               "trace", "train", "watermark", "widgets"}


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    elif name in _SUBMODULES:
        value = importlib.import_module(f".{name}", __name__)
    else:
        raise AttributeError(f"module 'invlab' has no attribute {name!r}")
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS) | _SUBMODULES)


if TYPE_CHECKING:  # for type checkers and IDEs: the same names, imported eagerly
    from . import edit, metrics
    from .inversion import METHODS, invert, invert_decoder
    from .models import Denoiser, available_models, load_model
    from .diagnose import Diagnosis, diagnose
    from .reconstruct import reconstruct
    from .sampling import noise, sample
    from .schedules import Grid, Level, NoiseSchedule
    from .trace import (ConvergenceWarning, FunctionIntervention, Intervention, NonFiniteError, Observer, Recorder,
                        RecordingCapWarning, StepRecord, Trajectory)

__all__ = sorted(set(_EXPORTS) | {"metrics"})
