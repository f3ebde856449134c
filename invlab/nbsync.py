"""Keep each course notebook's two files in step: ``python -m invlab.nbsync [--check]``.

Every notebook in ``notebooks/`` is a jupytext pair (``notebooks/jupytext.toml``):

* ``NN_name.py``, percent format: **the reviewed source** (cells start with ``# %%``; markdown
  cells with ``# %% [markdown]``; the papermill parameters cell is ``# %% tags=["parameters"]``).
  Edit it in any editor, lint it, diff it.
* ``NN_name.ipynb``: what JupyterLab, papermill and Colab open, written from the ``.py`` with
  outputs stripped, metadata scrubbed and stable cell ids (``cell-00``, ``cell-01``, ...).

Editing either side in JupyterLab with the jupytext extension updates both. After editing the
``.py`` elsewhere, run ``make notebooks`` (this module) to rewrite the ``.ipynb``; ``--check``
rewrites nothing and exits 1 when a pair disagrees (the tests run it).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

__all__ = ["normalised", "sources", "sync"]

KERNELSPEC = {"display_name": "Python 3", "language": "python", "name": "python3"}


def sources(folder: str | Path = "notebooks") -> list[Path]:
    """The percent-format sources ``NN_*.py`` of ``folder`` (sorted)."""
    return sorted(Path(folder).glob("[0-9][0-9]_*.py"))


def normalised(py: str | Path):
    """The notebook a source ``.py`` stands for: outputs stripped, only ``tags`` kept in cell
    metadata, ``kernelspec`` and ``language_info`` in the notebook's, cell ids ``cell-NN``."""
    try:
        import jupytext
    except ImportError as exc:  # pragma: no cover - the notebooks extra installs it
        raise ImportError("syncing notebooks needs jupytext: pip install 'invlab[notebooks]'") from exc
    import nbformat

    nb = jupytext.read(py, fmt="py:percent")
    cells = []
    for i, cell in enumerate(nb.cells):
        tags = cell.metadata.get("tags")
        if cell.cell_type == "code":
            new = nbformat.v4.new_code_cell(cell.source)
        elif cell.cell_type == "markdown":
            new = nbformat.v4.new_markdown_cell(cell.source)
        else:
            raise ValueError(f"{py}: cell {i} is a {cell.cell_type!r} cell; the course uses code and markdown only")
        if tags:
            new.metadata["tags"] = list(tags)
        new.id = f"cell-{i:02d}"
        cells.append(new)
    out = nbformat.v4.new_notebook(cells=cells)
    out.metadata = {"kernelspec": dict(KERNELSPEC), "language_info": {"name": "python"}}
    nbformat.validate(out)
    return out


def sync(folder: str | Path = "notebooks", check: bool = False) -> list[Path]:
    """Write every ``NN_*.ipynb`` from its ``.py`` (or, with ``check``, only compare).

    Returns the notebooks that differ (were rewritten, or would be); raises ``FileNotFoundError``
    for a folder without sources and ``ValueError`` for an ``.ipynb`` without its ``.py``.
    """
    import nbformat

    folder = Path(folder)
    srcs = sources(folder)
    if not srcs:
        raise FileNotFoundError(f"no notebook sources NN_*.py in {folder}")
    orphans = sorted({p.stem for p in folder.glob("[0-9][0-9]_*.ipynb")} - {p.stem for p in srcs})
    if orphans:
        raise ValueError(f"{orphans} in {folder} have no percent-format .py source; create one with "
                         f"`jupytext --to py:percent {folder}/{orphans[0]}.ipynb` and edit that")
    changed = []
    for py in srcs:
        target = py.with_suffix(".ipynb")
        text = nbformat.writes(normalised(py)) + "\n"
        if not target.exists() or target.read_text() != text:
            changed.append(target)
            if not check:
                target.write_text(text)
    return changed


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", default="notebooks", help="folder of the notebook pairs")
    ap.add_argument("--check", action="store_true", help="compare only; exit 1 when a pair disagrees")
    args = ap.parse_args(argv)
    changed = sync(args.dir, check=args.check)
    for p in changed:
        print(("differs from its .py: " if args.check else "wrote ") + str(p))
    if args.check and changed:
        print("run `make notebooks` (python -m invlab.nbsync) to rewrite them from the .py sources", file=sys.stderr)
        return 1
    if not changed:
        print(f"{len(sources(args.dir))} notebook pairs agree")
    return 0


if __name__ == "__main__":
    sys.exit(main())
