"""Tree-Ring watermarks (invlab.watermark): the key, injection, the p-value, detection by inversion."""

import math
import warnings

import numpy as np
import pytest
import torch

import invlab
from invlab import watermark as wm


@pytest.fixture(scope="module")
def model():
    return invlab.load_model("gmm-digits")


def test_ring_key_is_constant_on_each_ring_and_masked_on_one_channel():
    key = wm.ring_key((4, 16, 16), radius=3, channel=2)
    assert key.radius == 3 and key.mask[2].sum() == wm._disc(16, 16, 3, "dc").sum() and not key.mask[[0, 1, 3]].any()
    ys, xs = torch.meshgrid(torch.arange(16), torch.arange(16), indexing="ij")
    dist = ((ys - 8) ** 2 + (xs - 8) ** 2).double().sqrt()
    for r in (1, 2, 3):   # the annulus r-1 < d <= r holds one value per channel: the reference's "tree rings"
        ring = (dist > r - 1) & (dist <= r)
        vals = key.values[2][ring]
        assert torch.allclose(vals, vals[0].expand_as(vals)) and vals[0].abs() > 0
    # inner discs overwrite outer ones: ring 1 and ring 3 take different draws
    assert not torch.isclose(key.values[2][8, 9], key.values[2][8, 11])
    assert torch.equal(wm.ring_key((4, 16, 16), 3, 2).values, key.values)              # seeded
    ref = wm.ring_key((1, 16, 16), 3, centre="reference")
    assert ref.mask[0, 7, 8] and not ref.mask[0, 11, 8]     # the reference's mask sits one row above the DC bin


def test_bad_keys_say_what_fits():
    with pytest.raises(ValueError, match="radius 9 does not fit"):
        wm.ring_key((1, 16, 16), radius=9)
    with pytest.raises(ValueError, match="channel 4 is out of range"):
        wm.ring_key((4, 16, 16), channel=4)
    with pytest.raises(ValueError, match=r"one sample's shape \(C, H, W\)"):
        wm.ring_key((16, 16))
    key = wm.ring_key((1, 16, 16))
    with pytest.raises(ValueError, match="build the key from model.sample_shape"):
        wm.inject(torch.zeros(2, 4, 16, 16), key)


def test_log_ncx2_cdf_matches_scipy_and_survives_its_underflow():
    from scipy.stats import ncx2

    for x, df, nc in [(100.0, 50, 80.0), (30.0, 50, 80.0), (5.0, 58, 10.0), (60.0, 58, 0.0)]:
        assert wm.log_ncx2_cdf(x, df, nc) == pytest.approx(float(ncx2.logcdf(x, df, nc)), rel=1e-9)
    tiny = wm.log_ncx2_cdf(1e-3, 58, 4000.0)                 # far below what a float64 CDF can hold
    assert math.isfinite(tiny) and tiny < -1000 and tiny < wm.log_ncx2_cdf(1e-2, 58, 4000.0)


def test_p_value_is_calibrated_on_clean_noise_and_tiny_after_injection(model):
    key = wm.ring_key(model.sample_shape)
    z = invlab.noise(model, 400, seed=0, dtype=torch.float64)
    lp = wm.p_value(z, key, log=True)
    # measured: 0.5 % below 0.01 (the test is conservative at the small end), 49 % below 0.5
    assert (lp < math.log(0.01)).float().mean() <= 0.02
    assert 0.35 < (lp < math.log(0.5)).float().mean() < 0.65
    zw = wm.inject(z, key)
    assert zw.dtype == z.dtype and 0.8 < zw.std() < 1.2                 # still noise-like
    assert (wm.p_value(zw, key, log=True) < math.log(1e-12)).all()                 # 4.5e-16 seen
    # the real part of a non-Hermitian key is all injection keeps: a perfect inversion is not at distance 0
    dw, dc = wm.distance(zw, key), wm.distance(z, key)
    assert (dw > 0.5).all() and dw.max() < dc.median() / 2


def test_exact_inversion_detects_what_naive_ddim_misses(model):
    """Generation at w = 3 with the class, detection without it at w = 1 (Tree-Ring's protocol): exact
    inversion finds every watermark at p < 0.01, naive DDIM inversion fewer than 4 in 5 (0.38 seen at 64
    images), and clean images stay clean."""
    key = wm.ring_key(model.sample_shape)
    cond = torch.arange(16) % 10
    z = invlab.noise(model, 16, seed=0, dtype=torch.float64)
    marked = invlab.sample(model, wm.inject(z, key), 50, "ddim", 3.0, cond).final
    clean = invlab.sample(model, invlab.noise(model, 16, seed=1, dtype=torch.float64), 50, "ddim", 3.0, cond).final
    exact_m, exact_c = (wm.detect(model, x, key, 50, "ddim", "exact") for x in (marked, clean))
    naive_m = wm.detect(model, marked, key, 50, "ddim", "naive")
    assert exact_m.watermarked().all() and exact_c.watermarked().sum() <= 1
    assert naive_m.watermarked().float().mean() < 0.8
    assert wm.roc(exact_m.log_p, exact_c.log_p)["auc"] == 1.0


def test_multi_key_classification_by_exact_inversion(model):
    keys = wm.constant_keys(model.sample_shape)
    assert len(keys) == 3 and all(k.values.imag.abs().max() == 0 for k in keys)
    z = invlab.noise(model, 12, seed=3, dtype=torch.float64)
    which = torch.arange(12) % 3
    zw = torch.cat([wm.inject(z[i:i + 1], keys[int(which[i])]) for i in range(12)])
    assert torch.equal(wm.classify(zw, keys), which)                                    # on the noise itself
    x = invlab.sample(model, zw, 25, "ddim").final
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", invlab.ConvergenceWarning)
        z_hat = invlab.invert(model, x, 25, "ddim", "exact").final
    assert torch.equal(wm.classify(z_hat, keys), which)


def test_attacks_change_the_image_and_keep_its_shape_and_range(model):
    x = invlab.sample(model, invlab.noise(model, 3, seed=0, dtype=torch.float64), 10, "ddim").final.clamp(-1, 1)
    for name in wm.ATTACKS:
        y = wm.attack(x, name)
        assert y.shape == x.shape and y.dtype == x.dtype and y.min() >= -1 - 1e-9 and y.max() <= 1 + 1e-9
        change = (y - x).abs().mean().item()
        assert (change == 0) if name == "none" else (change > 1e-3), name
    assert torch.equal(wm.attack(x, "jpeg"), wm.attack(x, "jpeg"))                       # deterministic
    assert (wm.attack(x, "jpeg", quality=95) - x).abs().mean() < (wm.attack(x, "jpeg", quality=10) - x).abs().mean()
    with pytest.raises(ValueError, match="unknown attack 'rotate'"):
        wm.attack(x, "rotate")


def test_roc_of_separated_and_of_identical_scores():
    low, high = torch.linspace(0, 1, 200), torch.linspace(2, 3, 200)
    r = wm.roc(low, high)
    assert r["auc"] == 1.0 and r["tpr_at_1fpr"] == 1.0 and 1 <= r["threshold"] < 2
    same = wm.roc(low, low)
    assert same["auc"] == pytest.approx(0.5) and same["tpr_at_1fpr"] < 0.05


def test_detection_study_rows(model):
    from invlab.studies.watermark import classification, detection

    rows = detection(model, n=8, steps=20, guidance=3.0, protocols=["exact", "naive"], attacks=["none", "jpeg"])
    by = {(r["protocol"], r["attack"]): r for r in rows}
    assert set(by) == {(p, a) for p in ("exact", "naive") for a in ("none", "jpeg")}
    assert by[("exact", "none")]["auc"] == 1.0 and by[("exact", "none")]["tpr_p01"] == 1.0
    assert by[("exact", "none")]["nfe_per_step"] > by[("naive", "none")]["nfe_per_step"] == 1.0
    assert all(0 <= r["fpr_p01"] <= 0.25 and 0 <= r["auc"] <= 1 for r in rows)
    # generated without the class, as the detector inverts: exact inversion classifies every key
    cls = classification(model, per_key=4, steps=20, protocols=["exact"], attacks=["none"], conditional=False)
    assert cls[0]["accuracy"] == 1.0 and sum(map(sum, cls[0]["confusion"])) == 12
    with pytest.raises(ValueError, match="unknown protocol"):
        detection(model, n=2, protocols=["tree-ring"])


def test_detection_study_attacks_latent_models_in_image_space():
    from invlab.studies.watermark import detection

    latent = invlab.load_model("digits-latent")
    rows = detection(latent, n=2, steps=5, guidance=3.0, protocols=["naive"], attacks=["blur"], dtype=torch.float32)
    assert rows[0]["attack"] == "blur" and math.isfinite(rows[0]["median_log10_p"])


def test_a_latent_detector_sees_the_image_not_the_latent():
    """On a latent model even attack "none" goes through the autoencoder: the detector gets the encoder's
    latent of the decoded image, never the sampler's own latent."""
    from invlab.studies.watermark import _attacked

    latent = invlab.load_model("digits-latent")
    z = invlab.sample(latent, invlab.noise(latent, 2, seed=0), 5, "ddim", 1.0, [1, 2]).final
    seen = _attacked(latent, z, "none")
    assert torch.equal(seen, latent.encode(latent.decode(z).clamp(-1, 1)))
    assert not torch.equal(seen, z)
    pixel = invlab.load_model("gmm-digits")
    x = invlab.noise(pixel, 2, seed=0, dtype=torch.float64)
    assert _attacked(pixel, x, "none") is x


def test_roc_points_and_the_plots(model):
    from invlab import plots
    from invlab.studies.watermark import detection

    fpr, tpr = plots.roc_points([0.0, 1.0, 2.0], [1.5, 3.0])
    assert fpr.tolist() == [0, 0, 0, 0.5, 0.5, 1] and tpr.tolist() == [0, 1 / 3, 2 / 3, 2 / 3, 1, 1]
    rows = detection(model, n=6, steps=10, protocols=["naive"], attacks=["none"], keep_scores=True)
    assert len(rows[0]["log_p_marked"]) == 6
    fig, drawn = plots.plot_watermark_roc(rows)
    f, t = drawn[("naive", "none")]
    # the area under the drawn curve is the row's AUC (ties between scores would make them differ)
    assert abs(float(np.sum(np.diff(f) * t[:-1])) - rows[0]["auc"]) < 1e-9
    key = wm.ring_key(model.sample_shape)
    z = invlab.noise(model, 1, seed=0, dtype=torch.float64)
    fig, panels = plots.plot_watermark_spectra(key.values, key.mask, {"z_T": wm.spectrum(wm.inject(z, key))[0]})
    assert len(panels) == 2 and panels[0][~key.mask[0].numpy()].max() == 0
    with pytest.raises(ValueError, match="keep_scores=True"):
        plots.plot_watermark_roc([{k: v for k, v in rows[0].items() if not k.startswith("log_p")}])
