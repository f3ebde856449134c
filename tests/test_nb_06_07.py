"""Notebooks 06 (exact inversion) and 07 (latent models, decoder inversion): the notebooks in QUICK
mode with bounds on what they publish, the widget glue without a browser, and the studies."""

from pathlib import Path

import numpy as np
import pytest
import torch

import invlab
from nbchecks import check_06, check_07

NB_DIR = Path(__file__).resolve().parent.parent / "notebooks"
COND = [3, 8]


def _names(figures):
    return {p.name for p in figures.iterdir()}


# ----------------------------------------------------------------------------- notebooks
@pytest.mark.slow
def test_06_exact_inversion(quick_notebook):
    res, figures = quick_notebook("06_exact_inversion")
    check_06(res)
    assert {"06_residual_fans.png", "06_one_step_residuals.png", "06_tradeoff.png", "06_dpm_step_errors.png",
            "06_dpm_nfe.png", "06_precision.png", "06_last_step_conditioning.png"} <= _names(figures)


@pytest.mark.slow
def test_07_latent_and_decoder_inversion(quick_notebook):
    pytest.importorskip("diffusers")
    try:
        invlab.load_model("digits-latent")
    except FileNotFoundError:
        pytest.skip("digits-latent weights are not shipped")
    res, figures = quick_notebook("07_latent_and_decoder_inversion")
    check_07(res)
    assert {"07_decoder_inversion.png", "07_reconstructions.png", "07_error_split_real.png",
            "07_error_split_generated.png"} <= _names(figures)


# ----------------------------------------------------------------------------- studies (06)
@pytest.fixture(scope="module")
def solver_cmp(digits):
    from invlab.studies.solvers import compare_inner_solvers

    return compare_inner_solvers(digits, invlab.noise(digits, 2, seed=1), 8, 3.0, COND)


def test_inner_solvers_against_truth(solver_cmp):
    from invlab.studies.solvers import inner_residuals, solver_table

    table = solver_table(solver_cmp)
    assert set(table) == {"anderson", "forward-step", "gradient", "reference"}
    assert table["anderson"]["noise_nmse"] < 1e-14 and table["anderson"]["converged_fraction"] == 1.0
    assert table["reference"]["noise_nmse"] > 1e3 * table["anderson"]["noise_nmse"]
    curves = inner_residuals(solver_cmp.runs["anderson"])
    assert len(curves) == 8 and all(c[-1] < 1e-9 for c in curves)
    assert all(len(c) == r.extras["iterations"] + 1 for c, r in zip(curves, solver_cmp.runs["anderson"].records))
    ref = solver_cmp.runs["reference"]
    as_rms = inner_residuals(ref, sum_sq=True)
    raw = inner_residuals(ref)
    assert np.allclose(as_rms[3], np.sqrt(raw[3] / ref.final.numel()))


def test_ddim_phi_is_solved_by_the_exact_step(digits, solver_cmp):
    from invlab.studies.solvers import ddim_phi

    run = solver_cmp.runs["anderson"]
    k = 4                                                  # inversion step k: levels[k] -> levels[k + 1]
    t, s = run.levels[k], run.levels[k + 1]
    x_t, x_s = run.latents()[k], run.latents()[k + 1]
    c = digits.check_cond(COND, 2, x_t)
    assert float((ddim_phi(digits, x_s, s, t, c, 3.0) - x_t).abs().max()) < 1e-8
    truth = solver_cmp.reference.latents()                 # noisiest first: the same step from the sampler
    j = len(run) - 1 - k
    assert torch.allclose(ddim_phi(digits, truth[j], s, t, c, 3.0), truth[j + 1], atol=1e-12)


def test_tolerance_sweep_trades_nfe_for_accuracy(digits):
    from invlab.studies.solvers import tolerance_sweep

    z = invlab.noise(digits, 2, seed=2)
    sweep = tolerance_sweep(digits, z, 10, 3.0, COND, {"anderson": [1e-3, 1e-9], "forward-step": [1e-9]})
    a = sweep["anderson"]
    assert a[0].tol == 1e-3 and a[1].noise_nmse < 1e-3 * a[0].noise_nmse and a[1].nfe_per_step > a[0].nfe_per_step
    assert sweep["forward-step"][0].nfe_per_step > a[1].nfe_per_step
    with pytest.raises(ValueError, match="unknown solver"):
        tolerance_sweep(digits, z, 4, 3.0, COND, {"newton": [1e-3]})


def test_dpm_variants_and_nfe_breakdown(digits):
    from invlab.studies.solvers import dpm_variants, nfe_breakdown

    cmp = dpm_variants(digits, invlab.noise(digits, 2, seed=3), 6, 3.0, COND)
    err = cmp.noise_nmse()
    assert err["Alg. 2, freeze both"] * 10 < err["naive DDIM inversion"]
    parts = nfe_breakdown(cmp.runs["Alg. 2, freeze both"])
    assert list(parts["order"]) == [1, 2, 2, 2, 2, 1]
    assert np.array_equal(parts["past_estimate"] + parts["init"] + parts["solve"], parts["total"])
    assert parts["past_estimate"][0] == 0 and (parts["past_estimate"][1:-1] > 0).all()
    assert (parts["solve"] >= 1).all()


def test_precision_study(digits):
    from invlab.studies.solvers import precision_study

    out = precision_study(digits, invlab.noise(digits, 2, seed=4), 8, 3.0, COND)
    assert out["float64"]["noise_nmse"]["exact"] < 1e-14 < out["float32"]["noise_nmse"]["exact"] < 1e-7
    assert out["float32"]["comparison"].runs["exact"].final.dtype == torch.float32


# ----------------------------------------------------------------------------- widgets
def test_inner_solver_explorer(solver_cmp):
    from invlab.widgets import InnerSolverExplorer

    w = InnerSolverExplorer(solver_cmp.runs, tol=1e-9)
    assert w.renders == 1 and w.controls["step"].continuous_update is False
    before = w.summary.copy()
    w.controls["step"].value = 1
    assert w.renders == 2
    assert before.shape != w.summary.shape or not np.allclose(before, w.summary)
    mid = w.summary.copy()
    w.controls["solver"].value = "reference"
    assert w.renders == 3 and (mid.shape != w.summary.shape or not np.allclose(mid, w.summary))
    assert w.cache.misses == len(solver_cmp.runs)          # every run's curves read once
    w.controls["step"].value = 2
    assert w.cache.misses == len(solver_cmp.runs)


def test_image_chain_explorer():
    from invlab.widgets import ImageChainExplorer

    g = torch.Generator().manual_seed(0)
    a, b = torch.rand(3, 1, 8, 8, generator=g), torch.rand(3, 1, 8, 8, generator=g)
    w = ImageChainExplorer({"real": {"x": a, "y": b}, "generated": {"x": b, "y": a * 0}})
    assert w.renders == 1 and w.controls["image"].continuous_update is False
    before = w.summary.copy()
    w.controls["image"].value = 2
    assert w.renders == 2 and not np.allclose(before, w.summary)
    w.controls["images"].value = "generated"
    assert w.renders == 3 and np.allclose(w.summary[:64], b[2, 0].numpy().ravel())


# ----------------------------------------------------------------------------- studies (07)
@pytest.fixture(scope="module")
def latent_model():
    pytest.importorskip("diffusers")
    try:
        return invlab.load_model("digits-latent")
    except FileNotFoundError:
        pytest.skip("digits-latent weights are not shipped")


def test_mse():
    from invlab.studies.latent import mse

    a = torch.zeros(2, 1, 2, 2)
    b = torch.ones(2, 1, 2, 2) * torch.tensor([1.0, 2.0])[:, None, None, None]
    assert mse(a, b) == pytest.approx(2.5)
    assert mse(a, b, per_sample=True).tolist() == [1.0, 4.0]


def test_image_chain_split_on_generated_digits(latent_model):
    from invlab.studies.latent import generate_images, image_chain, mse

    torch.set_num_threads(1)
    m = latent_model
    cond = torch.tensor(COND)
    # 20 steps: every step's solve converges for seeds 0-5 (at 10 steps one step misses its tolerance
    # on every seed and the noise error ranges 1e-7..0.2 with the seed: not a portable bound)
    z_T, z0, x = generate_images(m, 2, 20, 3.0, cond, seed=0)
    out = image_chain(m, x, {"true latent": z0, "encoder": m.encode(x)}, 20, 3.0, cond, true_noise=z_T, true_latent=z0)
    truth_exact, truth_naive = out[("true latent", "exact")], out[("true latent", "naive")]
    assert truth_exact.vae_mse < 1e-12 and truth_exact.source_latent_nmse == 0.0    # D(z0) is the image itself
    assert truth_exact.noise_nmse < 1e-4 < truth_naive.noise_nmse
    enc = out[("encoder", "exact")]
    assert enc.vae_mse == pytest.approx(mse(m.decode(m.encode(x)), x)) and enc.vae_mse > 0
    assert enc.total_mse == pytest.approx(mse(enc.image_back, x))
    assert enc.source_latent_nmse > 0 and enc.row()["method"] == "exact"


def test_compare_decoder_inversion(latent_model):
    from invlab.studies.latent import compare_decoder_inversion

    from invlab.data import digits_images

    x = digits_images(size=32, split="val")[0][:2]
    res = compare_decoder_inversion(latent_model, x, iterations=20)
    assert set(res) == {"adam", "gradient-free"}
    for r in res.values():
        assert len(r.losses) == 20 and r.losses[0] == pytest.approx(r.encoder_error, rel=1e-4)
    assert res["gradient-free"].decoder_error < res["gradient-free"].encoder_error
