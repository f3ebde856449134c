"""Ground-truth-free statistics of a recovered noise (invlab.studies.noise_stats)."""

import numpy as np
import pytest
import torch

import invlab
from invlab.studies.noise_stats import noise_stats, noise_stats_table, white_noise_band


def test_gaussian_noise_passes_and_statistics_are_right():
    z = torch.randn(16, 4, 16, 16, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    s = noise_stats(z)
    assert s.n == 1024 and s.mean.shape == (16,)
    assert np.allclose(s.mean, z.flatten(1).mean(1).numpy()) and np.allclose(s.var, z.flatten(1).var(1).numpy())
    band = white_noise_band(1024)
    assert (np.abs(s.autocorr_h) < band["autocorr"]).all() and (np.abs(s.autocorr_w) < band["autocorr"]).all()
    assert s.looks_like_noise().mean() >= 0.9               # p-values are uniform: a few may dip below 1e-3


def test_lag1_autocorrelation_oracle():
    z = torch.arange(2 * 3 * 4, dtype=torch.float64).reshape(1, 2, 3, 4) % 5
    s = noise_stats(torch.cat([z, z]))
    c = z[0] - z.mean()
    ah = (c[:, 1:, :] * c[:, :-1, :]).sum() / (c * c).sum()
    aw = (c[:, :, 1:] * c[:, :, :-1]).sum() / (c * c).sum()
    assert s.autocorr_h[0] == pytest.approx(ah.item()) and s.autocorr_w[1] == pytest.approx(aw.item())


def test_each_departure_is_caught():
    g = torch.Generator().manual_seed(1)
    z = torch.randn(8, 1, 16, 16, generator=g, dtype=torch.float64)
    smooth = noise_stats(torch.nn.functional.avg_pool2d(z, 3, 1, 1) * 3)
    assert (smooth.autocorr_h > 0.4).all() and not smooth.looks_like_noise().any()
    uniform = noise_stats((torch.rand(8, 1, 16, 16, generator=g, dtype=torch.float64) - 0.5) * 12 ** 0.5)
    assert np.median(uniform.normal_p) < 1e-3                # K^2 sees the flat tails
    scaled = noise_stats(2 * z)
    assert (scaled.ks_p < 1e-3).all() and (scaled.normal_p > 1e-4).all()   # KS sees the scale, K^2 does not


def test_inverted_real_digits_do_not_look_like_noise(digits):
    x, _ = invlab.data.digits_images(size=16, split="val")
    x = x[:4].double()
    rows = noise_stats_table({"naive": invlab.invert(digits, x, 20).final,
                              "bdia": invlab.invert(digits, x, 20, "bdia").final,
                              "z": invlab.noise(digits, 4, seed=0)})
    by = {r["name"]: r for r in rows}
    assert by["z"]["looks_like_noise"] == 1.0
    for name in ("naive", "bdia"):
        assert by[name]["autocorr_h"] > 0.3 and by[name]["looks_like_noise"] == 0.0


def test_points_without_spatial_axes_and_errors(gmm2d):
    s = noise_stats(torch.randn(4, 16, dtype=torch.float64))
    assert s.autocorr_h is None and s.summary()["autocorr_h"] is None
    with pytest.raises(ValueError, match="at least 8"):
        noise_stats(torch.randn(4, 2))
    with pytest.raises(ValueError, match="batch axis"):
        noise_stats(torch.randn(16))
    with pytest.raises(ValueError, match="non-finite"):
        noise_stats(torch.full((2, 16), float("inf")))
    with pytest.raises(TypeError, match="floating tensor"):
        noise_stats(np.zeros((2, 16)))
