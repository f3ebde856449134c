# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/invlab/invlab/blob/main/notebooks/13_debug_your_inversion.ipynb)
#
# # Debug your own inversion
#
# **What you will learn**
#
# - how to bring **your own image** (a PNG file) to a model: size, colour and range, the same way
#   the command line `invlab invert` / `invlab diagnose` reads it;
# - how to judge an inversion **with no ground truth**: `invlab.diagnose` and its one-page report
#   (forward residual, local error, x0 drift, the round trip and where it is lost, the noise's statistics);
# - how to find a bug in **your own hand-written diffusers loop**: record it with
#   `invlab.diffusers_trace.LoopTracer` and let `compare` name the first step that disagrees, and why;
# - how to run the same on Stable Diffusion on a GPU (Colab) with a hub id.
#
# Prerequisites: notebooks 01 (sampling and inversion), 03 (accumulated and local error) and 14 (the bug
# gallery, where each bug's fingerprint was measured against ground truth).

# %%
# On Colab only: install invlab (everywhere else it is already installed by `make`).
import sys
if "google.colab" in sys.modules:
    import subprocess
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "git+https://github.com/invlab/invlab"], check=True)

# %% tags=["parameters"]
# Parameters (papermill overrides these; keep them literals)
QUICK = False            # small sizes for CI
SEED = 0                 # which validation digit, and the tiny pipeline's random weights
MODEL = "digits-latent"  # a latent model with a VAE, as Stable Diffusion is (32x32 grayscale images)
STEPS = 50               # inversion steps
GUIDANCE = 3.0           # the sampler's guidance scale
IMAGE = ""               # your own PNG or JPEG file; empty: a real digit from the scikit-learn digits
HUB_ID = ""              # a Stable Diffusion hub id for section 4, e.g. "stable-diffusion-v1-5/stable-diffusion-v1-5" (GPU + network)
FIGURES = "../figures"

# %%
import tempfile
from pathlib import Path

import numpy as np
import torch
import invlab
from invlab import plots
from invlab.data import digits_images
from invlab.invert_cli import load_image, model_image_shape, save_png
from invlab.nbsetup import setup
from invlab.report import publish

cfg = setup(QUICK, SEED, MODEL, STEPS, GUIDANCE, FIGURES)
torch.set_num_threads(1)
torch.set_grad_enabled(False)
model = cfg.model
if not getattr(model, "is_latent", False) or not model.num_classes:
    raise ValueError(f"MODEL={MODEL!r} must be a class-conditional latent model (e.g. 'digits-latent')")
steps = min(cfg.steps, 10) if cfg.quick else cfg.steps
work = Path(tempfile.mkdtemp(prefix="invlab13-"))          # scratch files (never figures/)
print(f"{model.name}: {steps} steps, w = {cfg.guidance:g}; scratch folder {work}")

# %% [markdown]
# ## 1. Bring an image
#
# A model takes images of one size and one number of channels, in $[-1, 1]$. `digits-latent`
# takes $32\times32$ grayscale; Stable Diffusion 1.5 takes $512\times512$ RGB. The reader below is
# the one the command line uses: it refuses a wrong size or colour unless you say what to do
# (`fit="resize"` stretches, `fit="crop"` centre-crops to the aspect ratio first; `convert=True`
# maps RGB to luminance or grayscale to RGB). Without `IMAGE`, we write a real handwritten digit
# from scikit-learn's bundled set to a PNG first, so the path is the same as for your own file.

# %%
if IMAGE:
    path, label = Path(IMAGE), None
else:
    xs, ys = digits_images(32, split="val")
    path, label = work / "digit.png", int(ys[cfg.seed])
    save_png(xs[cfg.seed:cfg.seed + 1], path)
shape = model_image_shape(model)
try:
    image = load_image(path, shape)
except ValueError as exc:                                    # your file: say what to pass, then fit it
    print(f"as is: {exc}\n-> reading it with fit='crop', convert=True")
    image = load_image(path, shape, fit="crop", convert=True)
image = image.to(cfg.dtype)
cond = label if label is not None else 0                    # your own image: put its class here
print(f"{path.name}: {tuple(image.shape)} in [{image.min():.2f}, {image.max():.2f}], condition (class) {cond}")

# %% [markdown]
# The same run from a terminal (it writes `reconstruction.png`, `noise.safetensors`, `report.png`
# and `report.json` into `--out`):
#
# ```
# invlab diagnose digit.png --model digits-latent --cond 6 --method naive --steps 50 --guidance 3 --out out/
# ```

# %% [markdown]
# ## 2. Diagnose the inversion, with no ground truth
#
# We invert the image with naive DDIM inversion and with exact inversion (each step's implicit
# equation solved, notebook 06). Write $\Phi_k$ for the sampler's step from level $k+1$ down to
# level $k$ and $\hat x_0, \dots, \hat x_N$ for the inverted states. `invlab.diagnose` measures, per step,
#
# $$r_k = \operatorname{RMS}\big(\Phi_k(\hat x_{k+1}) - \hat x_k\big)\quad\text{(forward residual: 0 for an exact inverse)},$$
#
# the local error against an exact solve from the same state, the drift of the model's $x_0$
# prediction, and, after sampling $\hat x_N$ back, how far the round trip is from the image and on
# which step the gap grew. None of this needs the true noise.

# %%
diag = {m: invlab.diagnose(model, image, cond=cond, steps=steps, method=m, guidance=cfg.guidance)
        for m in ("naive", "exact")}
for m, d in diag.items():
    print(d)
s_naive, s_exact = diag["naive"].summary(), diag["exact"].summary()
publish(steps=steps, guidance=cfg.guidance,
        naive_max_residual=s_naive["max_forward_residual"], exact_max_residual=s_exact["max_forward_residual"],
        naive_max_local=s_naive["max_local_error"],
        naive_psnr=s_naive["psnr"], exact_psnr=s_exact["psnr"], psnr_vae=s_exact["psnr_vae"],
        naive_worst_attribution_step=s_naive["largest_attribution_step"]);

# %% [markdown]
# Read the numbers above: naive inversion's forward residual is orders of magnitude above exact
# inversion's (which is at its solver's tolerance), and its round trip loses PSNR, while exact
# inversion's round trip reaches the VAE's own round trip (`psnr_vae`): the decoder, not the
# inversion, is then the limit. The two ratios:

# %%
print(f"forward residual, naive / exact: {s_naive['max_forward_residual'] / s_exact['max_forward_residual']:.3g}x; "
      f"PSNR naive {s_naive['psnr']:.1f} dB, exact {s_exact['psnr']:.1f} dB, the VAE alone {s_exact['psnr_vae']:.1f} dB")

# %% [markdown]
# ## 3. Read the report
#
# `d.save(folder)` writes this page and its numbers as JSON; here we draw it for the naive run.
# Top row: your image, the round trip, their difference and the recovered noise. Middle: the per-step curves
# (steps numbered 1 = the clean end). Bottom: the round trip's per-step attribution and the noise's
# statistics.

# %%
plots.plot_diagnosis(diag["naive"].to_json(), diag["naive"].images, save=cfg.figures / "13_report.png");

# %%
fr = diag["naive"].forward_residual
spread = float(fr.max() / np.median(fr))
print(f"naive forward residual: largest / median = {spread:.2f}")
publish(naive_residual_max_over_median=spread);

# %% [markdown]
# Each curve's worst step is printed in the summary above. On a correct run the curves are smooth:
# naive inversion's error is spread over the steps, with no step standing out by orders of magnitude
# (the ratio of the largest forward residual to the median one is printed below).
# A bug shows as a spike or a level shift on top of that shape (notebook 14's fingerprints), and
# the forward residual is the curve to look at first, since it needs nothing but the inverted states.

# %% [markdown]
# ## 4. Trace your own diffusers loop
#
# Most inversion code is a hand-written loop over a diffusers scheduler. Below is one such loop, on
# a tiny Stable-Diffusion-shaped pipeline built from configs with random weights (no download;
# $16\times16$ RGB images, $4\times8\times8$ latents). **It has one bug.** Can you spot it before
# the tracer does?

# %%
from diffusers import StableDiffusionPipeline
from invlab.diffusers_trace import LoopTracer, compare
from invlab.models.sd import save_tiny_pipeline

folder = save_tiny_pipeline(work / "tiny-sd", seed=cfg.seed)
pipe = StableDiffusionPipeline.from_pretrained(folder, safety_checker=None, requires_safety_checker=False,
                                               use_safetensors=True)
pipe.set_progress_bar_config(disable=True)
sd = invlab.load_model(str(folder))               # the same pipeline behind invlab's interface
PROMPT, W_SD, N_SD = "a cat", 3.0, 10
g = torch.Generator().manual_seed(cfg.seed)
photo = torch.nn.functional.interpolate(torch.rand(1, 3, 4, 4, generator=g) * 1.6 - 0.8, size=(16, 16),
                                        mode="bilinear", align_corners=False)


def my_inversion(pipe, image, prompt, steps, w, t_net=lambda t, t_prev: max(t_prev, 0)):
    """Naive DDIM inversion as it is often written; ``t_net`` picks the label fed to the UNet."""
    unet, sched = pipe.unet, pipe.scheduler
    latents = pipe.vae.encode(image).latent_dist.mean * pipe.vae.config.scaling_factor
    cond, uncond = pipe.encode_prompt(prompt, "cpu", 1, True)
    emb = torch.cat([uncond, cond])
    sched.set_timesteps(steps)
    ac, T = sched.alphas_cumprod, sched.config.num_train_timesteps
    for t in sched.timesteps.flip(0).tolist():                       # clean -> noisy
        t_prev = t - T // steps                                      # the level this step starts from
        a_cur = ac[t_prev] if t_prev >= 0 else sched.final_alpha_cumprod
        e_u, e_c = unet(torch.cat([latents] * 2), t_net(t, t_prev), encoder_hidden_states=emb).sample.chunk(2)
        eps = e_u + w * (e_c - e_u)
        x0 = (latents - (1 - a_cur).sqrt() * eps) / a_cur.sqrt()
        latents = ac[t].sqrt() * x0 + (1 - ac[t]).sqrt() * eps
    return latents


# %% [markdown]
# Record it: the tracer hooks the UNet, so the loop runs unchanged. From each step's two UNet
# outputs and the states before and after, it fits $x_{\rm next} = A x + B\epsilon_u + C(\epsilon_c-\epsilon_u)$
# and reads off the guidance $w = C/B$ and the two noise levels the update used. `compare` checks
# label, levels, guidance, condition and state against `invlab.invert` on the same image.

# %%
reference = invlab.invert(sd, sd.encode(photo), N_SD, "ddim", "naive", W_SD, PROMPT)
with LoopTracer(pipe.unet) as tracer:
    final = my_inversion(pipe, photo, PROMPT, N_SD, W_SD)
buggy = compare(tracer.trajectory(sd, final=final, direction="invert"), reference, sd)
print(buggy)

# %% [markdown]
# The tracer names the first step and the reason: the network saw the label of the level the step
# starts from, not the one it goes to (invlab's naive inversion evaluates $\epsilon_\theta$ at the
# target label: the sampler's own step, run backwards; notebook 14 measured this bug's fingerprint).
# Fix the one line and trace again:

# %%
with LoopTracer(pipe.unet) as tracer:
    final_fixed = my_inversion(pipe, photo, PROMPT, N_SD, W_SD, t_net=lambda t, t_prev: t)
fixed = compare(tracer.trajectory(sd, final=final_fixed, direction="invert"), reference, sd)
print(fixed)
fixed_rel = float((final_fixed.double() - reference.final.double()).norm() / reference.final.double().norm())
buggy_rel = float((final.double() - reference.final.double()).norm() / reference.final.double().norm())
print(f"final latent vs invlab's (relative): buggy {buggy_rel:.3g}, fixed {fixed_rel:.2g}")
publish(trace_first_index=buggy.first_index, trace_label_bug=any("current level's label" in c for c in buggy.causes),
        fixed_agrees=fixed.first_index is None, fixed_rel=fixed_rel, buggy_rel=buggy_rel);

# %% [markdown]
# ## 5. The same on Stable Diffusion (GPU, Colab)
#
# Everything above takes any model invlab loads, and a Stable Diffusion 1.x/2.x hub id or local
# pipeline folder loads as one (`invlab.load_model`). On a GPU (Colab: Runtime -> Change runtime
# type -> GPU), set `HUB_ID` above and `IMAGE` to a photo; the cell below reads it with
# `fit="crop"` (a centred crop to the model's aspect ratio, then a resize), converts it to RGB,
# diagnoses 50 naive DDIM steps at $w = 7.5$ and draws the report. It needs the network (the hub
# download) and does nothing while `HUB_ID` is empty. From a terminal the same is
#
# ```
# invlab diagnose photo.jpg --model stable-diffusion-v1-5/stable-diffusion-v1-5 --prompt "a photo of a cat" \
#     --steps 50 --guidance 7.5 --fit crop --convert --device cuda --out out/
# ```
#
# Your own loop is traced exactly as in section 4: `with LoopTracer(pipe.unet) as tracer: ...` around
# your code, then `compare(tracer.trajectory(model, final=latents), invlab.invert(model, ...), model)`.

# %%
if HUB_ID:
    device = "cuda" if torch.cuda.is_available() else "cpu"
    big = invlab.load_model(HUB_ID, device=device, dtype=torch.float16 if device == "cuda" else torch.float32)
    big_image = load_image(IMAGE or path, model_image_shape(big), fit="crop", convert=True).float()
    big_diag = invlab.diagnose(big, big_image, cond="a photo", steps=50, method="naive", guidance=7.5,
                               show_progress=True, local=False)
    print(big_diag)
    plots.plot_diagnosis(big_diag.to_json(), big_diag.images);
else:
    print("HUB_ID is empty: skipping Stable Diffusion (set it on a GPU machine with network access)")


# %% [markdown]
# ## Exercise: the guidance a traced step used
#
# The tracer never asks your loop for its guidance scale; it reads it off the numbers. A DDIM step is
# $x_{\rm next} = a\,x + b\,\epsilon$ with $\epsilon = \epsilon_u + w(\epsilon_c - \epsilon_u)$, so fitting
# $x_{\rm next} = A\,x + B\,\epsilon_u + C\,(\epsilon_c - \epsilon_u)$ over all entries by least squares gives
# $B = b$ and $C = b\,w$. Write the fit and return $w$ (`torch.linalg.lstsq` solves it); the check runs it on
# every step of a DDIM run at $w = 3.7$:

# %%
def my_traced_guidance(x, x_next, eps_u, eps_c):
    """The guidance scale of one recorded step, fitted from its states and the network's two outputs."""
    raise NotImplementedError("your code here")


# %%
from invlab import exercises, solutions

check = exercises.check_traced_guidance(my_traced_guidance)
traced_guidance = check.pick(my_traced_guidance, solutions.traced_guidance)
m0 = invlab.load_model("gmm-digits")
z0 = invlab.noise(m0, 2, seed=cfg.seed, dtype=torch.float64)
lv = m0.schedule.grid(10).levels
o = m0.eps(z0, lv[0].label, m0.check_cond(torch.tensor([1, 7]), 2, z0), 5.0)
from invlab.steps import ddim_step, x0_from_eps

x1 = ddim_step(x0_from_eps(z0, o.eps, lv[0]), o.eps, lv[1])
print(f"a step taken at w = 5.0 reads as w = {traced_guidance(z0, x1, o.eps_uncond, o.eps_cond):.6f}")

# %% [markdown]
# ## Questions to try
#
# 1. Raise `GUIDANCE` to 6. Which of the report's curves move most for naive inversion, and does
#    exact inversion still reach `psnr_vae`?
# 2. Plant the guidance bug in `my_inversion`: use `w = 1` from the fifth step on. At which step does
#    `compare` place it, and what does it say the guidance was?
# 3. Drop `* pipe.vae.config.scaling_factor`. What does the tracer report, and at which "step"?
# 4. Save your own 8x8 drawing of a digit as a PNG and run `invlab diagnose` on it with `--fit resize`.
#    Does the noise still "look like noise" (the report's last panel)?
