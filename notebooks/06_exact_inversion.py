# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/invlab/invlab/blob/main/notebooks/06_exact_inversion.ipynb)
#
# # Exact inversion: backward Euler, one step at a time
#
# **What you will learn**
#
#
# - that every sampling step $x_t = \Phi(x_s)$ can be inverted **exactly** by solving the implicit
#   equation $\Phi(\hat x_s) = x_t$ (a backward-Euler step), and what its residual looks like;
# - how three inner solvers (Anderson acceleration, the forward-step method, true gradient descent)
#   and the exact-inversion paper's own settings (the *reference preset*) drive that residual down,
#   iteration by iteration;
# - the **cost/accuracy trade-off**: final noise error against NFE per step as the tolerance moves;
# - how **DPM-Solver++(2M)** is inverted (Algorithm 2), why its fine-grained estimate of the past
#   state dominates the cost, and what freezing the high-order term buys;
# - what float32 does to an "exact" method;
# - with a widget: the residual curve of any step, for any solver.
#
# All on the analytic model (a Gaussian mixture with exact noise prediction), so every error is
# the algorithm's, not a network's.

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
STEPS = 50             # DDIM steps (Algorithm 1)
DPM_STEPS = 10         # DPM-Solver++(2M) steps (Algorithm 2)
GUIDANCE = 3.0         # classifier-free guidance scale w
BATCH = 4
DTYPE = "float64"
TRAINED = "digits"     # a trained network for section 4b ("" to skip)
FIGURES = "../figures"

# %%
import numpy as np
import torch
import invlab
from invlab import plots
from invlab.nbsetup import setup
from invlab.report import publish
from invlab.studies.solvers import (compare_inner_solvers, ddim_phi, dpm_variants, inner_residuals,
                                    last_step_singular_values, nfe_breakdown, precision_study, solver_table,
                                    tolerance_sweep)
from invlab.widgets import InnerSolverExplorer

cfg = setup(QUICK, SEED, MODEL, STEPS, GUIDANCE, FIGURES, DTYPE)
torch.set_num_threads(1)   # tiny models: one thread is fastest, and much faster on a busy CPU
for _n, _v in {"BATCH": BATCH, "DPM_STEPS": DPM_STEPS}.items():
    if not isinstance(_v, int) or isinstance(_v, bool) or _v < 1:
        raise ValueError(f"{_n} must be a positive integer (got {_v!r})")
if TRAINED and TRAINED not in invlab.available_models():
    raise ValueError(f"unknown TRAINED model {TRAINED!r}; choose one of {invlab.available_models()} or ''")
if DPM_STEPS < 3:
    raise ValueError(f"DPM_STEPS must be >= 3 so that some step is second order (got {DPM_STEPS})")
batch = 2 if cfg.quick else BATCH
steps = min(cfg.steps, 10) if cfg.quick else cfg.steps
dpm_steps = min(DPM_STEPS, 4) if cfg.quick else DPM_STEPS
model = cfg.model
cond = torch.arange(batch) % model.num_classes if model.num_classes else None
z_T = invlab.noise(model, batch, seed=cfg.seed, dtype=cfg.dtype)
print(model, f"| {steps} DDIM steps, {dpm_steps} DPM-Solver++(2M) steps, guidance {cfg.guidance}, batch {batch}, {DTYPE}")


# %% [markdown]
# ## 1. One step as an equation
#
# A DDIM sampling step goes from the noisier level $s$ to the less noisy level $t$:
#
# $$x_t = \Phi(x_s),\qquad \Phi(y) = \alpha_t\,\hat x_0(y) + \sigma_t\,\varepsilon_\theta(y, s),\qquad \hat x_0(y) = \frac{y-\sigma_s\varepsilon_\theta(y,s)}{\alpha_s}.$$
#
# Inversion knows $x_t$ and wants $x_s$. Naive inversion evaluates $\varepsilon_\theta$ at $x_t$ instead
# of the unknown $x_s$. **Exact inversion** instead solves the implicit equation
#
# $$\Phi(\hat x_s) = x_t \qquad\Longleftrightarrow\qquad r(\hat x_s) = \Phi(\hat x_s) - x_t = 0,$$
#
# a backward-Euler step, by iterating from the naive guess. $\Phi$ written out inline, once:

# %%
def phi(y, s, t):
    """The DDIM step s -> t from state y (guided eps with the sampler's own label s)."""
    eps = model.eps(y, s.label, model.check_cond(cond, y.shape[0], y), cfg.guidance).eps
    x0 = (y - s.sigma * eps) / s.alpha
    return t.alpha * x0 + t.sigma * eps

cmp = compare_inner_solvers(model, z_T, steps, cfg.guidance, cond, show_progress=True)
grid = model.schedule.grid(steps, "ddim")
j = steps // 2                                   # a sampling step in the middle: levels s -> t
s, t = grid.levels[j], grid.levels[j + 1]
i = steps - 1 - j                                # ... is inversion step i
truth = cmp.reference.latents()                  # the true latents, noisiest first
x_t, x_s = truth[j + 1], truth[j]
exact = cmp.runs["anderson"].latents()[i + 1]    # what exact inversion found for x_s
c = model.check_cond(cond, batch, x_t)
eps_t = model.eps(x_t, s.label, c, cfg.guidance).eps                      # naive guess: eps taken at x_t
naive_guess = s.alpha * (x_t - t.sigma * eps_t) / t.alpha + s.sigma * eps_t
rms = lambda a: float(a.pow(2).mean().sqrt())
print(f"step s={s.label:g} -> t={t.label:g}")
print(f"|Phi(naive guess) - x_t| (RMS) = {rms(phi(naive_guess, s, t) - x_t):.2e}   <- where the solvers start")
print(f"|Phi(true x_s) - x_t|  (RMS) = {rms(phi(x_s, s, t) - x_t):.2e}   <- the truth solves the equation")
print(f"|Phi(exact)    - x_t|  (RMS) = {rms(phi(exact, s, t) - x_t):.2e}   <- so does the solver's answer")
print(f"|exact - true x_s|     (RMS) = {rms(exact - x_s):.2e}")
print("inline Phi == package Phi:", torch.allclose(phi(x_s, s, t), ddim_phi(model, x_s, s, t, c, cfg.guidance)))

# %% [markdown]
# ## 2. The residual, inner iteration by inner iteration
#
# Every inner solver works on $r(y)=\Phi(y)-x_t$, one NFE per evaluation of $\Phi$:
#
# - **forward step** (the paper's method): $y \leftarrow y - \rho\, r(y)$ — the Jacobian of $\Phi$ replaced by the identity;
# - **gradient**: $y \leftarrow y - \rho\, J_\Phi^\top r(y)$ — true gradient descent on $\tfrac12\|r\|^2$ (one backward pass per iteration on top of the NFE);
# - **Anderson** (invlab's default): mixes the last $m=5$ forward-step iterates with the weights that best cancel their residuals;
# - **reference preset**: the paper's code settings — forward step with $\rho_0=0.5$ and a 20-iteration linear warm-up, halving $\rho$ on plateaus, and stopping when the **summed** squared error over the whole batch falls below $10^{-3}$.
#
# invlab stops at an RMS residual per element of $10^{-9}$ in float64 ($10^{-6}$ in float32). Each panel shows
# all steps of one solver (the reference's summed squared error is shown as an RMS, $\sqrt{\text{sum}/\text{entries}}$,
# to share the axis):

# %%
fans = {k: inner_residuals(cmp.runs[k], sum_sq=(k == "reference")) for k in cmp.runs}
rms_of_ref_stop = float(np.sqrt(1e-3 / z_T.numel()))
plots.plot_residual_fans(fans, tol={"anderson": 1e-9, "forward-step": 1e-9, "gradient": 1e-9, "reference": rms_of_ref_stop},
                         suptitle=plots.run_title("inner residual of every inversion step, per solver", model.name, steps, cfg.guidance),
                         save=cfg.figures / "06_residual_fans.png");
table = solver_table(cmp)
for k, row in table.items():
    print(f"{k:>13s}: noise NMSE {row['noise_nmse']:.2e}  NFE/step {row['nfe_per_step']:5.2f}  "
          f"iterations mean {row['mean_iterations']:.1f} max {row['max_iterations']:.0f}  converged {row['converged_fraction']:.0%}")

# %% [markdown]
# Anderson, forward step and gradient reach $10^{-9}$ on every step, with roughly straight (linear-rate) curves; Anderson needs the fewest iterations, gradient descent the most and the widest spread across steps (see the counts in the titles). The reference preset's warm-up makes its first iterations slow, and it stops at a much higher residual: its stopping rule is a sum over the whole batch, which on these small latents is a loose RMS target (the red line).

# %%
plots.plot_inner_residuals({k: v[i] for k, v in fans.items()}, tol=1e-9,
                           title=f"inversion step {i + 1} (t={t.label:g} -> s={s.label:g}); {model.name}, {steps} steps, w = {cfg.guidance:g}",
                           save=cfg.figures / "06_one_step_residuals.png");

# %% [markdown]
# On this single step the ordering is the same: Anderson needs the fewest evaluations of $\Phi$ to reach the tolerance, the forward step a few more, gradient descent more still (and each of its iterations also pays a backward pass, so in wall time it is slower still: in the default full run the whole gradient inversion took about 2.4 times the forward step's, `gradient_seconds` vs `forward_seconds` below); the reference preset starts from a fresh naive guess and stops after a few slow warm-up iterations, far above the others.

# %% [markdown]
# ## 3. Cost against accuracy
#
# Sweep the tolerance `tol` of each solver and record the final noise error
# $\|\hat z_T - z_T\|^2/\|z_T\|^2$ against the NFE spent per step. The reference solver is run here with an
# RMS tolerance (`preset="reference", tol_kind="rms"`) so all solvers share one axis; its own default
# (summed squared error $<10^{-3}$) is the star.

# %%
tols = [1e-4, 1e-9] if cfg.quick else [1e-3, 1e-5, 1e-7, 1e-9, 1e-11]
solvers = {"anderson": {"method": "exact", "inner": "anderson"},
           "forward-step": {"method": "exact", "inner": "forward-step"},
           "gradient": {"method": "exact", "inner": "gradient"},
           "reference (RMS tol)": {"method": "exact", "preset": "reference", "tol_kind": "rms"}}
sweep = tolerance_sweep(model, z_T, steps, cfg.guidance, cond, {k: tols[:-1] if k == "gradient" else tols for k in solvers},
                        solvers, reference=cmp.reference, show_progress=True)
naive_nmse = float(invlab.metrics.nmse(invlab.invert(model, cmp.reference.final, steps, method="naive",
                                                     guidance=cfg.guidance, cond=cond).final, z_T))
fig = plots.plot_tradeoff({k: ([p.nfe_per_step for p in v], [p.noise_nmse for p in v]) for k, v in sweep.items()},
                          labels={k: [f"{p.tol:.0e}" for p in v] for k, v in sweep.items()},
                          baselines={f"naive DDIM inversion (1 NFE/step)": naive_nmse},
                          title=f"exact inversion: noise error vs cost, labels: tol ({model.name}, {steps} DDIM steps, w = {cfg.guidance:g})")
fig.axes[0].plot([table["reference"]["nfe_per_step"]], [table["reference"]["noise_nmse"]], "k*", ms=12,
                 label="reference preset (its own stop)")
fig.axes[0].legend(fontsize=8)
plots.save_figure(fig, cfg.figures / "06_tradeoff.png")  # shown once, by the inline backend

# %%
ref_rms = {p.tol: p for p in sweep["reference (RMS tol)"]}
and_pts = {p.tol: p for p in sweep["anderson"]}
publish(steps=steps, guidance=cfg.guidance, naive_noise_nmse=naive_nmse,
        anderson_noise_nmse=table["anderson"]["noise_nmse"], anderson_nfe_per_step=table["anderson"]["nfe_per_step"],
        forward_noise_nmse=table["forward-step"]["noise_nmse"], forward_nfe_per_step=table["forward-step"]["nfe_per_step"],
        gradient_noise_nmse=table["gradient"]["noise_nmse"], gradient_nfe_per_step=table["gradient"]["nfe_per_step"],
        gradient_seconds=table["gradient"]["seconds"], forward_seconds=table["forward-step"]["seconds"],
        reference_noise_nmse=table["reference"]["noise_nmse"], reference_nfe_per_step=table["reference"]["nfe_per_step"],
        reference_rms1e9_nfe_per_step=ref_rms[1e-9].nfe_per_step, reference_rms1e9_noise_nmse=ref_rms[1e-9].noise_nmse,
        reference_over_anderson_nfe=ref_rms[1e-9].nfe_per_step / and_pts[1e-9].nfe_per_step,
        all_converged=all(r["converged_fraction"] == 1.0 for r in table.values()));

# %% [markdown]
# In the default full run (figures/06_tradeoff.png), for Anderson, forward step and gradient each hundredfold cut of the tolerance costs one to three more NFE per step and buys about four orders of magnitude of noise error (the error goes with the square of the residual); the reference solver pays about five NFE for only two orders, because its warm-up and plateau halving keep its steps small. Anderson's curve lies furthest left; the reference solver needs about five times its NFE for the same tolerance (`reference_over_anderson_nfe`, 5.0 there), and at its own stopping rule it stops near $5\cdot10^{-3}$ — ten times better than naive inversion but nowhere near exact (every run checks both: more than twice Anderson's NFE, at least ten times below naive).

# %% [markdown]
# ## 4. DPM-Solver++(2M): Algorithm 2
#
# A second-order step from $s$ to $t$ also uses the data prediction at the *previous*, noisier level $r$:
#
# $$x_t = \underbrace{\alpha_t\hat x_0(x_s) + \sigma_t\varepsilon_\theta(x_s,s)}_{\text{DDIM part}} \;+\; H,\qquad H = -\tfrac12\alpha_t\,(e^{-h}-1)\,\frac{\hat x_0(x_s)-\hat x_0(x_r)}{r_0},\quad r_0=\frac{\lambda_s-\lambda_r}{\lambda_t-\lambda_s}.$$
#
# Inverting it, both $x_s$ and $x_r$ are unknown. Algorithm 2 estimates them by **fine-grained naive
# inversion** from $x_t$ (sub-steps of 10 train timesteps: $t\to s\to r$), freezes $H$ built from those
# estimates, and solves the DDIM part exactly: $\Phi(\hat x_s) + H = x_t$. `freeze="both"` (the paper)
# freezes all of $H$; `freeze="past"` freezes only $\hat x_0(x_r)$ and re-evaluates $\hat x_0(\hat x_s)$ at
# each iterate. The first and last steps are first order (diffusers' order pattern) and use Algorithm 1.

# %%
dpm = dpm_variants(model, z_T, dpm_steps, cfg.guidance, cond, show_progress=True)
dpm_errors = dpm.step_errors()
reached = [lv.label for lv in dpm.runs["naive DDIM inversion"].levels[1:]]
plots.plot_step_errors(dpm_errors, x_labels=reached, title=plots.run_title("inverting DPM-Solver++(2M)", model.name, dpm_steps, cfg.guidance),
                       save=cfg.figures / "06_dpm_step_errors.png");
print({k: f"{v:.2e}" for k, v in dpm.noise_nmse().items()}, "| NFE per step:",
      {k: round(v, 1) for k, v in dpm.nfe_per_step().items()})

# %% [markdown]
# In the default full run naive inversion of 10 large DPM-Solver steps drifts to a noise error of about 0.5: its latent is barely related to the true noise. Algorithm 2 ends near $5\cdot10^{-5}$ there (every run checks it lands at least ten times below naive): its remaining error is the frozen high-order term, which comes from the approximate (naive, fine-grained) past state and is not solved for. The two freezing variants land within a factor of two of each other (in the default full run $4.9\cdot10^{-5}$ and $3.1\cdot10^{-5}$: `freeze='past'` slightly better on that seed; see the published numbers for yours).

# %%
alg2 = dpm.runs["Alg. 2, freeze both"]
parts = nfe_breakdown(alg2)
plots.plot_nfe_breakdown({"fine-grained past estimate": parts["past_estimate"], "rest of the initial guess": parts["init"],
                          "backward-Euler solve": parts["solve"]}, order=parts["order"], x_labels=reached,
                         title=plots.run_title("Algorithm 2: NFE of each inversion step", model.name, dpm_steps, cfg.guidance),
                         save=cfg.figures / "06_dpm_nfe.png");
print("orders of the inverted steps:", [r.order for r in alg2.records])
past_share = float(parts["past_estimate"].sum() / parts["total"].sum())
dn = dpm.noise_nmse()
publish(dpm_steps=dpm_steps, dpm_naive_noise_nmse=dn["naive DDIM inversion"], dpm_alg2_noise_nmse=dn["Alg. 2, freeze both"],
        dpm_alg2_past_noise_nmse=dn["Alg. 2, freeze past"], dpm_alg2_nfe_per_step=dpm.nfe_per_step()["Alg. 2, freeze both"],
        dpm_past_estimate_share=past_share, dpm_orders=[r.order for r in alg2.records]);

# %% [markdown]
# The order pattern mirrors the sampler: first order at both ends, second order in between. On every second-order step the fine-grained past estimate (in the default full run about 20 sub-steps of 10 timesteps across $t\to s\to r$: 19 NFE) costs more than twice the backward-Euler solve itself (about 8 NFE); that, not the solver, is what makes Algorithm 2 expensive (`dpm_past_estimate_share` is its share of the whole run's NFE, 57% in the default full run, the first-order end steps included).

# %% [markdown]
# ## 4b. Algorithm 2 on a trained network: where the claim stops holding
#
# The same DPM-Solver++(2M) inversion on the shipped `digits` UNet. Every inversion starts by undoing
# the *last* sampling step, down to the cleanest level, where the network is essentially a denoiser.
# How well backward Euler can undo a step is written in the singular values of the step's Jacobian
# $\partial\Phi/\partial y$: a direction with a tiny singular value is nearly erased by the step, so a small
# residual $\|\Phi(\hat y) - x_t\|$ still allows a large error in $\hat y$ (up to residual / singular value).

# %%
sv = {"analytic mixture": last_step_singular_values(dpm)}
dpm_net = None
if TRAINED:
    net = invlab.load_model(TRAINED)
    z_net = invlab.noise(net, batch, seed=cfg.seed, dtype=torch.float64)   # float64 latents, float32 network
    dpm_net = dpm_variants(net, z_net, dpm_steps, cfg.guidance, cond, show_progress=True)
    sv[f"trained '{TRAINED}'"] = last_step_singular_values(dpm_net)
    for name, c in (("analytic", dpm), ("trained", dpm_net)):
        n, i = c.noise_nmse(), c.image_nmse()
        print(f"{name:8s}: noise NMSE naive {n['naive DDIM inversion']:.2e} -> Alg. 2 {n['Alg. 2, freeze both']:.2e};  "
              f"image NMSE naive {i['naive DDIM inversion']:.2e} -> Alg. 2 {i['Alg. 2, freeze both']:.2e}")
lab = dpm.reference.levels
plots.plot_singular_values(sv, title=f"last sampling step ({lab[-2].label:g} -> {lab[-1].label:g}) of DPM-Solver++(2M), {dpm_steps} steps, w = {cfg.guidance:g}:\nsingular values of dPhi/dy, sample 0",
                           save=cfg.figures / "06_last_step_conditioning.png");
for k, v in sv.items():
    print(f"{k:>18s}: smallest {v.min():.1e}, largest {v.max():.2f}, {(v < 1e-2).sum()} of {len(v)} below 1e-2")

# %% [markdown]
# On the analytic mixture the last step is well conditioned (its smallest singular value is around $10^{-1}$) and Algorithm 2 recovers the noise. On the trained network dozens of singular values lie below $10^{-2}$, the smallest a few times $10^{-4}$: the denoiser at low noise collapses those directions onto the digit manifold, and no inner solver can tell the true state from many others that map to the same image (a residual $r$ still allows an error up to $r$ / singular value in those directions). So on our trained nets Algorithm 2 still recovers the *image* much better than naive inversion, but not the *noise*: the seed paper's exact-recovery claim holds on the analytic model and not on this network at this step count. DDIM grids escape this because their last step is tiny (timestep 1 to 0).

# %% [markdown]
# Why is that last step so hard? Diffusers' DPM-Solver++ defaults to `final_sigmas_type="zero"`: its
# last step goes from the last timestep all the way to $\sigma=0$, a *full denoise* that maps a whole
# neighbourhood of noisy latents onto (nearly) the same clean image; that is the ill-conditioned step
# above. With `final_sigmas_type="sigma_min"` the sampler stops at the schedule's smallest $\sigma$
# instead (the grid's last level is then not clean), and the step is invertible again. Same images,
# same network, only that scheduler setting changed (`grid_overrides`):

# %%
dpm_sigma_min = None
if TRAINED:
    overrides = {"final_sigmas_type": "sigma_min"}
    dpm_sigma_min = dpm_variants(net, z_net, dpm_steps, cfg.guidance, cond, grid_overrides=overrides)
    last = dpm_sigma_min.reference.levels[-1]
    print(f"last level: sigma {dpm_net.reference.levels[-1].sigma:.3g} (zero) vs {last.sigma:.3g} (sigma_min)")
    for name, c in (("final_sigmas_type='zero'", dpm_net), ("final_sigmas_type='sigma_min'", dpm_sigma_min)):
        print(f"{name:>30s}: Alg. 2 noise NMSE {c.noise_nmse()['Alg. 2, freeze both']:.2e}, "
              f"naive {c.noise_nmse()['naive DDIM inversion']:.2e}")

# %% [markdown]
# Only the last step changed. In the default full run (10 steps, batch 4, seed 0) Algorithm 2's noise NMSE drops from 0.90 to $2.9\cdot10^{-2}$: from losing the noise to recovering most of it, while naive inversion stays lost either way (0.75 or worse). With very few steps (QUICK's 4) the other steps are so large that Algorithm 2 recovers much less either way (the two lines above). If you invert a DPM-Solver++ sampler, set `final_sigmas_type="sigma_min"` in the scheduler you sample with, and pass the same `grid_overrides` to `invert` and `reconstruct` (`reconstruct` refuses a grid whose noise levels differ from the inversion's).

# %%
if dpm_net is not None:
    n, i = dpm_net.noise_nmse(), dpm_net.image_nmse()
    publish(trained_dpm_naive_noise_nmse=n["naive DDIM inversion"], trained_dpm_alg2_noise_nmse=n["Alg. 2, freeze both"],
            trained_dpm_naive_image_nmse=i["naive DDIM inversion"], trained_dpm_alg2_image_nmse=i["Alg. 2, freeze both"],
            last_step_sv_min_analytic=float(sv["analytic mixture"].min()),
            last_step_sv_min_trained=float(sv[f"trained '{TRAINED}'"].min()),
            last_step_sv_small_trained=int((sv[f"trained '{TRAINED}'"] < 1e-2).sum()),
            trained_dpm_sigma_min_alg2_noise_nmse=dpm_sigma_min.noise_nmse()["Alg. 2, freeze both"],
            trained_dpm_sigma_min_naive_noise_nmse=dpm_sigma_min.noise_nmse()["naive DDIM inversion"])

# %% [markdown]
# ## 5. float64 vs float32
#
# An exact method is only as exact as its arithmetic. The same images, sampled and inverted entirely
# in float64 and in float32 (the solver's default tolerance follows the dtype: $10^{-9}$ and $10^{-6}$ RMS):

# %%
prec = precision_study(model, z_T, steps, cfg.guidance, cond)
plots.plot_step_errors({f"{m} {dt}": prec[dt]["step_errors"][m] for dt in prec for m in ("naive", "exact")},
                       title=plots.run_title("per-step ground-truth error in float64 and float32", model.name, steps, cfg.guidance),
                       save=cfg.figures / "06_precision.png");
publish(exact_float64_noise_nmse=prec["float64"]["noise_nmse"]["exact"], exact_float32_noise_nmse=prec["float32"]["noise_nmse"]["exact"],
        naive_float32_noise_nmse=prec["float32"]["noise_nmse"]["naive"],
        exact_float32_nfe_per_step=prec["float32"]["nfe_per_step"]["exact"]);

# %% [markdown]
# Naive inversion's error is the same in both precisions (it is the method's error, far above round-off). Exact inversion sits near $10^{-17}$ in float64 and near $10^{-10}$ in float32. Neither floor is round-off: it is the solver's stopping tolerance, which follows the dtype ($10^{-9}$ and $10^{-6}$ RMS per step, each chosen just above that dtype's round-off, $\sim10^{-16}$ and $\sim10^{-7}$), and the noise error goes with the square of the per-step residual, accumulated over the steps. Tighten `tol` in float64 and the floor moves down (section 3); in float32 it cannot go much below $10^{-6}$.

# %% [markdown]
# ## 6. Explore: any step, any solver
#
# The slider picks an inversion step, the dropdown a solver; the chosen solver's residual curve is
# drawn bold over the other solvers' curves for the same step. All runs were computed above and are
# only re-plotted.

# %%
explorer = InnerSolverExplorer(cmp.runs, tol=1e-9)
explorer


# %% [markdown]
# ## Exercise: Algorithm 1's inner iteration
#
# The exact-inversion paper's inner solver, the forward step, replaces the Jacobian of $\Phi$ by the
# identity and walks against the residual:
#
# $$y \leftarrow y-\rho\,\big(\Phi(y)-x_t\big),$$
#
# run `iterations` times from the starting guess `y0`; `phi(y)` evaluates $\Phi$. Write it; the check
# compares it with invlab's inner solver (`inner="forward-step"`) on a DDIM step of the analytic
# mixture. Until your function passes, the cell uses `invlab.solutions.forward_step_solve`.

# %%
def my_forward_step_solve(phi, x_t, y0, rho, iterations):
    """`iterations` forward steps y <- y - rho (phi(y) - x_t) from y0; returns the last y."""
    raise NotImplementedError("your code here")


# %%
from invlab import exercises, solutions

check = exercises.check_forward_step_solve(my_forward_step_solve)
forward_step_solve = check.pick(my_forward_step_solve, solutions.forward_step_solve)
for n in (1, 5, 20):
    y = forward_step_solve(lambda v: phi(v, s, t), x_t, naive_guess, 1.0, n)
    print(f"section 1's step after {n:2d} forward steps: |Phi(y) - x_t| = {rms(phi(y, s, t) - x_t):.1e}, "
          f"|y - true x_s| = {rms(y - x_s):.1e}   (RMS)")

# %% [markdown]
# ## Questions to try
#
# 1. Set `GUIDANCE = 7.5`. Which inner solver still converges on every step? Look at `stop_reason` in the records.
# 2. Run the forward step with `rho=1.5` or `rho=2.5` (`invlab.invert(..., method="exact", inner="forward-step", rho=...)`). When does it diverge, and what does `extras["diverged"]` report?
# 3. The reference preset's summed-squared-error stop depends on the tensor size. What RMS tolerance does it correspond to on a 4x64x64 Stable Diffusion latent, and on this 1x16x16 model?
# 4. Change `substep` (Algorithm 2's fine-grained step, in train timesteps) to 5 or 20. Does a finer past estimate lower the error? What does it cost?
# 5. Set `DTYPE = "float32"` for the whole notebook. Which tolerances in section 3 become unreachable?
