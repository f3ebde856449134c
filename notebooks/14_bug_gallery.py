# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/invlab/invlab/blob/main/notebooks/14_bug_gallery.ipynb)
#
# # The bug gallery: classic inversion bugs and their fingerprints
#
# **What you will learn**
#
# - the mistakes that hand-written inversion loops make again and again (a negative timestep index,
#   the wrong time label, a skipped step, mismatched guidance or prompt, float16, a v-prediction
#   converted at the wrong level, another scheduler's levels, a VAE sampled instead of its mean or
#   left unscaled), each **reproduced in one line** on a model whose ground truth is known;
# - each bug's **fingerprint** on the two curves of notebook 03: the accumulated error (what drifts)
#   and the local error (what each step does when started from the truth);
# - what you can see in **your own run, without ground truth**: the forward residual;
# - the tracing API on a loop: `Recorder`, hooks, and an intervention that swaps in the true noise
#   estimate at step $k$ to find where the drift starts.

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
MODEL = "gmm-digits"   # a class-conditional pixel model (the analytic one: every error is the loop's)
STEPS = 50             # inversion steps
GUIDANCE = 1.0         # the sampler's guidance scale (the guidance bug inverts at 3 instead)
BATCH = 2              # images per bug
LATENT_MODEL = "digits-latent"   # for the VAE bugs ("" to skip them)
DTYPE = "float64"
FIGURES = "../figures"

# %%
import torch
import invlab
from invlab import plots
from invlab.nbsetup import setup
from invlab.report import publish
from invlab.studies.bugs import BUGS, hand_inversion, run_gallery

cfg = setup(QUICK, SEED, MODEL, STEPS, GUIDANCE, FIGURES, DTYPE)
torch.set_num_threads(1)
torch.set_grad_enabled(False)
model = cfg.model
if not model.num_classes or getattr(model, "is_latent", False):
    raise ValueError(f"MODEL={MODEL!r} must be a class-conditional pixel model (e.g. 'gmm-digits', 'digits')")
if not isinstance(BATCH, int) or isinstance(BATCH, bool) or BATCH < 1:
    raise ValueError(f"BATCH must be a positive integer (got {BATCH!r})")
steps = min(cfg.steps, 20) if cfg.quick else cfg.steps
latent = invlab.load_model(LATENT_MODEL) if LATENT_MODEL else None
print(f"{model.name}: {steps} steps, w = {cfg.guidance}, batch {BATCH}; VAE bugs on {LATENT_MODEL or '(skipped)'}")

# %% [markdown]
# ## 1. The loop everyone writes
#
# This is naive DDIM inversion as it appears in most code, on a diffusers scheduler's
# `timesteps` and `alphas_cumprod` (`T = 1000` training steps, `N` inversion steps):
#
# ```python
# for t in reversed(scheduler.timesteps):                  # cleanest first: 1, 21, 41, ...
#     t_cur = t - T // N                                    # the level we come from
#     a_cur = alphas_cumprod[t_cur] if t_cur >= 0 else final_alpha_cumprod
#     a_next = alphas_cumprod[t]
#     eps = eps_u + w * (eps_c - eps_u)                      # the network at (x, t), with CFG
#     x0_hat = (x - (1 - a_cur).sqrt() * eps) / a_cur.sqrt()
#     x = a_next.sqrt() * x0_hat + (1 - a_next).sqrt() * eps
# ```
#
# `invlab.studies.bugs.hand_inversion` is this loop with a switch for each bug. Without a bug it
# must equal `invlab.invert(..., method="naive")`, and it does:

# %%
z = invlab.noise(model, BATCH, seed=cfg.seed, dtype=cfg.dtype)
cond = torch.arange(BATCH) % model.num_classes
ref = invlab.sample(model, z, steps, "ddim", cfg.guidance, cond)
inv = invlab.invert(model, ref.final, steps, "ddim", "naive", cfg.guidance, cond)
states, _ = hand_inversion(model, ref.final, steps, cfg.guidance, cond)
loop_vs_invlab = (states[-1] - inv.final).abs().max().item()
print(f"hand-written loop vs invlab.invert: max difference {loop_vs_invlab:.1e}")
publish(steps=steps, guidance=cfg.guidance, loop_vs_invlab=loop_vs_invlab);

# %% [markdown]
# ## 2. The gallery
#
# Every bug below is the loop above with one line changed. Each image is sampled from a known
# noise, so we can measure the loop's state after every step against the true latent at that level
# (accumulated error) and run each step of the same loop from the true latent (local error, as in
# notebook 03). The VAE bugs need a latent model: there the correct loop starts from the encoder's
# mean, so even it starts with the VAE's own reconstruction error.

# %%
runs = run_gallery(model, latent, steps, cfg.guidance, batch=BATCH, seed=cfg.seed)
plots.plot_bug_gallery(runs, suptitle=f"{model.name} (VAE bugs: {LATENT_MODEL}), {steps} steps, w = {cfg.guidance:g}, "
                       f"batch {BATCH}: error curves of each bug (vermillion) over the correct loop (grey)",
                       save=cfg.figures / "14_bug_gallery.png");


# %%
def _ref(name):
    r = runs[name]
    if r.bug.needs == "latent":
        return runs["none (latent)"]
    return None if "reference_accumulated" in r.extras else runs["none"]


finger = {}
for name, r in runs.items():
    if name.startswith("none"):
        continue
    c = _ref(name)
    acc_ref = r.extras["reference_accumulated"] if c is None else c.accumulated
    row = {"first_step_accumulated_ratio": float(r.accumulated[0] / acc_ref[0]),
           "final_noise_nmse": r.noise_nmse,
           "correct_final_noise_nmse": float(acc_ref[-1]) if c is None else c.noise_nmse,
           "start_nmse": r.start_nmse}
    if c is not None:
        row["first_step_local_ratio"] = float(r.local[0] / c.local[0])
        row["median_local_ratio"] = float((r.local / c.local).median())
        row["last_step_local_ratio"] = float(r.local[-1] / c.local[-1])
    finger[name] = row
print(f"{'bug':18s} {'acc. step 1':>12s} {'local step 1':>13s} {'median local':>13s} {'last local':>11s} "
      f"{'noise NMSE':>11s} {'correct':>9s}  (ratios: bug / correct)")
nan = float("nan")
for name, row in finger.items():
    print(f"{name:18s} {row['first_step_accumulated_ratio']:12.3g} {row.get('first_step_local_ratio', nan):13.3g} "
          f"{row.get('median_local_ratio', nan):13.3g} {row.get('last_step_local_ratio', nan):11.3g} "
          f"{row['final_noise_nmse']:11.3g} {row['correct_final_noise_nmse']:9.3g}")
publish(fingerprints=finger, correct_noise_nmse=runs["none"].noise_nmse,
        correct_local_max_step=int(runs["none"].local.argmax()) + 1,
        correct_local_max_share=float(runs["none"].local.max() / runs["none"].local.sum()),
        correct_latent_start_nmse=runs["none (latent)"].start_nmse if "none (latent)" in runs else None);

# %% [markdown]
# ## 3. The cards
#
# One card per bug: the line, its fix, the fingerprint read off the curves above (the ratios are this
# run's, printed above) and how to find it in your own code. The fingerprints fall into four kinds:
#
# - **a spike at one step**: the unguarded index (the first step's local error is many orders of
#   magnitude above the correct one's); float16, milder, where the correct errors are smallest;
# - **wrong from the start, then carried**: a skipped first step (the local curve is the correct one,
#   the accumulated one is not), the VAE posterior sample, the missing scaling factor;
# - **wrong at every step**: the mismatched prompt; another scheduler's levels, from the first step;
# - **a changed shape, or nothing**: the wrong time label and the v-prediction converted at the
#   neighbouring level change the local curve's shape (worse first step, better later ones) and can
#   even *lower* the final error; the guidance mismatch moves only the noisy end on this model; a
#   skipped last step changes no computed step at all. Such a bug is not found by looking for bad
#   numbers: it is found by checking what the loop feeds the network (the labels, the levels), which
#   section 5 shows.
#
# Note how much the correct loop's own error is: on this model, the second step's local error
# dominates everything after it (the accumulated curve jumps there), so a bug has to beat that to
# show in the final number. That is why the local curve, not the final error, is the fingerprint.

# %%
from IPython.display import Markdown, display

lines = ["| bug | the line | fix | fingerprint | how to spot it |", "|---|---|---|---|---|"]
for name, b in BUGS.items():
    if name == "none" or (b.needs == "latent" and latent is None):
        continue
    lines.append(f"| {b.title} | `{b.code}` | `{b.fix}` | {b.fingerprint} | {b.spot} |")
display(Markdown("\n".join(lines)))

# %% [markdown]
# ## 4. Without ground truth: the forward residual
#
# In your own run there is no true latent. What you can always compute is this: take each inverted
# state, run the *correct* sampling step from it, and compare with the state inversion came from.
# An exact inverse gives zero; a correct naive inversion gives a small, smooth curve; a bug that
# breaks a step shows as a spike there. (DDIM-sampled bugs only; for the DPM bugs the residual would
# need the 2M sampling step.)

# %%
plots.plot_bug_residuals(runs, save=cfg.figures / "14_residuals.png");
res_ratio = {n: float(r.residual[0] / _ref(n).residual[0]) for n, r in runs.items()
             if not n.startswith("none") and _ref(n) is not None and torch.isfinite(r.residual).all()}
for n, v in res_ratio.items():
    print(f"{n:18s} first-step forward residual / correct loop's: {v:.3g}")
publish(residual_first_step_ratio=res_ratio);

# %% [markdown]
# The unguarded index stands out by orders of magnitude at the first step, with no ground truth at all;
# the mismatched prompt and the skipped first step stand out too. The subtle bugs stay subtle, and a
# wrong starting latent (the VAE bugs) is invisible to it, since every step is consistent with the
# wrong start: the residual is a smoke detector, not a proof.
#
# ## 5. The tracing API on a loop
#
# Every invlab run takes `hooks=`: **observers** that see each step (a `Recorder` keeps tensors, any
# function gets the step's record) and **interventions** that may replace a tensor before the loop
# uses it. Three uses:
#
# 1. *What did my run feed the network?* A callable hook receives each step's `StepRecord`: the label
#    the network saw (`t_model`), the level pair, the NFE. Checking these is how the invisible bugs
#    of section 3 are found.

# %%
seen = []
invlab.invert(model, ref.final, steps, "ddim", "naive", cfg.guidance, cond,
              hooks=[lambda rec: seen.append((rec.index, rec.t_model, rec.nfe))])
invlab.invert(model, ref.final, steps, "ddim", "naive", cfg.guidance, cond, label="current",
              hooks=[lambda rec: seen.append((rec.index, rec.t_model, rec.nfe))])
print("label='target':  first steps (index, t_model, nfe):", seen[:3])
print("label='current': first steps (index, t_model, nfe):", seen[steps:steps + 3])
publish(target_first_label=seen[0][1], current_first_label=seen[steps][1]);

# %% [markdown]
# 2. *Keep what you need.* `Recorder(keys=("x_next", "eps"), every=5)` keeps two tensors every fifth
#    step; `Recorder(keys=())` keeps only the scalars (cheap for long runs); the trajectory's
#    `latents()`, `stack("eps")` and `errors_to(reference)` read them back.
# 3. *Swap in the truth.* An intervention at stage `"eps"` may replace the noise estimate. Naive
#    inversion's only approximation is $\epsilon(x_{\text{next}}) \approx \epsilon(x_{\text{cur}})$; replace it at
#    one step $k$ by the network's value at the *true* next latent, and that step becomes exact. Which
#    step, made exact on its own, lowers the final error most? That is where the drift starts.

# %%
truth = ref.latents().flip(0)                         # true latents, clean -> noisy
lv = list(model.schedule.grid(steps).levels)[::-1]
c = model.check_cond(cond, BATCH, truth[0])


def swap_in(k):
    def fn(index, tensors):
        if index != k:
            return None
        return {"eps": model.eps(truth[k + 1], lv[k + 1].label, c, cfg.guidance).eps}
    return invlab.FunctionIntervention(fn, {"eps"}, stage="eps")


ks = list(range(steps))                              # every step, one at a time
swapped = {}
for k in ks:
    run = invlab.invert(model, ref.final, steps, "ddim", "naive", cfg.guidance, cond,
                        hooks=[invlab.Recorder(keys=()), swap_in(k)])
    swapped[k] = invlab.metrics.nmse(run.final, z).item()
base = invlab.metrics.nmse(inv.final, z).item()
plots.plot_swap_in(ks, [swapped[k] for k in ks], base, title=f"{model.name}, {steps} steps, w = {cfg.guidance:g}: "
                   "final noise NMSE with one step made exact", save=cfg.figures / "14_swap_in.png");
best = min(swapped, key=swapped.get)
print(f"unchanged run: {base:.3g}; best single step to fix: k = {best + 1} of {steps} ({swapped[best]:.3g}); "
      f"fixing the last step: {swapped[ks[-1]]:.3g}")   # k counts inversion steps from 1, as in the plot
publish(swap_base=base, swap_best_step=best + 1, swap_best=swapped[best], swap_last=swapped[ks[-1]],
        swap_first=swapped[0]);


# %% [markdown]
# Making one step exact helps most at the clean end, where the first steps are taken: the same
# lesson as notebook 03's restart counterfactual, found here with a three-line intervention that
# you can put into any invlab run. The curve is the printed numbers above.

# %% [markdown]
# ## Exercise: the forward residual of your own run
#
# Section 4's signal needs no ground truth, so you can compute it on any inversion. Given the state
# `x_cur` at level `cur` that an inversion step started from and the state `x_next` it produced at the
# noisier level `nxt`, run the correct DDIM *sampling* step back down and return the RMS difference:
#
# $$\hat\epsilon = \epsilon_\theta(x_{\rm next}, t_{\rm nxt}),\quad
# \hat x_0 = \frac{x_{\rm next} - \sigma_{\rm nxt}\hat\epsilon}{\alpha_{\rm nxt}},\quad
# r = \operatorname{RMS}\big(\alpha_{\rm cur}\hat x_0 + \sigma_{\rm cur}\hat\epsilon - x_{\rm cur}\big).$$
#
# `eps_fn(x, label)` is the guided noise prediction. The check compares your number with invlab's on
# every step of a naive inversion; until yours passes, the cell uses `invlab.solutions.forward_residual`.

# %%
def my_forward_residual(eps_fn, x_cur, x_next, cur, nxt):
    """RMS of (the DDIM sampling step from x_next at nxt down to cur) - x_cur."""
    raise NotImplementedError("your code here")


# %%
from invlab import exercises, solutions

check = exercises.check_forward_residual(my_forward_residual)
forward_residual = check.pick(my_forward_residual, solutions.forward_residual)
eps_fn = lambda x, label: model.eps(x, label, c, cfg.guidance).eps
states = inv.latents()
mine = [forward_residual(eps_fn, states[k], states[k + 1], inv.levels[k], inv.levels[k + 1]) for k in range(steps)]
print(f"forward residual of section 1's correct run: first step {mine[0]:.2e}, largest {max(mine):.2e} "
      f"(step {mine.index(max(mine)) + 1})")

# %% [markdown]
# ## Questions to try
#
# 1. Set `STEPS = 10`. Which of the "nearly invisible" bugs become visible, and why do fewer steps
#    make the neighbouring-level bugs worse?
# 2. Set `GUIDANCE = 3.0`. The correct loop's error grows; which fingerprints still stand out above it?
# 3. Write the unguarded-index bug for a loop that walks `timestep_spacing="trailing"` levels
#    (999, 979, ...). Does `t - 1000 // N` still go negative?
# 4. Use the swap-in intervention on the *latent* model. Is the step that matters most still the first?
# 5. Add a bug of your own to `invlab.studies.bugs.BUGS` (e.g. forgetting CFG's unconditional branch
#    in inversion only) and find its fingerprint.
