"""Widget for the Kalman-view notebook: EasyInv's eta and window -> errors and gains per step."""

from __future__ import annotations

from typing import Any, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch

from ..inversion.easyinv import EasyInvOptions
from ..plots.core import series_styles
from .core import Cache, Explorer, check_range, check_object, float_slider, select_slider

__all__ = ["KalmanExplorer", "WINDOWS"]

#: window presets (lo, hi) as fractions of the N steps (EasyInv's default first)
WINDOWS = ((0.05, 0.25), (0.0, 0.5), (0.05, 0.5), (0.25, 0.75), (0.0, 1.0))


class KalmanExplorer(Explorer):
    """EasyInv with a constant gain, against naive inversion and the oracle gain on the same window.

    Controls: ``eta`` (weight on the prediction; K = 1 - eta) and ``window``. Results are cached
    per (eta, window) in ``cache`` (the oracle per window); sliders only re-plot.
    ``summary``: the constant-gain run's per-step errors followed by its final noise NMSE.
    """

    def __init__(self, model, z_T: torch.Tensor, steps: int = 50, guidance: float = 1.0, cond: Any = None,
                 windows: Sequence[tuple[float, float]] = WINDOWS, eta: float = 0.5):
        from ..models.base import Denoiser
        from ..studies.kalman import run_gains

        check_object("KalmanExplorer", "a model", model, Denoiser, "e.g. invlab.load_model('gmm-digits')")
        model.check_input(z_T, "z_T")
        check_range("eta", eta, 0.0, 1.0, float)  # before the (slow) runs below
        if isinstance(windows, (str, bytes)) or not windows:
            raise ValueError(f"windows must be a non-empty list of (lo, hi) fractions (got {windows!r}); "
                             f"e.g. {WINDOWS[:2]}")
        for win in windows:
            EasyInvOptions(window=win)  # each window checked before any compute
        self.cache = Cache()
        base = run_gains(model, z_T, steps, guidance, cond, runs={"naive": {"method": "naive"}})
        ref = base.reference
        naive_err = base.step_errors()["naive"]
        naive_final = base.noise_nmse()["naive"]
        labels = {f"{lo:g}-{hi:g}": (lo, hi) for lo, hi in windows}

        def oracle(win):
            return self.cache.get(("oracle", win), lambda: run_gains(
                model, z_T, steps, guidance, cond, window=win, reference=ref,
                runs={"oracle": {"method": "easyinv", "gain": "oracle"}}))

        def constant(e, win):
            return self.cache.get((e, win), lambda: run_gains(
                model, z_T, steps, guidance, cond, eta=e, window=win, reference=ref,
                runs={"eta": {"method": "easyinv", "gain": "constant"}}))

        def draw(eta, window):
            win = labels[window]
            e = round(float(eta), 4)
            c, o = constant(e, win), oracle(win)
            ce, oe = c.step_errors()["eta"], o.step_errors()["oracle"]
            cf, of = c.noise_nmse()["eta"], o.noise_nmse()["oracle"]
            fig, (a, b) = plt.subplots(1, 2, figsize=(10.5, 3.6))
            xs = np.arange(1, steps + 1)  # the course's numbering: inversion step k = 1..N from the clean end
            st = series_styles(["naive", "eta", "oracle"])
            a.semilogy(xs, naive_err.numpy(), label=f"naive ({naive_final:.3g})", **st["naive"])
            a.semilogy(xs, ce.numpy(), label=f"eta={e:g} ({cf:.3g})", **st["eta"])
            a.semilogy(xs, oe.numpy(), label=f"oracle ({of:.3g})", **st["oracle"])
            blend = [i + 1 for i in c.blend_steps()]  # loop index i -> inversion step k = i + 1
            a.axvspan(min(blend) - 0.5, max(blend) + 0.5, color="0.85", zorder=0)
            a.set_xlabel("inversion step k")
            a.set_ylabel("NMSE to the true latent")
            a.legend(fontsize=8, title="final noise NMSE", title_fontsize=8)
            a.grid(True, which="both", alpha=0.3)
            v = o.steps_view["oracle"]
            b.plot(blend, [e] * len(blend), "o-", ms=3, label=f"constant eta={e:g}", **st["eta"])
            b.plot(blend, v.eta[v.blended].numpy(), "o-", ms=3, label="oracle eta*", **st["oracle"])
            b.axhline(1.0, color="k", lw=0.8, ls=":")
            b.set_xlabel("inversion step k")
            b.set_ylabel("eta (K = 1 - eta)")
            b.legend(fontsize=8)
            b.grid(alpha=0.3)
            fig.suptitle(f"window {window}: blended steps k = {min(blend)}..{max(blend)} "
                         f"({getattr(model, 'name', model)}, {steps} steps, w = {guidance:g})", fontsize=10)
            fig.tight_layout()
            return fig, np.concatenate([ce.numpy(), [cf]])

        controls = {"eta": float_slider("eta", eta, 0.0, 1.0, 0.1),
                    "window": select_slider("window", list(labels))}
        super().__init__(controls, draw, title="EasyInv's constant gain vs the oracle")
