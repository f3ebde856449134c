"""A bench table as markdown: the winner at each budget, and every entry's median error.

``invlab bench report TABLE`` writes ``<table stem>.md`` next to the table. Errors are first reduced
over the image items of a setting (:func:`invlab.bench.plot.aggregate`); winners are
``invlab.studies.zoo.winners`` on those medians (the lowest error among the entries that spent at
most m NFE per step, plus the one initial-guess NFE that exact and Newton inversion cannot reuse).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

from .plot import aggregate
from .run import read_table


def _g(v: float) -> str:
    return f"{v:.3g}"


def winners_table(rows: Sequence[dict[str, Any]], metric: str = "image_nmse") -> str:
    """Markdown: one line per (model, solver, steps, guidance); naive's error, then for each budget
    m the winning entry, its error and the NFE it spent."""
    from ..studies.zoo import uses_side_info, winners

    agg = aggregate(rows, metric)
    for a in agg:
        a.update(error=None, side_info=uses_side_info(a["method"]))
    ms = sorted({a["multiple"] for a in agg if a["multiple"] is not None and a["multiple"] > 1})
    won = winners(agg, metric)
    head = ["model", "solver", "steps", "w", f"naive {metric}", *[f"best at {m:g}x NFE/step" for m in ms]]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * 4 + "---:|" * (len(head) - 4)]
    keys = sorted({(a["model"], a["solver"], a["steps"], a["guidance"]) for a in agg})
    for model, solver, steps, w in keys:
        naive = [a for a in agg if (a["model"], a["solver"], a["steps"], a["guidance"], a["label"]) ==
                 (model, solver, steps, w, "naive")]
        cells = [model, solver, str(steps), f"{w:g}", _g(naive[0][metric]) if naive else "-"]
        for m in ms:
            hit = [x for x in won if (x["model"], x["steps"], x["guidance"], x["multiple"]) == (model, steps, w, m)
                   and any(a["solver"] == solver and a["label"] == x["label"] for a in agg)]
            cells.append(f"{hit[0]['label']}: {_g(hit[0][metric])} @{hit[0]['nfe']:g}" if hit else "-")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def full_table(rows: Sequence[dict[str, Any]], metric: str = "image_nmse") -> str:
    """Markdown: every entry's median ``metric`` (columns) per setting (lines)."""
    agg = aggregate(rows, metric)
    labels = list(dict.fromkeys(r["label"] for r in sorted(rows, key=lambda r: r["index"])))
    keys = sorted({(a["model"], a["solver"], a["steps"], a["guidance"]) for a in agg})
    lines = ["| model | solver | steps | w | " + " | ".join(labels) + " |",
             "|---|---|---:|---:|" + "---:|" * len(labels)]
    by = {(a["model"], a["solver"], a["steps"], a["guidance"], a["label"]): a for a in agg}
    for k in keys:
        cells = [_g(by[(*k, lb)][metric]) if (*k, lb) in by else "-" for lb in labels]
        lines.append(f"| {k[0]} | {k[1]} | {k[2]} | {k[3]:g} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_report(table: str | Path, out: str | Path | None = None) -> Path:
    """Write the markdown report of a bench table (default ``<table stem>.md`` beside it)."""
    table = Path(table)
    rows = read_table(table)
    if not rows:
        raise ValueError(f"{table} holds no rows; run `invlab bench CONFIG` first")
    out = Path(out) if out is not None else table.with_suffix(".md")
    prov_path = table.with_suffix(".provenance.json")
    prov = json.loads(prov_path.read_text()) if prov_path.exists() else {}
    items = {(r["seed"], tuple(r["images"] or ())) for r in rows}
    secs = sum(r["seconds"] or 0.0 for r in rows)
    parts = [f"# {table.stem}", "",
             f"{len(rows)} rows from `{table.name}` (written by `invlab bench`); errors are medians over each row's "
             f"batch, then over the {len(items)} image item(s) of a setting. "
             f"Machine: {prov.get('cpu', '?')}, {prov.get('cpus', '?')} CPUs, {prov.get('threads', '?')} torch "
             f"thread(s) per process, torch {prov.get('torch_version', '?')}, device {prov.get('device', '?')}; "
             f"invlab {prov.get('invlab_version', '?')} at {prov.get('git_commit', '?')}; "
             f"{secs / 60:.1f} min of row time in all.", ""]
    for metric in ("image_nmse", "noise_nmse"):
        if any(r.get(metric) is not None and r[metric] == r[metric] for r in rows):
            parts += [f"## Winners by budget ({metric})", "",
                      "Each cell: the entry with the lowest median error among those that spent at most m NFE per "
                      "step (+1), its error and its inversion NFE.", "", winners_table(rows, metric), "",
                      f"## Every entry ({metric}, median)", "", full_table(rows, metric), ""]
    out.write_text("\n".join(parts))
    return out
