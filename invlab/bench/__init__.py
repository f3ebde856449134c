"""``invlab bench``: the equal-budget comparison as a reproducible, resumable sweep.

    invlab bench benchmarks/leaderboard.toml            # or: python -m invlab.bench CONFIG
    accelerate launch --num_processes 2 -m invlab.bench benchmarks/leaderboard.toml   # 2 GPUs
    accelerate launch --multi_gpu --num_processes 2 -m invlab.bench CONFIG   # 2 CPU processes (gloo):
        # without a GPU accelerate starts N processes only on its torchrun path (--multi_gpu; with --cpu it
        # starts one); `torchrun --nproc_per_node 2 -m invlab.bench CONFIG` does the same
    invlab bench plot benchmarks/results/leaderboard.csv     # Pareto and error-vs-guidance figures
    invlab bench report benchmarks/results/leaderboard.csv   # markdown: winners by budget, every entry

A config (TOML; Python 3.10 needs ``tomli``, in the ``bench`` extra) names the grid; every row is
one (model, solver, steps, guidance, image item, method entry), computed by
``invlab.studies.zoo.run_zoo`` (sample x0 from known noise, invert, reconstruct, measure; errors are
medians over the row's batch)::

    [bench]
    name = "leaderboard"
    output = "results/leaderboard.csv"   # relative to the config file (default <name>.csv)
    dtype = "float64"                    # optional: the states' dtype (default: each model's own)
    device = "auto"                      # optional: "cpu", "cuda", "auto" (the launcher's device)
    threads = 1                          # torch threads per process (1: reductions are deterministic)

    [grid]
    models = ["gmm-digits", "digits"]    # invlab.available_models(), or a diffusers pipeline folder
    solvers = ["ddim"]                   # optional, default ["ddim"]
    steps = [10, 20]
    guidance = [1.0, 3.0]
    metrics = ["noise_nmse", "image_nmse", "psnr"]   # optional: any of METRICS (default all)

    [images]
    source = "sampled"                   # x0 sampled from invlab.noise(model, batch, seed)
    seeds = [0, 1, 2]
    batch = 4
    # or real images: source = "folder", folder = "imgs" (PNG/JPEG, read with PIL, converted to the
    # model's channels and resized bilinearly to its size; pixel models only), batch = images per row,
    # conditions = { "a.png" = 3 } and/or condition_from_name = true ("3_a.png" -> class 3)

    [[methods]]
    method = "naive"                     # a name of invlab.METHODS

    [[methods]]
    method = "exact"
    budget = [2, 4]                      # NFE per step: the matched-budget rule of invlab.studies.zoo.KNOBS
                                         # (variant = "newton-sign" picks another rule of the same method)

    [[methods]]
    method = "exact"
    label = "exact reference"
    options = { preset = "reference" }   # explicit options (label defaults to the method and options)

**The table** (CSV, one row per run, columns :func:`invlab.bench.run.columns`): the row's ``key``
(a hash of its own settings) and ``index`` in the row list; its inputs (model, solver, steps,
guidance, method, label, options as JSON, multiple, budget_nfe, source, seed, images, batch,
dtype, device); the metrics asked for; ``nfe``, ``nfe_per_step``, ``nfe_reconstruct``,
``backward_passes``, ``jvp_passes``; ``seconds`` (the whole row: sampling x0, inverting,
reconstructing, measuring), ``seconds_invert``, ``seconds_reconstruct``; ``peak_rss_mb`` (the
process's resident-memory high-water mark so far, from ``resource``: on CPU there is no per-row
peak of torch's allocations) and ``peak_gpu_mb`` (``torch.cuda.max_memory_allocated`` of the row,
on a GPU); ``converged_steps`` / ``solved_steps`` and ``converged`` (all solved steps met their
tolerance; empty for methods without a per-step solve); ``error`` (a refusal, recorded); and
provenance: invlab version, git commit (``+dirty`` when invlab/ has uncommitted changes), torch
and diffusers versions, the config's hash. The sidecar ``<output stem>.provenance.json`` holds
the rest (device, dtype, threads, CPU, GPU, Python, the config's text, row counts).

**Resumable.** Each finished row is appended and flushed (fsync) at once; a re-run skips every key
already in the table, so an interrupted run loses at most the row in flight, and a changed config
recomputes only the rows whose settings changed (rows of other configs stay in the table).

**Sharded.** Under ``accelerate launch --num_processes N`` (the ``bench`` extra), rank r computes
rows i with i % N == r of the deterministic row list into its own part file; after a barrier
rank 0 merges them into the table in row-list order, one row per key (see :mod:`invlab.bench.run`).
"""

from __future__ import annotations

import argparse
import os
import sys

from .config import METRICS, BenchConfig, Row, load_config, parse_config
from .plot import aggregate, plot_table
from .report import write_report
from .run import columns, read_table, run_bench, same_table

__all__ = ["METRICS", "BenchConfig", "Row", "aggregate", "columns", "load_config", "main", "parse_config",
           "plot_table", "read_table", "run_bench", "same_table", "write_report"]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="invlab bench", description="Run a bench config (resumable; shardable with "
                                "accelerate launch), or `invlab bench plot TABLE` to draw its figures.")
    p.add_argument("config", help="the config file (TOML), e.g. benchmarks/leaderboard.toml")
    p.add_argument("--output", help="the table to write (overrides [bench] output)")
    p.add_argument("--limit", type=int, help="compute at most this many rows per process, then stop")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--plot", action="store_true", help="also write the figures and the report when the run is done")
    return p


def _plot_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="invlab bench plot", description="Pareto plot (error against inversion NFE) "
                                "and error against guidance from a bench table.")
    p.add_argument("table", help="the CSV a bench run wrote")
    p.add_argument("--out", help="folder for the PNGs (default: the table's folder)")
    p.add_argument("--metric", default="image_nmse", choices=METRICS)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    os.environ.setdefault("MPLBACKEND", "Agg")
    if argv[:1] == ["plot"]:
        args = _plot_parser().parse_args(argv[1:])
        for path in plot_table(args.table, args.out, args.metric):
            print(path)
        return 0
    if argv[:1] == ["report"]:
        p = argparse.ArgumentParser(prog="invlab bench report", description="A bench table as markdown: the "
                                    "winner at each budget and every entry's median error.")
        p.add_argument("table", help="the CSV a bench run wrote")
        p.add_argument("--out", help="the markdown file (default: <table stem>.md beside it)")
        args = p.parse_args(argv[1:])
        print(write_report(args.table, args.out))
        return 0
    args = _parser().parse_args(argv)
    try:
        cfg = load_config(args.config, args.output)
    except (ValueError, FileNotFoundError) as exc:
        print(f"invlab bench: {exc}", file=sys.stderr)
        return 2
    summary = run_bench(cfg, show_progress=not args.no_progress, limit=args.limit)
    if summary["rank"] == 0:
        print(f"{summary['output']}: {summary['table_rows']} rows ({summary['rows']} in the config; this process "
              f"computed {summary['computed']}, skipped {summary['skipped']} already done; {summary['world']} "
              f"process(es), {summary['seconds']:.1f} s)")
        if args.plot:
            for path in plot_table(cfg.output):
                print(path)
            print(write_report(cfg.output))
    return 0
