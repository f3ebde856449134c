"""Execute the course notebooks with papermill: ``python -m invlab.notebooks --mode quick|full``.

Executed copies go to ``--out`` (never over the sources); figures go to ``--figures``.
Prints the time each notebook took and exits non-zero if any failed.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from .report import read_published


def execute(notebook: Path, out_dir: Path, quick: bool, figures: Path, extra: dict[str, Any] | None = None,
            timeout: int = 600) -> dict[str, Any]:
    """Run one notebook; returns its published numbers plus ``_seconds`` and ``_output``."""
    import papermill as pm

    out_dir.mkdir(parents=True, exist_ok=True)
    figures.mkdir(parents=True, exist_ok=True)
    out = out_dir / notebook.name
    params = {"QUICK": quick, "FIGURES": str(figures.resolve()), **(extra or {})}
    t0 = time.perf_counter()
    pm.execute_notebook(str(notebook), str(out), parameters=params, cwd=str(notebook.parent), kernel_name="python3",
                        progress_bar=False, execution_timeout=timeout)
    numbers = read_published(out)
    numbers["_seconds"] = time.perf_counter() - t0
    numbers["_output"] = str(out)
    return numbers


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--mode", choices=["quick", "full"], default="full")
    ap.add_argument("--dir", default="notebooks", help="folder of the source notebooks")
    ap.add_argument("--out", default="build/notebooks", help="where executed copies go")
    ap.add_argument("--figures", default="figures", help="where figures are written")
    ap.add_argument("--only", nargs="*", help="names (or prefixes) of notebooks to run")
    args = ap.parse_args(argv)
    nbs = sorted(Path(args.dir).glob("[0-9][0-9]_*.ipynb"))
    if args.only:
        nbs = [nb for nb in nbs if any(nb.name.startswith(p) for p in args.only)]
    if not nbs:
        print(f"no notebooks found in {args.dir}", file=sys.stderr)
        return 2
    failed = []
    for nb in nbs:
        try:
            res = execute(nb, Path(args.out), args.mode == "quick", Path(args.figures))
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
