"""Hook contracts: recording, observing, intervening, the non-finite guard."""

import pytest
import torch

import invlab
from invlab.trace import FunctionIntervention, Intervention


def _x0(m, n=2, steps=10):
    return invlab.sample(m, invlab.noise(m, n, seed=0), steps, hooks=[invlab.Recorder(keys=())], cond=[1, 2]).final


@pytest.mark.parametrize("solver", ["ddim", "dpmpp2m"])
def test_every_step_recorded_once_with_its_fields(digits, solver):
    seen = []
    traj = invlab.invert(digits, _x0(digits), 12, solver, guidance=2.0, cond=[1, 2], hooks=[seen.append])
    assert [r.index for r in traj.records] == list(range(12))
    assert seen == traj.records
    r = traj.records[3]
    assert r.t_model == r.t_next and r.guidance == 2.0 and r.nfe == 1 and r.seconds > 0
    for k in ("x_cur", "x_next", "eps", "x0_hat"):
        assert getattr(r, k).device.type == "cpu" and getattr(r, k).shape == (2, 1, 16, 16)
    assert torch.equal(traj.records[4].x_cur, r.x_next)
    assert torch.equal(traj.latents()[-1], traj.final)
    assert traj.nfe == 12 and traj.config["label"] == "target" and traj.config["direction"] == "invert"


def test_recorder_every_k_and_subset(digits):
    traj = invlab.sample(digits, invlab.noise(digits, 2), 10, cond=[0, 1],
                         hooks=[invlab.Recorder(keys=("eps",), every=4)])
    have = [r.index for r in traj.records if r.eps is not None]
    assert have == [0, 4, 8, 9]
    assert all(r.x_next is None for r in traj.records)
    with pytest.raises(ValueError, match="x_next was not recorded"):
        traj.latents()


def test_cfg_branches_are_visible_to_hooks(digits):
    traj = invlab.sample(digits, invlab.noise(digits, 2), 5, guidance=4.0, cond=[3, 4],
                         hooks=[invlab.Recorder(keys=("eps", "eps_cond", "eps_uncond"))])
    r = traj.records[2]
    assert torch.allclose(r.eps, r.eps_uncond + 4.0 * (r.eps_cond - r.eps_uncond))
    assert r.nfe == 1  # one NFE = one guided eps (a batch of 2B)


def test_intervention_replaces_x_next_and_adds_extras(digits):
    x0 = _x0(digits)
    target = torch.zeros(2, 1, 16, 16, dtype=torch.float64)

    def at_last(i, t):
        return {"x_next": target, "extras": {"planted": True}} if i == 9 else None

    traj = invlab.invert(digits, x0, 10, cond=[1, 2], hooks=[FunctionIntervention(at_last, {"x_next"})])
    assert torch.equal(traj.final, target) and traj.records[9].extras == {"planted": True}


def test_eps_intervention_changes_the_run(digits):
    x0 = _x0(digits)
    plain = invlab.invert(digits, x0, 10, cond=[1, 2]).final
    zero_eps = FunctionIntervention(lambda i, t: {"eps": torch.zeros_like(t["eps"])} if i == 5 else None, {"eps"}, "eps")
    traj = invlab.invert(digits, x0, 10, cond=[1, 2], hooks=[zero_eps])
    assert not torch.allclose(traj.final, plain)
    assert torch.count_nonzero(traj.records[5].eps) == 0


def test_planted_nan_stops_the_run_at_the_named_step(digits):
    calls = []

    def plant(i, t):
        calls.append(i)
        if i == 3:
            x = t["x_next"].clone()
            x[0, 0, 0, 0] = float("nan")
            return {"x_next": x}

    with pytest.raises(invlab.NonFiniteError, match=r"step 3 \(level"):
        invlab.invert(digits, _x0(digits), 10, cond=[1, 2], hooks=[FunctionIntervention(plant, {"x_next"})])
    assert calls == [0, 1, 2, 3]


def test_interventions_must_declare_allowed_keys(digits):
    class Bad(Intervention):
        stage = "step"
        keys = frozenset({"eps"})

    with pytest.raises(ValueError, match="may replace"):
        invlab.invert(digits, _x0(digits), 5, cond=[1, 2], hooks=[Bad()])
    sneaky = FunctionIntervention(lambda i, t: {"eps": t["eps"]}, {"x_cur"}, "eps")
    with pytest.raises(ValueError, match="declared only"):
        invlab.invert(digits, _x0(digits), 5, cond=[1, 2], hooks=[sneaky])
    with pytest.raises(TypeError, match="hook must be"):
        invlab.invert(digits, _x0(digits), 5, cond=[1, 2], hooks=[42])


def test_errors_to_aligns_levels_and_is_ground_truth(digits):
    z = invlab.noise(digits, 3, seed=7)
    fwd = invlab.sample(digits, z, 20, guidance=3.0, cond=[1, 2, 3])
    inv = invlab.invert(digits, fwd.final, 20, guidance=3.0, cond=[1, 2, 3])
    err = inv.errors_to(fwd)
    assert err.shape == (20,)
    assert float(err[-1]) == pytest.approx(float(invlab.metrics.nmse(inv.final, z)), rel=1e-12)
    assert float(err[0]) < float(err[-1])
    other = invlab.sample(digits, z, 10, cond=[1, 2, 3])
    with pytest.raises(ValueError, match="different noise levels"):
        inv.errors_to(other)


def test_current_label_convention_is_recorded_and_differs(digits):
    x0 = _x0(digits)
    a = invlab.invert(digits, x0, 10, cond=[1, 2], label="target")
    b = invlab.invert(digits, x0, 10, cond=[1, 2], label="current")
    assert b.config["label"] == "current" and all(r.t_model == r.t_cur for r in b.records)
    assert not torch.allclose(a.final, b.final)
