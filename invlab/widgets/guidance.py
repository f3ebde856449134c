"""Widgets for the guidance-sensitivity notebook: thin glue over invlab.studies and invlab.plots."""

from __future__ import annotations

from .core import Explorer, select_slider

__all__ = ["GuidanceExplorer"]


class GuidanceExplorer(Explorer):
    """A guidance slider over a precomputed :class:`invlab.studies.guidance.GuidanceSweep`:
    the original samples at that w and each method's reconstruction (nothing is recomputed)."""

    def __init__(self, sweep, title: str = "reconstructions at guidance w"):
        from ..plots.guidance import plot_reconstructions

        self.sweep = sweep

        def draw(w):
            recs = {m: sweep.rows[(w, m)]["reconstruction"] for m in sweep.methods}
            errs = {m: sweep.rows[(w, m)]["image_nmse"] for m in sweep.methods}
            return plot_reconstructions(sweep.originals[w], recs, f"guidance w = {w:g}", errs)

        super().__init__({"w": select_slider("w", sweep.guidances)}, draw, title=title)
