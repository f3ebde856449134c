"""Negative-prompt inversion (NPI; Miyake, Iohara, Saito, Tanaka, arXiv 2305.16807).

Inversion is naive DDIM inversion with the source condition c and no guidance (w = 1):

    eps     = eps_theta(x_cur, label, c)
    x_next  = alpha_next (x_cur - sigma_cur eps) / alpha_cur + sigma_next eps

Reconstruction (``invlab.reconstruct``) samples from ``.final`` with the source condition as
CFG's *unconditional* ("negative") input at every step, eps_u' = eps_theta(x, label, c_src):

    eps = eps_u' + w (eps_c - eps_u')      (= eps_c on the source branch, whatever w)

so the source branch retraces the inversion's direction at zero extra NFE (the claim: the
null-text embedding that NTI optimises is close to the prompt embedding). An edit swaps
``cond`` at reconstruction and keeps c_src as the negative condition.

Reference (cure-lab/PnPInversion ``NegativePromptInversion``): the same, with the CFG batch of
2B rows run at every step; its optional ``npi_interp`` slerp of c toward the null embedding is
not implemented (its default, 0, is this method).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

from ..checks import check_choice
from ..loop import Setup
from ..models.base import check_guidance
from .naive import LABELS, NaiveOptions, invert_naive

PRESETS = (None, "reference")


@dataclass
class PivotOptions:
    """Options shared by the methods that invert a conditional pivot trajectory (NPI, DirectInversion)."""

    label: str = "target"
    inversion_guidance: float | None = 1.0
    preset: str | None = None

    def __post_init__(self):
        check_choice("preset", self.preset, PRESETS)
        check_choice("label", self.label, LABELS)
        if self.inversion_guidance is not None:
            self.inversion_guidance = check_guidance(self.inversion_guidance)


@dataclass
class NegativePromptOptions(PivotOptions):
    """Options of negative-prompt inversion.

    label: the naive step's time label, "target" or "current" ["target"].
    inversion_guidance: CFG scale of the inversion itself [1.0, the reference: conditional only];
        ``None`` inverts with the call's ``guidance``. The call's ``guidance`` is always kept as
        the default guidance of ``invlab.reconstruct`` (``config["reconstruct_guidance"]``).
    preset: "reference" sets every field left at its default to the reference's value (the
        defaults already are the reference's).
    """


def pivot_setup(setup: Setup, inversion_guidance: float | None) -> Setup:
    """The setup of the conditional pivot inversion (NPI, DirectInversion): the call's, at the
    inversion guidance."""
    if inversion_guidance is None or inversion_guidance == setup.guidance:
        return setup
    if setup.cond is None and inversion_guidance != 1.0:
        raise ValueError(f"inversion_guidance={inversion_guidance} needs a condition; pass cond=... or "
                         "inversion_guidance=1")
    inv = copy.copy(setup)
    inv.guidance = inversion_guidance
    return inv


def invert_negative_prompt(setup: Setup, hooks, opts: NegativePromptOptions, check_finite: bool = True,
                           show_progress: bool = False):
    config = {"method": "negative-prompt", "reconstruct_guidance": setup.guidance, "preset": opts.preset}
    return invert_naive(pivot_setup(setup, opts.inversion_guidance), hooks, NaiveOptions(label=opts.label),
                        check_finite, show_progress, config=config)
