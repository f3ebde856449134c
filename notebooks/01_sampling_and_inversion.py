# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/invlab/invlab/blob/main/notebooks/01_sampling_and_inversion.ipynb)
#
# # Sampling and naive inversion, side by side
#
# **What you will learn**
#
#
# - how a DDIM sampler walks from noise `z_T` to an image, one level at a time, and what the
#   *VP convention* `x_t = alpha_t x0 + sigma_t eps` means for every number on this page;
# - what **naive DDIM inversion** does: run the same step backwards, using the noise predicted at
#   the *known* latent in place of the unknown one;
# - how to measure the inversion's **ground-truth error after every step**: the image came from
#   the sampler, so we know the true latent at every level;
# - why that error grows with classifier-free guidance.
#
# Everything runs on an **analytic model**, a Gaussian mixture fitted to scikit-learn's digits whose
# noise prediction is known in closed form: a perfect network, so every error you see is the
# algorithm's, not the model's. No GPU and no download.

# %%
# On Colab only: install invlab (everywhere else it is already installed by `make`).
import sys
if "google.colab" in sys.modules:
    import subprocess
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "git+https://github.com/invlab/invlab"], check=True)

# %% tags=["parameters"]
# Parameters (papermill overrides these; keep them literals)
QUICK = False          # small sizes for CI
SEED = 0
MODEL = "gmm-digits"   # any name from invlab.available_models()
STEPS = 50             # DDIM steps
GUIDANCE = 3.0         # classifier-free guidance scale w; 1 means no guidance
BATCH = 8
DTYPE = "float64"
FIGURES = "../figures"

# %%
import torch
import invlab
from invlab import plots
from invlab.nbsetup import setup
from invlab.report import publish

cfg = setup(QUICK, SEED, MODEL, STEPS, GUIDANCE, FIGURES, DTYPE)
if not isinstance(BATCH, int) or BATCH < 1:
    raise ValueError(f"BATCH must be a positive integer (got {BATCH!r})")
batch = 4 if cfg.quick else BATCH
steps = min(cfg.steps, 20) if cfg.quick else cfg.steps
model = cfg.model
cond = torch.arange(batch) % model.num_classes if model.num_classes else None
print(model)
print(f"{steps} DDIM steps, guidance {cfg.guidance}, batch {batch}, {DTYPE}")

# %% [markdown]
# ## 1. The schedule
#
# invlab writes every noise level in one convention (DPM-Solver's):
#
# $$x_t = \alpha_t\,x_0 + \sigma_t\,\varepsilon,\qquad \alpha_t^2+\sigma_t^2=1,\qquad \lambda_t=\log\frac{\alpha_t}{\sigma_t}.$$
#
# The timesteps are exactly the ones diffusers' `DDIMScheduler.set_timesteps` gives for Stable
# Diffusion's schedule (scaled-linear betas, 1000 train steps, `steps_offset=1`).

# %%
grid = model.schedule.grid(steps, "ddim")
print("first timesteps:", grid.labels[:5], "...", grid.labels[-3:])
print(f"alpha from {grid.levels[0].alpha:.4f} to {grid.levels[-1].alpha:.4f};  sigma from {grid.levels[0].sigma:.4f} to {grid.levels[-1].sigma:.4f}")

# %% [markdown]
# ## 2. Sampling: DDIM from $s$ to $t$
#
# With the network's noise prediction $\hat\varepsilon = \varepsilon_\theta(x_s, s)$, guided as
# $\hat\varepsilon = \varepsilon_u + w(\varepsilon_c-\varepsilon_u)$, one DDIM step is
#
# $$\hat x_0 = \frac{x_s - \sigma_s\hat\varepsilon}{\alpha_s},\qquad x_t = \alpha_t\,\hat x_0 + \sigma_t\,\hat\varepsilon .$$

# %%
z_T = invlab.noise(model, batch, seed=cfg.seed, dtype=cfg.dtype)
fwd = invlab.sample(model, z_T, steps=steps, solver="ddim", guidance=cfg.guidance, cond=cond)
plots.show_images(fwd.final, rows=1, titles=[f"class {int(c)}" for c in cond] if cond is not None else None,
                  save=cfg.figures / "01_samples.png", suptitle=plots.run_title("DDIM samples", model.name, steps, cfg.guidance));

# %% [markdown]
# Each sample is a digit of the requested class: the mixture's components are digit prototypes, and guidance pushes each sample towards its class.

# %% [markdown]
# ## 3. Naive inversion: the same step, backwards
#
# To go from a less noisy $x_t$ up to a noisier $x_s$ we would need $\varepsilon_\theta(x_s, s)$, but
# $x_s$ is what we are looking for. Naive inversion uses the noise predicted at the known latent,
# fed the target's label (the diffusers `DDIMInverseScheduler` convention):
#
# $$\hat\varepsilon = \varepsilon_\theta(x_t, s),\qquad \hat x_0=\frac{x_t-\sigma_t\hat\varepsilon}{\alpha_t},\qquad x_s \approx \alpha_s\,\hat x_0 + \sigma_s\,\hat\varepsilon .$$
#
# Written out once, inline, for the first step; then checked against the package:

# %%
x_t = fwd.final                                   # the clean end of the grid
cur, nxt = grid.levels[-1], grid.levels[-2]        # one step up the grid
eps_hat = model.eps(x_t, nxt.label, model.check_cond(cond, batch, x_t), cfg.guidance).eps
x0_hat = (x_t - cur.sigma * eps_hat) / cur.alpha
x_s = nxt.alpha * x0_hat + nxt.sigma * eps_hat

inv = invlab.invert(model, fwd.final, steps=steps, method="naive", guidance=cfg.guidance, cond=cond)
print("inline step == package step:", torch.allclose(x_s, inv.records[0].x_next))

# %% [markdown]
# The two steps side by side: the same formula, the same single network call, but sampling feeds the
# network the state it starts from, while inversion needs the noise at the state it is looking for
# and has to make do with the one it starts from.

# %%
plots.draw_step_diagram(save=cfg.figures / "01_step_diagram.png");

# %% [markdown]
# The red dashed arrow is the whole story of naive inversion: $\varepsilon_\theta(x_t, s)$ stands in
# for $\varepsilon_\theta(x_s, s)$, and the gap between the two is the error that the next section
# measures step by step.

# %% [markdown]
# ## 4. The error after every step, against the truth
#
# The sampler recorded the true latent at every level, so `inv.errors_to(fwd)` gives the
# normalised error $\|\hat x - x\|^2/\|x\|^2$ of the inversion's latent after every step.
# We compare guidance $w=1$ with the chosen $w$.

# %%
runs = {}
for w in sorted({1.0, cfg.guidance}):
    f = fwd if w == cfg.guidance else invlab.sample(model, z_T, steps, "ddim", w, cond)
    i = inv if w == cfg.guidance else invlab.invert(model, f.final, steps, method="naive", guidance=w, cond=cond)
    runs[w] = (f, i)
errors = {f"naive  w={w:g}": i.errors_to(f) for w, (f, i) in runs.items()}
reached = [r.t_next for r in inv.records]
plots.plot_step_errors({k.replace("naive  ", ""): v for k, v in errors.items()}, x_labels=reached,
                       save=cfg.figures / "01_step_errors.png",
                       title=f"naive inversion: error after each step ({model.name}, {steps} steps, w in the legend)");

# %%
final = {w: float(e[-1]) for w, e in zip(runs, errors.values())}
print("final noise error per guidance:", {f"w={w:g}": f"{e:.3g}" for w, e in final.items()})

# %% [markdown]
# The error starts tiny and grows at every step: each step's noise prediction is taken at the known latent instead of the unknown one, and the mistakes accumulate. Guidance raises the curve, here only a little: in the default full run (50 steps) the final error is 0.061 at $w=3$ against 0.056 at $w=1$ (the printout above gives your run's). How much depends on how sharply the guided noise field bends between neighbouring levels; on this mixture the gap is modest, and notebook 04 sweeps guidance on the analytic and the trained models.

# %% [markdown]
# ## 5. What the latents look like
#
# Top row: the true latents the sampler went through. Bottom row: naive inversion's latents at the same levels.

# %%
ncol = 6
ks = torch.linspace(0, steps, ncol).round().long().tolist()
truth = inv.aligned(fwd)[ks, 0]
naive = inv.latents()[ks, 0]
levels = [inv.levels[k].label for k in ks]
plots.plot_latent_rows({"truth": truth, "naive": naive, "|difference|": (naive - truth).abs()}, levels,
                       save=cfg.figures / "01_latents.png",
                       suptitle=plots.run_title("latents at the same levels, sample 0", model.name, steps, cfg.guidance));

# %% [markdown]
# Early in the inversion (left) the latents agree; by the noisy end the difference map is no longer small, and it is structured rather than white: it is largest where the data barely varies (the digit's empty background), because there the predicted noise changes fastest from one level to the next.

# %% [markdown]
# ## 6. Round trip: does the inverted noise give the image back?
#
# Sampling from the inverted $\hat z_T$ with the same sampler, guidance and class gives $\hat x_0$.

# %%
back = invlab.sample(model, inv.final, steps, "ddim", cfg.guidance, cond)
noise_nmse = invlab.metrics.nmse(inv.final, z_T).item()
image_nmse = invlab.metrics.nmse(back.final, fwd.final).item()
plots.show_images(torch.cat([fwd.final, back.final, 10 * (back.final - fwd.final)]), rows=3,
                  row_labels=["original", "from inverted noise", "10 x (rec. - original)"],
                  suptitle=plots.run_title("round trip through naive inversion", model.name, steps, cfg.guidance),
                  save=cfg.figures / "01_round_trip.png");
w1_noise = invlab.metrics.nmse(runs[1.0][1].final, z_T).item()
publish(steps=steps, guidance=cfg.guidance, noise_nmse=noise_nmse, image_nmse=image_nmse,
        noise_nmse_w1=w1_noise, first_step_error=float(errors[f"naive  w={cfg.guidance:g}"][0]),
        nfe=inv.nfe)


# %% [markdown]
# The reconstructed digits look right, but the noise they came from is measurably wrong (see `noise_nmse`: in the default full run 0.061, against an image error `image_nmse` of 0.0016), and a little more so with guidance than without (`noise_nmse_w1`, 0.056 in the default full run). Later notebooks fix this: EasyInv (notebook 05) and exact inversion (notebook 06).

# %% [markdown]
# ## Exercise: write the naive step yourself
#
# Section 3 wrote one step inline. Write it as a function that works for any pair of levels:
# `eps_fn(x, label)` returns the guided noise prediction at state `x` fed the timestep `label`;
# `x` is the known latent at level `cur`; `nxt` is the noisier level (a level has `.alpha`,
# `.sigma` and `.label`). Return
#
# $$\hat\varepsilon=\varepsilon_\theta(x, t_{\rm nxt}),\qquad \hat x_0=\frac{x-\sigma_{\rm cur}\hat\varepsilon}{\alpha_{\rm cur}},\qquad x_{\rm nxt}=\alpha_{\rm nxt}\,\hat x_0+\sigma_{\rm nxt}\,\hat\varepsilon .$$
#
# The check cell runs your function on every step of a naive inversion of the analytic mixture
# and compares it with invlab's; when something is off it says what (a label, a sign, the
# direction). Until your function passes, the cell uses the worked solution, `invlab.solutions.naive_step`.

# %%
def my_naive_step(eps_fn, x, cur, nxt):
    """One naive inversion step from level cur up to the noisier level nxt."""
    raise NotImplementedError("your code here")


# %%
from invlab import exercises, solutions

check = exercises.check_naive_step(my_naive_step)
naive_step = check.pick(my_naive_step, solutions.naive_step)
eps_fn = lambda x, label: model.eps(x, label, model.check_cond(cond, batch, x), cfg.guidance).eps
x = fwd.final
for cur, nxt in zip(inv.levels[:-1], inv.levels[1:]):
    x = naive_step(eps_fn, x, cur, nxt)
print(f"that step, chained over all {steps} levels, gives invlab's inverted noise:", torch.allclose(x, inv.final))

# %% [markdown]
# ## Questions to try
#
# 1. Set `GUIDANCE = 1.0`, then `7.5`. How does the final noise error change? Is the growth per step uniform?
# 2. Double `STEPS`. Naive inversion is a first-order method: does the error halve?
# 3. Change `SEED`: are some digits (classes) harder to invert than others? Look at the difference maps.
# 4. Set `DTYPE = "float32"`. Does precision matter for *naive* inversion? (It will for exact inversion.)
