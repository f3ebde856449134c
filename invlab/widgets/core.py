"""Widget glue: controls -> a pure draw function -> an Output. Compute once, cache, re-plot.

An :class:`Explorer` owns some ipywidgets controls (all with ``continuous_update=False``) and
a ``draw(**values) -> (figure, summary)`` function. Changing a control re-runs ``draw`` with the
current values and shows the new figure; ``summary`` (a small array of what was drawn) and
``renders`` let tests check that moving a control changed the plot without a browser.
Expensive results belong in a cache the draw function reads (see :class:`Cache`), never in
the draw function itself.
"""

from __future__ import annotations

from typing import Any, Callable, Hashable, Iterable

import matplotlib.pyplot as plt
import numpy as np

__all__ = ["Cache", "Explorer", "StepExplorer", "check_object", "check_range", "int_slider", "float_slider",
           "select_slider", "dropdown"]


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


def check_range(description: str, value: Any, lo: Any, hi: Any, kind: type) -> None:
    """A slider's value and bounds, checked before ipywidgets sees them (it clamps values silently
    and raises a TraitError for min > max)."""
    from ..checks import check_int, check_number

    conv = (lambda n, v: check_int(f"{description} slider {n}", v)) if kind is int else (
        lambda n, v: check_number(f"{description} slider {n}", v))
    v, a, b = conv("value", value), conv("minimum", lo), conv("maximum", hi)
    if a > b:
        raise ValueError(f"{description} slider: minimum {lo} is above maximum {hi}; swap them")
    if not a <= v <= b:
        raise ValueError(f"{description}={value} is outside the slider's range [{lo}, {hi}]; pick a value in it")


def int_slider(description: str, value: int, lo: int, hi: int, step: int = 1):
    check_range(description, value, lo, hi, int)
    return _w().IntSlider(value=value, min=lo, max=hi, step=step, description=description, continuous_update=False)


def float_slider(description: str, value: float, lo: float, hi: float, step: float = 0.05):
    check_range(description, value, lo, hi, float)
    return _w().FloatSlider(value=value, min=lo, max=hi, step=step, description=description, continuous_update=False)


def _options(description: str, options, value):
    if isinstance(options, (str, bytes)) or not isinstance(options, Iterable):
        raise TypeError(f"{description} options must be a list of choices (got {options!r})")
    options = list(options)
    if not options:
        raise ValueError(f"{description} needs at least one option to choose from")
    if value is not None and value not in options:
        raise ValueError(f"{description}={value!r} is not one of the options {options}; pick one of them "
                         "(or add it to the options)")
    return options, options[0] if value is None else value


def select_slider(description: str, options, value=None):
    options, value = _options(description, options, value)
    return _w().SelectionSlider(options=options, value=value, description=description, continuous_update=False)


def dropdown(description: str, options, value=None):
    options, value = _options(description, options, value)
    return _w().Dropdown(options=options, value=value, description=description)


def _check_index(what: str, index: Any, size: int) -> int:
    from ..checks import check_int

    i = check_int(what, index)
    if not 0 <= i < size:
        raise ValueError(f"{what}={index} is out of range: there are {size} (0..{size - 1})")
    return i


def check_object(widget: str, what: str, value: Any, cls: type, how: str) -> None:
    """TypeError when a widget is handed the wrong kind of object (e.g. a Trajectory for a Comparison)."""
    if not isinstance(value, cls):
        raise TypeError(f"{widget} takes {what} (a {cls.__name__}, {how}); got {type(value).__name__}")


def figure_output(fig) -> dict[str, Any]:
    """A matplotlib figure as a Jupyter ``display_data`` output (PNG, as the inline backend draws it)."""
    import base64
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    return {"output_type": "display_data", "metadata": {},
            "data": {"image/png": base64.b64encode(buf.getvalue()).decode("ascii"), "text/plain": repr(fig)}}


class Explorer:
    """Controls + a draw function + an Output; re-draws when a control's value changes."""

    def __init__(self, controls: dict[str, Any], draw: Callable[..., tuple[Any, Any]], title: str | None = None):
        if not isinstance(controls, dict) or not all(hasattr(c, "observe") and hasattr(c, "value")
                                                       for c in controls.values()):
            raise TypeError("controls must be a dict name -> ipywidgets control (e.g. int_slider(...)); "
                            f"got {type(controls).__name__}")
        if not callable(draw):
            raise TypeError(f"draw must be a function draw(**values) -> (figure, summary); got {type(draw).__name__}")
        w = _w()
        self.controls = controls
        self.draw = draw
        self.out = w.Output()
        self.renders = 0
        self.summary: np.ndarray | None = None
        self.values: dict[str, Any] = {}
        self.png = ""
        for c in controls.values():
            c.observe(self._changed, names="value")
        header = [w.HTML(f"<b>{title}</b>")] if title else []
        self.box = w.VBox([*header, w.HBox(list(controls.values())), self.out])
        self.render()

    def _changed(self, change) -> None:
        self.render()

    def render(self) -> None:
        self.values = {k: c.value for k, c in self.controls.items()}
        fig, summary = self.draw(**self.values)
        self.summary = np.asarray(summary, dtype=float)
        # One assignment of the Output's state, not ``with self.out: display(fig)``: output capture
        # makes headless runners (papermill / nbclient) emulate the Output widget by sending comm
        # messages on the shell channel while they wait on it, which now and then hangs the cell
        # (seen here 2 times in ~80 QUICK notebook runs; nbclient issue #312). The frontend shows
        # the same PNG either way, and the swap is atomic (no flicker, like clear_output(wait=True)).
        shown = figure_output(fig)
        self.out.outputs = (shown,)
        self.png = shown["data"]["image/png"]  # the picture a static page shows (see _repr_mimebundle_)
        plt.close(fig)
        self.renders += 1

    def _repr_mimebundle_(self, **kwargs):
        # The live widget, plus the current figure as a PNG: JupyterLab renders the widget view
        # (its renderer ranks first), while a page built without widget state (nbconvert HTML,
        # GitHub) shows the picture where it would otherwise print "VBox(...)".
        bundle = dict(self.box._repr_mimebundle_(**kwargs) or {})
        bundle["image/png"] = self.png
        return bundle


class StepExplorer(Explorer):
    """A step slider over a :class:`invlab.studies.errors.Comparison`: what every method's latent
    looks like after that inversion step, next to the truth, and where it sits on the error curves."""

    def __init__(self, comparison, sample_index: int = 0):
        from ..plots.core import plot_step_panel
        from ..studies.errors import Comparison

        check_object("StepExplorer", "a comparison of inversion methods", comparison, Comparison,
                     "from invlab.studies.errors.run_methods")
        _check_index("sample_index", sample_index, comparison.z_T.shape[0])
        self.comparison = comparison
        n = len(next(iter(comparison.runs.values())))
        errors = comparison.step_errors()
        levels = next(iter(comparison.runs.values())).levels

        def draw(step):
            return plot_step_panel(comparison.latents_at(step, sample_index), errors, step, levels[step].label)

        super().__init__({"step": int_slider("step", n // 2, 0, n)}, draw, title="latents after each inversion step")
