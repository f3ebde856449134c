"""The SD3-style (rectified-flow, MMDiT) adapter on a tiny random pipeline built from configs, saved and
reloaded offline (no T5, as a folder without text_encoder_3): diffusers' own StableDiffusion3Pipeline is the
oracle for sampling (static and dynamic shift); inversion round trips; the packed text condition."""

import shutil

import pytest
import torch

import invlab

pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    from invlab.models.sd3 import save_tiny_sd3_pipeline

    base = tmp_path_factory.mktemp("sd3")
    return {dyn: save_tiny_sd3_pipeline(base / f"tiny-sd3-{dyn}", dynamic_shift=dyn) for dyn in (False, True)}


@pytest.fixture(scope="module")
def model(folders):
    torch.set_num_threads(1)
    return invlab.load_model(str(folders[False]))


@pytest.mark.parametrize("dynamic", [False, True])
def test_sampling_equals_the_diffusers_sd3_pipeline(folders, dynamic, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    from invlab.models.sd3 import SD3Denoiser

    m = invlab.load_model(str(folders[dynamic]))
    assert isinstance(m, SD3Denoiser) and m.prediction_type == "flow_prediction"
    assert m.sample_shape == (4, 8, 8) and m.schedule.image_seq_len == 16
    assert bool(m.schedule.config["use_dynamic_shifting"]) == dynamic
    z = invlab.noise(m, 2, seed=0, dtype=torch.float32)
    ours = invlab.sample(m, z, 5, "euler", 3.0, "a cat").final
    pipe = m._pipe
    pipe.set_progress_bar_config(disable=True)
    ref = pipe(prompt="a cat", num_inference_steps=5, guidance_scale=3.0, latents=z.clone(), output_type="latent",
               height=16, width=16, num_images_per_prompt=2).images
    assert (ours - ref).abs().max().item() <= 1e-5 * max(1.0, ref.abs().max().item())


def test_round_trip_exact_and_naive(model):
    z = invlab.noise(model, 2, seed=1, dtype=torch.float32)
    x = invlab.sample(model, z, 6, "euler", 3.0, "a dog").final
    exact = invlab.invert(model, x, 6, "euler", "exact", 3.0, "a dog", tol=1e-5)
    naive = invlab.invert(model, x, 6, "euler", "naive", 3.0, "a dog")
    assert exact.convergence()["failed_steps"] == []
    assert invlab.metrics.nmse(exact.final, z).item() < 1e-6 < 1e-2 < invlab.metrics.nmse(naive.final, z).item()
    rec = invlab.reconstruct(model, exact)
    assert invlab.metrics.nmse(rec.final, x).item() < 1e-6


def test_latents_text_and_refusals(model, folders, tmp_path):
    img = model.decode(invlab.noise(model, 1, seed=0, dtype=torch.float32)).clamp(-1, 1)
    assert img.shape == (1, 3, 16, 16) and model.encode(img).shape == (1, 4, 8, 8)
    assert model.shift_factor == pytest.approx(0.05) and model.scaling_factor == pytest.approx(1.2)
    packed = model.check_cond("a cat", 2, img)
    embeds, pooled = model.unpack(packed)
    assert torch.equal(model.pack(embeds, pooled), packed) and pooled.shape == (2, 32)
    z = invlab.noise(model, 2, seed=0, dtype=torch.float32)
    a = invlab.sample(model, z, 3, "euler", 3.0, "a cat").final
    b = invlab.sample(model, z, 3, "euler", 3.0, packed).final          # a packed embedding is a condition
    assert torch.equal(a, b)
    with pytest.raises(ValueError, match="packed SD3 embeddings"):
        model.check_cond(torch.zeros(2, 7), 2, img)
    with pytest.raises(TypeError, match="not class ids"):
        model.check_cond([1, 2], 2, img)
    with pytest.raises(ValueError, match="use solver='euler'"):
        invlab.sample(model, z, 3, "dpmpp2m")
    broken = tmp_path / "broken"
    shutil.copytree(folders[False], broken)
    shutil.rmtree(broken / "text_encoder_2")
    with pytest.raises(ValueError, match="text_encoder_2/"):
        invlab.load_model(str(broken))
