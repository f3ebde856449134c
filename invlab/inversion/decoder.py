"""Decoder inversion for latent models: find the latent whose *decoding* is the image.

A latent diffusion model never sees the image x, only a latent. The usual latent is the
encoder's, z_E = s * E(x) (``s`` = the VAE's ``scaling_factor``), but D(z_E) != x: the
autoencoder itself loses detail, and that loss shows up in every "image reconstruction" error
of an inversion, whatever the sampler. Decoder inversion replaces z_E by

    z* = argmin_z || D(z / s) - x ||^2                      (exact-inversion paper, §1.5 of the dossier)

started from the encoder's latent. Two ways of moving z are implemented:

``method="adam"`` (gradient-based; Hong et al., CVPR 2024, reference code)
    direction  g = d/dz || D(z / s) - x ||^2    (one decode + one backward pass per iteration)
    update     Adam(lr) on g, lr 0.1, 100 iterations, linear warm-up 10 then cosine decay to 0.

``method="gradient-free"`` (the forward-step method of the follow-up paper, NeurIPS 2024)
    direction  g = s * E(D(z / s)) - s * E(x)   (one decode + one encode, no backward pass)
    update     the same g fed to Adam with learning rate rho (``gf_update="adam"``, default,
               what the follow-up paper runs), or the textbook forward step
               z <- z - rho * g (``gf_update="plain"``).
    The fixed point satisfies E(D(z)) = E(x); it is the argmin above only when E inverts D
    well, i.e. for a *trained* autoencoder. With random weights E o D is far from the
    identity and the pixel error need not fall (the tests measure this). E is the posterior
    mean here; the follow-up's code draws a posterior sample at every call, which adds noise
    to g, and holds its learning rate constant over the last 20% of iterations, where this
    module keeps decaying it (one schedule for both methods).

Both updates go through a torch optimizer whose learning rate follows the same schedule
(:func:`lr_factor`), so the two methods differ only in the direction they feed it.

Latents live in the diffusion model's scaled space: ``latent = s * (posterior latent - shift)``
and the decoder receives ``latent / s + shift`` (``shift`` = ``shift_factor``, 0 for SD 1/2).
Images are in [-1, 1].

Precision and cost: the VAE is copied **once**, cast to ``options.dtype`` (float32 by default:
the follow-up paper notes the gradient-based method underflows in fp16), put in eval mode and
frozen (``requires_grad=False``), so the caller's module is never touched and its parameters
never receive gradients. The reference code deep-copies the VAE at every iteration instead.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from ..checks import check_image_range, check_options, check_tensor_device, unknown
from ..loop import progress
from ..metrics import nmse

METHODS = ("adam", "gradient-free")
INITS = ("encoder-mean", "encoder-sample")
REDUCTIONS = ("sum", "mean")
SCHEDULES = ("cosine", "constant")
GF_UPDATES = ("adam", "plain")


@dataclass
class DecoderInversionOptions:
    """Options of decoder inversion (defaults: the exact-inversion paper's reference settings).

    method: "adam" (default; gradient of the pixel loss, Adam) or "gradient-free"
        (direction E(D(z)) - E(x), no backward pass through the decoder).
    iterations: number of updates of z (default 100, the reference).
    lr: Adam's peak learning rate for ``method="adam"`` (default 0.1, the reference), in the
        units of the *scaled* latent.
    warmup: iterations of linear learning-rate warm-up before the decay (default 10, the
        reference); must be <= ``iterations``.
    schedule: after warm-up, "cosine" (default; decays to 0 at the end of the last iteration,
        as transformers' ``get_cosine_schedule_with_warmup`` in the reference) or "constant".
    rho: peak step size of the gradient-free update (default 0.01: the follow-up paper's code
        default for its Adam-driven forward step, used in its SD experiments). With
        ``gf_update="adam"`` it is Adam's learning rate (a per-entry step in scaled-latent
        units). Larger values move further but overshoot: the fixed point E(D(z)) = E(x) is
        not the pixel-space argmin unless E inverts D exactly, so a large rho can pass the best
        pixel error and climb away from it (measured on a briefly trained 16x16 VAE: rho 0.01
        lowers the encoder's MSE, rho 0.1 ends above it). With ``gf_update="plain"`` it
        multiplies E(D(z)) - E(x) directly; the forward step converges for rho below
        2 / (the largest eigenvalue of the Jacobian of z -> E(D(z))); that Jacobian is near the
        identity for a trained autoencoder, so rho < 2 there (0.5 works on the test VAE).
    gf_update: how the gradient-free direction moves z: "adam" (default; as the follow-up paper
        runs it: the direction is fed to Adam as if it were a gradient) or "plain"
        (z <- z - rho * direction, the textbook forward step).
    dtype: dtype the decoder (and encoder) run in and z is optimised in (default float32, the
        reference; fp16 gradients underflow). The VAE is cast once, on a private copy.
    init: starting latent: "encoder-mean" (default; the posterior mean, deterministic) or
        "encoder-sample" (a posterior sample, as the reference code does; pass ``generator=``
        to :func:`invert_decoder` to make it reproducible).
    reduction: how the pixel loss of ``method="adam"`` is reduced: "sum" (default, the
        reference) or "mean". Adam divides each gradient entry by its own running RMS, so the
        reduction barely changes the steps (lr is a per-entry step size either way); it matters
        where gradients are tiny next to Adam's eps=1e-8: a mean over ~10^6 pixels shrinks
        gradients by 10^6 and lets eps damp the steps. The sum also keeps each image's
        gradient independent of the batch size. (Recorded losses are always per-pixel means.)
    """

    method: str = "adam"
    iterations: int = 100
    lr: float = 0.1
    warmup: int = 10
    schedule: str = "cosine"
    rho: float = 0.01
    gf_update: str = "adam"
    dtype: torch.dtype = torch.float32
    init: str = "encoder-mean"
    reduction: str = "sum"

    def __post_init__(self):
        if self.method not in METHODS:
            raise unknown("decoder-inversion method", self.method, METHODS)
        for name in ("iterations", "warmup"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                example = 100 if name == "iterations" else 10
                raise TypeError(f"{name} must be an int (got {value!r}); pass e.g. {name}={example}")
        if self.iterations < 1:
            raise ValueError(f"iterations must be >= 1 (got {self.iterations}); the reference uses 100")
        if self.warmup < 0:
            raise ValueError(f"warmup must be >= 0 (got {self.warmup}); use 0 for no warm-up")
        if self.warmup > self.iterations:
            raise ValueError(f"warmup ({self.warmup}) must not exceed iterations ({self.iterations}); "
                             "lower warmup (the reference scales it as iterations // 10) or raise iterations")
        for name, hint in (("lr", "the reference uses lr=0.1"), ("rho", "the follow-up paper uses rho=0.01")):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise TypeError(f"{name} must be a number (got {value!r}); {hint}")
            if not math.isfinite(value) or value <= 0:
                raise ValueError(f"{name} must be a finite number > 0 (got {value}); {hint}")
        if self.schedule not in SCHEDULES:
            raise unknown("schedule", self.schedule, SCHEDULES)
        if self.gf_update not in GF_UPDATES:
            raise unknown("gf_update", self.gf_update, GF_UPDATES)
        if not isinstance(self.dtype, torch.dtype) or not self.dtype.is_floating_point:
            raise TypeError(f"dtype must be a floating torch.dtype (got {self.dtype!r}); e.g. dtype=torch.float32")
        if self.init not in INITS:
            raise unknown("init", self.init, INITS)
        if self.reduction not in REDUCTIONS:
            raise unknown("reduction", self.reduction, REDUCTIONS)


@dataclass
class DecoderInversionResult:
    """What :func:`invert_decoder` returns. Tensors are on the image's device, in its dtype.

    latent: z*, the optimised scaled latent (B, c, h, w).
    encoder_latent: the starting latent (the encoder's: posterior mean or sample, scaled).
    reconstruction: D(z*), the image the optimised latent decodes to.
    encoder_reconstruction: D(encoder_latent).
    losses: per-iteration pixel MSE (mean over all entries of the batch) of the iterate that
        entered iteration i; ``losses[0]`` is the encoder's error. One float per iteration.
    encoder_error / decoder_error: pixel MSE of D(encoder_latent) and of D(z*) against the image.
    encoder_nmse / decoder_nmse: the same as ``invlab.metrics.nmse`` (||D(z) - x||^2 / ||x||^2).
    latent_residuals: gradient-free only (empty for "adam"): per-iteration RMS of
        s E(D(z_i)) - s E(x), the residual the forward step drives to zero.
    lrs: the step size used at each iteration (the schedule, for plotting next to ``losses``).
    seconds: wall time of the whole call (encode, iterations, final decode).
    iterations: number of updates performed.
    method: "adam" or "gradient-free".
    options: the options used.
    """

    latent: torch.Tensor
    encoder_latent: torch.Tensor
    reconstruction: torch.Tensor
    encoder_reconstruction: torch.Tensor
    losses: list[float]
    encoder_error: float
    decoder_error: float
    encoder_nmse: float
    decoder_nmse: float
    latent_residuals: list[float]
    lrs: list[float]
    seconds: float
    iterations: int
    method: str
    options: DecoderInversionOptions = field(repr=False)

    @property
    def improvement(self) -> float:
        """encoder_error / decoder_error: how many times smaller the pixel MSE became (> 1 is better)."""
        return self.encoder_error / max(self.decoder_error, 1e-300)

    def summary(self) -> dict[str, Any]:
        """The scalar results, for tables and notebooks."""
        return {"method": self.method, "iterations": self.iterations, "seconds": self.seconds,
                "encoder_mse": self.encoder_error, "decoder_mse": self.decoder_error,
                "encoder_nmse": self.encoder_nmse, "decoder_nmse": self.decoder_nmse}


def lr_factor(step: int, iterations: int, warmup: int, schedule: str = "cosine") -> float:
    """Multiplier of the peak learning rate at iteration ``step`` (0-based).

    Warm-up: (step + 1) / warmup for step < warmup, so the first iteration already moves
    (transformers' schedule, used by the reference, gives the first step a learning rate of 0).
    Then "cosine": 0.5 (1 + cos(pi (step - warmup) / (iterations - warmup))), 1 at the end of
    warm-up and 0 after the last iteration; or "constant": 1.
    """
    if step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    return 0.5 * (1.0 + math.cos(math.pi * (step - warmup) / max(1, iterations - warmup)))


@dataclass
class _Codec:
    """Frozen private VAE copy and the scaled-latent maps built on it."""

    encode_dist: Callable[[torch.Tensor], Any]   # image -> diffusers DiagonalGaussianDistribution
    decode: Callable[[torch.Tensor], torch.Tensor]  # scaled latent -> image
    scale: float
    shift: float
    device: torch.device

    def to_latent(self, z: torch.Tensor) -> torch.Tensor:
        return (z - self.shift) * self.scale


def _resolve(vae_or_model: Any, scaling_factor: float | None, shift_factor: float | None):
    """(vae, scale, shift) from a diffusers ``AutoencoderKL`` or a latent invlab ``Denoiser``."""
    if hasattr(vae_or_model, "is_latent"):  # an invlab Denoiser
        if not vae_or_model.is_latent:
            raise ValueError(f"{getattr(vae_or_model, 'name', type(vae_or_model).__name__)} works in pixel space; "
                             "decoder inversion needs a latent model (is_latent=True) or an AutoencoderKL")
        if not hasattr(vae_or_model, "vae") or not hasattr(vae_or_model, "scaling_factor"):
            raise TypeError("a latent Denoiser must expose .vae (an AutoencoderKL) and .scaling_factor for decoder "
                            "inversion; pass the VAE itself instead: invert_decoder(model.vae, image, scaling_factor=...)")
        if scaling_factor is not None:
            raise TypeError("scaling_factor is taken from the model (model.scaling_factor); pass it only with a bare VAE")
        vae = vae_or_model.vae
        scaling_factor = vae_or_model.scaling_factor
        if shift_factor is None:
            shift_factor = getattr(vae_or_model, "shift_factor", None)
    else:
        vae = vae_or_model
    if not (callable(getattr(vae, "encode", None)) and callable(getattr(vae, "decode", None))
            and hasattr(vae, "config") and isinstance(vae, torch.nn.Module)):
        raise TypeError(f"expected a diffusers AutoencoderKL or a latent invlab Denoiser, got {type(vae_or_model).__name__}")
    cfg = vae.config
    if scaling_factor is None:
        scaling_factor = getattr(cfg, "scaling_factor", None)
        if scaling_factor is None:
            raise ValueError("the VAE's config has no scaling_factor; pass scaling_factor=... (0.18215 for SD 1/2)")
    if shift_factor is None:
        shift_factor = getattr(cfg, "shift_factor", None) or 0.0
    scale, shift = float(scaling_factor), float(shift_factor)
    if not math.isfinite(scale) or scale <= 0:
        raise ValueError(f"scaling_factor must be a finite number > 0 (got {scaling_factor})")
    return vae, scale, shift


def _codec(vae: torch.nn.Module, scale: float, shift: float, dtype: torch.dtype) -> _Codec:
    """The encode/decode maps in scaled-latent space, on a frozen private copy of ``vae``."""
    # One private copy in the working dtype, frozen: no per-iteration copies or casts, and the
    # caller's VAE is neither modified nor handed gradients.
    # (torch.nn.Module.to, not diffusers' override: that one warns about fp32-pinned modules,
    # and here every module is meant to run in ``dtype``.)
    frozen = copy.deepcopy(vae).eval().requires_grad_(False)
    if any(p.dtype != dtype for p in frozen.parameters()):
        torch.nn.Module.to(frozen, dtype=dtype)
    return _Codec(
        encode_dist=lambda x: frozen.encode(x).latent_dist,
        decode=lambda latent: frozen.decode(latent / scale + shift).sample,
        scale=scale, shift=shift,
        device=next(iter(frozen.parameters())).device,
    )


def _check_image(image: Any, vae: torch.nn.Module, model: Any = None) -> torch.Tensor:
    in_channels = int(vae.config.in_channels)
    downsample = 2 ** (len(vae.config.block_out_channels) - 1)
    if not isinstance(image, torch.Tensor):
        raise TypeError(f"image must be a torch.Tensor of shape (B, {in_channels}, H, W) in [-1, 1], "
                        f"got {type(image).__name__}")
    if not image.is_floating_point():
        raise TypeError(f"image must be a floating tensor (got {image.dtype}); scale it to [-1, 1], "
                        "e.g. image.float() / 127.5 - 1")
    if image.dim() != 4:
        hint = " (add a batch dimension: image[None])" if image.dim() == 3 else ""
        raise ValueError(f"image must have shape (B, C, H, W), got {tuple(image.shape)}{hint}")
    if image.shape[1] != in_channels:
        raise ValueError(f"image has {image.shape[1]} channels but the VAE takes in_channels={in_channels}; "
                         "convert the image (e.g. to RGB / grayscale) first")
    h, w = image.shape[-2:]
    if h % downsample or w % downsample:
        raise ValueError(f"image size {h}x{w} is not divisible by the VAE's downsampling factor {downsample}; "
                         "crop or resize it to a multiple")
    if image.shape[0] == 0:
        raise ValueError("batch size is 0 (image has shape (0, ...)); pass at least one image")
    check_tensor_device(image, "image", next(iter(vae.parameters())).device)
    shape = getattr(model, "image_shape", None)
    if shape is not None and tuple(image.shape[1:]) != tuple(shape):
        size = ", ".join(map(str, shape))
        raise ValueError(f"image has shape {tuple(image.shape)} but {model.name}'s VAE maps (B, {size}) images to the "
                         f"{tuple(model.sample_shape)} latents its UNet takes; resize the image, e.g. "
                         f"torch.nn.functional.interpolate(image, size={tuple(shape[1:])}, mode='bilinear')")
    if not torch.isfinite(image).all():
        raise ValueError("image contains NaN or inf; check the input image before inverting")
    check_image_range(image, "images", stacklevel=4)
    return image


def _mse(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(((a.double() - b.double()) ** 2).mean())


def invert_decoder(vae_or_model: Any, image: torch.Tensor, options: DecoderInversionOptions | None = None, *,
                   scaling_factor: float | None = None, shift_factor: float | None = None,
                   generator: torch.Generator | None = None, show_progress: bool = False,
                   **kwargs: Any) -> DecoderInversionResult:
    """Latent z* with D(z*) as close to ``image`` as the decoder allows, started from the encoder.

    ``vae_or_model``: a diffusers ``AutoencoderKL`` (``scaling_factor`` defaults to
    ``vae.config.scaling_factor``) or a latent invlab ``Denoiser`` (its ``.vae`` and
    ``.scaling_factor`` are used). ``image``: (B, C, H, W) in [-1, 1].
    Options come from ``options`` and/or keyword overrides, e.g. ``method="gradient-free"``.
    ``shift_factor``: subtracted before scaling (SD3/Flux VAEs); defaults to the config's, or 0.
    ``generator`` seeds the posterior sample of ``init="encoder-sample"`` (global RNG if None).
    Runs with gradients enabled even when called under ``torch.no_grad()``;
    ``show_progress=True`` shows a tqdm bar over the iterations.
    """
    check_options("invert_decoder", kwargs, [f.name for f in dataclasses.fields(DecoderInversionOptions)])
    if options is not None and not isinstance(options, DecoderInversionOptions):
        raise TypeError(f"options must be a DecoderInversionOptions, got {type(options).__name__}")
    opts = dataclasses.replace(options, **kwargs) if options is not None else DecoderInversionOptions(**kwargs)
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")

    t0 = time.perf_counter()
    # inference_mode(False): the VAE copy and the image must be ordinary tensors to enter autograd
    # even when the caller sits under torch.inference_mode(); enable_grad() overrides no_grad().
    with torch.inference_mode(False), torch.enable_grad():
        vae, scale, shift = _resolve(vae_or_model, scaling_factor, shift_factor)
        model = vae_or_model if vae_or_model is not vae else None
        image = _check_image(image, vae, model)  # before the (possibly large) copy of the VAE
        codec = _codec(vae, scale, shift, opts.dtype)
        x = image.detach().to(device=codec.device, dtype=opts.dtype, memory_format=torch.contiguous_format).clone()
        with torch.no_grad():
            z0, target = _start(codec, x, opts.init, generator)
            rec0 = codec.decode(z0)
        z_star, losses, residuals, lrs = _optimise(codec, x, z0, target, opts, show_progress)
        with torch.no_grad():
            rec = codec.decode(z_star)

    def out(t: torch.Tensor) -> torch.Tensor:
        return t.detach().to(device=image.device, dtype=image.dtype)

    return DecoderInversionResult(
        latent=out(z_star), encoder_latent=out(z0), reconstruction=out(rec), encoder_reconstruction=out(rec0),
        losses=losses, encoder_error=_mse(rec0, x), decoder_error=_mse(rec, x),
        encoder_nmse=float(nmse(rec0, x)), decoder_nmse=float(nmse(rec, x)),
        latent_residuals=residuals, lrs=lrs,
        seconds=time.perf_counter() - t0, iterations=len(losses), method=opts.method, options=opts,
    )


def _start(codec: _Codec, x: torch.Tensor, init: str, generator: torch.Generator | None):
    """(starting latent, s * E(x)): the encoder's latent, posterior mean or a posterior sample."""
    post = codec.encode_dist(x)
    target = codec.to_latent(post.mean)  # s * E(x): also the gradient-free method's target
    if init == "encoder-mean":
        return target.clone(), target
    gen_device = generator.device if generator is not None else x.device
    noise = torch.randn(post.mean.shape, generator=generator, device=gen_device, dtype=post.mean.dtype)
    return codec.to_latent(post.mean + post.std * noise.to(x.device)), target


def _optimise(codec: _Codec, x: torch.Tensor, z0: torch.Tensor, target: torch.Tensor, opts: DecoderInversionOptions,
              show_progress: bool):
    """The iterations: a direction for z, fed to an optimizer on the shared lr schedule."""
    z = z0.clone().requires_grad_(True)
    if opts.method == "adam":
        optim: torch.optim.Optimizer = torch.optim.Adam([z], lr=opts.lr)
    elif opts.gf_update == "adam":
        optim = torch.optim.Adam([z], lr=opts.rho)
    else:
        optim = torch.optim.SGD([z], lr=opts.rho)
    sched = torch.optim.lr_scheduler.LambdaLR(optim, lambda k: lr_factor(k, opts.iterations, opts.warmup, opts.schedule))

    losses: list[float] = []
    residuals: list[float] = []
    lrs: list[float] = []
    for _ in progress(range(opts.iterations), show_progress, f"decoder inversion ({opts.method})"):
        optim.zero_grad(set_to_none=True)
        if opts.method == "adam":
            # g = d/dz ||D(z/s) - x||^2 (summed or averaged over entries)
            sq = (codec.decode(z) - x) ** 2
            (sq.sum() if opts.reduction == "sum" else sq.mean()).backward()
            losses.append(float(sq.detach().double().mean()))
        else:
            # g = s E(D(z/s)) - s E(x): the forward step's direction, no backward pass
            with torch.no_grad():
                rec = codec.decode(z)
                z.grad = codec.to_latent(codec.encode_dist(rec).mean) - target
                losses.append(_mse(rec, x))
                residuals.append(float(z.grad.double().pow(2).mean().sqrt()))
        if not math.isfinite(losses[-1]):
            raise FloatingPointError(f"decoder inversion diverged at iteration {len(losses) - 1} (loss {losses[-1]}); "
                                     "lower lr / rho, or use dtype=torch.float32")
        lrs.append(optim.param_groups[0]["lr"])
        optim.step()
        sched.step()
    return z.detach(), losses, residuals, lrs


__all__ = ["DecoderInversionOptions", "DecoderInversionResult", "invert_decoder", "lr_factor"]
