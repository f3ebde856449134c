"""Exact-by-construction solvers (EDICT, BDIA, BELM) and their algebraic inverse (issue 13).

Step oracles are written here from the reference's equations (methods.md §7, pitfalls.md), not
from ``invlab.reversible``: EDICT's a_t / b_t from alpha-bar, sequential mixing, leapfrog, the
un-mixing order, the noisier level's label in both directions; BDIA's
z_{i-1} = g z_{i+1} - g DDIM_{i->i+1}(z_i) + DDIM_{i->i-1}(z_i) and its inverse; O-BELM's
coefficients in h = sigma/alpha differences and the reference's own inverse formula.

float32 bound (derived, stated): one step of an inverse (or of sampling) is a linear combination
of states and a network output; its rounding error is at most a few units of roundoff u times
the sum of the absolute coefficients kappa_k times the state magnitude M. The round trip undoes
each perturbed step with the exact sampling map, so the errors add: |err| <= 8 u M sum_k kappa_k,
u = 2^-24, M = max |state| over both runs, kappa_k = the absolute coefficient sum of the inverse
step (EDICT: 2/p^2 + 2(1 + |b|)/a; BDIA: 1/g (1 + |DDIM_{s->t}| + |DDIM_{s->r}| coefficients);
BELM: (1 + |c_cur| + |c_eps|)/|c_prev|). It ignores the growth of the inverted state itself
(EDICT's 1/p^2 and BDIA's 1/g per step), which M absorbs. Measured on gmm-digits (6 real digits,
10/20/50 steps): 6x to 380x below it (tightest: BELM at 50 steps, 8.9e-5 vs 5.1e-4).
"""

import math

import pytest
import torch

import invlab
from invlab.reversible import ReversibleOptions, belm_coeffs, ddim_coeffs

NOREC = [invlab.Recorder(keys=())]
SOLVERS = ("edict", "bdia", "belm")


@pytest.fixture(scope="module")
def real():
    x, _ = invlab.data.digits_images(size=16, split="val")
    return x[:6].double()


def _ab(model, label):
    return model.schedule.alpha_bar(label)


def _levels(model, steps):
    return model.schedule.grid(steps, "ddim").levels


# ------------------------------------------------------------------------ step oracles
def _edict_oracle(model, z, steps, p, leapfrog, inverse=False, y=None):
    """Reference EDICT (sampling or inversion) from a_t = sqrt(ab_prev/ab_t), b_t = sqrt(1-ab_prev) -
    sqrt(ab_prev (1-ab_t)/ab_t); both network calls at the noisier level's label."""
    lv = _levels(model, steps)
    x, y = z.clone(), (z.clone() if y is None else y.clone())
    order = range(steps - 1, -1, -1) if inverse else range(steps)
    for k in order:
        s, t = lv[k], lv[k + 1]
        ab_s, ab_t = s.alpha ** 2, t.alpha ** 2
        a = math.sqrt(ab_t / ab_s)
        b = math.sqrt(1 - ab_t) - math.sqrt(ab_t * (1 - ab_s) / ab_s)

        def e(v):
            return model.eps(v, s.label).eps

        x_first = not (leapfrog and k % 2 == 1)
        if not inverse:
            if x_first:
                xi = a * x + b * e(y)
                yi = a * y + b * e(xi)
            else:
                yi = a * y + b * e(x)
                xi = a * x + b * e(yi)
            x = p * xi + (1 - p) * yi
            y = p * yi + (1 - p) * x
        else:
            yi = (y - (1 - p) * x) / p
            xi = (x - (1 - p) * yi) / p
            if x_first:
                y = (yi - b * e(xi)) / a
                x = (xi - b * e(y)) / a
            else:
                x = (xi - b * e(yi)) / a
                y = (yi - b * e(x)) / a
    return x, y


@pytest.mark.parametrize("leapfrog", [True, False])
def test_edict_steps_match_the_reference_equations(gmm2d, leapfrog):
    z = invlab.noise(gmm2d, 5, seed=1)
    fwd = invlab.sample(gmm2d, z, 7, "edict", solver_options={"p": 0.9, "leapfrog": leapfrog})
    x, y = _edict_oracle(gmm2d, z, 7, 0.9, leapfrog)
    assert torch.allclose(fwd.final, x, atol=1e-13, rtol=0) and torch.allclose(fwd.companion, y, atol=1e-13, rtol=0)
    assert [r.extras["x_first"] for r in fwd.records] == [not (leapfrog and k % 2) for k in range(7)]
    inv = invlab.invert(gmm2d, x, 7, "edict", p=0.9, leapfrog=leapfrog, companion=y)
    xb, yb = _edict_oracle(gmm2d, x, 7, 0.9, leapfrog, inverse=True, y=y)
    assert torch.allclose(inv.final, xb, atol=1e-12, rtol=0) and torch.allclose(inv.companion, yb, atol=1e-12, rtol=0)
    lv = _levels(gmm2d, 7)
    assert [r.t_model for r in fwd.records] == [lv[k].label for k in range(7)]
    assert [r.t_model for r in inv.records] == [lv[k].label for k in range(6, -1, -1)]  # noisier level both ways
    assert inv.config["method"] == "algebraic" and inv.config["solver_options"] == {"p": 0.9, "leapfrog": leapfrog}


def _ddim_to(model, u, s, j):
    e = model.eps(u, s.label).eps
    return j.alpha * (u - s.sigma * e) / s.alpha + j.sigma * e


def test_bdia_steps_match_the_reference_equations(gmm2d):
    g, n = 0.7, 6
    z = invlab.noise(gmm2d, 5, seed=2)
    lv = _levels(gmm2d, n)
    states = [z, _ddim_to(gmm2d, z, lv[0], lv[1])]                 # first step: plain DDIM
    for i in range(1, n):
        zp, zi = states[-2], states[-1]
        states.append(g * zp - g * _ddim_to(gmm2d, zi, lv[i], lv[i - 1]) + _ddim_to(gmm2d, zi, lv[i], lv[i + 1]))
    fwd = invlab.sample(gmm2d, z, n, "bdia", solver_options={"gamma": g})
    assert torch.allclose(fwd.final, states[-1], atol=1e-13, rtol=0)
    assert torch.allclose(fwd.companion, states[-2], atol=1e-13, rtol=0)
    # inversion of an arbitrary point: one DDIM-inversion step with the KNOWN level's label, then
    # z_{i+1} = (z_{i-1} - DDIM_{i->i-1}(z_i)) / g + DDIM_{i->i+1}(z_i)
    x0 = states[-1] + 0.3
    back = [x0, _ddim_to(gmm2d, x0, lv[n], lv[n - 1])]
    for i in range(n - 1, 0, -1):
        zm, zi = back[-2], back[-1]
        back.append((zm - _ddim_to(gmm2d, zi, lv[i], lv[i + 1])) / g + _ddim_to(gmm2d, zi, lv[i], lv[i - 1]))
    inv = invlab.invert(gmm2d, x0, n, "bdia", gamma=g)
    assert torch.allclose(inv.final, back[-1], atol=1e-12, rtol=0)
    assert torch.allclose(inv.companion, back[-2], atol=1e-12, rtol=0)
    assert inv.records[0].t_model == lv[n].label                   # the known (clean) level's label
    assert [r.t_model for r in inv.records[1:]] == [lv[i].label for i in range(n - 1, 0, -1)]


def test_belm_steps_match_the_reference_equations(gmm2d):
    n = 6
    z = invlab.noise(gmm2d, 5, seed=3)
    lv = _levels(gmm2d, n)
    al = [lv_.alpha for lv_ in lv]
    rho = [lv_.sigma / lv_.alpha for lv_ in lv]
    states = [z, _ddim_to(gmm2d, z, lv[0], lv[1])]
    for k in range(1, n):                                          # i = middle; i+1 = k-1; i-1 = k+1
        h_i, h_n = rho[k] - rho[k + 1], rho[k - 1] - rho[k]
        e = gmm2d.eps(states[-1], lv[k].label).eps
        states.append((h_i ** 2 / h_n ** 2) * (al[k + 1] / al[k - 1]) * states[-2]
                      + ((h_n ** 2 - h_i ** 2) / h_n ** 2) * (al[k + 1] / al[k]) * states[-1]
                      - (h_i * (h_i + h_n) / h_n) * al[k + 1] * e)
    fwd = invlab.sample(gmm2d, z, n, "belm")
    assert torch.allclose(fwd.final, states[-1], atol=1e-12, rtol=0)
    x0 = states[-1] - 0.2
    back = [x0, _ddim_to(gmm2d, x0, lv[n], lv[n - 1])]
    for k in range(n - 1, 0, -1):                                  # the reference's inverse formula
        h_i, h_n = rho[k] - rho[k + 1], rho[k - 1] - rho[k]
        e = gmm2d.eps(back[-1], lv[k].label).eps
        back.append((h_n ** 2 / h_i ** 2) * (al[k - 1] / al[k + 1]) * back[-2]
                    + ((h_i ** 2 - h_n ** 2) / h_i ** 2) * (al[k - 1] / al[k]) * back[-1]
                    + (h_n * (h_i + h_n) / h_i) * al[k - 1] * e)
    inv = invlab.invert(gmm2d, x0, n, "belm")
    assert torch.allclose(inv.final, back[-1], rtol=1e-12, atol=1e-10)


# ------------------------------------------------------------------------ round trips
@pytest.mark.parametrize("solver", SOLVERS)
@pytest.mark.parametrize("steps", [20, 50])
def test_float64_round_trips_are_exact_for_real_digits_and_noise(digits, real, solver, steps):
    inv = invlab.invert(digits, real, steps, solver, hooks=NOREC)               # image -> z_hat (+ companion)
    rec = invlab.reconstruct(digits, inv, hooks=NOREC)
    assert (rec.final - real).abs().max() <= 1e-12
    assert torch.equal(rec.final, invlab.sample(digits, inv.final, steps, solver, companion=inv.companion,
                                                hooks=NOREC).final)
    z = invlab.noise(digits, 4, seed=5)                                          # z_T -> sample -> z_T
    fwd = invlab.sample(digits, z, steps, solver, hooks=NOREC)
    back = invlab.invert(digits, fwd.final, steps, solver, companion=fwd.companion, hooks=NOREC)
    assert (back.final - z).abs().max() <= 1e-12
    again = invlab.sample(digits, back.final, steps, solver, companion=back.companion, hooks=NOREC)
    assert (again.final - fwd.final).abs().max() <= 1e-12


def _kappa(model, solver, steps, opts):
    lv = _levels(model, steps)
    total = 0.0
    for k in range(steps):
        s, t = lv[k], lv[k + 1]
        if solver == "edict":
            a, b = ddim_coeffs(s, t)
            total += 2 / opts["p"] ** 2 + 2 * (1 + abs(b)) / a
        elif k > 0:
            r = lv[k - 1]
            if solver == "belm":
                cp, cc, ce = belm_coeffs(r, s, t)
                total += (1 + abs(cc) + abs(ce)) / abs(cp)
            else:
                c = [abs(j.alpha / s.alpha) + abs(j.sigma - j.alpha * s.sigma / s.alpha) for j in (r, t)]
                total += (1 + c[0] + c[1]) / opts["gamma"]
    return total


@pytest.mark.parametrize("solver", SOLVERS)
def test_float32_round_trip_within_the_derived_bound(digits, real, solver):
    steps = 20
    x = real.float()
    inv = invlab.invert(digits, x, steps, solver, hooks=NOREC)
    rec = invlab.reconstruct(digits, inv, hooks=NOREC)
    assert rec.final.dtype == torch.float32
    m = max(x.abs().max().item(), inv.final.abs().max().item(), inv.companion.abs().max().item())
    opts = inv.config["solver_options"]
    bound = 8 * 2.0 ** -24 * m * _kappa(digits, solver, steps, opts)
    err = (rec.final - x).abs().max().item()
    assert err <= bound, (err, bound)
    assert bound < 1e-2                                        # the bound itself says "float precision"


def test_trained_unet_float32_round_trip(real):
    model = invlab.load_model("digits")
    x = real[:3].float()
    for solver in SOLVERS:
        inv = invlab.invert(model, x, 10, solver, guidance=3.0, cond=torch.tensor([0, 1, 2]), hooks=NOREC)
        rec = invlab.reconstruct(model, inv, hooks=NOREC)
        assert (rec.final - x).abs().max() <= 1e-3, solver


# ------------------------------------------------------------------------ cost, presets, records
def test_nfe_per_step_from_the_records(digits, real):
    for solver, per_step in (("edict", 2), ("bdia", 1), ("belm", 1)):
        fwd = invlab.sample(digits, invlab.noise(digits, 2), 8, solver, hooks=NOREC)
        assert [r.nfe for r in fwd.records] == [per_step] * 8
        inv = invlab.invert(digits, real[:2], 8, solver, hooks=NOREC)
        assert [r.nfe for r in inv.records] == [per_step] * 8
        rec = invlab.reconstruct(digits, inv, hooks=NOREC)                # the stored second state: 0 NFE
        expected = [per_step] * 8 if solver == "edict" else [0] + [1] * 7
        assert [r.nfe for r in rec.records] == expected
        if solver != "edict":
            assert [r.extras["kind"] for r in rec.records] == ["companion"] + ["bidirectional"] * 7
            assert [r.extras["kind"] for r in inv.records] == ["ddim"] + ["bidirectional"] * 7


def test_defaults_and_presets(digits, real):
    assert ReversibleOptions().resolved("edict") == {"p": 0.93, "leapfrog": True}
    assert ReversibleOptions().resolved("bdia") == {"gamma": 1.0}
    assert ReversibleOptions().resolved("belm") == {"order": 2}
    assert ReversibleOptions(preset="reference").resolved("bdia") == {"gamma": 0.5}
    assert ReversibleOptions(preset="reference", gamma=0.9).resolved("bdia") == {"gamma": 0.9}
    inv = invlab.invert(digits, real[:2], 10, "bdia", preset="reference", hooks=NOREC)
    assert inv.config["solver_options"] == {"gamma": 0.5} and inv.config["preset"] == "reference"
    rec = invlab.reconstruct(digits, inv, hooks=NOREC)
    assert rec.config["solver_options"] == {"gamma": 0.5}
    assert (rec.final - real[:2]).abs().max() <= 1e-11
    a = invlab.sample(digits, invlab.noise(digits, 1), 10, "bdia", solver_options={"preset": "reference"}, hooks=NOREC)
    b = invlab.sample(digits, invlab.noise(digits, 1), 10, "bdia", solver_options=ReversibleOptions(gamma=0.5),
                      hooks=NOREC)
    assert torch.equal(a.final, b.final)
    default = invlab.invert(digits, real[:2], 10, "edict", hooks=NOREC)
    assert default.config["method"] == "algebraic"
    assert default.config["solver"] == "edict"
    assert default.config["timesteps"] == digits.schedule.grid(10, "ddim").labels


def test_edict_p1_first_step_is_ddim_then_the_pair_drifts_apart(digits):
    z = invlab.noise(digits, 2)
    ddim = invlab.sample(digits, z, 10, "ddim")
    out = invlab.sample(digits, z, 10, "edict", solver_options={"p": 1.0, "leapfrog": False})
    # x' = a x + b eps(y) with y = x = z_T: x's first step is DDIM's; y' then uses eps(x'), not eps(y)
    assert torch.allclose(out.records[0].x_next, ddim.records[0].x_next, atol=1e-12)
    assert (out.final - ddim.final).abs().max() > 1e-3     # p = 1 is the reconstruction setting, not DDIM


@pytest.mark.parametrize("call, match", [
    (lambda m, x: invlab.invert(m, x, 5, "edict", p=0.0), r"p \(EDICT's mixing weight\) must be a number in \(0, 1\]"),
    (lambda m, x: invlab.invert(m, x, 5, "edict", p=1.5), r"in \(0, 1\]"),
    (lambda m, x: invlab.invert(m, x, 5, "bdia", gamma=0), r"gamma \(BDIA\) must be a number in \(0, 1\]"),
    (lambda m, x: invlab.invert(m, x, 5, "belm", order=3), r"order \(BELM\) must be 2"),
    (lambda m, x: invlab.invert(m, x, 5, "edict", gamma=0.5), r"gamma=0.5 belongs to solver 'bdia', not 'edict'"),
    (lambda m, x: invlab.invert(m, x, 5, "bdia", p=0.9), r"p=0.9 belongs to solver 'edict'"),
    (lambda m, x: invlab.invert(m, x, 5, "edict", method="naive"), r"exact by construction.*method='algebraic'"),
    (lambda m, x: invlab.invert(m, x, 5, "belm", method="exact"), r"method='algebraic'"),
    (lambda m, x: invlab.invert(m, x, 5, "ddim", method="algebraic"), r"no closed-form inverse"),
    (lambda m, x: invlab.invert(m, x, 5, "edict", preset="paper"), r"preset must be None or 'reference'"),
    (lambda m, x: invlab.sample(m, x, 5, "ddim", solver_options={"p": 0.9}), r"belong to the exact-by-construction"),
    (lambda m, x: invlab.sample(m, x, 5, "edict", solver_options={"mix": 0.9}), r"mix"),
    (lambda m, x: invlab.sample(m, x, 5, "bdia", companion=x[:, :, :8]), r"companion has shape"),
    (lambda m, x: invlab.sample(m, x, 5, "edict", solver_options=0.9), r"solver_options must be None, a dict"),
    (lambda m, x: invlab.invert(m, x, 5, "edict", leapfrog="yes"), r"leapfrog must be True or False"),
])
def test_bad_options_give_clear_errors(digits, real, call, match):
    with pytest.raises((ValueError, TypeError), match=match):
        call(digits, real[:1])


def test_unknown_solver_lists_the_new_ones(digits):
    with pytest.raises(ValueError, match="edict"):
        invlab.sample(digits, invlab.noise(digits, 1), 5, solver="edikt")


@pytest.mark.parametrize("solver", SOLVERS)
def test_reconstruct_with_another_condition_is_an_edit(digits, real, solver):
    cond = torch.tensor([0, 1])
    inv = invlab.invert(digits, real[:2], 10, solver, guidance=3.0, cond=cond, hooks=NOREC)
    same = invlab.reconstruct(digits, inv, hooks=NOREC)
    edit = invlab.reconstruct(digits, inv, cond=torch.tensor([7, 7]), hooks=NOREC)
    assert (same.final - real[:2]).abs().max() <= 1e-11
    assert (edit.final - real[:2]).abs().max() > 0.1 and edit.config["solver_options"] == inv.config["solver_options"]
