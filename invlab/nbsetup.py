"""The config cell every notebook runs right after its ``parameters`` cell.

It checks the literals (so a bad parameter stops the notebook *here*, with a message that
says what to change), seeds the RNGs, loads the model and makes the figures folder.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch

DTYPES = {"float32": torch.float32, "float64": torch.float64, "float16": torch.float16, "bfloat16": torch.bfloat16}


def quick_safe_figures(figures: Path, quick: bool) -> Path:
    """Where a run may write its figures: a QUICK run never writes into the committed ``figures/``.

    The course's full-mode pictures live in ``<repo>/figures`` (beside ``notebooks/``); only the
    main job (``make figures``, full mode) refreshes them. A QUICK run pointed there (papermill
    ``-p QUICK True`` with the default ``FIGURES``) is redirected to ``<repo>/build/figures-quick``.
    """
    figures = Path(figures)
    resolved = figures.resolve()
    if quick and resolved.name == "figures" and (resolved.parent / "notebooks").is_dir():
        redirected = resolved.parent / "build" / "figures-quick"
        print(f"QUICK run: figures go to {redirected}, not {resolved} (only full-mode runs refresh figures/)")
        return redirected
    return figures


def setup(QUICK: bool, SEED: int, MODEL: str, STEPS: int, GUIDANCE: float, FIGURES: str = "../figures",
          DTYPE: str = "float64", DEVICE: str = "cpu", MODEL_DTYPE: str | None = None,
          **extra: Any) -> SimpleNamespace:
    """Validate a notebook's parameters and return them (plus the loaded ``model``) as a namespace.

    ``DTYPE`` is the dtype of the latents the methods carry; ``MODEL_DTYPE`` (optional) the dtype a
    *network* computes in (e.g. "float16" for Stable Diffusion on a GPU); analytic models ignore it.
    """
    from . import available_models, load_model
    from .checks import check_choice, check_device, unknown
    from .models.base import check_guidance
    from .schedules import check_steps

    if not isinstance(QUICK, bool):
        raise ValueError(f"QUICK must be True or False (got {QUICK!r})")
    if not isinstance(SEED, int) or isinstance(SEED, bool):
        raise ValueError(f"SEED must be an integer (got {SEED!r})")
    try:
        check_steps(STEPS)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"parameter STEPS: {exc}") from None
    try:
        check_guidance(GUIDANCE)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"parameter GUIDANCE: {exc}") from None
    check_choice("parameter DTYPE", DTYPE, sorted(DTYPES))
    try:
        check_device(DEVICE, "DEVICE")
    except (TypeError, ValueError) as exc:
        raise ValueError(f"parameter {exc}") from None
    if not isinstance(MODEL, str):
        raise ValueError(f"MODEL must be a string such as 'gmm-digits' (got {MODEL!r})")
    is_path = Path(MODEL).exists() or "/" in MODEL
    if MODEL not in available_models() and not is_path:
        raise unknown("MODEL", MODEL, available_models(), " (or a Stable Diffusion folder/hub id)")
    load_kwargs: dict[str, Any] = {}
    if MODEL_DTYPE is not None:
        check_choice("parameter MODEL_DTYPE", MODEL_DTYPE, sorted(DTYPES))
        if not str(MODEL).startswith("gmm-"):  # analytic models compute in the latents' own dtype
            load_kwargs = {"dtype": DTYPES[MODEL_DTYPE], "device": DEVICE}
    torch.manual_seed(SEED)
    figures = quick_safe_figures(Path(FIGURES), QUICK)
    figures.mkdir(parents=True, exist_ok=True)
    model = load_model(MODEL, **load_kwargs).to(DEVICE)
    threads = torch.get_num_threads()
    print(f"this run: {MODEL} | {'QUICK' if QUICK else 'full'} mode | SEED {SEED} | {DTYPE} on {DEVICE} | "
          f"{threads} torch thread(s) | figures -> {figures}")
    return SimpleNamespace(quick=QUICK, seed=SEED, model_name=MODEL, model=model, steps=int(STEPS), threads=threads,
                           guidance=float(GUIDANCE), dtype=DTYPES[DTYPE], device=torch.device(DEVICE),
                           figures=figures, **extra)
