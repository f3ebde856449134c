"""The drawn diagrams (invlab.plots.diagrams): each returns a figure and writes the file it is given."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from invlab import plots  # noqa: E402


@pytest.mark.parametrize("name", ["draw_step_diagram", "draw_kalman_loop", "draw_latent_chain"])
def test_diagram_returns_figure_and_saves(name, tmp_path):
    path = tmp_path / f"{name}.png"
    fig = getattr(plots, name)(save=path)
    try:
        assert isinstance(fig, matplotlib.figure.Figure)
        assert path.exists() and path.stat().st_size > 5_000
        assert getattr(plots, name)() is not None            # save=None: nothing written, still a figure
    finally:
        plt.close("all")
