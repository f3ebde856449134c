"""Every method in ``invlab.METHODS`` at equal NFE budgets, on four models (issue 10, item 4).

For each model (gmm-digits, digits, digits-latent, the offline tiny SD pipeline), guidance
(1, 3, 7.5) and number of DDIM steps (10, 50): sample ``--batch`` images from known noise (class
ids 0, 1, ... or a prompt), invert them with every method at matched budgets (``m`` NFE per step
for each multiple ``m`` of naive inversion's cost whose total stays within ``--max-nfe``; methods
without a budget knob at 1x; null-text also at lr 0.1, ``EXTRA_KNOBS``), regenerate with
``invlab.reconstruct`` and measure noise NMSE, image NMSE (decoded images for latent models, plus
latent NMSE), PSNR, SSIM, NFE, backward passes, seconds. Errors are medians over the batch
(``invlab.studies.zoo``).

A second pass inverts *real* images instead (``--real-models``, default gmm-digits, digits and
digits-latent; ``--real-guidance``, default 3 and 7.5): ``--batch`` held-out scikit-learn digits
(``invlab.studies.families.real_digits``, encoded for the latent model) with their labels as the
condition, same steps and budgets; no true noise there, so only the round trip is measured.
tiny-sd (random weights) has no real images.

Writes a markdown table and the rows as JSON (with the machine) and two Pareto plots (image NMSE
against inversion NFE, one panel per model and guidance; sampled and real images):

    python benchmarks/method_zoo.py                    # the full grid -> benchmarks/results/method_zoo.{md,json},
                                                       #   figures/method_zoo_pareto{,_real}.png
    python benchmarks/method_zoo.py --quick            # a tiny run -> build/method_zoo_quick.{md,json}, build/*.png
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
#: the models with real images (held-out scikit-learn digits): tiny-sd has random weights and no data
REAL_MODELS = ("gmm-digits", "digits", "digits-latent")
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
            "real_models": args.real_models, "real_guidance": args.real_guidance,
            "real_images": "invlab.studies.families.real_digits(model, batch, seed): held-out scikit-learn digits "
                           "(validation split), their labels as the condition",
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

    def key(w):
        return w["model"], w["guidance"], w["steps"], w["multiple"], w["source"]

    noise_only = {key(w): w for w in winners(rows, noise_only=True)}
    every = {key(w): w for w in winners(rows)}
    out = ["| model | w | steps | budget | best (noise only) | image NMSE | NFE | runner-up | image NMSE | "
           "best incl. side info | image NMSE |", "|---|---:|---:|---:|---|---:|---:|---|---:|---|---:|"]
    for k, w in noise_only.items():
        model, g, n, m, _ = k
        a = every.get(k, {})
        tie = "≈ " if w["tie"] else ""
        out.append(f"| {model} | {g:g} | {n} | {m}x ({m * n} NFE) | {w['label']} | {fmt(w['image_nmse'])} | "
                   f"{w['nfe']} | {tie}{w['runner_up'] or '–'} | {fmt(w['runner_up_image_nmse'])} | "
                   f"{a.get('label', '–')} | {fmt(a.get('image_nmse'))} |")
    return out


def gain_table(rows: list[dict]) -> list[str]:
    """Per method variant: naive's image NMSE / the variant's best, and the NFE it took (x > 1: better)."""
    from invlab.studies.zoo import EXTRA_KNOBS, KNOBS, NO_KNOB, series

    variants = [v for v in list(NO_KNOB) + list(KNOBS) + list(EXTRA_KNOBS)
                if v != "naive" and any(series(r) == v for r in rows)]
    extra = sorted({r["label"] for r in rows if r["multiple"] is None})
    variants += extra
    out = ["| model | w | steps | naive image NMSE | " + " | ".join(variants) + " |",
           "|---|---:|---:|---:|" + "---:|" * len(variants)]
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["model"], r["guidance"], r["steps"], r["source"]), []).append(r)
    for (model, g, n, _), rs in groups.items():
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
                f"{r['model']} w={r['guidance']:g} N={r['steps']}" + (" real" if r["source"] == "real" else ""))
    out = []
    for (method, err), where in seen.items():
        places = sorted(set(where))
        more = " …" if len(places) > 4 else ""
        out.append(f"- `{method}` ({len(where)} rows; {', '.join(places[:4])}{more}): {err}")
    return out


def pareto(rows: list[dict], models: list[str], guidances: list[float], steps: list[int], save: Path,
           suptitle: str = "Image NMSE vs inversion NFE at matched budgets (DDIM; median over the batch)") -> None:
    import matplotlib

    matplotlib.use("Agg")
    from invlab.plots.zoo import plot_pareto
    from invlab.studies.zoo import pareto_points

    # method_style's fallback for this name hashes to C1, fixed-point's colour: give the lr variant a free one
    # (setdefault: a style registered in invlab.plots.zoo wins)

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
                         suptitle=suptitle, save=save)
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
    ap.add_argument("--real-models", nargs="*", default=None,
                    help=f"models of the real-image pass, a subset of {REAL_MODELS} (default: those of --models; "
                         "none: skip the pass)")
    ap.add_argument("--real-guidance", type=float, nargs="+", default=[3.0, 7.5],
                    help="guidance scales of the real-image pass")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    ap.add_argument("--quick", action="store_true",
                    help="5 steps, w 1 and 7.5 (real images: 7.5), budgets 2x/4x, batch 2; writes to build/ "
                         "(never to figures/ or benchmarks/results/)")
    ap.add_argument("--out", type=Path, default=None, help="results stem (default benchmarks/results/method_zoo)")
    ap.add_argument("--figure", type=Path, default=None, help="Pareto plot (default figures/method_zoo_pareto.png)")
    ap.add_argument("--figure-real", type=Path, default=None,
                    help="Pareto plot of the real-image pass (default figures/method_zoo_pareto_real.png)")
    args = ap.parse_args(argv)
    bad = [m for m in args.models if m not in MODELS]
    if bad:
        ap.error(f"unknown model(s) {bad}; choose from {list(MODELS)}")
    if args.real_models is None:
        args.real_models = [m for m in args.models if m in REAL_MODELS]
    bad = [m for m in args.real_models if m not in REAL_MODELS]
    if bad:
        ap.error(f"no real images for {bad}; --real-models is a subset of {list(REAL_MODELS)}")
    if args.quick:
        args.steps, args.guidance, args.multiples, args.batch = [5], [1.0, 7.5], [2, 4], 2
        args.real_guidance = [7.5]
        args.out = args.out or ROOT / "build" / "method_zoo_quick"
        args.figure = args.figure or ROOT / "build" / "method_zoo_quick_pareto.png"
        args.figure_real = args.figure_real or ROOT / "build" / "method_zoo_quick_pareto_real.png"
    args.out = args.out or ROOT / "benchmarks" / "results" / "method_zoo"
    args.figure = args.figure or ROOT / "figures" / "method_zoo_pareto.png"
    args.figure_real = args.figure_real or ROOT / "figures" / "method_zoo_pareto_real.png"
    if args.threads:
        torch.set_num_threads(args.threads)

    import invlab
    from invlab.studies.families import real_digits
    from invlab.studies.zoo import EXTRA_KNOBS, KNOB_NAMES, matched_entries, run_zoo

    t_start = time.perf_counter()
    rows, dtypes, seconds = [], {}, {"sampled": 0.0, "real": 0.0}
    for name in dict.fromkeys(args.models + args.real_models):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = load(name)
        dtypes[name] = str(getattr(model, "dtype", torch.float32))
        passes = []
        if name in args.models:
            passes.append(("sampled", args.guidance, {"batch": args.batch, "seed": args.seed}))
        if name in args.real_models:
            x0, labels, _ = real_digits(model, args.batch, seed=args.seed)
            passes.append(("real", args.real_guidance, {"x0": x0, "labels": labels}))
        for source, guidances, data in passes:
            for n in args.steps:
                multiples = [m for m in args.multiples if m * n <= args.max_nfe]
                entries = matched_entries(multiples, extra=EXTRA_KNOBS)
                for g in guidances:
                    t0 = time.perf_counter()
                    got = run_zoo(model, entries, steps=n, guidance=g, **data)
                    for r in got:
                        r["model"] = name
                    rows += got
                    dt = time.perf_counter() - t0
                    seconds[source] += dt
                    print(f"{name:14s} {source:7s} N={n:<3d} w={g:<4g} {len(got)} entries, {dt:6.1f} s", flush=True)
    total = time.perf_counter() - t_start
    sampled = [r for r in rows if r["source"] == "sampled"]
    real = [r for r in rows if r["source"] == "real"]
    info = machine(args, dtypes)
    info.update(seconds_total=round(total, 1), seconds_sampled=round(seconds["sampled"], 1),
                seconds_real=round(seconds["real"], 1), methods=list(invlab.METHODS), knobs=KNOB_NAMES,
                command="python benchmarks/method_zoo.py " + " ".join(sys.argv[1:] if argv is None else argv))

    lines = [f"# Method comparison at equal NFE ({'quick run' if args.quick else 'full grid'})", "",
             f"Machine: {info['cpu']}, {info['cores']} cores, {info['torch_threads']} torch thread(s), torch "
             f"{info['torch']}; states in {', '.join(f'{k} {v}' for k, v in dtypes.items())}; batch {args.batch}, "
             f"seed {args.seed}; DDIM; total {total / 60:.1f} min (sampled images {seconds['sampled'] / 60:.1f}, "
             f"real images {seconds['real'] / 60:.1f}). Command: `{info['command']}`.", "",
             "Two kinds of input. **Sampled** (the first part): x0 is sampled from known noise z_T (so the noise "
             "error is known exactly) on the same grid and guidance as the inversion: the images are exactly what "
             "the sampler makes, which favours naive inversion and leaves the condition-repairing methods little to "
             "repair. **Real** (the second part): held-out scikit-learn digits (`invlab.studies.families."
             "real_digits`, the validation split; encoded for the latent model) with their labels as the condition: "
             "no true noise (noise NMSE nan), only the round trip. Errors are medians over the batch. Image NMSE "
             "compares images (latent models: decoded; for real images the reference is the *decoded* encoder "
             "latent, so the VAE's own error is not counted); PSNR / SSIM on images clamped to [-1, 1]. NFE = "
             "guided-eps evaluations of the inversion (a CFG pair is one; Newton's JVP passes count); bwd = backward "
             "passes through the network. Budgets: `m`x = at most m NFE per step (exact and Newton spend one more "
             "on the first step's initial guess). *Side info*: methods whose reconstruction uses more than the "
             "noise (negative-prompt: the condition as negative prompt; direct: stored pivots, image exact by "
             "construction; null-text: per-step embeddings). `null-text` uses the reference learning rate 1e-2 "
             "(tuned to CLIP embeddings), `null-text-lr0.1` ten times that (the class embeddings of these models "
             "need larger steps); both spend the same budget (inner Adam steps, each 1 NFE + 1 backward pass).", "",
             "## Best at each budget (image NMSE) — sampled images", "",
             "Among the entries that spent at most the budget (+1 NFE); a higher budget's entry may win a lower "
             "budget when it converged early. `≈`: the runner-up is within 2x of the winner, or both are below "
             "1e-11 (float round-off): no real winner. `fixed-point 2x` and `renoise 2x` are the same computation "
             "(one re-evaluation of the naive step, the last iterate kept).", "", *winners_table(sampled), "",
             "## Each method's best image NMSE relative to naive — sampled images (x > 1: better than naive; "
             "@ its NFE)", "", *gain_table(sampled), ""]
    if real:
        no_real = [m for m in args.models if m not in args.real_models]
        lines += ["## Each method's best image NMSE relative to naive — real digits (x > 1: better than naive; "
                  "@ its NFE)", "",
                  f"Real images: {', '.join(args.real_models)} at w = "
                  f"{', '.join(f'{g:g}' for g in args.real_guidance)}, the same steps and budgets."
                  + (" w = 1 is left out (null-text refuses it and negative-prompt is naive inversion there: "
                     "nothing for the condition-repairing methods to repair)." if 1.0 not in args.real_guidance
                     else "")
                  + (f" Not for {', '.join(no_real)}: " + ("tiny-sd has random weights and no data set, so there "
                     "are no real images for it." if no_real == ["tiny-sd"] else "not asked for.")
                     if no_real else ""), "", *gain_table(real), "",
                  "## Best at each budget (image NMSE) — real digits", "", *winners_table(real), ""]
    refused = refusals(rows)
    if refused:
        lines += ["## Refusals and failures (recorded, not raised)", "", *refused, ""]
    for source, part in (("sampled images", sampled), ("real digits", real)):
        for name in dict.fromkeys(r["model"] for r in part):
            lines += [f"## {name} — {source}", "", *rows_table([r for r in part if r["model"] == name]), ""]
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
    written = [args.out.with_suffix(".md"), args.out.with_suffix(".json")]
    if sampled:
        pareto(sampled, [m for m in args.models], args.guidance, args.steps, args.figure,
               suptitle="Sampled images: image NMSE vs inversion NFE at matched budgets (DDIM; median over the batch)")
        written.append(args.figure)
    if real:
        pareto(real, list(args.real_models), args.real_guidance, args.steps, args.figure_real,
               suptitle="Real digits: image NMSE vs inversion NFE at matched budgets (DDIM; median over the batch)")
        written.append(args.figure_real)
    print(f"\nwrote {', '.join(map(str, written))} ({total / 60:.1f} min)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
