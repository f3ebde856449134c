"""EasyInv: blend each inverted latent with the previous one, inside a window of steps.

Paper rule (EasyInv, Algorithm 1), with z_cur known and z_next the naive inversion output::

    z_next <- eta * z_next + (1 - eta) * z_cur        for steps i with lo*N < i < hi*N

Kalman reading: the naive output is the *prediction* x_bar, the previous latent the
*measurement* y (H = I), and the update x_bar + K (y - x_bar) has gain K = 1 - eta on the
measurement (eta on the prediction). EasyInv's gain is a constant; invlab adds:

* ``gain="oracle"``: the least-squares optimal eta at each step given the ground-truth latent
  (from a sampling trajectory on the same grid): eta* = <x_true - y, x_bar - y> / ||x_bar - y||^2,
  per sample. It is the best any gain can do *at that step* (greedy), so it bounds what a
  constant or adaptive gain can achieve from the same state.
* ``gain="adaptive"``: an estimate of the oracle gain from quantities the inversion has (no
  ground truth, no extra NFE). In Kalman terms the gain on the measurement is
  K = Cov(x - x_bar, nu) / Var(nu), with innovation nu = y - x_bar; it reduces to the familiar
  P / (P + R) (prediction variance P, measurement variance R) when the two errors are
  independent -- which they are not here, since the measurement is the latent the prediction
  was made from. Along the innovation, eta = 1 - K = 1 + <e, d> / ||d||^2 with d = x_bar - y,
  the step, and e the prediction error. The naive step's error comes from taking eps one level
  early, so e ~ (sigma_next - alpha_next sigma_cur / alpha_cur) * (change of eps over one
  step), and the change of eps since the previous step (scaled by the ratio of step sizes in
  lambda) estimates it. The estimate drives eta above 1 when the naive step undershoots --
  which is what the oracle finds on the analytic models: the optimal "blend" extrapolates.

Two placements exist in the reference code, both here:

* ``placement="output"`` (paper's Algorithm 1, reference ``example.py``): blend the step's output;
  the next network call sees the blended latent.
* ``placement="input"`` (reference SD-1.4 notebook): predict eps from the unblended input u_i,
  then blend the input b_i = eta u_i + (1 - eta) b_{i-1} (b_{i-1} the previous step's blended
  input) and take the DDIM step from b_i with that eps.

Zero extra NFE: EasyInv is naive inversion plus an intervention hook (:class:`EasyInvBlend`),
which can also be added to any other per-step method through ``hooks=``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from ..checks import as_hook_list, check_choice, check_number
from ..trace import Intervention, Trajectory
from .naive import NaiveOptions, invert_naive

PLACEMENTS = ("output", "input")
GAINS = ("constant", "oracle", "adaptive")


@dataclass
class EasyInvOptions:
    """Options of EasyInv.

    eta: weight of the new latent, in [0, 1] (paper: 0.5 for SD-1.4, 0.8 for SDXL).
    window: (lo, hi) fractions of the N steps; step i is blended when lo*N < i < hi*N
        (strict, as the reference; default (0.05, 0.25) blends i = 3..12 of 50).
    placement: "output" (paper Algorithm 1, default) or "input" (reference notebook).
    gain: "constant" (eta), "oracle" (needs ``reference``) or "adaptive".
    reference: the sampling Trajectory on the same grid (ground truth), for gain="oracle".
    label: time-label convention of the underlying naive steps ("target" or "current").
    """

    eta: float = 0.5
    window: tuple[float, float] = (0.05, 0.25)
    placement: str = "output"
    gain: str = "constant"
    reference: Trajectory | None = None
    label: str = "target"

    def __post_init__(self):
        eta = check_number("eta", self.eta, "eta is the weight of the new latent, in [0, 1]; e.g. eta=0.5")
        if not (0.0 <= eta <= 1.0):
            raise ValueError(f"eta must be in [0, 1] (got {self.eta}); 1 means plain naive inversion")
        try:
            lo, hi = (check_number("window", v) for v in self.window)
        except (TypeError, ValueError):
            raise TypeError(f"window must be a pair (lo, hi) of fractions of the steps (got {self.window!r}); "
                            "e.g. window=(0.05, 0.25)") from None
        if not (0.0 <= lo < hi <= 1.0):
            raise ValueError(f"window must be (lo, hi) fractions with 0 <= lo < hi <= 1 (got {self.window})")
        check_choice("placement", self.placement, PLACEMENTS)
        check_choice("gain", self.gain, GAINS)
        if self.gain == "oracle" and self.reference is None:
            raise ValueError("gain='oracle' needs reference=<the sampling Trajectory on the same grid> (ground truth)")
        NaiveOptions(label=self.label)


def window_steps(window: tuple[float, float], steps: int) -> list[int]:
    """Indices i with lo*N < i < hi*N; raises if the window holds no step."""
    lo, hi = window
    idx = [i for i in range(steps) if lo * steps < i < hi * steps]
    if not idx:
        raise ValueError(f"the window {window} contains no step of a {steps}-step inversion; widen it")
    return idx


def _dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a * b).flatten(1).sum(1)


def _per_sample(g: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return g.reshape(-1, *([1] * (like.dim() - 1))).to(like.dtype)


class EasyInvBlend(Intervention):
    """The blend as an intervention hook; records the gain it used in ``extras["eta"]``.

    ``levels`` are the inversion's levels in loop order (for the adaptive gain's coefficients);
    ``truth`` the ground-truth latents at those levels (for the oracle gain).
    """

    def __init__(self, opts: EasyInvOptions, steps: int, levels=None, truth: torch.Tensor | None = None):
        self.opts = opts
        self.active = set(window_steps(opts.window, steps))
        self.stage = "step" if opts.placement == "output" else "eps"
        self.keys = frozenset({"x_next"} if opts.placement == "output" else {"x_cur"})
        self.levels, self.truth = levels, truth
        self._prev_input: torch.Tensor | None = None
        self._prev_eps: torch.Tensor | None = None

    def _gain(self, i: int, new: torch.Tensor, old: torch.Tensor, eps: torch.Tensor, truth_index: int):
        if self.opts.gain == "constant":
            return torch.full((new.shape[0],), float(self.opts.eta), dtype=torch.float64)
        d = (new - old).double()
        if self.opts.gain == "oracle":
            x_true = self.truth[truth_index].to(device=new.device, dtype=torch.float64)
            return (_dot(x_true - old.double(), d) / _dot(d, d).clamp_min(1e-300)).cpu()
        # adaptive: eta = 1 + <e_hat, d> / ||d||^2 with the prediction error estimated from the eps change
        if self._prev_eps is None:
            return torch.ones(new.shape[0], dtype=torch.float64)
        prv, cur, nxt = self.levels[max(i - 1, 0)], self.levels[i], self.levels[i + 1]
        sens = nxt.sigma - nxt.alpha * cur.sigma / cur.alpha
        ratio = (nxt.lam - cur.lam) / (cur.lam - prv.lam) if cur.lam != prv.lam else 1.0
        e_hat = sens * ratio * (eps.double() - self._prev_eps.double())
        return (1.0 + _dot(e_hat, d) / _dot(d, d).clamp_min(1e-300)).cpu()

    def __call__(self, index: int, t: dict[str, Any]):
        eps = t["eps"]
        out = None
        if self.opts.placement == "output":
            if index in self.active:
                new, old = t["x_next"], t["x_cur"]
                eta = self._gain(index, new, old, eps, index + 1)
                blended = _per_sample(eta, new).to(new.device) * new + (1 - _per_sample(eta, new).to(new.device)) * old
                out = {"x_next": blended, "extras": {"eta": eta.tolist()}}
        else:
            u = t["x_cur"]
            if index in self.active and self._prev_input is not None:
                eta = self._gain(index, u, self._prev_input, eps, index)
                e = _per_sample(eta, u).to(u.device)
                u = e * u + (1 - e) * self._prev_input
                out = {"x_cur": u, "extras": {"eta": eta.tolist()}}
            self._prev_input = u
        self._prev_eps = eps
        return out


def invert_easyinv(setup, hooks, opts: EasyInvOptions, check_finite: bool = True, show_progress: bool = False):
    levels = list(reversed(setup.grid.levels))
    if opts.gain == "oracle" and not isinstance(opts.reference, Trajectory):
        raise TypeError("reference must be the sampling Trajectory (from invlab.sample) on the same grid "
                        f"(got {type(opts.reference).__name__})")
    truth = opts.reference.latents().flip(0) if opts.gain == "oracle" else None
    if truth is not None:
        # the reference must be the sampling run on this grid: check levels line up
        ref_levels = list(reversed(opts.reference.levels))
        if len(ref_levels) != len(levels) or any(abs(a.alpha - b.alpha) > 1e-9 for a, b in zip(ref_levels, levels)):
            raise ValueError("reference must be the sampling Trajectory on the same grid (same steps and solver)")
    blend = EasyInvBlend(opts, setup.steps, levels, truth)
    traj = invert_naive(setup, [blend, *as_hook_list(hooks)], NaiveOptions(label=opts.label), check_finite,
                        show_progress)
    traj.config.update(method="easyinv", eta=opts.eta, window=list(opts.window), placement=opts.placement,
                       gain=opts.gain, blend_steps=sorted(blend.active))
    return traj
