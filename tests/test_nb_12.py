"""Notebook 12 (why invert: editing and watermarks): the notebook in QUICK mode, with checks on what it publishes."""

import pytest

from nbchecks import check_12


@pytest.mark.slow
def test_12_why_invert(quick_notebook):
    res, figures = quick_notebook("12_why_invert")
    check_12(res)
    assert {p.name for p in figures.iterdir()} >= {"12_digit_edit.png", "12_tradeoff_digits.png", "12_photos_floor.png",
                                                   "12_watermark_spectra.png", "12_watermark_roc.png"}
    # the sweep covered every method and depth it was asked for, each free and masked
    assert len(res["digit_success"]) == 2 * len(res["digit_methods"]) * len(res["digit_depths"])
    # the watermark table has one cell per protocol and attack
    assert len(res["wm_auc"]) == 4 * len(res["wm_attacks"])
