# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/invlab/invlab/blob/main/notebooks/09_method_zoo.ipynb)
#
# # The method zoo: every inversion method, one model, one budget
#
# **What you will learn**
#
#
# - the inversion methods you meet in papers, sorted into **three families** by what they repair:
#   the *noise estimate* (ReNoise, fixed-point / AIDI, Newton / GNRI, exact inversion), the *condition*
#   (null-text and negative-prompt inversion) or the *path* (DirectInversion);
# - for each family, its one-line idea, its update rule, and its own per-step trace, measured against
#   the truth where there is one;
# - what each method returns besides a noise, and why `invlab.reconstruct` is the only fair way to
#   regenerate an image from it;
# - the comparison no paper gives: **image error against network evaluations (NFE)** for every method
#   at matched budgets, with its Pareto front, and a widget to pick methods and a budget.

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
MODEL = "digits"       # a class-conditional model from invlab.available_models()
STEPS = 50             # DDIM steps
GUIDANCE = 3.0         # w for the noise-estimate family (section 2) and the budget comparison (section 5)
HIGH_GUIDANCE = 7.5    # w for the condition and path families (sections 3-4): the null-text paper's
BATCH = 4              # images per experiment
BUDGETS = [2, 4, 8]    # NFE per step for the matched-budget comparison (multiples of naive's 1)
NULL_TEXT_LR = 0.1     # a second null-text learning rate to compare with the reference's 1e-2
DTYPE = "float32"
FIGURES = "../figures"

# %%
import torch
import invlab
from invlab import plots
from invlab.metrics import nmse
from invlab.models.base import check_guidance
from invlab.nbsetup import setup
from invlab.plots.families import plot_direct_offsets, plot_null_text_trace, plot_round_trip_errors
from invlab.report import publish
from invlab.studies.errors import run_methods
from invlab.studies.families import direct_offsets, null_text_trace, real_digits, round_trips
from invlab.studies.zoo import matched_entries, pareto_points, run_zoo, winners
from invlab.widgets import MethodZooExplorer

cfg = setup(QUICK, SEED, MODEL, STEPS, GUIDANCE, FIGURES, DTYPE)
torch.set_num_threads(1)   # tiny models: one thread is fastest, and much faster on a busy CPU
model = cfg.model
if not model.num_classes:
    raise ValueError(f"MODEL={MODEL!r} is not class-conditional; this notebook needs class ids (e.g. 'digits', 'gmm-digits')")
for _n, _v in {"BATCH": BATCH}.items():
    if not isinstance(_v, int) or isinstance(_v, bool) or _v < 1:
        raise ValueError(f"{_n} must be a positive integer (got {_v!r})")
if not isinstance(BUDGETS, list) or not BUDGETS or not all(isinstance(b, int) and b >= 2 for b in BUDGETS):
    raise ValueError(f"BUDGETS must be a list of integers >= 2, NFE per step (got {BUDGETS!r})")
check_guidance(HIGH_GUIDANCE)
steps = min(cfg.steps, 20) if cfg.quick else cfg.steps   # 10 large steps can land the solvers on other roots (question 2)
batch = 2 if cfg.quick else BATCH
budgets = sorted(BUDGETS)[:2] if cfg.quick else sorted(BUDGETS)
torch.set_grad_enabled(False)   # the methods that need gradients (null-text, Newton) enable them locally
print(f"{model.name}: {steps} DDIM steps, batch {batch}, w = {cfg.guidance} (noise family, budgets) / "
      f"{HIGH_GUIDANCE} (condition and path families), budgets {budgets} NFE per step")

# %% [markdown]
# ## 1. Three things to repair
#
# Naive DDIM inversion runs the sampler's step backwards with the one quantity it cannot know, the
# noise prediction at the *unknown* noisier latent, replaced by the one at the known latent
# (notebooks 01 and 03). Every method in the literature repairs one of three things:
#
# | family | repairs | methods | one-line idea | extra cost |
# |---|---|---|---|---|
# | **noise estimate** | $\varepsilon(z_{t})$ evaluated at the wrong point | ReNoise · fixed-point (AIDI, FPI) · Newton (GNRI) · exact | solve (or approximately solve) the implicit equation $z_{t}=\mathrm{InvStep}(z_{s};\varepsilon(z_{t}))$ | more NFE per step; nothing to store |
# | **condition** | the guided sampler does not retrace a trajectory inverted at $w=1$ | null-text (NTI) · negative-prompt (NPI) | change CFG's *unconditional* input so the guided sampler lands on the $w=1$ pivots | NTI: Adam per step; NPI: none. Both store side information |
# | **path** | the sampler leaves the pivot path | DirectInversion | after each sampling step, add back the difference to the pivot | none, but it stores every pivot |
#
# The update rules, in the papers' symbols (with $s$ the known level, $t$ the noisier one, and
# $\mathrm{InvStep}(x;\varepsilon)=\alpha_t\,(x-\sigma_s\varepsilon)/\alpha_s+\sigma_t\varepsilon$, the DDIM step solved for the noisier latent):
#
# * **ReNoise**: $y^{(0)}=z_s$, $y^{(k+1)}=\mathrm{InvStep}(z_s;\varepsilon(y^{(k)},t))$, then average the last predictions.
# * **Fixed-point (AIDI / FPI)**: the same map iterated to convergence, accelerated (Anderson, or AIDI-E's two-point rule).
# * **Newton (GNRI)**: $z\leftarrow z-J^{-1}r(z)$ with $r(z)=\Phi(z)-z_s$, $\Phi$ the DDIM sampling step from $z$; $J^{-1}r$ by GMRES on Jacobian-vector products.
# * **Exact (backward Euler)**: the root of $r$, by the default inner solver (notebook 06).
# * **Null-text**: per sampling step $i$, $\varnothing_i=\arg\min_\varnothing\|\mathrm{DDIM}(\bar z;\ \varepsilon_\varnothing+w(\varepsilon_c-\varepsilon_\varnothing))-z^*_{t}\|^2$ by at most 10 Adam steps.
# * **Negative-prompt**: the same, answered in closed form by $\varnothing_i=c$: then $\varepsilon_\varnothing+w(\varepsilon_c-\varepsilon_\varnothing)=\varepsilon_c$ for any $w$.
# * **DirectInversion**: $\bar z_t=z_{\rm rec}+(z^*_t-z_{\rm rec})$: the sampler's step, moved onto the pivot.

# %% [markdown]
# ## 2. Fix the noise estimate
#
# We *sample* images from known noise, so the true latent at every level is known, and invert them
# with the four methods of this family next to naive inversion, at guidance $w$ = `GUIDANCE`.

# %%
z_T = invlab.noise(model, batch, seed=cfg.seed, dtype=cfg.dtype)
cond = torch.arange(batch) % model.num_classes
family = {"naive": {"method": "naive"}, "renoise": {"method": "renoise"}, "fixed-point": {"method": "fixed-point"},
          "newton": {"method": "newton"}, "exact": {"method": "exact"}}
import warnings
with warnings.catch_warnings():
    warnings.simplefilter("ignore", invlab.ConvergenceWarning)   # float32: a step may end just above tolerance
    noise_cmp = run_methods(model, z_T, steps, "ddim", cfg.guidance, cond, family, show_progress=True)
noise_nmse, image_nmse, nfe_step = noise_cmp.noise_nmse(), noise_cmp.image_nmse(), noise_cmp.nfe_per_step()
plots.plot_step_errors(noise_cmp.step_errors(),
                       title=f"{model.name}, {steps} DDIM steps, w = {cfg.guidance:g}: error after each inversion step",
                       save=cfg.figures / "09_noise_family_steps.png");
for k in family:
    print(f"{k:>12s}: noise NMSE {noise_nmse[k]:.2e}   image NMSE {image_nmse[k]:.2e}   {nfe_step[k]:5.1f} NFE per step")
solved = ["fixed-point", "newton", "exact"]
root_gap = max(float(nmse(noise_cmp.runs[a].final, noise_cmp.runs[b].final))
               for a in solved for b in solved if a < b)
print(f"largest noise NMSE between the three solved methods' answers: {root_gap:.1e}")

# %% [markdown]
# Read the curves from left to right. Naive inversion drifts from its first steps on. The three
# methods that *solve* the step's equation (fixed-point, Newton, exact) stay orders of magnitude below
# it all the way, and they land on the **same noise** (the last line: their answers agree far more
# closely than any of them agrees with naive's): they are three algorithms for one equation, and they
# differ only in what a solve costs. ReNoise runs the same fixed-point map a fixed number of times and
# *averages* the last predictions: it lowers the error by a constant factor but does not converge,
# which is the price of a fixed budget that is the same at every step.

# %% [markdown]
# ## 3. Fix the condition
#
# The second family does not touch the noise: it inverts at $w=1$, where naive inversion is accurate,
# and then makes the *guided* sampler retrace that $w=1$ trajectory (the **pivots** $z^*$). This is
# about real images edited under strong guidance, so we take held-out real digits (never seen in
# training) and guidance `HIGH_GUIDANCE`, the null-text paper's 7.5. The measure is the round trip:
# input against `invlab.reconstruct` of the inversion.

# %%
x_real, y_real, images_real = real_digits(model, batch, seed=cfg.seed, dtype=cfg.dtype)
cond_family = {"naive": {"method": "naive"},
               "null-text": {"method": "null-text"},
               f"null-text lr {NULL_TEXT_LR:g}": {"method": "null-text", "lr": NULL_TEXT_LR},
               "negative-prompt": {"method": "negative-prompt"},
               "direct": {"method": "direct"}}
rt = round_trips(model, x_real, steps, HIGH_GUIDANCE, y_real, cond_family, show_progress=True)
plot_round_trip_errors({k: r.image_nmse for k, r in rt.items()}, {k: r.nfe for k, r in rt.items()},
                       title=f"{model.name}, real digits, {steps} steps, w = {HIGH_GUIDANCE:g}: round trip",
                       save=cfg.figures / "09_condition_family.png");
for k, r in rt.items():
    print(f"{k:>18s}: image NMSE median {r.median_nmse:.2e}   NFE {r.nfe:4d}   backward passes {r.backward_passes}")

# %%
base = rt["naive"].median_nmse
for k, r in rt.items():
    if k != "naive":
        gain = f"{base / r.median_nmse:8.1f}x lower" if r.median_nmse > 0 else "    zero (exact)"
        print(f"{k:>18s}: {gain} round-trip error than naive, at {r.nfe / rt['naive'].nfe:.0f}x its NFE")

# %% [markdown]
# Naive inversion *at* $w$ = `HIGH_GUIDANCE` is the baseline: the guided sampler's steps are far from
# invertible at this scale. **Negative-prompt inversion** costs nothing beyond naive inversion: with
# the condition as the negative prompt, CFG's output on the source branch is $\varepsilon_c$, exactly
# the direction the $w=1$ inversion used, so the sampler retraces the pivots up to naive inversion's
# own (small, $w=1$) error. **Null-text** spends an Adam optimisation per step (at most 10 NFE and 10
# backward passes each); what it buys depends on its learning rate, as the two null-text rows above
# show. Its trace says why:

# %%
nt_names = [k for k in rt if k.startswith("null-text")]
traces = {k: null_text_trace(rt[k].inversion) for k in nt_names}
plot_null_text_trace(traces, title=f"{model.name}, {steps} steps, w = {HIGH_GUIDANCE:g}: null-text, per sampling step",
                     n_steps=steps, save=cfg.figures / "09_null_text_trace.png");
for k, tr in traces.items():
    gain = tr["loss_before"] / tr["loss_after"]
    print(f"{k:>18s}: loss lowered {gain.min():.1f}x to {gain.max():.1f}x per step; "
          f"{int((tr['loss_after'] < tr['threshold']).sum())} of {len(gain)} steps reach the early-stop threshold")

# %%
c_emb = model.embed_cond(model.check_cond(y_real, batch, x_real), batch, x_real)
d = c_emb - model.null_embedding(batch, x_real)
d = d[torch.isfinite(d)]
print(f"class vs null embedding of {model.name}: RMS distance per coordinate {float(d.double().pow(2).mean().sqrt()):.2f} "
      f"(finite coordinates); 10 Adam steps move a coordinate by at most ~10 x lr")

# %% [markdown]
# The reference learning rate, $10^{-2}$, is tuned to Stable Diffusion's CLIP text embeddings, and so
# is the early-stop threshold (to SD's latents). Adam moves every coordinate by about the learning
# rate per step, so with $10^{-2}$ the optimised null embedding can only travel a small fraction of the
# distance between this model's null and class embeddings (printed above) in one step's 10 iterations;
# it carries over from step to step, so a 50-step run gets five times more room than a 10-step one.
# The trace shows, per step, how far each learning rate lowers the loss below the null input's and
# whether it reaches the threshold. On your own model, look at this trace before trusting a null-text
# result.

# %% [markdown]
# ## 4. Fix the path
#
# DirectInversion keeps every pivot and, at each sampling step, adds the offset $z^*_t-z_{\rm rec}$
# that puts the source branch back on the pivot path. The reconstruction is then exact by
# construction (the plot above shows it on the floor), at naive inversion's NFE; the offsets it adds
# are the size of the error every step would otherwise make:

# %%
offsets = {f"w = {HIGH_GUIDANCE:g}": direct_offsets(rt["direct"].reconstruction)}
rt_w1 = round_trips(model, x_real, steps, 1.0, y_real, {"direct": {"method": "direct"}})
offsets["w = 1"] = direct_offsets(rt_w1["direct"].reconstruction)
plot_direct_offsets(offsets, title=f"{model.name}, real digits, {steps} steps, w in the legend: DirectInversion's offsets",
                    save=cfg.figures / "09_direct_offsets.png");
print(f"round trip: image NMSE {rt['direct'].image_nmse.max():.1e} at w = {HIGH_GUIDANCE:g}, "
      f"{rt_w1['direct'].image_nmse.max():.1e} at w = 1; mean offset RMS {offsets[f'w = {HIGH_GUIDANCE:g}'].mean():.2e} "
      f"vs {offsets['w = 1'].mean():.2e}")

# %% [markdown]
# At $w=1$ the offsets are naive inversion's own per-step mismatch: the sampler, evaluated at the
# pivot it starts from, does not land exactly on the previous pivot (the network is evaluated at a
# different point than during inversion). At $w$ = `HIGH_GUIDANCE` they are much larger
# (the two means printed above): they absorb the whole error of guided sampling. Two caveats make
# this method less magical than its zero error suggests: the noise it returns is naive inversion's
# (it repairs the path, not the noise), and an *edit* (another condition) needs a dual-branch editor
# that adds the offsets to the source branch only (`invlab.reconstruct` refuses a changed condition
# for it).

# %%
show = {"input": images_real[:batch]}
for k in ("naive", "null-text", f"null-text lr {NULL_TEXT_LR:g}", "negative-prompt", "direct"):
    back = rt[k].reconstruction.final
    show[k] = model.decode(back) if model.is_latent else back
cols = list(show)
tiles, labels = [], []
for i in range(min(batch, 3)):
    tiles += [show[k][i] for k in cols]
    tiles += [torch.zeros_like(show["input"][i])] + [10 * (show[k][i] - show["input"][i]) for k in cols[1:]]
    labels += [f"image {i}", "10 x (rec. - input)"]
plots.show_images(torch.stack(tiles), rows=len(labels), titles=cols, row_labels=labels,
                  suptitle=f"{model.name}, real digits, {steps} steps, w = {HIGH_GUIDANCE:g}: reconstructions",
                  save=cfg.figures / "09_reconstructions.png");

# %% [markdown]
# ## 5. Every method at the same budget
#
# Papers compare methods at their own settings. Here every method in `invlab.METHODS` runs on the
# same sampled images (so the noise error is known too), at **matched budgets**: each method that has
# a cost knob gets the setting that spends at most $m$ NFE per step, for each $m$ in `BUDGETS`
# (`invlab.studies.zoo.matched_entries` says which knob). The plot is image error against the NFE
# actually spent; the staircase is the Pareto front of the methods that return *only a noise* (the
# side-information methods are drawn but not on the front: they carry more than a noise).

# %%
entries = matched_entries(budgets)
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    rows_zoo = run_zoo(model, entries, steps=steps, guidance=cfg.guidance, batch=batch, seed=cfg.seed,
                       dtype=cfg.dtype, show_progress=True, keep_images=True)
fig, fronts = plots.plot_pareto({f"{model.name}, {steps} steps, w = {cfg.guidance:g}": pareto_points(rows_zoo)},
                                front_of={r["label"].split(" ")[0] for r in rows_zoo if not r["side_info"]},
                                front_label="Pareto front (noise-only methods)",
                                save=cfg.figures / "09_pareto.png")
best = winners(rows_zoo, noise_only=True)
for b in best:
    print(f"at <= {b['multiple']:g} NFE/step: {b['label']:<18s} image NMSE {b['image_nmse']:.2e} ({b['nfe']} NFE); "
          f"runner-up {b['runner_up']}")
failed = [r for r in rows_zoo if r["error"]]
for r in failed:
    print(f"{r['label']}: not run ({r['error'][:100]})")

# %%
by_label = {r["label"]: r for r in rows_zoo}
naive_row = by_label["naive"]
for r in sorted(rows_zoo, key=lambda r: r["nfe"]):
    if not r["error"]:
        gain = f"naive's / this = {naive_row['image_nmse'] / r['image_nmse']:.3g}" if r["image_nmse"] > 0 else "exact"
        print(f"{r['label']:<18s} NFE {r['nfe']:4d}  backward {r['backward_passes']:4d}  image NMSE {r['image_nmse']:.2e}  "
              f"({gain})")

# %% [markdown]
# What to read from it: at one NFE per step there is naive inversion, exact inversion's smallest budget
# (below), EasyInv (on this model worse than naive in image error too: $3.2\cdot10^{-3}$ against
# $1.3\cdot10^{-3}$ in the default full run) and the side-information methods; from two NFE per step on,
# the methods that *solve* the step's equation take over the front, and their error falls quickly with
# the budget (the printout names each budget's best).
# One point is worth understanding: **exact inversion at its smallest budget** (the `exact 2x` line
# above, to compare with naive's). With `max_iter = 0` it returns its initial guess, which reuses the
# previous step's $\varepsilon$ (a naive step with the *current* level's label): at high guidance with
# few, large steps that guess can be worse than naive inversion itself, so a solver given too small a
# budget is not automatically better than no solver. (In the default full run, 50 steps at $w=3$, the
# guess is good: 2.6 times below naive's image error for one extra NFE in all, and on the front.) Null-text's matched budget goes into Adam steps and backward passes that repair the
# *condition*; on images sampled at this very guidance there is little to repair, so it does not beat
# naive here (in the default full run its image error is 2 to 4 times naive's: the ratios above;
# section 3 is where it earns its cost). The full table, over four models and three
# guidance scales, is in `benchmarks/results/method_zoo.md` (`python benchmarks/method_zoo.py`).

# %%
front_labels = [p["label"] for p in next(iter(fronts.values()))]
best_row = min((r for r in rows_zoo if not r["error"] and not r["side_info"]), key=lambda r: r["image_nmse"])
publish(steps=steps, batch=batch, guidance=cfg.guidance, high_guidance=HIGH_GUIDANCE, budgets=budgets,
        **{f"noise_nmse_{k.replace('-', '_')}": v for k, v in noise_nmse.items()},
        **{f"nfe_per_step_{k.replace('-', '_')}": v for k, v in nfe_step.items()},
        solved_root_gap=root_gap,
        **{f"round_trip_{k.replace('-', '_').replace(' ', '_').replace('.', 'p')}": r.median_nmse for k, r in rt.items()},
        null_text_nfe=rt["null-text"].nfe, null_text_backward=rt["null-text"].backward_passes,
        negative_prompt_nfe=rt["negative-prompt"].nfe, naive_nfe=rt["naive"].nfe,
        direct_round_trip_max=float(rt["direct"].image_nmse.max()),
        direct_offset_rms_high=float(offsets[f"w = {HIGH_GUIDANCE:g}"].mean()), direct_offset_rms_w1=float(offsets["w = 1"].mean()),
        zoo_rows=len(rows_zoo), zoo_failed=len(failed), zoo_naive_image_nmse=naive_row["image_nmse"],
        zoo_best_label=best_row["label"], zoo_best_image_nmse=best_row["image_nmse"], zoo_best_nfe=best_row["nfe"],
        zoo_front=front_labels,
        zoo_exact_smallest_image_nmse=min((r for r in rows_zoo if r["method"] == "exact" and not r["error"]),
                                          key=lambda r: r["nfe"])["image_nmse"],
        zoo_null_text_image_nmse=[r["image_nmse"] for r in rows_zoo if r["method"] == "null-text" and not r["error"]]);

# %% [markdown]
# ## 6. Explore: pick methods and a budget
#
# Tick methods and move the budget: the left panel marks the runs that fit the budget (faint: the
# rest), the right one shows, for each ticked method, the reconstruction of its best run within the
# budget and its difference from the image. Everything was computed in section 5.

# %%
explorer = MethodZooExplorer(rows_zoo, title=f"{model.name}, {steps} steps, w = {cfg.guidance:g}")
explorer


# %% [markdown]
# ## Exercise: one ReNoise step
#
# Write ReNoise's update from section 1 for one step from the known latent `x` at level `cur` to the
# noisier level `nxt`, with $K$ = `renoise_steps` and $(a, b)$ = `average_range`; `eps_fn(x, label)` is the
# guided noise prediction and $\mathrm{InvStep}(x;\varepsilon)=\alpha_{\rm nxt}(x-\sigma_{\rm cur}\varepsilon)/\alpha_{\rm cur}+\sigma_{\rm nxt}\varepsilon$:
#
# $$y^{(0)}=x,\qquad \varepsilon^{(k)}=\varepsilon_\theta(y^{(k)}, t_{\rm nxt}),\qquad y^{(k+1)}=\mathrm{InvStep}(x;\varepsilon^{(k)}),\quad k=0,\dots,K;$$
# $$\text{result: } \mathrm{InvStep}\Big(x;\ \tfrac{1}{b-a}\textstyle\sum_{a\le k<b}\varepsilon^{(k)}\Big).$$
#
# The check compares it with every step of `invlab.invert(method="renoise")` (its first-step rule
# switched off). Until your function passes, the cell uses `invlab.solutions.renoise_step`.

# %%
def my_renoise_step(eps_fn, x, cur, nxt, renoise_steps, average_range):
    """One ReNoise inversion step from level cur up to the noisier level nxt."""
    raise NotImplementedError("your code here")


# %%
from invlab import exercises, solutions

check = exercises.check_renoise_step(my_renoise_step)
renoise_step = check.pick(my_renoise_step, solutions.renoise_step)
run = noise_cmp.runs["renoise"]
k = steps - 1                                   # the last step: its target label is above the first-step rule's 250
eps_fn = lambda x, label: model.eps(x, label, model.check_cond(cond, batch, x), cfg.guidance).eps
mine = renoise_step(eps_fn, run.latents()[k], run.levels[k], run.levels[k + 1], 9, (8, 10))
print(f"section 2's ReNoise run, last step: largest difference {float((mine - run.latents()[k + 1]).abs().max()):.1e}")

# %% [markdown]
# ## Questions to try
#
# 1. Set `NULL_TEXT_LR = 0.3`. Does null-text reach its early-stop threshold at every step now, and what happens to the round trip?
# 2. Set `STEPS = 10` and try `SEED = 1`: do fixed-point, Newton and exact inversion still land on the same noise, and on the true one? (A large step's equation can have more than one root; notebook 04 looks at this.)
# 3. Fixed-point, Newton and exact inversion land on the same noise. Which is cheapest per step on `gmm-digits` (float64), and which on `digits` (float32, where Newton's derivative products need backward passes)?
# 4. ReNoise does not converge at a fixed budget. Set `BUDGETS = [2, 4, 8, 16]`: does its error keep falling with the budget, like the solvers'?
# 5. Negative-prompt inversion is free; null-text is not. Compare them in section 3 at both learning rates: what does each factor of lower round-trip error cost in NFE, backward passes and seconds? Does the answer change at `HIGH_GUIDANCE = 3`?
# 6. DirectInversion reconstructs exactly. Invert with it, then *sample* from its `.final` without the offsets (`invlab.sample`): how far is that from the image, and from naive inversion's?
