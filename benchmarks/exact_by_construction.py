"""Exact by construction (issue 13): round-off growth of EDICT / BDIA / BELM round trips with
steps and dtype, and sample quality vs DDIM from the same z_T as a function of p / gamma and steps.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/exact_by_construction.py [--quick] [--out build/exact_by_construction.json]

Part 1 (analytic ``gmm-digits``, real scikit-learn digits, validation split): image -> invert ->
sample (``invlab.reconstruct``) and z_T -> sample -> invert (with the sample's companion); max
abs error over the batch, per solver, dtype (float16/32/64) and steps. Nothing asserted.
Part 2 (trained ``digits`` UNet, float32): RMS distance of each solver's samples to DDIM's from
the same z_T at guidance 3, and the digit classifier's accuracy (``invlab.quality.classify``).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

import invlab
from invlab.quality import classify

DTYPES = {"float16": torch.float16, "float32": torch.float32, "float64": torch.float64}


def settings(solver: str):
    if solver == "edict":
        return [{"p": p} for p in (0.8, 0.9, 0.93, 0.97, 1.0)]
    if solver == "bdia":
        return [{"gamma": g} for g in (0.5, 0.8, 0.9, 0.96, 1.0)]
    return [{}]


def round_off(steps_list, batch=8):
    model = invlab.load_model("gmm-digits")
    x, _ = invlab.data.digits_images(16, "val")
    x = x[:batch]
    rows = []
    for solver in ("edict", "bdia", "belm"):
        for opts in (settings(solver) if solver != "edict" else [{"p": 0.93}, {"p": 0.8}]):
            for dname, dtype in DTYPES.items():
                for steps in steps_list:
                    row = {"solver": solver, **opts, "dtype": dname, "steps": steps}
                    try:
                        xi = x.to(dtype)
                        inv = invlab.invert(model, xi, steps, solver, hooks=[invlab.Recorder(keys=())], **opts)
                        rec = invlab.reconstruct(model, inv, hooks=[invlab.Recorder(keys=())])
                        row["image_err"] = (rec.final.double() - xi.double()).abs().max().item()
                        row["zhat_std"] = inv.final.double().std().item()
                        z = invlab.noise(model, batch, seed=1, dtype=dtype)
                        fwd = invlab.sample(model, z, steps, solver, solver_options=opts or None,
                                            hooks=[invlab.Recorder(keys=())])
                        back = invlab.invert(model, fwd.final, steps, solver, companion=fwd.companion,
                                             hooks=[invlab.Recorder(keys=())], **opts)
                        row["noise_err"] = (back.final.double() - z.double()).abs().max().item()
                        row["nfe_per_step"] = inv.nfe / steps
                    except invlab.NonFiniteError:
                        row["image_err"] = row["noise_err"] = float("inf")
                    rows.append(row)
                    print(json.dumps(row), flush=True)
    return rows


def quality(steps_list, batch=20, guidance=3.0):
    model = invlab.load_model("digits")
    cond = torch.arange(batch) % 10
    rows = []
    for steps in steps_list:
        z = invlab.noise(model, batch, seed=0, dtype=torch.float32)
        ddim = invlab.sample(model, z, steps, "ddim", guidance, cond, hooks=[invlab.Recorder(keys=())]).final
        acc = float((classify(ddim) == cond.numpy()).mean())
        rows.append({"solver": "ddim", "steps": steps, "rms_to_ddim": 0.0, "accuracy": acc})
        print(json.dumps(rows[-1]), flush=True)
        for solver in ("edict", "bdia", "belm"):
            for opts in settings(solver):
                t0 = time.perf_counter()
                out = invlab.sample(model, z, steps, solver, guidance, cond, solver_options=opts or None,
                                    hooks=[invlab.Recorder(keys=())]).final
                rms = (out - ddim).pow(2).mean().sqrt().item()
                acc = float((classify(out) == cond.numpy()).mean())
                rows.append({"solver": solver, **opts, "steps": steps, "rms_to_ddim": rms, "accuracy": acc,
                             "seconds": time.perf_counter() - t0})
                print(json.dumps(rows[-1]), flush=True)
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer step counts")
    ap.add_argument("--out", default="build/exact_by_construction.json")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    steps_rt = [10, 50] if args.quick else [10, 20, 50, 100, 200]
    steps_q = [10] if args.quick else [10, 20, 50]
    out = {"round_off": round_off(steps_rt), "quality": quality(steps_q)}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=1))
    print("wrote", args.out)


if __name__ == "__main__":
    main()
