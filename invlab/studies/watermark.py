"""Tree-Ring detection and multi-key classification per inversion protocol and attack (issue 12, item 3).

A **protocol** names how the image was made and how the detector inverts it:

=================  ===================  ===========================================================
protocol           sampler (makes it)   detector's inversion
=================  ===================  ===========================================================
``naive``          DDIM                 naive DDIM inversion (Tree-Ring's own detector)
``exact``          DDIM                 exact inversion (Algorithm 1, backward Euler)
``dpm-exact``      DPM-Solver++(2M)     exact inversion of DPM-Solver++(2M) (Algorithm 2)
``dpm-naive-ddim`` DPM-Solver++(2M)     naive DDIM inversion: the mismatch Tree-Ring's detector has
                                        (it samples with DPM-Solver++ and inverts with DDIM)
=================  ===================  ===========================================================

Generation is class-conditional at ``guidance`` (as Tree-Ring generates with a prompt and CFG 7.5);
detection inverts at guidance 1 without the class (the detector does not know the prompt).
``conditional=False`` generates without the class at guidance 1 as well: the detector then inverts the
very ODE that made the image, which isolates the cost of not knowing the prompt. Attacks act
on images in [-1, 1]; on latent models the detector always decodes, attacks (or not) and encodes, as a
real detector sees only the image.
"""

from __future__ import annotations

import math
import time
import warnings
from typing import Any, Sequence

import torch

from .. import watermark as wm

#: protocol -> (sampler, inversion solver, inversion method)
PROTOCOLS: dict[str, tuple[str, str, str]] = {
    "naive": ("ddim", "ddim", "naive"),
    "exact": ("ddim", "ddim", "exact"),
    "dpm-exact": ("dpmpp2m", "dpmpp2m", "exact"),
    "dpm-naive-ddim": ("dpmpp2m", "ddim", "naive"),
}

__all__ = ["PROTOCOLS", "classification", "detection"]


def _check_protocols(protocols: Sequence[str]) -> list[str]:
    bad = [p for p in protocols if p not in PROTOCOLS]
    if bad or not protocols:
        raise ValueError(f"unknown protocol(s) {bad}; choose from {list(PROTOCOLS)}")
    return list(protocols)


def _conds(model, n: int, conditional: bool) -> torch.Tensor | None:
    """Classes 0, 1, 2, ... for a class-conditional model (None when ``conditional`` is False or the
    model has no classes: unconditional generation at w = 1, the detector's own setting)."""
    classes = getattr(model, "num_classes", 0) or 0
    return torch.arange(n) % classes if conditional and classes else None


def _attacked(model, x: torch.Tensor, name: str) -> torch.Tensor:
    """``x`` in the model's sample space, attacked in image space. On a latent model the detector sees
    only the image, so every attack, "none" included, goes through decode -> image -> encode (Tree-Ring's
    detector encodes the image it is given); the autoencoder's round trip is part of what it inverts."""
    if getattr(model, "is_latent", False):
        img = model.decode(x).clamp(-1, 1)
        return model.encode(img if name == "none" else wm.attack(img, name))
    if name == "none":
        return x
    return wm.attack(x.clamp(-1, 1), name)


def _generate(model, z: torch.Tensor, steps: int, sampler: str, guidance: float, cond: torch.Tensor | None,
              batch: int) -> torch.Tensor:
    from ..sampling import sample

    return torch.cat([sample(model, z[i:i + batch], steps, sampler, guidance, None if cond is None else cond[i:i + batch]).final
                      for i in range(0, len(z), batch)])


def _invert(model, x: torch.Tensor, steps: int, solver: str, method: str, batch: int) -> tuple[torch.Tensor, int]:
    from ..inversion import invert

    outs, nfe = [], 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Warning)
        for i in range(0, len(x), batch):
            inv = invert(model, x[i:i + batch], steps, solver, method, 1.0, None)
            outs.append(inv.final)
            nfe += inv.nfe
    return torch.cat(outs), nfe


def detection(model, n: int = 200, steps: int = 50, guidance: float = 3.0, protocols: Sequence[str] = tuple(PROTOCOLS),
              attacks: Sequence[str] = tuple(wm.ATTACKS), key: wm.Key | None = None, seed: int = 0, batch: int = 100,
              dtype: torch.dtype = torch.float64, progress: bool = False, conditional: bool = True,
              keep_scores: bool = False) -> list[dict[str, Any]]:
    """Binary detection: ``n`` watermarked and ``n`` clean images per protocol (the same noises and classes
    for every protocol), each attack, detection by p-value. One row per (protocol, attack): ``auc``,
    ``tpr_at_1fpr`` (p-value score), ``auc_l1`` (distance score), the fractions flagged at p < 0.01
    (``tpr_p01`` / ``fpr_p01``), ``median_log10_p`` of the watermarked, the inversion's NFE per step and seconds."""
    from ..sampling import noise

    protocols = _check_protocols(protocols)
    key = wm.ring_key(model.sample_shape) if key is None else key
    z_clean = noise(model, n, seed=seed + 1, dtype=dtype)
    z_marked = wm.inject(noise(model, n, seed=seed, dtype=dtype), key)
    cond = _conds(model, n, conditional)
    guidance = guidance if conditional else 1.0
    rows = []
    for proto in protocols:
        sampler, solver, method = PROTOCOLS[proto]
        xm = _generate(model, z_marked, steps, sampler, guidance, cond, batch)
        xc = _generate(model, z_clean, steps, sampler, guidance, cond, batch)
        for name in attacks:
            t0 = time.perf_counter()
            zm, nfe_m = _invert(model, _attacked(model, xm, name), steps, solver, method, batch)
            zc, nfe_c = _invert(model, _attacked(model, xc, name), steps, solver, method, batch)
            lpm, lpc = wm.p_value(zm, key, log=True), wm.p_value(zc, key, log=True)
            r = wm.roc(lpm, lpc)
            rows.append({"protocol": proto, "attack": name, "n": n, "auc": r["auc"], "tpr_at_1fpr": r["tpr_at_1fpr"],
                         "auc_l1": wm.roc(wm.distance(zm, key), wm.distance(zc, key))["auc"],
                         "tpr_p01": float((lpm < math.log(0.01)).double().mean()),
                         "fpr_p01": float((lpc < math.log(0.01)).double().mean()),
                         "median_log10_p": float(lpm.median() / math.log(10)),
                         "nfe_per_step": (nfe_m + nfe_c) / (2 * math.ceil(n / batch) * steps),
                         "seconds": time.perf_counter() - t0})
            if keep_scores:   # per-image log p-values, for ROC curves (invlab.plots.plot_watermark_roc)
                rows[-1].update(log_p_marked=lpm.tolist(), log_p_clean=lpc.tolist())
            if progress:
                print({k: (round(v, 4) if isinstance(v, float) else v) for k, v in rows[-1].items()}, flush=True)
    return rows


def classification(model, per_key: int = 100, steps: int = 50, guidance: float = 3.0,
                   protocols: Sequence[str] = tuple(PROTOCOLS), attacks: Sequence[str] = tuple(wm.ATTACKS),
                   seed: int = 0, batch: int = 100, dtype: torch.dtype = torch.float64,
                   progress: bool = False, conditional: bool = True, channel: int = 0) -> list[dict[str, Any]]:
    """The seed paper's multi-key test: each of ``per_key`` noises carries each of the three constant ring
    keys (:func:`invlab.watermark.constant_keys`); the detector picks the key with the smallest distance.
    ``channel``: the keys' channel (-1: all channels). One row per (protocol, attack): ``accuracy`` and the 3x3
    ``confusion`` (rows: true key)."""
    from ..sampling import noise

    protocols = _check_protocols(protocols)
    keys = wm.constant_keys(model.sample_shape, channel=channel)
    z = noise(model, per_key, seed=seed, dtype=dtype)
    zw = torch.cat([wm.inject(z, k) for k in keys])
    truth = torch.arange(len(keys)).repeat_interleave(per_key)
    cond = _conds(model, per_key, conditional)
    cond = None if cond is None else cond.repeat(len(keys))
    guidance = guidance if conditional else 1.0
    rows = []
    for proto in protocols:
        sampler, solver, method = PROTOCOLS[proto]
        x = _generate(model, zw, steps, sampler, guidance, cond, batch)
        for name in attacks:
            zh, _ = _invert(model, _attacked(model, x, name), steps, solver, method, batch)
            pred = wm.classify(zh, keys)
            conf = torch.zeros(len(keys), len(keys), dtype=torch.long)
            for t, p in zip(truth.tolist(), pred.tolist()):
                conf[t, p] += 1
            rows.append({"protocol": proto, "attack": name, "n": len(truth),
                         "accuracy": float((pred == truth).double().mean()), "confusion": conf.tolist()})
            if progress:
                print({k: v for k, v in rows[-1].items()}, flush=True)
    return rows
