"""The bench config: a TOML file naming the grid, read into :class:`BenchConfig` and laid out as rows.

Every mistake raises a ``ValueError`` that names the key and the fix. The row list is
deterministic (models × solvers × steps × guidance × image items × method entries, in the order
the config writes them), and every row has a ``key``: a hash of the row's own settings, so a
re-run skips what is done and a changed config recomputes only the rows whose settings changed.
"""

from __future__ import annotations

import hashlib
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: the metric columns a config may ask for (all computed by ``invlab.studies.zoo.run_zoo``)
METRICS = ("noise_nmse", "image_nmse", "latent_nmse", "psnr", "ssim")
DTYPES = ("float64", "float32", "float16", "bfloat16")
_TOP = {"bench", "grid", "images", "methods"}
_BENCH = {"name", "output", "dtype", "device", "threads"}
_GRID = {"models", "solvers", "steps", "guidance", "metrics"}
_IMAGES = {"source", "seeds", "batch", "folder", "conditions", "condition_from_name"}
_METHOD = {"method", "label", "options", "budget", "variant"}
_IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")


def _toml_loads(text: str) -> dict:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # Python 3.10: the backport (pip install 'invlab[bench]')
        try:
            import tomli as tomllib
        except ImportError as exc:
            raise ImportError("reading a bench config on Python 3.10 needs tomli: pip install 'invlab[bench]' "
                              "(Python >= 3.11 has tomllib built in)") from exc
    return tomllib.loads(text)


def _hash(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Row:
    """One run of the grid: its position in the deterministic row list and its settings."""

    index: int
    model: str
    solver: str
    steps: int
    guidance: float
    method: str
    label: str
    options: dict
    multiple: float | None
    source: str              # "sampled" (x0 from known noise, seed) or "real" (images from a folder)
    seed: int | None
    images: tuple[str, ...]  # the folder's files of this row (empty for sampled rows)
    batch: int
    dtype: str | None
    metrics: tuple[str, ...]
    image_hash: str = ""     # a hash of the files' bytes, so edited images are recomputed

    def settings(self) -> dict[str, Any]:
        """Everything that determines the row's numbers (what its key hashes)."""
        return {"model": self.model, "solver": self.solver, "steps": self.steps, "guidance": self.guidance,
                "method": self.method, "label": self.label, "options": self.options, "multiple": self.multiple,
                "source": self.source, "seed": self.seed, "images": list(self.images), "image_hash": self.image_hash,
                "batch": self.batch, "dtype": self.dtype, "metrics": list(self.metrics)}

    @property
    def key(self) -> str:
        return _hash(self.settings())


@dataclass
class ImageSpec:
    source: str = "sampled"
    seeds: list[int] = field(default_factory=lambda: [0])
    batch: int = 4
    folder: Path | None = None
    files: list[str] = field(default_factory=list)       # sorted file names in ``folder``
    conditions: dict[str, int] = field(default_factory=dict)
    condition_from_name: bool = False

    def items(self) -> list[tuple[int | None, tuple[str, ...]]]:
        """(seed, files) per image item: one per seed, or one per chunk of ``batch`` files."""
        if self.source == "sampled":
            return [(s, ()) for s in self.seeds]
        return [(None, tuple(self.files[i:i + self.batch])) for i in range(0, len(self.files), self.batch)]


@dataclass
class BenchConfig:
    """A parsed bench config (see :mod:`invlab.bench` for the format)."""

    name: str
    output: Path
    models: list[str]
    solvers: list[str]
    steps: list[int]
    guidance: list[float]
    entries: list  # invlab.studies.zoo.Entry
    images: ImageSpec
    metrics: list[str]
    dtype: str | None = None
    device: str = "auto"
    threads: int = 1
    text: str = ""
    path: Path | None = None

    @property
    def hash(self) -> str:
        """A hash of the config's text (provenance; rows are keyed by their own settings)."""
        return hashlib.sha256(self.text.encode()).hexdigest()[:16]

    def rows(self) -> list[Row]:
        """The deterministic row list (the order of the config's lists, methods innermost)."""
        out: list[Row] = []
        hashes = {}
        for model in self.models:
            for solver in self.solvers:
                for steps in self.steps:
                    for w in self.guidance:
                        for seed, files in self.images.items():
                            if files not in hashes:
                                hashes[files] = _files_hash(self.images.folder, files)
                            for e in self.entries:
                                out.append(Row(len(out), model, solver, int(steps), float(w), e.method, e.label,
                                               dict(e.options), e.multiple, self.images.source, seed, files,
                                               len(files) if files else self.images.batch, self.dtype,
                                               tuple(self.metrics), hashes[files]))
        return out


def _files_hash(folder: Path | None, files: tuple[str, ...]) -> str:
    if not files:
        return ""
    h = hashlib.sha256()
    for f in files:
        h.update(f.encode())
        h.update((folder / f).read_bytes())
    return h.hexdigest()[:16]


def _fail(where: str, msg: str) -> ValueError:
    return ValueError(f"bench config, {where}: {msg}")


def _list(section: dict, key: str, where: str, kind: type, example: str, required: bool = True,
          default: Any = None) -> list:
    if key not in section:
        if required:
            raise _fail(where, f"missing key {key!r}; add e.g. {key} = {example}")
        return list(default)
    v = section[key]
    v = v if isinstance(v, list) else [v]
    if not v:
        raise _fail(where, f"{key!r} is empty; give at least one value, e.g. {key} = {example}")
    ok = (int, float) if kind is float else kind
    for x in v:
        if not isinstance(x, ok) or isinstance(x, bool):
            raise _fail(where, f"{key!r} holds {x!r} ({type(x).__name__}); expected {kind.__name__} values, "
                               f"e.g. {key} = {example}")
    return [kind(x) for x in v]


def _unknown_keys(section: dict, allowed: set, where: str) -> None:
    extra = sorted(set(section) - allowed)
    if extra:
        raise _fail(where, f"unknown key(s) {extra}; allowed: {sorted(allowed)} (a typo?)")


def _method_entries(specs: Any) -> list:
    """``[[methods]]`` tables -> zoo Entries (validated by building each method's options)."""
    from ..inversion import METHODS, make_options
    from ..studies.zoo import KNOBS, NO_KNOB, Entry

    if not isinstance(specs, list) or not specs:
        raise _fail("[[methods]]", "no methods; add one table per method, e.g.\n  [[methods]]\n  method = \"naive\"")
    out: list = []
    for i, spec in enumerate(specs):
        where = f"[[methods]] #{i + 1}"
        if not isinstance(spec, dict):
            raise _fail(where, "each [[methods]] entry must be a table with method = \"...\"")
        _unknown_keys(spec, _METHOD, where)
        if "method" not in spec:
            raise _fail(where, "missing key 'method'; add e.g. method = \"naive\"")
        name = spec["method"]
        if name not in METHODS:
            raise _fail(where, f"unknown method {name!r}; use one of {sorted(METHODS)}")
        options = spec.get("options", {})
        if not isinstance(options, dict):
            raise _fail(where, "'options' must be a table, e.g. options = { max_iter = 6 }")
        if "budget" in spec:
            if name in NO_KNOB:
                raise _fail(where, f"method {name!r} costs a fixed 1 NFE per step and has no budget knob; "
                                   "remove 'budget'")
            variant = spec.get("variant", name)
            if variant not in KNOBS or KNOBS[variant][0] != name:
                known = [v for v, (m, _) in KNOBS.items() if m == name]
                raise _fail(where, f"no budget rule {variant!r} for method {name!r}; "
                                   f"use variant = one of {known}" if known else
                            f"method {name!r} has no budget rule in invlab.studies.zoo.KNOBS; give its options "
                            "instead of 'budget'")
            budgets = _list(spec, "budget", where, int, "[2, 4, 8]")
            for m in budgets:
                opts = KNOBS[variant][1](m)
                if opts is None:
                    raise _fail(where, f"{variant!r} cannot spend {m} NFE per step or less; use a larger budget")
                opts = {**opts, **options}
                label = f"{spec.get('label', variant)} {m}x"
                out.append(Entry(label, name, opts, m))
        else:
            if "variant" in spec:
                raise _fail(where, "'variant' goes with 'budget' (a matched-budget rule); remove it or add budget")
            label = spec.get("label", name if not options else f"{name} {json.dumps(options, sort_keys=True)}")
            out.append(Entry(str(label), name, dict(options), 1 if name in NO_KNOB and not options else None))
    for e in out:
        try:
            make_options(e.method, **e.options)
        except (TypeError, ValueError) as exc:
            raise _fail(f"[[methods]] {e.label!r}", f"bad options {e.options}: {exc}") from None
    labels = [e.label for e in out]
    dup = sorted({x for x in labels if labels.count(x) > 1})
    if dup:
        raise _fail("[[methods]]", f"labels {dup} appear twice; give each entry its own label = \"...\"")
    return out


def _images(sec: dict, base: Path) -> ImageSpec:
    where = "[images]"
    _unknown_keys(sec, _IMAGES, where)
    source = sec.get("source", "sampled" if "folder" not in sec else "folder")
    if source == "sampled":
        for k in ("folder", "conditions", "condition_from_name"):
            if k in sec:
                raise _fail(where, f"{k!r} goes with source = \"folder\"")
        seeds = _list(sec, "seeds", where, int, "[0, 1, 2]", required=False, default=[0])
        batch = sec.get("batch", 4)
        if not isinstance(batch, int) or isinstance(batch, bool) or batch < 1:
            raise _fail(where, f"batch must be a positive integer (got {batch!r})")
        return ImageSpec("sampled", seeds, batch)
    if source != "folder":
        raise _fail(where, f"source must be \"sampled\" (x0 from seeds) or \"folder\" (real images); got {source!r}")
    if "seeds" in sec:
        raise _fail(where, "'seeds' goes with source = \"sampled\"; a folder's images need none")
    if "folder" not in sec:
        raise _fail(where, "source = \"folder\" needs folder = \"path/to/images\" (relative to the config file)")
    folder = (base / sec["folder"]).resolve()
    if not folder.is_dir():
        raise _fail(where, f"folder {str(folder)!r} does not exist; give a folder of PNG/JPEG images")
    files = sorted(p.name for p in folder.iterdir() if p.suffix.lower() in _IMAGE_SUFFIXES)
    if not files:
        raise _fail(where, f"folder {str(folder)!r} holds no images ({', '.join(_IMAGE_SUFFIXES)})")
    conditions = sec.get("conditions", {})
    if not isinstance(conditions, dict) or not all(isinstance(v, int) for v in conditions.values()):
        raise _fail(where, "conditions must map file names to class ids, e.g. conditions = { \"a.png\" = 3 }")
    missing = sorted(set(conditions) - set(files))
    if missing:
        raise _fail(where, f"conditions name files not in the folder: {missing}")
    batch = sec.get("batch", len(files))
    if not isinstance(batch, int) or isinstance(batch, bool) or batch < 1:
        raise _fail(where, f"batch must be a positive integer (got {batch!r})")
    return ImageSpec("real", [], batch, folder, files, dict(conditions), bool(sec.get("condition_from_name", False)))


def parse_config(text: str, base: Path | str = ".", path: Path | None = None) -> BenchConfig:
    """Parse a config's TOML text (relative paths are relative to ``base``)."""
    from ..models import available_models
    from ..schedules import SOLVERS

    base = Path(base)
    try:
        raw = _toml_loads(text)
    except ValueError as exc:  # tomllib.TOMLDecodeError
        raise ValueError(f"bench config is not valid TOML: {exc}") from None
    _unknown_keys(raw, _TOP, "top level")
    bench = raw.get("bench", {})
    _unknown_keys(bench, _BENCH, "[bench]")
    if "grid" not in raw:
        raise _fail("top level", "missing table [grid]; add [grid] with models, steps and guidance")
    grid = raw["grid"]
    _unknown_keys(grid, _GRID, "[grid]")
    models = _list(grid, "models", "[grid]", str, '["gmm-digits"]')
    for m in models:
        if m not in available_models() and not (base / m).is_dir() and "/" not in m:
            raise _fail("[grid] models", f"unknown model {m!r}; use one of {available_models()} or a diffusers "
                                         "pipeline folder / hub id")
    solvers = _list(grid, "solvers", "[grid]", str, '["ddim"]', required=False, default=["ddim"])
    for s in solvers:
        if s not in SOLVERS:
            raise _fail("[grid] solvers", f"unknown solver {s!r}; use one of {list(SOLVERS)}")
    steps = _list(grid, "steps", "[grid]", int, "[10, 20]")
    if any(s < 1 for s in steps):
        raise _fail("[grid] steps", f"steps must be positive integers (got {steps})")
    guidance = _list(grid, "guidance", "[grid]", float, "[1.0, 3.0]")
    metrics = _list(grid, "metrics", "[grid]", str, '["noise_nmse", "image_nmse", "psnr"]', required=False,
                    default=list(METRICS))
    for m in metrics:
        if m not in METRICS:
            raise _fail("[grid] metrics", f"unknown metric {m!r}; use any of {list(METRICS)}")
    entries = _method_entries(raw.get("methods"))
    images = _images(raw.get("images", {}), base)
    dtype = bench.get("dtype")
    if dtype is not None and dtype not in DTYPES:
        raise _fail("[bench] dtype", f"dtype must be one of {list(DTYPES)} (or left out: each model's own)")
    threads = bench.get("threads", 1)
    if not isinstance(threads, int) or isinstance(threads, bool) or threads < 1:
        raise _fail("[bench] threads", f"threads must be a positive integer (got {threads!r}); 1 keeps reductions "
                                       "deterministic, so sharded and single runs agree bit for bit")
    name = bench.get("name", path.stem if path else "bench")
    output = base / bench.get("output", f"{name}.csv")
    if output.suffix != ".csv":
        raise _fail("[bench] output", f"output must be a .csv file (got {output.name!r})")
    return BenchConfig(str(name), output, models, solvers, steps, guidance, entries, images, metrics, dtype,
                       str(bench.get("device", "auto")), threads, text, path)


def load_config(path: str | Path, output: str | Path | None = None) -> BenchConfig:
    """Read a config file; ``output`` overrides its ``[bench] output`` (relative to the working directory)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no bench config at {str(path)!r}; e.g. invlab bench benchmarks/leaderboard.toml")
    cfg = parse_config(path.read_text(), path.parent, path)
    if output is not None:
        cfg.output = Path(output)
    return cfg
