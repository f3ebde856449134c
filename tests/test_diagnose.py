"""invlab.diagnose: ground-truth-free diagnostics, and their validation against the truth on generated images."""

import json
import warnings

import pytest
import torch

import invlab
from invlab.studies.diagnose import validate_diagnose


@pytest.fixture(scope="module")
def model():
    return invlab.load_model("gmm-digits")


@pytest.fixture(scope="module")
def image(model):
    z = invlab.noise(model, 2, seed=0, dtype=torch.float64)
    return invlab.sample(model, z, 10, "ddim", 3.0, [3, 8]).final


def test_exact_inversion_has_no_forward_residual_and_naive_has_one(model, image):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", invlab.ConvergenceWarning)
        exact = invlab.diagnose(model, image, cond=[3, 8], steps=10, method="exact", guidance=3.0)
    naive = invlab.diagnose(model, image, cond=[3, 8], steps=10, method="naive", guidance=3.0)
    assert max(exact.forward_residual) < 1e-8 and max(naive.forward_residual) > 1e-3
    # naive's local error is measured against an exact step from the same state: it is the step's own error
    assert max(naive.local_error) > 1e-3 and len(naive.local_error) == 10
    assert exact.reconstruction["psnr"] > 100 > naive.reconstruction["psnr"]


def test_json_report_round_trips(model, image, tmp_path):
    d = invlab.diagnose(model, image, cond=[3, 8], steps=5, method="naive", guidance=3.0)
    blob = json.loads(json.dumps(d.to_json()))
    assert blob["schema"].startswith("invlab.diagnose/") and blob["summary"]["steps"] == 5
    d.save(tmp_path / "rep")
    assert {p.suffix for p in (tmp_path / "rep").iterdir()} >= {".json", ".png"}


def test_each_diagnostic_tracks_the_true_error():
    """On generated images (gmm-digits, float64, 5/10/20 steps, w = 1 and 3, batch 2): measured r = 0.990
    (forward residual vs the true local error, per step), 0.996 (local error), 0.922 (x0 drift), 0.999
    (round-trip RMS vs the true noise error, per run), 0.961 (the noise's whiteness gap)."""
    v = validate_diagnose(invlab.load_model("gmm-digits"), steps=(5, 10, 20), guidance=(1.0, 3.0), batch=2)
    c = v.correlations
    assert c["per step: forward residual vs true local error (naive)"] > 0.95
    assert c["per step: local error vs true local error (naive)"] > 0.95
    assert c["per step: x0 drift vs the true trajectory's drift (naive)"] > 0.8
    assert c["per run: recon RMS vs true noise RMSE"] > 0.95
    assert c["per run: noise whiteness gap vs true noise RMSE"] > 0.8
    assert v.counts["per step: forward residual vs true local error (naive)"] == 70
    assert "forward residual" in v.table()
