"""Shared input checks: one wording for every "you passed the wrong thing" message.

A leaf module (it imports nothing from invlab), so every layer may use it. Each helper raises
a ``ValueError`` / ``TypeError`` that says what was wrong, the value received and how to fix it.
"""

from __future__ import annotations

import difflib
import warnings
from typing import Any, Iterable, Mapping, Sequence

import torch

#: Values more than this many range-widths outside an input's documented range cannot be model
#: inputs (for [-1, 1] images: outside [-4, 4]). Measured on the shipped models: gmm-digits data
#: reach |x| ~ 2.3 and guided samples (w <= 15) |x| ~ 1.8, while [0, 255] images reach 255.
RANGE_MARGIN = 1.5


def suggest(name: Any, choices: Iterable[Any]) -> str:
    """``" (did you mean 'x'?)"`` for the closest of ``choices`` to ``name`` (case-insensitive), else ``""``."""
    if not isinstance(name, str):
        return ""
    options = [str(c) for c in choices]
    lowered = {c.lower(): c for c in options}
    n = name.lower()
    # a choice that extends the name or that the name extends ('gmm-digit', 'epsilon' for 'eps') beats a
    # merely similar one ('eps_cond'); among several, the most similar
    prefixed = [c for c in lowered if len(n) >= 2 and (c.startswith(n) or n.startswith(c))]
    close = difflib.get_close_matches(n, prefixed, n=1, cutoff=0.0) if prefixed else \
        difflib.get_close_matches(n, list(lowered), n=1, cutoff=0.6)
    return f" (did you mean {lowered[close[0]]!r}?)" if close else ""


def unknown(kind: str, name: Any, choices: Sequence[Any], extra: str = "") -> ValueError:
    """``ValueError("unknown solver 'dim' (did you mean 'ddim'?); choose one of [...]")``."""
    return ValueError(f"unknown {kind} {name!r}{suggest(name, choices)}; choose one of {list(choices)}{extra}")


def check_choice(what: str, value: Any, choices: Sequence[Any]) -> Any:
    """``value`` if it is one of ``choices``; else ``ValueError("label must be one of ... (got ...)")``."""
    try:
        ok = value in choices
    except TypeError:  # unhashable value against a set of choices
        ok = False
    if not ok:
        raise ValueError(f"{what} must be one of {tuple(choices)} (got {value!r}){suggest(value, choices)}")
    return value


def check_options(where: str, given: Iterable[str], allowed: Iterable[str]) -> None:
    """Unknown keyword options: ``TypeError("load_model('digits') has no option 'dtpye' (did you mean 'dtype'?)")``."""
    allowed = sorted(allowed)
    bad = [k for k in given if k not in allowed]
    if bad:
        hints = "".join(suggest(k, allowed) for k in bad)
        raise TypeError(f"{where} has no option{'s' if len(bad) > 1 else ''} {', '.join(map(repr, bad))}{hints}; "
                        f"its options are {allowed}")


def check_int(what: str, value: Any, minimum: int | None = None, example: Any = None) -> int:
    """An integer (not a bool, not a float, not a string) >= ``minimum``."""
    example = f"; pass e.g. {what}={example}" if example is not None else ""
    if isinstance(value, bool) or (not isinstance(value, int) and not _is_np_integer(value)):
        raise TypeError(f"{what} must be an int (got {value!r} of type {type(value).__name__}){example}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{what} must be >= {minimum} (got {value}){example}")
    return int(value)


def check_number(what: str, value: Any, hint: str = "") -> float:
    """A finite real number (int or float, not a bool / string / NaN / inf)."""
    hint = f"; {hint}" if hint else ""
    if isinstance(value, bool) or isinstance(value, str):
        raise TypeError(f"{what} must be a number (got {value!r}){hint}")
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{what} must be a number (got {value!r}){hint}") from None
    if v != v or v in (float("inf"), float("-inf")):
        raise ValueError(f"{what} must be a finite number (got {value}){hint}")
    return v


def _is_np_integer(value: Any) -> bool:
    try:
        import numpy as np
    except ImportError:  # pragma: no cover - numpy ships with torch
        return False
    return isinstance(value, np.integer)


def check_batch(batch: Any) -> int:
    """A batch size: an int >= 1."""
    if isinstance(batch, bool) or (not isinstance(batch, int) and not _is_np_integer(batch)):
        raise TypeError(f"batch must be an int (got {batch!r} of type {type(batch).__name__}); "
                        "pass e.g. invlab.noise(model, 8)")
    if batch == 0:
        raise ValueError("batch size is 0; pass at least one sample, e.g. invlab.noise(model, 8)")
    if batch < 0:
        raise ValueError(f"batch size must be a positive int (got {batch}); pass e.g. invlab.noise(model, 8)")
    return int(batch)


def check_dtype(dtype: Any, what: str = "dtype") -> torch.dtype:
    """A floating ``torch.dtype``."""
    if isinstance(dtype, str):
        raise TypeError(f"{what} must be a torch.dtype, not the string {dtype!r}; pass e.g. {what}=torch.float32")
    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise TypeError(f"{what} must be a floating torch.dtype such as torch.float32 (got {dtype!r})")
    return dtype


def check_device(device: Any, what: str = "device") -> torch.device:
    """A ``torch.device`` that exists on this machine (CUDA only when it is available)."""
    if not isinstance(device, (str, torch.device)):
        raise TypeError(f"{what} must be a string such as 'cpu' or 'cuda' or a torch.device (got {device!r})")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise ValueError(f"unknown {what} {device!r}{suggest(str(device), ['cpu', 'cuda', 'mps'])}; "
                         "use e.g. 'cpu' or 'cuda'") from None
    if dev.type == "cuda":
        if not torch.backends.cuda.is_built():
            raise ValueError(f"{what}={str(device)!r}: CUDA is not available in this torch build; use {what}='cpu' "
                             "(or install a CUDA build of torch)")
        if not torch.cuda.is_available():
            raise ValueError(f"{what}={str(device)!r}: no CUDA GPU is visible to torch; use {what}='cpu'")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"{what}={str(device)!r}: there are only {torch.cuda.device_count()} CUDA device(s); "
                             f"use 'cuda:0'..'cuda:{torch.cuda.device_count() - 1}'")
    if dev.type == "meta":
        raise ValueError(f"{what}='meta' holds no data; use {what}='cpu' or 'cuda'")
    return dev


def check_tensor_device(x: torch.Tensor, what: str, device: torch.device | None) -> None:
    """Refuse tensors without data (the meta device). Tensors on another real device are fine:
    the networks move them to their own device for each call and return results on ``x``'s."""
    if x.device.type == "meta":
        where = device if device is not None else "cpu"
        raise ValueError(f"{what} is on meta (a tensor with shapes but no data) while the model runs on {where}; "
                         f"create it on {where} or move it with .to('{where}')")


def check_image_range(x: torch.Tensor, what: str = "images", lo: float = -1.0, hi: float = 1.0,
                      stacklevel: int = 3) -> None:
    """Images are expected in [lo, hi] (pixel models and VAEs: [-1, 1]).

    Values more than ``RANGE_MARGIN`` range-widths outside it (e.g. [0, 255] images) raise a
    ValueError; an image with all values in [0, 1] and none negative (a [0, 1] image where
    [-1, 1] is expected) gives a ``UserWarning``. Both say how to rescale.
    """
    if x.numel() == 0 or x.device.type == "meta":
        return
    x = x.detach()
    if not torch.isfinite(x).all():
        raise ValueError(f"{what} contain NaN or inf; check the input image before encoding or inverting")
    a, b = float(x.min()), float(x.max())
    advice = "use x/127.5 - 1 (for [0,255]) or 2*x - 1 (for [0,1])"
    margin = RANGE_MARGIN * (hi - lo)
    if a < lo - margin or b > hi + margin:
        raise ValueError(f"{what} are expected in [{lo:g}, {hi:g}]; got values in [{a:.4g}, {b:.4g}]: {advice}")
    if lo < 0 and a >= 0 and b <= 1 and b > a:
        warnings.warn(f"{what} are expected in [{lo:g}, {hi:g}] but all values are in [{a:.4g}, {b:.4g}] (none "
                      f"negative): if these are [0, 1] images, {advice}", UserWarning, stacklevel=stacklevel)


def as_hook_list(hooks: Any) -> list:
    """``hooks=`` as a list: None -> [], one hook -> [hook], a list / tuple / iterable -> its items."""
    if hooks is None:
        return []
    if isinstance(hooks, (list, tuple)):
        return list(hooks)
    if isinstance(hooks, Iterable) and not isinstance(hooks, (str, bytes, torch.Tensor, Mapping)):
        return list(hooks)
    return [hooks]  # one hook (checked by the caller)


__all__ = ["RANGE_MARGIN", "as_hook_list", "check_batch", "check_choice", "check_device", "check_dtype",
           "check_image_range", "check_int", "check_number", "check_options", "check_tensor_device",
           "suggest", "unknown"]
