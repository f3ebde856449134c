"""Exact inversion vs naive and EasyInv: noise and image reconstruction error, NFE, time.

For DDIM 50 steps and DPM-Solver++(2M) 10 and 20 steps, guidance {1, 3, 7.5}, on a model
(default: the analytic digits mixture) in float64 and float32. Every row: noise NMSE
(z_T vs z_T_hat), image NMSE (x0 vs x0_hat re-sampled from z_T_hat), NFE per step, seconds
(median over ``--repeats`` runs of the inversion).

    python benchmarks/exact_inversion.py [--model gmm-digits] [--batch 4] [--dtypes float64 float32]
                                         [--quick] [--repeats 3]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch

import invlab

NO_REC = [invlab.Recorder(keys=())]

METHODS = [
    ("naive", "naive", {}),
    ("easyinv eta=0.5", "easyinv", {}),
    ("exact anderson", "exact", {"inner": "anderson"}),
    ("exact forward-step", "exact", {"inner": "forward-step", "max_iter": 200}),
    ("exact gradient", "exact", {"inner": "gradient", "max_iter": 200}),
    ("exact reference preset", "exact", {"preset": "reference"}),
    ("exact reference @ rms tol", "exact", {"preset": "reference", "tol_kind": "rms"}),
]


def run(model, z, cond, solver, steps, w, method, opts, repeats):
    fwd = invlab.sample(model, z, steps, solver, w, cond, hooks=NO_REC)
    opts = dict(opts)
    if opts.get("tol_kind") == "rms":  # the reference solver at invlab's default tolerance for this dtype
        from invlab.inversion.solvers import DEFAULT_TOL
        opts["tol"] = DEFAULT_TOL[z.dtype]
    times = []
    for _ in range(repeats):
        model.reset_counters()
        t0 = time.perf_counter()
        inv = invlab.invert(model, fwd.final, steps, solver, method, w, cond, hooks=NO_REC, **opts)
        times.append(time.perf_counter() - t0)
    nfe = inv.nfe / steps
    back = invlab.sample(model, inv.final, steps, solver, w, cond, hooks=NO_REC).final
    conv = sum(bool(r.extras.get("converged", True)) for r in inv.records)
    return (float(invlab.metrics.nmse(inv.final, z)), float(invlab.metrics.nmse(back, fwd.final)), nfe,
            statistics.median(times), conv)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="gmm-digits")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--dtypes", nargs="+", default=["float64", "float32"])
    ap.add_argument("--guidance", type=float, nargs="+", default=[1.0, 3.0, 7.5])
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--quick", action="store_true", help="DDIM 20 and DPM 10 only, fewer methods")
    args = ap.parse_args()
    model = invlab.load_model(args.model)
    grids = [("ddim", 20), ("dpmpp2m", 10)] if args.quick else [("ddim", 50), ("dpmpp2m", 10), ("dpmpp2m", 20)]
    methods = METHODS[:3] + METHODS[5:6] if args.quick else METHODS
    print(f"machine: {platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}; "
          f"model {args.model}, batch {args.batch}, seconds = median of {args.repeats}")
    print(f"{'dtype':8s} {'grid':12s} {'w':>4s} {'method':28s} {'noise NMSE':>11s} {'image NMSE':>11s} "
          f"{'NFE/step':>8s} {'conv':>6s} {'seconds':>8s}")
    for dt in args.dtypes:
        dtype = getattr(torch, dt)
        z = invlab.noise(model, args.batch, seed=0, dtype=dtype)
        cond = torch.arange(args.batch) % model.num_classes if model.num_classes else None
        for solver, steps in grids:
            for w in args.guidance:
                for label, method, opts in methods:
                    n, i, nfe, sec, conv = run(model, z, cond, solver, steps, w, method, opts, args.repeats)
                    print(f"{dt:8s} {solver + ' ' + str(steps):12s} {w:4g} {label:28s} {n:11.3g} {i:11.3g} "
                          f"{nfe:8.2f} {conv:3d}/{steps:<3d} {sec:8.2f}", flush=True)


if __name__ == "__main__":
    main()
