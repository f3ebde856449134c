"""The notebooks' exercises: every worked solution passes its check, typical mistakes fail it with
the message meant for them, and an unwritten function is reported as not written (fast: analytic
models and the tiny VAE)."""

from __future__ import annotations

import pytest
import torch

from invlab import exercises as ex
from invlab import solutions as so

PAIRS = {
    "naive_step": (ex.check_naive_step, so.naive_step),
    "ddim_euler_step": (ex.check_ddim_euler_step, so.ddim_euler_step),
    "local_errors": (ex.check_local_errors, so.local_errors),
    "guided_eps": (ex.check_guided_eps, so.guided_eps),
    "oracle_eta": (ex.check_oracle_eta, so.oracle_eta),
    "forward_step_solve": (ex.check_forward_step_solve, so.forward_step_solve),
    "gradient_free_step": (ex.check_gradient_free_step, so.gradient_free_step),
    "eps_from_prediction": (ex.check_eps_from_prediction, so.eps_from_prediction),
    "renoise_step": (ex.check_renoise_step, so.renoise_step),
    "edict_inverse": (ex.check_edict_inverse, so.edict_inverse),
    "forward_residual": (ex.check_forward_residual, so.forward_residual),
    "midpoint_step": (ex.check_midpoint_step, so.midpoint_step),
    "traced_guidance": (ex.check_traced_guidance, so.traced_guidance),
    "ring_distance": (ex.check_ring_distance, so.ring_distance),
}


def _edict_unmix_x_first(x_t, y_t, eps_fn, s, t, p, x_first=True):
    a = t.alpha / s.alpha
    b = t.sigma - a * s.sigma
    x_i = (x_t - (1 - p) * y_t) / p
    y_i = (y_t - (1 - p) * x_i) / p
    first_i, second_i = (x_i, y_i) if x_first else (y_i, x_i)
    second = (second_i - b * eps_fn(first_i)) / a
    first = (first_i - b * eps_fn(second)) / a
    return (first, second) if x_first else (second, first)


def _residual_wrong_label(eps_fn, x_cur, x_next, cur, nxt):
    eps = eps_fn(x_next, cur.label)
    x0 = (x_next - nxt.sigma * eps) / nxt.alpha
    return float((cur.alpha * x0 + cur.sigma * eps - x_cur).pow(2).mean().sqrt())


def test_every_exercise_has_a_solution_and_a_check():
    assert set(so.__all__) == set(PAIRS)
    assert {c.__name__ for c, _ in PAIRS.values()} == {n for n in ex.__all__ if n.startswith("check_")}


@pytest.mark.parametrize("name", sorted(PAIRS))
def test_solution_passes(name, capsys):
    check, solution = PAIRS[name]
    result = check(solution)
    assert result.ok, result.message
    assert "CORRECT" in capsys.readouterr().out


@pytest.mark.parametrize("name", sorted(PAIRS))
def test_unwritten_function_is_not_written_and_falls_back(name, capsys):
    check, solution = PAIRS[name]

    def mine(*args):
        raise NotImplementedError("your code here")

    result = check(mine)
    assert result.status == "not written" and not result.ok
    assert "not written yet" in result.message
    assert result.pick(mine, solution) is solution
    assert "using the solution" in capsys.readouterr().out


def test_a_correct_function_is_picked(capsys):
    def my_guided_eps(eps_u, eps_c, w):
        return eps_u + w * (eps_c - eps_u)

    result = ex.check_guided_eps(my_guided_eps)
    assert result.ok and result.pick(my_guided_eps, so.guided_eps) is my_guided_eps
    assert "using your my_guided_eps" in capsys.readouterr().out


def test_errors_and_non_callables_are_reported_not_raised():
    def crashes(*args):
        return args[0].no_such_attribute

    result = ex.check_guided_eps(crashes, verbose=False)
    assert result.status == "wrong" and "AttributeError" in result.message
    assert ex.check_guided_eps(None, verbose=False).status == "wrong"
    wrong_shape = ex.check_guided_eps(lambda u, c, w: (u + w * (c - u))[:1], verbose=False)
    assert wrong_shape.status == "wrong" and "shape" in wrong_shape.message
    not_a_tensor = ex.check_guided_eps(lambda u, c, w: 0.0, verbose=False)
    assert not_a_tensor.status == "wrong" and "torch.Tensor" in not_a_tensor.message


# ---------------------------------------------------------------- typical mistakes, one by one


def _naive_current_label(eps_fn, x, cur, nxt):
    eps = eps_fn(x, cur.label)
    return nxt.alpha * (x - cur.sigma * eps) / cur.alpha + nxt.sigma * eps


def _naive_wrong_direction(eps_fn, x, cur, nxt):
    eps = eps_fn(x, nxt.label)
    return cur.alpha * (x - nxt.sigma * eps) / nxt.alpha + cur.sigma * eps


def _naive_sign(eps_fn, x, cur, nxt):
    eps = eps_fn(x, nxt.label)
    return nxt.alpha * (x + cur.sigma * eps) / cur.alpha + nxt.sigma * eps


def _euler_no_rescale(x, eps, s, t):
    return x / s.alpha + (t.sigma / t.alpha - s.sigma / s.alpha) * eps


def _euler_sigma(x, eps, s, t):
    return t.alpha * (x / s.alpha + (t.sigma - s.sigma) * eps)


def _local_accumulated(truth, levels, step):
    x, out = truth[0], []
    for k in range(len(levels) - 1):
        x = step(x, levels[k], levels[k + 1])
        out.append(((x - truth[k + 1]).flatten(1).pow(2).sum(1) / truth[k + 1].flatten(1).pow(2).sum(1)).mean())
    return torch.stack(out)


def _local_per_sample(truth, levels, step):
    return torch.stack([((step(truth[k], levels[k], levels[k + 1]) - truth[k + 1]).flatten(1).pow(2).sum(1)
                         / truth[k + 1].flatten(1).pow(2).sum(1)) for k in range(len(levels) - 1)])


def _local_wrong_level(truth, levels, step):
    return torch.stack([((step(truth[k], levels[k], levels[k + 1]) - truth[k]).flatten(1).pow(2).sum(1)
                         / truth[k].flatten(1).pow(2).sum(1)).mean() for k in range(len(levels) - 1)])


def _forward_sign(phi, x_t, y0, rho, iterations):
    y = y0
    for _ in range(iterations):
        y = y + rho * (phi(y) - x_t)
    return y


def _forward_returns_phi(phi, x_t, y0, rho, iterations):
    return phi(so.forward_step_solve(phi, x_t, y0, rho, iterations))


def _gf_sign(z, x, vae, s, rho):
    return z + rho * (s * vae.encode(vae.decode(z / s).sample).latent_dist.mean - s * vae.encode(x).latent_dist.mean)


def _gf_no_decoder_scale(z, x, vae, s, rho):
    return z - rho * (s * vae.encode(vae.decode(z).sample).latent_dist.mean - s * vae.encode(x).latent_dist.mean)


def _gf_no_encoder_scale(z, x, vae, s, rho):
    return z - rho * (vae.encode(vae.decode(z / s).sample).latent_dist.mean - vae.encode(x).latent_dist.mean)


def _v_sign(out, x, level, kind):
    if kind == "v_prediction":
        return level.sigma * x - level.alpha * out
    return so.eps_from_prediction(out, x, level, kind)


def _v_swapped(out, x, level, kind):
    if kind == "v_prediction":
        return level.alpha * x + level.sigma * out
    return so.eps_from_prediction(out, x, level, kind)


def _x0_sign(out, x, level, kind):
    if kind == "sample":
        return (x + level.alpha * out) / level.sigma
    return so.eps_from_prediction(out, x, level, kind)


def _renoise_chained(eps_fn, x, cur, nxt, K, rng):
    y, preds = x, []
    for _ in range(K + 1):
        eps = eps_fn(y, nxt.label)
        preds.append(eps)
        y = nxt.alpha * (y - cur.sigma * eps) / cur.alpha + nxt.sigma * eps
    eps = torch.stack(preds[rng[0]:rng[1]]).mean(0)
    return nxt.alpha * (x - cur.sigma * eps) / cur.alpha + nxt.sigma * eps


def _renoise_last(eps_fn, x, cur, nxt, K, rng):
    return so.renoise_step(eps_fn, x, cur, nxt, K, (K, K + 1))


def _renoise_current_label(eps_fn, x, cur, nxt, K, rng):
    return so.renoise_step(lambda y, label: eps_fn(y, cur.label), x, cur, nxt, K, rng)


def _guidance_separate_columns(x, x_next, eps_u, eps_c):
    X = torch.stack([x.flatten(), eps_u.flatten(), eps_c.flatten()], 1)
    _, b, c = torch.linalg.lstsq(X, x_next.flatten()[:, None]).solution.flatten().tolist()
    return c / b


MISTAKES = [
    (ex.check_naive_step, _naive_current_label, "current level's label"),
    (ex.check_naive_step, _naive_wrong_direction, "less noisy level"),
    (ex.check_naive_step, _naive_sign, "a sign"),
    (ex.check_naive_step, lambda eps_fn, x, cur, nxt: (x - cur.sigma * eps_fn(x, nxt.label)) / cur.alpha,
     "returned x0_hat"),
    (ex.check_ddim_euler_step, _euler_no_rescale, "multiply back by alpha_t"),
    (ex.check_ddim_euler_step, _euler_sigma, "not in rho"),
    (ex.check_ddim_euler_step, lambda x, eps, s, t: -so.ddim_euler_step(x, eps, s, t), "differs from invlab's"),
    (ex.check_local_errors, _local_accumulated, "accumulated errors"),
    (ex.check_local_errors, _local_per_sample, "one value per sample"),
    (ex.check_local_errors, _local_wrong_level, "truth[k + 1]"),
    (ex.check_guided_eps, lambda u, c, w: c + w * (c - u), "(1 + w) convention"),
    (ex.check_guided_eps, lambda u, c, w: c + w * (u - c), "swapped"),
    (ex.check_oracle_eta, lambda p, m, t: 1 - so.oracle_eta(p, m, t), "gain K* = 1 - eta*"),
    (ex.check_oracle_eta, lambda p, m, t: so.oracle_eta(p, m, t).mean(), "per sample"),
    (ex.check_forward_step_solve, _forward_sign, "a sign"),
    (ex.check_forward_step_solve, _forward_returns_phi, "returned phi(y)"),
    (ex.check_forward_step_solve, lambda phi, x_t, y0, rho, n: so.forward_step_solve(phi, x_t, y0, rho, n + 1),
     "one iteration too many"),
    (ex.check_forward_step_solve, lambda phi, x_t, y0, rho, n: so.forward_step_solve(phi, x_t, y0, 1.0, n),
     "rho is missing"),
    (ex.check_gradient_free_step, _gf_sign, "a sign"),
    (ex.check_gradient_free_step, _gf_no_decoder_scale, "D(z / s)"),
    (ex.check_gradient_free_step, _gf_no_encoder_scale, "s E(...)"),
    (ex.check_eps_from_prediction, _v_sign, "a sign"),
    (ex.check_eps_from_prediction, _v_swapped, "swapped"),
    (ex.check_eps_from_prediction, _x0_sign, "(x - alpha x0) / sigma"),
    (ex.check_renoise_step, _renoise_chained, "starts from the known x"),
    (ex.check_renoise_step, _renoise_last, "no averaging"),
    (ex.check_renoise_step, _renoise_current_label, "target (noisier) level's label"),
    (ex.check_renoise_step, lambda eps_fn, x, cur, nxt, K, rng: so.renoise_step(eps_fn, x, cur, nxt, K,
                                                                               (rng[0] - 1, rng[1] - 1)),
     "counting from eps^(0)"),
    (ex.check_edict_inverse, _edict_unmix_x_first, "un-mix y first"),
    (ex.check_edict_inverse, lambda x_t, y_t, eps_fn, s, t, p, x_first=True:
     so.edict_inverse(x_t, y_t, eps_fn, s, t, p, True), "mirrored order"),
    (ex.check_edict_inverse, lambda *args: args[0], "return the pair"),
    (ex.check_forward_residual, lambda *args: so.forward_residual(*args) ** 2, "square root"),
    (ex.check_forward_residual, _residual_wrong_label, "feeds the network nxt.label"),
    (ex.check_midpoint_step, lambda v_fn, x, cur, nxt: x + (nxt.sigma - cur.sigma) * v_fn(x, cur.sigma), "one Euler step"),
    (ex.check_midpoint_step, lambda v_fn, x, cur, nxt: x + (nxt.sigma - cur.sigma) * v_fn(
        x + (nxt.sigma - cur.sigma) / 2 * v_fn(x, cur.sigma), cur.sigma), "sigma_cur's label"),
    (ex.check_traced_guidance, lambda *a: 1 / so.traced_guidance(*a), "the guidance is C / B"),
    (ex.check_traced_guidance, _guidance_separate_columns, "separate columns"),
    (ex.check_traced_guidance, lambda x, x_next, eps_u, eps_c: torch.ones(2), "one number for the step"),
    (ex.check_ring_distance, lambda z, k, m: ((torch.fft.fft2(z) - k).abs() * m).flatten(1).sum(1) / m.sum(),
     "fftshift"),
    (ex.check_ring_distance, lambda z, k, m: so.ring_distance(z, k, m) * m.sum(), "take the mean"),
    (ex.check_ring_distance, lambda z, k, m: ((torch.fft.fftshift(torch.fft.fft2(z), dim=(-2, -1)) - k).abs() * m)
     .flatten(1).mean(1), "mask's entries only"),
    (ex.check_ring_distance, lambda z, k, m: ((torch.fft.fftshift(torch.fft.fft2(z), dim=(-2, -1)) - k).real.abs()
                                              * m).flatten(1).sum(1) / m.sum(), "modulus"),
]


@pytest.mark.parametrize("check, wrong, expected", MISTAKES,
                         ids=[f"{c.__name__}-{i}" for i, (c, _, _) in enumerate(MISTAKES)])
def test_mistake_is_reported(check, wrong, expected):
    result = check(wrong, verbose=False)
    assert result.status == "wrong", result.message
    assert expected in result.message, result.message


# ---------------------------------------------------------------- the notebooks use them

NB_DIR = __import__("pathlib").Path(__file__).resolve().parent.parent / "notebooks"
NOTEBOOKS = sorted(NB_DIR.glob("[0-9][0-9]_*.py"))


@pytest.mark.parametrize("py", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_has_an_exercise_before_the_questions(py):
    """A stub for the learner, a check cell that falls back to the solution, before 'Questions to try'."""
    src = py.read_text()
    start, questions = src.find("## Exercise:"), src.find("## Questions to try")
    assert 0 < start < questions, f"{py.name}: no exercise before 'Questions to try'"
    cell = src[start:questions]
    assert 'raise NotImplementedError("your code here")' in cell
    assert "exercises.check_" in cell and ".pick(my_" in cell and "solutions." in cell


def test_every_check_is_used_by_a_notebook():
    text = "".join(p.read_text() for p in NOTEBOOKS)
    assert len(NOTEBOOKS) >= 11
    for c, _ in PAIRS.values():
        assert f"exercises.{c.__name__}(" in text, f"{c.__name__} is in no notebook"


def test_in_place_edits_do_not_change_the_test_data():
    def in_place(eps_u, eps_c, w):
        return eps_u.add_(w * (eps_c - eps_u))   # right answer, written into its input

    def naive_in_place(eps_fn, x, cur, nxt):
        eps = eps_fn(x, nxt.label)
        return x.sub_(cur.sigma * eps).div_(cur.alpha).mul_(nxt.alpha).add_(nxt.sigma * eps)

    assert ex.check_guided_eps(in_place, verbose=False).ok
    assert ex.check_naive_step(naive_in_place, verbose=False).ok
    assert ex.check_guided_eps(so.guided_eps, verbose=False).ok
    assert ex.check_naive_step(so.naive_step, verbose=False).ok
