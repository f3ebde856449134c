"""Train the tiny networks invlab ships, reproducibly, on a CPU.

    python -m invlab.train digits                     # pixel UNet, 1x16x16, ~30 min on 2 cores
    python -m invlab.train digits-latent              # VAE (32x32 -> 4x8x8), then a latent UNet
    python -m invlab.train digits-flow                # the pixel UNet as a rectified-flow model
    python -m invlab.train digits --steps 200 --out build/try   # a quick look

Data: scikit-learn's bundled digits (:func:`invlab.data.digits_images`), the fixed
train/validation split. Both UNets are diffusers ``UNet2DModel`` s with a class embedding of
``num_classes + 1`` rows: the last row is the *null class* used for classifier-free guidance
(each training label is replaced by it with probability ``label_dropout``). They predict eps
on Stable Diffusion's scaled_linear schedule (:data:`invlab.schedules.SD_SCHEDULER_CONFIG`)::

    x_t = alpha_t * x0 + sigma_t * eps,   t ~ U{0, ..., 999},   loss = |eps_hat(x_t, t, y) - eps|^2

``digits-flow`` is the same UNet trained with the rectified-flow objective (the straight path between
data and noise, velocity target, SD3's logit-normal sigma)::

    x_sigma = (1 - sigma) * x0 + sigma * eps,   sigma = sigmoid(n), n ~ N(0, 1),
    loss = |v_hat(x_sigma, 1000 sigma, y) - (eps - x0)|^2

Every run fixes its seeds (the model init, the batches, t and eps all come from seeded
generators), writes ``<prefix>.safetensors`` (weights; the EMA copy for UNets) and
``<prefix>.json`` (the architecture config, the training config, the loss curve, the time
taken) into ``--out``. ``--out invlab/assets`` overwrites the shipped models.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

ASSETS = Path(__file__).resolve().parent / "assets"

#: Architecture of the pixel model (diffusers UNet2DModel kwargs). ~1M parameters.
DIGITS_UNET: dict[str, Any] = {
    "sample_size": 16,
    "in_channels": 1,
    "out_channels": 1,
    "block_out_channels": [32, 64, 64],
    "down_block_types": ["DownBlock2D", "DownBlock2D", "AttnDownBlock2D"],
    "up_block_types": ["AttnUpBlock2D", "UpBlock2D", "UpBlock2D"],
    "layers_per_block": 1,
    "norm_num_groups": 8,
    "attention_head_dim": 32,
    "num_class_embeds": 11,
}

#: ``digits-flow``'s scheduler: diffusers' FlowMatchEulerDiscreteScheduler without shift (16x16 images
#: need no extra steps at high noise; SD3 shifts by 3 at 1024x1024)
DIGITS_FLOW_SCHEDULER: dict[str, Any] = {"num_train_timesteps": 1000, "shift": 1.0, "use_dynamic_shifting": False}

#: The latent model's autoencoder (diffusers AutoencoderKL kwargs): 1x32x32 <-> 4x8x8.
DIGITS_VAE: dict[str, Any] = {
    "in_channels": 1,
    "out_channels": 1,
    "down_block_types": ["DownEncoderBlock2D"] * 3,
    "up_block_types": ["UpDecoderBlock2D"] * 3,
    "block_out_channels": [16, 32, 64],
    "layers_per_block": 1,
    "latent_channels": 4,
    "norm_num_groups": 8,
    "sample_size": 32,
}

#: The latent model's UNet: 4x8x8 latents.
DIGITS_LATENT_UNET: dict[str, Any] = {
    "sample_size": 8,
    "in_channels": 4,
    "out_channels": 4,
    "block_out_channels": [64, 64],
    "down_block_types": ["DownBlock2D", "AttnDownBlock2D"],
    "up_block_types": ["AttnUpBlock2D", "UpBlock2D"],
    "layers_per_block": 1,
    "norm_num_groups": 16,
    "attention_head_dim": 32,
    "num_class_embeds": 11,
}

#: ``photos``' autoencoder: RGB 3x64x64 <-> 4x16x16 (12x fewer numbers, SD's VAE has 48x); no attention
#: in the mid block (it cost 40% of the CPU time for no visible gain at this size)
PHOTOS_VAE: dict[str, Any] = {
    "in_channels": 3,
    "out_channels": 3,
    "down_block_types": ["DownEncoderBlock2D"] * 3,
    "up_block_types": ["UpDecoderBlock2D"] * 3,
    "block_out_channels": [16, 32, 64],
    "layers_per_block": 1,
    "latent_channels": 4,
    "norm_num_groups": 8,
    "sample_size": 64,
    "mid_block_add_attention": False,
}

#: ``photos``' latent UNet: 4x16x16 latents, attention at 4x4, 10 photographs + the null class.
PHOTOS_UNET: dict[str, Any] = {
    "sample_size": 16,
    "in_channels": 4,
    "out_channels": 4,
    "block_out_channels": [64, 96, 128],
    "down_block_types": ["DownBlock2D", "DownBlock2D", "AttnDownBlock2D"],
    "up_block_types": ["AttnUpBlock2D", "UpBlock2D", "UpBlock2D"],
    "layers_per_block": 1,
    "norm_num_groups": 16,
    "attention_head_dim": 32,
    "num_class_embeds": 11,
}

NUM_CLASSES = 10
NULL_CLASS = NUM_CLASSES  # the class-embedding row meaning "no condition"


@dataclass
class TrainConfig:
    """Options of one training run (saved beside the weights)."""

    steps: int = 2500
    batch_size: int = 128
    lr: float = 2e-3
    weight_decay: float = 1e-4
    warmup: int = 100
    ema_decay: float = 0.999
    label_dropout: float = 0.12
    seed: int = 0
    threads: int = 2
    log_every: int = 50

    def check(self) -> "TrainConfig":
        for name in ("steps", "batch_size", "threads", "log_every"):
            if int(getattr(self, name)) <= 0:
                raise ValueError(f"{name} must be a positive integer (got {getattr(self, name)})")
        if not 0.0 <= self.label_dropout < 1.0:
            raise ValueError(f"label_dropout must be in [0, 1) (got {self.label_dropout}); e.g. 0.1")
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValueError(f"ema_decay must be in [0, 1) (got {self.ema_decay}); 0 disables EMA")
        return self


@dataclass
class VAEConfig:
    """Options of the autoencoder run of ``digits-latent``."""

    steps: int = 2000
    batch_size: int = 64
    lr: float = 1e-3
    kl_weight: float = 1e-3
    warmup: int = 100
    seed: int = 0
    threads: int = 2
    log_every: int = 50


@dataclass
class RunLog:
    losses: list[float] = field(default_factory=list)  # mean loss over each `log_every` window
    seconds: float = 0.0


# ---------------------------------------------------------------------------- helpers
def lr_at(step: int, base: float, warmup: int, total: int) -> float:
    """Linear warm-up, then cosine decay to 10% of ``base``."""
    if step < warmup:
        return base * (step + 1) / warmup
    p = (step - warmup) / max(1, total - warmup)
    return base * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * p)))


def sd_alphas_cumprod() -> torch.Tensor:
    from .schedules import NoiseSchedule

    return NoiseSchedule.stable_diffusion().alphas_cumprod.float()


@torch.no_grad()
def ema_update(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    for pe, pm in zip(ema.parameters(), model.parameters()):
        pe.lerp_(pm, 1.0 - decay)
    for be, bm in zip(ema.buffers(), model.buffers()):
        be.copy_(bm)


def save_weights(out: Path, prefix: str, module: torch.nn.Module, meta: dict[str, Any],
                 dtype: torch.dtype = torch.float32) -> tuple[Path, Path]:
    """Write ``<prefix>.safetensors`` (float32, or ``dtype``) and ``<prefix>.json``."""
    from safetensors.torch import save_file

    out.mkdir(parents=True, exist_ok=True)
    weights = out / f"{prefix}.safetensors"
    state = {k: v.detach().to(dtype).contiguous() for k, v in module.state_dict().items()}
    save_file(state, str(weights), metadata={"format": "pt", "config": f"{prefix}.json"})
    cfg = out / f"{prefix}.json"
    cfg.write_text(json.dumps(meta, indent=1) + "\n")
    return weights, cfg


def _batches(n: int, batch: int, steps: int, gen: torch.Generator):
    """Reshuffled epochs of indices (last partial batch of an epoch is dropped)."""
    produced = 0
    while True:
        perm = torch.randperm(n, generator=gen)
        for i in range(0, n - batch + 1, batch):
            if produced == steps:
                return
            produced += 1
            yield perm[i:i + batch]


# ---------------------------------------------------------------------------- diffusion
def train_unet(data: torch.Tensor, labels: torch.Tensor, unet_kwargs: dict[str, Any], cfg: TrainConfig,
               desc: str = "train", objective: str = "eps") -> tuple[torch.nn.Module, RunLog]:
    """Train a class-conditional UNet2DModel on ``data`` (N, C, H, W): ``objective="eps"`` (VP, SD's
    schedule, eps target) or ``"flow"`` (rectified flow, logit-normal sigma, velocity target)."""
    if objective not in ("eps", "flow"):
        raise ValueError(f"objective must be 'eps' or 'flow' (got {objective!r})")
    from diffusers import UNet2DModel

    cfg.check()
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    unet = UNet2DModel(**unet_kwargs)
    ema = UNet2DModel(**unet_kwargs)
    ema.load_state_dict(unet.state_dict())
    ema.requires_grad_(False)
    opt = torch.optim.AdamW(unet.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    ab = sd_alphas_cumprod()
    gen = torch.Generator().manual_seed(cfg.seed)
    log, window, t0 = RunLog(), [], time.perf_counter()
    bar = tqdm(_batches(len(data), cfg.batch_size, cfg.steps, gen), total=cfg.steps, desc=desc)
    for step, idx in enumerate(bar):
        x0, y = data[idx], labels[idx].clone()
        drop = torch.rand(len(y), generator=gen) < cfg.label_dropout
        y[drop] = NULL_CLASS
        if objective == "eps":
            t = torch.randint(0, len(ab), (len(y),), generator=gen)
            eps = torch.randn(x0.shape, generator=gen)
            a = ab[t].sqrt().view(-1, 1, 1, 1)
            s = (1 - ab[t]).sqrt().view(-1, 1, 1, 1)
            pred = unet(a * x0 + s * eps, t, class_labels=y).sample
            loss = F.mse_loss(pred, eps)
        else:
            sig = torch.sigmoid(torch.randn(len(y), generator=gen))
            eps = torch.randn(x0.shape, generator=gen)
            sv = sig.view(-1, 1, 1, 1)
            pred = unet((1 - sv) * x0 + sv * eps, sig * 1000.0, class_labels=y).sample
            loss = F.mse_loss(pred, eps - x0)
        for g in opt.param_groups:
            g["lr"] = lr_at(step, cfg.lr, cfg.warmup, cfg.steps)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        opt.step()
        ema_update(ema, unet, min(cfg.ema_decay, (1 + step) / (10 + step)))
        window.append(loss.item())
        if len(window) == cfg.log_every:
            log.losses.append(sum(window) / len(window))
            window = []
            bar.set_postfix(loss=f"{log.losses[-1]:.4f}")
            print(f"[{desc}] step {step + 1}/{cfg.steps} loss {log.losses[-1]:.4f} "
                  f"({time.perf_counter() - t0:.0f}s)", flush=True)
    log.seconds = time.perf_counter() - t0
    return (ema if cfg.ema_decay > 0 else unet).eval(), log


def _unet_meta(kind: str, unet_kwargs: dict[str, Any], cfg: TrainConfig, log: RunLog, n_params: int,
               **extra: Any) -> dict[str, Any]:
    from .schedules import SD_SCHEDULER_CONFIG

    flow = kind == "digits-flow"
    return {
        "kind": kind,
        "unet": unet_kwargs,
        "scheduler": DIGITS_FLOW_SCHEDULER if flow else SD_SCHEDULER_CONFIG,
        "prediction_type": "flow_prediction" if flow else "epsilon",
        "num_classes": NUM_CLASSES,
        "null_class": NULL_CLASS,
        "parameters": n_params,
        "train": asdict(cfg),
        "data": "sklearn.datasets.load_digits, invlab.data.digits_images(split='train', seed=0)",
        "loss_every": cfg.log_every,
        "loss_curve": [round(v, 5) for v in log.losses],
        "final_loss": round(sum(log.losses[-5:]) / max(1, len(log.losses[-5:])), 5),
        "seconds": round(log.seconds, 1),
        "torch": torch.__version__,
        **extra,
    }


def train_digits(out: Path, cfg: TrainConfig) -> dict[str, Any]:
    """The pixel model ``digits``: 1x16x16, class-conditional, eps-prediction."""
    from .data import digits_images

    x, y = digits_images(size=16, split="train")
    unet, log = train_unet(x, y, DIGITS_UNET, cfg, desc="digits unet")
    n = sum(p.numel() for p in unet.parameters())
    meta = _unet_meta("digits", DIGITS_UNET, cfg, log, n)
    save_weights(out, "digits_unet", unet, meta)
    return meta


def train_digits_flow(out: Path, cfg: TrainConfig) -> dict[str, Any]:
    """``digits-flow``: the pixel UNet (same architecture) as a rectified-flow velocity model."""
    from .data import digits_images

    x, y = digits_images(size=16, split="train")
    unet, log = train_unet(x, y, DIGITS_UNET, cfg, desc="digits-flow unet", objective="flow")
    n = sum(p.numel() for p in unet.parameters())
    meta = _unet_meta("digits-flow", DIGITS_UNET, cfg, log, n, sigma="sigmoid(N(0, 1)) (logit-normal)")
    save_weights(out, "digits_flow_unet", unet, meta)
    return meta


# ---------------------------------------------------------------------------- autoencoder
def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    """PSNR in dB for images in [-1, 1] (peak-to-peak 2)."""
    mse = F.mse_loss(a.clamp(-1, 1), b.clamp(-1, 1)).item()
    return 10 * math.log10(4.0 / max(mse, 1e-12))


def train_vae(data: torch.Tensor, val: torch.Tensor, cfg: VAEConfig, vae_kwargs: dict[str, Any] | None = None,
              desc: str = "digits-latent vae") -> tuple[torch.nn.Module, RunLog, float]:
    """Train an AutoencoderKL (``vae_kwargs``, default :data:`DIGITS_VAE`): L1 + L2 reconstruction +
    ``kl_weight`` * KL. Returns (vae, log, val PSNR)."""
    from diffusers import AutoencoderKL

    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    vae = AutoencoderKL(**(DIGITS_VAE if vae_kwargs is None else vae_kwargs))
    opt = torch.optim.AdamW(vae.parameters(), lr=cfg.lr, weight_decay=0.0)
    gen = torch.Generator().manual_seed(cfg.seed + 1)
    log, window, t0 = RunLog(), [], time.perf_counter()
    bar = tqdm(_batches(len(data), cfg.batch_size, cfg.steps, gen), total=cfg.steps, desc=desc)
    for step, idx in enumerate(bar):
        x = data[idx]
        post = vae.encode(x).latent_dist
        z = post.mean + post.std * torch.randn(post.mean.shape, generator=gen)
        rec = vae.decode(z).sample
        kl = post.kl().mean() / x[0].numel()
        loss = F.l1_loss(rec, x) + F.mse_loss(rec, x) + cfg.kl_weight * kl
        for g in opt.param_groups:
            g["lr"] = lr_at(step, cfg.lr, cfg.warmup, cfg.steps)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(vae.parameters(), 1.0)
        opt.step()
        window.append(loss.item())
        if len(window) == cfg.log_every:
            log.losses.append(sum(window) / len(window))
            window = []
            bar.set_postfix(loss=f"{log.losses[-1]:.4f}")
            print(f"[vae] step {step + 1}/{cfg.steps} loss {log.losses[-1]:.4f} "
                  f"({time.perf_counter() - t0:.0f}s)", flush=True)
    log.seconds = time.perf_counter() - t0
    vae.eval()
    with torch.no_grad():
        rec = vae.decode(vae.encode(val).latent_dist.mode()).sample
    return vae, log, psnr(rec, val)


def train_digits_latent(out: Path, cfg: TrainConfig, vae_cfg: VAEConfig) -> dict[str, Any]:
    """``digits-latent``: a VAE on 1x32x32 digits, then a class-conditional UNet on its 4x8x8 latents."""
    from .data import digits_images

    x, y = digits_images(size=32, split="train")
    xv, _ = digits_images(size=32, split="val")
    vae, vlog, val_psnr = train_vae(x, xv, vae_cfg)
    with torch.no_grad():
        post = vae.encode(x).latent_dist
        gen = torch.Generator().manual_seed(vae_cfg.seed + 2)
        lat = post.mean + post.std * torch.randn(post.mean.shape, generator=gen)
    scaling = float(1.0 / lat.std())
    print(f"[vae] val PSNR {val_psnr:.2f} dB, latent std {lat.std():.4f} -> scaling_factor {scaling:.5f}", flush=True)
    vae.register_to_config(scaling_factor=scaling)
    vae_meta = {
        "kind": "digits-latent-vae",
        "vae": {**DIGITS_VAE, "scaling_factor": scaling},
        "scaling_factor": scaling,
        "parameters": sum(p.numel() for p in vae.parameters()),
        "train": asdict(vae_cfg),
        "data": "sklearn.datasets.load_digits, invlab.data.digits_images(size=32, split='train', seed=0)",
        "loss_every": vae_cfg.log_every,
        "loss_curve": [round(v, 5) for v in vlog.losses],
        "final_loss": round(sum(vlog.losses[-5:]) / max(1, len(vlog.losses[-5:])), 5),
        "val_psnr_db": round(val_psnr, 2),
        "seconds": round(vlog.seconds, 1),
        "torch": torch.__version__,
    }
    save_weights(out, "digits_latent_vae", vae, vae_meta)
    # The latent UNet sees a fixed posterior sample per image (SD samples its latents too).
    unet, log = train_unet(lat * scaling, y, DIGITS_LATENT_UNET, cfg, desc="digits-latent unet")
    meta = _unet_meta("digits-latent", DIGITS_LATENT_UNET, cfg, log, sum(p.numel() for p in unet.parameters()),
                      scaling_factor=scaling, vae="digits_latent_vae.json")
    save_weights(out, "digits_latent_unet", unet, meta)
    return {"vae": vae_meta, "unet": meta}


# ---------------------------------------------------------------------------- photos
#: ``photos``' runs, sized for ~55 min on one idle CPU thread (python -m invlab.train photos --threads 1): measured
#: 0.62 s per VAE step (batch 16) and 1.77 s per UNet step (batch 64) on a 2-core AMD EPYC, torch 2.13
PHOTOS_TRAIN: dict[str, Any] = {"steps": 1200, "batch_size": 64, "lr": 2e-3}
PHOTOS_VAE_TRAIN: dict[str, Any] = {"steps": 1800, "batch_size": 16, "lr": 1e-3, "kl_weight": 1e-4}
PHOTOS_CROPS_PER_CLASS = 1000  # fixed training crops per photograph (invlab.photos.train_crops)


@torch.no_grad()
def round_weights(module: torch.nn.Module, dtype: torch.dtype = torch.float16) -> torch.nn.Module:
    """Round every parameter and buffer through ``dtype`` in place (so what is measured is what ships)."""
    for t in list(module.parameters()) + list(module.buffers()):
        if t.is_floating_point():
            t.copy_(t.to(dtype).to(t.dtype))
    return module


def train_photos(out: Path, cfg: TrainConfig, vae_cfg: VAEConfig,
                 per_class: int = PHOTOS_CROPS_PER_CLASS, vae_from: Path | None = None) -> dict[str, Any]:
    """``photos``: a VAE on RGB 64x64 crops of ten photographs (3x64x64 -> 4x16x16), then a class-conditional
    latent UNet on one fixed posterior sample of each training crop. Both stored in float16 (the VAE is
    rounded to float16 before the latents are made and the held-out table measured).

    ``vae_from``: a folder holding ``photos_vae.{json,safetensors}`` from an earlier run of this recipe; its
    VAE is reused (copied into ``out``) and only the UNet is trained. The latents are made exactly as in the
    full run, so the UNet is the one the full run would train; a VAE trained on other crops is refused."""
    import shutil

    from .photos import PHOTO_CLASSES, heldout_crops, reconstruction_table, train_crops

    data, held = train_crops(per_class, seed=cfg.seed), heldout_crops()
    if vae_from is not None:
        vae, vae_meta = _load_photos_vae(Path(vae_from))
    else:
        vae, vlog, _ = train_vae(data.images, held.images, vae_cfg, PHOTOS_VAE, desc="photos vae")
        round_weights(vae, torch.float16)
    with torch.no_grad():
        gen = torch.Generator().manual_seed(vae_cfg.seed + 2)
        lat = []
        for i in range(0, len(data), 100):
            post = vae.encode(data.images[i:i + 100]).latent_dist
            lat.append(post.mean + post.std * torch.randn(post.mean.shape, generator=gen))
        lat = torch.cat(lat)
    scaling = float(1.0 / lat.std())
    source = (f"invlab.photos.train_crops(per_class={per_class}, seed={cfg.seed}): 64x64 RGB crops of "
              "scikit-image's and scikit-learn's bundled photographs (held-out band excluded)")
    if vae_from is not None:
        if abs(scaling / vae_meta["scaling_factor"] - 1) > 1e-6:
            raise ValueError(f"the VAE in {vae_from} gives scaling factor {scaling:.6f} on these crops, its card says "
                             f"{vae_meta['scaling_factor']:.6f}: it was trained on other crops or seeds; train it "
                             "again (drop --vae-from) or pass the --seed and crops it was trained with")
        if Path(out).resolve() != Path(vae_from).resolve():
            Path(out).mkdir(parents=True, exist_ok=True)
            for ext in ("json", "safetensors"):
                shutil.copyfile(Path(vae_from) / f"photos_vae.{ext}", Path(out) / f"photos_vae.{ext}")
        print(f"[photos vae] reused from {vae_from}: scaling_factor {scaling:.5f}", flush=True)
    else:
        table = reconstruction_table(lambda x: vae.decode(vae.encode(x).latent_dist.mode()).sample, held)
        print(f"[photos vae] held-out PSNR {table['psnr_db']:.2f} dB, SSIM {table['ssim']:.3f}; latent std "
              f"{lat.std():.4f} -> scaling_factor {scaling:.5f}", flush=True)
        vae.register_to_config(scaling_factor=scaling)
        vae_meta = {
            "kind": "photos-vae",
            "vae": {**PHOTOS_VAE, "scaling_factor": scaling},
            "scaling_factor": scaling,
            "parameters": sum(p.numel() for p in vae.parameters()),
            "storage_dtype": "float16",
            "train": asdict(vae_cfg),
            "data": source,
            "loss_every": vae_cfg.log_every,
            "loss_curve": [round(v, 5) for v in vlog.losses],
            "final_loss": round(sum(vlog.losses[-5:]) / max(1, len(vlog.losses[-5:])), 5),
            "heldout": {k: (round(v, 4) if isinstance(v, float) else v) for k, v in table.items() if k != "classes"},
            "heldout_classes": {c: {k: round(v, 4) for k, v in d.items()} for c, d in table["classes"].items()},
            "val_psnr_db": round(table["psnr_db"], 2),
            "seconds": round(vlog.seconds, 1),
            "torch": torch.__version__,
        }
        save_weights(out, "photos_vae", vae, vae_meta, dtype=torch.float16)
    unet, log = train_unet(lat * scaling, data.labels, PHOTOS_UNET, cfg, desc="photos unet")
    meta = _unet_meta("photos", PHOTOS_UNET, cfg, log, sum(p.numel() for p in unet.parameters()),
                      scaling_factor=scaling, vae="photos_vae.json", classes=list(PHOTO_CLASSES),
                      storage_dtype="float16", data=source)
    save_weights(out, "photos_unet", unet, meta, dtype=torch.float16)
    return {"vae": vae_meta, "unet": meta}


def _load_photos_vae(folder: Path):
    """The photos AutoencoderKL (float32) and its card from ``folder/photos_vae.{json,safetensors}``."""
    from diffusers import AutoencoderKL
    from safetensors.torch import load_file

    cfg_path, w_path = folder / "photos_vae.json", folder / "photos_vae.safetensors"
    if not cfg_path.is_file() or not w_path.is_file():
        raise FileNotFoundError(f"--vae-from {folder}: needs photos_vae.json and photos_vae.safetensors there "
                                "(written by `python -m invlab.train photos`)")
    meta = json.loads(cfg_path.read_text())
    vae = AutoencoderKL(**meta["vae"])
    vae.load_state_dict({k: v.float() for k, v in load_file(str(w_path)).items()}, strict=True)
    return vae.eval().requires_grad_(False), meta


# ---------------------------------------------------------------------------- CLI
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m invlab.train", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", choices=["digits", "digits-latent", "digits-flow", "photos"],
                   help="which shipped model to train")
    p.add_argument("--out", type=Path, default=Path("build/models"),
                   help="output folder (default build/models; invlab/assets replaces the shipped weights)")
    d = TrainConfig()
    p.add_argument("--steps", type=int, default=None,
                   help=f"UNet optimiser steps (default {d.steps}; photos {PHOTOS_TRAIN['steps']})")
    p.add_argument("--batch-size", type=int, default=None,
                   help=f"(default {d.batch_size}; photos {PHOTOS_TRAIN['batch_size']})")
    p.add_argument("--lr", type=float, default=None, help=f"(default {d.lr}; photos {PHOTOS_TRAIN['lr']})")
    p.add_argument("--label-dropout", type=float, default=d.label_dropout)
    p.add_argument("--ema-decay", type=float, default=d.ema_decay)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--threads", type=int, default=d.threads, help="torch CPU threads")
    v = VAEConfig()
    p.add_argument("--vae-steps", type=int, default=None,
                   help=f"autoencoder steps (digits-latent {v.steps}, photos {PHOTOS_VAE_TRAIN['steps']})")
    p.add_argument("--kl-weight", type=float, default=None,
                   help=f"autoencoder KL weight (digits-latent {v.kl_weight}, photos {PHOTOS_VAE_TRAIN['kl_weight']})")
    p.add_argument("--vae-from", type=Path, default=None,
                   help="photos: reuse photos_vae.{json,safetensors} from this folder and train only the UNet")
    a = p.parse_args(argv)
    if a.vae_from is not None and a.model != "photos":
        p.error("--vae-from applies to the photos model only")
    unet_d = PHOTOS_TRAIN if a.model == "photos" else {}
    vae_d = PHOTOS_VAE_TRAIN if a.model == "photos" else {}

    def pick(value: Any, key: str, defaults: dict[str, Any], base: Any) -> Any:
        return value if value is not None else defaults.get(key, getattr(base, key))

    cfg = TrainConfig(steps=pick(a.steps, "steps", unet_d, d), batch_size=pick(a.batch_size, "batch_size", unet_d, d),
                      lr=pick(a.lr, "lr", unet_d, d), label_dropout=a.label_dropout,
                      ema_decay=a.ema_decay, seed=a.seed, threads=a.threads)
    vcfg = VAEConfig(steps=pick(a.vae_steps, "steps", vae_d, v), kl_weight=pick(a.kl_weight, "kl_weight", vae_d, v),
                     batch_size=vae_d.get("batch_size", v.batch_size), lr=vae_d.get("lr", v.lr),
                     seed=a.seed, threads=a.threads)
    if a.model == "digits":
        meta = train_digits(a.out, cfg)
    elif a.model == "digits-flow":
        meta = train_digits_flow(a.out, cfg)
    elif a.model == "photos":
        meta = train_photos(a.out, cfg, vcfg, vae_from=a.vae_from)["unet"]
    else:
        meta = train_digits_latent(a.out, cfg, vcfg)["unet"]
    print(f"done: final loss {meta['final_loss']}, {meta['seconds']:.0f}s -> {a.out}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
