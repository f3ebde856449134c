"""Bad input gets an error that names the problem and the fix."""

import pytest
import torch

import invlab
from invlab.models.base import Denoiser


def test_wrong_shapes_and_channels(digits):
    with pytest.raises(ValueError, match=r"add a batch dimension"):
        invlab.invert(digits, torch.zeros(1, 16, 16))
    with pytest.raises(ValueError, match=r"takes \(B, 1, 16, 16\)"):
        invlab.invert(digits, torch.zeros(2, 3, 16, 16))
    with pytest.raises(TypeError, match="floating"):
        invlab.sample(digits, torch.zeros(2, 1, 16, 16, dtype=torch.long))
    with pytest.raises(TypeError, match="torch.Tensor"):
        invlab.sample(digits, [[0.0]])


def test_non_finite_input(digits):
    x = torch.zeros(2, 1, 16, 16)
    x[1, 0, 3, 3] = float("inf")
    with pytest.raises(ValueError, match="NaN or inf"):
        invlab.invert(digits, x)


@pytest.mark.parametrize("steps,err", [(0, ValueError), (-3, ValueError), (2.5, TypeError), (5000, ValueError)])
def test_bad_steps(digits, steps, err):
    with pytest.raises(err, match="steps"):
        invlab.sample(digits, invlab.noise(digits, 1), steps=steps)


def test_guidance_checks(digits):
    z = invlab.noise(digits, 2)
    with pytest.raises(ValueError, match=">= 0"):
        invlab.sample(digits, z, 5, guidance=-1.0, cond=[0, 1])
    with pytest.raises(ValueError, match="needs a condition"):
        invlab.sample(digits, z, 5, guidance=3.0)
    with pytest.raises(TypeError, match="number"):
        invlab.sample(digits, z, 5, guidance="lots", cond=[0, 1])


def test_class_out_of_range_and_shape(digits, gmm2d):
    z = invlab.noise(digits, 2)
    with pytest.raises(ValueError, match=r"classes 0\.\.9"):
        invlab.sample(digits, z, 5, cond=[0, 10])
    with pytest.raises(ValueError, match="one per row"):
        invlab.sample(digits, z, 5, cond=[0, 1, 2])
    with pytest.raises(ValueError, match=r"classes 0\.\.2"):
        invlab.sample(gmm2d, invlab.noise(gmm2d, 1), 5, cond=3)


def test_unknown_names():
    with pytest.raises(ValueError, match="unknown model"):
        invlab.load_model("no-such-model")
    m = invlab.load_model("gmm-2d")
    with pytest.raises(ValueError, match="unknown solver"):
        invlab.sample(m, invlab.noise(m, 1), 5, solver="heun")
    with pytest.raises(ValueError, match="unknown method"):
        invlab.invert(m, invlab.noise(m, 1), 5, method="magic")
    with pytest.raises(TypeError, match="has no option"):
        invlab.invert(m, invlab.noise(m, 1), 5, method="naive", eta=0.5)
    with pytest.raises(ValueError, match="label must be one of"):
        invlab.invert(m, invlab.noise(m, 1), 5, label="middle")


def test_prediction_type_the_interface_does_not_know():
    with pytest.raises(ValueError, match="unknown prediction_type 'flow'"):
        Denoiser(invlab.NoiseSchedule.stable_diffusion(), (2,), prediction_type="flow")


def test_model_must_be_a_denoiser():
    with pytest.raises(TypeError, match="invlab Denoiser"):
        invlab.sample(lambda x, t: x, torch.zeros(1, 2))


def test_clipping_schedules_are_refused():
    sched = invlab.NoiseSchedule.from_config({**invlab.schedules.SD_SCHEDULER_CONFIG, "clip_sample": True})
    with pytest.raises(ValueError, match="clip_sample=False"):
        sched.grid(10, "ddim")
