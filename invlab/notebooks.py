"""Execute the course notebooks with papermill: ``python -m invlab.notebooks --mode quick|full``.

Executed copies go to ``--out`` (never over the sources); figures go to ``--figures``: by default
``figures/`` in full mode (the main job, ``make figures``) and ``build/figures-quick`` in QUICK
mode, so a QUICK run never overwrites the committed full-mode pictures.
Prints the time each notebook took and exits non-zero if any failed.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from pathlib import Path
from typing import Any

from .report import read_published


THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS")


@contextlib.contextmanager
def _kernel_threads(threads: int | None):
    """Environment for the kernel papermill starts: torch reads OMP_NUM_THREADS when it is imported."""
    if threads is None:
        yield
        return
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"threads must be a positive integer or None (got {threads!r})")
    old = {k: os.environ.get(k) for k in THREAD_VARS}
    os.environ.update({k: str(threads) for k in THREAD_VARS})
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def execute(notebook: Path, out_dir: Path, quick: bool, figures: Path, extra: dict[str, Any] | None = None,
            timeout: int = 600, threads: int | None = None) -> dict[str, Any]:
    """Run one notebook; returns its published numbers plus ``_seconds`` and ``_output``.

    ``extra``: parameters beyond QUICK/FIGURES (e.g. ``{"SEED": 1}``); ``threads``: the kernel's
    torch thread count (None: torch's default for this machine).
    """
    import papermill as pm

    notebook, out_dir, figures = Path(notebook), Path(out_dir), Path(figures)
    if not notebook.is_file():
        raise FileNotFoundError(f"no notebook at {notebook}; the course notebooks are notebooks/NN_*.ipynb")
    out_dir.mkdir(parents=True, exist_ok=True)
    figures.mkdir(parents=True, exist_ok=True)
    out = out_dir / notebook.name
    if out.resolve() == notebook.resolve():
        raise ValueError(f"out_dir {out_dir} is the notebook's own folder: papermill would overwrite the source; "
                         "pass another folder, e.g. build/notebooks")
    params = {"QUICK": quick, "FIGURES": str(figures.resolve()), **(extra or {})}
    t0 = time.perf_counter()
    with _kernel_threads(threads):
        pm.execute_notebook(str(notebook), str(out), parameters=params, cwd=str(notebook.parent),
                            kernel_name="python3", progress_bar=False, execution_timeout=timeout)
    numbers = read_published(out)
    numbers["_seconds"] = time.perf_counter() - t0
    numbers["_output"] = str(out)
    return numbers


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--mode", choices=["quick", "full"], default="full")
    ap.add_argument("--dir", default="notebooks", help="folder of the source notebooks")
    ap.add_argument("--out", default="build/notebooks", help="where executed copies go")
    ap.add_argument("--figures", default=None,
                    help="where figures are written (default: figures/ in full mode, build/figures-quick in quick mode)")
    ap.add_argument("--seed", type=int, default=None, help="override every notebook's SEED")
    ap.add_argument("--threads", type=int, default=None, help="torch threads in each kernel (default: torch's own)")
    ap.add_argument("--only", nargs="*", help="names (or prefixes) of notebooks to run")
    args = ap.parse_args(argv)
    nbs = sorted(Path(args.dir).glob("[0-9][0-9]_*.ipynb"))
    if args.only:
        nbs = [nb for nb in nbs if any(nb.name.startswith(p) for p in args.only)]
    if not nbs:
        print(f"no notebooks found in {args.dir}", file=sys.stderr)
        return 2
    quick = args.mode == "quick"
    figures = Path(args.figures if args.figures is not None else ("build/figures-quick" if quick else "figures"))
    extra = {"SEED": args.seed} if args.seed is not None else None
    failed = []
    for nb in nbs:
        try:
            res = execute(nb, Path(args.out), quick, figures, extra=extra, threads=args.threads)
            print(f"{nb.name:45s} ok   {res['_seconds']:7.1f} s", flush=True)
        except Exception as exc:  # report every notebook, fail at the end
            failed.append(nb.name)
            print(f"{nb.name:45s} FAILED: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}",
                  flush=True)
    if failed:
        print(f"{len(failed)} notebook(s) failed: {failed}; executed copies are in {args.out}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
