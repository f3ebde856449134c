"""The Denoiser interface: prediction types, dtype/device, NFE accounting, the analytic models."""

import pytest
import torch

import invlab
from invlab.models.base import Denoiser


class Reparam(Denoiser):
    """The digits mixture re-expressed as a v- or x0-predicting network."""

    def __init__(self, inner, prediction_type):
        super().__init__(inner.schedule, inner.sample_shape, prediction_type, inner.num_classes)
        self.inner, self.name = inner, f"gmm-digits-{prediction_type}"

    def check_cond(self, cond, batch, like):
        return self.inner.check_cond(cond, batch, like)

    def null_cond(self, batch, like):
        return self.inner.null_cond(batch, like)

    def forward_raw(self, x, label, cond):
        eps = self.inner.forward_raw(x, label, cond)
        lv = self.schedule.level(label)
        x0 = (x - lv.sigma * eps) / lv.alpha
        return lv.alpha * eps - lv.sigma * x0 if self.prediction_type == "v_prediction" else x0


@pytest.mark.parametrize("ptype", ["v_prediction", "sample"])
@pytest.mark.parametrize("solver", ["ddim", "dpmpp2m"])
def test_prediction_types_are_converted_in_one_place(digits, ptype, solver):
    other = Reparam(digits, ptype)
    z = invlab.noise(digits, 3, seed=11)
    a = invlab.sample(digits, z, 15, solver, 3.0, [1, 5, 9]).final
    b = invlab.sample(other, z, 15, solver, 3.0, [1, 5, 9]).final
    assert torch.allclose(a, b, atol=1e-9)
    ia = invlab.invert(digits, a, 15, solver, guidance=3.0, cond=[1, 5, 9]).final
    ib = invlab.invert(other, a, 15, solver, guidance=3.0, cond=[1, 5, 9]).final
    assert torch.allclose(ia, ib, atol=1e-9)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_dtype_follows_the_input(digits, dtype):
    z = invlab.noise(digits, 2, dtype=dtype)
    traj = invlab.sample(digits, z, 5, guidance=2.0, cond=[0, 1])
    assert traj.final.dtype == dtype and traj.records[0].eps.dtype == dtype
    assert traj.config["dtype"] == str(dtype).replace("torch.", "")


def test_nfe_convention(digits):
    digits.reset_counters()
    invlab.sample(digits, invlab.noise(digits, 4), 10, guidance=3.0, cond=[0, 1, 2, 3])
    assert (digits.nfe, digits.net_calls, digits.net_rows) == (10, 10, 80)  # CFG: one NFE = one call on 2B rows
    digits.reset_counters()
    invlab.sample(digits, invlab.noise(digits, 4), 10, guidance=1.0, cond=[0, 1, 2, 3])
    assert (digits.nfe, digits.net_rows) == (10, 40)


def test_public_attributes(digits, gmm2d):
    assert digits.sample_shape == (1, 16, 16) and digits.num_classes == 10 and digits.prediction_type == "epsilon"
    assert gmm2d.sample_shape == (2,) and gmm2d.num_classes == 3
    assert digits.schedule.num_train_timesteps == 1000
    with pytest.raises(TypeError, match="no encoder"):
        digits.encode(torch.zeros(1, 1, 16, 16))
    assert "gmm-digits" in invlab.available_models()


def test_guidance_pulls_samples_towards_their_class(gmm2d):
    z = invlab.noise(gmm2d, 400, seed=3)
    cond = torch.arange(400) % 3
    out = {}
    for w in (1.0, 4.0):
        x = invlab.sample(gmm2d, z, 30, guidance=w, cond=cond, hooks=[invlab.Recorder(keys=())]).final
        d = torch.cdist(x, gmm2d.means)  # nearest component must belong to the requested class
        out[w] = (gmm2d.classes[d.argmin(1)] == cond).double().mean().item()
    assert out[1.0] > 0.97 and out[4.0] >= out[1.0]


def test_class_conditional_samples_stay_near_their_class_means(digits):
    cond = torch.arange(10)
    x = invlab.sample(digits, invlab.noise(digits, 10, seed=5), 30, guidance=1.0, cond=cond).final
    flat = x.reshape(10, -1)
    d = torch.cdist(flat, digits.means)
    assert (digits.classes[d.argmin(1)] == cond).all()
