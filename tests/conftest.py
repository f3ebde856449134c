import os

import pytest

pytest.register_assert_rewrite("nbchecks")  # the notebooks' shared checks report like test asserts
import torch

os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="session")
def digits():
    import invlab

    return invlab.load_model("gmm-digits")


@pytest.fixture(scope="session")
def gmm2d():
    import invlab

    return invlab.load_model("gmm-2d")


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def quick_notebook(tmp_path_factory):
    """Execute a course notebook in QUICK mode once per (notebook, seed, threads) for the whole session.

    The notebook tests, the seed/thread robustness test and the site test ask for the same executions;
    each runs once. Returns ``(numbers, figures_dir)``: the published numbers (with ``_output``, the
    executed copy) and the folder its figures went to. The executed copy must not be modified.
    """
    from pathlib import Path

    from invlab.notebooks import execute

    nb_dir = Path(__file__).resolve().parent.parent / "notebooks"
    cache = {}

    def run(stem: str, seed: int = 0, threads: int = 1):
        key = (stem, seed, threads)
        if key not in cache:
            base = tmp_path_factory.mktemp(f"{stem[:2]}-seed{seed}-threads{threads}")
            res = execute(nb_dir / f"{stem}.ipynb", base / "out", quick=True, figures=base / "figures",
                          extra={"SEED": seed}, threads=threads)
            cache[key] = (res, base / "figures")
        res, figures = cache[key]
        return dict(res), figures

    return run
