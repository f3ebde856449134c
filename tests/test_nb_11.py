"""Notebook 11 (flow matching): the notebook in QUICK mode with checks on what it publishes, and the
studies it calls against the rules they claim (the ODE identity between VP and flow coordinates, the
solvers' orders, RF-Inversion's end points, the diffusers oracle loop)."""

import math

import pytest
import torch

import invlab
from invlab.studies import flowmatch as fm
from nbchecks import check_11


@pytest.mark.slow
def test_11_flow_matching(quick_notebook):
    res, figures = quick_notebook("11_flow_matching")
    check_11(res)
    assert {"11_paths_2d.png", "11_step_errors.png", "11_solver_family.png", "11_guidance_trained.png",
            "11_rf_inversion_gamma.png", "11_time_grid_audit.png"} <= {p.name for p in figures.iterdir()}


@pytest.fixture(scope="module")
def flow():
    torch.set_num_threads(1)
    m = invlab.load_model("gmm-digits-flow")
    return m, invlab.noise(m, 2, seed=1), torch.tensor([2, 7])


def test_oracle_loop_is_the_euler_sampler(flow):
    m, z, cond = flow
    ours = invlab.sample(m, z.float(), 9, "euler", 2.0, cond).final
    assert (ours - fm.diffusers_euler_loop(m, z.float(), 9, 2.0, cond)).abs().max().item() < 1e-5
    with pytest.raises(ValueError, match="flow-matching"):
        fm.diffusers_euler_loop(invlab.load_model("gmm-digits"), z, 4)


def test_straightness_of_known_paths():
    t = torch.linspace(0, 1, 101, dtype=torch.float64)
    line = torch.stack([t, 2 * t], -1)[:, None]                      # a straight segment
    arc = torch.stack([torch.cos(t * math.pi / 2), torch.sin(t * math.pi / 2)], -1)[:, None]   # a quarter circle
    assert fm.straightness(line).item() == pytest.approx(1.0, abs=1e-12)
    assert fm.straightness(arc).item() == pytest.approx((math.pi / 2) / math.sqrt(2), rel=1e-4)
    with pytest.raises(ValueError, match="path must be"):
        fm.straightness(torch.zeros(1, 3, 2))


def test_a_vp_step_rescaled_is_the_flow_step():
    """The change of variables the notebook's section 2 rests on, one step at a time: a DDIM step of the VP
    mixture, divided by alpha + sigma, equals the Euler step of the flow mixture at the rescaled state."""
    from invlab.schedules import Level
    from invlab.steps import ddim_step, x0_hat

    vp, fl = invlab.load_model("gmm-2d"), invlab.load_model("gmm-2d-flow")
    x = invlab.noise(vp, 5, seed=3)
    a, b = vp.schedule.level(700.0), vp.schedule.level(400.0)
    e = vp.eps(x, a.label, None, 1.0).eps
    x_vp = ddim_step(x0_hat(x, e, a), e, b)
    T = fl.schedule.num_train_timesteps

    def flow_level(lv):
        s = lv.sigma / (lv.alpha + lv.sigma)
        return Level(label=s * T, alpha=1 - s, sigma=s)

    fa, fb = flow_level(a), flow_level(b)
    y = x / (a.alpha + a.sigma)
    out = fl.eps(y, fa.label, None, 1.0)
    y_next = y + (fb.sigma - fa.sigma) * (out.eps - out.x0)
    assert (x_vp / (b.alpha + b.sigma) - y_next).abs().max().item() < 1e-12


def test_vp_path_as_flow_lands_on_the_flow_path():
    vp, fl = invlab.load_model("gmm-2d"), invlab.load_model("gmm-2d-flow")
    z = invlab.noise(vp, 8, seed=0)
    traj = invlab.sample(vp, z, 300, "ddim", hooks=[invlab.Recorder(keys=("x_next",))])
    s, path = fm.vp_path_as_flow(traj)
    assert s[-1] < 0.05 and all(a > b for a, b in zip(s, s[1:]))    # the VP grid ends at timestep 0, not sigma = 0
    lv = traj.levels[-1]
    assert torch.equal(path[-1], traj.final / (lv.alpha + lv.sigma))
    flow = invlab.sample(fl, z, 300, "euler").final
    assert (traj.final - flow).norm(dim=-1).max().item() < 0.02          # the same ODE: the same images


def test_solver_family_orders_and_exactness(flow):
    m, z, cond = flow
    rows = fm.solver_family(m, z, [10, 20, 40], cond, 1.0, methods={k: fm.FLOW_FAMILY[k] for k in
                                                                    ("naive", "rf-solver", "exact")}, fine_steps=800)
    by = {(r["target"], r["method"], r["steps"]): r for r in rows}
    assert by[("sampler", "exact", 40)]["noise_nmse"] < 1e-12                # backward Euler inverts the sampler
    assert fm.order_of(rows, "rf-solver") < -3.0                                # second order in NMSE: ~N^-4
    assert by[("ode", "rf-solver", 40)]["nfe"] == 80 and by[("ode", "naive", 40)]["nfe"] == 40
    with pytest.raises(ValueError, match="flow-matching"):
        fm.solver_family(invlab.load_model("gmm-digits"), z, [4])
    with pytest.raises(ValueError, match="at least two"):
        fm.order_of(rows[:1], "naive", rows[0]["target"])


def test_gamma_sweep_end_points(flow):
    m, z, cond = flow
    x0 = invlab.sample(m, z, 8, "euler", 1.0, cond).final
    sw = fm.rf_inversion_gammas(m, x0, 8, [0.0, 1.0], cond, 1.0)
    naive = invlab.invert(m, x0, 8, "euler", "naive", 1.0, cond, label="current")
    assert (sw.noises[0.0] - naive.final).abs().max().item() < 1e-12  # gamma = 0: Euler inversion, own-level label
    assert sw.rows[1]["y1_nmse"] < 1e-20                             # gamma = 1 ends on y1
    g = torch.Generator().manual_seed(2410)
    assert torch.equal(sw.y1, torch.randn(x0.shape, generator=g, dtype=torch.float64))
    with pytest.raises(ValueError, match="gammas"):
        fm.rf_inversion_gammas(m, x0, 8, [])


def test_gamma_explorer_redraws(flow):
    pytest.importorskip("ipywidgets")
    from invlab.widgets import GammaExplorer

    m, z, cond = flow
    x0 = invlab.sample(m, z, 6, "euler", 1.0, cond).final
    ex = GammaExplorer(fm.rf_inversion_gammas(m, x0, 6, [0.0, 0.5, 1.0], cond, 1.0))
    first = ex.summary.copy()
    ex.controls["gamma"].value = 1.0
    assert ex.renders == 2 and not (first.shape == ex.summary.shape and (first == ex.summary).all())
    with pytest.raises(TypeError, match="gamma sweep"):
        GammaExplorer("not a sweep")
