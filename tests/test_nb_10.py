"""Notebook 10 (exact by construction): the notebook in QUICK mode with checks on what it publishes,
the widget without a browser, and the studies and plots it calls."""

from pathlib import Path

import numpy as np
import pytest
import torch

import invlab
from invlab.studies.families import real_digits
from invlab.studies.reversible import (edit_rows, option_label, quality_vs_ddim, recovered_noises, round_trip_growth,
                                       solve_vs_construct)
from nbchecks import check_10

NB_DIR = Path(__file__).resolve().parent.parent / "notebooks"


@pytest.mark.slow
def test_10_exact_by_construction(quick_notebook):
    res, figures = quick_notebook("10_exact_by_construction")
    check_10(res)
    assert {"10_step_diagrams.png", "10_real_round_trips.png", "10_round_off_growth.png", "10_quality_vs_mixing.png",
            "10_noise_stats.png", "10_edits.png"} <= {p.name for p in figures.iterdir()}


@pytest.fixture(scope="module")
def gmm():
    torch.set_num_threads(1)
    m = invlab.load_model("gmm-digits")
    x, labels, _ = real_digits(m, 2, seed=0, dtype=torch.float64)
    return m, x, labels


def test_round_trip_growth_rows(gmm):
    m, x, _ = gmm
    rows = round_trip_growth(m, x, [("bdia", {"gamma": 1.0}), ("bdia", {"gamma": 0.5})], ["float64"], [10, 50])
    assert [(r["label"], r["steps"]) for r in rows] == [("bdia gamma=1", 10), ("bdia gamma=1", 50),
                                                        ("bdia gamma=0.5", 10), ("bdia gamma=0.5", 50)]
    u = torch.finfo(torch.float64).eps / 2
    for r in rows:
        assert r["finite"] and r["nfe_per_step"] == 1
        assert r["image_err_u"] == pytest.approx(r["image_err"] / u)
    ok = rows[:3]                                       # gamma = 1 everywhere, gamma = 0.5 at 10 steps
    assert max(r["image_err"] for r in ok) < 1e-12 and max(r["noise_err"] for r in ok) < 1e-11
    assert rows[3]["image_err_u"] > 1e3 and rows[3]["zhat_std"] > 100      # gamma = 0.5 explodes by 50 steps


def test_round_trip_growth_records_a_non_finite_run(gmm):
    m, x, _ = gmm
    (row,) = round_trip_growth(m, x, [("bdia", {"gamma": 0.5})], ["float16"], [100])
    assert not row["finite"] and row["image_err"] == float("inf") and row["image_err_u"] == float("inf")


def test_settings_are_checked(gmm):
    m, x, _ = gmm
    with pytest.raises(ValueError, match="not exact by construction"):
        round_trip_growth(m, x, [("ddim", {})], ["float64"], [10])
    with pytest.raises(TypeError, match="solver, options"):
        round_trip_growth(m, x, ["edict"], ["float64"], [10])
    with pytest.raises(ValueError, match="dtype 'float8'"):
        round_trip_growth(m, x, [("belm", {})], ["float8"], [10])
    assert option_label("edict", {"p": 0.93}) == "edict p=0.93" and option_label("belm", {}) == "belm"


def test_quality_rows_on_the_analytic_model(gmm):
    m, _, _ = gmm
    rows = quality_vs_ddim(m, [10], [("edict", {"p": 0.93}), ("belm", {})], batch=3)
    assert [r["label"] for r in rows] == ["ddim", "edict p=0.93", "belm"]
    assert rows[0]["rms_to_ddim"] == 0.0 and all(r["rms_to_ddim"] > 0 for r in rows[1:])
    assert [r["nfe_per_step"] for r in rows] == [1.0, 2.0, 1.0]
    assert all(0.0 <= r["accuracy"] <= 1.0 for r in rows)      # gmm-digits samples are 16x16 digits: classified


def test_recovered_noises_edits_and_contrast(gmm):
    m, x, labels = gmm
    invs = recovered_noises(m, x, labels, 10)
    assert list(invs) == ["naive", "exact", "edict", "bdia", "belm"]
    assert invs["edict"].config["method"] == "algebraic" and invs["exact"].config["method"] == "exact"
    rows, edits = edit_rows(m, invs, labels, (labels + 1) % 10, x)
    by = {r["name"]: r for r in rows}
    for k in ("edict", "bdia", "belm"):
        assert by[k]["recon_rms"] < 1e-12, k
    assert by["naive"]["recon_rms"] > 1e-3
    assert all(edits[k].shape == x.shape for k in edits)
    # another class moves the image far more than the round trip does
    assert min(r["edit_rms"] for r in rows) > 100 * max(by[k]["recon_rms"] for k in ("edict", "bdia", "belm"))
    contrast = solve_vs_construct(m, x, 10, dtypes=("float64",))
    c = {r["name"]: r for r in contrast}
    assert c["exact (solve, DDIM)"]["tol"] == 1e-9 and c["edict"]["tol"] is None
    assert c["edict"]["nfe_per_step"] == 2 and c["belm"]["nfe_per_step"] == 1


def test_reversible_explorer(gmm):
    pytest.importorskip("ipywidgets")
    from invlab.widgets import ReversibleExplorer

    m, x, _ = gmm
    e = ReversibleExplorer(m, x, steps=[10, 100])
    assert e.renders == 1 and e.summary[0] < 1e-12 and e.summary[2] < 5
    e.controls["dtype"].value = "float32"
    assert 1e-12 < e.summary[0] < 1e-3 and e.summary[1] < 1e4
    e.controls["solver"].value = "bdia"
    e.controls["mixing"].value = 0.5
    e.controls["dtype"].value = "float16"
    e.controls["steps"].value = 100
    assert np.isinf(e.summary).all()                  # stopped by a non-finite value, drawn as such
    misses = e.cache.misses
    e.controls["steps"].value = 10
    e.controls["steps"].value = 100
    assert e.cache.misses == misses and e.renders == 8   # both settings were computed before: re-drawn from the cache
    with pytest.raises(ValueError, match="out of range"):
        ReversibleExplorer(m, x, index=5)
    with pytest.raises(ValueError, match="float8"):
        ReversibleExplorer(m, x, dtypes=("float8",))


def test_plots_draw(gmm, tmp_path):
    from invlab import plots
    from invlab.studies.noise_stats import noise_stats_table, white_noise_band

    m, x, labels = gmm
    plots.draw_reversible_steps(save=tmp_path / "d.png")
    rows = round_trip_growth(m, x, [("belm", {})], ["float32", "float64"], [10, 20])
    plots.plot_round_trip_growth(rows, save=tmp_path / "g.png")
    q = quality_vs_ddim(m, [10], [("edict", {"p": 0.9}), ("bdia", {"gamma": 0.9}), ("belm", {})], batch=2)
    plots.plot_quality_vs_mixing(q, save=tmp_path / "q.png")
    zs = {"naive": recovered_noises(m, x, labels, 10)["naive"].final}
    plots.plot_noise_stats(noise_stats_table(zs), zs, white_noise_band(256), save=tmp_path / "n.png")
    assert {p.name for p in tmp_path.iterdir()} == {"d.png", "g.png", "q.png", "n.png"}
    with pytest.raises(ValueError, match="no rows"):
        plots.plot_round_trip_growth([])
