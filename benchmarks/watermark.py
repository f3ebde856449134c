"""Tree-Ring detection and multi-key classification per inversion protocol and attack (issue 12).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/watermark.py [--quick] [--model gmm-digits]

Full mode: 200 watermarked and 200 clean images per protocol (naive DDIM, exact DDIM, DPM-Solver++(2M)
with Algorithm 2, naive DDIM on a DPM-Solver++ sample), six attacks, 50 steps, generation at w = 3 with
the class, detection at w = 1 without it (plus a baseline generated without the class at w = 1, attack
"none"); the three-key classification with 100 images per key. Writes
benchmarks/results/watermark.{json,md} (another --model: watermark_MODEL.{json,md}); --quick (20 + 20 images,
2 attacks) writes to build/ only. --n, --per-key, --protocols, --attacks, --classify-attacks and --no-baseline
size a run on a slower model, e.g. the photos latent model:

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/watermark.py --model photos --steps 20 --n 64 --per-key 32 \
        --protocols naive exact --attacks none jpeg --classify-attacks none --no-baseline
Nothing is asserted: tests/test_watermark.py holds the checks.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import torch

import invlab
from invlab import watermark as wm
from invlab.studies.watermark import PROTOCOLS, classification, detection


def _table(rows, cols):
    out = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        out.append("| " + " | ".join(f"{r[c]:.3g}" if isinstance(r[c], float) else str(r[c]) for c in cols) + " |")
    return "\n".join(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--model", default="gmm-digits")
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--guidance", type=float, default=3.0)
    ap.add_argument("--n", type=int, default=None, help="watermarked (and clean) images per cell (default 200)")
    ap.add_argument("--per-key", type=int, default=None, help="images per key in the three-key test (default 100)")
    ap.add_argument("--protocols", nargs="+", default=None, help="a subset of the four protocols")
    ap.add_argument("--attacks", nargs="+", default=None, help="a subset of the six attacks")
    ap.add_argument("--classify-attacks", nargs="+", default=None, help="attacks of the three-key test (default: --attacks)")
    ap.add_argument("--no-baseline", action="store_true", help="skip the generated-without-the-class baseline")
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--channel", type=int, default=0, help="the keys' latent channel (-1: every channel)")
    a = ap.parse_args(argv)
    torch.set_num_threads(1)
    model = invlab.load_model(a.model)
    n, per_key = (20, 10) if a.quick else (200, 100)
    n, per_key = a.n or n, a.per_key or per_key
    attacks = ("none", "noise") if a.quick else ("none", "noise", "blur", "jpeg", "crop", "brightness")
    attacks = tuple(a.attacks or attacks)
    protocols = tuple(a.protocols or PROTOCOLS)
    cls_attacks = tuple(a.classify_attacks or attacks)
    dtype = torch.float64 if a.model.startswith("gmm") else torch.float32
    t0 = time.perf_counter()
    kw = {"protocols": protocols, "dtype": dtype, "progress": True, "batch": a.batch}
    key = wm.ring_key(model.sample_shape, channel=a.channel)
    det = detection(model, n, a.steps, a.guidance, attacks=attacks, key=key, **kw)
    cls = classification(model, per_key, a.steps, a.guidance, attacks=cls_attacks, channel=a.channel, **kw)
    for r in det + cls:
        r["generation"] = f"class, w = {a.guidance:g}"
    if not a.no_baseline:   # the baseline: generated without the class at w = 1, as the detector inverts
        base = detection(model, n, a.steps, attacks=("none",), conditional=False, key=key, **kw)
        base_cls = classification(model, per_key, a.steps, attacks=("none",), conditional=False, channel=a.channel,
                                  **kw)
        for r in base + base_cls:
            r["generation"] = "no class, w = 1"
        det, cls = det + base, cls + base_cls
    machine = f"{platform.processor() or platform.machine()}, torch {torch.__version__}, 1 thread"
    out = Path("build" if a.quick else "benchmarks/results")
    out.mkdir(parents=True, exist_ok=True)
    meta = {"model": a.model, "channel": a.channel, "steps": a.steps, "guidance": a.guidance, "n": n, "per_key": per_key,
            "dtype": str(dtype), "machine": machine, "seconds": round(time.perf_counter() - t0, 1)}
    name = "watermark" if a.model == "gmm-digits" else f"watermark_{a.model}"
    name += "" if a.channel == 0 else ("_all_channels" if a.channel == -1 else f"_channel{a.channel}")
    (out / f"{name}.json").write_text(json.dumps({"meta": meta, "detection": det, "classification": cls}, indent=1))
    where = "every channel" if a.channel == -1 else f"channel {a.channel}"
    md = [f"# Tree-Ring on `{a.model}` (key on {where}; {a.steps} steps, generated at w = {a.guidance:g} with the class, detected at "
          f"w = 1 without it; {n} watermarked + {n} clean per cell; {dtype}; {machine}; {meta['seconds']:.0f} s)", "",
          "## Detection (p-value score; auc_l1: the complex-L1 distance as the score)", "",
          _table(det, ["generation", "protocol", "attack", "auc", "tpr_at_1fpr", "auc_l1", "tpr_p01", "fpr_p01", "median_log10_p",
                       "nfe_per_step"]), "",
          f"## Three-key classification ({per_key} images per key)", "",
          _table(cls, ["generation", "protocol", "attack", "accuracy"]), ""]
    (out / f"{name}.md").write_text("\n".join(md))
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
