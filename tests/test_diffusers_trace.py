"""The loop tracer (issue 14, item 2): a user's diffusers pipeline and hand-written inversion loop,
recorded into Trajectories and compared with invlab's runs step by step; planted bugs are found
at the step they were planted, with the right cause."""

import math

import pytest
import torch

import invlab
from invlab.diffusers_trace import LoopTracer, compare, infer_update

N, W, PROMPT = 10, 3.0, "a cat"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from diffusers import StableDiffusionPipeline

    from invlab.models.sd import save_tiny_pipeline

    folder = save_tiny_pipeline(tmp_path_factory.mktemp("tiny-sd") / "pipe")
    pipe = StableDiffusionPipeline.from_pretrained(folder, safety_checker=None, requires_safety_checker=False,
                                                   use_safetensors=True)
    pipe.set_progress_bar_config(disable=True)
    return pipe, invlab.load_model(str(folder))


@pytest.fixture(scope="module")
def image():
    g = torch.Generator().manual_seed(0)
    coarse = torch.rand(1, 3, 4, 4, generator=g) * 1.6 - 0.8
    return torch.nn.functional.interpolate(coarse, size=(16, 16), mode="bilinear", align_corners=False)


def user_inversion(pipe, image, prompt, steps, w, bug="none", at=None):
    """A diffusers-style hand-written DDIM inversion loop, as users write it, with one bug switched on:
    "unguarded-index" (t - T//N without the guard), "current-label", "vae-scale" (no scaling factor),
    "guidance" (w changed from step ``at`` on, 0-based), "label-at" (t + 20 fed at step ``at``)."""
    unet, sched = pipe.unet, pipe.scheduler
    with torch.no_grad():
        latents = pipe.vae.encode(image).latent_dist.mean
        if bug != "vae-scale":
            latents = latents * pipe.vae.config.scaling_factor
        cond, uncond = pipe.encode_prompt(prompt, "cpu", 1, True)
        emb = torch.cat([uncond, cond])
        sched.set_timesteps(steps)
        ac = sched.alphas_cumprod
        T = sched.config.num_train_timesteps
        for i, t in enumerate(sched.timesteps.flip(0)):           # ascending: clean -> noisy
            t = int(t)
            t_prev = t - T // steps                                # the cleaner level the step starts from
            a_cur = ac[t_prev] if (t_prev >= 0 or bug == "unguarded-index") else sched.final_alpha_cumprod
            a_next = ac[t]
            label = max(t_prev, 0) if bug == "current-label" else t
            if bug == "label-at" and i == at:
                label = t + 20
            noise = unet(torch.cat([latents] * 2), label, encoder_hidden_states=emb).sample
            e_u, e_c = noise.chunk(2)
            ww = 1.0 if (bug == "guidance" and i >= at) else w
            eps = e_u + ww * (e_c - e_u)
            x0 = (latents - (1 - a_cur).sqrt() * eps) / a_cur.sqrt()
            latents = a_next.sqrt() * x0 + (1 - a_next).sqrt() * eps
    return latents


def traced_inversion(pipe, model, image, **bug):
    with LoopTracer(pipe.unet) as tracer:
        final = user_inversion(pipe, image, PROMPT, N, W, **bug)
    return tracer.trajectory(model, final=final, direction="invert"), final


@pytest.fixture(scope="module")
def reference(tiny, image):
    pipe, model = tiny
    with torch.no_grad():
        x0 = model.encode(image)
    return invlab.invert(model, x0, N, "ddim", "naive", W, PROMPT)


def test_infer_update_recovers_a_ddim_step_written_out():
    """x_next = a_n x0 + s_n eps with x0 = (x - s_c eps)/a_c and eps = e_u + w (e_c - e_u): the fit
    returns w and both alpha_bars."""
    g = torch.Generator().manual_seed(1)
    x, e_u, e_c = (torch.randn(2, 4, 8, 8, generator=g, dtype=torch.float64) for _ in range(3))
    for ab_c, ab_n, w in ((0.9991, 0.93, 3.0), (0.2, 0.05, 7.5), (0.05, 0.2, 1.5)):   # inversion and sampling
        eps = e_u + w * (e_c - e_u)
        x0 = (x - math.sqrt(1 - ab_c) * eps) / math.sqrt(ab_c)
        x_next = math.sqrt(ab_n) * x0 + math.sqrt(1 - ab_n) * eps
        fit = infer_update(x, x_next, e_u, e_c - e_u)
        assert fit["residual"] < 1e-12
        assert fit["w"] == pytest.approx(w, rel=1e-9)
        assert fit["ab_cur"] == pytest.approx(ab_c, rel=1e-8) and fit["ab_next"] == pytest.approx(ab_n, rel=1e-8)
    # not a DDIM-form update: no levels claimed
    fit = infer_update(x, torch.tanh(x) + e_u ** 2, e_u, e_c - e_u)
    assert fit["residual"] > 0.1 and "ab_cur" not in fit


def test_pipeline_sampling_traced_equals_invlab_sample(tiny):
    """StableDiffusionPipeline with callback_on_step_end: same labels, levels, guidance, states."""
    pipe, model = tiny
    z = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    with LoopTracer(pipe.unet) as tracer:
        out = pipe(PROMPT, latents=z.clone(), num_inference_steps=N, guidance_scale=W, height=16, width=16,
                   output_type="latent", callback_on_step_end=tracer.callback).images
    assert not pipe.unet._forward_hooks                              # the hook is removed after the block
    mine = tracer.trajectory(model, direction="sample")
    ref = invlab.sample(model, z, N, "ddim", W, PROMPT)
    assert torch.allclose(mine.final.float(), out, atol=1e-6)
    assert [r.t_model for r in mine.records] == [r.t_model for r in ref.records]
    assert all(r.guidance == pytest.approx(W, rel=1e-4) for r in mine.records)
    for k, r in enumerate(mine.records):                              # the inferred levels are the grid's
        assert r.extras["alpha_bar_cur"] == pytest.approx(ref.levels[k].alpha ** 2, rel=1e-4)
        assert r.extras["alpha_bar_next"] == pytest.approx(ref.levels[k + 1].alpha ** 2, rel=1e-4)
    c = compare(mine, ref, model)
    assert c.first_index is None, str(c)


def test_scheduler_step_wrapping_marks_steps(tiny):
    """A loop that calls scheduler.step: wrapping it gives the same trajectory as the callback."""
    pipe, model = tiny
    z = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(2))
    with LoopTracer(pipe.unet, scheduler=pipe.scheduler) as tracer:
        pipe(PROMPT, latents=z.clone(), num_inference_steps=N, guidance_scale=W, height=16, width=16,
             output_type="latent")
    assert "step" not in vars(pipe.scheduler)                         # the wrapper is gone after the block
    mine = tracer.trajectory(model, direction="sample")
    assert len(mine.records) == N
    assert compare(mine, invlab.sample(model, z, N, "ddim", W, PROMPT), model).first_index is None


def test_correct_hand_loop_agrees_with_invlab(tiny, image, reference):
    pipe, model = tiny
    mine, final = traced_inversion(pipe, model, image)
    c = compare(mine, reference, model)
    assert c.first_index is None, str(c)
    assert torch.allclose(final.double(), reference.final.double(), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("bug, at, index, kind, words", [
    ("unguarded-index", None, 0, "levels", "wrapped around"),
    ("current-label", None, 0, "label", "current level's label"),
    ("vae-scale", None, -1, None, "VAE scaling"),
    ("guidance", 4, 4, "guidance", "w = 1"),
    ("label-at", 6, 6, "label", "t = 621"),
])
def test_tracer_pinpoints_the_planted_bug(tiny, image, reference, bug, at, index, kind, words):
    """Each planted bug is named at the step it was planted (index 0-based; -1: the start latent)."""
    pipe, model = tiny
    mine, _ = traced_inversion(pipe, model, image, bug=bug, at=at)
    c = compare(mine, reference, model)
    assert c.first_index == index, str(c)
    assert any(words in why for why in c.causes), str(c)
    if kind is not None:
        assert kind in c.rows[index]["kinds"]
    if bug == "vae-scale":                              # the factor is named: 1 / scaling_factor
        assert "5.49" in c.causes[0]
    if bug in ("guidance", "label-at"):                 # nothing before the planted step disagrees
        assert all(not r["kinds"] for r in c.rows[:index])
    if bug == "label-at":                               # a one-step bug: the later steps' checks pass again
        assert all(r["kinds"] in ([], ["state"]) for r in c.rows[index + 1:])


def test_tracer_refuses_an_empty_recording(tiny):
    pipe, model = tiny
    with LoopTracer(pipe.unet) as tracer:
        pass
    with pytest.raises(ValueError, match="no UNet call"):
        tracer.trajectory(model)
    with pytest.raises(TypeError, match="torch module"):
        LoopTracer("unet")
