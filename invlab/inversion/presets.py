"""``preset="reference"``: one rule for every method's options dataclass."""

from __future__ import annotations

import dataclasses
from typing import Any


def fill_from_reference(opts: Any, reference: Any, keep: tuple[str, ...] = ("preset",)) -> None:
    """Set every field of ``opts`` still at its dataclass default to ``reference``'s value, so
    ``preset="reference"`` plus explicit keywords means "the reference, with these changed".
    Fields named in ``keep`` are never overwritten. (A keyword equal to invlab's default counts
    as not given.)"""
    for f in dataclasses.fields(opts):
        if f.name not in keep and getattr(opts, f.name) == f.default:
            setattr(opts, f.name, getattr(reference, f.name))
