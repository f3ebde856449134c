"""The method-zoo widget: pick methods and an NFE budget over finished ``run_zoo`` rows."""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from .core import Explorer, _w, select_slider

__all__ = ["MethodZooExplorer"]


class MethodZooExplorer(Explorer):
    """Methods (a multi-select) and a budget in NFE per step (a slider) over the rows of
    :func:`invlab.studies.zoo.run_zoo` for one model, guidance and step count (run with
    ``keep_images=True`` to see reconstructions). For every chosen method the best run (lowest
    image NMSE) whose inversion spent at most ``budget x steps`` NFE (+1: exact and Newton's first
    step) is circled on the error-vs-NFE plot and its reconstruction shown. Nothing is recomputed.
    ``summary``: the chosen methods' best image NMSE (NaN where nothing fits the budget).
    """

    def __init__(self, rows: Sequence[Mapping[str, Any]], methods: Sequence[str] | None = None,
                 budgets: Sequence[float] | None = None, title: str | None = None):
        from ..plots.families import plot_zoo_budget
        from ..studies.zoo import pareto_points

        ok = [r for r in rows if isinstance(r, Mapping) and not r.get("error")]
        if not ok:
            raise ValueError("MethodZooExplorer needs the rows of invlab.studies.zoo.run_zoo with at least one "
                             "successful run (every row has an error or rows is empty)")
        groups = {(r["model"], r["guidance"], r["steps"], r.get("source", "sampled")) for r in ok}
        if len(groups) != 1:
            raise ValueError(f"MethodZooExplorer shows one model, guidance, step count and image source (sampled or "
                             f"real); the rows hold {len(groups)} "
                             f"({sorted(groups)[:3]}...): filter them first")
        self.rows = ok
        steps = ok[0]["steps"]
        points = pareto_points(ok, with_images=True)
        names = list(dict.fromkeys(p["series"] for p in points))
        if budgets is None:
            budgets = sorted({1.0} | {float(r["multiple"]) for r in ok if r.get("multiple") is not None})
        budgets = [float(b) for b in budgets]
        chosen0 = [n for n in (methods or names) if n in names]
        if methods is not None and len(chosen0) != len(list(methods)):
            missing = sorted(set(methods) - set(names))
            raise ValueError(f"methods {missing} are not in the rows; choose from {names}")
        image = ok[0].get("input")
        w = _w()
        pick = w.SelectMultiple(options=names, value=tuple(chosen0), description="methods", rows=min(len(names), 8))
        budget = select_slider("NFE/step", budgets, value=budgets[-1])

        def draw(methods, budget):
            limit = budget * steps + 1
            best = {}
            for n in methods:
                fits = [p for p in points if p["series"] == n and p["cost"] <= limit]
                best[n] = min(fits, key=lambda p: (p["error"], p["cost"])) if fits else None
            fig = plot_zoo_budget(points, limit, best, image=image, title=title or "")
            return fig, np.array([np.nan if p is None else p["error"] for p in best.values()], dtype=float)

        super().__init__({"methods": pick, "budget": budget}, draw,
                         title="methods at an NFE budget (best run of each within it)")
