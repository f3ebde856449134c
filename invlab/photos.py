"""Real photographs that ship inside packages, cut into RGB crops: the data of the ``"photos"`` model.

Ten colour photographs, one class each, none downloaded: eight bundled in scikit-image's wheel
(the files under ``skimage/data/``, read directly, so ``skimage.data``'s downloader is never
touched) and the two in scikit-learn's (``sklearn.datasets.load_sample_image``).

=====  ==============  =========================================================
class  name            source file
=====  ==============  =========================================================
0      ``astronaut``   scikit-image ``astronaut.png`` (Eileen Collins, NASA)
1      ``cat``         scikit-image ``chelsea.png`` (Chelsea the cat)
2      ``coffee``      scikit-image ``coffee.png`` (a cup of coffee)
3      ``rocket``      scikit-image ``rocket.jpg`` (SpaceX Falcon 9 on the pad)
4      ``motorcycle``  scikit-image ``motorcycle_left.png`` (stereo pair, left view)
5      ``hubble``      scikit-image ``hubble_deep_field.jpg`` (Hubble eXtreme Deep Field)
6      ``retina``      scikit-image ``retina.jpg`` (human retina, fundus photograph)
7      ``ihc``         scikit-image ``ihc.png`` (immunohistochemistry stain)
8      ``china``       scikit-learn ``china.jpg`` (a temple in China)
9      ``flower``      scikit-learn ``flower.jpg`` (a flower)
=====  ==============  =========================================================

Each picture is resized (antialiased bilinear) so that its short side is :data:`BASE` = 176
pixels and scaled to [-1, 1]. **Held-out split:** the right-most :data:`HELDOUT_BAND` = 72
columns of every picture (at the base scale; the same fraction of the width at other scales)
are never cropped for training; held-out crops (:func:`heldout_crops`) lie entirely inside
that band. Training crops (:func:`train_crops`) are 64x64, drawn from a seeded generator:
the class, a scale jitter in [0.9, 1.2] (the picture is resized from the original at that
scale), a position inside the training region and a horizontal flip with probability 1/2.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

#: class id -> name (the class-conditional ``"photos"`` model takes these ids)
PHOTO_CLASSES: tuple[str, ...] = ("astronaut", "cat", "coffee", "rocket", "motorcycle", "hubble", "retina",
                                  "ihc", "china", "flower")
_SOURCES: dict[str, tuple[str, str]] = {
    "astronaut": ("skimage", "astronaut.png"), "cat": ("skimage", "chelsea.png"),
    "coffee": ("skimage", "coffee.png"), "rocket": ("skimage", "rocket.jpg"),
    "motorcycle": ("skimage", "motorcycle_left.png"), "hubble": ("skimage", "hubble_deep_field.jpg"),
    "retina": ("skimage", "retina.jpg"), "ihc": ("skimage", "ihc.png"),
    "china": ("sklearn", "china.jpg"), "flower": ("sklearn", "flower.jpg"),
}
CROP = 64           # crop side (pixels)
BASE = 176          # short side of every picture at scale 1
HELDOUT_BAND = 72   # right-most columns (at scale 1) reserved for held-out crops
SCALES = (0.9, 1.2)  # range of the training scale jitter
_N_SCALES = 7       # the jitter takes one of this many evenly spaced scales (resized once each)


def _read_original(name: str) -> np.ndarray:
    """(H, W, 3) uint8 array of the bundled photograph ``name`` (no network)."""
    kind, fname = _SOURCES[name]
    if kind == "sklearn":
        from sklearn.datasets import load_sample_image

        return np.asarray(load_sample_image(fname))
    try:
        import skimage
    except ImportError as e:  # pragma: no cover - scikit-image is a dependency
        raise ImportError("the photos data needs scikit-image (pip install scikit-image): its wheel "
                          "bundles the photographs") from e
    from PIL import Image

    path = Path(skimage.__file__).parent / "data" / fname
    if not path.is_file():
        raise FileNotFoundError(f"{path} is not in this scikit-image install; the photos data reads the "
                                "photographs bundled in the scikit-image wheel (>= 0.19)")
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"))


@lru_cache(maxsize=None)
def _original(name: str) -> torch.Tensor:
    arr = _read_original(name)
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).float().div(127.5).sub(1.0)


def _size_at(name: str, scale: float) -> tuple[int, int]:
    _, h, w = _original(name).shape
    k = BASE * scale / min(h, w)
    return max(CROP, round(h * k)), max(CROP, round(w * k))


@lru_cache(maxsize=None)
def picture(name: str, scale: float = 1.0) -> torch.Tensor:
    """The photograph ``name`` as (3, H, W) float32 in [-1, 1], short side ``BASE * scale``."""
    if name not in _SOURCES:
        raise ValueError(f"unknown photo {name!r}; one of {list(PHOTO_CLASSES)}")
    x = _original(name)[None]
    out = F.interpolate(x, size=_size_at(name, scale), mode="bilinear", antialias=True, align_corners=False)
    return out[0].clamp(-1, 1).contiguous()


def _train_width(name: str, scale: float) -> int:
    """Columns [0, w) of the picture at ``scale`` that training crops may use."""
    _, w = _size_at(name, scale)
    _, w1 = _size_at(name, 1.0)
    return int(np.floor((w1 - HELDOUT_BAND) / w1 * w))


def _scales() -> list[float]:
    return [float(s) for s in np.linspace(SCALES[0], SCALES[1], _N_SCALES)]


@dataclass
class Crops:
    """Crops ``images`` (N, 3, 64, 64) float32 in [-1, 1] with their class ids ``labels`` (N,)."""

    images: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return len(self.labels)


def train_crops(per_class: int, seed: int = 0) -> Crops:
    """``per_class`` random training crops of every class (class-major order), reproducible from ``seed``:
    scale jitter, position inside the training region (never the held-out band), horizontal flip."""
    if int(per_class) <= 0:
        raise ValueError(f"per_class must be a positive integer (got {per_class})")
    gen = torch.Generator().manual_seed(seed)
    scales = _scales()
    images, labels = [], []
    for c, name in enumerate(PHOTO_CLASSES):
        for _ in range(int(per_class)):
            s = scales[int(torch.randint(len(scales), (1,), generator=gen))]
            pic = picture(name, s)
            h, wt = pic.shape[1], _train_width(name, s)
            y0 = int(torch.randint(h - CROP + 1, (1,), generator=gen))
            x0 = int(torch.randint(wt - CROP + 1, (1,), generator=gen))
            crop = pic[:, y0:y0 + CROP, x0:x0 + CROP]
            if bool(torch.rand((), generator=gen) < 0.5):
                crop = crop.flip(-1)
            images.append(crop)
            labels.append(c)
    return Crops(torch.stack(images).contiguous(), torch.tensor(labels, dtype=torch.long))


def heldout_crops(rows: int = 4, cols: int = 2) -> Crops:
    """Held-out crops at scale 1: a ``rows`` x ``cols`` grid of positions spanning the held-out band
    (the right-most ``HELDOUT_BAND`` columns) of every picture; no pixel of them is ever trained on."""
    images, labels = [], []
    for c, name in enumerate(PHOTO_CLASSES):
        pic = picture(name, 1.0)
        h, w = pic.shape[1:]
        for y0 in np.linspace(0, h - CROP, rows).round().astype(int):
            for x0 in np.linspace(w - HELDOUT_BAND, w - CROP, cols).round().astype(int):
                images.append(pic[:, y0:y0 + CROP, x0:x0 + CROP])
                labels.append(c)
    return Crops(torch.stack(images).contiguous(), torch.tensor(labels, dtype=torch.long))


def class_id(name_or_id: int | str) -> int:
    """A class name of :data:`PHOTO_CLASSES` (or an id 0..9) -> its id."""
    if isinstance(name_or_id, str):
        if name_or_id not in PHOTO_CLASSES:
            raise ValueError(f"unknown photos class {name_or_id!r}; one of {list(PHOTO_CLASSES)}")
        return PHOTO_CLASSES.index(name_or_id)
    if isinstance(name_or_id, bool) or not isinstance(name_or_id, (int, np.integer)):
        raise TypeError(f"a photos class is a name or an int id (got {type(name_or_id).__name__}); "
                        f"e.g. 'cat' or {PHOTO_CLASSES.index('cat')}")
    if not 0 <= int(name_or_id) < len(PHOTO_CLASSES):
        raise ValueError(f"photos class id {name_or_id} is out of range; ids 0..{len(PHOTO_CLASSES) - 1} "
                         f"({', '.join(PHOTO_CLASSES)})")
    return int(name_or_id)


@torch.no_grad()
def reconstruction_table(roundtrip, crops: Crops | None = None, batch: int = 40) -> dict:
    """PSNR (dB, mean over crops) and SSIM of ``roundtrip(images).clamp(-1, 1)`` against the images, per class
    and over all, on ``crops`` (default: :func:`heldout_crops`). ``roundtrip`` maps (B, 3, 64, 64) in
    [-1, 1] to its reconstruction, e.g. ``lambda x: model.decode(model.encode(x))``."""
    from .metrics import psnr, ssim

    crops = heldout_crops() if crops is None else crops
    rec = torch.cat([roundtrip(crops.images[i:i + batch]) for i in range(0, len(crops), batch)]).clamp(-1, 1)
    rec = rec.to(crops.images.dtype)
    out = {"classes": {}, "n": len(crops)}
    for c, name in enumerate(PHOTO_CLASSES):
        m = crops.labels == c
        if m.any():
            out["classes"][name] = {"psnr_db": float(psnr(rec[m], crops.images[m]).mean()),
                                    "ssim": float(ssim(rec[m], crops.images[m])), "n": int(m.sum())}
    out["psnr_db"] = float(psnr(rec, crops.images).mean())
    out["ssim"] = float(ssim(rec, crops.images))
    return out


__all__ = ["BASE", "CROP", "Crops", "HELDOUT_BAND", "PHOTO_CLASSES", "class_id", "heldout_crops", "picture",
           "reconstruction_table", "train_crops"]
