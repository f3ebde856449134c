"""Widget glue: controls -> a pure draw function -> an Output. Compute once, cache, re-plot.

An :class:`Explorer` owns some ipywidgets controls (all with ``continuous_update=False``) and
a ``draw(**values) -> (figure, summary)`` function. Changing a control re-runs ``draw`` with the
current values and shows the new figure; ``summary`` (a small array of what was drawn) and
``renders`` let tests check that moving a control changed the plot without a browser.
Expensive results belong in a cache the draw function reads (see :class:`Cache`), never in
the draw function itself.
"""

from __future__ import annotations

from typing import Any, Callable, Hashable

import matplotlib.pyplot as plt
import numpy as np

__all__ = ["Cache", "Explorer", "StepExplorer", "int_slider", "float_slider", "select_slider", "dropdown"]


class Cache:
    """A dict-backed memo: ``cache.get(key, compute)`` runs ``compute()`` once per key."""

    def __init__(self):
        self.store: dict[Hashable, Any] = {}
        self.misses = 0

    def get(self, key: Hashable, compute: Callable[[], Any]) -> Any:
        if key not in self.store:
            self.misses += 1
            self.store[key] = compute()
        return self.store[key]


def _w():
    import ipywidgets

    return ipywidgets


def int_slider(description: str, value: int, lo: int, hi: int, step: int = 1):
    return _w().IntSlider(value=value, min=lo, max=hi, step=step, description=description, continuous_update=False)


def float_slider(description: str, value: float, lo: float, hi: float, step: float = 0.05):
    return _w().FloatSlider(value=value, min=lo, max=hi, step=step, description=description, continuous_update=False)


def select_slider(description: str, options, value=None):
    options = list(options)
    return _w().SelectionSlider(options=options, value=options[0] if value is None else value,
                                description=description, continuous_update=False)


def dropdown(description: str, options, value=None):
    options = list(options)
    return _w().Dropdown(options=options, value=options[0] if value is None else value, description=description)


class Explorer:
    """Controls + a draw function + an Output; re-draws when a control's value changes."""

    def __init__(self, controls: dict[str, Any], draw: Callable[..., tuple[Any, Any]], title: str | None = None):
        w = _w()
        self.controls = controls
        self.draw = draw
        self.out = w.Output()
        self.renders = 0
        self.summary: np.ndarray | None = None
        self.values: dict[str, Any] = {}
        for c in controls.values():
            c.observe(self._changed, names="value")
        header = [w.HTML(f"<b>{title}</b>")] if title else []
        self.box = w.VBox([*header, w.HBox(list(controls.values())), self.out])
        self.render()

    def _changed(self, change) -> None:
        self.render()

    def render(self) -> None:
        from IPython.display import display

        self.values = {k: c.value for k, c in self.controls.items()}
        fig, summary = self.draw(**self.values)
        self.summary = np.asarray(summary, dtype=float)
        self.out.clear_output(wait=True)
        with self.out:
            display(fig)
        plt.close(fig)
        self.renders += 1

    def _repr_mimebundle_(self, **kwargs):
        return self.box._repr_mimebundle_(**kwargs)


class StepExplorer(Explorer):
    """A step slider over a :class:`invlab.studies.errors.Comparison`: what every method's latent
    looks like after that inversion step, next to the truth, and where it sits on the error curves."""

    def __init__(self, comparison, sample_index: int = 0):
        from ..plots.core import plot_step_panel

        self.comparison = comparison
        n = len(next(iter(comparison.runs.values())))
        errors = comparison.step_errors()
        levels = next(iter(comparison.runs.values())).levels

        def draw(step):
            return plot_step_panel(comparison.latents_at(step, sample_index), errors, step, levels[step].label)

        super().__init__({"step": int_slider("step", n // 2, 0, n)}, draw, title="latents after each inversion step")
