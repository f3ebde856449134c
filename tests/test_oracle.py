"""invlab's samplers and naive inversion equal loops driven by diffusers' own schedulers."""

import pytest
import torch
from diffusers import DDIMInverseScheduler, DDIMScheduler, DPMSolverMultistepScheduler

import invlab
from invlab.schedules import SD_SCHEDULER_CONFIG

CLASSES = torch.tensor([0, 3, 5, 8])


def diffusers_loop(scheduler, model, x, steps, guidance, cond):
    scheduler.set_timesteps(steps)
    c = model.check_cond(cond, x.shape[0], x)
    for t in scheduler.timesteps:
        eps = model.eps(x, float(t), c, guidance).eps
        x = scheduler.step(eps, t, x).prev_sample
    return x


@pytest.mark.parametrize("guidance", [1.0, 5.0])
@pytest.mark.parametrize("solver,steps,cls", [("ddim", 50, DDIMScheduler), ("dpmpp2m", 20, DPMSolverMultistepScheduler)])
def test_sampling_matches_diffusers(digits, guidance, solver, steps, cls):
    z = invlab.noise(digits, 4, seed=1, dtype=torch.float32)
    ours = invlab.sample(digits, z, steps, solver, guidance, CLASSES).final
    ref = diffusers_loop(cls.from_config(SD_SCHEDULER_CONFIG), digits, z, steps, guidance, CLASSES)
    assert ours.dtype == torch.float32
    assert (ours - ref).abs().max() <= 1e-5


@pytest.mark.parametrize("guidance", [1.0, 5.0])
def test_naive_inversion_matches_ddim_inverse_scheduler(digits, guidance):
    z = invlab.noise(digits, 4, seed=2, dtype=torch.float32)
    x0 = invlab.sample(digits, z, 50, "ddim", guidance, CLASSES).final
    ours = invlab.invert(digits, x0, 50, "ddim", "naive", guidance, CLASSES).final
    ref = diffusers_loop(DDIMInverseScheduler.from_config(SD_SCHEDULER_CONFIG), digits, x0, 50, guidance, CLASSES)
    assert (ours - ref).abs().max() <= 1e-5


@pytest.mark.parametrize("spacing", ["leading", "trailing", "linspace"])
def test_dpm_grid_follows_the_scheduler_for_every_spacing(digits, spacing):
    z = invlab.noise(digits, 2, seed=3, dtype=torch.float32)
    over = {"timestep_spacing": spacing}
    traj = invlab.sample(digits, z, 10, "dpmpp2m", 3.0, [1, 7], grid_overrides=over)
    sched = DPMSolverMultistepScheduler.from_config({**SD_SCHEDULER_CONFIG, **over})
    ref = diffusers_loop(sched, digits, z, 10, 3.0, [1, 7])
    assert [r.t_cur for r in traj.records] == [float(t) for t in sched.timesteps]
    assert (traj.final - ref).abs().max() <= 1e-5


@pytest.mark.parametrize("spacing", ["leading", "trailing"])
def test_ddim_grid_follows_the_scheduler(digits, spacing):
    # diffusers' DDIMScheduler.step takes its target level as t - T//N, which agrees with the
    # timestep list for leading and trailing spacing (not for linspace: a known diffusers issue)
    z = invlab.noise(digits, 2, seed=4, dtype=torch.float32)
    over = {"timestep_spacing": spacing}
    traj = invlab.sample(digits, z, 25, "ddim", 1.0, [2, 4], grid_overrides=over)
    sched = DDIMScheduler.from_config({**SD_SCHEDULER_CONFIG, **over})
    ref = diffusers_loop(sched, digits, z, 25, 1.0, [2, 4])
    assert [r.t_cur for r in traj.records] == [float(t) for t in sched.timesteps]
    assert (traj.final - ref).abs().max() <= 1e-5


def test_linspace_grid_uses_the_schedulers_list_not_t_minus_T_over_N(digits):
    grid = digits.schedule.grid(50, "dpmpp2m", timestep_spacing="linspace")
    labels = grid.labels[:-1]
    assert 500.0 in labels and 499.0 not in labels  # 519 -> 500, where t - 1000//50 would say 499
    i = labels.index(500.0)
    assert labels[i - 1] == 519.0


def test_dpm_order_pattern_matches_diffusers_rules(digits):
    g10 = digits.schedule.grid(10, "dpmpp2m")
    assert g10.orders == (1,) + (2,) * 8 + (1,)
    g20 = digits.schedule.grid(20, "dpmpp2m")
    assert g20.orders[0] == 1 and g20.orders[-1] == 1  # final sigma is zero -> first order at the end
    g20s = digits.schedule.grid(20, "dpmpp2m", final_sigmas_type="sigma_min")
    assert g20s.orders == (1,) + (2,) * 19  # >= 15 steps and a non-zero final sigma: second order to the end
    z = invlab.noise(digits, 2, seed=5, dtype=torch.float32)
    ours = invlab.sample(digits, z, 20, "dpmpp2m", 1.0, [0, 1], grid_overrides={"final_sigmas_type": "sigma_min"})
    ref = diffusers_loop(DPMSolverMultistepScheduler.from_config({**SD_SCHEDULER_CONFIG, "final_sigmas_type": "sigma_min"}),
                         digits, z, 20, 1.0, [0, 1])
    assert (ours.final - ref).abs().max() <= 1e-5
