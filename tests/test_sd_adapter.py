"""Stable Diffusion through diffusers, fully offline: tiny random pipelines (eps and v).

Built from configs, saved with save_pretrained, loaded back through ``invlab.load_model(folder)``
with HF_HUB_OFFLINE=1, then sampled and inverted through invlab's interface; diffusers' own
StableDiffusionPipeline is the oracle for the sampled latents.
"""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("transformers")

import invlab  # noqa: E402
from invlab.models.sd import StableDiffusionDenoiser, save_tiny_pipeline  # noqa: E402

PREDICTIONS = ["epsilon", "v_prediction"]


@pytest.fixture(scope="module", params=PREDICTIONS)
def pipe_dir(request, tmp_path_factory):
    return save_tiny_pipeline(tmp_path_factory.mktemp(request.param), prediction_type=request.param)


@pytest.fixture(scope="module")
def sd(pipe_dir):
    mp = pytest.MonkeyPatch()
    mp.setenv("HF_HUB_OFFLINE", "1")
    try:
        yield invlab.load_model(str(pipe_dir))
    finally:
        mp.undo()


def test_loaded_through_invlab(sd, pipe_dir):
    assert isinstance(sd, StableDiffusionDenoiser) and sd.is_latent and sd.is_conditional
    assert sd.prediction_type == pipe_dir.name.rstrip("0123456789")
    assert sd.sample_shape == (4, 8, 8) and sd.image_shape == (3, 16, 16)
    assert sd.scaling_factor == pytest.approx(0.18215)


def test_sample_and_invert(sd):
    z = invlab.noise(sd, 2, dtype=torch.float32)
    fwd = invlab.sample(sd, z, steps=4, guidance=3.0, cond=["a cat", "the dog"])
    assert fwd.final.shape == z.shape and torch.isfinite(fwd.final).all()
    inv = invlab.invert(sd, fwd.final, steps=4, method="naive", guidance=1.0, cond="a cat")
    assert inv.final.shape == z.shape and torch.isfinite(inv.final).all()
    img = sd.decode(fwd.final)
    assert img.shape == (2, 3, 16, 16)
    assert sd.encode(img.clamp(-1, 1)).shape == (2, 4, 8, 8)


def test_matches_diffusers_pipeline(sd):
    """Our DDIM sampler with CFG on the adapter == diffusers' StableDiffusionPipeline (eps and v)."""
    from diffusers import DDIMScheduler, StableDiffusionPipeline

    sched = DDIMScheduler.from_config(dict(sd.schedule.config))
    pipe = StableDiffusionPipeline(vae=sd.vae, text_encoder=sd.text_encoder, tokenizer=sd.tokenizer, unet=sd.unet,
                                   scheduler=sched, safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    z = invlab.noise(sd, 2, dtype=torch.float32)
    ref = pipe(["a cat", "the dog"], height=16, width=16, num_inference_steps=4, guidance_scale=3.0, latents=z.clone(),
               output_type="latent").images
    ours = invlab.sample(sd, z, steps=4, guidance=3.0, cond=["a cat", "the dog"]).final
    torch.testing.assert_close(ours, ref, rtol=1e-4, atol=1e-4)


def test_conditions(sd):
    x = invlab.noise(sd, 2, dtype=torch.float32)
    emb = sd.check_cond("a cat", 2, x)
    assert emb.shape == (2, 77, 32)
    torch.testing.assert_close(sd.check_cond(emb[:1], 2, x), emb)
    assert sd.null_cond(3, x).shape == (3, 77, 32)
    with pytest.raises(ValueError, match="prompts"):
        sd.check_cond(["a", "b", "c"], 2, x)
    with pytest.raises(ValueError, match="embeddings"):
        sd.check_cond(torch.zeros(2, 77, 5), 2, x)
    with pytest.raises(TypeError, match="prompt"):
        sd.check_cond(3, 2, x)


def test_dtype_choice(pipe_dir, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    m = invlab.load_model(str(pipe_dir), dtype=torch.bfloat16)
    assert m.dtype == torch.bfloat16
    x = invlab.noise(m, 1, dtype=torch.float32)
    out = m.eps(x, 500.0, m.check_cond("a", 1, x), guidance=2.0).eps
    assert out.dtype == torch.float32 and torch.isfinite(out).all()


def test_uncached_hub_id_fails_fast_with_instructions(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(FileNotFoundError, match="run once online.*local folder"):
        invlab.load_model("nobody-here/not-a-cached-pipeline")


def test_folder_that_is_not_a_pipeline(tmp_path):
    with pytest.raises(ValueError, match="save_pretrained"):
        invlab.load_model(str(tmp_path))


def test_unknown_name_still_lists_models():
    with pytest.raises(ValueError, match="choose one of"):
        invlab.load_model("no-such-model")


def test_sd15_architecture_config():
    from invlab.models.sd import SD15_UNET_CONFIG, random_unet

    assert SD15_UNET_CONFIG["block_out_channels"] == [320, 640, 1280, 1280]
    assert SD15_UNET_CONFIG["cross_attention_dim"] == 768
    with pytest.raises(ValueError, match="choose one of"):
        random_unet("sdxl")


def test_throughput_benchmark_runs_on_tiny_config(tmp_path):
    import json
    import runpy
    from pathlib import Path

    script = Path(__file__).resolve().parent.parent / "benchmarks" / "unet_throughput.py"
    main = runpy.run_path(str(script))["main"]
    out = tmp_path / "t.json"
    assert main(["--device", "cpu", "--config", "tiny", "--batches", "1", "--steps", "2", "--repeats", "1",
                 "--json", str(out)]) == 0
    rows = json.loads(out.read_text())
    assert {r["loop"] for r in rows} == {"bare", "naive", "naive+rec", "diffusers"}
