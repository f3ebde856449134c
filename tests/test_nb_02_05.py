"""Notebooks 02 (flows in 2-D) and 05 (Kalman view): their studies against truth, widget glue, QUICK runs."""

from pathlib import Path

import numpy as np
import pytest
import torch

import invlab
from invlab.metrics import nmse
from invlab.studies import flows
from invlab.studies.kalman import kalman_steps, oracle_eta, run_gains
from invlab.widgets import FlowExplorer, KalmanExplorer
from nbchecks import check_02, check_05

NB_DIR = Path(__file__).resolve().parent.parent / "notebooks"


# ------------------------------------------------------------------ studies: flows (gmm-2d)
def test_denoising_field_is_sigma_times_score(gmm2d):
    _, _, pts = flows.grid_points(2.0, 4)
    x = pts.clone().requires_grad_(True)
    score = torch.autograd.grad(gmm2d.log_prob(x, 300.0).sum(), x)[0]
    assert torch.allclose(flows.denoising_field(gmm2d, pts, 300.0), gmm2d.schedule.sigma(300.0) * score, atol=1e-10)


def test_fine_path_converges_to_the_gaussian_flow_map():
    # one Gaussian component: the exact flow map is known in closed form
    from invlab.models.gaussian import GaussianMixture, gaussian_flow_map

    g = GaussianMixture(torch.tensor([[1.0, -0.5]]), torch.tensor([[0.3, 0.1]]))
    s, t = g.schedule.level(700.0), g.schedule.level(100.0)
    x = invlab.noise(g, 5, seed=3)
    truth = gaussian_flow_map(x, g.means[0], g.variances[0], s.alpha, s.sigma, t.alpha, t.sigma)
    errs = [float((flows.fine_path(g, x, s, t, n)[-1] - truth).norm()) for n in (10, 40)]
    assert errs[1] < errs[0] / 3 and errs[1] < 0.03                 # first order: ~4x smaller for 4x the steps


def test_flow_paths_and_round_trips(gmm2d):
    z = invlab.noise(gmm2d, 4, seed=0)
    cond = torch.arange(4) % 3
    naive = flows.flow_paths(gmm2d, z, 8, 1.0, cond, "naive", substeps=10)
    exact = flows.flow_paths(gmm2d, z, 8, 1.0, cond, "exact", substeps=10)
    assert naive.ddim.shape == naive.exact.shape == naive.inverted.shape == (9, 4, 2)
    assert naive.exact_fine.shape == (81, 4, 2) and torch.equal(naive.exact_fine[::10], naive.exact)
    assert torch.equal(naive.inverted[-1], naive.ddim[-1])            # inversion starts from the sample
    assert exact.noise_nmse < 1e-12 < 1e-3 < naive.noise_nmse and naive.nfe == 8
    rt = flows.round_trip_errors(gmm2d, z, [5, 20], {"naive": {"method": "naive"}, "exact": {"method": "exact"}}, 1.0, cond)
    assert rt["naive"][1] < rt["naive"][0] / 4 and max(rt["exact"]) < 1e-12


def test_corner_step_naive_is_first_fixed_point_iterate(gmm2d):
    z = invlab.noise(gmm2d, 3, seed=1)
    p = flows.flow_paths(gmm2d, z, 6, 1.0, None, "naive", substeps=10)
    i = flows.worst_corner(gmm2d, p, None, 1.0, point=0)
    s, t = p.sampling.levels[i], p.sampling.levels[i + 1]
    step = flows.corner_step(gmm2d, p.exact[i], s, t, substeps=50, iterations=60)
    assert torch.allclose(step.fixed_point[1], step.x_s_naive, atol=1e-12)
    assert float((step.fixed_point[-1] - step.x_s).norm()) < 1e-8 < float(step.naive_miss.max())
    assert (step.corner_cut > 0).all()
    # the DDIM end point is exactly what invlab's sampler step gives
    from invlab.steps import ddim_step, x0_from_eps

    assert torch.allclose(step.x_t_ddim, ddim_step(x0_from_eps(step.x_s, step.eps_s, s), step.eps_s, t))


# ------------------------------------------------------------------ studies: Kalman view (gmm-digits)
@pytest.fixture(scope="module")
def study(digits):
    z = invlab.noise(digits, 3, seed=0)
    return run_gains(digits, z, 30, 1.0, torch.tensor([1, 4, 7]))


def test_oracle_eta_is_least_squares():
    g = torch.Generator().manual_seed(0)
    xb, y, xt = (torch.randn(4, 1, 5, 5, generator=g, dtype=torch.float64) for _ in range(3))
    e = oracle_eta(xb, y, xt)
    for k in range(4):
        f = lambda a: float(((a * xb[k] + (1 - a) * y[k] - xt[k]) ** 2).sum())  # noqa: E731
        assert f(float(e[k])) <= min(f(float(e[k]) + 1e-3), f(float(e[k]) - 1e-3))


def test_kalman_view_reproduces_easyinv_and_the_oracle(study):
    for name in ("eta=0.5", "oracle", "adaptive"):
        v = study.steps_view[name]
        r = study.runs[name]
        assert v.blended.tolist() == [k in r.config["blend_steps"] for k in range(len(r))]
        assert torch.allclose(v.gain, 1 - v.eta)
        # oracle blend from the same state is never worse than the gain actually used
        assert (v.oracle_error <= v.post_error + 1e-15).all()
    o = study.steps_view["oracle"]
    assert torch.allclose(o.post_error[o.blended], o.oracle_error[o.blended], rtol=1e-10)
    n = study.steps_view["naive"]
    assert not n.blended.any() and torch.allclose(n.post_error, n.pred_error)


def test_measured_facts_on_the_analytic_model(study):
    f = study.noise_nmse()
    assert f["oracle"] < f["naive"] / 2 and f["naive"] < f["eta=0.5"] and f["adaptive"] < f["naive"]
    assert float(study.oracle_gains().median()) > 1.0                # the optimal blend extrapolates
    assert len(set(study.nfe().values())) == 1                        # EasyInv costs naive's NFE


# ------------------------------------------------------------------ widgets
def test_flow_explorer_caches_and_redraws(gmm2d):
    z = invlab.noise(gmm2d, 3, seed=0)
    w = FlowExplorer(gmm2d, z, torch.arange(3), steps_options=[4, 8], guidance_options=[1.0, 2.0], substeps=4)
    assert w.renders == 1 and all(getattr(c, "continuous_update", False) is False for k, c in w.controls.items() if k != "method")
    before = w.summary.copy()
    w.controls["method"].value = "exact"
    assert w.renders == 2 and not np.allclose(before, w.summary) and w.summary[-1] < 1e-12
    w.controls["method"].value = "naive"
    assert w.renders == 3 and np.allclose(before, w.summary) and w.cache.misses == 2   # cached, only re-plotted
    w.controls["steps"].value = 8
    assert w.renders == 4 and w.cache.misses == 3


def test_kalman_explorer_caches_and_redraws(digits):
    z = invlab.noise(digits, 2, seed=0)
    w = KalmanExplorer(digits, z, 20, 1.0, torch.tensor([2, 5]))
    assert w.renders == 1 and w.controls["eta"].continuous_update is False and w.controls["window"].continuous_update is False
    before = w.summary.copy()
    w.controls["eta"].value = 0.8
    assert w.renders == 2 and not np.allclose(before, w.summary)
    w.controls["eta"].value = 0.5
    assert w.renders == 3 and np.allclose(before, w.summary) and w.cache.misses == 3   # oracle + two etas
    w.controls["window"].value = w.controls["window"].options[1]
    assert w.renders == 4 and w.cache.misses == 5


# ------------------------------------------------------------------ notebooks (QUICK)
@pytest.mark.slow
def test_02_flows_in_2d(quick_notebook):
    res, figures = quick_notebook("02_flows_in_2d")
    check_02(res)
    names = {p.name for p in figures.iterdir()}
    assert {"02_fields.png", "02_sampling_paths.png", "02_inversion_paths.png", "02_corner.png", "02_round_trips.png"} <= names


@pytest.mark.slow
def test_05_kalman_view(quick_notebook):
    res, figures = quick_notebook("05_kalman_view")
    check_05(res)
    names = {p.name for p in figures.iterdir()}
    assert {"05_final_errors.png", "05_step_errors.png", "05_gains.png", "05_innovation.png"} <= names
