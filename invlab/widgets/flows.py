"""Widget for the 2-D flows notebook: steps, guidance and method -> sampling and inversion paths."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch

from ..checks import unknown
from .core import Cache, Explorer, check_object, dropdown, select_slider

__all__ = ["FlowExplorer"]


class FlowExplorer(Explorer):
    """Paths of a few points on the 2-D mixture: coarse DDIM down, an inversion back up.

    Controls: ``steps``, ``guidance`` (selection sliders) and ``method`` (naive / easyinv /
    exact). Each combination is computed once (``cache``); moving a control back only re-plots.
    ``summary``: the recovered noise of every point followed by the round trip's noise NMSE.
    """

    def __init__(self, model, z_T: torch.Tensor, cond: Any = None, steps_options: Sequence[int] = (5, 10, 20, 50),
                 guidance_options: Sequence[float] = (1.0, 2.0, 4.0), methods: Sequence[str] = ("naive", "easyinv", "exact"),
                 substeps: int = 40, lim: float = 3.2, steps: int | None = None, guidance: float | None = None):
        from ..inversion import METHODS
        from ..models.base import Denoiser
        from ..plots.flows import plot_flow_paths
        from ..studies.flows import density_grid, flow_paths, grid_points

        check_object("FlowExplorer", "a model", model, Denoiser, "e.g. invlab.load_model('gmm-2d')")
        if model.sample_shape != (2,) or not hasattr(model, "log_prob"):
            raise ValueError("FlowExplorer draws 2-D flows over the data density: it needs a 2-D analytic model "
                             f"such as invlab.load_model('gmm-2d'); got {model.name} with samples of shape "
                             f"{model.sample_shape}")
        model.check_input(z_T, "z_T")
        for m in methods:
            if m not in METHODS:
                raise unknown("method", m, sorted(METHODS))
        self.cache = Cache()
        X, Y, _ = grid_points(lim, 80)
        density = density_grid(model, X, Y)
        names = {"naive": "naive inversion", "easyinv": "easyinv", "exact": "exact inversion"}

        def compute(n, w, method):
            return self.cache.get((n, w, method), lambda: flow_paths(model, z_T, n, w, cond, method, substeps))

        def draw(steps, guidance, method):
            p = compute(steps, guidance, method)
            fig = plot_flow_paths(X, Y, density, {"near-exact flow": p.exact_fine, "DDIM (coarse)": p.ddim,
                                                  names.get(method, method): p.inverted},
                                  starts=p.z_T, title=f"{steps} steps, w={guidance:g}, {method}: "
                                                      f"noise NMSE {p.noise_nmse:.2g}, NFE {p.nfe}")
            return fig, np.concatenate([p.inverted[0].numpy().ravel(), [p.noise_nmse]])

        controls = {
            "steps": select_slider("steps", list(steps_options), steps),
            "guidance": select_slider("guidance", list(guidance_options), guidance),
            "method": dropdown("method", list(methods)),
        }
        super().__init__(controls, draw, title="sample down, invert back up")
