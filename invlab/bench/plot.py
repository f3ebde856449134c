"""Figures from a bench table: the Pareto plot (error against inversion NFE, one panel per model and
guidance) and error against guidance (one panel per model and steps, one line per method entry).

Errors are first reduced over the image items of a setting (the median over seeds / image
chunks of each row's batch median). The Pareto figure is ``invlab.plots.plot_pareto``; the
guidance figure is drawn here with the same colours and markers (``invlab.plots.zoo.method_style``),
since it only exists for bench tables.
"""

from __future__ import annotations

import math
import statistics
from pathlib import Path
from typing import Any, Sequence

from .config import METRICS
from .run import read_table


def aggregate(rows: Sequence[dict[str, Any]], metric: str = "image_nmse") -> list[dict[str, Any]]:
    """One record per (model, solver, steps, guidance, source, label): the median of ``metric`` and
    of the inversion NFE over the setting's image items; rows with an error or no value are left out."""
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        v = r.get(metric)
        if r.get("error") or v is None or math.isnan(v):
            continue
        key = (r["model"], r["solver"], r["steps"], r["guidance"], r["source"], r["label"])
        groups.setdefault(key, []).append(r)
    out = []
    for (model, solver, steps, w, source, label), rs in groups.items():
        out.append({"model": model, "solver": solver, "steps": steps, "guidance": w, "source": source, "label": label,
                    "method": rs[0]["method"], "multiple": rs[0]["multiple"], "items": len(rs),
                    "nfe": statistics.median(r["nfe"] for r in rs), metric: statistics.median(r[metric] for r in rs)})
    return out


def plot_table(table: str | Path, out_dir: str | Path | None = None, metric: str = "image_nmse") -> list[Path]:
    """Write ``<table stem>_pareto.png`` and ``<table stem>_guidance.png`` next to the table (or in
    ``out_dir``); returns their paths."""
    import matplotlib.pyplot as plt

    from ..plots.zoo import method_style, plot_pareto
    from ..studies.zoo import series

    if metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; use one of {list(METRICS)}")
    table = Path(table)
    rows = read_table(table)
    if not rows:
        raise ValueError(f"{table} holds no rows; run `invlab bench CONFIG` first")
    agg = aggregate(rows, metric)
    if not agg:
        raise ValueError(f"{table} has no finite {metric!r} values to plot (a real-image table has no noise_nmse)")
    out_dir = Path(out_dir) if out_dir is not None else table.parent
    out_dir.mkdir(parents=True, exist_ok=True)
    solvers = sorted({a["solver"] for a in agg})
    min_steps = min(a["steps"] for a in agg)
    several_steps = len({a["steps"] for a in agg}) > 1
    what = f"{metric} (median over images)"

    panels: dict[str, list[dict]] = {}
    for a in sorted(agg, key=lambda a: (a["model"], a["solver"], a["guidance"])):
        name = f"{a['model']}, w = {a['guidance']:g}" + (f", {a['solver']}" if len(solvers) > 1 else "")
        panels.setdefault(name, []).append({"series": series(a), "label": a["label"], "cost": a["nfe"],
                                            "error": a[metric], "hollow": several_steps and a["steps"] == min_steps})
    paths = [out_dir / f"{table.stem}_pareto.png", out_dir / f"{table.stem}_guidance.png"]
    fig, _ = plot_pareto(panels, ncols=min(4, len(panels)), ylabel=what,
                         hollow_label=f"{min_steps} steps" if several_steps else None,
                         filled_label="more steps" if several_steps else None,
                         suptitle=f"{table.stem}: error against inversion NFE", save=paths[0])
    plt.close(fig)

    # one colour per method (METHOD_STYLE); a variant's budgets told apart by the line: dotted, dashed, ... solid
    budgets = sorted({a["multiple"] for a in agg if a["multiple"] is not None and a["multiple"] > 1})
    dashes = dict(zip(budgets, [":", "--", "-.", "-"][-len(budgets):] if len(budgets) <= 4 else [":"] * len(budgets)))
    multiple_of = {a["label"]: a["multiple"] for a in agg}
    lines: dict[str, dict[str, list[tuple[float, float]]]] = {}
    for a in agg:
        name = f"{a['model']}, {a['steps']} steps" + (f", {a['solver']}" if len(solvers) > 1 else "")
        lines.setdefault(name, {}).setdefault(a["label"], []).append((a["guidance"], a[metric]))
    names = sorted(lines)
    ncols = min(4, len(names))
    nrows = math.ceil(len(names) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.4 * ncols + 1.8, 3.0 * nrows), squeeze=False)
    for ax in axes.flat[len(names):]:
        ax.axis("off")
    seen: dict[str, Any] = {}
    for ax, name in zip(axes.flat, names):
        for label, pts in sorted(lines[name].items()):
            pts.sort()
            st = method_style(series({"label": label, "multiple": 1 if label.endswith("x") else None}))
            h, = ax.plot([p[0] for p in pts], [max(p[1], 1e-300) for p in pts], marker=st["marker"], color=st["color"],
                         ls=dashes.get(multiple_of[label], "-"), lw=1.1, ms=4, label=label)
            seen.setdefault(label, h)
        ax.set_yscale("log")
        ax.set_xlabel("guidance w", fontsize=8)
        ax.set_title(name, fontsize=9)
        ax.grid(True, alpha=0.3)
        ax.tick_params(labelsize=8)
    for ax in axes[:, 0]:
        ax.set_ylabel(what, fontsize=8)
    fig.legend(handles=list(seen.values()), loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=7, frameon=False)
    fig.suptitle(f"{table.stem}: error against guidance", fontsize=10)
    fig.tight_layout()
    paths[1].parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(paths[1], dpi=120, bbox_inches="tight")
    plt.close(fig)
    return paths
