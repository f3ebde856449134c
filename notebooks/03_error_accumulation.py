# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/invlab/invlab/blob/main/notebooks/03_error_accumulation.ipynb)
#
# # How inversion error accumulates, step by step
#
# **What you will learn**
#
#
# - to measure an inversion's error **against the truth at every step**, for three methods on the
#   same images: naive DDIM inversion, EasyInv, and exact inversion (backward Euler);
# - to tell a step's **own** (local) error from the error it **inherits** from earlier steps;
# - what the latents, the predicted clean images and the error maps look like along the way;
# - with a step slider: what each method's latent looks like at any step.
#
# Is the drift you see in your own inversion normal or a bug? This notebook gives you the
# reference curve to compare against.

# %%
# On Colab only: install invlab (everywhere else it is already installed by `make`).
import sys
if "google.colab" in sys.modules:
    import subprocess
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "git+https://github.com/invlab/invlab"], check=True)

# %% tags=["parameters"]
# Parameters (papermill overrides these; keep them literals)
QUICK = False
SEED = 0
MODEL = "gmm-digits"
STEPS = 50
GUIDANCE = 3.0
BATCH = 4
DTYPE = "float64"
FIGURES = "../figures"

# %%
import torch
import invlab
from invlab import plots
from invlab.nbsetup import setup
from invlab.report import publish
from invlab.studies.errors import local_step_errors, restart_from_truth, run_methods
from invlab.widgets import StepExplorer

cfg = setup(QUICK, SEED, MODEL, STEPS, GUIDANCE, FIGURES, DTYPE)
if not isinstance(BATCH, int) or BATCH < 1:
    raise ValueError(f"BATCH must be a positive integer (got {BATCH!r})")
batch = 2 if cfg.quick else BATCH
steps = min(cfg.steps, 20) if cfg.quick else cfg.steps
model = cfg.model
cond = torch.arange(batch) % model.num_classes if model.num_classes else None
print(model, f"| {steps} DDIM steps, guidance {cfg.guidance}, batch {batch}, {DTYPE}")

# %% [markdown]
# ## 1. Three methods, one image, one grid
#
# All three invert the same DDIM sampler (same timesteps, same guidance $w$):
#
# - **naive**: $x_{s} \approx \alpha_s \hat x_0 + \sigma_s \hat\varepsilon$ with $\hat\varepsilon=\varepsilon_\theta(x_t, s)$ taken at the *known* latent;
# - **EasyInv**: the naive output blended with the previous latent, $z \leftarrow \eta\, z_{\text{new}} + (1-\eta)\, z_{\text{prev}}$, $\eta=0.5$, on steps $0.05N < i < 0.25N$;
# - **exact**: solve the sampler's own step backwards, $\Phi(\hat x_s) = x_t$ with $\Phi(y)=\alpha_t\hat x_0(y)+\sigma_t\varepsilon_\theta(y,s)$, by Anderson-accelerated fixed-point iteration.

# %%
cmp = run_methods(model, invlab.noise(model, batch, seed=cfg.seed, dtype=cfg.dtype), steps, "ddim",
                  cfg.guidance, cond, show_progress=True)
errors = cmp.step_errors()
reached = [lv.label for lv in next(iter(cmp.runs.values())).levels[1:]]
plots.plot_step_errors(errors, x_labels=reached, save=cfg.figures / "03_step_errors.png",
                       title=plots.run_title("ground-truth error after each inversion step", model.name, steps, cfg.guidance));
print({k: f"{v:.3g}" for k, v in cmp.noise_nmse().items()}, "| NFE per step:", cmp.nfe_per_step())

# %% [markdown]
# Naive inversion's error grows steadily over the whole trajectory. EasyInv's blend changes the curve only inside its window, and on this model it raises it. Exact inversion stays at its solver's tolerance floor at every step (each step's equation is solved to $10^{-9}$ RMS, the float64 default; the NMSE is about its square): there is nothing left to accumulate.

# %% [markdown]
# ## 2. A step's own error vs the error it inherits
#
# Start a single naive step from the *true* latent at level $k$ and compare its output with the true
# latent at level $k+1$: that is the step's **local** error. The accumulated error after step $k$
# (the curve above) contains the local errors of all steps before it, carried along by the flow.

# %%
local = local_step_errors(cmp)
acc = errors["naive"]
plots.plot_step_errors({"naive: accumulated": acc, "naive: local (one step from the truth)": local},
                       x_labels=reached, title=plots.run_title("accumulated vs local error of naive inversion", model.name, steps, cfg.guidance),
                       save=cfg.figures / "03_local_vs_accumulated.png");
ratio = float(acc[-1] / local.max())
k_max = int(local.argmax())
print(f"final accumulated error / largest single-step error = {ratio:.1f}")
print(f"largest local error at step {k_max + 1} (level {reached[k_max - 1] if k_max else 0:g} -> {reached[k_max]:g}): "
      f"{float(local[k_max] / local.median()):.0f}x the median step's")

# %% [markdown]
# Each step's own error is small compared with what has piled up by the end (the first ratio). But
# the local curve is not flat: its largest value is at one of the very first steps (printed above),
# where the latent is still almost the clean image and the network's $\hat\varepsilon$ at the known
# latent is furthest from the one at the unknown noisier latent. So is the drift the sum of many small
# mistakes, or do a few early ones dominate? A counterfactual answers it: run naive inversion again,
# but after step $k$ replace its state by the *true* latent (an intervention hook), so that only the
# steps after $k$ make mistakes.

# %%
restart_ks = sorted({0, 1, 2, max(3, steps // 5), steps // 2})
restarts = restart_from_truth(cmp, restart_ks)
plots.plot_step_errors({("naive" if k == 0 else f"naive, true latent after step {k}"): r["errors"] for k, r in restarts.items()},
                       x_labels=reached, title=f"{model.name}, {steps} steps, w = {cfg.guidance:g}: which steps cause the drift?",
                       save=cfg.figures / "03_restart_from_truth.png");
for k, r in restarts.items():
    print(f"perfect first {k:2d} steps: final noise NMSE {r['noise_nmse']:.3g}  ({r['noise_nmse'] / restarts[0]['noise_nmse']:.0%} of the plain run's)")

# %% [markdown]
# Making only the first two steps perfect removes a large share of the final error, and making the
# first fifth perfect removes most of it (the percentages above): **the early, low-noise steps
# dominate the drift**. So a large local error at the first steps is the normal signature of naive
# inversion, not a bug. What would point to one is a spike *later* in the local curve, or an
# accumulated curve that jumps instead of growing smoothly (compare your run's curves with these).

# %% [markdown]
# ## 3. Latents, predicted clean images and error maps
#
# For sample 0: the latent each method reaches at a few levels, the clean image it predicts there ($\hat x_0$), and the distance to the true latent.

# %%
ks = torch.linspace(0, steps, 5).round().long().tolist()
truth = cmp.runs["naive"].aligned(cmp.reference)
rows = {"truth": truth[ks, 0]}
for name in cmp.runs:
    rows[name] = cmp.runs[name].latents()[ks, 0]
for name in cmp.runs:
    rows["|" + name + " - truth|"] = (cmp.runs[name].latents()[ks, 0] - truth[ks, 0]).abs()
labels = [cmp.runs["naive"].levels[k].label for k in ks]
plots.plot_latent_rows(rows, labels, save=cfg.figures / "03_latent_grid.png",
                       suptitle=plots.run_title("latents and their errors, sample 0", model.name, steps, cfg.guidance));

# %% [markdown]
# The latents of all three methods look alike to the eye; the error rows show the difference: naive's error grows with the noise level and EasyInv's is larger still, while exact inversion's error map, on the same colour scale, is black: its error sits at the solver's tolerance, many orders of magnitude lower.

# %%
x0_rows = cmp.x0_predictions(ks[1:], sample_index=0)
plots.plot_latent_rows(x0_rows, labels[1:], vrange=(-1.5, 1.5), save=cfg.figures / "03_x0_predictions.png",
                       suptitle=plots.run_title("the network's clean-image prediction along each inversion", model.name, steps, cfg.guidance));

# %% [markdown]
# At low noise the prediction $\hat x_0$ is essentially the image itself. At high noise the model can only guess the class, and with guidance it guesses an exaggerated, high-contrast prototype of it. The exact row matches the truth row; naive and EasyInv differ from it only subtly: their error lives mostly in the noise the latent carries, not in the digit the model sees in it.

# %% [markdown]
# ## 4. Step through it
#
# Move the slider: each method's latent after that inversion step, its error map, and where the step sits on the error curves.

# %%
explorer = StepExplorer(cmp)
explorer

# %%
final = cmp.noise_nmse()
image = cmp.image_nmse()
publish(steps=steps, guidance=cfg.guidance, naive_noise_nmse=final["naive"], easyinv_noise_nmse=final["easyinv"],
        exact_noise_nmse=final["exact"], naive_image_nmse=image["naive"], exact_image_nmse=image["exact"],
        exact_nfe_per_step=cmp.nfe_per_step()["exact"], accumulated_over_local=ratio, local_argmax_step=k_max + 1,
        restart_steps=restart_ks, restart_noise_nmse=[restarts[k]["noise_nmse"] for k in restart_ks],
        naive_error_monotone=bool((acc[1:] >= acc[:-1] * 0.999).all()))


# %% [markdown]
# ## Exercise: the local error, written by you
#
# Section 2 called `local_step_errors`. Write it: `truth` holds the true latents in inversion order
# (`truth[k]` at `levels[k]`, shape `(N + 1, B, ...)`), `step(x, cur, nxt)` is one naive step. Start
# every step from the truth and compare with the true next latent, per sample, then average over the batch:
#
# $$e_k=\frac1B\sum_{b}\frac{\|\mathrm{step}(x^\star_{k})_b-x^\star_{k+1,b}\|^2}{\|x^\star_{k+1,b}\|^2},\qquad k=0,\dots,N-1 .$$
#
# The check compares your function with invlab's on a naive inversion of the analytic mixture, and
# recognises the accumulated error when it sees it. Until your function passes, the cell uses
# `invlab.solutions.local_errors`.

# %%
def my_local_errors(truth, levels, step):
    """The NMSE of one naive step started from the truth, for every step: a tensor of shape (N,)."""
    raise NotImplementedError("your code here")


# %%
from invlab import exercises, solutions

check = exercises.check_local_errors(my_local_errors)
local_errors = check.pick(my_local_errors, solutions.local_errors)
c = model.check_cond(cond, batch, cmp.z_T)

def naive(x, cur, nxt):
    eps = model.eps(x, nxt.label, c, cfg.guidance).eps
    return invlab.steps.ddim_step(invlab.steps.x0_from_eps(x, eps, cur), eps, nxt)

mine = local_errors(truth.to(cfg.dtype), list(cmp.runs["naive"].levels), naive)
print("on this notebook's run it gives section 2's local curve:", torch.allclose(mine, local))

# %% [markdown]
# ## Questions to try
#
# 1. Set `GUIDANCE = 1.0` and `7.5`: which method's curve moves most?
# 2. Halve `STEPS`: does naive inversion's *local* error per step grow by 2x or 4x? What does that say about its order?
# 3. Set `DTYPE = "float32"`: where does exact inversion's error floor move to?
# 4. Move the step slider to the first steps of the EasyInv window (steps 3 to 12 of 50): when does EasyInv's error first separate from naive's?
