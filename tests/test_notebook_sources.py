"""The notebooks' percent-format sources (notebooks/NN_*.py) and their .ipynb agree (jupytext pairs)."""

import ast
from pathlib import Path

import nbformat
import pytest

from invlab.nbsync import normalised, sources, sync

NB_DIR = Path(__file__).resolve().parent.parent / "notebooks"


def test_every_notebook_has_its_source():
    ipynb = {p.stem for p in NB_DIR.glob("[0-9][0-9]_*.ipynb")}
    py = {p.stem for p in sources(NB_DIR)}
    assert ipynb and ipynb == py, f"unpaired: {sorted(ipynb ^ py)}"


def test_pairs_agree():
    """Each .ipynb is byte for byte what `make notebooks` writes from its .py."""
    assert sync(NB_DIR, check=True) == [], "a notebook differs from its .py: run `make notebooks`"


@pytest.mark.parametrize("py", sources(NB_DIR), ids=lambda p: p.stem)
def test_source_is_canonical_and_python(py):
    """Saving the .ipynb through jupytext (as JupyterLab does, with notebooks/jupytext.toml's filters)
    gives back the .py unchanged, and every code cell parses as Python."""
    import jupytext

    nb = nbformat.read(py.with_suffix(".ipynb"), as_version=4)
    nb.metadata["jupytext"] = {"notebook_metadata_filter": "kernelspec,-all", "cell_metadata_filter": "tags,-all"}
    assert jupytext.writes(nb, fmt="py:percent") == py.read_text()
    for i, cell in enumerate(normalised(py).cells):
        if cell.cell_type == "code":
            ast.parse(cell.source, filename=f"{py.name} cell {i}")


def test_sync_rewrites_and_refuses(tmp_path):
    src = sources(NB_DIR)[0]
    (tmp_path / src.name).write_text(src.read_text().replace("# %% [markdown]", "# %% [markdown]\n# An added line.\n#", 1))
    (tmp_path / src.with_suffix(".ipynb").name).write_text(src.with_suffix(".ipynb").read_text())
    assert sync(tmp_path, check=True) == [tmp_path / src.with_suffix(".ipynb").name]
    sync(tmp_path)
    assert "An added line." in nbformat.read(tmp_path / src.with_suffix(".ipynb").name, as_version=4).cells[0].source
    assert sync(tmp_path, check=True) == []
    (tmp_path / "99_orphan.ipynb").write_text(src.with_suffix(".ipynb").read_text())
    with pytest.raises(ValueError, match="no percent-format .py source"):
        sync(tmp_path)
    with pytest.raises(FileNotFoundError, match="no notebook sources"):
        sync(tmp_path / "empty")
