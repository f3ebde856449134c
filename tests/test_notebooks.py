"""Execute every notebook headless in QUICK mode (papermill) and check the numbers it publishes."""

import json
from pathlib import Path

import nbformat
import pytest

from nbchecks import check_01, check_03, check_04, check_08, check_09

NB_DIR = Path(__file__).resolve().parent.parent / "notebooks"
NOTEBOOKS = sorted(NB_DIR.glob("[0-9][0-9]_*.ipynb"))


def test_there_are_notebooks():
    assert NOTEBOOKS, "no notebooks found"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_hygiene(path):
    """Committed notebooks are stripped of outputs and metadata and have one parameters cell."""
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    assert set(nb.metadata) <= {"kernelspec", "language_info"}
    for cell in nb.cells:
        assert set(cell.metadata) <= {"tags"}, f"scrub cell metadata in {path.name}"
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, f"strip outputs of {path.name}"
    params = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(params) == 1
    src = params[0].source
    for name in ("QUICK", "SEED", "MODEL", "STEPS", "FIGURES"):
        assert f"\n{name} = " in "\n" + src, f"{name} missing from the parameters cell of {path.name}"
    assert "colab-badge" in nb.cells[0].source and "questions to try" in nb.cells[-1].source.lower()


def _run(path, tmp_path, **extra):
    from invlab.notebooks import execute

    return execute(path, tmp_path / "out", quick=True, figures=tmp_path / "figures", extra=extra)


@pytest.mark.slow
def test_01_sampling_and_inversion(quick_notebook):
    res, figures = quick_notebook("01_sampling_and_inversion")
    check_01(res)
    assert {p.name for p in figures.iterdir()} >= {"01_step_errors.png", "01_latents.png"}


@pytest.mark.slow
def test_bad_parameter_stops_in_the_config_cell(tmp_path):
    import papermill as pm

    with pytest.raises(pm.PapermillExecutionError) as exc:
        _run(NB_DIR / "01_sampling_and_inversion.ipynb", tmp_path, MODEL="no-such-model")
    assert "unknown MODEL" in str(exc.value)
    out = json.loads((tmp_path / "out" / "01_sampling_and_inversion.ipynb").read_text())
    failed = [c for c in out["cells"] if c["cell_type"] == "code" and any(o.get("output_type") == "error" for o in c["outputs"])]
    assert len(failed) == 1 and "setup(" in "".join(failed[0]["source"])


@pytest.mark.slow
def test_03_error_accumulation(quick_notebook):
    res, figures = quick_notebook("03_error_accumulation")
    check_03(res)
    assert {"03_step_errors.png", "03_latent_grid.png", "03_restart_from_truth.png"} <= {p.name for p in figures.iterdir()}


@pytest.mark.slow
def test_04_guidance_sensitivity(quick_notebook):
    res, figures = quick_notebook("04_guidance_sensitivity")
    check_04(res)
    assert {"04_guidance_analytic.png", "04_guidance_trained.png", "04_convergence_map.png"} <= {p.name for p in figures.iterdir()}


@pytest.mark.slow
def test_08_your_model_default(quick_notebook):
    res, figures = quick_notebook("08_your_model")
    check_08(res)
    assert {"08_samples.png", "08_step_errors.png", "08_guidance.png"} <= {p.name for p in figures.iterdir()}


@pytest.mark.slow
def test_08_your_model_on_an_offline_stable_diffusion_pipeline(tmp_path, monkeypatch):
    """MODEL = a local Stable Diffusion folder (a tiny random pipeline): the text-conditional,
    latent path of the notebook runs end to end with no network."""
    pytest.importorskip("transformers")
    from invlab.models.sd import save_tiny_pipeline

    folder = save_tiny_pipeline(tmp_path / "tiny-sd")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    res = _run(NB_DIR / "08_your_model.ipynb", tmp_path, MODEL=str(folder), DTYPE="float32")
    assert res["exact_noise_nmse"] < 1e-6 and res["exact_noise_nmse"] < res["naive_noise_nmse"]
    assert res["true_exact_diffusion"] < 1e-8                          # from the true latent: only the diffusion part
    assert res["encoder_exact_vae"] == pytest.approx(res["encoder_mse"])
    assert "08_error_split.png" in {p.name for p in (tmp_path / "figures").iterdir()}


@pytest.mark.slow
def test_09_method_zoo(quick_notebook):
    res, folder = quick_notebook("09_method_zoo")
    check_09(res)
    figures = {p.name for p in folder.iterdir()}
    assert {"09_noise_family_steps.png", "09_condition_family.png", "09_null_text_trace.png", "09_direct_offsets.png",
            "09_reconstructions.png", "09_pareto.png"} <= figures
