"""Notebook 14 (the bug gallery): the notebook in QUICK mode with checks on what it publishes, and the
hand-written loop and its bugs against invlab and against the rules they break."""

from pathlib import Path

import pytest
import torch

import invlab
from invlab.studies.bugs import BUGS, hand_inversion, run_bug
from nbchecks import check_14

NB_DIR = Path(__file__).resolve().parent.parent / "notebooks"


@pytest.mark.slow
def test_14_bug_gallery(quick_notebook):
    res, figures = quick_notebook("14_bug_gallery")
    check_14(res)
    assert {"14_bug_gallery.png", "14_residuals.png", "14_swap_in.png"} <= {p.name for p in figures.iterdir()}


@pytest.fixture(scope="module")
def setting():
    torch.set_num_threads(1)
    m = invlab.load_model("gmm-digits")
    z = invlab.noise(m, 2, seed=3)
    cond = torch.tensor([4, 7])
    return m, z, cond


@pytest.mark.parametrize("label", ["target", "current"])
def test_correct_loop_is_invlab_naive(setting, label):
    m, z, cond = setting
    x0 = invlab.sample(m, z, 10, "ddim", 2.0, cond).final
    inv = invlab.invert(m, x0, 10, "ddim", "naive", 2.0, cond, label=label)
    states, _ = hand_inversion(m, x0, 10, 2.0, cond, "none" if label == "target" else "current-label")
    assert (states[-1] - inv.final).abs().max().item() < 1e-12


def test_unguarded_index_wraps_to_the_noisiest_level(setting):
    m, z, cond = setting
    ac = m.schedule.scheduler("ddim").alphas_cumprod.double()
    x0 = invlab.sample(m, z, 10, "ddim", 1.0, cond).final
    states, step = hand_inversion(m, x0, 10, 1.0, cond, "unguarded-index")
    # the rule written out: the first step's "current" alpha is alphas_cumprod[1 - 100] = alphas_cumprod[901]
    lv = list(m.schedule.grid(10).levels)[::-1]
    a = float(ac[901])
    c = m.check_cond(cond, 2, x0)
    eps = m.eps(x0, lv[1].label, c, 1.0).eps
    x0_hat = (x0 - (1 - a) ** 0.5 * eps) / a ** 0.5
    expected = lv[1].alpha * x0_hat + lv[1].sigma * eps
    assert (states[1] - expected).abs().max().item() < 1e-12


def test_skips_keep_level_alignment(setting):
    m, z, cond = setting
    x0 = invlab.sample(m, z, 10, "ddim", 1.0, cond).final
    first, _ = hand_inversion(m, x0, 10, 1.0, cond, "skip-first")
    last, _ = hand_inversion(m, x0, 10, 1.0, cond, "skip-last")
    assert len(first) == len(last) == 11
    assert torch.equal(first[1], x0) and torch.equal(last[-1], last[-2])


def test_v_wrong_level_rule(setting):
    """The v-prediction bug written out: v at the target level, converted with the current level's (alpha, sigma)."""
    m, z, cond = setting
    x0 = invlab.sample(m, z, 10, "ddim", 1.0, cond).final
    states, _ = hand_inversion(m, x0, 10, 1.0, cond, "v-wrong-level")
    lv = list(m.schedule.grid(10).levels)[::-1]
    cur, nxt = lv[0], lv[1]
    c = m.check_cond(cond, 2, x0)
    e = m.eps(x0, nxt.label, c, 1.0).eps
    v = nxt.alpha * e - nxt.sigma * (x0 - nxt.sigma * e) / nxt.alpha
    e_bad = cur.alpha * v + cur.sigma * x0
    expected = nxt.alpha * (x0 - cur.sigma * e_bad) / cur.alpha + nxt.sigma * e_bad
    assert (states[1] - expected).abs().max().item() < 1e-12


def test_run_bug_measures_and_refuses(setting):
    m, z, cond = setting
    ok = run_bug(m, z, 10, 1.0, cond, "none")
    assert ok.start_nmse == 0.0 and len(ok.accumulated) == len(ok.local) == len(ok.residual) == 10
    assert float(ok.local[0]) == pytest.approx(float(ok.accumulated[0]))     # the first step starts from the truth
    bad = run_bug(m, z, 10, 1.0, cond, "prompt-mismatch")
    assert bad.noise_nmse > ok.noise_nmse
    with pytest.raises(ValueError, match="unknown bug"):
        run_bug(m, z, 10, 1.0, cond, "no-such-bug")
    with pytest.raises(ValueError, match="latent model"):
        run_bug(m, z, 10, 1.0, cond, "vae-scale")
    assert all(b.code and b.fix and b.fingerprint and b.spot for b in BUGS.values())


def test_plots_refuse_empty(setting):
    from invlab import plots

    m, z, cond = setting
    runs = {"none": run_bug(m, z, 10, 1.0, cond, "none")}
    with pytest.raises(ValueError, match="no bug runs"):
        plots.plot_bug_gallery(runs)
    with pytest.raises(ValueError, match="forward residual"):
        plots.plot_bug_residuals(runs)
