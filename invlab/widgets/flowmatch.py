"""Widgets for the flow-matching notebook: thin glue over invlab.studies.flowmatch and invlab.plots."""

from __future__ import annotations

from .core import Explorer, check_object, select_slider

__all__ = ["GammaExplorer"]


class GammaExplorer(Explorer):
    """A gamma slider over a precomputed :class:`invlab.studies.flowmatch.GammaSweep`: where that gamma
    sits on RF-Inversion's trade-off curve, and the source images next to their reconstructions."""

    def __init__(self, sweep, title: str = "RF-Inversion: reconstructions at gamma"):
        from ..plots.flowmatch import plot_gamma_tradeoff
        from ..studies.flowmatch import GammaSweep

        check_object("GammaExplorer", "a gamma sweep", sweep, GammaSweep,
                     "from invlab.studies.flowmatch.rf_inversion_gammas")
        if not sweep.gammas or not sweep.rows:
            raise ValueError("GammaExplorer needs a sweep with at least one gamma and its results")
        self.sweep = sweep

        def draw(gamma):
            return plot_gamma_tradeoff(sweep.rows, gamma, sweep.images, sweep.reconstructions[gamma])

        super().__init__({"gamma": select_slider("gamma", sweep.gammas)}, draw, title=title)
