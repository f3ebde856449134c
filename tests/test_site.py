"""The static site (invlab.site): index, pages with every image embedded, a PNG where each widget was."""

import html
import re
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from invlab import site

NB_DIR = Path(__file__).resolve().parent.parent / "notebooks"
# Notebooks executed for the per-page checks: both have an Explorer, 05 also tqdm progress bars. Executing all of them takes
# minutes; `python -m invlab.site --execute quick` builds the whole course the same way.
SAMPLE = ("02_", "05_")

WIDGET = "application/vnd.jupyter.widget-view+json"
# A 1x1 PNG, enough for the exporter to embed.
PNG = ("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==")


def _embedded_images(page: str, folder: Path) -> int:
    """``<img>`` tags whose picture is in the page (data URI) or in a file beside it."""
    count = 0
    for src in re.findall(r'<img[^>]*\ssrc="([^"]*)"', page):
        count += src.startswith("data:image/") or (not re.match(r"\w+:", src) and (folder / src).is_file())
    return count


def _image_outputs(nb) -> int:
    return sum(1 for c in nb.cells for o in c.get("outputs", [])
               if any(k.startswith("image/") for k in o.get("data", {})))


def _widget_cells(nb) -> list:
    """Cells showing an Explorer: a widget whose bundle also holds its picture."""
    return [c for c in nb.cells if any(WIDGET in o.get("data", {}) and "image/png" in o["data"]
                                       for o in c.get("outputs", []))]


def _progress_bars(nb) -> list[str]:
    return [o["data"]["text/plain"] for c in nb.cells for o in c.get("outputs", [])
            if WIDGET in o.get("data", {}) and "image/png" not in o["data"]]


def _cell_html(page: str, cell) -> str:
    """The page's HTML for one cell (from its id to the next cell)."""
    start = page.index(f'id="cell-id={cell.id}"')
    end = page.find('class="jp-Cell ', start)
    return page[start:end if end > 0 else len(page)]


def _external_scripts_and_styles(page: str) -> list[str]:
    tags = re.findall(r"<(?:script|link)\b[^>]*>", page)
    return [u for t in tags for u in re.findall(r'(?:src|href)="(https?:[^"]*)"', t)]


def _tiny(title: str, learn: str, widget: bool):
    nb = new_notebook()
    nb.cells = [
        new_markdown_cell("[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]"
                          "(https://colab.research.google.com/x.ipynb)\n\n"
                          f"# {title}\n\n**What you will learn**\n\n- {learn};\n- something else.\n\n"
                          "See [the next one](02_b.ipynb) and the [guide](README.md#1-set-up)."),
        new_code_cell("plot()", execution_count=1, outputs=[
            new_output("display_data", data={"image/png": PNG, "text/plain": "<Figure>"})]),
    ]
    if widget:
        bundle = {WIDGET: {"version_major": 2, "version_minor": 0, "model_id": "abc"},
                  "image/png": PNG, "text/plain": "VBox(children=(HBox(...),))"}
        nb.cells.append(new_code_cell("Explorer(...)", execution_count=2,
                                      outputs=[new_output("execute_result", data=bundle, execution_count=2)]))
        # Saved widget state, as papermill keeps it: with it nbconvert would pick the live view.
        bar = {WIDGET: {"version_major": 2, "version_minor": 0, "model_id": "bar"},
               "text/plain": "methods:   0%|          | 0/3 [00:00<?, ?it/s]"}
        nb.cells[-1].outputs.insert(0, new_output("display_data", data=bar))  # a tqdm bar
        nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {
            "version_major": 2, "version_minor": 0, "state": {"abc": {"model_name": "VBoxModel",
                                                                       "model_module": "@jupyter-widgets/controls",
                                                                       "model_module_version": "2.0.0",
                                                                       "state": {}}}}}
    nb.metadata["papermill"] = {"parameters": {"QUICK": True}}
    return nb


def test_index_and_pages_from_tiny_notebooks(tmp_path):
    nbs = tmp_path / "executed"
    nbs.mkdir()
    nbformat.write(_tiny("First steps", "how `x_t` is *made*", widget=False), nbs / "01_a.ipynb")
    nbformat.write(_tiny("Second steps", "what a slider shows", widget=True), nbs / "02_b.ipynb")
    (nbs / "notes.ipynb").write_text("not a course notebook")
    readme = tmp_path / "README.md"
    readme.write_text("# Guide\n\n## 1. Set-up\n\nSee [below](#1-set-up). Open [01](01_a.ipynb).\n")
    out = tmp_path / "site"

    entries = site.build_site(nbs, out, readme=readme)

    assert [e["file"] for e in entries] == ["01_a.html", "02_b.html"]
    assert sorted(p.name for p in out.iterdir()) == ["01_a.html", "02_b.html", "index.html", "readme.html"]
    index = (out / "index.html").read_text()
    assert '<a href="01_a.html">First steps</a>' in index and '<a href="02_b.html">Second steps</a>' in index
    assert "<br>You will learn how <code>x_t</code> is <em>made</em>.</li>" in index and "something else" not in index
    assert '<a href="readme.html">' in index and "QUICK mode" in index and "MathJax" in index
    assert "Open [01](01_a.html)" not in (out / "readme.html").read_text()
    guide = (out / "readme.html").read_text()
    assert 'href="01_a.html"' in guide and 'id="1-set-up"' in guide and 'href="#1-set-up"' in guide
    for name in ("01_a", "02_b"):
        page = (out / f"{name}.html").read_text()
        nb = nbformat.read(nbs / f"{name}.ipynb", as_version=4)
        assert _embedded_images(page, out) == _image_outputs(nb) > 0
        assert 'href="02_b.html"' in page and 'href="readme.html#1-set-up"' in page and 'href="index.html"' in page
        assert "colab-badge.svg" not in page and "Open In Colab" in page  # web image -> text link
        assert _external_scripts_and_styles(page) == [site._exporter().mathjax_url]
    page = (out / "02_b.html").read_text()
    cell = _cell_html(page, _widget_cells(nbformat.read(nbs / "02_b.ipynb", as_version=4))[0])
    assert "data:image/png;base64," in cell and "VBox(" not in page and "unpkg" not in page
    assert "0%|" not in page and "0/3" not in page
    assert _external_scripts_and_styles(index) == [site._exporter().mathjax_url]


def test_summary_falls_back_to_first_paragraph():
    nb = new_notebook(cells=[new_markdown_cell("# Title here\n\nA plain opening; more.\n\nSecond.")])
    assert site.title_and_summary(nb) == ("Title here", "A plain opening")
    assert site.title_and_summary(new_notebook()) == ("", "")


def test_refuses_to_use_the_source_folder(tmp_path, capsys):
    assert site.main(["--notebooks", str(NB_DIR), "--dir", str(NB_DIR), "--out", str(tmp_path)]) == 2
    assert "never go there" in capsys.readouterr().err
    assert site.main(["--notebooks", str(tmp_path / "none"), "--out", str(tmp_path / "s")]) == 2


def _stripped(path: Path) -> bool:
    nb = nbformat.read(path, as_version=4)
    return all(not c.get("outputs") for c in nb.cells) and "papermill" not in nb.metadata


@pytest.mark.slow
def test_site_from_quick_executions(tmp_path, quick_notebook):
    """Execute a few notebooks in QUICK mode, build the site, and check every page has its images and
    that a widget shows as its PNG (no "VBox(" text); the sources stay as they were."""
    import shutil

    sources = [p for p in site.notebooks_in(NB_DIR) if p.name.startswith(SAMPLE)]
    assert len(sources) == len(SAMPLE)
    executed = tmp_path / "executed"
    executed.mkdir()
    for nb in sources:                  # the session's QUICK executions (seed 0, 1 thread), copied
        res, _ = quick_notebook(nb.stem)
        shutil.copy(res["_output"], executed / nb.name)
    out = tmp_path / "site"
    entries = site.build_site(executed, out, readme=NB_DIR / "README.md")

    assert all(_stripped(nb) for nb in sources)  # executed copies went to tmp_path only
    assert [e["notebook"] for e in entries] == [p.name for p in sources]
    index = (out / "index.html").read_text()
    widget_pages = 0
    for e in entries:
        assert not e["failed"] and "QUICK" in e["mode"]
        assert f'<a href="{e["file"]}">{site._inline_markdown(e["title"])}</a>' in index and e["summary"]
        page = (out / e["file"]).read_text()
        nb = nbformat.read(executed / e["notebook"], as_version=4)
        assert _embedded_images(page, out) >= _image_outputs(nb) > 0, e["file"]
        assert "VBox(" not in page, e["file"]
        assert not any(html.escape(bar.split("[")[0]) in page for bar in _progress_bars(nb)), e["file"]
        for cell in _widget_cells(nb):
            widget_pages += 1
            assert re.search(r'<img[^>]*src="data:image/png;base64,', _cell_html(page, cell)), e["file"]
        assert _external_scripts_and_styles(page) == [site._exporter().mathjax_url], e["file"]
    assert widget_pages >= 1
    assert (out / "readme.html").is_file()


def test_explorer_bundle_carries_its_current_figure():
    """JupyterLab renders the widget view; a static page falls back to the PNG of the last render."""
    import matplotlib.pyplot as plt

    from invlab.widgets.core import Explorer, int_slider

    def draw(n):
        fig, ax = plt.subplots(figsize=(2, 2))
        ax.plot(range(n + 2))
        return fig, [n]

    ex = Explorer({"n": int_slider("n", 1, 0, 5)}, draw)
    first = ex._repr_mimebundle_()
    assert WIDGET in first and first["image/png"] == ex.out.outputs[0]["data"]["image/png"]
    ex.controls["n"].value = 4
    assert ex._repr_mimebundle_()["image/png"] == ex.out.outputs[0]["data"]["image/png"] != first["image/png"]


def test_expect_mode_flags_pages_of_the_other_mode(tmp_path, capsys):
    nbs = tmp_path / "executed"
    nbs.mkdir()
    nbformat.write(_tiny("First steps", "one thing", widget=False), nbs / "01_a.ipynb")  # QUICK
    args = ["--notebooks", str(nbs), "--out", str(tmp_path / "site"), "--dir", str(tmp_path)]
    assert site.main([*args, "--expect", "quick"]) == 0
    assert site.main([*args, "--expect", "full"]) == 1
    assert "not executed in full mode: ['01_a.ipynb']" in capsys.readouterr().err
