"""Newton inversion: GNRI (Samuel et al., "Lightning-Fast Image Inversion and Editing for
Text-to-Image Diffusion Models", ICLR 2025; earlier RNRI) — the paper's Newton step and the
released code's sign step.

**The equation.** Each DDIM sampling step nxt -> cur (nxt the noisier level) is inverted by
solving exact inversion's implicit equation for the unknown z at nxt:

    Phi(z) = alpha_cur (z - sigma_nxt e(z)) / alpha_nxt + sigma_cur e(z),  e(z) = eps_theta(z, nxt)
    r(z)   = Phi(z) - x_cur = 0.

The paper writes the residual as z - f(z) with f(z) = InvStep(x_cur; e(z)); for a DDIM grid
f(z) - z = -(alpha_nxt / alpha_cur) r(z) (see ``fixed_point.py``): the same roots, and since a
Newton step is unchanged when the residual is scaled by a constant, the same iterates. We use
r = Phi - x_cur so that residuals and tolerances read exactly as ``method="exact"``'s.

**Newton (default, ``update="newton"``).** From z_0 = the naive step,

    z_{k+1} = z_k - d_k,   J(z_k) d_k = r(z_k),   J = dPhi/dz = (alpha_cur/alpha_nxt) I
                                                      + (sigma_cur - alpha_cur sigma_nxt/alpha_nxt) de/dz.

J is never formed: d_k comes from GMRES (restart-free, zero start, per-sample Arnoldi with
modified Gram-Schmidt), whose every iteration is one Jacobian-vector product ``torch.func.jvp``
through the network (forward-mode AD; one network pass carrying a tangent). GMRES rather than
CG on the normal equations: J is not symmetric, and CGNR would need a JVP and a VJP per
iteration and square J's condition number. GMRES stops at a relative residual
``krylov_tol`` or after ``krylov_iters`` products. The paper's guidance term lambda G(z) is left
out: with lambda > 0 the minimiser is not a root of r (reviewers' point, peers2.md §1.3), and
here we want the root.

**Released code (``preset="reference"``, ``update="sign"``).** dvirsamuel/NewtonRaphsonInversion
runs the network under ``no_grad``, so its "Newton" derivative is -sign(f - z) and the update is
a step of uniform size along sign(f(z) - z) (peers2.md §1.4, pitfalls.md "GNRI"), per sample:

    r_k   = f(z_k) - z_k                       (f(z) = InvStep(x_cur; eps_theta(z, nxt)))
    F_k   = mean|r_k| + alpha_p mean 1/2 ((f(z_k) - alpha_nxt x_0) / sigma_nxt)^2
    z_{k+1} = z_k + F_k sign(r_k),             z_0 = x_cur (so f(z_0) is the naive step)

for k = 0 .. max_iter-1 (2 in the code, alpha_p = 0.1); the step returns the candidate f(z_k)
with the lowest F_k. The prior is q(z_nxt | x_0) of the clean sample being inverted (the code's
Euler form (x - z_0)/sigma written in VP coordinates): it enters the score and the step size,
never the direction. The code's scheduler is Euler-ancestral with frozen noise on SDXL-Turbo;
here the step is the deterministic DDIM inverse in VP coordinates. Cost: max_iter NFE per step,
no backward pass. Differences: where a residual coordinate is exactly 0 the code divides by
abs'(0) = 0 (an inf candidate, then rejected by the score); here sign(0) = 0 leaves it in place.

DPM-Solver++(2M) grids are refused (their second-order steps are a different equation; use
``method="exact"``, whose Algorithm 2 solves them).

Records: ``residual`` is the accepted iterate's RMS residual (Newton: of Phi - x_cur; sign: of
f - z). ``extras``: ``inner_residuals`` (one per residual evaluation), ``converged``,
``diverged``, ``stop_reason``, ``iterations`` (Newton or sign updates taken), ``tol``,
``nfe_init``, ``phi_evals`` (residual evaluations), ``jvp_passes`` (Jacobian-vector products),
``krylov_iterations`` and ``krylov_residuals`` (per Newton update; relative), ``jvp_mode``
("forward", or "double-backward" on networks whose kernels lack forward-mode AD, e.g. the
diffusers UNets on CPU: then each JVP also costs two backward passes, ``backward_passes``), and for "sign"
``scores`` and ``step_sizes``. The model's NFE counter counts every network pass, tangent-carrying
ones included: ``record.nfe = nfe_init + phi_evals + jvp_passes``.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass

import torch

from ..checks import check_choice, check_int, check_number
from ..loop import Runner, Setup, progress
from ..steps import ddim_step, x0_from_eps
from .exact import _naive, warn_unconverged
from .presets import fill_from_reference
from .solvers import DEFAULT_TOL, coarser_dtype

UPDATES = ("newton", "sign")
INITS = ("reuse", "naive")


@dataclass
class NewtonOptions:
    """Options of Newton inversion (GNRI).

    update: "newton" (default: Newton-GMRES on Phi(z) = x_cur with autograd JVPs) or "sign"
        (the released code's uniform sign step; see the module docstring).
    max_iter: "newton": most Newton updates per step (default 10); "sign": number of candidates
        f(z_0..z_{n-1}) (reference 2).
    tol: RMS tolerance on the residual per sample; None picks ``DEFAULT_TOL`` for the dtype.
        "sign" never stops early (as the code); its ``converged`` flag compares with tol.
    krylov_iters: most GMRES iterations (= JVPs) per Newton update (default 8).
    krylov_tol: GMRES's relative residual target (default 1e-4: Newton's error contracts by
        about this factor per update, far below what quadratic convergence needs near the root).
    init: "newton": "reuse" (default: a naive step with the previous step's eps at the known
        state, 0 NFE) or "naive" (1 NFE). "sign" always starts at z_0 = x_cur.
    prior_weight: "sign": alpha_p, the Gaussian prior's weight in score and step size (ref. 0.1).
    divergence_patience: "newton": stop after the residual grew this many updates in a row.
    preset: "reference" sets every field left at its default to the released code's value
        (update "sign", 2 candidates, alpha_p 0.1).
    """

    update: str = "newton"
    max_iter: int = 10
    tol: float | None = None
    krylov_iters: int = 8
    krylov_tol: float = 1e-4
    init: str = "reuse"
    prior_weight: float = 0.0
    divergence_patience: int = 3
    preset: str | None = None

    def __post_init__(self):
        check_choice("preset", self.preset, (None, "reference"))
        if self.preset == "reference":  # every field still at its default takes the reference value
            fill_from_reference(self, NewtonOptions.reference())
        check_choice("update", self.update, UPDATES)
        check_choice("init", self.init, INITS)
        check_int("max_iter", self.max_iter, 1, 10)
        check_int("krylov_iters", self.krylov_iters, 1, 8)
        check_int("divergence_patience", self.divergence_patience, 1, 3)
        if self.tol is not None and not check_number("tol", self.tol, "None picks a default for the dtype") > 0:
            raise ValueError(f"tol must be > 0 (got {self.tol}); None picks a default for the dtype")
        if not 0 < check_number("krylov_tol", self.krylov_tol, "e.g. krylov_tol=1e-4") < 1:
            raise ValueError(f"krylov_tol must be in (0, 1) (got {self.krylov_tol}); e.g. krylov_tol=1e-4")
        if not check_number("prior_weight", self.prior_weight, "e.g. prior_weight=0.1") >= 0:
            raise ValueError(f"prior_weight must be >= 0 (got {self.prior_weight})")

    @staticmethod
    def reference() -> "NewtonOptions":
        """The released code's values: sign update, n_iters = 2 candidates, alpha = 0.1."""
        return NewtonOptions(update="sign", max_iter=2, prior_weight=0.1, init="naive")


def _rms(r: torch.Tensor) -> torch.Tensor:
    return r.detach().reshape(r.shape[0], -1).double().pow(2).mean(1).sqrt()


def gmres(matvec, b: torch.Tensor, iters: int, rtol: float) -> tuple[torch.Tensor, int, float]:
    """Solve A d = b per sample (rows of the batch are independent systems) from d = 0 by GMRES.
    Returns (d, matvecs used, worst relative residual). Least squares in float64."""
    B = b.shape[0]
    flat = lambda v: v.reshape(B, -1).double()  # noqa: E731
    beta = flat(b).norm(dim=1)                                        # (B,)
    safe = torch.where(beta > 0, beta, torch.ones_like(beta))
    V = [flat(b) / safe[:, None]]
    H = torch.zeros(B, iters + 1, iters, dtype=torch.float64, device=b.device)
    y, rel, k = None, 0.0, 0
    for k in range(1, iters + 1):
        w = flat(matvec(V[-1].reshape(b.shape).to(b.dtype)))
        for i, v in enumerate(V):                                     # modified Gram-Schmidt
            H[:, i, k - 1] = (w * v).sum(1)
            w = w - H[:, i, k - 1, None] * v
        H[:, k, k - 1] = w.norm(dim=1)
        V.append(w / torch.where(H[:, k, k - 1] > 0, H[:, k, k - 1], torch.ones_like(beta))[:, None])
        rhs = torch.zeros(B, k + 1, 1, dtype=torch.float64, device=b.device)
        rhs[:, 0, 0] = beta
        Hk = H[:, : k + 1, :k]
        y = torch.linalg.lstsq(Hk, rhs).solution                       # (B, k, 1)
        rel = float(((Hk @ y - rhs).norm(dim=(1, 2)) / safe).max())
        if rel < rtol:
            break
    d = (torch.stack(V[:k], -1) @ y).squeeze(-1)                       # (B, d)
    return d.reshape(b.shape).to(b.dtype), k, rel


def invert_newton(setup: Setup, hooks, opts: NewtonOptions, check_finite: bool = True, show_progress: bool = False):
    grid = setup.grid
    if any(o != 1 for o in grid.orders):
        raise ValueError(f"method='newton' inverts first-order (DDIM) steps only; the {setup.solver!r} grid has "
                         "second-order steps. Use solver='ddim', or method='exact' (its Algorithm 2 solves "
                         "DPM-Solver++(2M) steps).")
    levels = list(reversed(grid.levels))
    n = setup.steps
    run = Runner(setup, hooks, {"direction": "invert", "method": "newton", "label": "own", "update": opts.update,
                                "init": opts.init, "preset": opts.preset}, levels, check_finite)
    tol = opts.tol if opts.tol is not None else DEFAULT_TOL.get(
        coarser_dtype(setup.x.dtype, getattr(setup.model, "dtype", None)), 1e-6)
    x = setup.x
    cached_eps = None
    with run.guard(), torch.no_grad():
        for i in progress(range(n), show_progress, f"invert newton/{opts.update}"):
            cur, nxt = levels[i], levels[i + 1]          # known level cur, unknown (noisier) nxt
            st = run.begin(i, nxt.label)
            st["x_cur"] = x
            step = _sign_step if opts.update == "sign" else _newton_step
            z, out, extras = step(setup, x, cur, nxt, opts, tol, cached_eps)
            st["eps"], st["eps_cond"], st["eps_uncond"] = out.eps, out.eps_cond, out.eps_uncond
            st["x0_hat"] = x0_from_eps(z, out.eps, nxt) if opts.update == "newton" else \
                x0_from_eps(x, out.eps, cur)
            cached_eps = out.eps
            residual = extras.pop("_residual")
            x = run.finish(st, z, residual=residual, extras=extras)
    traj = run.trajectory(x)
    advice = ("The reference preset takes a fixed number of sign steps and stops unconverged by design; "
              "update='newton' solves each step." if opts.update == "sign" else None)
    warn_unconverged(traj, advice=advice)
    return traj


#: per model: how its JVPs are computed ("forward", or "double-backward" once forward mode failed on it)
_JVP_MODES: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def _jvp(f, z, v, modes):
    """J(z) v of ``f``. Forward mode (``torch.func.jvp``: one pass carrying the tangent) where the
    network supports it; some kernels do not (fused attention, and group_norm on the strided
    tensors that attention returns, inside diffusers UNets on CPU: NotImplementedError /
    RuntimeError), and then the double-backward identity J v = d/du [(J^T u) . v] is used for the
    rest of the run (one pass with graph, two backward passes, counted in ``backward_passes``;
    the same product up to rounding)."""
    if modes["mode"] == "forward":
        try:
            with torch.enable_grad(), _forward_ad_attention():
                return torch.func.jvp(f, (z,), (v,))[1]
        except (NotImplementedError, RuntimeError):
            modes["mode"] = "double-backward"
    with torch.enable_grad(), _forward_ad_attention():  # the fused kernels have no double backward either
        y = z.detach().requires_grad_(True)
        out = f(y)
        u = torch.zeros_like(out, requires_grad=True)
        (g,) = torch.autograd.grad(out, y, u, create_graph=True)       # J^T u, linear in u
        (jv,) = torch.autograd.grad(g, u, v.to(g.dtype))                # d/du (J^T u . v) = J v
    modes["backward_passes"] += 2
    return jv.detach()


def _forward_ad_attention():
    """Attention kernels that support forward-mode AD: the fused CPU / flash / memory-efficient
    scaled-dot-product kernels do not (NotImplementedError inside any UNet with attention), the
    plain "math" one does (the same result up to rounding). A no-op for networks without attention."""
    try:
        from torch.nn.attention import SDPBackend, sdpa_kernel
    except ImportError:  # an old torch: nothing to select
        import contextlib

        return contextlib.nullcontext()
    return sdpa_kernel([SDPBackend.MATH])


def _newton_step(setup, x, cur, nxt, opts, tol, cached_eps):
    """Newton-GMRES on r(z) = Phi(z) - x (module docstring); returns (z*, eps output at z*, extras)."""
    model = setup.model
    nfe0 = model.nfe
    z = _naive(setup, x, cur, nxt, cached_eps if opts.init == "reuse" else None)
    nfe_init = model.nfe - nfe0

    def phi(y):
        out = setup.eps(y, nxt.label)
        return ddim_step(x0_from_eps(y, out.eps, nxt), out.eps, cur), out

    def jvp(v):  # J(z) v: one network pass carrying the tangent v (or, see _jvp, two backward passes)
        return _jvp(lambda y: phi(y)[0], z, v, modes)

    modes = _JVP_MODES.setdefault(model, {"mode": "forward", "backward_passes": 0})
    modes["backward_passes"] = 0
    residuals, k_iters, k_res = [], [], []
    best = (float("inf"), None, None, 0)
    grows, stop, jvps, diverged = 0, "max_iter", 0, False
    for k in range(opts.max_iter + 1):
        val, out = phi(z)
        r = val - x
        err = float(_rms(r).max())
        residuals.append(err)
        if not torch.isfinite(r).all():
            stop, diverged = "non-finite residual", True
            break
        if err < best[0] or best[1] is None:
            best = (err, z, out, k)
        if err < tol:
            stop = "converged"
            break
        grows = grows + 1 if k and err > residuals[-2] else 0
        if grows >= opts.divergence_patience:
            stop, diverged = "residual grew", True
            break
        if k == opts.max_iter:
            break
        d, used, rel = gmres(jvp, r, opts.krylov_iters, opts.krylov_tol)
        jvps += used
        k_iters.append(used)
        k_res.append(rel)
        z = z - d
    err, z_best, out, _ = best
    extras = dict(tol=tol, inner_residuals=residuals, converged=err < tol, diverged=diverged, stop_reason=stop,
                  iterations=len(k_iters), nfe_init=nfe_init, phi_evals=len(residuals), jvp_passes=jvps,
                  krylov_iterations=k_iters, krylov_residuals=k_res, jvp_mode=modes["mode"],
                  backward_passes=modes["backward_passes"], _residual=err)
    return z_best, out, extras


def _sign_step(setup, x, cur, nxt, opts, tol, cached_eps):
    """The released code's loop (module docstring): candidates f(z_k), uniform sign steps."""
    B = x.shape[0]
    view = (B,) + (1,) * (x.dim() - 1)
    mu = nxt.alpha * setup.x                          # mean of q(z_nxt | x_0), x_0 the clean input
    z = x
    residuals, scores, sizes, per_sample = [], [], [], []
    best = None
    for k in range(opts.max_iter):
        out = setup.eps(z, nxt.label)
        f = ddim_step(x0_from_eps(x, out.eps, cur), out.eps, nxt)     # f(z) = InvStep(x_cur; eps(z))
        r = f - z
        prior = 0.5 * ((f - mu) / nxt.sigma).reshape(B, -1).pow(2).mean(1)
        score = r.reshape(B, -1).abs().mean(1) + opts.prior_weight * prior   # F_k per sample (= step size)
        per_sample.append(_rms(r))
        residuals.append(float(per_sample[-1].max()))
        scores.append(score.double().tolist())
        if best is None:
            best = (score, f, out, torch.zeros(B, dtype=torch.long))
        else:
            take = score < best[0]                                            # NaN never wins
            m = take.reshape(view)
            best = (torch.where(take, score, best[0]), torch.where(m, f, best[1]),
                    _where_out(take, out, best[2]), torch.where(take, k, best[3]))
        if k < opts.max_iter - 1:
            sizes.append(score.double().tolist())
            z = z + score.reshape(view).to(z.dtype) * torch.sign(r)
    _, f_best, out, kb = best
    # the recorded residual: the worst sample's, each at its own chosen candidate
    err = float(torch.stack(per_sample, 1).gather(1, kb[:, None].to(per_sample[0].device)).max())
    extras = dict(tol=tol, inner_residuals=residuals, converged=err < tol, diverged=False, stop_reason="max_iter",
                  iterations=len(sizes), nfe_init=0, phi_evals=len(residuals), jvp_passes=0, scores=scores,
                  step_sizes=sizes, chosen=kb.tolist(), _residual=err)
    return f_best, out, extras


def _where_out(take, new, old):
    m = take.reshape((-1,) + (1,) * (new.eps.dim() - 1))
    pick = lambda a, b: None if a is None else torch.where(m, a, b)  # noqa: E731
    return type(new)(pick(new.eps, old.eps), pick(new.eps_cond, old.eps_cond), pick(new.eps_uncond, old.eps_uncond))
