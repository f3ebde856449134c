import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

COLAB = "https://colab.research.google.com/github/invlab/invlab/blob/main/notebooks/{name}.ipynb"


def md(s):
    return new_markdown_cell(s.strip("\n"))


def code(s, tags=None):
    c = new_code_cell(s.strip("\n"))
    if tags:
        c.metadata["tags"] = tags
    return c


def colab_cells(name, title, learn):
    return [
        md(f"[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]({COLAB.format(name=name)})\n\n# {title}\n\n**What you will learn**\n\n{learn}"),
        code('''# On Colab only: install invlab (everywhere else it is already installed by `make`).
import sys
if "google.colab" in sys.modules:
    import subprocess
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "git+https://github.com/invlab/invlab"], check=True)'''),
    ]


def params(body):
    return code(body, tags=["parameters"])


def write(path, cells):
    for i, c in enumerate(cells):  # stable ids keep diffs small
        c.id = f"cell-{i:02d}"
    nb = new_notebook(cells=cells)
    nb.metadata = {"kernelspec": {"display_name": "Python 3", "language": "python", "name": "python3"},
                   "language_info": {"name": "python"}}
    nbformat.validate(nb)
    nbformat.write(nb, path)
