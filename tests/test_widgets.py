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


# ------------------------------------------------------------------ the method zoo (notebook 09)
@pytest.fixture(scope="module")
def zoo_rows(digits):
    from invlab.studies.zoo import matched_entries, run_zoo

    entries = matched_entries((2, 4), methods=["naive", "exact", "fixed-point", "renoise"])
    return run_zoo(digits, entries, steps=8, guidance=3.0, batch=2, keep_images=True)


def test_method_zoo_explorer_follows_methods_and_budget(zoo_rows):
    from invlab.widgets import MethodZooExplorer

    w = MethodZooExplorer(zoo_rows)
    names = list(w.controls["methods"].options)
    assert {"naive", "exact", "fixed-point", "renoise"} <= set(names) and w.renders == 1
    by_label = {r["label"]: r for r in zoo_rows}
    # at the largest budget every chosen method shows its best run within it
    for name, value in zip(w.values["methods"], w.summary):
        fits = [r["image_nmse"] for r in zoo_rows if r["label"].split(" ")[0] == name and r["nfe"] <= 4 * 8 + 1]
        assert value == min(fits)
    w.controls["budget"].value = 1.0                      # runs within 8 NFE (+1 for a first step's guess)
    s = dict(zip(w.values["methods"], w.summary))
    for name, value in s.items():
        fits = [r["image_nmse"] for r in zoo_rows if r["label"].split(" ")[0] == name and r["nfe"] <= 8 + 1]
        assert (np.isnan(value) and not fits) or value == min(fits)
    assert s["naive"] == by_label["naive"]["image_nmse"] and np.isnan(s["renoise"])   # renoise 2x spends 16
    w.controls["methods"].value = ("naive",)
    assert w.renders == 3 and list(w.summary) == [by_label["naive"]["image_nmse"]]


def test_method_zoo_explorer_refuses_bad_rows(zoo_rows):
    from invlab.widgets import MethodZooExplorer

    with pytest.raises(ValueError, match="at least one successful run"):
        MethodZooExplorer([])
    other = [dict(r, guidance=7.5) for r in zoo_rows[:1]]
    with pytest.raises(ValueError, match="one model, guidance, step count and image source"):
        MethodZooExplorer(list(zoo_rows) + other)
    with pytest.raises(ValueError, match="not in the rows"):
        MethodZooExplorer(zoo_rows, methods=["null-text"])


@pytest.fixture(scope="module")
def edit_rows():
    """An edit sweep on gmm-digits (float64, closed-form scores): 2 sampled 3s -> 8, 6 steps."""
    import torch

    from invlab.studies.edit import edit_sweep

    model = invlab.load_model("gmm-digits")
    x = invlab.sample(model, invlab.noise(model, 2, seed=4, dtype=torch.float64), 6, "ddim", 3.0, 3).final
    region = torch.zeros(1, 1, 16, 16)
    region[..., :8] = 1
    rows = edit_sweep(model, x, 3, 8, region, methods=["naive", "exact"], depths=[0.5, 1.0], steps=6,
                      ratio_levels=4, ratio_draws=1)
    return x, region, rows


def test_edit_sweep_rows_and_their_tables(edit_rows):
    from invlab.studies.edit import floor_table, tradeoff_points

    x, region, rows = edit_rows
    assert len(rows) == 2 * 2 * 2 and all(r["error"] is None for r in rows)
    for r in rows:
        assert r["edited"].shape == x.shape and r["recon"].shape == x.shape and r["nfe"] > 0
        assert r["k"] == (3 if r["depth"] == 0.5 else 6)
        if r["masked"]:                      # a pixel model's masked background is the source, bit for bit
            assert r["bg_psnr"] == float("inf")
    exact = [r for r in rows if r["method"] == "exact"]
    assert all(r["recon_psnr"] > 100 for r in exact)        # the reconstruction of an exact inversion
    pts = tradeoff_points(rows)
    assert set(pts) == {("naive", False), ("naive", True), ("exact", False), ("exact", True)}
    assert pts[("naive", True)]["bg_psnr"] == [60.0, 60.0] and pts[("naive", False)]["depth"] == [0.5, 1.0]
    table = floor_table(rows)
    assert [t["method"] for t in table] == ["exact", "naive"]
    assert all({"recon_bg_psnr", "edit_bg_psnr", "masked_bg_psnr"} <= set(t) for t in table)


def test_edit_sweep_reports_a_refused_mask_as_a_row():
    import torch

    from invlab.studies.edit import edit_sweep

    model = invlab.load_model("gmm-digits")
    x = invlab.sample(model, invlab.noise(model, 1, seed=0, dtype=torch.float64), 4, "ddim", 1.0, 3).final
    region = torch.ones(1, 1, 16, 16)
    rows = edit_sweep(model, x, 3, 8, region, methods=["algebraic"], depths=[1.0], steps=4, ratio_levels=2,
                      ratio_draws=1, method_options={"algebraic": {"solver": "edict"}})
    assert [r["masked"] for r in rows] == [False, True]
    assert rows[0]["error"] is None and "cannot be used with solver='edict'" in rows[1]["error"]


def test_edit_explorer_moves_through_depth_method_and_mask(edit_rows):
    from invlab.widgets import EditExplorer

    x, region, rows = edit_rows
    w = EditExplorer(rows, x, region=region)
    assert w.renders == 1 and w.values == {"method": "naive", "depth": 1.0, "mask": False}
    assert w.summary[0] == 1.0 and w.summary[1] == 0.0
    w.controls["mask"].value = True
    assert w.renders == 2 and w.summary[2] == float("inf")
    w.controls["depth"].value = 0.5
    w.controls["method"].value = "exact"
    by = {(r["method"], r["depth"], r["masked"]): r for r in rows}
    assert w.summary[0] == 0.5 and w.summary[3] == by[("exact", 0.5, True)]["success"]
    with pytest.raises(ValueError, match="keep_images=True"):
        EditExplorer([{k: v for k, v in r.items() if k != "edited"} for r in rows], x)
    with pytest.raises(ValueError, match="guidances"):
        EditExplorer(rows + [dict(rows[0], guidance=7.0)], x)
