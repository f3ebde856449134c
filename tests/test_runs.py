"""A run's life: interrupted runs keep their finished steps, recording options, short reprs,
warnings for unconverged solves, and QUICK runs that never write into figures/."""

import shutil
import warnings
from pathlib import Path

import pytest
import torch

import invlab
from invlab.metrics import nmse

REPO = Path(__file__).resolve().parent.parent
COND = [1, 7]


class StopAt(invlab.Observer):
    """Raises ``exc`` when step ``index`` finishes (before its record is kept)."""

    def __init__(self, index, exc=KeyboardInterrupt):
        self.index, self.exc = index, exc

    def on_step(self, record, tensors):
        if record.index == self.index:
            raise self.exc("stopped by a test")


def _run(model, x, method, hooks, steps=8):
    if method == "sample":
        return invlab.sample(model, x, steps, guidance=3.0, cond=COND, hooks=hooks)
    return invlab.invert(model, x, steps, method=method, guidance=3.0, cond=COND, hooks=hooks)


@pytest.mark.parametrize("method", ["sample", "naive", "easyinv", "exact"])
def test_interrupt_keeps_the_finished_steps_and_consistent_counters(digits, method):
    x = invlab.noise(digits, 2, seed=3)
    if method != "sample":  # invert a sampled image (a state the exact solver can converge on)
        x = invlab.sample(digits, x, 8, guidance=3.0, cond=COND, hooks=[invlab.Recorder(keys=())]).final
    full = _run(digits, x, method, None)
    rec = invlab.Recorder()
    nfe0 = digits.nfe
    with pytest.raises(KeyboardInterrupt) as info:
        _run(digits, x, method, [rec, StopAt(3)])
    partial = info.value.partial_trajectory
    assert rec.partial is partial and partial.config["interrupted"] is True
    assert len(partial) == 3 and len(partial.levels) == 4 and "3 of 8 steps" in repr(partial)
    # the finished steps are exactly those of the uninterrupted run
    assert torch.equal(partial.latents(), full.latents()[:4]) and torch.equal(partial.final, full.latents()[3])
    # counters: every evaluation is counted once, either in a finished step or as unfinished work
    assert digits.nfe - nfe0 == partial.nfe + partial.config["nfe_unfinished"]
    assert partial.config["nfe_unfinished"] == full.records[3].nfe
    assert any("exc.partial_trajectory" in n for n in getattr(info.value, "__notes__", ["exc.partial_trajectory"]))
    # no global state left behind: grad mode is back, and the next run is bit-identical to the first
    assert torch.is_grad_enabled()
    again = _run(digits, x, method, None)
    assert torch.equal(again.final, full.final)


def test_interrupt_inside_the_network_call(digits, monkeypatch):
    """Ctrl-C while the network runs (mid-step): the steps before it survive, NFE stays consistent."""
    x = invlab.noise(digits, 2, seed=1)
    original = type(digits).forward_raw
    calls = {"n": 0}

    def flaky(self, *args):
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt
        return original(self, *args)

    monkeypatch.setattr(type(digits), "forward_raw", flaky)
    nfe0, net0 = digits.nfe, digits.net_calls
    with pytest.raises(KeyboardInterrupt) as info:
        invlab.sample(digits, x, 10, guidance=3.0, cond=COND)
    partial = info.value.partial_trajectory
    assert len(partial) == 4 and partial.nfe == 4 and partial.config["nfe_unfinished"] == 1
    assert digits.nfe - nfe0 == 5 and digits.net_calls - net0 == 5


def test_non_finite_values_stop_the_run_at_their_step_and_keep_the_rest(digits):
    def poison(index, t):
        return {"eps": t["eps"] * float("nan")} if index == 2 else None

    hook = invlab.FunctionIntervention(poison, keys={"eps"}, stage="eps")
    with pytest.raises(invlab.NonFiniteError, match="at step 2") as info:
        invlab.invert(digits, invlab.noise(digits, 2), 6, guidance=3.0, cond=COND, hooks=[hook])
    assert len(info.value.partial_trajectory) == 2


# ------------------------------------------------------------------ recording options
def test_recorder_storage_options(digits):
    x = invlab.noise(digits, 2)
    full = invlab.sample(digits, x, 6, cond=COND)
    half = invlab.Recorder(keys="x_next", dtype=torch.float16)   # a single name is one key
    traj = invlab.sample(digits, x, 6, cond=COND, hooks=[half])
    assert torch.equal(traj.final, full.final)                  # storage never changes the run
    assert traj.records[0].x_next.dtype == torch.float16 and traj.records[0].eps is None
    assert torch.allclose(traj.latents()[1:].double(), full.latents()[1:], atol=2e-3 * full.latents().abs().max())
    assert half.nbytes == 6 * x.numel() * 2
    with pytest.raises(TypeError, match="floating torch.dtype"):
        invlab.Recorder(dtype="float16")
    with pytest.raises(ValueError, match="max_bytes"):
        invlab.Recorder(max_bytes=-1)


def test_recorder_cap_warns_once_and_keeps_scalars(digits):
    x = invlab.noise(digits, 2)
    per_step = 4 * x.numel() * x.element_size()                  # 4 tensors per step
    rec = invlab.Recorder(max_bytes=3 * per_step)
    with pytest.warns(invlab.RecordingCapWarning, match=r"step 3 would pass max_bytes") as caught:
        traj = invlab.sample(digits, x, 6, cond=COND, hooks=[rec])
    assert len([w for w in caught if issubclass(w.category, invlab.RecordingCapWarning)]) == 1
    assert rec.capped_at == 3 and rec.nbytes == 3 * per_step
    assert [r.x_next is not None for r in traj.records] == [True] * 3 + [False] * 3
    assert all(r.nfe == 1 for r in traj.records)                 # scalars still recorded
    with pytest.raises(ValueError, match="x_next was not recorded"):
        traj.latents()


# ------------------------------------------------------------------ reprs and warnings
def test_reprs_are_short_summaries(digits):
    fwd = invlab.sample(digits, invlab.noise(digits, 2), 10, guidance=3.0, cond=COND)
    inv = invlab.invert(digits, fwd.final, 10, method="exact", guidance=3.0, cond=COND)
    text = repr(inv)
    assert len(text) < 300 and "converged 10/10" in text and "NFE" in text and "10 steps" in text
    assert len(repr(inv.records[0])) < 600 and "float64 (2, 1, 16, 16)" in repr(inv.records[0])
    s = inv.summary()
    assert s["converged_steps"] == 10 and s["failed_steps"] == [] and s["nfe"] == inv.nfe
    assert inv.convergence()["solved"] == 10 and fwd.convergence() is None


def test_unconverged_exact_inversion_warns_once_naming_the_steps(digits):
    fwd = invlab.sample(digits, invlab.noise(digits, 2), 6, guidance=3.0, cond=COND)
    with pytest.warns(invlab.ConvergenceWarning, match=r"did not converge at 6 of 6 steps \(steps 0, 1, 2, 3, 4, 5") as rec:
        inv = invlab.invert(digits, fwd.final, 6, method="exact", guidance=3.0, cond=COND, max_iter=1)
    assert len([w for w in rec if issubclass(w.category, invlab.ConvergenceWarning)]) == 1
    assert "converged 0/6 (not at steps 0, 1, 2, 3, 4, 5" in repr(inv)
    with warnings.catch_warnings():
        warnings.simplefilter("error", invlab.ConvergenceWarning)   # a converged run is silent
        invlab.invert(digits, fwd.final, 6, method="exact", guidance=3.0, cond=COND)


# ------------------------------------------------------------------ determinism
def test_same_inputs_same_process_bit_identical(digits):
    x = invlab.sample(digits, invlab.noise(digits, 2, seed=4), 8, guidance=3.0, cond=COND).final
    for method in ("naive", "exact"):
        a = invlab.invert(digits, x, 8, method=method, guidance=3.0, cond=COND)
        b = invlab.invert(digits, x, 8, method=method, guidance=3.0, cond=COND)
        assert torch.equal(a.final, b.final) and torch.equal(a.latents(), b.latents())
        assert float(nmse(a.final, b.final)) == 0.0


# ------------------------------------------------------------------ QUICK runs and figures/
def _course_copy(tmp_path):
    """A repo-like folder: notebooks/ with notebook 01, and a committed figures/ with one picture."""
    (tmp_path / "notebooks").mkdir()
    shutil.copy(REPO / "notebooks" / "01_sampling_and_inversion.ipynb", tmp_path / "notebooks")
    (tmp_path / "figures").mkdir()
    (tmp_path / "figures" / "01_samples.png").write_bytes(b"full-mode picture")
    return tmp_path


@pytest.mark.slow
def test_quick_papermill_run_with_default_figures_never_writes_figures(tmp_path):
    import papermill as pm

    root = _course_copy(tmp_path)
    nb = root / "notebooks" / "01_sampling_and_inversion.ipynb"
    pm.execute_notebook(str(nb), str(root / "out.ipynb"), parameters={"QUICK": True}, cwd=str(nb.parent),
                        kernel_name="python3", progress_bar=False)
    assert [p.name for p in (root / "figures").iterdir()] == ["01_samples.png"]
    assert (root / "figures" / "01_samples.png").read_bytes() == b"full-mode picture"
    assert "01_samples.png" in {p.name for p in (root / "build" / "figures-quick").iterdir()}


@pytest.mark.slow
def test_notebook_runner_quick_mode_defaults_to_build(tmp_path, monkeypatch):
    from invlab.notebooks import main

    root = _course_copy(tmp_path)
    monkeypatch.chdir(root)
    assert main(["--mode", "quick", "--only", "01", "--out", "build/nb"]) == 0
    assert (root / "figures" / "01_samples.png").read_bytes() == b"full-mode picture"
    assert "01_step_errors.png" in {p.name for p in (root / "build" / "figures-quick").iterdir()}
