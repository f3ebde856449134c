"""The equal-budget comparison (invlab.studies.zoo): rows, budgets, refusals, the Pareto front.

All on gmm-digits (exact eps, float64) with a few DDIM steps and a batch of 2: a few seconds.
"""

from __future__ import annotations

import math

import pytest
import torch

import invlab
from invlab.metrics import pareto_front
from invlab.studies.zoo import (EXTRA_KNOBS, KNOBS, NO_KNOB, ROW_FIELDS, Entry, default_cond, matched_entries,
                                pareto_points, run_zoo, series, uses_side_info, winners)

STEPS = 6


@pytest.fixture(scope="module")
def gmm():
    return invlab.load_model("gmm-digits")


@pytest.fixture(scope="module")
def rows(gmm):
    return run_zoo(gmm, matched_entries((2, 4)), steps=STEPS, guidance=3.0, batch=2)


def test_every_row_has_the_fields(rows):
    assert rows
    for r in rows:
        assert set(r) == set(ROW_FIELDS)
        assert r["model"] == "gmm-digits" and r["steps"] == STEPS and r["guidance"] == 3.0 and r["batch"] == 2
        assert r["aggregate"] == "median"
        if r["error"] is None:
            assert r["nfe"] > 0 and r["nfe_reconstruct"] == STEPS
            assert r["noise_nmse"] >= 0 and r["image_nmse"] >= 0 and -1 <= r["ssim"] <= 1
            assert len(r["noise_nmse_samples"]) == 2 and len(r["image_nmse_samples"]) == 2
            assert r["image_nmse"] == pytest.approx(sorted(r["image_nmse_samples"])[0] / 2
                                                    + sorted(r["image_nmse_samples"])[1] / 2)
            assert r["latent_nmse"] is None            # a pixel model
            assert r["seconds_invert"] > 0
        assert r["input"] is None and r["reconstruction"] is None   # keep_images=False


def test_methods_come_from_the_registry_at_call_time(rows):
    from invlab.studies.zoo import OWN_SOLVERS_ONLY

    ran = {r["method"] for r in rows}
    # null-text too, once it is registered; 'algebraic' only inverts its own (exact-by-construction) solvers
    assert ran == set(invlab.METHODS) - set(OWN_SOLVERS_ONLY) and "null-text" in ran
    labels = [r["label"] for r in rows]
    assert len(labels) == len(set(labels))


def test_matched_budgets_stay_within_the_budget(rows):
    """A matched entry spends at most m NFE per step; exact and Newton one more on the first step
    (its naive initial guess has no previous eps to reuse)."""
    matched = [r for r in rows if r["multiple"] is not None and r["error"] is None]
    assert {r["multiple"] for r in matched} >= {1, 2, 4}
    for r in matched:
        assert r["budget_nfe"] == r["multiple"] * STEPS
        assert r["nfe"] <= r["budget_nfe"] + 1, (r["label"], r["nfe"])
    for r in matched:
        if r["method"] in NO_KNOB:
            assert r["nfe"] == STEPS
        if r["label"] == "fixed-point 2x":       # keep="last", max_iter 2: exactly 2 per step until converged
            assert STEPS < r["nfe"] <= 2 * STEPS
    knob = {r["label"]: r["nfe"] for r in matched}
    assert knob["exact 2x"] < knob["exact 4x"] and knob["renoise 2x"] < knob["renoise 4x"]


def test_knob_rules_are_monotone_and_refuse_what_they_cannot_reach():
    for variant, (method, rule) in KNOBS.items():
        reached = [m for m in range(1, 17) if rule(m) is not None]
        assert reached and reached == list(range(reached[0], 17)), variant   # every budget from the first on
    assert KNOBS["newton"][1](2) is None and KNOBS["null-text"][1](3) is None
    labels = [e.label for e in matched_entries((1, 2))]
    assert "naive" in labels and "exact 2x" in labels and "newton 2x" not in labels


def test_a_raising_method_is_recorded_not_raised(gmm):
    """Null-text refuses w = 1, ReNoise refuses an unknown option: rows with the reason, no exception."""
    entries = [Entry("naive", "naive"), Entry("bad renoise", "renoise", {"no_such_option": 1})]
    if "null-text" in invlab.METHODS:
        entries.append(Entry("null-text", "null-text", {"inner_steps": 1}))
    out = run_zoo(gmm, entries, steps=4, guidance=1.0, batch=2)
    assert out[0]["error"] is None and math.isfinite(out[0]["image_nmse"])
    for r in out[1:]:
        assert r["error"] and math.isnan(r["image_nmse"]) and r["nfe"] == 0
    assert "no_such_option" in out[1]["error"]


def test_direct_inversion_reconstructs_exactly_and_carries_side_info(rows):
    r = next(r for r in rows if r["method"] == "direct")
    assert r["image_nmse"] == 0.0 and r["psnr"] == math.inf and r["side_info"]
    assert not uses_side_info("naive") and uses_side_info("negative-prompt")


def test_more_budget_solves_further_on_the_analytic_model(gmm):
    """Exact inversion at 8x converges on gmm-digits (float64): its noise error falls far below
    the 2x solve's (converged vs one iteration: a gap of orders of magnitude, not a close call)."""
    out = run_zoo(gmm, [Entry("e2", "exact", {"max_iter": 0}), Entry("e8", "exact", {"max_iter": 50, "tol": 1e-9})],
                  steps=STEPS, guidance=1.0, batch=2)
    assert out[1]["converged_steps"] == STEPS
    assert out[1]["noise_nmse"] < 1e-3 * out[0]["noise_nmse"]


def test_winners_respect_the_budget(rows):
    best = winners(rows, noise_only=True)
    assert {w["multiple"] for w in best} == {1, 2, 4}
    for w in best:
        assert w["nfe"] <= w["multiple"] * STEPS + 1
        assert not uses_side_info(w["method"])
        assert isinstance(w["tie"], bool)
    # fixed-point 2x and renoise 2x are the same computation: a tie, never a win
    two = next(w for w in best if w["multiple"] == 2)
    if {two["label"], two["runner_up"]} == {"fixed-point 2x", "renoise 2x"}:
        assert two["tie"]
    assert all(w["label"] == "direct" for w in winners(rows) if w["multiple"] == 1)


def test_points_and_kept_images(gmm, rows):
    pts = pareto_points(rows)
    assert len(pts) == sum(1 for r in rows if r["error"] is None)
    assert {p["series"] for p in pts} >= {"naive", "exact", "fixed-point", "newton-sign"}
    assert series({"label": "newton-sign 4x", "multiple": 4}) == "newton-sign"
    out = run_zoo(gmm, [Entry("naive", "naive")], steps=3, guidance=3.0, batch=2, keep_images=True)
    assert out[0]["input"].shape == out[0]["reconstruction"].shape == (2, 1, 16, 16)
    p = pareto_points(out, with_images=True)[0]
    assert p["reconstruction"] is out[0]["reconstruction"] and p["label"] == "naive"


def test_default_cond(gmm):
    assert torch.equal(default_cond(gmm, 12), torch.arange(12) % 10)


def test_pareto_front_on_a_hand_made_example():
    costs = [1, 2, 2, 3, 4, 5, 5, float("nan")]
    errors = [5, 3, 4, 3, 1, 1, float("nan"), 0]
    # (2, 4) is dominated by (2, 3); (3, 3) by (2, 3); (5, 1) by (4, 1); NaN points never count
    assert pareto_front(costs, errors) == [0, 1, 4]
    assert pareto_front([1, 1], [2, 2]) == [0, 1]           # equal points are both kept
    assert pareto_front([], []) == []
    with pytest.raises(ValueError):
        pareto_front([1, 2], [1])


def test_pareto_plot(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    from invlab.plots.zoo import method_style, plot_pareto

    pts = [{"series": "naive", "cost": 10, "error": 1e-2}, {"series": "exact", "cost": 40, "error": 1e-4},
           {"series": "direct", "cost": 10, "error": 0.0}, {"series": "renoise", "cost": 40, "error": 1e-3,
                                                            "hollow": True}]
    fig, fronts = plot_pareto({"a": pts, "b": pts[:2]}, front_of={"naive", "exact", "renoise"},
                              save=tmp_path / "p.png")
    assert (tmp_path / "p.png").exists()
    assert [p["series"] for p in fronts["a"]] == ["naive", "exact"]
    assert method_style("some-new-method") == method_style("some-new-method")


# ---- given x0 (real images) -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def real(gmm):
    from invlab.studies.families import real_digits

    x0, labels, images = real_digits(gmm, 2, seed=0)
    entries = [Entry("naive", "naive"), Entry("direct", "direct"), Entry("exact 4x", "exact", {"max_iter": 2}, 4),
               Entry("negative-prompt", "negative-prompt")]
    return x0, labels, run_zoo(gmm, entries, steps=4, guidance=3.0, x0=x0, labels=labels, keep_images=True)


def test_given_x0_is_what_gets_inverted(gmm, real):
    """The rows say "real", carry no noise error (no truth), and invert the given images:
    direct inversion reconstructs exactly that input, and the kept input is it."""
    x0, labels, rows = real
    assert [r["source"] for r in rows] == ["real"] * len(rows)
    for r in rows:
        assert set(r) == set(ROW_FIELDS) and r["error"] is None and r["batch"] == 2
        assert math.isnan(r["noise_nmse"]) and all(math.isnan(v) for v in r["noise_nmse_samples"])
        assert len(r["image_nmse_samples"]) == 2 and math.isfinite(r["image_nmse"])
        assert torch.equal(r["input"], x0)                  # pixel model: the input images themselves
    by = {r["label"]: r for r in rows}
    assert by["direct"]["image_nmse"] == 0.0
    assert by["naive"]["image_nmse"] > 1e-6                 # a real round trip, not a copy
    # naive inversion of the given x0, reconstructed by hand, gives the row's number
    inv = invlab.invert(gmm, x0, 4, "ddim", "naive", 3.0, labels)
    back = invlab.reconstruct(gmm, inv)
    per = invlab.metrics.nmse(back.final, x0, reduction="none").tolist()
    assert by["naive"]["image_nmse"] == pytest.approx(sum(per) / 2, rel=1e-9)     # median of two


def test_given_x0_takes_its_labels_as_the_condition(gmm, real):
    """cond defaults to labels: passing them as cond explicitly gives the same rows; other
    labels give other numbers."""
    x0, labels, rows = real
    same = run_zoo(gmm, [Entry("naive", "naive")], steps=4, guidance=3.0, x0=x0, cond=labels)
    assert same[0]["image_nmse"] == pytest.approx(rows[0]["image_nmse"], rel=1e-12)
    other = run_zoo(gmm, [Entry("naive", "naive")], steps=4, guidance=3.0, x0=x0, labels=(labels + 1) % 10)
    assert other[0]["image_nmse"] != pytest.approx(rows[0]["image_nmse"], rel=1e-6)


def test_sampled_rows_say_so_and_bad_inputs_are_refused(gmm, rows):
    assert {r["source"] for r in rows} == {"sampled"}
    x0 = torch.zeros(2, *gmm.sample_shape, dtype=torch.float64)
    with pytest.raises(ValueError, match="batch"):
        run_zoo(gmm, [Entry("naive", "naive")], steps=2, x0=x0, batch=3)
    with pytest.raises(ValueError, match="shape"):
        run_zoo(gmm, [Entry("naive", "naive")], steps=2, x0=x0[0])
    with pytest.raises(ValueError, match="labels"):
        run_zoo(gmm, [Entry("naive", "naive")], steps=2, x0=x0, labels=[1, 2, 3])
    with pytest.raises(ValueError, match="labels"):
        run_zoo(gmm, [Entry("naive", "naive")], steps=2, labels=[1, 2])


def test_winners_never_mix_sampled_and_real(rows, real):
    best = winners(list(rows) + list(real[2]))
    assert {w["source"] for w in best} == {"sampled", "real"}
    assert len(best) == len(winners(rows)) + len(winners(real[2]))


def test_the_null_text_lr_variant(gmm):
    """EXTRA_KNOBS: null-text at lr 0.1, at every budget null-text reaches, its own series; opt-in
    (matched_entries without extra= is unchanged)."""
    plain = matched_entries((2, 4, 8))
    more = matched_entries((2, 4, 8), extra=EXTRA_KNOBS)
    lr = [e for e in more if e.label.startswith("null-text-lr0.1")]
    nt = [e for e in more if e.label.startswith("null-text ")]
    assert [e.label for e in lr] == ["null-text-lr0.1 4x", "null-text-lr0.1 8x"]
    assert [e.multiple for e in lr] == [e.multiple for e in nt] == [4, 8]
    for a, b in zip(lr, nt):
        assert a.method == "null-text" and a.options == {**b.options, "lr": 0.1}
    assert [e.label for e in more if e not in lr] == [e.label for e in plain]
    assert series({"label": "null-text-lr0.1 4x", "multiple": 4}) == "null-text-lr0.1"
    with pytest.raises(ValueError, match="already"):
        matched_entries((4,), extra={"exact": KNOBS["exact"]})
    out = run_zoo(gmm, lr[:1] + nt[:1], steps=STEPS, guidance=3.0, batch=2)
    assert [r["error"] for r in out] == [None, None]
    assert out[0]["options"]["lr"] == 0.1 and out[0]["nfe"] <= 4 * STEPS
    assert [p["series"] for p in pareto_points(out)] == ["null-text-lr0.1", "null-text"]
