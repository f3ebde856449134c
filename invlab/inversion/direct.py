"""DirectInversion (PnP Inversion; Ju, Zeng, Bian, Liu, Xu, ICLR 2024, arXiv 2310.01506).

Inversion is naive DDIM inversion with the source condition and w = 1; its states are the
pivots z*_0 (the input) ... z*_T (``.final``), kept in ``record.extras["pivot"]`` (record k
holds z* at its ``t_cur``, whatever the Recorder keeps).

Reconstruction (``invlab.reconstruct``), from z_bar_T = z*_T, at each sampling step s -> t:

    z_rec      = DDIM_step(z_bar_s, eps_u + w (eps_c - eps_u))     (the guided source branch)
    o_t        = z*_t - z_rec                                       (the offset, extras["offset"])
    z_bar_t    = z_rec + o_t                                        (= z*_t up to one rounding)

so the source branch lands on the pivot at every level and ends on the input image to float
precision, at the NFE of plain sampling. In the reference (cure-lab/PnPInversion
``DirectInversion``) the offsets are computed once at inversion time with w = 7.5 (one extra
guided NFE per step) and added to the source branch of a dual-branch editor; here they are
computed during reconstruction from the stored pivots, for any w. Editing with a changed
condition (the offsets added to the source branch only) needs that dual-branch editor.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..loop import Setup
from .naive import NaiveOptions, invert_naive
from .negative_prompt import PivotOptions, pivot_setup


@dataclass
class DirectOptions(PivotOptions):
    """Options of DirectInversion (the same fields as negative-prompt inversion's).

    label: the naive step's time label, "target" or "current" ["target"].
    inversion_guidance: CFG scale of the pivot inversion [1.0, the reference]; ``None`` inverts
        with the call's ``guidance``. The call's ``guidance`` is kept as the default guidance of
        ``invlab.reconstruct`` (``config["reconstruct_guidance"]``; the reference uses 7.5).
    preset: "reference" sets every field left at its default to the reference's value (the
        defaults already are the reference's).
    """


def invert_direct(setup: Setup, hooks, opts: DirectOptions, check_finite: bool = True, show_progress: bool = False):
    config = {"method": "direct", "reconstruct_guidance": setup.guidance, "preset": opts.preset}
    return invert_naive(pivot_setup(setup, opts.inversion_guidance), hooks, NaiveOptions(label=opts.label),
                        check_finite, show_progress, config=config, pivots=True)
