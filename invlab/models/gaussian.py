"""Analytic models: Gaussian mixtures whose eps is known in closed form.

Data: ``p0(x) = sum_k w_k N(x; mu_k, diag(s_k^2))``. Under the VP forward process the
marginal at a level (alpha, sigma) is again a mixture,
``p_t(x) = sum_k w_k N(x; alpha mu_k, diag(alpha^2 s_k^2 + sigma^2))``, so the score and the
exact noise prediction ``eps*(x) = -sigma * grad log p_t(x)`` are closed form:

    v_k   = alpha^2 s_k^2 + sigma^2                        (per dimension)
    r_k   = softmax_k( log w_k - 1/2 sum_d [(x - alpha mu_k)^2 / v_k + log v_k] )
    eps*  = sigma * sum_k r_k (x - alpha mu_k) / v_k

Class conditioning restricts the sum to the components of one class, so classifier-free
guidance means something: the unconditional model is the full mixture. These models are
"perfect networks": every error an inversion shows on them is the algorithm's, not the
network's.

Precision and device: the parameters are stored in float64 (``model.dtype``) on ``model.device``
(``device=`` of the factories, or ``model.to(device)``); eps is computed in the dtype of the
latents passed in (float64 from ``invlab.noise`` by default; float32 / float16 latents compute
in float32 / float16), on their device. The factories therefore take no ``dtype=`` other than
float64: choose the compute precision with the latents' dtype.
"""

from __future__ import annotations

import math
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch

from ..schedules import NoiseSchedule
from ..checks import check_device, check_dtype
from .base import Denoiser, check_class_cond

ASSETS = Path(__file__).resolve().parent.parent / "assets"
DIGITS_ASSET = ASSETS / "gmm_digits.safetensors"


class GaussianMixture(Denoiser):
    """A class-conditional Gaussian mixture with diagonal covariances and exact eps.

    Parameters
    ----------
    means, variances : (K, *sample_shape) tensors
    weights : (K,) mixture weights (normalised here)
    classes : (K,) class index of each component, or None for an unconditional mixture
    """

    def __init__(self, means: torch.Tensor, variances: torch.Tensor, weights: torch.Tensor | None = None,
                 classes: torch.Tensor | None = None, schedule: NoiseSchedule | None = None,
                 name: str = "gmm", image_range: tuple[float, float] | None = None):
        """``schedule`` may be a VP :class:`NoiseSchedule` (the network predicts eps) or a
        flow-matching :class:`invlab.flow.FlowSchedule` (it predicts the velocity v = eps - x0, in
        closed form from the same posterior)."""
        means = torch.as_tensor(means, dtype=torch.float64)
        variances = torch.as_tensor(variances, dtype=torch.float64).expand_as(means).clone()
        K = means.shape[0]
        if (variances <= 0).any():
            raise ValueError("component variances must be > 0")
        weights = torch.ones(K, dtype=torch.float64) if weights is None else torch.as_tensor(weights, dtype=torch.float64)
        if weights.shape != (K,) or (weights <= 0).any():
            raise ValueError(f"weights must be {K} positive numbers")
        num_classes = None
        if classes is not None:
            classes = torch.as_tensor(classes, dtype=torch.long)
            if classes.shape != (K,) or classes.min() < 0:
                raise ValueError(f"classes must be {K} non-negative class indices")
            num_classes = int(classes.max()) + 1
        schedule = schedule or NoiseSchedule.stable_diffusion()
        prediction = "flow_prediction" if getattr(schedule, "is_flow", False) else "epsilon"
        super().__init__(schedule, tuple(means.shape[1:]), prediction, num_classes)
        self.name = name
        self.image_range = image_range
        self.register_buffer("means", means.reshape(K, -1))
        self.register_buffer("variances", variances.reshape(K, -1))
        self.register_buffer("log_weights", (weights / weights.sum()).log())
        self.register_buffer("classes", classes if classes is not None else torch.zeros(K, dtype=torch.long))
        self._cache: dict[Any, tuple[torch.Tensor, ...]] = {}

    @property
    def dtype(self) -> torch.dtype:
        """The parameters' dtype (float64). eps is computed in the *input's* dtype, not this one."""
        return self.means.dtype

    @property
    def device(self) -> torch.device:
        """Where the parameters live (inputs on another device are computed on their own device)."""
        return self.means.device

    # -------------------------------------------------------------- params
    def _params(self, like: torch.Tensor):
        key = (like.dtype, like.device)
        if key not in self._cache:
            self._cache[key] = tuple(p.to(dtype=like.dtype, device=like.device)
                                     for p in (self.means, self.variances, self.log_weights))
        return self._cache[key]

    # -------------------------------------------------------------- conditions
    def check_cond(self, cond: Any, batch: int, like: torch.Tensor) -> torch.Tensor | None:
        if cond is None:
            return None
        if self.num_classes is None:
            raise ValueError(f"{self.name} is unconditional; pass cond=None")
        if self.is_embedding(cond):  # per-class log-weight offsets (e.g. an optimised null embedding)
            return self._check_embedding(cond, batch, like)
        return check_class_cond(cond, batch, self.num_classes, self.name, like.device)

    def null_cond(self, batch: int, like: torch.Tensor) -> torch.Tensor:
        return torch.full((batch,), -1, dtype=torch.long, device=like.device)

    def _check_embedding(self, emb: torch.Tensor, batch: int, like: torch.Tensor) -> torch.Tensor:
        c = self.num_classes
        if emb.dim() == 1:
            emb = emb[None]
        if emb.dim() != 2 or emb.shape[1] != c or emb.shape[0] not in (1, batch):
            raise ValueError(f"a condition embedding for {self.name} is a per-class log-weight offset of shape "
                             f"(1 or {batch}, {c}); got {tuple(emb.shape)} (model.embed_cond(cond, batch, x) makes one)")
        if torch.isnan(emb).any() or (emb == math.inf).any() or not (emb > -math.inf).any(-1).all():
            raise ValueError("a log-weight offset must be finite or -inf (a class left out), with at least one "
                             "finite entry per row; got NaN, +inf or a row that excludes every class")
        return emb.to(like.device).expand(batch, c)

    def embed_cond(self, cond: Any, batch: int, like: torch.Tensor) -> torch.Tensor:
        """The condition as per-class log-weight offsets ``(batch, num_classes)``, added to the
        components' log-weights: 0 keeps a class, -inf removes it. The unconditional input
        (``None``, the full mixture) is all zeros; class c is 0 at c and -inf elsewhere. An
        offset vector passes through. In the dtype of ``like``."""
        if self.num_classes is None:
            raise ValueError(f"{self.name} is unconditional: it has no condition to embed")
        if self.is_embedding(cond):
            return self._check_embedding(cond, batch, like)
        ids = self.null_cond(batch, like) if cond is None else cond.to(like.device)
        classes = torch.arange(self.num_classes, device=like.device)
        keep = (ids[:, None] < 0) | (ids[:, None] == classes[None, :])
        return torch.zeros(keep.shape, dtype=like.dtype, device=like.device).masked_fill(~keep, -math.inf)

    # -------------------------------------------------------------- exact eps
    def _responsibilities(self, x: torch.Tensor, alpha: float, sigma: float, cond: torch.Tensor | None):
        mu, s2, logw = self._params(x)
        xf = x.reshape(x.shape[0], 1, -1)                               # (B, 1, d)
        v = alpha * alpha * s2 + sigma * sigma                          # (K, d)
        diff = xf - alpha * mu                                          # (B, K, d)
        logp = logw - 0.5 * ((diff * diff) / v + v.log()).sum(-1)       # (B, K)
        if self.is_embedding(cond):  # continuous: per-class log-weight offsets
            logp = logp + cond.to(device=x.device, dtype=x.dtype)[:, self.classes.to(x.device)]
        elif cond is not None:
            allowed = (cond[:, None] < 0) | (cond[:, None] == self.classes.to(cond.device)[None, :])
            logp = logp.masked_fill(~allowed, -math.inf)
        return logp.softmax(-1), diff, v

    def forward_raw(self, x: torch.Tensor, label: float, cond: torch.Tensor | None) -> torch.Tensor:
        lv = self.schedule.level(label)
        r, diff, v = self._responsibilities(x, lv.alpha, lv.sigma, cond)
        eps = lv.sigma * (r[..., None] * diff / v).sum(1)
        if self.prediction_type == "flow_prediction":
            # posterior mean E[x0 | x] = sum_k r_k (mu_k + alpha s_k^2 (x - alpha mu_k) / v_k): no division by
            # alpha, so it holds at sigma = 1 (alpha = 0: the prior mean); the velocity is eps* - x0*
            mu, s2, _ = self._params(x)
            x0 = (r[..., None] * (mu + lv.alpha * s2 * diff / v)).sum(1)
            return (eps - x0).reshape(x.shape)
        return eps.reshape(x.shape)

    # -------------------------------------------------------------- truth
    def sample_data(self, n: int, cond: Any = None, generator: torch.Generator | None = None,
                    dtype: torch.dtype = torch.float64) -> torch.Tensor:
        """Exact samples from the data distribution (optionally of one class)."""
        logw = self.log_weights.clone()
        if cond is not None:
            c = self.check_cond(cond, n, self.means)
            comp = torch.empty(n, dtype=torch.long)
            for i, ci in enumerate(c.tolist()):
                lw = logw.masked_fill(self.classes != ci, -math.inf)
                comp[i] = torch.multinomial(lw.softmax(0), 1, generator=generator)
        else:
            comp = torch.multinomial(logw.softmax(0), n, replacement=True, generator=generator)
        z = torch.randn(n, self.means.shape[1], generator=generator, dtype=torch.float64)
        x = self.means[comp] + self.variances[comp].sqrt() * z
        return x.reshape(n, *self.sample_shape).to(dtype)

    def log_prob(self, x: torch.Tensor, label: float | None = None) -> torch.Tensor:
        """Exact log density of the data (``label=None``) or of the marginal at ``label``."""
        alpha, sigma = (1.0, 0.0) if label is None else (self.schedule.alpha(label), self.schedule.sigma(label))
        mu, s2, logw = self._params(x)
        d = mu.shape[1]
        v = alpha * alpha * s2 + sigma * sigma
        diff = x.reshape(x.shape[0], 1, -1) - alpha * mu
        logp = logw - 0.5 * ((diff * diff) / v + v.log()).sum(-1) - 0.5 * d * math.log(2 * math.pi)
        return logp.logsumexp(-1)


def gaussian_flow_map(x: torch.Tensor, mean: torch.Tensor, var: torch.Tensor,
                      alpha_from: float, sigma_from: float, alpha_to: float, sigma_to: float) -> torch.Tensor:
    """Exact probability-flow map between two levels for Gaussian data N(mean, diag(var)).

    The marginal at (alpha, sigma) is N(alpha mean, alpha^2 var + sigma^2), and the PF-ODE keeps
    each point's standardised coordinate fixed, so the map is affine:
    x_to = alpha_to mean + sqrt(v_to / v_from) (x_from - alpha_from mean).
    """
    v_from = alpha_from**2 * var + sigma_from**2
    v_to = alpha_to**2 * var + sigma_to**2
    return alpha_to * mean + (v_to / v_from).sqrt() * (x - alpha_from * mean)


# ---------------------------------------------------------------------- named models
def _placed(model: GaussianMixture, device: str | torch.device, dtype: torch.dtype | None) -> GaussianMixture:
    """Check the factories' ``dtype`` (float64 only: compute follows the latents) and move to ``device``."""
    if dtype is not None and check_dtype(dtype) != torch.float64:
        raise ValueError(
            f"{model.name} is analytic: it computes eps in the dtype of the latents you pass (its parameters stay "
            f"float64), so it takes no dtype={dtype}; drop dtype= and pass latents of that dtype, e.g. "
            f"invlab.noise(model, 8, dtype={dtype})")
    dev = check_device(device)
    return model if dev == model.device else model.to(dev)


def gmm_2d(schedule: NoiseSchedule | None = None, device: str | torch.device = "cpu",
           dtype: torch.dtype | None = None) -> GaussianMixture:
    """Six components on a ring of radius 2, two per class (3 classes).

    ``device``: where the parameters live; ``dtype``: only None / torch.float64 (eps is computed
    in the latents' dtype, see the module docstring)."""
    angles = torch.arange(6, dtype=torch.float64) * (2 * math.pi / 6) + math.pi / 6
    means = 2.0 * torch.stack([angles.cos(), angles.sin()], dim=1)
    stds = torch.tensor([0.30, 0.18, 0.30, 0.18, 0.30, 0.18], dtype=torch.float64)
    variances = (stds**2)[:, None].expand(6, 2)
    classes = torch.tensor([0, 0, 1, 1, 2, 2])
    weights = torch.tensor([1.0, 0.6, 1.0, 0.6, 1.0, 0.6])
    return _placed(GaussianMixture(means, variances, weights, classes, schedule, name="gmm-2d"), device, dtype)


def gmm_2d_flow(schedule=None, device: str | torch.device = "cpu", dtype: torch.dtype | None = None) -> GaussianMixture:
    """``gmm-2d`` as a rectified-flow model: the same mixture, velocity prediction in closed form, on
    SD3's flow schedule (static shift 3.0) unless ``schedule`` (an :class:`invlab.flow.FlowSchedule`)
    is given."""
    from ..flow import FlowSchedule

    model = gmm_2d(schedule or FlowSchedule.sd3(), device, dtype)
    model.name = "gmm-2d-flow"
    return _check_flow(model)


def _check_flow(model: GaussianMixture) -> GaussianMixture:
    if model.prediction_type != "flow_prediction":
        raise ValueError(f"{model.name} needs a flow-matching schedule (invlab.flow.FlowSchedule), "
                         f"got {type(model.schedule).__name__}")
    return model


def build_digits_mixture(size: int = 16, per_class: int = 4, var_floor: float = 0.01, seed: int = 0):
    """Fit ``per_class`` diagonal Gaussians per digit class (k-means) on scikit-learn's digits.

    Returns a dict of tensors (means, variances, weights, classes). Used once to write the
    shipped asset; ``load_model("gmm-digits")`` reads the asset so it loads fast and exactly.
    """
    from sklearn.cluster import KMeans

    from ..data import digits_images

    images, labels = digits_images(size=size, split="all")
    flat = images.reshape(len(images), -1).double()
    means, variances, weights, classes = [], [], [], []
    for c in range(10):
        xc = flat[labels == c].numpy()
        km = KMeans(n_clusters=per_class, n_init=10, random_state=seed).fit(xc)
        for k in range(per_class):
            members = torch.from_numpy(xc[km.labels_ == k])
            means.append(members.mean(0))
            variances.append(members.var(0, unbiased=False) + var_floor)
            weights.append(float(len(members)))
            classes.append(c)
    return {
        "means": torch.stack(means).reshape(-1, 1, size, size),
        "variances": torch.stack(variances).reshape(-1, 1, size, size),
        "weights": torch.tensor(weights, dtype=torch.float64),
        "classes": torch.tensor(classes, dtype=torch.long),
    }


def write_digits_asset(path: Path = DIGITS_ASSET) -> Path:
    from safetensors.torch import save_file

    params = build_digits_mixture()
    save_file({k: v.contiguous() for k, v in params.items()}, str(path),
              metadata={"source": "sklearn.datasets.load_digits", "size": "16", "per_class": "4", "var_floor": "0.01"})
    return path


@lru_cache(maxsize=1)
def _digits_params() -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(DIGITS_ASSET))


def gmm_digits(schedule: NoiseSchedule | None = None, device: str | torch.device = "cpu",
               dtype: torch.dtype | None = None) -> GaussianMixture:
    """Digits as a mixture: 4 diagonal Gaussians per class on 1x16x16 images in [-1, 1].

    ``device``: where the parameters live; ``dtype``: only None / torch.float64 (eps is computed
    in the latents' dtype, see the module docstring)."""
    p = _digits_params()
    model = GaussianMixture(p["means"], p["variances"], p["weights"], p["classes"], schedule, name="gmm-digits",
                            image_range=(-1.0, 1.0))
    return _placed(model, device, dtype)


def gmm_digits_flow(schedule=None, device: str | torch.device = "cpu",
                    dtype: torch.dtype | None = None) -> GaussianMixture:
    """``gmm-digits`` as a rectified-flow model (velocity prediction in closed form), on SD3's flow
    schedule unless ``schedule`` (an :class:`invlab.flow.FlowSchedule`) is given."""
    from ..flow import FlowSchedule

    model = gmm_digits(schedule or FlowSchedule.sd3(), device, dtype)
    model.name = "gmm-digits-flow"
    return _check_flow(model)


if __name__ == "__main__":  # regenerate the shipped asset
    print(write_digits_asset())
