"""Running a bench: rows computed one by one, appended and flushed, resumable, sharded by rank.

Single process: rows are appended to the output CSV as they finish. Under ``accelerate launch``
(or any launcher that sets ``WORLD_SIZE`` > 1) rank r computes the rows i with i % N == r of the
deterministic row list and appends them to its own part file ``<output>.part<r>-of-<N>.csv``;
after a barrier rank 0 merges the table and every part file into the output (ordered by the row
list, one row per key) and removes the parts. A re-run, sharded or not, skips every key already
in the output or in a part file, so an interrupted run loses at most its rows in flight.
"""

from __future__ import annotations

import csv
import datetime
import json
import math
import os
import platform
import resource
import subprocess
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Iterable

from .config import METRICS, BenchConfig, Row

#: input columns (the row's settings), then results, then provenance
INPUT_COLUMNS = ("key", "index", "model", "solver", "steps", "guidance", "method", "label", "options", "multiple",
                 "budget_nfe", "source", "seed", "images", "batch", "dtype", "device")
RESULT_COLUMNS = ("nfe", "nfe_per_step", "nfe_reconstruct", "backward_passes", "jvp_passes", "seconds",
                  "seconds_invert", "seconds_reconstruct", "peak_rss_mb", "peak_gpu_mb", "converged_steps",
                  "solved_steps", "converged", "error")
PROVENANCE_COLUMNS = ("invlab_version", "git_commit", "torch_version", "diffusers_version", "config_hash")
#: columns that differ between two runs of the same rows (time, memory, where it ran)
VOLATILE = ("seconds", "seconds_invert", "seconds_reconstruct", "peak_rss_mb", "peak_gpu_mb", "device",
            "git_commit", "config_hash")

_INT = {"index", "steps", "seed", "batch", "budget_nfe", "nfe", "nfe_reconstruct", "backward_passes", "jvp_passes",
        "converged_steps", "solved_steps"}
_FLOAT = {"guidance", "multiple", "nfe_per_step", "seconds", "seconds_invert", "seconds_reconstruct", "peak_rss_mb",
          "peak_gpu_mb", *METRICS}
_JSON = {"options", "images"}


def columns(metrics: Iterable[str]) -> list[str]:
    return [*INPUT_COLUMNS, *[m for m in METRICS if m in set(metrics)], *RESULT_COLUMNS, *PROVENANCE_COLUMNS]


# ------------------------------------------------------------------------------------------- table IO
def _encode(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, (dict, list, tuple)):
        return json.dumps(v, sort_keys=True)
    if isinstance(v, float):
        return repr(v)  # shortest repr that round-trips exactly
    return str(v)


def _decode(col: str, s: str) -> Any:
    if s == "":
        return None
    if col in _INT:
        return int(s)
    if col in _FLOAT:
        return float(s)
    if col in _JSON:
        return json.loads(s)
    if col == "converged":
        return s == "True"
    return s


def _repair(path: Path) -> None:
    """Cut a partial last line (a process killed while writing) so appends start on a fresh line."""
    if not path.exists() or path.stat().st_size == 0:
        return
    with open(path, "rb+") as f:
        data = f.read()
        if data.endswith(b"\n"):
            return
        f.truncate(data.rfind(b"\n") + 1)


def read_table(path: str | Path) -> list[dict[str, Any]]:
    """The rows of a bench table (typed: ints, floats, options as dicts). Rows cut short by an
    interrupted write are left out."""
    path = Path(path)
    if not path.exists():
        return []
    with open(path, newline="") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None:
            return []
        rows = []
        for rec in reader:
            if len(rec) != len(header) or not rec[0]:
                continue  # a partial line
            try:
                rows.append({c: _decode(c, v) for c, v in zip(header, rec)})
            except (ValueError, json.JSONDecodeError):
                continue
    return rows


class _Appender:
    """Appends rows to a CSV, one flush (and fsync) per row: a kill loses at most the row being written."""

    def __init__(self, path: Path, cols: list[str]):
        path.parent.mkdir(parents=True, exist_ok=True)
        _repair(path)
        exists = path.exists() and path.stat().st_size > 0
        if exists:
            with open(path, newline="") as f:
                header = next(csv.reader(f), None)
            if header != cols:
                raise ValueError(f"{path} has other columns ({header}) than this config writes; move it away or "
                                 "set another [bench] output")
        self.f = open(path, "a", newline="")
        self.w = csv.writer(self.f)
        self.cols = cols
        if not exists:
            self.write_raw(cols)

    def write_raw(self, rec: list[str]) -> None:
        self.w.writerow(rec)
        self.f.flush()
        os.fsync(self.f.fileno())

    def write(self, row: dict[str, Any]) -> None:
        self.write_raw([_encode(row.get(c)) for c in self.cols])

    def close(self) -> None:
        self.f.close()


def part_path(output: Path, rank: int, world: int) -> Path:
    return output.with_name(f"{output.stem}.part{rank}-of-{world}.csv")


def _parts(output: Path) -> list[Path]:
    return sorted(output.parent.glob(f"{output.stem}.part*-of-*.csv"))


def merge(output: Path, cfg_rows: list[Row], cols: list[str]) -> int:
    """Fold every part file into ``output``: one row per key, the config's rows first in row order,
    rows of other configs after them in the order they were found. Returns the number of rows."""
    seen: dict[str, dict] = {}
    for p in [output, *_parts(output)]:
        for r in read_table(p):
            seen.setdefault(r["key"], r)
    order = {r.key: r.index for r in cfg_rows}
    rows = sorted(seen.values(), key=lambda r: (0, order[r["key"]]) if r["key"] in order else (1, 0))
    tmp = output.with_name(output.name + ".tmp")
    with open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(cols)
        for r in rows:
            w.writerow([_encode(r.get(c)) for c in cols])
    os.replace(tmp, output)
    for p in _parts(output):
        p.unlink()
    return len(rows)


# ------------------------------------------------------------------------------------------- provenance
def _git_commit() -> str | None:
    root = Path(__file__).resolve().parents[2]
    try:
        out = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
        if out.returncode != 0:
            return None
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no", "--", "invlab",
                                ":!invlab/plots", ":!invlab/widgets", ":!invlab/assets/*.md"],  # code the numbers depend on
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return out.stdout.strip()[:12] + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def provenance(cfg: BenchConfig, device: str) -> dict[str, Any]:
    import diffusers
    import torch

    from .. import __version__

    return {"invlab_version": __version__, "git_commit": _git_commit(), "torch_version": torch.__version__,
            "diffusers_version": diffusers.__version__, "config_hash": cfg.hash, "device": device,
            "dtype": cfg.dtype or "each model's own", "threads": cfg.threads, "python": platform.python_version(),
            "platform": platform.platform(), "cpu": _cpu_model(), "cpus": os.cpu_count(),
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "config": str(cfg.path) if cfg.path else None, "config_text": cfg.text}


# ------------------------------------------------------------------------------------------- one row
class _Models:
    """Each model loaded once per process."""

    def __init__(self, device: str):
        self.device, self.cache = device, {}

    def get(self, name: str):
        if name not in self.cache:
            from ..models import load_model

            self.cache[name] = load_model(name, device=self.device)
        return self.cache[name]


def _folder_images(cfg: BenchConfig, model, files: tuple[str, ...]):
    """The files as a batch of the model's input, in [-1, 1]: read with PIL, converted to grey or
    RGB by the model's channels, resized (bilinear) to the model's size; their class ids."""
    import numpy as np
    import torch
    from PIL import Image

    if getattr(model, "is_latent", False):
        raise ValueError(f"images from a folder are supported for pixel models; {model.name} is a latent model")
    c, h, w = model.sample_shape
    if c not in (1, 3):
        raise ValueError(f"{model.name} takes {c} channels; folder images are grey (1) or RGB (3)")
    arrs = []
    for f in files:
        with Image.open(cfg.images.folder / f) as im:
            im = im.convert("L" if c == 1 else "RGB").resize((w, h), Image.BILINEAR)
            a = np.asarray(im, dtype=np.float64) / 127.5 - 1.0
        arrs.append(a[None] if c == 1 else a.transpose(2, 0, 1))
    x0 = torch.from_numpy(np.stack(arrs))
    labels = None
    if model.num_classes:
        ids = []
        for f in files:
            if f in cfg.images.conditions:
                ids.append(cfg.images.conditions[f])
            elif cfg.images.condition_from_name and f.split("_")[0].split(".")[0].isdigit():
                ids.append(int(f.split("_")[0].split(".")[0]))
            else:
                ids = None
                break
        labels = ids
    return x0, labels


def compute_row(row: Row, cfg: BenchConfig, models: _Models, device: str) -> dict[str, Any]:
    """Run one row with ``invlab.studies.zoo.run_zoo`` (one entry) and return its table record."""
    import torch

    from ..studies.zoo import Entry, run_zoo

    model = models.get(row.model)
    dtype = getattr(torch, row.dtype) if row.dtype else None
    entry = Entry(row.label, row.method, dict(row.options), row.multiple)
    cuda = device.startswith("cuda") and torch.cuda.is_available()
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    if row.source == "sampled":
        out = run_zoo(model, [entry], row.steps, row.guidance, row.batch, row.seed, dtype=dtype, solver=row.solver)[0]
    else:
        x0, labels = _folder_images(cfg, model, row.images)
        x0 = x0.to(dtype or getattr(model, "dtype", torch.float32))
        out = run_zoo(model, [entry], row.steps, row.guidance, x0=x0, labels=labels, dtype=dtype, solver=row.solver)[0]
    seconds = time.perf_counter() - t0
    conv = None if out["solved_steps"] is None else out["converged_steps"] == out["solved_steps"]
    rec = {"key": row.key, "index": row.index, "model": row.model, "solver": row.solver, "steps": row.steps,
           "guidance": row.guidance, "method": row.method, "label": row.label, "options": row.options,
           "multiple": None if row.multiple is None else float(row.multiple), "budget_nfe": out["budget_nfe"],
           "source": row.source, "seed": row.seed, "images": list(row.images), "batch": out["batch"],
           "dtype": out["dtype"].replace("torch.", ""), "device": device, "seconds": seconds,
           "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0,
           "peak_gpu_mb": torch.cuda.max_memory_allocated() / 2**20 if cuda else None, "converged": conv}
    for k in ("nfe", "nfe_per_step", "nfe_reconstruct", "backward_passes", "jvp_passes", "seconds_invert",
              "seconds_reconstruct", "converged_steps", "solved_steps", "error", *METRICS):
        rec[k] = out.get(k)
    for k in METRICS:
        if rec[k] is not None:
            rec[k] = float(rec[k])
    return rec


# ------------------------------------------------------------------------------------------- the run
class _Dist:
    """Rank, world size and barrier: accelerate's PartialState under a launcher, else one process."""

    def __init__(self):
        self.state = None
        self.rank, self.world = 0, 1
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:
            try:
                from accelerate import PartialState
            except ImportError as exc:
                raise ImportError("a sharded bench needs accelerate: pip install 'invlab[bench]'") from exc
            import torch

            # without a GPU, PartialState only joins the process group when told it runs on CPU (gloo)
            self.state = PartialState(cpu=not torch.cuda.is_available())
            self.rank, self.world = self.state.process_index, self.state.num_processes
            if self.world != int(os.environ["WORLD_SIZE"]):
                raise RuntimeError(f"WORLD_SIZE is {os.environ['WORLD_SIZE']} but accelerate joined {self.world} "
                                   "process(es); the ranks would write the same rows")

    def barrier(self) -> None:
        if self.state is not None:
            self.state.wait_for_everyone()

    def device(self, wanted: str) -> str:
        import torch

        if wanted != "auto":
            return wanted
        if self.state is not None:
            return "cpu" if self.state.device.type == "cpu" else str(self.state.device)
        return "cuda" if torch.cuda.is_available() else "cpu"


def run_bench(cfg: BenchConfig, show_progress: bool = True, limit: int | None = None,
              on_row: Callable[[dict], None] | None = None) -> dict[str, Any]:
    """Compute every row of ``cfg`` not yet in its table; returns a summary (rows total, computed,
    skipped, this process's rank and the world size, the output path, seconds).

    ``limit``: compute at most this many rows in this process, then stop (as an interruption
    would). ``on_row``: called with each finished record (after it is written)."""
    import torch

    from ..studies import zoo  # noqa: F401  (imports before the first row's clock starts)
    from .. import metrics, reconstruct, sampling  # noqa: F401

    dist = _Dist()
    device = dist.device(cfg.device)
    threads_before = torch.get_num_threads()
    torch.set_num_threads(cfg.threads)
    rows = cfg.rows()
    cols = columns(cfg.metrics)
    done = {r["key"] for p in [cfg.output, *_parts(cfg.output)] for r in read_table(p)}
    mine = [r for r in rows if r.index % dist.world == dist.rank and r.key not in done]
    if limit is not None:
        mine = mine[:limit]
    prov = provenance(cfg, device)
    stamp = {k: prov[k] for k in PROVENANCE_COLUMNS}
    target = cfg.output if dist.world == 1 else part_path(cfg.output, dist.rank, dist.world)
    t0 = time.perf_counter()
    computed = 0
    appender = _Appender(target, cols)
    models = _Models(device)
    try:
        items: Iterable[Row] = mine
        if show_progress:
            from tqdm.auto import tqdm

            items = tqdm(mine, desc=f"bench {cfg.name}" + (f" rank {dist.rank}/{dist.world}" if dist.world > 1 else ""),
                         unit="row", position=dist.rank, dynamic_ncols=True)
        for row in items:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                rec = compute_row(row, cfg, models, device)
            rec.update(stamp)
            appender.write(rec)
            computed += 1
            if on_row is not None:
                on_row(rec)
    finally:
        appender.close()
        torch.set_num_threads(threads_before)
    dist.barrier()
    total = None
    if dist.rank == 0:
        total = merge(cfg.output, rows, cols)
        side = cfg.output.with_suffix(".provenance.json")
        prov.update(rows_in_config=len(rows), rows_in_table=total, world_size=dist.world,
                    finished=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"))
        side.write_text(json.dumps(prov, indent=2) + "\n")
    dist.barrier()
    return {"rows": len(rows), "computed": computed, "skipped": sum(r.key in done for r in rows), "rank": dist.rank,
            "world": dist.world, "output": str(cfg.output), "seconds": time.perf_counter() - t0,
            "table_rows": total}


def same_table(a: list[dict], b: list[dict], tol: float = 0.0) -> list[str]:
    """Differences between two tables on every column but the volatile ones (time, memory, device,
    provenance of the code); floats equal within ``tol`` (relative). [] when they agree."""
    diffs = []
    if len(a) != len(b):
        diffs.append(f"{len(a)} rows vs {len(b)}")
    for i, (ra, rb) in enumerate(zip(a, b)):
        for c in ra:
            if c in VOLATILE:
                continue
            x, y = ra[c], rb.get(c)
            if isinstance(x, float) and isinstance(y, float):
                if (math.isnan(x) and math.isnan(y)) or x == y or abs(x - y) <= tol * max(abs(x), abs(y)):
                    continue
            elif x == y:
                continue
            diffs.append(f"row {i} ({ra.get('label')}) {c}: {x!r} vs {y!r}")
    return diffs
