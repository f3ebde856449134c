"""The digits edit 3 -> 8 per inversion method, with and without a background mask (issue 12, item 2).

Held-out scikit-learn 3s (validation split, 16x16) are inverted under class 3 for ``--depth`` of a
``--steps``-step DDIM grid and regenerated under class 8 at guidance ``--guidance`` with
``invlab.edit``; once free and once with the left-half mask (1 on the left 8 columns, where a 3 is
open and an 8 closed; the right half is the background to preserve). Per method and mask:

* ``as 8``: share of edits the course's digit classifier reads as 8 (edit success);
* ``logratio``: median of ``invlab.edit.class_log_ratio(model, edited, 8, 3)`` (nats, the model's
  own evidence for 8 over 3; 16 label intervals x 2 noises);
* ``bg PSNR`` / ``bg MSE x1e4`` / ``bg SSIM x1e2``: PIE-Bench's background preservation on the right
  half (median over images; PSNR inf = bit-exact);
* ``changed``: RMS change inside the left half ([0, 1] units);
* ``round trip``: PSNR of the same edit with target = source (3 -> 3) over the whole image: how much
  of the source the method itself keeps (inf or > 100 dB: exact);
* ``NFE``: network evaluations of one edit (inversion + regeneration), per image batch.

No structure distance: PIE-Bench's is a DINO ViT-B/8 self-similarity MSE, and no such network is
available offline for 16x16 digits.

Measured once (2026-12-02; ``digits`` float32, 16 validation 3s, DDIM 20 steps, depth 0.7 = 14 steps
inverted, w = 3, one thread on a shared 2-CPU x86_64 VM, torch 2.13.0+cpu; 464 s with --batch 16):

    | method | mask | as 8 | logratio | bg PSNR | bg MSE x1e4 | bg SSIM x1e2 | changed | round trip PSNR | NFE |
    |---|---|---|---|---|---|---|---|---|---|
    | naive | none | 100% | 39 | 16.6 | 209.37 | 88.1 | 0.222 | 34.6 | 28 |
    | naive | left half | 100% | 24 | inf | 0.00 | 100.0 | 0.235 | 34.6 | 28 |
    | exact | none | 100% | 34 | 14.9 | 292.93 | 81.4 | 0.251 | 124.9 | 161 |
    | exact | left half | 100% | 26 | inf | 0.00 | 100.0 | 0.254 | 124.9 | 161 |
    | fixed-point | none | 100% | 34 | 14.9 | 292.93 | 81.5 | 0.251 | 104.9 | 143 |
    | fixed-point | left half | 100% | 26 | inf | 0.00 | 100.0 | 0.254 | 104.9 | 143 |
    | renoise | none | 100% | 33 | 14.9 | 292.15 | 82.6 | 0.248 | 53.5 | 134 |
    | renoise | left half | 100% | 26 | inf | 0.00 | 100.0 | 0.249 | 53.5 | 134 |
    | easyinv | none | 100% | 41 | 16.7 | 202.54 | 89.9 | 0.214 | 30.6 | 28 |
    | easyinv | left half | 100% | 24 | inf | 0.00 | 100.0 | 0.235 | 30.6 | 28 |
    | negative-prompt | none | 100% | 45 | 14.2 | 375.94 | 83.5 | 0.270 | 36.3 | 28 |
    | negative-prompt | left half | 100% | 33 | inf | 0.00 | 100.0 | 0.281 | 36.3 | 28 |
    | direct | none | 100% | 42 | 17.8 | 149.35 | 91.6 | 0.214 | 27.8 | 28 |
    | direct | left half | 100% | 24 | inf | 0.00 | 100.0 | 0.224 | 27.8 | 28 |
    | null-text | none | 100% | 43 | 17.4 | 165.83 | 90.6 | 0.214 | 33.5 | 196 |
    | null-text | left half | 100% | 26 | inf | 0.00 | 100.0 | 0.234 | 33.5 | 196 |
    | edict | none | 100% | 30 | 15.6 | 271.89 | 86.3 | 0.251 | 126.1 | 56 |
    | edict | left half | not run: a mask cannot be used with solver='edict' | | | | | | | |
    | bdia | none | 56% | 18 | 11.4 | 729.15 | 71.6 | 0.376 | 108.4 | 27 |
    | bdia | left half | 69% | 8 | inf | 0.00 | 100.0 | 0.364 | 108.4 | 27 |
    | belm | none | 12% | -26 | 12.2 | 597.51 | 78.8 | 0.238 | 118.6 | 27 |
    | belm | left half | 6% | -23 | inf | 0.00 | 100.0 | 0.249 | 118.6 | 27 |

    Reading it: with the mask every pixel method keeps the right half bit for bit (inf) and still
    reads as 8; without it the right half moves (14-18 dB). Exact methods (exact, fixed-point,
    EDICT/BDIA/BELM) return the source on the round trip (> 100 dB) where naive gives 35 dB, yet
    at this depth all DDIM methods edit equally well; the reversible solvers edit poorly (BDIA
    56%, BELM 12%): their second state carries the source. EDICT refuses a mask (``invlab.edit``).

    python benchmarks/edit_digits.py                     # digits, 8 images, 20 steps, depth 0.7
    python benchmarks/edit_digits.py --model gmm-digits --batch 8 --methods naive exact
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
METHODS = ("naive", "exact", "fixed-point", "renoise", "easyinv", "negative-prompt", "direct", "null-text", "edict",
           "bdia", "belm")


def machine(threads: int) -> str:
    import torch

    cpu = platform.processor() or platform.machine()
    return (f"{platform.node() or 'host'}: {cpu}, {os.cpu_count()} CPUs, torch {torch.__version__} "
            f"({threads} thread{'s' if threads != 1 else ''}), python {platform.python_version()}")


def fmt(v: float, scale: float = 1.0, digits: int = 1) -> str:
    if math.isnan(v):
        return "nan"
    if math.isinf(v):
        return "inf"
    return f"{v * scale:.{digits}f}"


def run(args) -> list[dict]:
    import torch

    import invlab
    from invlab import edit as E
    from invlab.data import digits_images

    model = invlab.load_model(args.model)
    size = 32 if model.is_latent else 16
    x, y = digits_images(size=size, split="val")
    src = x[y == 3][:args.batch].to(torch.float64 if args.model.startswith("gmm") else torch.float32)
    mask = torch.zeros(1, 1, size, size)
    mask[..., : size // 2] = 1
    print(f"# edit 3 -> 8: model {args.model} ({str(src.dtype).replace('torch.', '')}), {len(src)} validation 3s "
          f"({E.digit_success(src, 3).float().mean():.0%} read as 3), DDIM {args.steps} steps, depth {args.depth} "
          f"(k = {E.depth_steps(args.depth, args.steps)} steps inverted), guidance {args.guidance} (inversion at the "
          f"same w; negative-prompt / direct / null-text invert at w = 1 as their references), mask: left half")
    print(f"# {machine(torch.get_num_threads())}")
    rows = []
    for method in args.methods:
        kw = {"solver": method} if method in ("edict", "bdia", "belm") else {"method": method}
        common = dict(steps=args.steps, depth=args.depth, guidance=args.guidance, **kw)
        t0 = time.perf_counter()
        outs, rt = {}, float("nan")
        for masked in (None, False, True):  # None: the round trip 3 -> 3
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    out = E.edit(model, src, 3, 3 if masked is None else 8, mask=(mask if masked else None), **common)
            except (ValueError, NotImplementedError) as exc:
                rows.append({"method": method, "mask": masked, "error": str(exc).split(":")[0][:80]})
                print(f"{method} (mask {masked}): not run ({exc})", file=sys.stderr)
                if masked is None:
                    break
                continue
            if masked is None:
                rt = E.edit_metrics(src, out.image)["psnr"].median().item()
            else:
                outs[masked] = out
        for masked, out in outs.items():
            met = E.edit_metrics(src, out.image, mask)
            lr = E.class_log_ratio(model, out.edited, 8, 3, levels=16, draws=2)
            rows.append({"method": method, "mask": masked, "as8": E.digit_success(out.image.float(), 8).float().mean().item(),
                         "logratio": lr.median().item(), "psnr": met["psnr"].median().item(),
                         "mse": met["mse"].median().item(), "ssim": met["ssim"].median().item(),
                         "changed": met["changed"].median().item(), "round_trip": rt, "nfe": out.nfe,
                         "seconds": time.perf_counter() - t0})
        print(f"  {method}: {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    return rows


def table(rows: list[dict]) -> str:
    head = ("| method | mask | as 8 | logratio | bg PSNR | bg MSE x1e4 | bg SSIM x1e2 | changed | round trip PSNR "
            "| NFE |\n|---|---|---|---|---|---|---|---|---|---|")
    lines = [head]
    first = {}
    for i, r in enumerate(rows):
        first.setdefault(r["method"], i)
    for r in sorted(rows, key=lambda r: (first[r["method"]], {None: 0, False: 1, True: 2}[r["mask"]])):
        if "error" in r:
            where = {None: "-", False: "none", True: "left half"}[r["mask"]]
            lines.append(f"| {r['method']} | {where} | not run: {r['error']} | | | | | | | |")
            continue
        lines.append(f"| {r['method']} | {'left half' if r['mask'] else 'none'} | {r['as8']:.0%} | {r['logratio']:.0f} | "
                     f"{fmt(r['psnr'])} | {fmt(r['mse'], 1e4, 2)} | {fmt(r['ssim'], 1e2)} | {r['changed']:.3f} | "
                     f"{fmt(r['round_trip'])} | {r['nfe']} |")
    return "\n".join(lines)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="digits", choices=["digits", "gmm-digits", "digits-latent"])
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--depth", type=float, default=0.7)
    p.add_argument("--guidance", type=float, default=3.0)
    p.add_argument("--methods", nargs="+", default=list(METHODS))
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, default=None, help="also write the table (markdown) here")
    args = p.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    rows = run(args)
    text = table(rows)
    print(text)
    print(f"# total {time.perf_counter() - t0:.0f} s")
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
