"""Editing studies (notebook 12): the preservation / edit-success trade-off per method, and the
reconstruction floor of the background.

:func:`edit_sweep` runs :func:`invlab.edit.edit` over methods x guidance x depth, each once free
and once with the background mask, plus the same method's reconstruction (target = source) at the
same depth and guidance. Every row carries PIE-Bench's background metrics on one fixed
``region`` (the editable region; the background is its complement, whether or not the edit was
masked), edit success, the reconstruction's PSNR on the same background, NFE and seconds, and
(``keep_images``) the edited images for the widget.

Edit success: ``success(images, target) -> bool per image`` when a classifier exists (digits:
:func:`invlab.edit.digit_success`); otherwise the model's own evidence: the edit succeeded where
:func:`invlab.edit.class_log_ratio` (target vs source) is positive, i.e. the model finds the
edited image likelier under the new condition than under the old one. The log-ratio's median is
reported in every case (``log_ratio``).
"""

from __future__ import annotations

import math
import time
import warnings
from typing import Any, Callable, Sequence

import torch

__all__ = ["edit_sweep", "tradeoff_points", "floor_table"]


def _median(t: torch.Tensor) -> float:
    """The median of the finite values (nan when none): a masked pixel model's background PSNR is inf."""
    t = t.double().flatten()
    if not len(t):
        return float("nan")
    return float(t.quantile(0.5)) if torch.isfinite(t).all() else float(t.sort().values[len(t) // 2])


def edit_sweep(model, images: torch.Tensor, source: Any, target: Any, region: torch.Tensor, *,
               methods: Sequence[str] = ("naive", "exact"), depths: Sequence[float] = (0.5, 1.0),
               guidances: Sequence[float] = (3.0,), steps: int = 20, masked: Sequence[bool] = (False, True),
               success: Callable[[torch.Tensor, Any], torch.Tensor] | None = None, ratio_levels: int = 16,
               ratio_draws: int = 2, keep_images: bool = True, method_options: dict[str, dict] | None = None,
               progress: bool = False) -> list[dict[str, Any]]:
    """One row per (method, guidance, depth, masked): see the module's docstring.

    ``images``: real images (B, C, H, W) in [-1, 1]; ``source`` / ``target``: their condition and the
    edit's; ``region``: (1, 1, H, W) at image resolution, 1 where the edit may happen (the blend's
    mask when ``masked``; the background metrics are always taken outside it). ``success``: a
    classifier's verdict per image (None: the model's log-ratio > 0). ``method_options``: extra
    options per method name (e.g. ``{"null-text": {"inner_steps": 5}}``).

    Row fields: ``method``, ``guidance``, ``depth``, ``k`` (steps inverted), ``masked``,
    ``bg_psnr`` / ``bg_mse`` / ``bg_ssim`` (medians over images; PSNR may be inf), ``bg_psnr_each``
    (per image), ``changed`` (RMS change inside the region), ``success`` (fraction),
    ``log_ratio`` (median, nats), ``recon_psnr`` (the reconstruction's whole-image PSNR, median),
    ``recon_bg_psnr`` (its background PSNR), ``nfe``, ``seconds``, ``error`` (a method that refused:
    its message, every metric NaN), and ``edited`` / ``recon`` (images, with ``keep_images``).
    """
    from .. import edit as E

    if not isinstance(images, torch.Tensor) or images.dim() != 4:
        raise ValueError("images must be a tensor (B, C, H, W) of real images in [-1, 1]")
    if not isinstance(region, torch.Tensor) or region.dim() != 4 or tuple(region.shape[-2:]) != tuple(images.shape[-2:]):
        raise ValueError(f"region must be a (1, 1, H, W) mask at the images' size {tuple(images.shape[-2:])}, 1 where "
                         "the edit may happen")
    method_options = dict(method_options or {})
    rows: list[dict[str, Any]] = []
    for method in methods:
        opts = dict(method_options.get(method, {}))
        solver = opts.pop("solver", "edict" if method == "algebraic" else "ddim")
        for w in guidances:
            for depth in depths:
                base = {"method": method, "guidance": float(w), "depth": float(depth), "steps": steps,
                        "k": E.depth_steps(depth, steps)}
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", Warning)
                    t0 = time.perf_counter()
                    rec = E.edit(model, images, source, source, steps=steps, solver=solver, method=method,
                                 depth=depth, guidance=w, **opts)
                    rec_seconds = time.perf_counter() - t0
                rec_img = rec.image.detach().cpu()
                recon = {"recon_psnr": _median(E.edit_metrics(images, rec_img)["psnr"]),
                         "recon_bg_psnr": _median(E.edit_metrics(images, rec_img, mask=region)["psnr"])}
                for mk in masked:
                    row = dict(base, masked=bool(mk), **recon)
                    t0 = time.perf_counter()
                    try:
                        with warnings.catch_warnings():
                            warnings.simplefilter("ignore", Warning)
                            out = E.edit(model, images, source, target, steps=steps, solver=solver, method=method,
                                         depth=depth, guidance=w, mask=region if mk else None, **opts)
                    except ValueError as exc:   # e.g. EDICT refuses a mask
                        row.update(error=str(exc), bg_psnr=math.nan, bg_mse=math.nan, bg_ssim=math.nan,
                                   changed=math.nan, success=math.nan, log_ratio=math.nan, nfe=0,
                                   seconds=0.0)
                        rows.append(row)
                        continue
                    edited = out.image.detach().cpu()
                    met = E.edit_metrics(images, edited, mask=region)
                    ratio = E.class_log_ratio(model, out.edited, target, source, levels=ratio_levels,
                                              draws=ratio_draws)
                    ok = (ratio > 0) if success is None else torch.as_tensor(success(edited, target))
                    row.update(error=None, bg_psnr=_median(met["psnr"]), bg_mse=_median(met["mse"]),
                               bg_ssim=_median(met["ssim"]), bg_psnr_each=met["psnr"].tolist(),
                               changed=_median(met["changed"]), success=float(ok.double().mean()),
                               log_ratio=_median(ratio), nfe=out.nfe, seconds=time.perf_counter() - t0 + rec_seconds)
                    if keep_images:
                        row.update(edited=edited, recon=rec_img)
                    rows.append(row)
                    if progress:
                        print({k: (round(v, 3) if isinstance(v, float) else v) for k, v in row.items()
                               if k not in ("edited", "recon", "bg_psnr_each")}, flush=True)
    return rows


def tradeoff_points(rows: Sequence[dict[str, Any]], guidance: float | None = None,
                    cap: float = 60.0) -> dict[tuple[str, bool], dict[str, list[float]]]:
    """``(method, masked) -> {"depth", "bg_psnr", "success", "log_ratio"}`` lists ordered by depth, for
    the trade-off curve (one guidance: the rows' only one, or ``guidance``). Background PSNR is capped
    at ``cap`` dB (inf, a bit-exact background, is drawn at the cap)."""
    ok = [r for r in rows if not r.get("error")]
    gs = sorted({r["guidance"] for r in ok})
    if guidance is None:
        if len(gs) != 1:
            raise ValueError(f"the rows hold guidances {gs}: pass guidance= to pick one")
        guidance = gs[0]
    out: dict[tuple[str, bool], dict[str, list[float]]] = {}
    for r in sorted((r for r in ok if r["guidance"] == guidance), key=lambda r: r["depth"]):
        d = out.setdefault((r["method"], r["masked"]), {"depth": [], "bg_psnr": [], "success": [], "log_ratio": []})
        d["depth"].append(r["depth"])
        d["bg_psnr"].append(min(r["bg_psnr"], cap))
        d["success"].append(r["success"])
        d["log_ratio"].append(r["log_ratio"])
    if not out:
        raise ValueError(f"no successful rows at guidance {guidance}")
    return out


def floor_table(rows: Sequence[dict[str, Any]], depth: float | None = None) -> list[dict[str, Any]]:
    """One line per (method, guidance) at one depth (the deepest by default): the reconstruction's
    background PSNR (the floor: what the method loses when the edit changes nothing), the free
    edit's and the masked edit's background PSNR."""
    ok = [r for r in rows if not r.get("error")]
    depth = max(r["depth"] for r in ok) if depth is None else depth
    table: dict[tuple[str, float], dict[str, Any]] = {}
    for r in ok:
        if r["depth"] != depth:
            continue
        t = table.setdefault((r["method"], r["guidance"]), {"method": r["method"], "guidance": r["guidance"],
                                                            "recon_bg_psnr": r["recon_bg_psnr"],
                                                            "recon_psnr": r["recon_psnr"]})
        t["masked_bg_psnr" if r["masked"] else "edit_bg_psnr"] = r["bg_psnr"]
    return [table[k] for k in sorted(table)]
