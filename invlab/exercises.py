"""Exercises: the learner writes a key line, a check says whether it is right.

Every notebook (01-10 and 14) has one exercise: a markdown cell states the task and its equation, a code
cell holds the learner's function (``raise NotImplementedError`` until it is written) and a check
cell calls one of the checks below. A check

* calls the learner's function on a few inputs taken from a small analytic model (``gmm-digits``
  or ``gmm-2d`` in float64, so "right" means equal to round-off), or from ``digits-latent``'s VAE;
* compares the result with what invlab itself computes there (the naive runner, ``invlab.steps``,
  the inner solvers, ``Denoiser.to_eps``, ...), not with a second copy of the formula;
* returns a :class:`Check` with ``status`` "correct", "wrong" (and, where the mistake is a common
  one, which: a sign, the wrong level's label, the scale left out) or "not written" (the function
  raised ``NotImplementedError``), and prints its message.

``check.pick(mine, solution)`` returns the function the rest of the cell should use: the learner's
when it is correct, otherwise the worked solution from :mod:`invlab.solutions` (so a notebook runs
top to bottom before anything is written, as CI runs it), and says which one it took.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any, Callable

import torch

from .schedules import Level

__all__ = ["Check", "check_naive_step", "check_ddim_euler_step", "check_local_errors", "check_guided_eps",
           "check_oracle_eta", "check_forward_step_solve", "check_gradient_free_step", "check_eps_from_prediction",
           "check_renoise_step", "check_edict_inverse", "check_forward_residual", "check_midpoint_step",
           "check_traced_guidance", "check_ring_distance"]

STATUSES = ("correct", "wrong", "not written")


@dataclass
class Check:
    """The verdict of one check: ``status`` is "correct", "wrong" or "not written"."""

    exercise: str
    status: str
    message: str

    @property
    def ok(self) -> bool:
        return self.status == "correct"

    def pick(self, mine: Callable, solution: Callable, verbose: bool = True) -> Callable:
        """The learner's function when it passed, else the worked solution (saying so)."""
        if self.ok:
            if verbose:
                print(f"using your {getattr(mine, '__name__', 'function')}")
            return mine
        if verbose:
            print(f"using the solution invlab.solutions.{solution.__name__} (write yours above)")
        return solution

    def __str__(self) -> str:
        return f"{self.exercise}: {self.status.upper()}. {self.message}"


class _Verdict(Exception):
    """Raised inside a check to end it with a status and a message."""

    def __init__(self, status: str, message: str):
        super().__init__(message)
        self.status, self.message = status, message


def _checked(exercise: str, fn_name: str):
    """Decorator: run a check body, turn the learner's exceptions and verdicts into a Check."""

    def wrap(body):
        @functools.wraps(body)
        def check(fn: Callable, verbose: bool = True) -> Check:
            if not callable(fn):
                result = Check(exercise, "wrong", f"pass your function itself (got {type(fn).__name__}), "
                                                  f"e.g. check({fn_name})")
            else:
                try:
                    body(fn)
                    result = Check(exercise, "correct", f"{fn_name} agrees with invlab on every test input.")
                except _Verdict as v:
                    result = Check(exercise, v.status, v.message)
            if verbose:
                print(result)
            return result

        return check

    return wrap


def _call(fn: Callable, *args: Any) -> Any:
    """Call the learner's function (on copies: an in-place edit must not change the test data);
    NotImplementedError means "not written yet"."""
    name = getattr(fn, "__name__", "your function")
    try:
        with torch.no_grad():
            return fn(*args)
    except NotImplementedError:
        raise _Verdict("not written", f"{name} is not written yet (it raises NotImplementedError): replace that "
                                      "line with your code and run this cell again.") from None
    except Exception as e:  # the learner's own bug: report it, do not crash the notebook
        raise _Verdict("wrong", f"{name} raised {type(e).__name__}: {e}") from None


def _close(a: torch.Tensor, b: torch.Tensor, rtol: float) -> bool:
    scale = float(b.detach().abs().max()) if b.numel() else 1.0
    return bool((a.detach().to(b.dtype) - b.detach()).abs().max() <= rtol * max(scale, 1e-300))


def _compare(got: Any, want: torch.Tensor, what: str, hints: list[tuple[str, Any]] = (), rtol: float = 1e-9) -> None:
    """Raise a 'wrong' verdict unless ``got`` equals ``want``; name the first hint ``got`` equals.

    ``hints``: (message, what a typical mistake returns: a tensor, or a callable that computes it)."""
    if not isinstance(got, torch.Tensor):
        raise _Verdict("wrong", f"{what}: expected a torch.Tensor of shape {tuple(want.shape)}, got "
                                f"{type(got).__name__}")
    if tuple(got.shape) != tuple(want.shape):
        raise _Verdict("wrong", f"{what}: wrong shape {tuple(got.shape)}, expected {tuple(want.shape)}")
    if not torch.isfinite(got).all():
        raise _Verdict("wrong", f"{what}: your result contains NaN or inf")
    if _close(got, want, rtol):
        return
    for message, candidate in hints:
        if callable(candidate):  # computed only when needed (some cost network calls)
            with torch.no_grad():
                candidate = candidate()
        if isinstance(candidate, torch.Tensor) and candidate.shape == want.shape and _close(got, candidate, rtol):
            raise _Verdict("wrong", f"{what}: {message}")
    diff = float((got.detach().double() - want.detach().double()).abs().max())
    size = float(want.detach().double().abs().max())
    raise _Verdict("wrong", f"{what}: differs from invlab's by up to {diff:.3g} (entries are of size ~{size:.3g}); "
                            "compare your code with the equation above term by term")


# ------------------------------------------------------------------ shared test material


@functools.lru_cache(maxsize=None)
def _model(name: str):
    from .models import load_model

    return load_model(name)


@functools.lru_cache(maxsize=None)
def _digits_run(steps: int = 5, guidance: float = 3.0, batch: int = 2, seed: int = 0):
    """gmm-digits (float64): a sampling run and its naive inversion, each step recorded."""
    from .inversion import invert
    from .sampling import noise, sample

    model = _model("gmm-digits")
    cond = torch.arange(batch) % model.num_classes
    z_T = noise(model, batch, seed=seed, dtype=torch.float64)
    ref = sample(model, z_T, steps, "ddim", guidance, cond)
    inv = invert(model, ref.final, steps, method="naive", guidance=guidance, cond=cond)
    return model, cond, ref, inv


def _eps_fn(model, cond, guidance: float) -> Callable:
    """eps_fn(x, label): the guided noise prediction at state x fed timestep label ``label``."""
    def eps_fn(x: torch.Tensor, label: float) -> torch.Tensor:
        return model.eps(x, label, model.check_cond(cond, x.shape[0], x), guidance).eps

    return eps_fn


def _inv_step(x: torch.Tensor, eps: torch.Tensor, cur: Level, nxt: Level) -> torch.Tensor:
    """The DDIM step from level cur to level nxt with a given eps (invlab.steps)."""
    from .steps import ddim_step, x0_from_eps

    return ddim_step(x0_from_eps(x, eps, cur), eps, nxt)


# ------------------------------------------------------------------ 01: the naive step


@_checked("naive DDIM inversion step", "my_naive_step")
def check_naive_step(fn: Callable) -> None:
    """``fn(eps_fn, x, cur, nxt) -> x_next``: one naive inversion step from level ``cur`` up to
    the noisier level ``nxt``, eps taken at the known ``x`` with ``nxt``'s label. Compared with
    every step of ``invlab.invert(method="naive")`` on gmm-digits (5 steps, w = 3)."""
    model, cond, _, inv = _digits_run()
    eps_fn = _eps_fn(model, cond, 3.0)
    for k, r in enumerate(inv.records):
        cur, nxt = inv.levels[k], inv.levels[k + 1]
        x = r.x_cur
        got = _call(fn, eps_fn, x.clone(), cur, nxt)
        e_t, e_c = eps_fn(x, nxt.label), eps_fn(x, cur.label)
        x0 = (x - cur.sigma * e_t) / cur.alpha
        hints = [
            ("you fed the network the current level's label (cur.label); naive inversion feeds the target, "
             "noisier level's label nxt.label (diffusers' DDIMInverseScheduler convention)",
             _inv_step(x, e_c, cur, nxt)),
            ("you stepped towards the less noisy level: x0_hat uses (alpha, sigma) of cur, the result those "
             "of nxt", _inv_step(x, e_t, nxt, cur)),
            ("you returned x0_hat, the predicted clean image; the step's result is alpha_nxt x0_hat + "
             "sigma_nxt eps", x0),
            ("a sign: x0_hat = (x - sigma_cur eps) / alpha_cur, with a minus", nxt.alpha * (x + cur.sigma * e_t)
             / cur.alpha + nxt.sigma * e_t),
            ("the alphas are swapped: x0_hat divides by alpha_cur, the result multiplies by alpha_nxt",
             cur.alpha * (x - cur.sigma * e_t) / nxt.alpha + nxt.sigma * e_t),
        ]
        _compare(got, r.x_next, f"step {k} ({cur.label:g} -> {nxt.label:g})", hints)


# ------------------------------------------------------------------ 02: DDIM as an Euler step


@_checked("DDIM step as an Euler step of the probability-flow ODE", "my_ddim_euler_step")
def check_ddim_euler_step(fn: Callable) -> None:
    """``fn(x_s, eps, s, t) -> x_t`` written in the scaled coordinates y = x / alpha,
    rho = sigma / alpha (one Euler step of dy/drho = eps). Compared with invlab's DDIM step
    (``invlab.steps``) on gmm-2d states, in both directions (sampling and inversion)."""
    model = _model("gmm-2d")
    grid = model.schedule.grid(10, "ddim")
    x = torch.randn(6, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    for i in (0, 4, 8):
        for s, t in ((grid.levels[i], grid.levels[i + 1]), (grid.levels[i + 1], grid.levels[i])):
            eps = model.eps(x, s.label).eps
            want = _inv_step(x, eps, s, t)
            got = _call(fn, x.clone(), eps.clone(), s, t)
            y_t = x / s.alpha + (t.sigma / t.alpha - s.sigma / s.alpha) * eps
            hints = [
                ("you returned y_t = x_t / alpha_t; multiply back by alpha_t", y_t),
                ("a sign: y_t = y_s + (rho_t - rho_s) eps, the new noise level minus the old",
                 t.alpha * (x / s.alpha - (t.sigma / t.alpha - s.sigma / s.alpha) * eps)),
                ("you stepped in sigma, not in rho = sigma / alpha (the ODE is linear only in the scaled "
                 "coordinates)", t.alpha * (x / s.alpha + (t.sigma - s.sigma) * eps)),
                ("you did not divide x_s by alpha_s: y_s = x_s / alpha_s",
                 t.alpha * (x + (t.sigma / t.alpha - s.sigma / s.alpha) * eps)),
            ]
            _compare(got, want, f"step {s.label:g} -> {t.label:g}", hints)


# ------------------------------------------------------------------ 03: local errors


def _nmse_rows(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    from .metrics import nmse

    return nmse(a, b)


@_checked("local error of each naive step", "my_local_errors")
def check_local_errors(fn: Callable) -> None:
    """``fn(truth, levels, step) -> (N,)``: the NMSE (batch mean) of one naive step started from
    the true latent ``truth[k]`` against the true next latent ``truth[k + 1]``; ``step(x, cur, nxt)``
    is the naive step. Compared with ``invlab.studies.errors.local_step_errors``."""
    from .studies.errors import Comparison, local_step_errors

    model, cond, ref, inv = _digits_run()
    comparison = Comparison(ref.latents()[0], ref, {"naive": inv},
                            {"model": model, "steps": 5, "solver": "ddim", "guidance": 3.0, "cond": cond})
    want = local_step_errors(comparison)
    truth = inv.aligned(ref)
    levels = list(inv.levels)
    eps_fn = _eps_fn(model, cond, 3.0)

    def step(x, cur, nxt):
        return _inv_step(x, eps_fn(x, nxt.label), cur, nxt)

    got = _call(fn, truth.clone(), levels, step)
    if isinstance(got, (list, tuple)):
        got = torch.as_tensor([float(v) for v in got], dtype=torch.float64)
    n = len(levels) - 1
    outs = [step(truth[k], levels[k], levels[k + 1]) for k in range(n)]
    hints = [
        ("these are the accumulated errors (each step started from the previous step's output); a local error "
         "starts every step from the true latent truth[k]", inv.errors_to(ref)),
        ("you compared the step's output with truth[k], the latent it started from; compare with truth[k + 1]",
         torch.stack([_nmse_rows(outs[k], truth[k]) for k in range(n)])),
        ("NMSE divides by the true latent's energy ||truth[k + 1]||^2, not by your output's",
         torch.stack([_nmse_rows(truth[k + 1], outs[k]) for k in range(n)])),
    ]
    if isinstance(got, torch.Tensor) and got.dim() == 2 and got.shape[0] == n:
        raise _Verdict("wrong", f"local errors: shape {tuple(got.shape)} has one value per sample; average over the "
                                f"batch (invlab.metrics.nmse does), one value per step: shape ({n},)")
    _compare(got, want, "local errors", hints, rtol=1e-8)


# ------------------------------------------------------------------ 04: classifier-free guidance


@_checked("classifier-free guidance", "my_guided_eps")
def check_guided_eps(fn: Callable) -> None:
    """``fn(eps_u, eps_c, w) -> eps``: the guided noise prediction. Compared with what
    ``Denoiser.eps`` returns for both branches on gmm-digits at several w."""
    model, cond, ref, _ = _digits_run()
    x = ref.latents()[2]
    c = model.check_cond(cond, x.shape[0], x)
    for w in (2.0, 3.0, 7.5):
        out = model.eps(x, 500.0, c, w)
        eu, ec = out.eps_uncond, out.eps_cond
        got = _call(fn, eu.clone(), ec.clone(), w)
        hints = [
            ("that is the (1 + w) convention, eps_c + w (eps_c - eps_u) (the classifier-free guidance paper's); "
             "invlab and diffusers write eps_u + w (eps_c - eps_u), so that w = 1 means no guidance",
             ec + w * (ec - eu)),
            ("the branches are swapped: start from the unconditional eps_u and move towards eps_c",
             ec + w * (eu - ec)),
            ("the difference is missing: eps_u + w (eps_c - eps_u)", eu + w * ec),
            ("that is a convex mix (1 - 1/w) eps_u + eps_c / w; guidance extrapolates past eps_c",
             eu + (ec - eu) / w),
        ]
        _compare(got, out.eps, f"w = {w:g}", hints)
    got = _call(fn, eu.clone(), ec.clone(), 1.0)
    _compare(got, ec, "w = 1 (no guidance: the result must be eps_c)")


# ------------------------------------------------------------------ 05: the oracle gain


@functools.lru_cache(maxsize=None)
def _kalman_states():
    """Prediction, measurement and truth at every step of a naive inversion (gmm-digits)."""
    model, cond, ref, inv = _digits_run(steps=8, batch=3)
    truth = inv.aligned(ref)
    out = []
    for k, r in enumerate(inv.records):
        out.append((r.x_next, r.x_cur, truth[k + 1]))   # prediction x_bar, measurement y, truth x*
    return out


@_checked("the oracle gain of the Kalman view", "my_oracle_eta")
def check_oracle_eta(fn: Callable) -> None:
    """``fn(prediction, measurement, truth) -> (B,)``: the least-squares weight eta* on the
    prediction, per sample. Compared with ``invlab.studies.kalman.oracle_eta`` (the formula
    ``gain="oracle"`` uses) on the states of a naive inversion of gmm-digits."""
    from .studies.kalman import oracle_eta

    for k, (pred, meas, truth) in enumerate(_kalman_states()):
        want = oracle_eta(pred, meas, truth)
        got = _call(fn, pred.clone(), meas.clone(), truth.clone())
        if isinstance(got, torch.Tensor) and got.numel() == 1 and want.numel() > 1:
            raise _Verdict("wrong", f"step {k}: one number for the whole batch; eta* is per sample: sum the "
                                    "products over each sample's entries (x.flatten(1).sum(1)), shape "
                                    f"({want.numel()},)")
        d, e = (pred - meas).flatten(1), (truth - meas).flatten(1)
        hints = [
            ("that is the gain K* = 1 - eta* on the measurement; the exercise asks for eta*, the weight on the "
             "prediction", 1 - want),
            ("you divided by ||x* - y||^2; divide by ||x_bar - y||^2, the squared length of the step",
             (e * d).sum(1) / (e * e).sum(1)),
            ("the inner product is <x* - y, x_bar - y>: both differences are taken from the measurement y",
             ((truth - pred).flatten(1) * d).sum(1) / (d * d).sum(1)),
        ]
        _compare(got, want, f"step {k}", hints)


# ------------------------------------------------------------------ 06: the forward-step iteration


@_checked("the forward-step iteration of exact inversion (Algorithm 1)", "my_forward_step_solve")
def check_forward_step_solve(fn: Callable) -> None:
    """``fn(phi, x_t, y0, rho, iterations) -> y``: ``iterations`` forward steps
    y <- y - rho (phi(y) - x_t) from y0. Compared with invlab's inner solver
    (``invlab.inversion.solvers.solve``, ``inner="forward-step"``) on a DDIM step of gmm-digits."""
    from .inversion.solvers import SolverOptions, solve
    from .studies.solvers import ddim_phi

    model, cond, ref, _ = _digits_run()
    grid = ref.levels
    j = 2
    s, t = grid[j], grid[j + 1]
    x_t = ref.latents()[j + 1]
    c = model.check_cond(cond, x_t.shape[0], x_t)
    eps_t = model.eps(x_t, s.label, c, 3.0).eps
    y0 = _inv_step(x_t, eps_t, t, s)   # the naive guess

    def phi(y):
        return ddim_phi(model, y, s, t, c, 3.0)

    def reference(rho, iterations, sign=1.0):
        opts = SolverOptions(inner="forward-step", tol=1e-300, max_iter=iterations, rho=rho,
                             divergence_patience=10**6)
        if sign > 0:
            return solve(lambda y: (phi(y), None), x_t, y0, opts, keep="last").x
        y = y0
        for _ in range(iterations):
            y = y + rho * (phi(y) - x_t)
        return y

    for rho, iterations in ((1.0, 1), (0.5, 3), (1.0, 8)):
        want = reference(rho, iterations)
        got = _call(fn, phi, x_t.clone(), y0.clone(), rho, iterations)
        hints = [
            ("a sign: the step is y - rho (phi(y) - x_t); with + the iteration walks away from the root",
             lambda: reference(rho, iterations, -1.0)),
            ("you returned phi(y), the sampler's output at your iterate; return the iterate y itself",
             lambda: phi(want)),
            ("one iteration too few (run exactly `iterations` updates)",
             lambda: reference(rho, iterations - 1) if iterations > 1 else y0),
            ("one iteration too many (run exactly `iterations` updates)", lambda: reference(rho, iterations + 1)),
            ("rho is missing: y - rho (phi(y) - x_t)", lambda: reference(1.0, iterations) if rho != 1.0 else None),
        ]
        _compare(got, want, f"rho = {rho:g}, {iterations} iteration(s)", hints)


# ------------------------------------------------------------------ 07: decoder inversion


@functools.lru_cache(maxsize=None)
def _latent_material():
    from .data import digits_images

    model = _model("digits-latent")
    images, _ = digits_images(size=32, split="val")
    return model, images[:2].float()


@_checked("one gradient-free decoder-inversion step", "my_gradient_free_step")
def check_gradient_free_step(fn: Callable) -> None:
    """``fn(z, x, vae, s, rho) -> z_new``: z - rho (s E(D(z / s)) - s E(x)), with E the encoder's
    posterior mean and D the decoder. Compared with ``invlab.invert_decoder(method="gradient-free",
    gf_update="plain")`` on digits-latent, one and three iterations from the encoder's latent."""
    from .inversion.decoder import invert_decoder

    model, x = _latent_material()
    vae, s = model.vae, float(model.scaling_factor)

    def enc(img):
        return vae.encode(img).latent_dist.mean

    def dec(z):
        return vae.decode(z).sample

    for rho, iterations in ((0.5, 1), (0.3, 3)):
        res = invert_decoder(model, x, method="gradient-free", gf_update="plain", iterations=iterations, warmup=0,
                             schedule="constant", rho=rho)
        z = z_start = model.encode(x)
        with torch.no_grad():
            for _ in range(iterations):
                z = _call(fn, z.clone(), x.clone(), vae, s, rho)
                if not isinstance(z, torch.Tensor):
                    break
            z0 = z_start
            hints = [
                ("a sign: move z against the mismatch, z - rho (s E(D(z/s)) - s E(x))",
                 lambda: z0 + rho * (s * enc(dec(z0 / s)) - s * enc(x))),
                ("the decoder takes the unscaled latent: D(z / s), not D(z)",
                 lambda: z0 - rho * (s * enc(dec(z0)) - s * enc(x))),
                ("the encoder's output is scaled into the diffusion latent space: s E(...), on both terms",
                 lambda: z0 - rho * (enc(dec(z0 / s)) - enc(x))),
            ] if iterations == 1 else []
        _compare(z, res.latent, f"rho = {rho:g}, {iterations} iteration(s)", hints, rtol=2e-5)


# ------------------------------------------------------------------ 08: prediction types


@_checked("converting a network's prediction to eps", "my_eps_from_prediction")
def check_eps_from_prediction(fn: Callable) -> None:
    """``fn(out, x, level, prediction_type) -> eps`` for "epsilon", "v_prediction" and "sample"
    (x0). Compared with ``Denoiser.to_eps``, the conversion every model adapter goes through, at
    three levels of Stable Diffusion's schedule."""
    from types import SimpleNamespace

    from .models.base import Denoiser
    from .schedules import NoiseSchedule

    schedule = NoiseSchedule.stable_diffusion()
    gen = torch.Generator().manual_seed(1)
    x0 = torch.randn(3, 4, 8, 8, generator=gen, dtype=torch.float64)
    eps = torch.randn(3, 4, 8, 8, generator=gen, dtype=torch.float64)
    for label in (800.0, 500.0, 150.0):
        lv = schedule.level(label)
        x = lv.alpha * x0 + lv.sigma * eps
        outs = {"epsilon": eps, "v_prediction": lv.alpha * eps - lv.sigma * x0, "sample": x0}
        for kind, out in outs.items():
            adapter = SimpleNamespace(schedule=schedule, prediction_type=kind)
            want = Denoiser.to_eps(adapter, out, x, label)
            got = _call(fn, out.clone(), x.clone(), lv, kind)
            if kind == "epsilon":
                hints = []
            elif kind == "v_prediction":
                hints = [
                    ("a sign: from v = alpha eps - sigma x0 and x = alpha x0 + sigma eps, eps = sigma x + alpha v",
                     lv.sigma * x - lv.alpha * out),
                    ("alpha and sigma are swapped: eps = sigma x + alpha v", lv.alpha * x + lv.sigma * out),
                    ("that is x0 = alpha x - sigma v; the adapter needs eps = sigma x + alpha v",
                     lv.alpha * x - lv.sigma * out),
                ]
            else:
                hints = [
                    ("a sign: eps = (x - alpha x0) / sigma", (x + lv.alpha * out) / lv.sigma),
                    ("alpha and sigma are swapped: eps = (x - alpha x0) / sigma", (x - lv.sigma * out) / lv.alpha),
                ]
            _compare(got, want, f"{kind} at t = {label:g}", hints)


# ------------------------------------------------------------------ 09: ReNoise


@functools.lru_cache(maxsize=None)
def _renoise_run(renoise_steps: int, average_range: tuple[int, int]):
    from .inversion import invert

    model, cond, ref, _ = _digits_run()
    return invert(model, ref.final, 5, method="renoise", guidance=3.0, cond=cond, renoise_steps=renoise_steps,
                  average_range=average_range, first_step_max_label=0.0)


@_checked("one ReNoise step", "my_renoise_step")
def check_renoise_step(fn: Callable) -> None:
    """``fn(eps_fn, x, cur, nxt, renoise_steps, average_range) -> x_next``: y0 = x, K renoising
    iterations y <- InvStep(x; eps(y)), then InvStep(x; mean of eps^(k), a <= k < b). Compared with
    every step of ``invlab.invert(method="renoise")`` on gmm-digits (first-step rule off)."""
    model, cond, _, _ = _digits_run()
    eps_fn = _eps_fn(model, cond, 3.0)

    def variant(x, cur, nxt, K, rng, chain=False, label="target", average=True, shift=0):
        """ReNoise with one typical mistake switched on."""
        lab = nxt.label if label == "target" else cur.label
        y, base, preds = x, x, []
        for _ in range(K + 1):
            e = eps_fn(y, lab)
            preds.append(e)
            y = _inv_step(base, e, cur, nxt)
            if chain:
                base = y
        if not average:
            return y
        a, b = rng[0] + shift, rng[1] + shift
        return _inv_step(x, torch.stack(preds[a:b]).mean(0), cur, nxt)

    for K, rng in ((3, (2, 4)), (2, (1, 3))):
        run = _renoise_run(K, rng)
        for k, r in enumerate(run.records[:3]):
            cur, nxt = run.levels[k], run.levels[k + 1]
            x = r.x_cur
            got = _call(fn, eps_fn, x.clone(), cur, nxt, K, rng)
            hints = [
                ("every renoising iteration starts from the known x: y <- InvStep(x; eps(y)), not from the "
                 "previous iterate (that chains naive steps further and further up)",
                 lambda: variant(x, cur, nxt, K, rng, chain=True)),
                ("no averaging: the result is InvStep(x; the mean of eps^(k) for a <= k < b)",
                 lambda: variant(x, cur, nxt, K, rng, average=False)),
                ("the network is fed the target (noisier) level's label nxt.label at every call",
                 lambda: variant(x, cur, nxt, K, rng, label="current")),
                (f"average_range {rng} means eps^(k) for k = {rng[0]} .. {rng[1] - 1}, counting from eps^(0), the "
                 "prediction at x itself", lambda: variant(x, cur, nxt, K, rng, shift=-1)),
            ]
            _compare(got, r.x_next, f"K = {K}, average_range {rng}, step {k} ({cur.label:g} -> {nxt.label:g})", hints)


# ------------------------------------------------------------------ 10: EDICT's inverse step


@functools.lru_cache(maxsize=None)
def _edict_material(batch: int = 2, seed: int = 0):
    """gmm-digits (float64): a pair (x, y) at a mid level of a 10-step grid and one EDICT step from it."""
    model = _model("gmm-digits")
    levels = list(model.schedule.grid(10).levels)
    gen = torch.Generator().manual_seed(seed)
    shape = (batch, *model.sample_shape)
    x, y = torch.randn(shape, generator=gen, dtype=torch.float64), torch.randn(shape, generator=gen, dtype=torch.float64)
    return model, levels, x, y


@_checked("EDICT's inverse step", "my_edict_inverse")
def check_edict_inverse(fn: Callable) -> None:
    """``fn(x_t, y_t, eps_fn, s, t, p, x_first) -> (x_s, y_s)``: undo one EDICT sampling step s -> t
    (``invlab.reversible.edict_step``); ``eps_fn(z)`` is eps(z, label of s). Checked by recovering
    the pair the step started from, for both update orders and two mixing weights."""
    from .reversible import edict_step

    model, levels, x, y = _edict_material()
    s, t = levels[4], levels[5]

    def eps_fn(z: torch.Tensor) -> torch.Tensor:
        return model.eps(z, s.label).eps

    a = t.alpha / s.alpha
    b = t.sigma - a * s.sigma
    for p in (0.93, 0.8):
        for x_first in (True, False):
            x_t, y_t = edict_step(x, y, eps_fn, s, t, p, x_first)
            got = _call(fn, x_t.clone(), y_t.clone(), eps_fn, s, t, p, x_first)
            if not (isinstance(got, (tuple, list)) and len(got) == 2):
                raise _Verdict("wrong", f"return the pair (x_s, y_s) as a tuple (got {type(got).__name__})")

            def unmix_x_first():       # the common slip: un-mixing x before y
                x_i = (x_t - (1 - p) * y_t) / p
                y_i = (y_t - (1 - p) * x_i) / p
                return x_i, y_i

            def undo(x_i, y_i):
                first_i, second_i = (x_i, y_i) if x_first else (y_i, x_i)
                second = (second_i - b * eps_fn(first_i)) / a
                first = (first_i - b * eps_fn(second)) / a
                return (first, second) if x_first else (second, first)

            def undo_no_order(x_i, y_i):   # always undoing y's update first, ignoring the leapfrog order
                y0 = (y_i - b * eps_fn(x_i)) / a
                return (x_i - b * eps_fn(y0)) / a, y0

            where = f"p = {p}, {'x' if x_first else 'y'} updated first"
            hints_x = [("un-mix y first: y' = (y_t - (1-p) x_t) / p uses x_t, then x' = (x_t - (1-p) y') / p; the "
                        "forward step mixed x first, so its inverse un-mixes y first", lambda: undo(*unmix_x_first())[0]),
                       ("undo the two updates in the mirrored order of the forward step: with y updated first "
                        "(x_first=False) the last update was x's", lambda: undo_no_order(
                            (x_t - (1 - p) * ((y_t - (1 - p) * x_t) / p)) / p, (y_t - (1 - p) * x_t) / p)[0])]
            _compare(got[0], x, f"x_s ({where})", hints_x)
            _compare(got[1], y, f"y_s ({where})")


# ------------------------------------------------------------------ 14: the forward residual


@_checked("forward residual (a check without ground truth)", "my_forward_residual")
def check_forward_residual(fn: Callable) -> None:
    """``fn(eps_fn, x_cur, x_next, cur, nxt) -> float``: re-run the correct DDIM *sampling* step
    from the inverted state ``x_next`` (level ``nxt``, noisier) down to ``cur``, fed ``nxt``'s
    label, and return the RMS of its difference to ``x_cur`` over all entries. Compared on every
    step of a naive inversion of gmm-digits."""
    from .steps import ddim_step, x0_from_eps

    model, cond, _, inv = _digits_run()
    eps_fn = _eps_fn(model, cond, 3.0)
    for k, r in enumerate(inv.records):
        cur, nxt = inv.levels[k], inv.levels[k + 1]
        got = _call(fn, eps_fn, r.x_cur.clone(), r.x_next.clone(), cur, nxt)
        if isinstance(got, torch.Tensor):
            if got.numel() != 1:
                raise _Verdict("wrong", f"step {k}: return one number, the RMS over all entries (got shape "
                                        f"{tuple(got.shape)})")
            got = float(got)
        if not isinstance(got, (int, float)):
            raise _Verdict("wrong", f"step {k}: return a number (got {type(got).__name__})")
        e = eps_fn(r.x_next, nxt.label)
        back = ddim_step(x0_from_eps(r.x_next, e, nxt), e, cur)
        want = float((back - r.x_cur).pow(2).mean().sqrt())
        e_c = eps_fn(r.x_next, cur.label)
        wrong_label = float((ddim_step(x0_from_eps(r.x_next, e_c, nxt), e_c, cur) - r.x_cur).pow(2).mean().sqrt())
        mse = want * want
        if abs(got - want) <= 1e-9 * max(want, 1e-300):
            continue
        if abs(got - mse) <= 1e-9 * max(mse, 1e-300):
            raise _Verdict("wrong", f"step {k}: that is the mean squared difference; take its square root (RMS)")
        if abs(got - wrong_label) <= 1e-9 * max(wrong_label, 1e-300):
            raise _Verdict("wrong", f"step {k}: the sampling step from level nxt feeds the network nxt.label, the "
                                    "level of the state it starts from")
        raise _Verdict("wrong", f"step {k}: got {got:.6g}, invlab computes {want:.6g}; the sampling step is "
                                "x0 = (x_next - sigma_nxt eps) / alpha_nxt, back = alpha_cur x0 + sigma_cur eps")


# ------------------------------------------------------------------ 11: the midpoint (RF-Solver) inversion step


@functools.lru_cache(maxsize=None)
def _flow_run(steps: int = 6, guidance: float = 3.0, batch: int = 2, seed: int = 0):
    """gmm-digits-flow (float64): an Euler sample and its RF-Solver (midpoint) inversion, each step recorded."""
    from .inversion import invert
    from .sampling import noise, sample

    model = _model("gmm-digits-flow")
    cond = torch.arange(batch) % model.num_classes
    z = noise(model, batch, seed=seed, dtype=torch.float64)
    ref = sample(model, z, steps, "euler", guidance, cond)
    inv = invert(model, ref.final, steps, "euler", "rf-solver", guidance, cond)
    return model, cond, inv


def _v_fn(model, cond, guidance: float) -> Callable:
    """v_fn(x, sigma): the guided velocity eps - x0 at state x, the network fed sigma's own label."""
    T = model.schedule.num_train_timesteps

    def v_fn(x: torch.Tensor, sigma: float) -> torch.Tensor:
        out = model.eps(x, sigma * T, model.check_cond(cond, x.shape[0], x), guidance)
        return out.eps - out.x0

    return v_fn


@_checked("midpoint (RF-Solver) inversion step", "my_midpoint_step")
def check_midpoint_step(fn: Callable) -> None:
    """``fn(v_fn, x, cur, nxt) -> x_next``: one explicit-midpoint step of dx/dsigma = v from level ``cur``
    up to the noisier ``nxt`` (``v_fn(x, sigma)`` is the guided velocity). Compared with every step of
    ``invlab.invert(method="rf-solver")`` on gmm-digits-flow (6 steps, w = 3)."""
    model, cond, inv = _flow_run()
    v_fn = _v_fn(model, cond, 3.0)
    for k, r in enumerate(inv.records):
        cur, nxt = inv.levels[k], inv.levels[k + 1]
        x = r.x_cur
        got = _call(fn, v_fn, x.clone(), cur, nxt)
        d = nxt.sigma - cur.sigma
        v0 = v_fn(x, cur.sigma)
        hints = [
            ("that is one Euler step x + Delta v(x, sigma_cur); the midpoint rule evaluates v a second time, at "
             "x + Delta/2 v(x, sigma_cur) and sigma_cur + Delta/2, and steps with that velocity", x + d * v0),
            ("the second velocity was evaluated at the midpoint state but with sigma_cur's label; the midpoint "
             "sits at sigma_cur + Delta/2", lambda: x + d * v_fn(x + d / 2 * v0, cur.sigma)),
            ("you stepped to the midpoint only (Delta/2); the full step moves by Delta with the midpoint velocity",
             lambda: x + d / 2 * v_fn(x + d / 2 * v0, cur.sigma + d / 2)),
            ("a sign: inversion moves towards noise, Delta = sigma_nxt - sigma_cur > 0",
             lambda: x - d * v_fn(x - d / 2 * v0, cur.sigma - d / 2)),
        ]
        _compare(got, r.x_next, f"step {k} (sigma {cur.sigma:.3f} -> {nxt.sigma:.3f})", hints)


# ------------------------------------------------------------------ 13: the guidance a traced step used


@functools.lru_cache(maxsize=None)
def _guided_steps(guidance: float = 3.7, steps: int = 6, batch: int = 2, seed: int = 0):
    """gmm-digits (float64): the DDIM sampling steps of one run at ``guidance``, as (x, x_next, eps_u, eps_c)."""
    from .sampling import noise
    from .steps import ddim_step, x0_from_eps

    model = _model("gmm-digits")
    cond = torch.arange(batch) % model.num_classes
    x = noise(model, batch, seed=seed, dtype=torch.float64)
    levels = model.schedule.grid(steps).levels
    out = []
    for s, t in zip(levels, levels[1:]):
        o = model.eps(x, s.label, model.check_cond(cond, batch, x), guidance)
        x_next = ddim_step(x0_from_eps(x, o.eps, s), o.eps, t)
        out.append((x, x_next, o.eps_uncond, o.eps_cond))
        x = x_next
    return tuple(out)


@_checked("the guidance a traced step used", "my_traced_guidance")
def check_traced_guidance(fn: Callable) -> None:
    """``fn(x, x_next, eps_u, eps_c) -> float``: the guidance scale w of one recorded step, from the state
    before and after it and the network's two outputs, by fitting x_next = A x + B eps_u + C (eps_c - eps_u)
    over all entries (least squares): w = C / B. Compared on every step of a gmm-digits DDIM run at w = 3.7."""
    steps = _guided_steps()
    for k, (x, x_next, eps_u, eps_c) in enumerate(steps):
        got = _call(fn, x.clone(), x_next.clone(), eps_u.clone(), eps_c.clone())
        if isinstance(got, torch.Tensor):
            if got.numel() != 1:
                raise _Verdict("wrong", f"step {k}: return one number for the step (got shape {tuple(got.shape)}); "
                                        "fit A, B, C over all entries of the batch together")
            got = float(got)
        if not isinstance(got, (int, float)):
            raise _Verdict("wrong", f"step {k}: return a number (got {type(got).__name__})")
        X = torch.stack([x.flatten(), eps_u.flatten(), (eps_c - eps_u).flatten()], 1)
        A, B, C = torch.linalg.lstsq(X, x_next.flatten()[:, None]).solution.flatten().tolist()
        X2 = torch.stack([x.flatten(), eps_u.flatten(), eps_c.flatten()], 1)
        _, B2, C2 = torch.linalg.lstsq(X2, x_next.flatten()[:, None]).solution.flatten().tolist()
        want = C / B
        if abs(got - want) <= 1e-6 * abs(want):
            continue
        for value, hint in ((C, "that is C, the coefficient of (eps_c - eps_u): it is B * w, so divide by B"),
                            (B / C, "that is B / C: the guidance is C / B"),
                            (C2 / B2, "with eps_u and eps_c as separate columns the coefficients are B (1 - w) and "
                                      "B w; regress on eps_u and the difference eps_c - eps_u instead")):
            if abs(got - value) <= 1e-6 * max(abs(value), 1e-12):
                raise _Verdict("wrong", f"step {k}: {hint}")
        raise _Verdict("wrong", f"step {k}: got {got:.6g}, the step used w = {want:.6g}; fit x_next on the three "
                                "columns x, eps_u, eps_c - eps_u (torch.linalg.lstsq) and return C / B")


# ------------------------------------------------------------------ 12: the Tree-Ring score
@_checked("the Tree-Ring detection score", "my_ring_distance")
def check_ring_distance(fn: Callable) -> None:
    """``fn(z, key_values, mask) -> (B,)``: per sample, the mean over the mask of |F(z) - K|, where F is the
    centred (fftshifted) 2-D FFT over the last two axes. Compared with ``invlab.watermark.distance`` on
    watermarked and clean gmm-digits noises and on a 4-channel latent with its key on channel 0."""
    from . import watermark as wm

    gen = torch.Generator().manual_seed(12)
    for shape in ((1, 16, 16), (4, 16, 16)):
        key = wm.ring_key(shape)
        z = torch.randn((3, *shape), generator=gen, dtype=torch.float64)
        z = torch.cat([z, wm.inject(z, key)])
        want = wm.distance(z, key)
        got = _call(fn, z.clone(), key.values.clone(), key.mask.clone())
        m = key.mask
        f_plain = torch.fft.fft2(z)
        hints = [
            ("the spectrum must be centred: apply torch.fft.fftshift over the last two axes (dim=(-2, -1)) after "
             "fft2, so that the key's rings sit around the middle",
             lambda: ((f_plain - key.values).abs() * m).flatten(1).sum(1) / m.sum()),
            ("that is the sum over the mask; take the mean (divide by mask.sum())",
             lambda: ((wm.spectrum(z) - key.values).abs() * m).flatten(1).sum(1)),
            ("that averages over every frequency; average over the mask's entries only",
             lambda: ((wm.spectrum(z) - key.values).abs() * m).flatten(1).mean(1)),
            ("the distance is complex: take the modulus of the complex difference, not of its real part",
             lambda: ((wm.spectrum(z) - key.values).real.abs() * m).flatten(1).sum(1) / m.sum()),
        ]
        _compare(got, want, f"shape {shape}", hints, rtol=1e-9)
