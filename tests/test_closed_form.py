"""Analytic truth: exact scores, the Gaussian probability-flow map, first-order convergence."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import invlab
from invlab.models import GaussianMixture, gaussian_flow_map
from invlab.schedules import Level
from invlab.steps import ddim_step, x0_from_eps

MU = torch.linspace(-0.5, 0.5, 16, dtype=torch.float64).reshape(1, 1, 4, 4)
S2 = torch.full_like(MU, 0.3**2)
NO_TENSORS = [invlab.Recorder(keys=())]


@pytest.fixture(scope="module")
def gauss():
    return GaussianMixture(MU, S2, name="gaussian")


@pytest.mark.parametrize("name", ["gmm-2d", "gmm-digits"])
def test_mixture_eps_is_minus_sigma_times_the_autograd_score(name):
    m = invlab.load_model(name)
    x = torch.randn(3, *m.sample_shape, dtype=torch.float64) * 0.8
    for label in (5.0, 250.0, 900.0):
        for cond in (None, torch.tensor([0, 1, 2])):
            xr = x.clone().requires_grad_(True)
            c = m.check_cond(cond, 3, x)
            logp = _log_marginal(m, xr, label, c)
            (score,) = torch.autograd.grad(logp.sum(), xr)
            eps = m.eps(x, label, c, 1.0).eps if c is not None else m.eps(x, label).eps
            assert torch.allclose(eps, -m.schedule.sigma(label) * score, rtol=1e-9, atol=1e-9)


def _log_marginal(m, x, label, cond):
    """log p_t written independently of the model's eps code (per-component Gaussians)."""
    a, s = m.schedule.alpha(label), m.schedule.sigma(label)
    xf = x.reshape(x.shape[0], -1)
    terms = []
    for k in range(m.means.shape[0]):
        v = a * a * m.variances[k] + s * s
        lp = torch.distributions.Normal(a * m.means[k], v.sqrt()).log_prob(xf).sum(-1) + m.log_weights[k]
        if cond is not None:
            lp = torch.where(cond == m.classes[k], lp, torch.full_like(lp, -math.inf))
        terms.append(lp)
    return torch.logsumexp(torch.stack(terms, -1), -1)


def test_gaussian_marginal_matches_sampling_statistics(gauss):
    x = gauss.sample_data(20000, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(x.mean(0), MU[0], atol=0.01)
    assert torch.allclose(x.var(0), S2[0], rtol=0.05)


def _slope(ns, errs):
    return np.polyfit(np.log(ns), np.log(errs), 1)[0]


def test_ddim_converges_to_the_exact_flow_map_at_first_order(gauss):
    z = invlab.noise(gauss, 64, seed=0)
    ns, errs = [20, 40, 80, 160, 320], []
    for n in ns:
        out = invlab.sample(gauss, z, n, hooks=NO_TENSORS).final
        g = gauss.schedule.grid(n, "ddim")
        a0, s0, a1, s1 = g.levels[0].alpha, g.levels[0].sigma, g.levels[-1].alpha, g.levels[-1].sigma
        exact = gaussian_flow_map(z, MU[0], S2[0], a0, s0, a1, s1)
        errs.append(invlab.metrics.rmse(out, exact).item())
    assert errs[-1] < 5e-3
    assert all(e2 < e1 for e1, e2 in zip(errs, errs[1:]))
    assert -1.2 < _slope(ns, errs) < -0.8


def test_naive_round_trip_error_shrinks_at_first_order(gauss):
    z = invlab.noise(gauss, 64, seed=1)
    ns, errs = [20, 40, 80, 160, 320], []
    for n in ns:
        x0 = invlab.sample(gauss, z, n, hooks=NO_TENSORS).final
        zhat = invlab.invert(gauss, x0, n, hooks=NO_TENSORS).final
        errs.append(invlab.metrics.rmse(zhat, z).item())
    assert all(e2 < e1 for e1, e2 in zip(errs, errs[1:]))
    slope = _slope(ns, errs)
    assert -1.2 < slope < -0.8, f"round-trip error slope {slope:.3f}, expected first order (-1)"


@settings(max_examples=40, deadline=None)
@given(st.floats(0.05, 0.999), st.floats(0.05, 0.999), st.integers(0, 2**31 - 1))
def test_ddim_step_with_a_fixed_eps_is_invertible(ab_s, ab_t, seed):
    g = torch.Generator().manual_seed(seed)
    x, eps = torch.randn(2, 5, generator=g, dtype=torch.float64), torch.randn(2, 5, generator=g, dtype=torch.float64)
    s = Level(0.0, math.sqrt(ab_s), math.sqrt(1 - ab_s))
    t = Level(0.0, math.sqrt(ab_t), math.sqrt(1 - ab_t))
    y = ddim_step(x0_from_eps(x, eps, s), eps, t)
    back = ddim_step(x0_from_eps(y, eps, t), eps, s)
    assert torch.allclose(back, x, atol=1e-9)
