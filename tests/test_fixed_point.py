"""Fixed-point inversion (AIDI / FPI): the update rule against an oracle written here from the
equations, accuracy against naive inversion, the three accelerations, NFE accounting, options,
and where it solves a different equation from exact inversion.

Measured on gmm-digits, 50 DDIM steps, w = 3, batch 2, seeds 0-2 (1 torch thread), default
options (Anderson):
  noise NMSE  float64 1.8e-18 .. 2.3e-18 (naive 0.061 .. 0.066: ratio >= 2.8e16)
              float32 2.2e-12 .. 2.4e-12 (ratio >= 2.6e10)
  NFE/step    float64 plain 9.0-9.5, aidi-e 12.8-13.7, anderson 6.0-6.4
              float32 plain 5.8-6.1, aidi-e 7.8-8.2,   anderson 4.6-4.8
"""

import warnings

import pytest
import torch

import invlab
from invlab.inversion import FixedPointOptions
from invlab.metrics import nmse
from invlab.trace import ConvergenceWarning

COND = torch.tensor([2, 6])
W = 3.0
ACCS = ("plain", "aidi-e", "anderson")


# ------------------------------------------------------------------ the oracle, from the equations
def inv_step(x_cur, e, cur, nxt):
    """x_nxt = alpha_nxt (x_cur - sigma_cur e) / alpha_cur + sigma_nxt e (the inverse DDIM step for a given e)."""
    return nxt.alpha * (x_cur - cur.sigma * e) / cur.alpha + nxt.sigma * e


def fmap(m, z, x_cur, cur, nxt, label):
    """f(z) = InvStep(x_cur; eps(z, label)): the map whose fixed point the method seeks."""
    return inv_step(x_cur, m.eps(z, label, COND, W).eps, cur, nxt)


def sampler_step(m, z, cur, nxt):
    """Phi(z): the DDIM sampling step nxt -> cur with the sampler's own label (nxt's)."""
    e = m.eps(z, nxt.label, COND, W).eps
    return cur.alpha * (z - nxt.sigma * e) / nxt.alpha + cur.sigma * e


def rms(a):
    return float(a.double().reshape(a.shape[0], -1).pow(2).mean(1).sqrt().max())


def sampled(m, seed, steps=50, solver="ddim", dtype=torch.float64):
    z = invlab.noise(m, 2, seed=seed, dtype=dtype)
    return z, invlab.sample(m, z, steps, solver, W, COND, hooks=[invlab.Recorder(keys=("x_next",))])


def fixed_point(m, x, steps=50, solver="ddim", quiet=False, **kw):
    with warnings.catch_warnings():
        if quiet:
            warnings.simplefilter("ignore", ConvergenceWarning)
        return invlab.invert(m, x, steps, solver, "fixed-point", W, COND, **kw)


# ------------------------------------------------------------------ (a) step-level oracle
@pytest.mark.parametrize("init", ["naive", "current"])
def test_one_iteration_from_the_naive_start_is_the_formula(digits, init):
    """Two map evaluations per step (the naive step, then f there), the last one kept: every
    step must return f(naive) = InvStep(x_cur; eps(naive)), computed here independently."""
    z, fwd = sampled(digits, 0)
    tr = fixed_point(digits, fwd.final, quiet=True, acceleration="plain", max_iter=2, keep="last", tol=1e-300,
                     init=init)
    moved = 0
    for r in tr.records:
        cur, nxt = tr.levels[r.index], tr.levels[r.index + 1]
        naive = fmap(digits, r.x_cur, r.x_cur, cur, nxt, nxt.label)
        one = fmap(digits, naive, r.x_cur, cur, nxt, nxt.label)
        assert r.nfe == 2 and r.t_model == nxt.label
        assert (r.x_next - one).abs().max() < 1e-12, r.index
        assert r.x0_hat is not None and (r.x0_hat - (r.x_cur - cur.sigma * r.eps) / cur.alpha).abs().max() < 1e-12
        moved += rms(one - naive) > 1e-6
    assert moved == 50  # the iteration moves away from the naive step (measured RMS >= 8.6e-5, seeds 0-2)


def test_the_converged_solution_is_a_fixed_point(digits):
    """Default options: every step's x_next satisfies z = InvStep(x_cur; eps(z, target label))
    to the solver's tolerance (measured <= 0.15 tol) and is one inverse step with the recorded eps."""
    z, fwd = sampled(digits, 1)
    tr = fixed_point(digits, fwd.final)
    for r in tr.records:
        cur, nxt = tr.levels[r.index], tr.levels[r.index + 1]
        tol = r.extras["tol"]
        assert tol == 1e-9 and r.extras["converged"] and r.residual < tol
        assert r.extras["inner_residuals"][-1] == r.residual and len(r.extras["inner_residuals"]) == \
            r.extras["iterations"] + 1
        assert rms(r.x_next - fmap(digits, r.x_next, r.x_cur, cur, nxt, nxt.label)) <= tol
        assert (r.x_next - inv_step(r.x_cur, r.eps, cur, nxt)).abs().max() < 1e-12


# ------------------------------------------------------------------ (b) against naive
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("dtype,max_nmse,min_ratio", [
    (torch.float64, 1e-15, 1e13),   # measured <= 2.3e-18 and >= 2.8e16: margins 430x / 2800x
    (torch.float32, 1e-9, 1e8),     # measured <= 2.4e-12 and >= 2.6e10: margins 420x / 260x
])
def test_noise_error_far_below_naive(digits, seed, dtype, max_nmse, min_ratio):
    z, fwd = sampled(digits, seed, dtype=dtype)
    naive = invlab.invert(digits, fwd.final, 50, "ddim", "naive", W, COND)
    tr = fixed_point(digits, fwd.final)
    assert tr.final.dtype == dtype
    assert all(r.extras["converged"] for r in tr.records)
    assert {r.extras["tol"] for r in tr.records} == {invlab.inversion.solvers.DEFAULT_TOL[dtype]}
    e_fp, e_naive = float(nmse(tr.final.double(), z.double())), float(nmse(naive.final.double(), z.double()))
    assert e_fp <= max_nmse
    assert e_naive >= min_ratio * e_fp


# ------------------------------------------------------------------ (c) accelerations
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_accelerations_reach_the_same_solution(digits, seed):
    """plain, aidi-e and anderson: every step converges to a fixed point (oracle residual <= tol)
    and the three trajectories agree (measured pairwise NMSE <= 7.2e-17; bound 1e-13)."""
    z, fwd = sampled(digits, seed)
    runs = {a: fixed_point(digits, fwd.final, acceleration=a) for a in ACCS}
    for a, tr in runs.items():
        assert tr.config["acceleration"] == a
        for r in tr.records:
            cur, nxt = tr.levels[r.index], tr.levels[r.index + 1]
            assert r.extras["converged"] and r.extras["acceleration"] == a
            assert rms(r.x_next - fmap(digits, r.x_next, r.x_cur, cur, nxt, nxt.label)) <= r.extras["tol"]
        assert float(nmse(tr.final, z)) <= 1e-14
    for a in ACCS:
        for b in ACCS:
            if a < b:
                assert float(nmse(runs[a].final, runs[b].final)) <= 1e-13, (a, b)


def test_two_point_averages_the_last_two_map_values(digits):
    """aidi-e's third iterate is 1/2 f(z_0) + 1/2 f(z_1) with z_1 = f(z_0) (AIDI-E), z_0 the naive step:
    with max_iter = 4 and keep="last" the step returns f(z_2) (4 NFE)."""
    z, fwd = sampled(digits, 0, steps=10)
    tr = fixed_point(digits, fwd.final, 10, quiet=True, acceleration="aidi-e", max_iter=4, keep="last", tol=1e-300)
    for r in tr.records[::3]:
        cur, nxt = tr.levels[r.index], tr.levels[r.index + 1]
        f = lambda y: fmap(digits, y, r.x_cur, cur, nxt, nxt.label)  # noqa: E731
        z0 = f(r.x_cur)
        z1 = f(z0)
        z2 = 0.5 * z1 + 0.5 * f(z1)
        assert r.nfe == 4 and (r.x_next - f(z2)).abs().max() < 1e-12


# ------------------------------------------------------------------ (d) NFE accounting
@pytest.mark.parametrize("kw", [
    {}, {"acceleration": "plain"}, {"acceleration": "aidi-e"},
    {"acceleration": "anderson", "init": "current", "keep": "last"},
    {"preset": "reference"}, {"acceleration": "plain", "preset": "reference"},
    {"acceleration": "plain", "relaxation": 2.5},          # diverges: the best iterate is re-evaluated
    {"acceleration": "plain", "max_iter": 3},               # stops at max_iter, keeps its best iterate
])
def test_nfe_accounting(digits, kw):
    z, fwd = sampled(digits, 2, steps=10)
    n0 = digits.nfe
    tr = fixed_point(digits, fwd.final, 10, quiet=True, **kw)
    used = digits.nfe - n0
    assert sum(r.nfe for r in tr.records) == tr.nfe == used
    opts = FixedPointOptions(**kw)
    for r in tr.records:
        e = r.extras
        assert r.nfe == e["nfe_init"] + e["iterations"] + 1 + e["reevaluated"], (r.index, e)
        assert e["nfe_init"] == (1 if opts.init == "naive" else 0)
        assert r.nfe <= opts.max_iter + e["reevaluated"]
        assert len(e["inner_residuals"]) == e["iterations"] + 1 and len(e["step_sizes"]) == e["iterations"]
    if kw.get("relaxation") == 2.5:
        assert any(r.extras["reevaluated"] for r in tr.records)
        assert all(r.extras["stop_reason"] == "residual grew" for r in tr.records if r.extras["reevaluated"])


def test_interrupt_keeps_the_finished_steps(digits):
    class StopAt(invlab.Observer):
        def on_step(self, record, tensors):
            if record.index == 3:
                raise KeyboardInterrupt

    z, fwd = sampled(digits, 0, steps=8)
    full = fixed_point(digits, fwd.final, 8)
    n0 = digits.nfe
    with pytest.raises(KeyboardInterrupt) as info:
        fixed_point(digits, fwd.final, 8, hooks=[invlab.Recorder(), StopAt()])
    partial = info.value.partial_trajectory
    assert len(partial) == 3 and torch.equal(partial.final, full.latents()[3])
    assert digits.nfe - n0 == partial.nfe + partial.config["nfe_unfinished"]
    assert partial.config["nfe_unfinished"] == full.records[3].nfe


def test_unconverged_steps_warn(digits):
    z, fwd = sampled(digits, 0, steps=10)
    with pytest.warns(ConvergenceWarning, match="fixed-point inversion did not converge.*acceleration='anderson'"):
        tr = invlab.invert(digits, fwd.final, 10, "ddim", "fixed-point", W, COND, acceleration="plain", max_iter=3)
    assert tr.convergence()["failed_steps"]


# ------------------------------------------------------------------ (e) options
@pytest.mark.parametrize("kw,err,msg", [
    ({"acceleration": "andersen"}, ValueError, r"acceleration must be one of .*did you mean 'anderson'"),
    ({"acceleration": "aidi_e"}, ValueError, r"did you mean 'aidi-e'"),
    ({"acceleration": "AIDI-A"}, ValueError, r"acceleration must be one of"),
    ({"label": "targte"}, ValueError, r"label must be one of .*did you mean 'target'"),
    ({"init": "naiv"}, ValueError, r"init must be one of .*did you mean 'naive'"),
    ({"keep": "lst"}, ValueError, r"keep must be one of .*did you mean 'last'"),
    ({"preset": "referense"}, ValueError, r"preset must be one of .*did you mean 'reference'"),
    ({"max_iter": 1}, ValueError, r"max_iter must be >= 2"), ({"max_iter": "5"}, TypeError, r"max_iter must be an int"),
    ({"memory": 0}, ValueError, r"memory must be >= 1"), ({"tol": 0.0}, ValueError, r"tol must be > 0"),
    ({"relaxation": 0}, ValueError, r"relaxation must be > 0"), ({"mix": -0.5}, ValueError, r"mix must be > 0"),
    ({"divergence_patience": 0}, ValueError, r"divergence_patience must be >= 1"),
    ({"accelaration": "plain"}, TypeError, r"has no option 'accelaration' \(did you mean 'acceleration'\?\)"),
    ({"inner": "anderson"}, TypeError, r"has no option 'inner'"),
])
def test_bad_options(digits, kw, err, msg):
    with pytest.raises(err, match=msg):
        invlab.invert(digits, invlab.noise(digits, 2), 10, method="fixed-point", cond=COND, **kw)


def test_reference_preset():
    anderson = FixedPointOptions(preset="reference")
    assert (anderson.acceleration, anderson.max_iter, anderson.memory, anderson.relaxation, anderson.init,
            anderson.keep, anderson.label, anderson.tol) == ("anderson", 6, 2, 1.0, "current", "last", "target", None)
    assert FixedPointOptions(acceleration="aidi-e", preset="reference").mix == 0.5
    assert FixedPointOptions(acceleration="plain", preset="reference").max_iter == 20
    mine = FixedPointOptions(preset="reference", max_iter=12, label="current")   # explicit non-defaults win
    assert (mine.max_iter, mine.label, mine.init, mine.keep) == (12, "current", "current", "last")
    assert FixedPointOptions() == FixedPointOptions(acceleration="anderson", max_iter=50, init="naive", keep="best")


def test_reference_preset_runs_on_its_budget(digits):
    z, fwd = sampled(digits, 0)
    naive = invlab.invert(digits, fwd.final, 50, "ddim", "naive", W, COND)
    tr = fixed_point(digits, fwd.final, quiet=True, preset="reference")
    assert all(r.nfe <= 6 and r.extras["nfe_init"] == 0 and not r.extras["reevaluated"] for r in tr.records)
    assert {r.extras["stop_reason"] for r in tr.records} <= {"converged", "max_iter"}
    assert float(nmse(tr.final, z)) * 1e3 <= float(nmse(naive.final, z))   # measured 1.8e-9 .. 2.5e-9 vs 0.06


# ------------------------------------------------------------------ fixed-point vs exact
def test_residual_identity_with_the_sampler_step(digits):
    """For the target label, f(z) - z = -(alpha_nxt / alpha_cur) (Phi(z) - x_cur) at any z: the
    fixed-point equation and exact inversion's Phi(z) = x_cur have the same roots (DDIM grids)."""
    z, fwd = sampled(digits, 0, steps=10)
    grid = digits.schedule.grid(10, "ddim")
    for j in (0, 4, 9):
        cur, nxt = grid.levels[j + 1], grid.levels[j]      # inverting the sampling step nxt -> cur
        x_cur = invlab.noise(digits, 2, seed=j + 10) * cur.sigma
        y = invlab.noise(digits, 2, seed=j + 20)
        lhs = fmap(digits, y, x_cur, cur, nxt, nxt.label) - y
        rhs = -(nxt.alpha / cur.alpha) * (sampler_step(digits, y, cur, nxt) - x_cur)
        assert (lhs - rhs).abs().max() < 1e-12 and rms(lhs) > 1e-3


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_label_current_solves_a_different_equation_from_exact(digits, seed):
    """Sampler residual RMS(Phi(x_next) - x_cur), worst step (measured, seeds 0-2):
    naive 0.013-0.015 | exact <= 9.9e-10 (= its own residual, tol 1e-9) | fixed-point, target
    label <= 1.5e-10 (same equation as exact) | fixed-point, current label 0.023-0.024 although
    every step converged on its own equation: its fixed point is not a root of Phi - x_cur."""
    z, fwd = sampled(digits, seed)

    def worst(tr):
        return max(rms(sampler_step(digits, r.x_next, tr.levels[r.index], tr.levels[r.index + 1]) - r.x_cur)
                   for r in tr.records)

    naive = invlab.invert(digits, fwd.final, 50, "ddim", "naive", W, COND)
    exact = invlab.invert(digits, fwd.final, 50, "ddim", "exact", W, COND)
    target = fixed_point(digits, fwd.final)
    current = fixed_point(digits, fwd.final, label="current")
    assert all(r.extras["converged"] for tr in (exact, target, current) for r in tr.records)
    assert current.config["label"] == "current" and all(r.t_model == r.t_cur for r in current.records)
    assert worst(exact) <= 2e-9
    assert worst(target) <= 1e-8
    assert float(nmse(target.final, exact.final)) <= 1e-13
    w_cur, w_naive = worst(current), worst(naive)
    assert w_cur >= 1e-3 and w_cur >= w_naive / 10
    assert float(nmse(current.final, z)) >= 1e-3          # measured 0.025-0.032: not the true noise


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_dpmpp2m_grids_get_a_first_order_inverse_at_every_step(digits, seed):
    """On DPM-Solver++(2M) grids every step is solved as a DDIM inverse (order 1, as naive does):
    it converges, beats naive (measured 36-190x at 20 steps) but not exact inversion, which solves
    the second-order steps' own equation (measured 700-8000x better)."""
    z, fwd = sampled(digits, seed, steps=20, solver="dpmpp2m")
    naive = invlab.invert(digits, fwd.final, 20, "dpmpp2m", "naive", W, COND)
    exact = invlab.invert(digits, fwd.final, 20, "dpmpp2m", "exact", W, COND)
    tr = fixed_point(digits, fwd.final, 20, "dpmpp2m")
    assert all(r.extras["converged"] and r.order == 1 for r in tr.records)
    assert 2 in tr.config["orders"] and tr.config["inverse_step"] == "ddim"
    e_fp, e_naive, e_exact = (float(nmse(t.final, z)) for t in (tr, naive, exact))
    assert 10 * e_fp <= e_naive
    assert 100 * e_exact <= e_fp
