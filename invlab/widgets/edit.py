"""The editing widget: inversion depth, method and mask over finished ``edit_sweep`` rows."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from .core import Explorer, _w, dropdown, select_slider

__all__ = ["EditExplorer"]


class EditExplorer(Explorer):
    """Depth (a slider), method (a drop-down) and the background mask (a toggle) over the rows of
    :func:`invlab.studies.edit.edit_sweep` at one guidance (run with ``keep_images=True``). Shows the
    source, the method's reconstruction at that depth, the edit and where it changed the image,
    with the row's background PSNR and success in the title. Nothing is recomputed.
    ``summary``: [depth, masked, background PSNR, success, log-ratio] of the row shown."""

    def __init__(self, rows: Sequence[Mapping[str, Any]], source, region=None, guidance: float | None = None,
                 title: str = ""):
        from ..plots.edit import plot_edit_strip

        ok = [r for r in rows if isinstance(r, Mapping) and not r.get("error") and "edited" in r]
        if not ok:
            raise ValueError("EditExplorer needs rows of invlab.studies.edit.edit_sweep(..., keep_images=True) with "
                             "at least one successful edit")
        gs = sorted({r["guidance"] for r in ok})
        if guidance is None:
            if len(gs) != 1:
                raise ValueError(f"the rows hold guidances {gs}: pass guidance= to show one")
            guidance = gs[0]
        ok = [r for r in ok if r["guidance"] == guidance]
        if not ok:
            raise ValueError(f"no rows at guidance {guidance}; the rows hold {gs}")
        index = {(r["method"], r["depth"], r["masked"]): r for r in ok}
        methods = list(dict.fromkeys(r["method"] for r in ok))
        depths = sorted({r["depth"] for r in ok})
        self.rows = ok
        mask_toggle = _w().ToggleButton(value=False, description="background mask")

        def draw(method, depth, mask):
            r = index.get((method, depth, bool(mask)))
            if r is None:
                import matplotlib.pyplot as plt

                fig, ax = plt.subplots(figsize=(4, 1))
                ax.axis("off")
                ax.text(0.5, 0.5, f"{method} at depth {depth:g}{' with the mask' if mask else ''}: not run",
                        ha="center", va="center")
                return fig, np.full(5, np.nan)
            head = (f"{method}, depth {depth:g} ({r['k']} of {r['steps']} steps), w = {guidance:g}"
                    f"{', masked' if mask else ''}: background {r['bg_psnr']:.1f} dB, success "
                    f"{100 * r['success']:.0f}%, log-ratio {r['log_ratio']:+.0f}; reconstruction "
                    f"{r['recon_bg_psnr']:.1f} dB")
            fig, _ = plot_edit_strip(source, {"reconstruction": r["recon"], "edit": r["edited"]}, region=region,
                                     title=title + ("\n" if title else "") + head)
            return fig, np.array([depth, float(bool(mask)), r["bg_psnr"], r["success"], r["log_ratio"]])

        super().__init__({"method": dropdown("method", methods, methods[0]),
                          "depth": select_slider("depth", depths, depths[-1]), "mask": mask_toggle}, draw,
                         title="edit a real image: inversion depth, method, background mask")
