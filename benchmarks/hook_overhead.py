"""Overhead of invlab's step loop and of recording every step, against a bare loop.

The bare loop calls the same model's eps and does the same DDIM arithmetic, with nothing else.
invlab.sample is timed with the default Recorder (x_cur, x_next, eps, x0_hat copied to the CPU
at every step) and with recording off. Prints medians of several runs and the ratios.

    python benchmarks/hook_overhead.py [--model gmm-digits] [--batch 256] [--steps 50] [--repeats 7]
                                      [--dtype float32] [--threads N]
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch

import invlab
from invlab.steps import ddim_step, x0_from_eps


def bare_loop(model, z, steps, guidance, cond):
    grid = model.schedule.grid(steps, "ddim")
    c = model.check_cond(cond, z.shape[0], z)
    x = z
    with torch.no_grad():
        for i in range(steps):
            s, t = grid.levels[i], grid.levels[i + 1]
            eps = model.eps(x, s.label, c, guidance).eps
            x = ddim_step(x0_from_eps(x, eps, s), eps, t)
    return x


def timed_interleaved(fns: dict, repeats: int) -> dict:
    """Median seconds of each function. The variants run interleaved, in a rotating order, so a
    slow spell of the machine (another process, frequency changes) hits all of them alike."""
    for fn in fns.values():
        fn()  # warm-up
    times = {k: [] for k in fns}
    names = list(fns)
    for r in range(repeats):
        for k in names[r % len(names):] + names[:r % len(names)]:
            t0 = time.perf_counter()
            fns[k]()
            times[k].append(time.perf_counter() - t0)
    return {k: statistics.median(v) for k, v in times.items()}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="gmm-digits")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--guidance", type=float, default=3.0)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = ap.parse_args()
    dtype = getattr(torch, args.dtype)
    model = invlab.load_model(args.model)
    z = invlab.noise(model, args.batch, seed=0, dtype=dtype)
    cond = torch.arange(args.batch) % model.num_classes

    if args.threads:
        torch.set_num_threads(args.threads)
    c = model.check_cond(cond, args.batch, z)
    t = timed_interleaved({
        "call": lambda: model.eps(z, 500.0, c, args.guidance),
        "bare": lambda: bare_loop(model, z, args.steps, args.guidance, cond),
        "rec": lambda: invlab.sample(model, z, args.steps, "ddim", args.guidance, cond),
        "off": lambda: invlab.sample(model, z, args.steps, "ddim", args.guidance, cond, hooks=[invlab.Recorder(keys=())]),
        "inv": lambda: invlab.invert(model, z, args.steps, "ddim", "naive", args.guidance, cond),
    }, args.repeats)
    call, bare, rec, off, inv = t["call"] * 1e3, t["bare"], t["rec"], t["off"], t["inv"]
    print(f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}")
    print(f"model {args.model}, {args.dtype}, batch {args.batch}, {args.steps} DDIM steps, guidance {args.guidance}")
    print(f"one guided eps call:                 {call:8.2f} ms (median)")
    print(f"bare loop:                           {bare * 1e3:8.1f} ms")
    print(f"invlab.sample, recording off:        {off * 1e3:8.1f} ms   ratio {off / bare:.3f}x")
    print(f"invlab.sample, recording all steps:  {rec * 1e3:8.1f} ms   ratio {rec / bare:.3f}x")
    print(f"invlab.invert naive, recording all:  {inv * 1e3:8.1f} ms   ratio {inv / bare:.3f}x")


if __name__ == "__main__":
    main()
