# ---
# jupyter:
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# [![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)](https://colab.research.google.com/github/invlab/invlab/blob/main/notebooks/02_flows_in_2d.ipynb)
#
# # Flows in 2-D: why a large step cuts the corner and the inverse cannot know it
#
# **What you will learn**
#
#
# - what the **probability-flow ODE** looks like in the plane: the denoising field `-eps` at a few
#   noise levels, over the density of a 2-D mixture whose eps is known exactly;
# - how a **coarse DDIM path** differs from the near-exact flow traced by many small steps, and how
#   **naive inversion** of the coarse sample wanders off on the way back up;
# - why, on one large step: the sampler took eps at the start point `x_s`; the naive inverse can
#   only take it at the known end point `x_t` (the two arrows differ); exact inversion solves for
#   the start point instead;
# - how the round-trip error of naive inversion shrinks with finer grids, and that exact inversion
#   removes it at any step count;
# - with a widget: steps, guidance and method, and what the paths do.

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
MODEL = "gmm-2d"       # a 2-D model: this notebook draws in the plane
STEPS = 10             # the coarse DDIM grid
FINE_STEPS = 100       # the fine DDIM grid for the round-trip comparison
GUIDANCE = 1.0         # classifier-free guidance scale w; 1 means no guidance
POINTS = 12            # how many noise points to follow
SUBSTEPS = 100         # small steps per grid interval for the near-exact flow
DTYPE = "float64"
FIGURES = "../figures"

# %%
import numpy as np
import torch
import invlab
from invlab import plots
from invlab.nbsetup import setup
from invlab.report import publish
from invlab.studies import flows
from invlab.widgets import FlowExplorer

cfg = setup(QUICK, SEED, MODEL, STEPS, GUIDANCE, FIGURES, DTYPE)
model = cfg.model
if model.sample_shape != (2,) or not hasattr(model, "log_prob"):
    raise ValueError(f"MODEL={MODEL!r} is not a 2-D analytic mixture; this notebook draws in the plane, use MODEL='gmm-2d'")
for nm, v in {"FINE_STEPS": FINE_STEPS, "POINTS": POINTS, "SUBSTEPS": SUBSTEPS}.items():
    if not isinstance(v, int) or isinstance(v, bool) or v < 1:
        raise ValueError(f"{nm} must be a positive integer (got {v!r})")
if FINE_STEPS <= STEPS:
    raise ValueError(f"FINE_STEPS ({FINE_STEPS}) must be larger than STEPS ({STEPS})")
points = 6 if cfg.quick else POINTS
substeps = 20 if cfg.quick else SUBSTEPS
steps, fine_steps = cfg.steps, (50 if cfg.quick else FINE_STEPS)
cond = torch.arange(points) % model.num_classes if model.num_classes else None
z_T = invlab.noise(model, points, seed=cfg.seed, dtype=cfg.dtype)
X, Y, grid_pts = flows.grid_points(3.2, 80)
data_density = flows.density_grid(model, X, Y)
print(model, f"| coarse {steps} steps, fine {fine_steps}, guidance {cfg.guidance}, {points} points, {substeps} substeps")

# %% [markdown]
# ## 1. The field that moves the points
#
# Under the VP convention $x_t=\alpha_t x_0+\sigma_t\varepsilon$ the noisy marginal $p_t$ of this mixture
# is known exactly, and the exact noise prediction is a rescaled score:
#
# $$\varepsilon^*(x,t) = -\sigma_t\,\nabla_x \log p_t(x).$$
#
# In the scaled coordinates $y=x/\alpha_t$, $\rho=\sigma_t/\alpha_t$ the probability-flow ODE is simply
# $\dfrac{dy}{d\rho}=\varepsilon^*(x,t)$: as the noise $\rho$ goes down, points move along $-\varepsilon$.
# Checked once, inline, against autograd on the exact density:

# %%
x = grid_pts[:5].clone().requires_grad_(True)
t_check = 500.0
score = torch.autograd.grad(model.log_prob(x, t_check).sum(), x)[0]
eps_from_score = -model.schedule.sigma(t_check) * score
eps_model = model.eps(x.detach(), t_check).eps          # unconditional: the whole mixture
print("eps == -sigma * grad log p_t:", torch.allclose(eps_from_score, eps_model, atol=1e-10))

# %%
AX, AY, arrow_pts = flows.grid_points(3.2, 15)
panels = []
for lab in (900.0, 500.0, 200.0, 20.0):
    f = flows.denoising_field(model, arrow_pts, lab)
    panels.append({"title": f"t={lab:g}  (sigma={model.schedule.sigma(lab):.2f})", "U": f[:, 0].reshape(AX.shape),
                   "V": f[:, 1].reshape(AX.shape), "density": flows.density_grid(model, X, Y, lab)})
plots.plot_flow_fields(X, Y, panels, AX, AY, data_density=data_density,
                       save=cfg.figures / "02_fields.png",
                       suptitle=f"denoising direction -eps over the noisy density ({model.name}, w = {cfg.guidance:g}; no steps: the field itself)");

# %% [markdown]
# At high noise the marginal (blue) is one broad blob and `-eps` points straight at its centre, with no trace of the six components (black line contours); as the noise drops the marginal splits into the components and the arrows turn toward the nearest one, changing direction sharply across the gaps between components. Where the field turns fastest, a large step goes wrong (arrow lengths are rescaled per panel). These panels show the **unconditional** field (the whole mixture, `cond=None`, as checked above). The paths below are sampled **class-conditionally with guidance** $w$, so they follow another field: their own class's, pushed away from the others by $w$ (draw it with `flows.denoising_field(model, arrow_pts, label, cond=c, guidance=w)`).

# %% [markdown]
# ## 2. Paths: many small steps, a few large ones, and the way back
#
# One DDIM step from level $s$ to level $t$ is an Euler step of that ODE:
#
# $$\hat x_0=\frac{x_s-\sigma_s\hat\varepsilon}{\alpha_s},\qquad x_t=\alpha_t\hat x_0+\sigma_t\hat\varepsilon,\qquad \hat\varepsilon=\varepsilon_\theta(x_s,s).$$
#
# `flows.flow_paths` samples the points with `STEPS` large DDIM steps, integrates the same points
# with `SUBSTEPS` small DDIM steps per interval (the near-exact flow) and inverts the coarse sample.

# %%
naive = flows.flow_paths(model, z_T, steps, cfg.guidance, cond, "naive", substeps)
exact = flows.flow_paths(model, z_T, steps, cfg.guidance, cond, "exact", substeps)
plots.plot_flow_paths(X, Y, data_density, {"near-exact flow": naive.exact_fine, "DDIM (coarse)": naive.ddim},
                      title=f"sampling: {steps} DDIM steps vs {substeps} small steps per interval\n({model.name}, w = {cfg.guidance:g})",
                      save=cfg.figures / "02_sampling_paths.png");
gap = float((naive.ddim[-1] - naive.exact[-1]).norm(dim=1).mean())
print(f"mean distance between the coarse and the near-exact end points: {gap:.3f}")

# %% [markdown]
# The coarse path (orange dots, one per step) follows the near-exact flow (light grey band) closely for most of the way; it separates visibly near the end, where the flow turns into a component, and its end points land near but not on the flow's (the printed distance).

# %%
plots.plot_flow_paths(X, Y, data_density, {"DDIM (coarse)": naive.ddim, "naive inversion": naive.inverted,
                                           "exact inversion": exact.inverted}, starts=z_T,
                      title=plots.run_title("inverting the coarse sample: naive vs exact", model.name, steps, cfg.guidance),
                      save=cfg.figures / "02_inversion_paths.png");
print(f"noise NMSE  naive {naive.noise_nmse:.3g}   exact {exact.noise_nmse:.3g}")

# %% [markdown]
# Going back up from the same end points, naive inversion (dark grey, dashed) does not retrace the orange path: its squares (the recovered noise) sit away from the black dots (the true noise), while exact inversion (blue, dotted) ends on them. Note that the target of inversion is the coarse sampler's own path, not the flow: exact inversion undoes the DDIM steps that were taken, corner cuts included.

# %% [markdown]
# ## 3. One large step, up close
#
# Pick the step where one DDIM step, started on the near-exact path, deviates most from it.
# The naive inverse step from the known $x_t$ back to level $s$ has to guess $\hat\varepsilon$ without $x_s$:
#
# $$\hat x_s=\alpha_s\frac{x_t-\sigma_t\hat\varepsilon}{\alpha_t}+\sigma_s\hat\varepsilon,\qquad \hat\varepsilon=\varepsilon_\theta(x_t,s)\quad(\text{not }\varepsilon_\theta(x_s,s)).$$
#
# Exact inversion solves the sampler's equation for $x_s$ instead; written as a fixed point,
# $x \leftarrow \frac{\alpha_s}{\alpha_t}x_t+\big(\sigma_s-\frac{\alpha_s\sigma_t}{\alpha_t}\big)\varepsilon_\theta(x,s)$, started at $x_t$
# (its first iterate is exactly the naive inverse).

# %%
i = flows.worst_corner(model, naive, cond, cfg.guidance, point=0)
s_lv, t_lv = naive.sampling.levels[i], naive.sampling.levels[i + 1]
c0 = None if cond is None else cond[:1]
step = flows.corner_step(model, naive.exact[i, :1], s_lv, t_lv, c0, cfg.guidance, substeps=10 * substeps, iterations=100)
plots.plot_corner_step(step.path[:, 0], step.x_s[0], step.x_t_exact[0], step.x_t_ddim[0], step.eps_s[0], step.eps_t[0],
                       step.x_s_naive[0], step.fixed_point[:, 0],
                       title=f"sampling step t={s_lv.label:g} -> {t_lv.label:g} = inversion step {steps - i} of {steps}, point 0\n({model.name}, w = {cfg.guidance:g})",
                       save=cfg.figures / "02_corner.png");
cos = float(torch.nn.functional.cosine_similarity(step.eps_s, step.eps_t).item())
fp_miss = float((step.fixed_point[-1] - step.x_s).norm())
print(f"corner cut {float(step.corner_cut):.3g}, naive inverse misses x_s by {float(step.naive_miss):.3g}, "
      f"fixed point after {len(step.fixed_point) - 1} iterations by {fp_miss:.2g}; cos(eps_s, eps_t) = {cos:.3f}")

# %% [markdown]
# The light grey flow from `x_s` bends; the single DDIM step (orange line) goes straight and lands at the orange dot, away from the flow's end (open circle): the corner cut. The inverse knows only the orange dot. It evaluates eps there (dark grey arrow), which points in a different direction from the eps the sampler used at `x_s` (orange arrow; the printed cosine measures the difference), so the step it undoes starts at the dark grey cross, part of the way back along the segment, not at `x_s`. The blue fixed-point iterates (exact inversion's colour), which evaluate eps at their own current guess, walk from the cross to `x_s` (the printed miss after 100 iterations is tiny).

# %% [markdown]
# ## 4. Round trips: coarse grid, fine grid, exact
#
# $z_T \to x_0$ with $N$ DDIM steps, then $x_0\to\hat z_T$; the error is $\|\hat z_T-z_T\|^2/\|z_T\|^2$.

# %%
sweep_steps = [5, 10, 20, 50] if cfg.quick else [5, 10, 20, 50, 100, 200]
sweep = flows.round_trip_errors(model, z_T, sweep_steps, {"naive": {"method": "naive"}, "easyinv (eta=0.5)": {"method": "easyinv"},
                                                          "exact": {"method": "exact"}}, cfg.guidance, cond)
plots.plot_round_trips(sweep_steps, sweep, save=cfg.figures / "02_round_trips.png",
                       title=f"round trip z_T -> x_0 -> z_T_hat ({model.name}, w = {cfg.guidance:g})");
fine = flows.flow_paths(model, z_T, fine_steps, cfg.guidance, cond, "naive", 1)
easy = flows.flow_paths(model, z_T, steps, cfg.guidance, cond, "easyinv", 1)
slope = float(np.polyfit(np.log(sweep_steps[-3:]), np.log(sweep["naive"][-3:]), 1)[0])
print(f"naive: {steps} steps {naive.noise_nmse:.3g}, {fine_steps} steps {fine.noise_nmse:.3g}; log-log slope on the finest grids {slope:.2f}")

# %% [markdown]
# Naive inversion's error falls with the number of steps, close to $1/N^2$ on the finest grids (an NMSE is a squared error of a first-order method), but it is far from zero even at 200 steps. In the default full run EasyInv's constant blend sits above naive at every grid of the sweep (at 10 steps 1.0 against naive's 0.69: `easyinv_coarse_noise_nmse`, `naive_coarse_noise_nmse`) and improves more slowly. Exact inversion sits at its solver's tolerance floor for every grid (each step's equation is solved to $10^{-9}$ RMS, the float64 default, and the NMSE goes with the square of that residual): its error is not a discretisation error at all.

# %%
publish(coarse_steps=steps, fine_steps=fine_steps, guidance=cfg.guidance,
        naive_coarse_noise_nmse=naive.noise_nmse, naive_fine_noise_nmse=fine.noise_nmse,
        easyinv_coarse_noise_nmse=easy.noise_nmse, exact_coarse_noise_nmse=exact.noise_nmse,
        naive_nfe=naive.nfe, exact_nfe_per_step=exact.nfe / steps, naive_loglog_slope=slope,
        corner_step=i, corner_cut=float(step.corner_cut), naive_miss=float(step.naive_miss),
        fixed_point_miss=fp_miss, eps_cosine=cos)

# %% [markdown]
# ## 5. Explore
#
# Change the number of steps, the guidance and the method: each combination is computed once, then moving a slider back only re-draws.

# %%
explorer = FlowExplorer(model, z_T, cond, steps_options=[5, 10, 20, 50], guidance_options=[1.0, 2.0, 4.0],
                        substeps=10 if cfg.quick else 40, steps=steps if steps in (5, 10, 20, 50) else None)
explorer


# %% [markdown]
# ## Exercise: the DDIM step as an Euler step
#
# Section 1 said that in the scaled coordinates $y=x/\alpha$, $\rho=\sigma/\alpha$ the flow is
# $dy/d\rho=\varepsilon$, and section 2 that one DDIM step is an Euler step of it. Write the step
# that way, from the state $x_s$ at level `s` and the noise prediction `eps` used for the step, to level `t`:
#
# $$y_s=\frac{x_s}{\alpha_s},\qquad y_t=y_s+(\rho_t-\rho_s)\,\hat\varepsilon,\qquad x_t=\alpha_t\,y_t .$$
#
# The check compares it with invlab's DDIM step ($\alpha_t\hat x_0+\sigma_t\hat\varepsilon$, in
# `invlab.steps`) on points of this mixture, for sampling steps and for inversion steps ($t$ noisier
# than $s$: the same formula). Until your function passes, the cell uses `invlab.solutions.ddim_euler_step`.

# %%
def my_ddim_euler_step(x_s, eps, s, t):
    """The DDIM step from level s to level t, written as one Euler step in (y, rho)."""
    raise NotImplementedError("your code here")


# %%
from invlab import exercises, solutions

check = exercises.check_ddim_euler_step(my_ddim_euler_step)
ddim_euler_step = check.pick(my_ddim_euler_step, solutions.ddim_euler_step)
print("section 3's large step lands on the orange dot:", torch.allclose(ddim_euler_step(step.x_s, step.eps_s, s_lv, t_lv), step.x_t_ddim))
print("and its naive inverse on the cross:", torch.allclose(ddim_euler_step(step.x_t_ddim, step.eps_t, t_lv, s_lv), step.x_s_naive))

# %% [markdown]
# ## Questions to try
#
# 1. In the widget, raise guidance to 4 with 10 steps: does naive inversion get worse or better on this mixture? Where do the paths bend?
# 2. Which of the six components are hardest to invert towards? (Compare the tight components, std 0.18, with the wide ones, std 0.30.)
# 3. In section 3, set `point=` to another point: is the corner always cut on the inside of the bend?
# 4. Exact inversion costs more NFE per step (printed as `exact_nfe_per_step`). At equal NFE, is naive inversion on a finer grid a match for it?
