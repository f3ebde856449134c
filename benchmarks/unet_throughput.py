"""What does invlab's loop cost on top of the UNet? Timings on one UNet and one input.

For each dtype x batch it times, with the same random-weight UNet (SD-1.5 architecture on a
GPU, the tiny test architecture on CPU) and the same latents and text embeddings:

* ``bare``        a loop of ``steps`` UNet calls (the floor);
* ``naive``       ``invlab.invert(..., method="naive")`` keeping scalars only (``Recorder(keys=())``);
* ``naive+rec``   the same with the default recorder (x, eps, x0_hat copied to the CPU every step);
* ``diffusers``   a loop driven by diffusers' ``DDIMInverseScheduler``.

    python benchmarks/unet_throughput.py                          # CPU: tiny UNet, fp32
    python benchmarks/unet_throughput.py --device cuda --config sd15 --dtypes fp16 fp32 --batches 1 8
    python benchmarks/unet_throughput.py --json build/unet_throughput.json

Guidance is 1 (one UNet call per step) so all four do the same network work. Medians of
``--repeats`` runs after one warm-up run.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Callable

import torch

import invlab
from invlab.models.base import Denoiser
from invlab.models.sd import SD15_UNET_CONFIG, TINY_UNET_CONFIG, random_unet
from invlab.schedules import NoiseSchedule
from invlab.trace import Recorder

DTYPES = {"fp16": torch.float16, "fp32": torch.float32, "bf16": torch.bfloat16}


class EmbeddingUNet(Denoiser):
    """A text-conditional UNet fed precomputed embeddings (no VAE, no text encoder needed)."""

    def __init__(self, unet: torch.nn.Module, schedule: NoiseSchedule, latent: int):
        super().__init__(schedule, (unet.config.in_channels, latent, latent), "epsilon", None)
        self.unet = unet
        self.name = "random-unet"

    @property
    def is_conditional(self) -> bool:
        return True

    def check_cond(self, cond: Any, batch: int, like: torch.Tensor) -> torch.Tensor:
        return cond

    def null_cond(self, batch: int, like: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError("the benchmark runs at guidance 1")

    def forward_raw(self, x: torch.Tensor, label: float, cond: torch.Tensor) -> torch.Tensor:
        p = next(self.unet.parameters())
        t = torch.tensor(float(label), device=p.device)
        return self.unet(x.to(p.dtype), t, encoder_hidden_states=cond).sample.to(x.dtype)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _time(fn: Callable[[], Any], device: torch.device, repeats: int) -> float:
    fn()  # warm-up (kernels, allocator, cudnn autotune)
    _sync(device)
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        _sync(device)
        out.append(time.perf_counter() - t0)
    return statistics.median(out)


def run(config: str, device: str, dtypes: list[str], batches: list[int], steps: int, repeats: int,
        latent: int | None) -> list[dict[str, Any]]:
    from diffusers import DDIMInverseScheduler

    dev = torch.device(device)
    arch = SD15_UNET_CONFIG if config == "sd15" else TINY_UNET_CONFIG
    latent = latent or arch["sample_size"]
    schedule = NoiseSchedule.stable_diffusion()
    rows = []
    for dname in dtypes:
        dtype = DTYPES[dname]
        unet = random_unet(config, dtype=dtype, device=dev)
        model = EmbeddingUNet(unet, schedule, latent)
        labels = schedule.grid(steps, "ddim").labels[:-1][::-1]  # the labels naive inversion feeds (cleanest first)
        for b in batches:
            g = torch.Generator().manual_seed(0)
            x0 = torch.randn(b, arch["in_channels"], latent, latent, generator=g).to(dev, dtype)
            emb = torch.randn(b, 77, arch["cross_attention_dim"], generator=g).to(dev, dtype)

            @torch.no_grad()
            def bare():
                for t in labels:
                    unet(x0, torch.tensor(float(t), device=dev), encoder_hidden_states=emb)

            def naive(record: bool):
                hooks = None if record else [Recorder(keys=())]
                return lambda: invlab.invert(model, x0, steps=steps, method="naive", guidance=1.0, cond=emb,
                                             hooks=hooks, check_finite=False)

            @torch.no_grad()
            def inverse_scheduler():
                sched = DDIMInverseScheduler.from_config(dict(schedule.config))
                sched.set_timesteps(steps)
                x = x0
                for t in sched.timesteps:
                    eps = unet(x, t.to(dev), encoder_hidden_states=emb).sample
                    x = sched.step(eps, t, x).prev_sample

            for name, fn in (("bare", bare), ("naive", naive(False)), ("naive+rec", naive(True)),
                             ("diffusers", inverse_scheduler)):
                sec = _time(fn, dev, repeats)
                rows.append({"config": config, "device": str(dev), "dtype": dname, "batch": b, "latent": latent,
                             "steps": steps, "loop": name, "seconds": sec, "ms_per_step": 1000 * sec / steps})
                print(f"{config:5s} {dname:4s} batch {b:2d} {name:10s} {sec:8.3f} s  {1000 * sec / steps:8.2f} ms/step",
                      flush=True)
        del unet, model
        if dev.type == "cuda":
            torch.cuda.empty_cache()
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--config", choices=["sd15", "tiny"], default=None,
                   help="UNet architecture (default: sd15 on a GPU, tiny on CPU)")
    p.add_argument("--dtypes", nargs="+", choices=sorted(DTYPES), default=None,
                   help="default: fp16 fp32 on a GPU, fp32 on CPU")
    p.add_argument("--batches", nargs="+", type=int, default=[1, 8])
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--latent", type=int, default=None, help="latent side (default: the config's sample_size, 64 for sd15)")
    p.add_argument("--json", type=Path, default=None)
    a = p.parse_args(argv)
    gpu = a.device.startswith("cuda")
    config = a.config or ("sd15" if gpu else "tiny")
    dtypes = a.dtypes or (["fp16", "fp32"] if gpu else ["fp32"])
    if not gpu and "fp16" in dtypes:
        print("note: fp16 convolutions on CPU are slow or unsupported; prefer fp32/bf16 there", file=sys.stderr)
    rows = run(config, a.device, dtypes, a.batches, a.steps, a.repeats, a.latent)
    if a.json:
        a.json.parent.mkdir(parents=True, exist_ok=True)
        a.json.write_text(json.dumps(rows, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
