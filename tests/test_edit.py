"""``invlab.edit``: partial inversion, regeneration under another condition, the background mask.

Measured (one CPU thread; the bounds below leave margins over these):
  round trip (target = source) on gmm-digits float64, 20 DDIM steps, depth 0.6, w = 3, batch 4,
      images sampled by the model: exact 2.7e-9, fixed-point 2.8e-9, newton 4.8e-9 (max abs);
      EDICT / BDIA / BELM 4e-15 .. 1.5e-14; naive 0.17.
  3 -> 8 on the trained ``digits`` model (float32), 8 validation 3s, 20 DDIM steps, w = 3, naive:
      classified 8 at depth 0.5 / 0.6 / 0.7 / 0.8: 8/8 unmasked; with the left-half mask
      5/8, 7/8, 8/8, 8/8 (exact inversion: 7/8, 7/8, 8/8, 8/8). The source 3s: 8/8 read as 3.
  background (outside the mask) on pixel models: bit-exact (PSNR = inf), by construction of the
      blend (the last blend target is the source itself); on ``digits-latent`` (32x32 images,
      4x8x8 latents, left-half mask) background PSNR 24.9-29.7 dB at depth 0.5-0.7 (naive and
      exact, 8 images): the decoder mixes the edited latent cells into neighbouring pixels.
  class_log_ratio(8 vs 3) on gmm-digits (16 levels x 2 draws), seeds 2, 5, 7, batch 4: samples of
      class 8: +207 .. +397 nats; of class 3: -452 .. -259; exact 3 -> 8 edits at depth 0.8: +201 .. +350.
"""

import math

import pytest
import torch

import invlab
from invlab import edit as E
from invlab.trace import Observer

LEFT16 = torch.zeros(1, 1, 16, 16)
LEFT16[..., :8] = 1  # the left half: where a 3 is open and an 8 is closed


def sampled(model, cond, batch=4, seed=1, steps=20, w=3.0, solver="ddim"):
    """Images the model itself generates (inversion is well posed for them)."""
    z = invlab.noise(model, batch, seed=seed)
    return invlab.sample(model, z, steps=steps, solver=solver, guidance=w, cond=cond).final


def real_threes(size=16, n=8):
    from invlab.data import digits_images

    x, y = digits_images(size=size, split="val")
    return x[y == 3][:n]


# ------------------------------------------------------------------------------- the partial grid
@pytest.mark.parametrize("solver", ["ddim", "dpmpp2m"])
def test_partial_grid_at_full_depth_is_the_grid(digits, solver):
    grid = digits.schedule.grid(20, solver)
    assert E.partial_grid(grid, 20) == grid
    part = E.partial_grid(grid, 7)
    assert part.levels == grid.levels[13:] and part.steps == 7
    assert part.orders[0] == 1 and part.orders[1:] == grid.orders[14:]
    assert E.depth_steps(1.0, 20) == 20 and E.depth_steps(0.6, 20) == 12 and E.depth_steps(0.01, 20) == 1


def test_ddim_restart_equals_the_full_run_tail(digits):
    """DDIM has no history: sampling the partial grid from the full run's state at its first level
    is the full run's last k steps, bit for bit (``run_sampler`` on a partial grid)."""
    from invlab.sampling import run_sampler

    z = invlab.noise(digits, 2, seed=3)
    full = invlab.sample(digits, z, steps=20, guidance=2.0, cond=[3, 8])
    k = 6
    setup = E._partial_setup(digits, full.latents()[20 - k], 20, k, "ddim", 2.0, [3, 8], "z_T", None)
    part = run_sampler(setup)
    assert torch.equal(part.final, full.final)
    assert part.config["timesteps"] == full.config["timesteps"][20 - k:]


@pytest.mark.parametrize("solver,method", [("ddim", "naive"), ("dpmpp2m", "exact")])
def test_full_depth_edit_is_invert_then_reconstruct(digits, solver, method):
    x0 = sampled(digits, 3, batch=2, solver=solver)
    out = E.edit(digits, x0, 3, 8, steps=20, solver=solver, method=method, depth=1.0, guidance=3.0)
    inv = invlab.invert(digits, x0, steps=20, solver=solver, method=method, guidance=3.0, cond=3)
    rec = invlab.reconstruct(digits, inv, cond=8)
    assert torch.equal(out.inversion.final, inv.final)
    assert torch.equal(out.image, rec.final)
    assert out.start == 0 and out.k == 20 and out.nfe == inv.nfe + rec.nfe


# ------------------------------------------------------------------------------------- round trip
@pytest.mark.parametrize("method,tol", [("exact", 1e-6), ("fixed-point", 1e-6)])
def test_exact_round_trip_returns_the_source(digits, method, tol):
    x0 = sampled(digits, 3)
    out = E.edit(digits, x0, 3, 3, steps=20, method=method, depth=0.6, guidance=3.0)
    assert out.k == 12 and out.start == 8
    assert (out.image - x0).abs().max() < tol
    naive = E.edit(digits, x0, 3, 3, steps=20, method="naive", depth=0.6, guidance=3.0)
    assert (naive.image - x0).abs().max() > 100 * tol  # the inversion, not the loop, makes it exact


@pytest.mark.parametrize("solver", ["edict", "bdia", "belm"])
def test_exact_by_construction_round_trip(digits, solver):
    x0 = sampled(digits, 3, batch=2)
    out = E.edit(digits, x0, 3, None, steps=20, solver=solver, depth=0.5, guidance=3.0)
    assert out.config["method"] == "algebraic"
    assert (out.image - x0).abs().max() < 1e-10


def test_negative_prompt_round_trip_is_conditional_sampling(digits):
    """NPI's regeneration with target = source: eps_src + w (eps_src - eps_src) = eps_src at any w,
    so it is the naive w = 1 round trip exactly."""
    x0 = sampled(digits, 3, batch=2)
    npi = E.edit(digits, x0, 3, 3, steps=20, method="negative-prompt", depth=0.6, guidance=3.0)
    naive = E.edit(digits, x0, 3, 3, steps=20, method="naive", depth=0.6, guidance=1.0)
    assert torch.allclose(npi.image, naive.image, atol=1e-12, rtol=0)


# ------------------------------------------------------------------------------------------- mask
class _States(Observer):
    def __init__(self):
        self.states = []

    def on_step(self, record, tensors):
        self.states.append(tensors["x_next"].clone())


@pytest.mark.parametrize("method", ["naive", "exact"])
def test_background_follows_the_inversion_trajectory(digits, method):
    x0 = sampled(digits, 3)
    seen = _States()
    out = E.edit(digits, x0, 3, 8, steps=20, method=method, depth=0.6, guidance=3.0, mask=LEFT16, hooks=seen)
    k = out.k
    inv = out.inversion.latents()                      # z0 (clean) ... inversion.final (level start)
    assert len(seen.states) == k
    keep = LEFT16 == 0
    for j, state in enumerate(seen.states):            # sampling step j lands on inversion level k-1-j
        want = inv[k - 1 - j]
        assert torch.equal(state.expand_as(want)[keep.expand_as(want)], want[keep.expand_as(want)])
    m = E.edit_metrics(x0, out.image, LEFT16)
    assert torch.isinf(m["psnr"]).all() and (m["mse"] == 0).all()
    assert (m["changed"] > 0.05).all()                 # the masked half did change
    free = E.edit(digits, x0, 3, 8, steps=20, method=method, depth=0.6, guidance=3.0)
    assert (E.edit_metrics(x0, free.image, LEFT16)["psnr"] < 40).all()  # without the mask it moves


def test_latent_background_psnr_bound():
    """On a latent model the latent background is kept exactly; the decoder mixes the edited cells
    into their neighbours: background PSNR >= 22 dB (measured 24.9-29.7 dB)."""
    model = invlab.load_model("digits-latent")
    x = real_threes(size=32, n=4)
    mask = torch.zeros(1, 1, 32, 32)
    mask[..., :16] = 1
    out = E.edit(model, x, 3, 8, steps=20, method="naive", depth=0.7, guidance=3.0, mask=mask)
    assert out.mask.shape == (1, 1, 8, 8) and out.mask[..., :4].eq(1).all() and out.mask[..., 4:].eq(0).all()
    assert torch.equal(out.edited[..., 4:], out.source[..., 4:].to(out.edited.dtype))
    psnr = E.edit_metrics(x, out.image, mask)["psnr"]
    assert (psnr > 22).all(), psnr


# --------------------------------------------------------------------------------- 3 -> 8 on digits
def test_three_to_eight_on_the_trained_digits_model():
    model = invlab.load_model("digits")
    x = real_threes()
    assert E.digit_success(x, 3).sum() >= 7           # the classifier reads the sources as 3s
    for mask in (None, LEFT16):
        out = E.edit(model, x, 3, 8, steps=20, method="naive", depth=0.7, guidance=3.0, mask=mask)
        assert E.digit_success(out.image, 8).sum() >= 6, mask
    assert torch.isinf(E.edit_metrics(x, out.image, LEFT16)["psnr"]).all()
    same = E.edit(model, x, 3, 3, steps=20, method="naive", depth=0.7, guidance=3.0)
    assert E.digit_success(same.image, 3).sum() >= 7  # regenerating under the source keeps a 3


def test_class_log_ratio_sign(digits):
    eights, threes = sampled(digits, 8, seed=2), sampled(digits, 3, seed=2)
    assert (E.class_log_ratio(digits, eights, 8, 3, levels=16, draws=2) > 0).all()
    assert (E.class_log_ratio(digits, threes, 8, 3, levels=16, draws=2) < 0).all()
    out = E.edit(digits, threes, 3, 8, steps=20, method="exact", depth=0.8, guidance=3.0)
    assert (E.class_log_ratio(digits, out.edited, 8, 3, levels=16, draws=2) > 0).sum() >= 3


# ---------------------------------------------------------------------------------------- metrics
def test_edit_metrics_values():
    a = torch.zeros(2, 1, 16, 16)
    b = a.clone()
    b[..., :8] = 0.5                                   # a change inside the mask only
    m = E.edit_metrics(a, b, LEFT16)
    assert torch.isinf(m["psnr"]).all() and (m["ssim"] > 0.999).all()
    assert torch.allclose(m["changed"], torch.full((2,), 0.25, dtype=torch.float64))
    b[..., 8:] = 0.2                                   # 0.1 in [0, 1] units outside it
    m = E.edit_metrics(a, b, LEFT16)
    assert torch.allclose(m["mse"], torch.full((2,), 0.01, dtype=torch.float64))
    assert torch.allclose(m["psnr"], torch.full((2,), 20.0, dtype=torch.float64))
    whole = E.edit_metrics(a, b, torch.ones(1, 1, 16, 16))
    assert torch.isnan(whole["psnr"]).all()            # nothing left to preserve: NaN, as PIE-Bench
    assert math.isnan(float(E.edit_metrics(a, b)["changed"][0]))


# ------------------------------------------------------------------------------------- bad inputs
@pytest.mark.parametrize("depth", [0, 0.0, -0.2, 1.5, float("nan"), True, "half"])
def test_bad_depth(digits, depth):
    with pytest.raises(ValueError, match="depth must be a fraction in \\(0, 1\\]"):
        E.edit(digits, sampled(digits, 3, batch=1), 3, 8, steps=10, depth=depth)


@pytest.mark.parametrize("mask,match", [(torch.zeros(1, 1, 8, 8), "image's size"),
                                        (torch.zeros(3, 1, 16, 16), "shape"),
                                        (torch.full((1, 1, 16, 16), 2.0), "in \\[0, 1\\]")])
def test_bad_mask(digits, mask, match):
    x = sampled(digits, 3, batch=2)
    calls = digits.nfe
    with pytest.raises(ValueError, match=match):
        E.edit(digits, x, 3, 8, steps=10, mask=mask)
    assert digits.nfe == calls                         # it fails before any network call


def test_other_bad_inputs(digits):
    x = sampled(digits, 3, batch=1)
    with pytest.raises(ValueError, match="method"):
        E.edit(digits, x, 3, 8, steps=10, method="nope")
    with pytest.raises(ValueError, match="algebraic"):
        E.edit(digits, x, 3, 8, steps=10, solver="ddim", method="algebraic")
    with pytest.raises(ValueError, match="inversion_guidance"):
        E.edit(digits, x, 3, 8, steps=10, method="negative-prompt", inversion_guidance=2.0)
    with pytest.raises(ValueError, match="solver='bdia'"):
        E.edit(digits, x, 3, 8, steps=10, solver="edict", mask=LEFT16)
    with pytest.raises(ValueError, match="k must be an int"):
        E.partial_grid(digits.schedule.grid(10, "ddim"), 11)
    with pytest.raises(ValueError, match="one shape"):
        E.edit_metrics(x, torch.zeros(1, 1, 8, 8))


def test_package_exposes_edit(digits):
    x = sampled(digits, 3, batch=1)
    assert invlab.edit.edit_metrics is E.edit_metrics
    out = invlab.edit(digits, x, 3, 8, steps=10, depth=0.5)
    assert isinstance(out, E.EditResult) and out.k == 5
