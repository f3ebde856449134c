"""Every method in ``invlab.METHODS`` at equal NFE budgets, on four models (issue 10, item 4).

For each model (gmm-digits, digits, digits-latent, the offline tiny SD pipeline), guidance
(1, 3, 7.5) and number of DDIM steps (10, 50): sample ``--batch`` images from known noise (class
ids 0, 1, ... or a prompt), invert them with every method at matched budgets (``m`` NFE per step
for each multiple ``m`` of naive inversion's cost whose total stays within ``--max-nfe``; methods
without a budget knob at 1x), regenerate with ``invlab.reconstruct`` and measure noise NMSE,
image NMSE (decoded images for latent models, plus latent NMSE), PSNR, SSIM, NFE, backward
passes, seconds. Errors are medians over the batch (``invlab.studies.zoo``).

Writes a markdown table and the rows as JSON (with the machine) and the Pareto plot (image NMSE
against inversion NFE, one panel per model and guidance):

    python benchmarks/method_zoo.py                    # the full grid -> benchmarks/results/method_zoo.{md,json},
                                                       #   figures/method_zoo_pareto.png
    python benchmarks/method_zoo.py --quick            # a tiny run -> build/method_zoo_quick.{md,json,png}
    python benchmarks/method_zoo.py --models gmm-digits digits --threads 1
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import sys
import time
import warnings
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
MODELS = ("gmm-digits", "digits", "digits-latent", "tiny-sd")
TINY_SD_DIR = ROOT / "build" / "tiny-sd-pipeline"


def load(name: str):
    """A model by its benchmark name; "tiny-sd" is the random tiny pipeline of the tests, written
    once to build/ and loaded offline."""
    import invlab

    if name != "tiny-sd":
        return invlab.load_model(name)
    from invlab.models.sd import save_tiny_pipeline

    if not (TINY_SD_DIR / "model_index.json").exists():
        save_tiny_pipeline(TINY_SD_DIR)
    os.environ["HF_HUB_OFFLINE"] = "1"
    return invlab.load_model(str(TINY_SD_DIR))


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine(args, dtypes: dict[str, str]) -> dict:
    return {"cpu": cpu_model(), "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__, "python": platform.python_version(), "platform": platform.platform(),
            "dtypes": dtypes, "batch": args.batch, "seed": args.seed, "aggregate": "median over the batch",
            "date": datetime.date.today().isoformat()}


def fmt(v, digits: int = 3) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf"
        if v == 0:
            return "0"
        return f"{v:.{digits}g}"
    return str(v)


def rows_table(rows: list[dict]) -> list[str]:
    """One markdown row per entry."""
    out = ["| steps | w | entry | NFE | NFE rec | bwd | noise NMSE | image NMSE | latent NMSE | PSNR | SSIM | "
           "s inv | note |", "|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in rows:
        if r["error"]:
            note = "refused: " + r["error"].split("\n")[0][:90].replace("|", "/")
        else:
            note = f"{r['converged_steps']}/{r['solved_steps']} steps converged" if r["solved_steps"] else ""
            if r["side_info"]:
                note = (note + "; " if note else "") + "side info"
        out.append(f"| {r['steps']} | {r['guidance']:g} | {r['label']} | {r['nfe'] if not r['error'] else '–'} | "
                   f"{r['nfe_reconstruct'] if not r['error'] else '–'} | {r['backward_passes']} | "
                   f"{fmt(r['noise_nmse'])} | {fmt(r['image_nmse'])} | {fmt(r['latent_nmse'])} | "
                   f"{fmt(r['psnr'], 4)} | {fmt(r['ssim'], 4)} | {fmt(r['seconds_invert'], 2)} | {note} |")
    return out


def winners_table(rows: list[dict]) -> list[str]:
    from invlab.studies.zoo import winners

    noise_only = {(w["model"], w["guidance"], w["steps"], w["multiple"]): w for w in winners(rows, noise_only=True)}
    every = {(w["model"], w["guidance"], w["steps"], w["multiple"]): w for w in winners(rows)}
    out = ["| model | w | steps | budget | best (noise only) | image NMSE | NFE | runner-up | image NMSE | "
           "best incl. side info | image NMSE |", "|---|---:|---:|---:|---|---:|---:|---|---:|---|---:|"]
    for key, w in noise_only.items():
        model, g, n, m = key
        a = every.get(key, {})
        tie = "≈ " if w["tie"] else ""
        out.append(f"| {model} | {g:g} | {n} | {m}x ({m * n} NFE) | {w['label']} | {fmt(w['image_nmse'])} | "
                   f"{w['nfe']} | {tie}{w['runner_up'] or '–'} | {fmt(w['runner_up_image_nmse'])} | "
                   f"{a.get('label', '–')} | {fmt(a.get('image_nmse'))} |")
    return out


def gain_table(rows: list[dict]) -> list[str]:
    """Per method variant: naive's image NMSE / the variant's best, and the NFE it took (x > 1: better)."""
    from invlab.studies.zoo import KNOBS, NO_KNOB, series

    variants = [v for v in list(NO_KNOB) + list(KNOBS) if v != "naive" and any(series(r) == v for r in rows)]
    extra = sorted({r["label"] for r in rows if r["multiple"] is None})
    variants += extra
    out = ["| model | w | steps | naive image NMSE | " + " | ".join(variants) + " |",
           "|---|---:|---:|---:|" + "---:|" * len(variants)]
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["model"], r["guidance"], r["steps"]), []).append(r)
    for (model, g, n), rs in groups.items():
        base = next((r["image_nmse"] for r in rs if r["label"] == "naive"), float("nan"))
        cells = []
        for v in variants:
            cand = [r for r in rs if series(r) == v and not r["error"] and not math.isnan(r["image_nmse"])]
            if not cand:
                refused = [r for r in rs if series(r) == v and r["error"]]
                cells.append("refused" if refused else "–")
                continue
            best = min(cand, key=lambda r: (r["image_nmse"], r["nfe"]))
            ratio = f"{fmt(base / best['image_nmse'], 2)}x" if best["image_nmse"] > 0 else "exact"
            cells.append(f"{ratio} @{best['nfe']}")
        out.append(f"| {model} | {g:g} | {n} | {fmt(base)} | " + " | ".join(cells) + " |")
    return out


def refusals(rows: list[dict]) -> list[str]:
    seen: dict[tuple, list[str]] = {}
    for r in rows:
        if r["error"]:
            seen.setdefault((r["method"], r["error"].split("\n")[0][:160]), []).append(
                f"{r['model']} w={r['guidance']:g} N={r['steps']}")
    out = []
    for (method, err), where in seen.items():
        places = sorted(set(where))
        more = " …" if len(places) > 4 else ""
        out.append(f"- `{method}` ({len(where)} rows; {', '.join(places[:4])}{more}): {err}")
    return out


def pareto(rows: list[dict], models: list[str], guidances: list[float], steps: list[int], save: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from invlab.plots.zoo import plot_pareto
    from invlab.studies.zoo import pareto_points

    panels = {}
    hollow = min(steps) if len(set(steps)) > 1 else None
    for g in guidances:
        for m in models:
            panels[f"{m}, w = {g:g}"] = pareto_points([r for r in rows if r["model"] == m and r["guidance"] == g],
                                                      hollow_steps=hollow)
    noise_only = {p["series"] for pts in panels.values() for p in pts if not p["side_info"]}
    lo, hi = min(steps), max(steps)
    fig, _ = plot_pareto(panels, ncols=len(models), front_of=noise_only,
                         hollow_label=f"{lo} steps" if lo != hi else None,
                         filled_label=f"{hi} steps" if lo != hi else None,
                         front_label="Pareto front (methods returning a noise only)",
                         suptitle="Image NMSE vs inversion NFE at matched budgets (DDIM; median over the batch)",
                         save=save)
    import matplotlib.pyplot as plt

    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", nargs="+", default=list(MODELS), help=f"subset of {MODELS}")
    ap.add_argument("--guidance", type=float, nargs="+", default=[1.0, 3.0, 7.5])
    ap.add_argument("--steps", type=int, nargs="+", default=[10, 50])
    ap.add_argument("--multiples", type=int, nargs="+", default=[2, 4, 8, 16],
                    help="NFE per step of the matched budgets (each kept where multiple x steps <= --max-nfe)")
    ap.add_argument("--max-nfe", type=int, default=400, help="largest total inversion budget per image")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    ap.add_argument("--quick", action="store_true",
                    help="5 steps, w 1 and 7.5, budgets 2x/4x, batch 2; writes to build/ (never to figures/)")
    ap.add_argument("--out", type=Path, default=None, help="results stem (default benchmarks/results/method_zoo)")
    ap.add_argument("--figure", type=Path, default=None, help="Pareto plot (default figures/method_zoo_pareto.png)")
    args = ap.parse_args(argv)
    bad = [m for m in args.models if m not in MODELS]
    if bad:
        ap.error(f"unknown model(s) {bad}; choose from {list(MODELS)}")
    if args.quick:
        args.steps, args.guidance, args.multiples, args.batch = [5], [1.0, 7.5], [2, 4], 2
        args.out = args.out or ROOT / "build" / "method_zoo_quick"
        args.figure = args.figure or ROOT / "build" / "method_zoo_quick_pareto.png"
    args.out = args.out or ROOT / "benchmarks" / "results" / "method_zoo"
    args.figure = args.figure or ROOT / "figures" / "method_zoo_pareto.png"
    if args.threads:
        torch.set_num_threads(args.threads)

    import invlab
    from invlab.studies.zoo import KNOB_NAMES, matched_entries, run_zoo

    t_start = time.perf_counter()
    rows, dtypes = [], {}
    for name in args.models:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = load(name)
        dtypes[name] = str(getattr(model, "dtype", torch.float32))
        for n in args.steps:
            multiples = [m for m in args.multiples if m * n <= args.max_nfe]
            entries = matched_entries(multiples)
            for g in args.guidance:
                t0 = time.perf_counter()
                got = run_zoo(model, entries, steps=n, guidance=g, batch=args.batch, seed=args.seed)
                for r in got:
                    r["model"] = name
                rows += got
                print(f"{name:14s} N={n:<3d} w={g:<4g} {len(got)} entries, {time.perf_counter() - t0:6.1f} s",
                      flush=True)
    total = time.perf_counter() - t_start
    info = machine(args, dtypes)
    info.update(seconds_total=round(total, 1), methods=list(invlab.METHODS), knobs=KNOB_NAMES,
                command="python benchmarks/method_zoo.py " + " ".join(sys.argv[1:] if argv is None else argv))

    lines = [f"# Method comparison at equal NFE ({'quick run' if args.quick else 'full grid'})", "",
             f"Machine: {info['cpu']}, {info['cores']} cores, {info['torch_threads']} torch thread(s), torch "
             f"{info['torch']}; states in {', '.join(f'{k} {v}' for k, v in dtypes.items())}; batch {args.batch}, "
             f"seed {args.seed}; DDIM; total {total / 60:.1f} min. Command: `{info['command']}`.", "",
             "x0 is *sampled* from known noise z_T (so the noise error is known exactly) on the same grid and "
             "guidance as the inversion; errors are medians over the batch. Image NMSE compares images (latent "
             "models: decoded); PSNR / SSIM on images clamped to [-1, 1]. NFE = guided-eps evaluations of the "
             "inversion (a CFG pair is one; Newton's JVP passes count); bwd = backward passes through the network. "
             "Budgets: `m`x = at most m NFE per step (exact and Newton spend one more on the first step's "
             "initial guess). *Side info*: methods whose reconstruction uses more than the noise (negative-prompt: "
             "the condition as negative prompt; direct: stored pivots, image exact by construction; null-text: "
             "per-step embeddings).", "",
             "## Best at each budget (image NMSE)", "",
             "Among the entries that spent at most the budget (+1 NFE); a higher budget's entry may win a lower "
             "budget when it converged early. `≈`: the runner-up is within 2x of the winner, or both are below "
             "1e-11 (float round-off): no real winner. `fixed-point 2x` and `renoise 2x` are the same computation "
             "(one re-evaluation of the naive step, the last iterate kept).", "", *winners_table(rows), "",
             "## Each method's best image NMSE relative to naive (x > 1: better than naive; @ its NFE)", "",
             *gain_table(rows), ""]
    refused = refusals(rows)
    if refused:
        lines += ["## Refusals and failures (recorded, not raised)", "", *refused, ""]
    for name in args.models:
        lines += [f"## {name}", "", *rows_table([r for r in rows if r["model"] == name]), ""]
    text = "\n".join(lines)
    print(text)

    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".md").write_text(text)

    def clean(v):
        if isinstance(v, float) and not math.isfinite(v):
            return None if math.isnan(v) else ("inf" if v > 0 else "-inf")
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [clean(x) for x in v]
        return v

    data = clean({"machine": info, "rows": [{k: v for k, v in r.items() if k not in ("input", "reconstruction")}
                                            for r in rows]})
    body = ",\n  ".join(json.dumps(r) for r in data["rows"])     # one row per line
    args.out.with_suffix(".json").write_text(f'{{"machine": {json.dumps(data["machine"], indent=1)},\n'
                                             f' "rows": [\n  {body}\n ]}}\n')
    pareto(rows, args.models, args.guidance, args.steps, args.figure)
    print(f"\nwrote {args.out.with_suffix('.md')}, {args.out.with_suffix('.json')}, {args.figure} "
          f"({total / 60:.1f} min)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
