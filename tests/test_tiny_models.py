"""The shipped tiny networks: loading, the Denoiser contract, the VAE, training determinism."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

import invlab
from invlab.models.tiny import ASSETS

SHIPPED = ["digits_unet", "digits_latent_unet", "digits_latent_vae", "digits_flow_unet"]


@pytest.fixture(scope="module")
def digits_net():
    return invlab.load_model("digits")


@pytest.fixture(scope="module")
def latent_net():
    return invlab.load_model("digits-latent")


def test_registered():
    assert {"digits", "digits-latent", "digits-flow"} <= set(invlab.available_models())


def test_digits_flow_is_a_velocity_model_on_the_flow_grid():
    """The rectified-flow copy: velocity prediction, diffusers' flow grid (no shift), float16 storage
    loaded in the dtype asked for; its Euler sample inverts back (exact) to the image."""
    m = invlab.load_model("digits-flow")
    assert m.prediction_type == "flow_prediction" and m.schedule.is_flow and m.schedule.config["shift"] == 1.0
    assert m.dtype == torch.float32 and invlab.load_model("digits-flow", dtype=torch.float64).dtype == torch.float64
    z = invlab.noise(m, 2, seed=0, dtype=torch.float32)
    x = invlab.sample(m, z, 10, "euler", 3.0, [3, 7]).final
    inv = invlab.invert(m, x, 10, "euler", "exact", 3.0, [3, 7])
    assert invlab.metrics.nmse(invlab.reconstruct(m, inv).final, x).item() < 1e-4


def test_shipped_files_are_safetensors_with_configs_and_small():
    total = 0
    for prefix in SHIPPED:
        weights, cfg = ASSETS / f"{prefix}.safetensors", ASSETS / f"{prefix}.json"
        assert weights.is_file() and cfg.is_file()
        meta = json.loads(cfg.read_text())
        assert meta["loss_curve"] and meta["seconds"] > 0 and meta["train"]["seed"] == 0
        total += weights.stat().st_size
    assert total <= 15 * 2**20, f"shipped weights are {total / 2**20:.1f} MB (limit 15 MB)"


def test_digits_contract(digits_net):
    m = digits_net
    assert m.sample_shape == (1, 16, 16) and m.num_classes == 10 and m.prediction_type == "epsilon"
    assert not m.is_latent
    x = invlab.noise(m, 4)                                   # float64 in -> float64 out
    out = m.eps(x, 500.0, m.check_cond(3, 4, x), guidance=3.0)
    assert out.eps.dtype == torch.float64 and out.eps.shape == x.shape
    assert out.eps_cond is not None and out.eps_uncond is not None
    torch.testing.assert_close(out.eps, out.eps_uncond + 3.0 * (out.eps_cond - out.eps_uncond))
    # the guided batch runs as one network call on 2B rows; cond and null rows differ
    assert m.net_rows >= 8 and not torch.allclose(out.eps_cond, out.eps_uncond)


def test_fractional_label_and_autograd_through_input(digits_net):
    x = invlab.noise(digits_net, 2, dtype=torch.float32).requires_grad_(True)
    e = digits_net.forward_raw(x, 417.25, digits_net.check_cond([1, 7], 2, x))
    e.square().sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    assert not any(p.requires_grad for p in digits_net.parameters())


@pytest.mark.parametrize("cond, err", [(10, ValueError), (-1, ValueError), ([1, 2, 3], ValueError),
                                       (2.5, TypeError), ("three", TypeError)])
def test_bad_cond_names_the_fix(digits_net, cond, err):
    x = invlab.noise(digits_net, 2)
    with pytest.raises(err, match="cond|class"):
        digits_net.check_cond(cond, 2, x)


def test_sample_and_naive_inversion_round_trip(digits_net):
    z = invlab.noise(digits_net, 4, dtype=torch.float32)
    fwd = invlab.sample(digits_net, z, steps=10, guidance=3.0, cond=[0, 1, 2, 3])
    assert fwd.final.shape == z.shape and torch.isfinite(fwd.final).all()
    inv = invlab.invert(digits_net, fwd.final, steps=10, guidance=1.0, cond=[0, 1, 2, 3])
    assert inv.final.shape == z.shape and torch.isfinite(inv.final).all()


def test_latent_contract_and_vae(latent_net):
    from invlab.data import digits_images
    from invlab.train import psnr

    m = latent_net
    assert m.is_latent and m.sample_shape == (4, 8, 8) and m.image_shape == (1, 32, 32)
    meta = json.loads((ASSETS / "digits_latent_vae.json").read_text())
    assert m.scaling_factor == pytest.approx(meta["scaling_factor"])
    x, _ = digits_images(size=32, split="val")
    x = x[:64]
    with torch.no_grad():
        lat = m.encode(x)
        rec = m.decode(lat)
    assert lat.shape == (64, 4, 8, 8) and rec.shape == x.shape
    assert 0.5 < lat.std().item() < 2.0, "scaled latents should have roughly unit scale"
    assert psnr(rec, x) > 25.0
    with pytest.raises(ValueError, match="batch dimension"):
        m.encode(x[0])
    lat64 = m.encode(x[:2].double())
    assert lat64.dtype == torch.float64


def test_latent_sampling(latent_net):
    z = invlab.noise(latent_net, 3, dtype=torch.float32)
    fwd = invlab.sample(latent_net, z, steps=5, guidance=3.0, cond=4)
    img = latent_net.decode(fwd.final)
    assert img.shape == (3, 1, 32, 32) and torch.isfinite(img).all()


def test_pixel_model_has_no_vae(digits_net):
    with pytest.raises(TypeError, match="pixel space"):
        digits_net.encode(torch.zeros(1, 1, 16, 16))


def test_training_is_deterministic(tmp_path):
    """Same seed, same batches, same losses: what makes the shipped loss curve reproducible."""
    from invlab.data import digits_images
    from invlab.train import TrainConfig, train_unet

    x, y = digits_images(size=16, split="train")
    arch = {"sample_size": 16, "in_channels": 1, "out_channels": 1, "block_out_channels": [8, 16],
            "down_block_types": ["DownBlock2D", "DownBlock2D"], "up_block_types": ["UpBlock2D", "UpBlock2D"],
            "layers_per_block": 1, "norm_num_groups": 4, "num_class_embeds": 11}
    cfg = TrainConfig(steps=4, batch_size=16, log_every=2, threads=torch.get_num_threads())
    runs = [train_unet(x[:64], y[:64], arch, cfg, desc="test")[1].losses for _ in range(2)]
    assert runs[0] == runs[1] and len(runs[0]) == 2


def test_train_config_validation():
    from invlab.train import TrainConfig

    with pytest.raises(ValueError, match="label_dropout"):
        TrainConfig(label_dropout=1.5).check()
    with pytest.raises(ValueError, match="steps"):
        TrainConfig(steps=0).check()


def test_missing_weights_dir_says_how_to_train(tmp_path):
    with pytest.raises(FileNotFoundError, match="invlab.train"):
        invlab.load_model("digits", weights_dir=tmp_path)


def test_weights_dir_loads_a_retrained_copy(tmp_path):
    import shutil

    for prefix in ("digits_unet",):
        for ext in ("json", "safetensors"):
            shutil.copy(ASSETS / f"{prefix}.{ext}", Path(tmp_path) / f"{prefix}.{ext}")
    m = invlab.load_model("digits", weights_dir=tmp_path)
    ref = invlab.load_model("digits")
    x = invlab.noise(m, 2, dtype=torch.float32)
    torch.testing.assert_close(m.forward_raw(x, 300.0, None), ref.forward_raw(x, 300.0, None))


def test_dtype_choice():
    m = invlab.load_model("digits", dtype=torch.bfloat16)
    assert next(m.unet.parameters()).dtype == torch.bfloat16
    x = invlab.noise(m, 2, dtype=torch.float32)
    out = m.eps(x, 500.0, m.check_cond(5, 2, x), guidance=3.0).eps
    assert out.dtype == torch.float32 and torch.isfinite(out).all()
    with pytest.raises(TypeError, match="dtype"):
        invlab.load_model("digits", dtype="float16")
