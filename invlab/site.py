"""A static HTML site of the executed course: ``python -m invlab.site --notebooks build/notebooks --out build/site``.

Each executed notebook ``NN_name.ipynb`` becomes ``NN_name.html`` through nbconvert's HTML exporter
(its ``lab`` template ships inside the package, so building needs no network). Figures are
embedded as data URIs, so a page is one self-contained file. Widgets have no live kernel on a
static page: :class:`invlab.widgets.core.Explorer` puts its current figure in its display bundle
as ``image/png``, and the page drops the notebook's saved widget state, so nbconvert shows that
PNG where the widget was (its HTML priority ranks ``image/png`` above the ``VBox(...)`` text).
``index.html`` lists the notebooks with their titles and what each one teaches, and links the
instructor's guide ``notebooks/README.md`` rendered as ``readme.html``.

``--execute quick|full`` first runs the sources with papermill (see :mod:`invlab.notebooks`) into
``--notebooks``, a build folder: never over ``notebooks/``. ``make site`` is the full-mode build
(``--expect full`` fails it when an executed copy there came from a QUICK run).

Offline: the pages load no stylesheet or script from the network except MathJax, which typesets
the formulas; without a network a formula shows as its LaTeX source (``$\\alpha_t$``), and the
index page says so. Images in markdown that point at the web (the Colab badge) become text links.
"""

from __future__ import annotations

import argparse
import copy
import html
import re
import sys
import time
from pathlib import Path
from typing import Any

NOTEBOOK_GLOB = "[0-9][0-9]_*.ipynb"
WIDGET = "application/vnd.jupyter.widget-view+json"
README_PAGE = "readme.html"

# The lab template, less the two scripts nobody here needs (require.js serves classic widgets and
# javascript outputs; mermaid draws diagrams we do not have), plus a bar linking back to the index.
_TEMPLATE = """{%- extends 'index.html.j2' -%}
{%- block html_head_js_requirejs -%}{%- endblock html_head_js_requirejs -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
{%- block body_header -%}
{{ super() }}
<nav class="invlab-nav" style="padding: 0.5em 1em; border-bottom: 1px solid #ccc; font-family: sans-serif;">
<a href="index.html">&larr; course index</a> &middot; {{ resources.invlab_note }}
</nav>
{%- endblock body_header -%}
"""

_REMOTE_IMAGE = re.compile(r"!\[([^\]]*)\]\((https?://[^)\s]+)\)")
_HEADING = re.compile(r"^#\s+(.+?)\s*#*\s*$", re.M)
_LEARN = re.compile(r"what you will learn", re.I)


def notebooks_in(folder: Path) -> list[Path]:
    """The course notebooks ``NN_name.ipynb`` of a folder, in teaching order."""
    return sorted(Path(folder).glob(NOTEBOOK_GLOB))


def _markdown_sources(nb) -> list[str]:
    return [c.source for c in nb.cells if c.cell_type == "markdown"]


def title_and_summary(nb) -> tuple[str, str]:
    """The first level-1 markdown heading, and a one-line summary (markdown): "You will learn" and
    the first point under "What you will learn" up to its first ';', or else the first paragraph
    after the heading up to its first ';'; '' for what is missing."""
    title, summary = "", ""
    for src in _markdown_sources(nb):
        m = _HEADING.search(src)
        if m:
            title = m.group(1).strip()
            break
    for src in _markdown_sources(nb):
        m = _LEARN.search(src)
        if not m:
            continue
        bullet = re.search(r"^\s*[-*]\s+(.+?)(?=^\s*[-*]\s|^\s*$|\Z)", src[m.end():], re.M | re.S)
        if bullet:
            summary = "You will learn " + bullet.group(1)
            break
    if not summary:
        for src in _markdown_sources(nb):
            m = _HEADING.search(src)
            if m:
                paras = [p for p in re.split(r"\n\s*\n", src[m.end():]) if p.strip()]
                summary = paras[0] if paras else ""
                break
    summary = " ".join(summary.split())
    summary = summary.split(";")[0].rstrip(" .,:") if summary else ""
    return title, summary


def _inline_markdown(text: str) -> str:
    """Markdown of one line as HTML without the paragraph around it (nbconvert's own renderer)."""
    from nbconvert.filters.markdown_mistune import markdown2html_mistune

    out = markdown2html_mistune(text).strip()
    return re.sub(r"^<p>(.*)</p>$", r"\1", out, flags=re.S)


def _quick(nb) -> bool | None:
    """The QUICK value papermill passed (None: not run by papermill, or without QUICK)."""
    return nb.metadata.get("papermill", {}).get("parameters", {}).get("QUICK")


def _mode_of(nb) -> str:
    quick = _quick(nb)
    if quick is None:
        return "executed with the notebook's own parameters"
    return "executed in QUICK mode (small sizes)" if quick else "executed in full mode"


def _failed(nb) -> bool:
    return bool(nb.metadata.get("papermill", {}).get("exception"))


def _has_picture(output) -> bool:
    return any(k.startswith("image/") for k in output.get("data", {}))


def _for_page(nb):
    """A copy fit for a static page: no saved widget state (so each widget's PNG shows), no widget
    without a picture (tqdm's progress bars, which hide themselves when done, would show "0%"), no
    cell papermill injected (it names this machine's folders), web images in markdown as text links."""
    nb = copy.deepcopy(nb)
    nb.metadata.pop("widgets", None)
    nb.cells = [c for c in nb.cells if "injected-parameters" not in c.get("metadata", {}).get("tags", [])]
    for c in nb.cells:
        if c.cell_type == "markdown":
            c.source = _REMOTE_IMAGE.sub(r"\1", c.source)
        elif "outputs" in c:
            c.outputs = [o for o in c.outputs if WIDGET not in o.get("data", {}) or _has_picture(o)]
    return nb


def _relink(page: str, names: set[str]) -> str:
    """Links between notebooks (``NN_name.ipynb``) and to the guide (``README.md``) point at the pages."""
    def swap(m):
        target, anchor = m.group(2), m.group(3) or ""
        stem = Path(target).name
        if stem in names:
            return f'{m.group(1)}"{Path(stem).with_suffix(".html").name}{anchor}"'
        if stem == "README.md" and not target.startswith(".."):
            return f'{m.group(1)}"{README_PAGE}{anchor}"'
        return m.group(0)

    return re.sub(r'(href=)"([^"#:]+\.(?:ipynb|md))(#[^"]*)?"', swap, page)


def _exporter():
    from nbconvert import HTMLExporter

    exp = HTMLExporter(template_name="lab", embed_images=True)
    exp.raw_template = _TEMPLATE
    return exp


def render_notebook(path: Path, names: set[str], exporter=None) -> tuple[str, dict[str, Any]]:
    """One executed notebook as an HTML page (images embedded); returns the page and its entry
    for the index (file, notebook, title, summary, mode, quick, failed, widgets)."""
    import nbformat

    path = Path(path)
    nb = nbformat.read(path, as_version=4)
    title, summary = title_and_summary(nb)
    mode = _mode_of(nb)
    page_nb = _for_page(nb)
    exporter = exporter or _exporter()
    note = html.escape(f"{path.name}, {mode}" + (" (execution FAILED: see the error on the page)" if _failed(nb) else ""))
    resources = {"metadata": {"name": title or path.stem, "path": str(path.parent)}, "invlab_note": note}
    page, _ = exporter.from_notebook_node(page_nb, resources=resources)
    widgets = sum(1 for c in nb.cells for o in c.get("outputs", []) if WIDGET in o.get("data", {}) and _has_picture(o))
    entry = {"file": path.with_suffix(".html").name, "notebook": path.name, "title": title or path.stem,
             "summary": summary, "mode": mode, "quick": _quick(nb), "failed": _failed(nb), "widgets": widgets}
    return _relink(page, names), entry


_STYLE = """body { font-family: system-ui, sans-serif; max-width: 60em; margin: 2em auto; padding: 0 1em;
  line-height: 1.5; color: #222; }
code { background: #f3f3f3; padding: 0 0.2em; }
pre { background: #f6f6f6; padding: 0.6em; overflow-x: auto; }
table { border-collapse: collapse; } td, th { border: 1px solid #ccc; padding: 0.3em 0.5em; vertical-align: top; }
.failed { color: #b00; }"""


def _mathjax() -> str:
    """The notebook pages' MathJax loader and settings (nbconvert's own macro), for our pages."""
    exp = _exporter()
    macro = "{% from 'mathjax.html.j2' import mathjax %}{{ mathjax(url) }}"
    return exp.environment.from_string(macro).render(url=exp.mathjax_url)


def _page(title: str, body: str) -> str:
    return (f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8" />\n'
            f'<meta name="viewport" content="width=device-width, initial-scale=1.0">\n'
            f"<title>{html.escape(title)}</title>\n<style>\n{_STYLE}\n</style>\n{_mathjax()}\n</head>\n"
            f"<body>\n{body}\n</body>\n</html>\n")


def index_page(entries: list[dict[str, Any]], readme: bool) -> str:
    """The index: one item per notebook (title linked to its page, what it teaches), the guide."""
    items = []
    for e in entries:
        flag = ' <span class="failed">(execution failed)</span>' if e["failed"] else ""
        summary = f"<br>{_inline_markdown(e['summary'])}." if e["summary"] else ""
        items.append(f'<li><a href="{e["file"]}">{_inline_markdown(e["title"])}</a> '
                     f'<small>({html.escape(e["notebook"])})</small>{flag}{summary}</li>')
    modes = sorted({e["mode"] for e in entries})
    guide = (f'<p>For instructors: the <a href="{README_PAGE}">instructor\'s guide</a> '
             "(prerequisites, lab plan, expected answers, notation).</p>") if readme else ""
    body = f"""<h1>invlab: diffusion inversion you can watch</h1>
<p>The course notebooks, {html.escape(', '.join(modes) or 'not yet built')}, to read without running them.
Each figure is the one the notebook drew; where the notebook has a widget (sliders), the page shows the
picture the widget drew at its starting values. To move the sliders, open the notebook in Jupyter.</p>
{guide}
<ol>
{chr(10).join(items)}
</ol>
<p><small>These pages need no network, except to typeset formulas: MathJax is loaded from a CDN,
and offline a formula shows as its LaTeX source, e.g. <code>$\\alpha_t$</code>.
Built with nbconvert by <code>python -m invlab.site</code> (<code>make site</code>).</small></p>"""
    return _page("invlab course", body)


def _github_ids(body: str) -> str:
    """Heading ids as GitHub writes them (``## 1. Set-up`` -> ``1-set-up``), which the guide's own
    links use; nbconvert's renderer keeps case and punctuation."""
    seen: dict[str, int] = {}

    def swap(m):
        level, old, inner = m.group(1), m.group(2), m.group(3)
        text = html.unescape(re.sub(r"<[^>]+>", "", inner)).replace("\u00b6", "").strip()
        slug = re.sub(r"[^\w\- ]", "", text.lower()).replace(" ", "-")
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        slug = f"{slug}-{n}" if n else slug
        inner = inner.replace(f'href="#{old}"', f'href="#{slug}"')
        return f'<h{level} id="{slug}">{inner}</h{level}>'

    return re.sub(r'<h([1-6]) id="([^"]*)">(.*?)</h\1>', swap, body, flags=re.S)


def readme_page(readme: Path, names: set[str]) -> str:
    """The instructor's guide (markdown) as a page, with nbconvert's markdown renderer."""
    from nbconvert.filters.markdown_mistune import markdown2html_mistune

    body = _github_ids(markdown2html_mistune(Path(readme).read_text(encoding="utf-8")))
    body = '<p><a href="index.html">&larr; course index</a></p>\n' + body
    return _relink(_page("invlab: instructor's guide", body), names)


def build_site(notebooks: Path, out: Path, readme: Path | None = Path("notebooks/README.md")) -> list[dict[str, Any]]:
    """Write ``out/NN_name.html`` for every executed ``notebooks/NN_name.ipynb``, ``out/index.html``
    and (when ``readme`` exists) ``out/readme.html``. Returns the index entries."""
    notebooks, out = Path(notebooks), Path(out)
    paths = notebooks_in(notebooks)
    if not paths:
        raise FileNotFoundError(f"no executed notebooks NN_*.ipynb in {notebooks}; execute them first "
                                "(python -m invlab.notebooks --out DIR, or pass --execute quick|full)")
    out.mkdir(parents=True, exist_ok=True)
    names = {p.name for p in paths}
    exporter = _exporter()
    entries = []
    for p in paths:
        page, entry = render_notebook(p, names, exporter)
        (out / entry["file"]).write_text(page, encoding="utf-8")
        entries.append(entry)
    has_readme = readme is not None and Path(readme).is_file()
    if has_readme:
        (out / README_PAGE).write_text(readme_page(Path(readme), names), encoding="utf-8")
    (out / "index.html").write_text(index_page(entries, has_readme), encoding="utf-8")
    return entries


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--notebooks", default="build/notebooks", help="folder of the executed notebooks")
    ap.add_argument("--out", default="build/site", help="where the site goes")
    ap.add_argument("--execute", choices=["quick", "full"], default=None,
                    help="first execute the sources into --notebooks in this mode")
    ap.add_argument("--dir", default="notebooks", help="folder of the source notebooks (and README.md)")
    ap.add_argument("--figures", default=None,
                    help="with --execute: where figures go (default: figures/ in full mode, build/figures-quick in quick)")
    ap.add_argument("--only", nargs="*", help="with --execute: names (or prefixes) of notebooks to run")
    ap.add_argument("--threads", type=int, default=None, help="with --execute: torch threads in each kernel")
    ap.add_argument("--expect", choices=["quick", "full"], default=None,
                    help="fail when a page was executed in the other mode (make site expects full)")
    args = ap.parse_args(argv)
    src, executed = Path(args.dir), Path(args.notebooks)
    if executed.resolve() == src.resolve():
        print(f"--notebooks {executed} is the source folder: executed copies never go there; "
              "pass a build folder, e.g. build/notebooks", file=sys.stderr)
        return 2
    if args.execute:
        from . import notebooks as runner

        run = ["--mode", args.execute, "--dir", str(src), "--out", str(executed)]
        run += ["--figures", args.figures] if args.figures else []
        run += ["--only", *args.only] if args.only else []
        run += ["--threads", str(args.threads)] if args.threads else []
        rc = runner.main(run)
        if rc:
            return rc
    missing = sorted({p.name for p in notebooks_in(src)} - {p.name for p in notebooks_in(executed)})
    if missing and not args.only:
        print(f"warning: not executed yet, so not on the site: {missing}", file=sys.stderr)
    t0 = time.perf_counter()
    try:
        entries = build_site(executed, Path(args.out), readme=src / "README.md")
    except FileNotFoundError as exc:
        print(exc, file=sys.stderr)
        return 2
    for e in entries:
        print(f"{e['file']:45s} {e['mode']}{'  FAILED' if e['failed'] else ''}")
    print(f"{len(entries)} page(s) + index.html in {args.out} ({time.perf_counter() - t0:.1f} s)")
    if args.expect:
        other = [e["notebook"] for e in entries if e["quick"] != (args.expect == "quick")]
        if other:
            print(f"not executed in {args.expect} mode: {other}; execute them again (make -B site for full mode)",
                  file=sys.stderr)
            return 1
    return 1 if any(e["failed"] for e in entries) else 0


if __name__ == "__main__":
    sys.exit(main())
