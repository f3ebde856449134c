"""Memory of recording a run, and what the Recorder's options save.

A 50-step exact inversion (DDIM grid, Anderson inner solver) of a batch of 4 latents of shape
4x64x64 -- Stable Diffusion's latent size -- on an analytic Gaussian mixture of that shape (exact
eps, float32), so the numbers measure the recording, not a network. Each configuration runs in
a fresh process; the script prints the process's peak resident memory (ru_maxrss), the bytes the
Recorder holds, and the peak over the run without any tensors recorded.

    python benchmarks/recorder_memory.py [--steps 50] [--batch 4] [--dtype float32]
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import time

CONFIGS = {
    "scalars only": "Recorder(keys=())",
    "default (4 tensors, every step)": "Recorder()",
    "float16 storage": "Recorder(dtype=torch.float16)",
    "x_next only": "Recorder(keys=('x_next',))",
    "every 5th step": "Recorder(every=5)",
    "x_next, float16, every 5th": "Recorder(keys=('x_next',), dtype=torch.float16, every=5)",
    "cap 16 MiB": "Recorder(max_bytes=16 * 2**20)",
}


def model_4x64x64():
    """A 4-component diagonal Gaussian mixture on 4x64x64 latents (means and variances fixed by a seed)."""
    import torch

    import invlab

    g = torch.Generator().manual_seed(0)
    means = torch.randn(4, 4, 64, 64, generator=g, dtype=torch.float64)
    variances = 0.05 + 0.5 * torch.rand(4, 4, 64, 64, generator=g, dtype=torch.float64)
    return invlab.models.GaussianMixture(means, variances, name="gmm-4x64x64")


def one(config: str, steps: int, batch: int, dtype_name: str) -> dict:
    import warnings

    import torch

    import invlab
    from invlab import Recorder  # noqa: F401 - used by eval

    dtype = getattr(torch, dtype_name)
    model = model_4x64x64()
    z = invlab.noise(model, batch, seed=0, dtype=dtype)
    x0 = invlab.sample(model, z, steps, hooks=[invlab.Recorder(keys=())]).final
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    rec = eval(CONFIGS[config], {"Recorder": invlab.Recorder, "torch": torch})
    t0 = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        traj = invlab.invert(model, x0, steps, method="exact", hooks=[rec])
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"config": config, "peak_mib": peak, "before_inversion_mib": base, "recorded_mib": rec.nbytes / 2**20,
            "seconds": seconds, "nfe": traj.nfe, "capped_at": rec.capped_at,
            "warnings": [str(w.message)[:80] for w in caught if issubclass(w.category, invlab.RecordingCapWarning)]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    ap.add_argument("--one", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        print(json.dumps(one(args.one, args.steps, args.batch, args.dtype)))
        return
    print(f"# recorder memory: exact inversion, {args.steps} DDIM steps, batch {args.batch} x 4x64x64, {args.dtype}; "
          f"{platform.processor() or platform.machine()}, python {platform.python_version()}")
    rows = []
    for name in CONFIGS:
        out = subprocess.run([sys.executable, __file__, "--one", name, "--steps", str(args.steps),
                              "--batch", str(args.batch), "--dtype", args.dtype],
                             capture_output=True, text=True, check=True)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    base = rows[0]["peak_mib"]
    print(f"{'configuration':34s} {'held MiB':>9s} {'peak RSS MiB':>13s} {'over scalars-only':>18s} {'NFE':>5s} {'s':>6s}")
    for r in rows:
        note = f"  (cap reached at step {r['capped_at']}: warned)" if r["capped_at"] is not None else ""
        print(f"{r['config']:34s} {r['recorded_mib']:9.1f} {r['peak_mib']:13.1f} {r['peak_mib'] - base:18.1f} "
              f"{r['nfe']:5d} {r['seconds']:6.1f}{note}")


if __name__ == "__main__":
    main()
