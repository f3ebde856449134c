"""A quality check that can fail: do class-conditional samples look like the digit asked for?

A small classifier (scikit-learn's RBF support-vector machine) is trained on the real 8x8
digits of the training split; samples drawn at ``guidance`` (default 3) for each class are
decoded (latent models), average-pooled down to 8x8 and classified. The check passes when at
least ``threshold`` (default 90%) of them are classified as the class that was requested.

    python -m invlab.quality digits digits-latent            # prints the report, exits 1 on failure
    python -m invlab.quality digits --grid figures/digits_samples.png
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F


def to_8x8(images: torch.Tensor) -> torch.Tensor:
    """Average-pool ``(B, 1, H, W)`` images (H, W multiples of 8) down to ``(B, 1, 8, 8)``."""
    if images.dim() != 4 or images.shape[1] != 1 or images.shape[-1] % 8 or images.shape[-2] % 8:
        raise ValueError(f"images must have shape (B, 1, 8k, 8k) (got {tuple(images.shape)}); decode latents first")
    return F.adaptive_avg_pool2d(images.float(), (8, 8))


def _features(images_8x8: torch.Tensor) -> np.ndarray:
    """[-1, 1] -> scikit-learn's 0..16 intensity scale, flattened."""
    return ((images_8x8.clamp(-1, 1) + 1) * 8).reshape(len(images_8x8), -1).cpu().numpy()


@lru_cache(maxsize=1)
def digit_classifier(seed: int = 0):
    """An SVM on the real 8x8 training digits (the same digits seen after the 16x16 / 32x32
    upsampling and pooling the check applies are added, so it judges shapes, not blur)."""
    from sklearn.svm import SVC

    from .data import digits_images

    feats, labels = [], []
    for size in (8, 16, 32):
        x, y = digits_images(size=size, split="train", seed=seed)
        feats.append(_features(to_8x8(x)))
        labels.append(y.numpy())
    clf = SVC(C=10.0, gamma="scale")
    clf.fit(np.concatenate(feats), np.concatenate(labels))
    return clf


def classify(images: torch.Tensor) -> np.ndarray:
    """Predicted class of each ``(B, 1, H, W)`` image in [-1, 1]."""
    return digit_classifier().predict(_features(to_8x8(images)))


def classifier_accuracy(size: int = 8) -> float:
    """Accuracy of :func:`digit_classifier` on the real validation digits at ``size``."""
    from .data import digits_images

    x, y = digits_images(size=size, split="val")
    return float((classify(x) == y.numpy()).mean())


@dataclass
class QualityReport:
    model: str
    guidance: float
    steps: int
    per_class: int
    accuracy: float
    threshold: float
    class_accuracy: list[float] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def passed(self) -> bool:
        return self.accuracy >= self.threshold

    def __str__(self) -> str:
        verdict = "PASS" if self.passed else "FAIL"
        per = " ".join(f"{c}:{a:.0%}" for c, a in enumerate(self.class_accuracy))
        return (f"{self.model}: {self.accuracy:.1%} of {self.per_class * len(self.class_accuracy)} samples at "
                f"guidance {self.guidance:g} ({self.steps} DDIM steps) classified as requested "
                f"[{verdict}, threshold {self.threshold:.0%}] per class {per}")


def class_samples(model, per_class: int = 20, guidance: float = 3.0, steps: int = 25, seed: int = 0,
                  solver: str = "ddim") -> tuple[torch.Tensor, torch.Tensor]:
    """``per_class`` samples of each class (images in [-1, 1], decoded for latent models) and their classes."""
    from . import noise, sample

    if not getattr(model, "is_conditional", False):
        raise ValueError(f"{model.name} is unconditional; the class check needs a class-conditional model")
    if isinstance(per_class, bool) or not isinstance(per_class, int) or per_class <= 0:
        raise ValueError(f"per_class must be a positive int (got {per_class!r}); e.g. per_class=20")
    classes = torch.arange(model.num_classes).repeat_interleave(per_class)
    z = noise(model, len(classes), seed=seed, dtype=torch.float32)
    with torch.no_grad():
        x = sample(model, z, steps=steps, solver=solver, guidance=guidance, cond=classes).final
        if model.is_latent:
            x = model.decode(x)
    return x.clamp(-1, 1), classes


def check_class_quality(model, per_class: int = 20, guidance: float = 3.0, steps: int = 25, seed: int = 0,
                        threshold: float = 0.9) -> QualityReport:
    """Sample each class at ``guidance`` and measure how often the classifier agrees."""
    import time

    t0 = time.perf_counter()
    x, classes = class_samples(model, per_class, guidance, steps, seed)
    hit = classify(x) == classes.numpy()
    per = [float(hit[classes.numpy() == c].mean()) for c in range(model.num_classes)]
    return QualityReport(model.name, float(guidance), steps, per_class, float(hit.mean()), threshold, per,
                         time.perf_counter() - t0)


def save_grid(images: torch.Tensor, path: str | Path, nrow: int, scale: int = 4) -> Path:
    """Write images in [-1, 1] as one grayscale PNG grid (``nrow`` images per row)."""
    from PIL import Image

    x = ((images.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).cpu()[:, 0]
    n, h, w = x.shape
    rows = (n + nrow - 1) // nrow
    pad = 1
    canvas = torch.full((rows * (h + pad) + pad, nrow * (w + pad) + pad), 255, dtype=torch.uint8)
    for i in range(n):
        r, c = divmod(i, nrow)
        canvas[pad + r * (h + pad): pad + r * (h + pad) + h, pad + c * (w + pad): pad + c * (w + pad) + w] = x[i]
    img = Image.fromarray(canvas.numpy(), mode="L").resize((canvas.shape[1] * scale, canvas.shape[0] * scale),
                                                           Image.NEAREST)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)
    return path


def main(argv: list[str] | None = None) -> int:
    from .models import load_model

    p = argparse.ArgumentParser(prog="python -m invlab.quality", description=__doc__.split("\n\n")[0])
    p.add_argument("models", nargs="+", help="class-conditional model names, e.g. digits digits-latent")
    p.add_argument("--per-class", type=int, default=20)
    p.add_argument("--guidance", type=float, default=3.0)
    p.add_argument("--steps", type=int, default=25)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threshold", type=float, default=0.9)
    p.add_argument("--grid", type=Path, action="append", default=[],
                   help="write a sample grid (rows = classes) per model, in the order of the models")
    p.add_argument("--json", type=Path, help="write the reports as JSON")
    a = p.parse_args(argv)
    print(f"classifier: val accuracy {classifier_accuracy(8):.1%} (8x8), {classifier_accuracy(16):.1%} "
          f"(16x16 pooled), {classifier_accuracy(32):.1%} (32x32 pooled)")
    reports = []
    for i, name in enumerate(a.models):
        model = load_model(name)
        rep = check_class_quality(model, a.per_class, a.guidance, a.steps, a.seed, a.threshold)
        print(rep)
        reports.append(rep)
        if i < len(a.grid):
            x, _ = class_samples(model, min(a.per_class, 10), a.guidance, a.steps, a.seed)
            print("grid ->", save_grid(x, a.grid[i], nrow=min(a.per_class, 10)))
    if a.json:
        a.json.write_text(json.dumps([{**asdict(r), "passed": r.passed} for r in reports], indent=1) + "\n")
    return 0 if all(r.passed for r in reports) else 1


if __name__ == "__main__":
    sys.exit(main())
