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
