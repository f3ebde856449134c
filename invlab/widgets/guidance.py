"""Widgets for the guidance-sensitivity notebook: thin glue over invlab.studies and invlab.plots."""

from __future__ import annotations

from .core import Explorer, check_object, select_slider

__all__ = ["GuidanceExplorer"]


class GuidanceExplorer(Explorer):
    """A guidance slider over a precomputed :class:`invlab.studies.guidance.GuidanceSweep`:
    the original samples at that w and each method's reconstruction (nothing is recomputed)."""

    def __init__(self, sweep, title: str = "reconstructions at guidance w"):
        from ..plots.guidance import plot_reconstructions
        from ..studies.guidance import GuidanceSweep

        check_object("GuidanceExplorer", "a guidance sweep", sweep, GuidanceSweep,
                     "from invlab.studies.guidance.guidance_sweep")
        if not sweep.guidances or not sweep.rows:
            raise ValueError("GuidanceExplorer needs a sweep with at least one guidance value and its results")
        self.sweep = sweep

        def draw(w):
            recs = {m: sweep.rows[(w, m)]["reconstruction"] for m in sweep.methods}
            errs = {m: sweep.rows[(w, m)]["image_nmse"] for m in sweep.methods}
            return plot_reconstructions(sweep.originals[w], recs, f"guidance w = {w:g}", errs)

        super().__init__({"w": select_slider("w", sweep.guidances)}, draw, title=title)
