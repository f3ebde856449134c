"""``invlab.watermark``: Tree-Ring watermarks in the initial noise, detected by inversion.

Tree-Ring (Wen et al., NeurIPS 2023) plants a key in the Fourier spectrum of the initial noise z_T
and detects it by inverting the generated image back to z_T. Detection is only as good as the
inversion: whatever inversion error you saw in notebook 03 is the margin the detector loses.

* **Key** (:func:`ring_key`): draw ``g ~ N(0, I)`` (seed 999999, as the reference), take its centred
  spectrum ``G = fftshift(fft2(g))`` and, for radius r = R, R-1, ..., 1, set every coefficient within
  distance r of the centre to ``G[row 0, column r]`` (inner discs overwrite outer ones): constant
  complex values on concentric rings. :func:`constant_keys` builds the seed paper's multi-key
  variant (real constants per ring).
* **Mask**: the disc of radius R on one channel (``channel=-1``: all channels).
* **Injection** (:func:`inject`): replace the masked coefficients of z_T's centred spectrum by the key's
  and keep the real part of the inverse FFT.
* **Detection** (:func:`detect`): invert the image *without* its condition (guidance 1, the
  unconditional branch: the detector does not know the prompt), then per image the complex-L1
  distance ``mean |F(z^)[M] - K[M]|`` (:func:`distance`) and the p-value of the non-central chi-square
  test (:func:`p_value`): how likely a Gaussian spectrum is to lie this close to the key.

Sizes: the reference uses radius 10 on a 64x64 latent (SD's); :func:`default_radius` keeps that
fraction of the side (radius 3 at 16x16). The mask is centred on the DC bin by default;
``centre="reference"`` reproduces the reference code's mask, one row above it.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import torch

#: the reference's key seed
KEY_SEED = 999999
#: three multi-key vectors for :func:`constant_keys` (real ring values in units of the key scale; rings
#: 1..R take the first R entries, ring 1 the innermost). Ours, in the seed paper's range 0.6-1.4: its
#: three hard-coded vectors differ from one another in the same way, ring by ring
MULTI_KEYS: tuple[tuple[float, ...], ...] = (
    (1.0, 0.6, 1.4, 0.8, 1.2, 1.0, 0.7, 1.3, 0.9, 1.1),
    (0.6, 1.4, 0.8, 1.2, 1.0, 0.7, 1.3, 0.9, 1.1, 1.0),
    (1.4, 0.8, 1.2, 0.6, 0.7, 1.3, 1.0, 1.1, 0.9, 0.6),
)


@dataclass
class Key:
    """A watermark key: ``values`` (complex, (C, H, W), the centred spectrum's target values) and
    ``mask`` (bool, (C, H, W): where the key is written and read)."""

    values: torch.Tensor
    mask: torch.Tensor
    radius: int
    channel: int
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.mask.shape)


def default_radius(side: int) -> int:
    """The reference's radius 10 on a 64-wide latent, kept as a fraction of the side (at least 2)."""
    return max(2, math.ceil(10 * side / 64))


def _check_shape(shape: Sequence[int]) -> tuple[int, int, int]:
    shape = tuple(int(s) for s in shape)
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"a key is built for one sample's shape (C, H, W), got {shape}; pass model.sample_shape")
    return shape  # type: ignore[return-value]


def _disc(h: int, w: int, r: float, centre: str) -> torch.Tensor:
    """Bool (H, W): distance to the centre <= r; the centre is the DC bin of the fftshifted spectrum
    (``"dc"``) or the reference's (``"reference"``: its row axis is flipped, so one row above on even sizes)."""
    ys = torch.arange(h, dtype=torch.float64)
    if centre == "reference":
        ys = ys.flip(0)
    elif centre != "dc":
        raise ValueError(f"centre must be 'dc' or 'reference' (got {centre!r})")
    xs = torch.arange(w, dtype=torch.float64)
    return (xs[None, :] - w // 2) ** 2 + (ys[:, None] - h // 2) ** 2 <= r * r


def _mask(shape: tuple[int, int, int], radius: int, channel: int, centre: str) -> torch.Tensor:
    c, h, w = shape
    if not -1 <= channel < c:
        raise ValueError(f"channel {channel} is out of range for {c} channel(s); use 0..{c - 1} or -1 for all")
    if not 1 <= radius <= min(h, w) // 2 - 1:
        raise ValueError(f"radius {radius} does not fit a {h}x{w} spectrum; use 1..{min(h, w) // 2 - 1} "
                         f"(default_radius({min(h, w)}) = {default_radius(min(h, w))})")
    disc = _disc(h, w, radius, centre)
    mask = torch.zeros(shape, dtype=torch.bool)
    if channel == -1:
        mask[:] = disc
    else:
        mask[channel] = disc
    return mask


def spectrum(x: torch.Tensor) -> torch.Tensor:
    """Centred 2-D spectrum over the last two axes (complex128)."""
    return torch.fft.fftshift(torch.fft.fft2(x.to(torch.float64)), dim=(-2, -1))


def ring_key(shape: Sequence[int], radius: int | None = None, channel: int = 0, seed: int = KEY_SEED,
             centre: str = "dc") -> Key:
    """Tree-Ring's ring key for samples of ``shape`` (C, H, W) (see the module docstring)."""
    c, h, w = _check_shape(shape)
    radius = default_radius(min(h, w)) if radius is None else int(radius)
    mask = _mask((c, h, w), radius, channel, centre)
    gen = torch.Generator().manual_seed(int(seed))
    g = spectrum(torch.randn((c, h, w), generator=gen, dtype=torch.float64))
    values = torch.zeros((c, h, w), dtype=torch.complex128)
    for r in range(radius, 0, -1):
        disc = _disc(h, w, r, centre)
        values[:, disc] = g[:, 0, r][:, None]
    return Key(values, mask, radius, channel, {"kind": "ring", "seed": int(seed), "centre": centre})


def constant_keys(shape: Sequence[int], radius: int | None = None, channel: int = 0,
                  vectors: Sequence[Sequence[float]] = MULTI_KEYS, scale: float | None = None,
                  centre: str = "dc") -> list[Key]:
    """The seed paper's multi-key variant: ring i (1 = innermost) holds the real constant ``scale * v[i-1]``.
    ``scale`` defaults to 1.25 * sqrt(H * W), the reference's 80 at 64x64 kept relative to the spectrum's
    typical magnitude (|F| of white noise is sqrt(H W))."""
    c, h, w = _check_shape(shape)
    radius = default_radius(min(h, w)) if radius is None else int(radius)
    scale = 1.25 * math.sqrt(h * w) if scale is None else float(scale)
    mask = _mask((c, h, w), radius, channel, centre)
    keys = []
    for k, vec in enumerate(vectors):
        if len(vec) < radius:
            raise ValueError(f"key vector {k} has {len(vec)} ring values; radius {radius} needs {radius}")
        values = torch.zeros((c, h, w), dtype=torch.complex128)
        for r in range(radius, 0, -1):
            values[:, _disc(h, w, r, centre)] = scale * float(vec[r - 1])
        keys.append(Key(values, mask, radius, channel, {"kind": "constant", "vector": list(vec), "scale": scale}))
    return keys


def _check_latents(z: torch.Tensor, key: Key, name: str) -> torch.Tensor:
    if not isinstance(z, torch.Tensor) or z.dim() != 4 or tuple(z.shape[1:]) != key.shape:
        got = tuple(z.shape) if isinstance(z, torch.Tensor) else type(z).__name__
        raise ValueError(f"{name} must be a (B, {', '.join(map(str, key.shape))}) tensor for this key (got {got}); "
                         "build the key from model.sample_shape")
    return z


def inject(z_T: torch.Tensor, key: Key) -> torch.Tensor:
    """Write ``key`` into the centred spectrum of every sample of ``z_T`` (B, C, H, W); returns the real part
    of the inverse FFT in ``z_T``'s dtype (the imaginary residue is dropped, as in the reference)."""
    _check_latents(z_T, key, "z_T")
    f = spectrum(z_T)
    m = key.mask.to(z_T.device)
    f = torch.where(m, key.values.to(z_T.device), f)
    out = torch.fft.ifft2(torch.fft.ifftshift(f, dim=(-2, -1))).real
    return out.to(z_T.dtype)


def distance(z: torch.Tensor, key: Key) -> torch.Tensor:
    """Per sample: the mean complex-L1 distance ``|F(z)[M] - K[M]|`` over the mask (float64, (B,))."""
    _check_latents(z, key, "z")
    f = spectrum(z)
    m = key.mask.to(z.device)
    diff = (f - key.values.to(z.device)).abs()
    return (diff * m).flatten(1).sum(1) / m.sum()


def _log_gammainc_lower(a: float, x: float) -> float:
    """log P(a, x), the regularised lower incomplete gamma, by its series (accurate where P underflows)."""
    if x <= 0:
        return -math.inf
    term, total, n = 1.0, 1.0, 0
    while term > 1e-17 * total and n < 100000:
        n += 1
        term *= x / (a + n)
        total += term
    return a * math.log(x) - x - math.lgamma(a + 1) + math.log(total)


def _log_chi2_cdf(x: float, df: float) -> float:
    from scipy.special import gammainc

    p = float(gammainc(df / 2, x / 2))
    return math.log(p) if p > 1e-280 else _log_gammainc_lower(df / 2, x / 2)


def log_ncx2_cdf(x: float, df: float, nc: float) -> float:
    """log CDF of the non-central chi-square (df, non-centrality nc) at x, summed as a Poisson mixture
    of central chi-squares in log space (a library logcdf underflows for a watermarked spectrum)."""
    from scipy.special import logsumexp

    if nc <= 0:
        return _log_chi2_cdf(x, df)
    half = nc / 2
    centre = int(half)
    width = int(12 * math.sqrt(half) + 40)
    terms = []
    for j in range(max(0, centre - width), centre + width + 1):
        log_pois = -half + j * math.log(half) - math.lgamma(j + 1)
        terms.append(log_pois + _log_chi2_cdf(x, df + 2 * j))
    return float(logsumexp(terms))


def p_value(z: torch.Tensor, key: Key, log: bool = False) -> torch.Tensor:
    """Per sample: Tree-Ring's p-value. y = [Re, Im] of the masked spectrum (2|M| numbers), sigma^2 their
    unbiased variance, chi = sum ((y - k) / sigma)^2, and p = P(chi' <= chi) for chi' non-central chi-square
    with 2|M| degrees of freedom and non-centrality sum k^2 / sigma^2: the chance that a Gaussian spectrum
    lies this close to the key. Small p: watermarked. ``log=True`` returns log p (no underflow)."""
    _check_latents(z, key, "z")
    f = spectrum(z)
    m = key.mask.to(z.device)
    k = key.values.to(z.device)[m]
    kk = torch.cat([k.real, k.imag])
    out = []
    for b in range(z.shape[0]):
        y = f[b][m]
        yy = torch.cat([y.real, y.imag])
        var = float(yy.var(unbiased=True))
        if not var > 0:
            raise ValueError("the masked spectrum has zero variance; p_value needs a noise-like latent")
        chi = float(((yy - kk) ** 2).sum() / var)
        nc = float((kk ** 2).sum() / var)
        out.append(log_ncx2_cdf(chi, yy.numel(), nc))
    lp = torch.tensor(out, dtype=torch.float64)
    return lp if log else lp.exp()


# ---------------------------------------------------------------------------- detection by inversion
@dataclass
class Detection:
    """What :func:`detect` returns: per image ``distance`` and ``log_p`` (float64, (B,)), the inverted
    latents ``z_hat`` and the inversion's NFE."""

    distance: torch.Tensor
    log_p: torch.Tensor
    z_hat: torch.Tensor
    nfe: int

    def watermarked(self, alpha: float = 0.01) -> torch.Tensor:
        """Bool (B,): p < alpha."""
        return self.log_p < math.log(alpha)


def detect(model, images: torch.Tensor, key: Key, steps: int = 50, solver: str = "ddim", method: str = "naive",
           **method_options: Any) -> Detection:
    """Invert ``images`` (in the model's sample space: latents for latent models) without their condition
    (guidance 1, the unconditional input: the detector does not know the prompt or class) with ``method``
    on ``solver``'s grid, then score the inverted noise against ``key``."""
    import warnings

    from .inversion import invert
    from .trace import ConvergenceWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        inv = invert(model, images, steps, solver, method, 1.0, None, **method_options)
    z = inv.final
    return Detection(distance(z, key), p_value(z, key, log=True), z, inv.nfe)


# ---------------------------------------------------------------------------- attacks (on images in [-1, 1])
def _to_unit(x: torch.Tensor) -> torch.Tensor:
    return ((x.to(torch.float64) + 1) / 2).clamp(0, 1)


def _from_unit(u: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return (u * 2 - 1).to(like.dtype)


def attack_noise(x: torch.Tensor, std: float = 0.1, seed: int = 0) -> torch.Tensor:
    """Gaussian noise of ``std`` on the [0, 1] scale (the reference's sigma = 0.1), clipped."""
    gen = torch.Generator().manual_seed(seed)
    u = _to_unit(x)
    return _from_unit((u + std * torch.randn(u.shape, generator=gen, dtype=u.dtype)).clamp(0, 1), x)


def attack_blur(x: torch.Tensor, radius: float = 1.0) -> torch.Tensor:
    """Gaussian blur with standard deviation ``radius`` pixels (Pillow's GaussianBlur radius)."""
    from PIL import ImageFilter

    return _pil_map(x, lambda im: im.filter(ImageFilter.GaussianBlur(radius)))


def attack_jpeg(x: torch.Tensor, quality: int = 25) -> torch.Tensor:
    """A JPEG round trip through Pillow at ``quality``."""
    def rt(im):
        from PIL import Image

        buf = io.BytesIO()
        im.save(buf, format="JPEG", quality=int(quality))
        buf.seek(0)
        with Image.open(buf) as out:
            return out.copy()
    return _pil_map(x, rt)


def attack_crop(x: torch.Tensor, scale: float = 0.75) -> torch.Tensor:
    """Crop the central ``scale`` fraction of each side and resize back (bilinear, antialiased)."""
    h, w = x.shape[-2:]
    ch, cw = max(1, round(h * scale)), max(1, round(w * scale))
    y0, x0 = (h - ch) // 2, (w - cw) // 2
    crop = x[..., y0:y0 + ch, x0:x0 + cw].to(torch.float64)
    out = torch.nn.functional.interpolate(crop, size=(h, w), mode="bilinear", antialias=True, align_corners=False)
    return out.to(x.dtype)


def attack_brightness(x: torch.Tensor, factor: float = 1.5) -> torch.Tensor:
    """Multiply brightness on the [0, 1] scale by ``factor`` (clipped), as a colour-jitter stand-in."""
    return _from_unit((_to_unit(x) * factor).clamp(0, 1), x)


def _pil_map(x: torch.Tensor, fn: Callable) -> torch.Tensor:
    from PIL import Image

    u8 = (_to_unit(x) * 255).round().to(torch.uint8).cpu().numpy()
    out = []
    for img in u8:
        arr = img[0] if img.shape[0] == 1 else np.moveaxis(img, 0, -1)
        res = np.asarray(fn(Image.fromarray(arr)), dtype=np.float64) / 255
        res = res[None] if res.ndim == 2 else np.moveaxis(res, -1, 0)
        out.append(torch.from_numpy(res.copy()))
    return _from_unit(torch.stack(out), x).to(x.device)


#: attack name -> (function, its reference-like setting); "none" leaves the image alone
ATTACKS: dict[str, tuple[Callable, dict[str, Any]]] = {
    "none": (lambda x: x, {}),
    "noise": (attack_noise, {"std": 0.1}),
    "blur": (attack_blur, {"radius": 1.0}),
    "jpeg": (attack_jpeg, {"quality": 25}),
    "crop": (attack_crop, {"scale": 0.75}),
    "brightness": (attack_brightness, {"factor": 1.5}),
}


def attack(x: torch.Tensor, name: str, **options: Any) -> torch.Tensor:
    """Apply the attack ``name`` of :data:`ATTACKS` to images in [-1, 1] (its reference-like setting
    unless ``options`` override it)."""
    if name not in ATTACKS:
        raise ValueError(f"unknown attack {name!r}; one of {list(ATTACKS)}")
    fn, defaults = ATTACKS[name]
    return fn(x, **{**defaults, **options})


# ---------------------------------------------------------------------------- ROC
def roc(scores_marked: torch.Tensor, scores_clean: torch.Tensor) -> dict[str, float]:
    """ROC of a detector whose *low* score means watermarked (distance, log p): AUC and the TPR at
    FPR < 1 % (strict, the reference's rule), with the threshold that achieves it."""
    from sklearn.metrics import roc_auc_score, roc_curve

    s = np.concatenate([-np.asarray(scores_marked, dtype=np.float64), -np.asarray(scores_clean, dtype=np.float64)])
    y = np.concatenate([np.ones(len(scores_marked)), np.zeros(len(scores_clean))])
    fpr, tpr, thr = roc_curve(y, s)
    ok = fpr < 0.01
    i = int(np.flatnonzero(ok)[-1]) if ok.any() else 0
    return {"auc": float(roc_auc_score(y, s)), "tpr_at_1fpr": float(tpr[i]) if ok.any() else 0.0,
            "threshold": float(-thr[i]) if ok.any() else float("nan")}


def classify(z: torch.Tensor, keys: Sequence[Key]) -> torch.Tensor:
    """The key with the smallest complex-L1 distance for each sample (ties go to the first)."""
    d = torch.stack([distance(z, k) for k in keys], 1)
    return d.argmin(1)


__all__ = ["ATTACKS", "Detection", "KEY_SEED", "Key", "MULTI_KEYS", "attack", "attack_blur", "attack_brightness",
           "attack_crop", "attack_jpeg", "attack_noise", "classify", "constant_keys", "default_radius", "detect",
           "distance", "inject", "log_ncx2_cdf", "p_value", "ring_key", "roc", "spectrum"]
