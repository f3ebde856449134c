"""EasyInv: the blend rule, its window and placements, gains, NFE, and bad options."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import invlab
from invlab.inversion import EasyInvBlend, EasyInvOptions
from invlab.inversion.easyinv import window_steps
from invlab.steps import ddim_step, x0_from_eps

COND = torch.tensor([1, 4, 7])


@pytest.fixture(scope="module")
def run(digits):
    z = invlab.noise(digits, 3, seed=0)
    fwd = invlab.sample(digits, z, 50, guidance=3.0, cond=COND)
    return z, fwd


def test_window_default_blends_steps_3_to_12_of_50():
    assert window_steps((0.05, 0.25), 50) == list(range(3, 13))
    with pytest.raises(ValueError, match="contains no step"):
        window_steps((0.1, 0.11), 50)


def test_costs_exactly_the_nfe_of_naive(digits, run):
    z, fwd = run
    digits.reset_counters()
    invlab.invert(digits, fwd.final, 50, guidance=3.0, cond=COND)
    naive = (digits.nfe, digits.net_rows)
    digits.reset_counters()
    ez = invlab.invert(digits, fwd.final, 50, method="easyinv", guidance=3.0, cond=COND)
    assert (digits.nfe, digits.net_rows) == naive and ez.nfe == 50


def test_output_blend_rule_and_recorded_gain(digits, run):
    z, fwd = run
    ez = invlab.invert(digits, fwd.final, 50, method="easyinv", guidance=3.0, cond=COND, eta=0.3)
    blended = [r.index for r in ez.records if "eta" in r.extras]
    assert blended == list(range(3, 13)) and ez.records[5].extras["eta"] == [0.3] * 3
    r = ez.records[5]
    lv_cur, lv_next = ez.levels[5], ez.levels[6]
    naive_out = ddim_step(x0_from_eps(r.x_cur, r.eps, lv_cur), r.eps, lv_next)
    assert torch.allclose(r.x_next, 0.3 * naive_out + 0.7 * r.x_cur, atol=1e-12)
    assert torch.allclose(ez.records[2].x_next, ddim_step(x0_from_eps(ez.records[2].x_cur, ez.records[2].eps,
                                                                        ez.levels[2]), ez.records[2].eps, ez.levels[3]))


def test_input_placement_blends_the_step_input(digits, run):
    z, fwd = run
    out = invlab.invert(digits, fwd.final, 50, method="easyinv", guidance=3.0, cond=COND)
    inp = invlab.invert(digits, fwd.final, 50, method="easyinv", guidance=3.0, cond=COND, placement="input")
    assert inp.config["placement"] == "input" and not torch.allclose(out.final, inp.final)
    r = inp.records[4]  # blended input = 0.5 * unblended input + 0.5 * previous (blended) input
    assert "eta" in r.extras
    prev_input = inp.records[3].x_cur
    assert torch.allclose(r.x_cur, 0.5 * inp.records[3].x_next + 0.5 * prev_input, atol=1e-12)


def test_eta_one_is_naive_and_the_hook_wraps_any_method(digits, run):
    z, fwd = run
    naive = invlab.invert(digits, fwd.final, 50, guidance=3.0, cond=COND)
    one = invlab.invert(digits, fwd.final, 50, method="easyinv", guidance=3.0, cond=COND, eta=1.0)
    assert torch.allclose(one.final, naive.final, atol=1e-13)
    opts = EasyInvOptions(eta=0.5)
    as_hook = invlab.invert(digits, fwd.final, 50, guidance=3.0, cond=COND, hooks=[EasyInvBlend(opts, 50)])
    as_method = invlab.invert(digits, fwd.final, 50, method="easyinv", guidance=3.0, cond=COND, options=opts)
    assert torch.allclose(as_hook.final, as_method.final, atol=1e-13)


def test_oracle_gain_beats_the_constant_gain(digits, run):
    z, fwd = run
    const = invlab.invert(digits, fwd.final, 50, method="easyinv", guidance=3.0, cond=COND)
    oracle = invlab.invert(digits, fwd.final, 50, method="easyinv", guidance=3.0, cond=COND, gain="oracle",
                           reference=fwd)
    e_c, e_o = const.errors_to(fwd), oracle.errors_to(fwd)
    assert (e_o[3:13] <= e_c[3:13] * (1 + 1e-9)).all()     # every blended step
    assert invlab.metrics.nmse(oracle.final, z) < invlab.metrics.nmse(const.final, z)


@settings(max_examples=50, deadline=None)
@given(st.integers(0, 2**31 - 1), st.floats(0.0, 1.0))
def test_oracle_gain_is_the_least_squares_optimum(seed, eta):
    g = torch.Generator().manual_seed(seed)
    new, old, truth = (torch.randn(2, 6, generator=g, dtype=torch.float64) for _ in range(3))
    blend = EasyInvBlend(EasyInvOptions(gain="oracle", reference=object(), window=(0, 1)), 4,
                         truth=truth[None].expand(3, 2, 6))
    eta_star = blend._gain(0, new, old, None, 1)[:, None]
    best = ((eta_star * new + (1 - eta_star) * old - truth) ** 2).sum(1)
    other = ((eta * new + (1 - eta) * old - truth) ** 2).sum(1)
    assert (best <= other + 1e-12).all()


def test_adaptive_gain_is_recorded_and_costs_no_nfe(digits, run):
    z, fwd = run
    ad = invlab.invert(digits, fwd.final, 50, method="easyinv", guidance=3.0, cond=COND, gain="adaptive")
    etas = [r.extras["eta"] for r in ad.records if "eta" in r.extras]
    assert len(etas) == 10 and ad.nfe == 50
    assert all(0.0 < e < 2.0 for row in etas for e in row)


@pytest.mark.parametrize("kw,msg", [
    ({"eta": 1.5}, "eta must be in"), ({"eta": -0.1}, "eta must be in"),
    ({"window": (0.3, 0.2)}, "window must be"), ({"window": (0.1, 0.11)}, "contains no step"),
    ({"placement": "middle"}, "placement must be"), ({"gain": "oracle"}, "needs reference"),
    ({"gain": "kalman"}, "gain must be"),
])
def test_bad_options(digits, run, kw, msg):
    with pytest.raises(ValueError, match=msg):
        invlab.invert(digits, run[1].final, 50, method="easyinv", guidance=3.0, cond=COND, **kw)
