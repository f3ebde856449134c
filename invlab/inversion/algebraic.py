"""Algebraic inversion (method "algebraic"): the closed-form inverse of an exact-by-construction
sampler ("edict", "bdia", "belm"; see ``invlab.reversible`` for the update rules and the
documented initial state of a real image). Options: :class:`invlab.reversible.ReversibleOptions`.
"""

from __future__ import annotations

from ..reversible import ReversibleOptions, run_reversible


def invert_algebraic(setup, hooks, opts: ReversibleOptions, check_finite: bool = True, show_progress: bool = False,
                     companion=None):
    return run_reversible(setup, hooks, opts, "invert", companion, check_finite, show_progress)
