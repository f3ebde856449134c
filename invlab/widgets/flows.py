"""Widgets for the flows notebook(s): thin glue over invlab.studies and invlab.plots."""

from __future__ import annotations

__all__: list[str] = []
