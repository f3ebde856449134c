"""Numbers a notebook publishes, so tests and the notebook runner can read them back."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

MIME = "application/vnd.invlab.numbers+json"


def _plain(v: Any) -> Any:
    if hasattr(v, "item") and getattr(v, "numel", lambda: 1)() == 1:
        v = v.item()
    if isinstance(v, float) and not math.isfinite(v):
        return str(v)
    if isinstance(v, dict):
        return {str(k): _plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if hasattr(v, "tolist"):
        return v.tolist()
    return v


def publish(**numbers: Any) -> dict[str, Any]:
    """Display ``numbers`` in the notebook (a small table) and attach them as machine-readable output."""
    data = {k: _plain(v) for k, v in numbers.items()}
    try:
        from IPython.display import display

        text = "\n".join(f"{k:>28s} = {v:.4g}" if isinstance(v, float) else f"{k:>28s} = {v}" for k, v in data.items())
        display({MIME: data, "text/plain": text}, raw=True)
    except ImportError:  # plain Python: just print
        print(json.dumps(data, indent=1))
    return data


def read_published(notebook: str | Path) -> dict[str, Any]:
    """All numbers published by an executed notebook (later cells win on repeated names)."""
    nb = json.loads(Path(notebook).read_text())
    out: dict[str, Any] = {}
    for cell in nb.get("cells", []):
        for o in cell.get("outputs", []):
            d = o.get("data", {})
            if MIME in d:
                out.update(d[MIME])
    return out
