"""Widget glue without a browser: build, move a control, check the plot changed."""

import numpy as np
import pytest

import invlab
from invlab.studies.errors import local_step_errors, run_methods
from invlab.widgets import Cache, Explorer, StepExplorer, int_slider


@pytest.fixture(scope="module")
def comparison(digits):
    return run_methods(digits, invlab.noise(digits, 2, seed=1), 10, "ddim", 3.0, [3, 8])


def test_step_explorer_redraws_on_slider_change(comparison):
    w = StepExplorer(comparison)
    assert w.renders == 1 and w.controls["step"].continuous_update is False
    before = w.summary.copy()
    w.controls["step"].value = 9
    assert w.renders == 2 and w.values == {"step": 9}
    assert before.shape != w.summary.shape or not np.allclose(before, w.summary)


def test_explorer_and_cache_compute_once():
    import matplotlib.pyplot as plt

    cache = Cache()

    def draw(k):
        data = cache.get(k, lambda: np.arange(k + 1) ** 2)
        fig, ax = plt.subplots()
        ax.plot(data)
        return fig, data

    w = Explorer({"k": int_slider("k", 2, 0, 5)}, draw)
    w.controls["k"].value = 4
    w.controls["k"].value = 2
    assert w.renders == 3 and cache.misses == 2 and list(w.summary) == [0, 1, 4]


def test_comparison_against_truth(comparison):
    assert comparison.noise_nmse()["exact"] < 1e-12 < comparison.noise_nmse()["naive"]
    local = local_step_errors(comparison)
    acc = comparison.step_errors()["naive"]
    assert abs(float(local[0]) - float(acc[0])) < 1e-15       # step 1 starts from the truth either way
    assert float(acc[-1]) > float(local[-1])
    x0 = comparison.x0_predictions([0, 5, 10])
    assert set(x0) == {"truth", "naive", "easyinv", "exact"} and x0["exact"].shape == (3, 1, 16, 16)
    assert float((x0["exact"] - x0["truth"]).abs().max()) < 1e-6
