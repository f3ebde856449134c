"""The exact-by-construction widget: a solver, its mixing constant, a dtype and a step count."""

from __future__ import annotations

import textwrap
from typing import Any, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch

from .core import Cache, Explorer, dropdown, float_slider, select_slider

__all__ = ["ReversibleExplorer"]


class ReversibleExplorer(Explorer):
    """Invert the images ``x`` with EDICT / BDIA / BELM and regenerate them, for a chosen mixing
    constant (EDICT's p or BDIA's gamma; BELM has none), dtype and step count.

    Shows the input, the reconstruction, the absolute difference (log colour scale shared by every
    setting, so two settings can be compared) and the recovered noise, with the max round-trip
    error in absolute terms and in units of the dtype's round-off, the recovered noise's standard
    deviation and the NFE. Each setting is computed once (cached). ``summary``: [max error,
    error / u, std of the recovered noise] (inf where a non-finite value stopped the run).
    """

    def __init__(self, model, x: torch.Tensor, steps: Sequence[int] = (10, 20, 50, 100), guidance: float = 1.0,
                 cond: Any = None, mixing: float = 0.93, dtypes: Sequence[str] = ("float64", "float32", "float16"),
                 solver: str = "edict", index: int = 0):
        from ..reversible import REVERSIBLE
        from ..studies.reversible import DTYPES

        if not isinstance(x, torch.Tensor) or x.dim() < 2:
            raise TypeError(f"x must be a batch of model inputs (B, ...); got {type(x).__name__}")
        if not 0 <= index < x.shape[0]:
            raise ValueError(f"index={index} is out of range for a batch of {x.shape[0]}")
        bad = [d for d in dtypes if d not in DTYPES]
        if bad:
            raise ValueError(f"dtypes {bad} are not among {sorted(DTYPES)}")
        self.cache = Cache()
        x1 = x[index:index + 1]
        c1 = cond[index:index + 1] if isinstance(cond, torch.Tensor) and cond.dim() > 0 else cond
        steps = [int(s) for s in steps]

        def run(solver, mixing, dtype, n):
            from ..inversion import invert
            from ..reconstruct import reconstruct
            from ..trace import NonFiniteError, Recorder

            opts = {"p": mixing} if solver == "edict" else ({"gamma": mixing} if solver == "bdia" else {})
            xi = x1.to(DTYPES[dtype])
            try:
                inv = invert(model, xi, n, solver, guidance=guidance, cond=c1, hooks=[Recorder(keys=())], **opts)
                rec = reconstruct(model, inv, hooks=[Recorder(keys=())])
            except NonFiniteError as exc:
                return {"error": str(exc).splitlines()[0]}
            err = (rec.final.double() - xi.double()).abs()
            return {"rec": rec.final.double(), "diff": err, "z": inv.final.double(), "max": err.max().item(),
                    "u": torch.finfo(DTYPES[dtype]).eps / 2, "std": inv.final.double().std().item(),
                    "nfe": inv.nfe}

        def draw(solver, mixing, dtype, steps):
            r = self.cache.get((solver, round(float(mixing), 4), dtype, steps),
                               lambda: run(solver, float(mixing), dtype, steps))
            const = f"p = {mixing:.2f}" if solver == "edict" else (f"gamma = {mixing:.2f}" if solver == "bdia" else
                                                                    "(no constant)")
            fig, axes = plt.subplots(1, 4, figsize=(10, 2.9))
            img = x1.double()
            if getattr(model, "is_latent", False):
                img = model.decode(x1.float()).double()
            axes[0].imshow(img[0, 0].numpy(), cmap="gray", vmin=-1, vmax=1)
            axes[0].set_title("input", fontsize=9)
            if "error" in r:
                for ax in axes[1:]:
                    ax.axis("off")
                msg = "\n".join(textwrap.wrap("stopped: " + r["error"], 48)[:4])
                axes[2].text(0.5, 0.5, msg, ha="center", va="center", fontsize=8, transform=axes[2].transAxes)
                summary = [np.inf, np.inf, np.inf]
            else:
                axes[1].imshow(r["rec"][0, 0].numpy(), cmap="gray", vmin=-1, vmax=1)
                axes[1].set_title("reconstruction", fontsize=9)
                d = np.log10(np.maximum(r["diff"][0, 0].numpy(), 1e-17))
                im = axes[2].imshow(d, cmap="magma", vmin=-17, vmax=1)
                fig.colorbar(im, ax=axes[2], fraction=0.046, label="log10 |difference|")
                axes[2].set_title(f"max {r['max']:.1e} = {r['max'] / r['u']:.1e} u", fontsize=9)
                axes[3].imshow(r["z"][0, 0].numpy(), cmap="RdBu_r", vmin=-3, vmax=3)
                axes[3].set_title(f"recovered noise, std {r['std']:.2g}", fontsize=9)
                summary = [r["max"], r["max"] / r["u"], r["std"]]
            for ax in axes:
                ax.set_xticks([])
                ax.set_yticks([])
            nfe = "" if "error" in r else f", {r['nfe']} NFE"
            fig.suptitle(f"{model.name}: {solver} {const}, {dtype}, {steps} steps, w = {guidance:g}{nfe}", fontsize=10)
            fig.tight_layout()
            return fig, summary

        controls = {
            "solver": dropdown("solver", list(REVERSIBLE), solver),
            "mixing": float_slider("p / gamma", mixing, 0.5, 1.0, 0.01),
            "dtype": dropdown("dtype", list(dtypes), dtypes[0]),
            "steps": select_slider("steps", steps, steps[0]),
        }
        super().__init__(controls, draw, title="exact by construction: round trip of one image")
