"""Worked solutions of the notebooks' exercises, one function per exercise.

Written the way a learner would write them in the notebook (plain tensor arithmetic on the
symbols of the equation, no invlab internals), so they can be read side by side with one's own.
:mod:`invlab.exercises` checks each of them against invlab's implementation, and the notebooks
fall back to them while the learner's version is not written yet.
"""

from __future__ import annotations

import torch

__all__ = ["naive_step", "ddim_euler_step", "local_errors", "guided_eps", "oracle_eta", "forward_step_solve",
           "gradient_free_step", "eps_from_prediction", "renoise_step", "edict_inverse", "forward_residual",
           "midpoint_step", "traced_guidance", "ring_distance"]


def naive_step(eps_fn, x, cur, nxt):
    """Notebook 01: one naive DDIM inversion step from level ``cur`` up to the noisier ``nxt``.

    eps = eps_theta(x, t_nxt);  x0_hat = (x - sigma_cur eps) / alpha_cur;
    x_nxt = alpha_nxt x0_hat + sigma_nxt eps."""
    eps = eps_fn(x, nxt.label)              # taken at the known x, fed the target level's label
    x0_hat = (x - cur.sigma * eps) / cur.alpha
    return nxt.alpha * x0_hat + nxt.sigma * eps


def ddim_euler_step(x_s, eps, s, t):
    """Notebook 02: the DDIM step s -> t as one Euler step of dy/drho = eps,
    with y = x / alpha and rho = sigma / alpha."""
    y_s = x_s / s.alpha
    rho_s, rho_t = s.sigma / s.alpha, t.sigma / t.alpha
    y_t = y_s + (rho_t - rho_s) * eps
    return t.alpha * y_t


def local_errors(truth, levels, step):
    """Notebook 03: the error each naive step makes on its own.

    truth[k] is the true latent at levels[k] (inversion order); each step starts from the truth
    and is compared with the true next latent: NMSE ||out - truth[k+1]||^2 / ||truth[k+1]||^2,
    per sample, averaged over the batch."""
    errors = []
    for k in range(len(levels) - 1):
        out = step(truth[k], levels[k], levels[k + 1])
        diff = (out - truth[k + 1]).flatten(1)
        ref = truth[k + 1].flatten(1)
        errors.append(((diff ** 2).sum(1) / (ref ** 2).sum(1)).mean())
    return torch.stack(errors)


def guided_eps(eps_u, eps_c, w):
    """Notebook 04: classifier-free guidance, eps = eps_u + w (eps_c - eps_u)."""
    return eps_u + w * (eps_c - eps_u)


def oracle_eta(prediction, measurement, truth):
    """Notebook 05: the least-squares weight on the prediction, per sample:
    eta* = <x* - y, x_bar - y> / ||x_bar - y||^2."""
    d = (prediction - measurement).flatten(1)
    e = (truth - measurement).flatten(1)
    return (e * d).sum(1) / (d * d).sum(1)


def forward_step_solve(phi, x_t, y0, rho, iterations):
    """Notebook 06: Algorithm 1's inner iteration, y <- y - rho (phi(y) - x_t), ``iterations`` times."""
    y = y0
    for _ in range(iterations):
        y = y - rho * (phi(y) - x_t)
    return y


def gradient_free_step(z, x, vae, s, rho):
    """Notebook 07: one gradient-free decoder-inversion step,
    z <- z - rho (s E(D(z / s)) - s E(x)), E the encoder's posterior mean, D the decoder."""
    def encode(image):
        return s * vae.encode(image).latent_dist.mean

    def decode(latent):
        return vae.decode(latent / s).sample

    return z - rho * (encode(decode(z)) - encode(x))


def eps_from_prediction(out, x, level, prediction_type):
    """Notebook 08: a network's output as eps, at the level it was fed.

    x = alpha x0 + sigma eps and v = alpha eps - sigma x0 give eps = sigma x + alpha v;
    an x0 ("sample") prediction gives eps = (x - alpha x0) / sigma."""
    if prediction_type == "epsilon":
        return out
    if prediction_type == "v_prediction":
        return level.sigma * x + level.alpha * out
    if prediction_type == "sample":
        return (x - level.alpha * out) / level.sigma
    raise ValueError(f"unknown prediction_type {prediction_type!r}")


def renoise_step(eps_fn, x, cur, nxt, renoise_steps, average_range):
    """Notebook 09: one ReNoise step from ``cur`` up to ``nxt``.

    InvStep(x; eps) = alpha_nxt (x - sigma_cur eps) / alpha_cur + sigma_nxt eps;
    y0 = x, eps_k = eps_theta(y_k, t_nxt), y_{k+1} = InvStep(x; eps_k) for k = 0 .. K;
    result: InvStep(x; mean of eps_k for a <= k < b)."""
    def inv_step(eps):
        return nxt.alpha * (x - cur.sigma * eps) / cur.alpha + nxt.sigma * eps

    y, preds = x, []
    for _ in range(renoise_steps + 1):
        eps = eps_fn(y, nxt.label)
        preds.append(eps)
        y = inv_step(eps)
    a, b = average_range
    return inv_step(torch.stack(preds[a:b]).mean(0))


def edict_inverse(x_t, y_t, eps_fn, s, t, p, x_first=True):
    """Notebook 10: undo one EDICT step s -> t. Un-mix in reverse (y first, then x), then undo the two
    updates in reverse: the latent updated second is restored first."""
    a = t.alpha / s.alpha
    b = t.sigma - a * s.sigma
    y_i = (y_t - (1 - p) * x_t) / p
    x_i = (x_t - (1 - p) * y_i) / p
    first_i, second_i = (x_i, y_i) if x_first else (y_i, x_i)
    second = (second_i - b * eps_fn(first_i)) / a
    first = (first_i - b * eps_fn(second)) / a
    return (first, second) if x_first else (second, first)


def forward_residual(eps_fn, x_cur, x_next, cur, nxt):
    """Notebook 14: re-run the sampling step from the inverted state and compare with where
    inversion came from: RMS of DDIM_{nxt -> cur}(x_next) - x_cur."""
    eps = eps_fn(x_next, nxt.label)
    x0 = (x_next - nxt.sigma * eps) / nxt.alpha
    back = cur.alpha * x0 + cur.sigma * eps
    return float((back - x_cur).pow(2).mean().sqrt())


def midpoint_step(v_fn, x, cur, nxt):
    """Notebook 11: one explicit-midpoint (RF-Solver) inversion step of dx/dsigma = v from ``cur`` up to
    the noisier ``nxt``: Delta = sigma_nxt - sigma_cur, x_mid = x + Delta/2 v(x, sigma_cur),
    x_nxt = x + Delta v(x_mid, sigma_cur + Delta/2)."""
    d = nxt.sigma - cur.sigma
    x_mid = x + d / 2 * v_fn(x, cur.sigma)
    return x + d * v_fn(x_mid, cur.sigma + d / 2)


def traced_guidance(x, x_next, eps_u, eps_c):
    """Notebook 13: a DDIM step is x_next = a x + b eps with eps = eps_u + w (eps_c - eps_u), so fitting
    x_next = A x + B eps_u + C (eps_c - eps_u) over all entries gives B = b, C = b w: w = C / B."""
    import torch

    X = torch.stack([x.flatten(), eps_u.flatten(), (eps_c - eps_u).flatten()], 1)
    A, B, C = torch.linalg.lstsq(X, x_next.flatten()[:, None]).solution.flatten().tolist()
    return C / B


def ring_distance(z, key_values, mask):
    """Notebook 12: Tree-Ring's score, the mean over the key's mask of |F(z) - K| with F the centred 2-D FFT
    (low frequencies in the middle, where the rings are written)."""
    import torch

    f = torch.fft.fftshift(torch.fft.fft2(z.to(torch.float64)), dim=(-2, -1))
    diff = (f - key_values).abs() * mask
    return diff.flatten(1).sum(1) / mask.sum()
