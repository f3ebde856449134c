"""Notebook 13 (debug your own inversion): the notebook in QUICK mode, with checks on what it publishes."""

import pytest

from nbchecks import check_13


@pytest.mark.slow
def test_13_debug_your_inversion(quick_notebook):
    res, figures = quick_notebook("13_debug_your_inversion")
    check_13(res)
    assert "13_report.png" in {p.name for p in figures.iterdir()}
