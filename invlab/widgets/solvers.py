"""Widgets for exact inversion's inner solvers: thin glue over invlab.studies and invlab.plots."""

from __future__ import annotations

from typing import Mapping

from ..trace import Trajectory
from .core import Cache, Explorer, dropdown, int_slider

__all__ = ["InnerSolverExplorer"]


class InnerSolverExplorer(Explorer):
    """A step slider and a solver dropdown over finished exact inversions (one per solver, all
    of the same image on the same grid): the residual-vs-iteration curve of that step for the
    chosen solver, drawn over the other solvers' curves of the same step (faint).

    ``runs``: solver name -> Trajectory (e.g. ``comparison.runs``); nothing is recomputed, the
    per-step curves are read from the records once and cached. Runs named in ``sum_sq``
    recorded the summed squared error (the reference preset); they are shown as RMS.
    """

    def __init__(self, runs: Mapping, tol: float | Mapping[str, float] | None = None, step: int | None = None,
                 sum_sq: tuple[str, ...] = ("reference",)):
        from ..plots.solvers import plot_inner_residuals
        from ..studies.solvers import inner_residuals

        if not isinstance(runs, Mapping) or not runs or not all(isinstance(t, Trajectory) for t in runs.values()):
            raise TypeError("InnerSolverExplorer takes runs = {solver name: Trajectory of an exact inversion}, e.g. "
                            f"comparison.runs; got {type(runs).__name__}")
        self.runs = dict(runs)
        self.cache = Cache()
        names = list(self.runs)
        n = len(next(iter(self.runs.values())))

        def curves(name):
            return self.cache.get(name, lambda: inner_residuals(self.runs[name], sum_sq=name in sum_sq))

        def draw(step, solver):
            per_solver = {k: curves(k)[step - 1] for k in names}
            its = len(per_solver[solver]) - 1
            return plot_inner_residuals(per_solver, tol=tol, highlight=solver,
                                        title=f"inversion step {step}: {solver} ({its} iterations)")

        controls = {"step": int_slider("step", (n + 1) // 2 if step is None else step, 1, n),
                    "solver": dropdown("solver", names)}
        super().__init__(controls, draw, title="inner-solver residuals of one inversion step")
