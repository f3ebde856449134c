"""EasyInv read as a Kalman filter: prediction, measurement, gain and innovation per step.

For one inversion step from the known latent ``y = x_cur`` to the next (noisier) level::

    prediction   x_bar = naive DDIM inversion step from y        (what the network extrapolates)
    measurement  y     = the previous latent                     (H = I)
    innovation   nu    = y - x_bar                               (= minus the naive step)
    update       x_new = x_bar + K nu,      K = 1 - eta          (EasyInv: x_new = eta x_bar + (1 - eta) y)

Convention: K is the gain on the *measurement* (the previous latent); eta the weight on the
prediction. Outside EasyInv's window eta = 1 (K = 0): the step is plain naive inversion.

Everything is checked against the truth: the images come from ``invlab.sample``, so the true
latent at every level is known, and so is the least-squares "oracle" weight at every step,
``eta* = <x_true - y, x_bar - y> / ||x_bar - y||^2`` (per sample; the same formula invlab's
``gain="oracle"`` uses).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from ..inversion import invert
from ..metrics import nmse
from ..sampling import sample
from ..steps import ddim_step, x0_from_eps
from ..trace import Recorder, Trajectory
from .errors import Comparison

__all__ = ["GAIN_RUNS", "GainStudy", "KalmanSteps", "kalman_steps", "oracle_eta", "run_gains"]

#: display name -> invert() keywords (eta/window are filled in by :func:`run_gains`)
GAIN_RUNS: dict[str, dict[str, Any]] = {
    "naive": {"method": "naive"},
    "eta=0.5": {"method": "easyinv", "gain": "constant"},
    "oracle": {"method": "easyinv", "gain": "oracle"},
    "adaptive": {"method": "easyinv", "gain": "adaptive"},
}


def _dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a.double() * b.double()).flatten(1).sum(1)


def oracle_eta(prediction: torch.Tensor, measurement: torch.Tensor, truth: torch.Tensor) -> torch.Tensor:
    """Per-sample least-squares weight on the prediction: argmin_eta ||eta x_bar + (1-eta) y - x_true||."""
    d = prediction.double() - measurement.double()
    return _dot(truth.double() - measurement.double(), d) / _dot(d, d).clamp_min(1e-300)


@dataclass
class KalmanSteps:
    """Per-step Kalman quantities of one inversion run (arrays of length ``steps``; batch means).

    eta / gain: the weight used on the prediction / the gain K = 1 - eta on the measurement;
    blended: whether the step was blended; pred_error / meas_error / post_error: NMSE of the
    prediction, the measurement and the blended output against the true latent at the step's
    target level; innovation: ||nu|| / ||x_bar|| (relative size); oracle_eta / oracle_error: the
    least-squares weight from this run's own state and the error it would have given.
    """

    name: str
    labels: list[float]
    eta: torch.Tensor
    gain: torch.Tensor
    blended: torch.Tensor
    pred_error: torch.Tensor
    meas_error: torch.Tensor
    post_error: torch.Tensor
    innovation: torch.Tensor
    oracle_eta: torch.Tensor
    oracle_error: torch.Tensor
    eta_per_sample: torch.Tensor = field(repr=False, default=None)


def kalman_steps(run: Trajectory, reference: Trajectory, name: str = "") -> KalmanSteps:
    """Recompute prediction, measurement and innovation of every step of ``run`` (an inversion
    recorded with ``x_cur``, ``eps`` and ``x_next``) and score them against ``reference`` (the
    sampling run on the same grid). The prediction is recomputed from the recorded eps with the
    same arithmetic as naive inversion, so for an output-placement EasyInv run
    ``eta x_bar + (1 - eta) y`` reproduces ``x_next`` exactly."""
    truth = run.aligned(reference)
    etas, blended, pe, me, po, inn, oe, oerr = [], [], [], [], [], [], [], []
    for k, r in enumerate(run.records):
        if r.x_cur is None or r.eps is None or r.x_next is None:
            raise ValueError("the run must be recorded with Recorder(keys=('x_cur', 'x_next', 'eps'))")
        cur, nxt = run.levels[k], run.levels[k + 1]
        y = r.x_cur.double()
        x_bar = ddim_step(x0_from_eps(y, r.eps.double(), cur), r.eps.double(), nxt)
        x_true = truth[k + 1].double()
        b = y.shape[0]
        eta = torch.tensor(r.extras["eta"], dtype=torch.float64) if "eta" in r.extras else torch.ones(b, dtype=torch.float64)
        etas.append(eta)
        blended.append("eta" in r.extras)
        pe.append(nmse(x_bar, x_true))
        me.append(nmse(y, x_true))
        po.append(nmse(r.x_next.double(), x_true))
        nu = y - x_bar
        inn.append((_dot(nu, nu) / _dot(x_bar, x_bar)).sqrt().mean())
        e_star = oracle_eta(x_bar, y, x_true)
        oe.append(e_star)
        shape = (-1,) + (1,) * (y.dim() - 1)
        oerr.append(nmse(e_star.reshape(shape) * x_bar + (1 - e_star.reshape(shape)) * y, x_true))
    eta_ps = torch.stack(etas)
    return KalmanSteps(
        name=name, labels=[lv.label for lv in run.levels[1:]], eta=eta_ps.mean(1), gain=1 - eta_ps.mean(1),
        blended=torch.tensor(blended), pred_error=torch.stack(pe), meas_error=torch.stack(me),
        post_error=torch.stack(po), innovation=torch.stack(inn), oracle_eta=torch.stack(oe).mean(1),
        oracle_error=torch.stack(oerr), eta_per_sample=eta_ps,
    )


@dataclass
class GainStudy(Comparison):
    """The sampling run (truth) and one inversion per gain setting, with their Kalman views
    (``steps_view``); errors, NFE and re-sampling come from :class:`Comparison`."""

    steps_view: dict[str, KalmanSteps] = field(default_factory=dict)

    def nfe(self) -> dict[str, int]:
        return {k: t.nfe for k, t in self.runs.items()}

    def blend_steps(self) -> list[int]:
        return list(self.runs[next(k for k in self.runs if k != "naive")].config.get("blend_steps", []))

    def oracle_gains(self) -> torch.Tensor:
        """The oracle run's eta at its blended steps, per sample: (n_blended, B)."""
        v = self.steps_view["oracle"]
        return v.eta_per_sample[v.blended]


def run_gains(model, z_T: torch.Tensor, steps: int = 50, guidance: float = 1.0, cond: Any = None,
              eta: float = 0.5, window: tuple[float, float] = (0.05, 0.25),
              runs: dict[str, dict[str, Any]] | None = None, reference: Trajectory | None = None,
              show_progress: bool = False) -> GainStudy:
    """Sample from ``z_T`` with DDIM, then invert with naive inversion and EasyInv under several
    gains (constant ``eta``, oracle, adaptive) on the same ``window``; returns a :class:`GainStudy`.
    ``reference`` reuses an earlier sampling run from the same ``z_T`` (it must record x_next)."""
    runs = GAIN_RUNS if runs is None else runs
    ref = reference if reference is not None else sample(model, z_T, steps, "ddim", guidance, cond,
                                                          hooks=[Recorder(keys=("x_next",))])
    keep = [Recorder(keys=("x_cur", "x_next", "eps"))]
    items = list(runs.items())
    if show_progress:
        from tqdm.auto import tqdm

        items = tqdm(items, desc="gains", leave=False)
    out, views = {}, {}
    for name, kw in items:
        kw = dict(kw)
        if kw.get("method") == "easyinv":
            kw.setdefault("eta", eta)
            kw.setdefault("window", tuple(window))
            if kw.get("gain") == "oracle":
                kw["reference"] = ref
        out[name] = invert(model, ref.final, steps, "ddim", guidance=guidance, cond=cond, hooks=keep, **kw)
        views[name] = kalman_steps(out[name], ref, name)
    settings = {"model": model, "steps": steps, "solver": "ddim", "guidance": guidance, "cond": cond, "eta": eta,
                "window": tuple(window)}
    return GainStudy(z_T=z_T, reference=ref, runs=out, settings=settings, steps_view=views)
