"""The classifier check on class-conditional samples (>= 90% at guidance 3) for both shipped nets."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

import invlab
from invlab import quality


def test_classifier_is_trustworthy():
    # it must recognise real validation digits, raw and after the up/down-sampling the check applies
    for size in (8, 16, 32):
        assert quality.classifier_accuracy(size) >= 0.95


def test_to_8x8_validates():
    with pytest.raises(ValueError, match="decode latents"):
        quality.to_8x8(torch.zeros(2, 4, 8, 8))


def test_check_can_fail_on_noise():
    # pure-noise "samples" must not pass: the check can fail
    x = torch.rand(100, 1, 16, 16, generator=torch.Generator().manual_seed(0)) * 2 - 1
    hit = quality.classify(x) == torch.arange(10).repeat_interleave(10).numpy()
    assert hit.mean() < 0.5


@pytest.mark.parametrize("name", ["digits", "digits-latent", "digits-flow"])
def test_class_conditional_samples_are_recognised(name):
    model = invlab.load_model(name)
    rep = quality.check_class_quality(model, per_class=10, guidance=3.0, steps=10, seed=1)
    assert rep.passed, str(rep)


def test_unconditional_model_is_refused():
    with pytest.raises(ValueError, match="class-conditional"):
        quality.class_samples(SimpleNamespace(name="unconditional", is_conditional=False))


def test_save_grid(tmp_path):
    p = quality.save_grid(torch.zeros(6, 1, 8, 8), tmp_path / "g.png", nrow=3)
    assert p.is_file() and p.stat().st_size > 0
