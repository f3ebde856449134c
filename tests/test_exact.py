"""Exact inversion (backward Euler): round trips, Algorithm 2's order pattern, solver flags, options."""

import math

import pytest
import torch

import invlab
from invlab.inversion import ExactOptions, SolverOptions
from invlab.inversion.solvers import solve

COND = torch.tensor([2, 6])
REC = [invlab.Recorder(keys=("x_next",))]


def _round_trip(model, solver, steps, w, dtype=torch.float64, **kw):
    z = invlab.noise(model, 2, seed=3, dtype=dtype)
    fwd = invlab.sample(model, z, steps, solver, w, COND, hooks=REC)
    naive = invlab.invert(model, fwd.final, steps, solver, "naive", w, COND, hooks=REC)
    exact = invlab.invert(model, fwd.final, steps, solver, "exact", w, COND, hooks=REC, **kw)
    return z, fwd, naive, exact


@pytest.mark.parametrize("w", [1.0, 3.0, 7.5])
def test_algorithm_1_float64_reaches_1e_8_within_6_nfe_per_step(digits, w):
    z, fwd, naive, exact = _round_trip(digits, "ddim", 50, w)
    assert invlab.metrics.nmse(naive.final, z) >= 1e-3
    assert invlab.metrics.nmse(exact.final, z) <= 1e-8
    assert exact.nfe / 50 <= 6
    assert all(r.extras["converged"] for r in exact.records)
    assert (exact.errors_to(fwd) < 1e-8).all()   # every step lands on the true latent


def test_algorithm_1_float32(digits):
    z, fwd, naive, exact = _round_trip(digits, "ddim", 50, 3.0, torch.float32)
    assert exact.final.dtype == torch.float32
    assert invlab.metrics.nmse(exact.final, z) <= 1e-6 < invlab.metrics.nmse(naive.final, z)


@pytest.mark.parametrize("steps", [10, 20])
@pytest.mark.parametrize("w", [1.0, 3.0, 7.5])
def test_algorithm_2_is_ten_times_better_than_naive(digits, steps, w):
    z, fwd, naive, exact = _round_trip(digits, "dpmpp2m", steps, w)
    assert invlab.metrics.nmse(exact.final, z) * 10 <= invlab.metrics.nmse(naive.final, z)


def test_algorithm_2_mirrors_the_order_pattern_and_estimates_the_past(digits):
    z, fwd, naive, exact = _round_trip(digits, "dpmpp2m", 10, 3.0)
    grid = digits.schedule.grid(10, "dpmpp2m")
    assert [r.order for r in exact.records] == list(reversed(grid.orders)) == [1] + [2] * 8 + [1]
    for r in exact.records:
        if r.order == 1:
            assert "nfe_past_estimate" not in r.extras
            continue
        j = 9 - r.index                                      # the sampling step s -> t it inverts
        t, s, rr = grid.levels[j + 1].label, grid.levels[j].label, grid.levels[j - 1].label
        substeps = math.ceil((s - t) / 10) + math.ceil((rr - s) / 10)
        assert r.extras["nfe_past_estimate"] == substeps + 1  # + x0 at the estimated older state
        assert r.extras["nfe_init"] == substeps + 2           # + x0 at the estimated current state (frozen H)
        assert r.t_model == s and r.t_next == s


def test_reference_preset(digits):
    opts = ExactOptions(preset="reference")
    assert (opts.inner, opts.rho, opts.warmup, opts.max_iter, opts.tol, opts.tol_kind, opts.init) == \
        ("forward-step", 0.5, 20, 500, 1e-3, "sum_sq", "naive")
    mine = ExactOptions(preset="reference", tol=1e-9, tol_kind="rms")
    assert mine.inner == "forward-step" and mine.tol == 1e-9
    z, fwd, naive, exact = _round_trip(digits, "ddim", 10, 3.0, preset="reference")
    r = exact.records[5]
    assert r.extras["step_sizes"][:3] == pytest.approx([0.025, 0.05, 0.075])   # linear warm-up of rho0 = 0.5
    assert r.extras["converged"] and r.extras["inner_residuals"][-1] < 1e-3
    assert invlab.metrics.nmse(exact.final, z) < invlab.metrics.nmse(naive.final, z)


def test_gradient_solver_converges(digits):
    # steepest descent on ||Phi(x) - x_t||^2 is slow (J^T J is ill-conditioned): give it room
    z, fwd, naive, exact = _round_trip(digits, "ddim", 10, 3.0, inner="gradient", max_iter=400)
    stops = [r.extras["stop_reason"] for r in exact.records]
    assert stops.count("converged") >= 8 and set(stops) <= {"converged", "max_iter"}
    assert invlab.metrics.nmse(exact.final, z) < 1e-12


def test_divergence_is_flagged_and_the_best_iterate_kept(digits):
    z, fwd, naive, exact = _round_trip(digits, "ddim", 10, 3.0, inner="forward-step", rho=2.5)
    flagged = [r for r in exact.records if r.extras["diverged"]]
    assert flagged and all(r.extras["stop_reason"] == "residual grew" for r in flagged)
    for r in flagged:
        assert r.residual == min(r.extras["inner_residuals"]) and not r.extras["converged"]
    assert torch.isfinite(exact.final).all()


def test_max_iter_stop_is_flagged(digits):
    z, fwd, naive, exact = _round_trip(digits, "ddim", 10, 3.0, inner="forward-step", max_iter=1, tol=1e-14)
    assert all(r.extras["stop_reason"] == "max_iter" and not r.extras["converged"] for r in exact.records[1:])
    assert all(len(r.extras["inner_residuals"]) == 2 for r in exact.records[1:])


@pytest.mark.parametrize("inner", ["anderson", "forward-step", "gradient"])
def test_solvers_on_a_known_linear_map(inner):
    A = torch.tensor([[1.1, 0.2], [-0.1, 0.9]], dtype=torch.float64)
    b = torch.tensor([[0.3, -0.7]], dtype=torch.float64)
    res = solve(lambda x: (x @ A.T, None), b, torch.zeros(1, 2, dtype=torch.float64),
                SolverOptions(inner=inner, tol=1e-12, max_iter=200, rho=0.8))
    assert res.converged and torch.allclose(res.x, torch.linalg.solve(A, b[0])[None], atol=1e-10)
    assert len(res.residuals) == res.iterations + 1 and len(res.step_sizes) == res.iterations


@pytest.mark.parametrize("kw,err,msg", [
    ({"tol": 0.0}, ValueError, "tol must be > 0"), ({"tol": -1e-6}, ValueError, "tol must be > 0"),
    ({"inner": "newton"}, ValueError, "inner must be one of"), ({"rho": 0}, ValueError, "rho must be > 0"),
    ({"substep": 0}, ValueError, "substep"), ({"preset": "paper"}, ValueError, "preset"),
    ({"init": "zeros"}, ValueError, "init must be"), ({"freeze": "none"}, ValueError, "freeze must be"),
    ({"max_iter": -1}, ValueError, "max_iter"), ({"rho_order2": "t/10"}, ValueError, "rho_order2"),
    ({"alpha": 1}, TypeError, "has no option"),
])
def test_bad_options(digits, kw, err, msg):
    with pytest.raises(err, match=msg):
        invlab.invert(digits, invlab.noise(digits, 2), 10, method="exact", cond=COND, **kw)


def test_coarser_dtype():
    from invlab.inversion.solvers import coarser_dtype

    assert coarser_dtype(torch.float64, torch.float32) == torch.float32
    assert coarser_dtype(torch.float32, torch.float64) == torch.float32
    assert coarser_dtype(torch.float32, torch.bfloat16) == torch.bfloat16
    assert coarser_dtype(torch.float64, None) == torch.float64


def test_default_tolerance_follows_a_float32_network_under_float64_latents():
    """A float32 UNet cannot push the residual to float64 round-off: the default tolerance is
    float32's, every step converges, and the noise still comes back to ~1e-9."""
    from invlab.inversion.solvers import DEFAULT_TOL
    from invlab.metrics import nmse

    net = invlab.load_model("digits")
    cond = torch.arange(2)
    z = invlab.noise(net, 2, seed=0, dtype=torch.float64)
    x0 = invlab.sample(net, z, steps=20, guidance=1.0, cond=cond).final
    inv = invlab.invert(net, x0, steps=20, method="exact", guidance=1.0, cond=cond)
    assert {r.extras["tol"] for r in inv.records} == {DEFAULT_TOL[torch.float32]}
    assert all(r.extras["converged"] for r in inv.records)
    assert float(nmse(inv.final, z)) < 1e-7
    gmm = invlab.load_model("gmm-digits")                       # no network dtype: the latents' own
    inv = invlab.invert(gmm, invlab.sample(gmm, invlab.noise(gmm, 1), steps=5, cond=0).final, steps=5, method="exact",
                        cond=0)
    assert inv.records[0].extras["tol"] == DEFAULT_TOL[torch.float64]


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_latents_run_and_beat_naive(dtype):
    """Half-precision latents on the CPU: the default tolerance follows the dtype, every step
    converges, and exact inversion still beats naive inversion by a wide margin."""
    from invlab.metrics import nmse

    m = invlab.load_model("gmm-digits")
    z = invlab.noise(m, 2, seed=0, dtype=dtype)
    x = invlab.sample(m, z, 10, guidance=3.0, cond=COND).final
    assert x.dtype == dtype
    exact = invlab.invert(m, x, 10, method="exact", guidance=3.0, cond=COND)
    naive = invlab.invert(m, x, 10, method="naive", guidance=3.0, cond=COND)
    assert exact.final.dtype == dtype and all(r.extras["converged"] for r in exact.records)
    e, n = float(nmse(exact.final.double(), z.double())), float(nmse(naive.final.double(), z.double()))
    assert e < n / 10


def test_no_extra_evaluation_when_the_best_iterate_is_the_last(digits):
    """keep="best" returns no aux; when the accepted iterate *is* the last one evaluated, its eps is
    reused instead of evaluated again (one NFE per unconverged step saved; values unchanged)."""
    import warnings

    x = invlab.sample(digits, invlab.noise(digits, 1, seed=2), 10, "ddim", 7.5, [4]).final
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", invlab.ConvergenceWarning)
        inv = invlab.invert(digits, x, 10, method="exact", guidance=7.5, cond=[4], inner="forward-step", max_iter=1)
    saved = 0
    for r in inv.records:
        res = r.extras["inner_residuals"]
        evaluated = r.extras["nfe_init"] + len(res)
        last_is_best = min(range(len(res)), key=res.__getitem__) == len(res) - 1
        assert r.nfe == evaluated + (0 if last_is_best or r.extras["converged"] else 1)
        saved += last_is_best and not r.extras["converged"]
    assert saved >= 1   # the case occurs in this run (forward-step, w = 7.5, 10 steps)


def _reference_algorithm_2(model, x0, steps, w, cond, log=None):
    """The reference code's Algorithm 2 loop (smhongok/inv-dpm, ``forward_diffusion`` and
    ``fixedpoint_correction``), written out from its rules, on invlab's grid (the scheduler's
    timesteps instead of ``t - 1000//N``; a fine-grained sub-step is cut at the next level):

    * first inversion step (Alg. 1 at i = 0): naive init, forward step with rho0 = 1.0, plateau scheduler;
    * middle steps (order 2): fine-grained naive DDIM inversion t -> s -> r in sub-steps of 10
      train timesteps, H frozen from D0(y_s, s) and D0(y_r, r), init y_s, rho0 = 10/t, no scheduler;
    * last inversion step ("Lines 14-17"): naive init, rho0 = 10/t, plateau scheduler;
    * every correction: 20-iteration linear warm-up, <= 500 iterations, stop at summed squared
      error < 1e-3; the scheduler halves rho after more than 20 iterations without a relative
      improvement of 1e-4 (ReduceLROnPlateau, counted from the first iteration).
    """
    levels = model.schedule.grid(steps, "dpmpp2m").levels   # sampling order: levels[0] is the noisiest

    def data(y, lab_eps, at):       # D0: the data prediction from eps at label lab_eps, converted at level `at`
        return (y - at.sigma * model.eps(y, lab_eps.label, cond, w).eps) / at.alpha

    def naive(y, frm, to):          # one naive DDIM inversion step frm -> to (target label): "Line 5",
        e = model.eps(y, to.label, cond, w).eps   # (sigma_to/sigma_frm)(y + alpha_frm phi D), written so that
        return to.alpha * (y - frm.sigma * e) / frm.alpha + to.sigma * e   # a clean frm (sigma 0) is allowed

    def fine(y, frm, to):           # "Lines 3-6": for tt in range(t, s, 10): one naive step tt -> tt + 10
        cur = frm
        while cur.label < to.label:
            nxt = model.schedule.level(cur.label + 10) if cur.label + 10 < to.label else to
            y, cur = naive(y, cur, nxt), nxt
        return y

    def correct(y, s, t, x_t, rho0, scheduler, H=None):
        phi = math.expm1(-(t.lam - s.lam))
        rho, lr, best, bad = rho0, rho0, None, 0
        for k in range(500):
            if k < 20:
                rho = rho0 * (k + 1) / 20
            pred = (t.sigma / s.sigma) * y - (t.alpha * phi) * data(y, s, s)
            if H is not None:
                pred = pred - H
            loss = float(((pred - x_t) ** 2).sum())
            if loss < 1e-3:
                break
            y = y - rho * (pred - x_t)
            if log is not None:
                log.append(("iter", k, loss, rho))
            if scheduler:
                if best is None or loss < best * (1 - 1e-4):
                    best, bad = loss, 0
                else:
                    bad += 1
                if bad > 20:
                    lr, bad = lr * 0.5, 0
                rho = lr
        return y

    n, x = steps, x0
    for i in range(n):
        j = n - 1 - i
        t, s = levels[j + 1], levels[j]           # t known (less noisy), s the target
        if i == 0 or i == n - 1:                  # Algorithm 1 steps
            x = correct(naive(x, t, s), s, t, x, 1.0 if i == 0 else 10 / t.label, scheduler=True)
        else:
            r = levels[j - 1]
            y_s = fine(x, t, s)
            y_r = fine(y_s, s, r)
            h, h0 = t.lam - s.lam, s.lam - r.lam
            H = 0.5 * t.alpha * math.expm1(-h) * (h / h0) * (data(y_s, s, s) - data(y_r, r, r))
            x = correct(y_s, s, t, x, 10 / t.label, scheduler=False, H=H)
        if log is not None:
            log.append(("state", i, x))
    return x


@pytest.mark.parametrize("w", [1.0, 3.0])
def test_algorithm_2_reference_preset_equals_the_reference_loop(digits, w):
    # issue 15 (4c): the preset used rho = 0.5 on the first and last inversion steps, the reference
    # 1.0 and 10/t; with its rule written out above, the two agree to round-off
    z = invlab.noise(digits, 2, seed=3, dtype=torch.float64)
    x0 = invlab.sample(digits, z, 10, "dpmpp2m", w, COND, hooks=REC).final
    ref = _reference_algorithm_2(digits, x0, 10, w, digits.check_cond(COND, 2, x0))
    mine = invlab.invert(digits, x0, 10, "dpmpp2m", "exact", w, COND, hooks=REC, preset="reference").final
    assert (mine - ref).abs().max() <= 1e-14 * ref.abs().max()     # measured 1.0e-15 at w = 1 and 3
    old = invlab.invert(digits, x0, 10, "dpmpp2m", "exact", w, COND, preset="reference", rho_first=0.5,
                        rho_last=0.5).final
    assert (old - ref).abs().max() > 1e-4 * ref.abs().max()       # the old rule: 1.6e-3 measured


@pytest.mark.parametrize("w", [1.0, 3.0])
def test_extrapolate_init_same_noise_fewer_or_equal_nfe(digits, w):
    """issue 15 (4b): init="extrapolate" (eps extrapolated linearly in lambda from the previous two
    solved levels, 0 NFE) recovers the noise as well as the default "reuse" and spends no more NFE
    over a 20-step run (measured 110 vs 114 at w = 1, 128 vs 132 at w = 3: small, so `<=`)."""
    from invlab.metrics import nmse

    z = invlab.noise(digits, 2, seed=3, dtype=torch.float64)
    x = invlab.sample(digits, z, 20, "ddim", w, COND, hooks=REC).final
    reuse = invlab.invert(digits, x, 20, "ddim", "exact", w, COND)
    extra = invlab.invert(digits, x, 20, "ddim", "exact", w, COND, init="extrapolate")
    assert extra.config["init"] == "extrapolate"
    assert all(r.extras["converged"] for r in extra.records)
    e, d = float(nmse(extra.final, z)), float(nmse(reuse.final, z))
    assert e < 1e-14 and d < 1e-14                     # both at float64 round-off (measured ~3e-17, ~2e-17)
    assert extra.nfe <= reuse.nfe
    # the first two steps follow the fallback rules ("naive", then "reuse") and are identical to the default's
    assert extra.records[0].extras["nfe_init"] == 1 and all(r.extras["nfe_init"] == 0 for r in extra.records[1:])
    for a, b in zip(extra.records[:2], reuse.records[:2]):
        assert torch.equal(a.x_next, b.x_next) and a.extras["inner_residuals"] == b.extras["inner_residuals"]
    # from the third step on, the initial guess is closer: its summed initial residual is well below
    # the default's (measured ratio 0.33 at w = 1, 0.49 at w = 3)
    first = [sum(r.extras["inner_residuals"][0] for r in t.records[2:]) for t in (extra, reuse)]
    assert first[0] < 0.7 * first[1]


def test_extrapolate_init_leaves_algorithm_2_steps_alone(digits):
    """Under DPM-Solver++(2M) only the first-order steps take the init option: every order-2 step
    (and the first step, where extrapolation falls back to "naive") is identical to the default's."""
    z = invlab.noise(digits, 2, seed=3, dtype=torch.float64)
    x = invlab.sample(digits, z, 10, "dpmpp2m", 3.0, COND, hooks=REC).final
    reuse = invlab.invert(digits, x, 10, "dpmpp2m", "exact", 3.0, COND)
    extra = invlab.invert(digits, x, 10, "dpmpp2m", "exact", 3.0, COND, init="extrapolate")
    assert [r.order for r in extra.records] == [1] + [2] * 8 + [1]
    for a, b in zip(extra.records[:-1], reuse.records[:-1]):
        assert torch.equal(a.x_next, b.x_next)
    assert extra.records[-1].extras["converged"]


def test_reference_preset_keeps_the_naive_init():
    assert ExactOptions(preset="reference").init == "naive"
    assert ExactOptions(preset="reference", init="extrapolate").init == "extrapolate"   # an explicit choice wins
    assert ExactOptions().init == "reuse"
