"""What a run leaves behind (``StepRecord``, ``Trajectory``) and the hooks that watch or steer it.

*Observers* only look: they receive the finished :class:`StepRecord` and the live tensors of
the step, and must not modify them. :class:`Recorder` is the observer that copies tensors
into the records. *Interventions* steer: they return replacements for a declared set of keys,
which the loop checks and applies. To stop a run early, raise from a hook.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Sequence

import torch

from .schedules import Level

TENSOR_KEYS = ("x_cur", "x_next", "eps", "x0_hat", "eps_cond", "eps_uncond")

#: What an intervention may replace at each stage of a step.
#: "eps": after the network call, before the update (replace the noise prediction, or the
#:        state the update starts from, e.g. EasyInv's input blend);
#: "step": after the update (replace the step's output, e.g. EasyInv's output blend).
INTERVENTION_KEYS = {"eps": frozenset({"eps", "x_cur"}), "step": frozenset({"x_next"})}


class NonFiniteError(FloatingPointError):
    """A NaN or inf appeared during a run; the message names the step and the tensor."""


def _describe(v: Any) -> str:
    if isinstance(v, torch.Tensor):
        return f"<{str(v.dtype).replace('torch.', '')} {tuple(v.shape)}>"
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, (list, tuple)) and len(v) > 4:
        return f"[{len(v)} values]"
    return repr(v)


@dataclass(repr=False)
class StepRecord:
    """One step of a run. Tensor fields are filled by a :class:`Recorder` (CPU copies), else None.

    ``t_cur`` / ``t_next`` are the labels of the level the step starts from and ends at (loop
    order: in sampling t_next is less noisy, in inversion noisier); ``t_model`` is the label fed
    to the network; ``nfe`` counts guided-eps evaluations in this step (see ``invlab.models.base``).
    """

    index: int
    t_cur: float
    t_next: float
    t_model: float
    guidance: float
    order: int = 1
    nfe: int = 0
    seconds: float = 0.0
    residual: float | None = None
    x_cur: torch.Tensor | None = None
    x_next: torch.Tensor | None = None
    eps: torch.Tensor | None = None
    x0_hat: torch.Tensor | None = None
    eps_cond: torch.Tensor | None = None
    eps_uncond: torch.Tensor | None = None
    extras: dict[str, Any] = field(default_factory=dict)

    def __repr__(self) -> str:  # tensors as dtype and shape, long lists as their length
        fields = [f"{k}={_describe(getattr(self, k))}" for k in
                  ("index", "t_cur", "t_next", "t_model", "guidance", "order", "nfe", "seconds", "residual")
                  if getattr(self, k) is not None]
        fields += [f"{k}={_describe(getattr(self, k))}" for k in TENSOR_KEYS if getattr(self, k) is not None]
        if self.extras:
            fields.append("extras={" + ", ".join(f"{k!r}: {_describe(v)}" for k, v in self.extras.items()) + "}")
        return f"StepRecord({', '.join(fields)})"


class Observer:
    """Base class of read-only hooks. ``on_step`` sees the record and the live tensors."""

    def on_start(self, config: dict[str, Any]) -> None:  # noqa: B027 - optional
        pass

    def on_step(self, record: StepRecord, tensors: dict[str, torch.Tensor | None]) -> None:  # noqa: B027
        pass

    def on_interrupt(self, partial: "Trajectory") -> None:  # noqa: B027 - optional
        """Called when the run stops with an exception; ``partial`` holds the finished steps."""


class Recorder(Observer):
    """Copies the named tensors into each ``StepRecord`` (detached copies), every k-th step.

    ``invlab.sample``/``invlab.invert`` add a ``Recorder()`` unless ``hooks`` already holds one,
    so by default every step keeps x_cur, x_next, eps and x0_hat (what ``Trajectory.latents`` and
    ``errors_to`` need). For large models choose what to keep:

    * ``keys``: which tensors (``Recorder(keys=())``: scalars only; a single name is one key);
    * ``every``: every k-th step plus the last (``latents()`` then needs ``every=1`` for x_next);
    * ``dtype``: storage dtype, e.g. ``torch.float16`` halves float32 storage (the run itself is
      unchanged; only the copies are rounded);
    * ``to_cpu``: copy to the CPU (default) or keep on the run's device;
    * ``max_bytes``: a cap on the stored tensors (default 2 GiB). When the next copy would pass
      it, the Recorder stops keeping tensors, warns once (naming the step and how to fit), and
      the run goes on with scalars only.

    ``nbytes`` is what it holds so far. After an interrupted run, ``partial`` holds the steps
    that finished (see :class:`Trajectory`).
    """

    def __init__(self, keys: Sequence[str] | str = ("x_cur", "x_next", "eps", "x0_hat"), every: int = 1,
                 to_cpu: bool = True, dtype: torch.dtype | None = None, max_bytes: int | None = 2**31):
        if isinstance(keys, str):
            keys = (keys,)
        bad = set(keys) - set(TENSOR_KEYS)
        if bad:
            from .checks import suggest

            hint = "".join(suggest(k, TENSOR_KEYS) for k in sorted(bad))
            raise ValueError(f"Recorder cannot record {sorted(bad)}{hint}; choose from {TENSOR_KEYS}")
        if isinstance(every, bool) or not isinstance(every, int) or every < 1:
            raise ValueError(f"every must be an integer >= 1 (got {every!r}); e.g. Recorder(every=5)")
        if dtype is not None and (not isinstance(dtype, torch.dtype) or not dtype.is_floating_point):
            raise TypeError(f"dtype must be None or a floating torch.dtype such as torch.float16 (got {dtype!r})")
        if max_bytes is not None and (isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 0):
            raise ValueError(f"max_bytes must be None (no cap) or a number of bytes >= 0 (got {max_bytes!r})")
        self.keys, self.every, self.to_cpu = tuple(keys), int(every), bool(to_cpu)
        self.dtype, self.max_bytes = dtype, max_bytes
        self.nbytes = 0
        self.capped_at: int | None = None
        self.partial: "Trajectory | None" = None
        self._last = -1

    def on_start(self, config: dict[str, Any]) -> None:
        self._last = int(config["steps"]) - 1
        self.nbytes, self.capped_at, self.partial = 0, None, None

    def _copy(self, v: torch.Tensor) -> torch.Tensor:
        v = v.detach()
        dtype = self.dtype if (self.dtype is not None and v.is_floating_point()) else v.dtype
        if self.to_cpu:
            return v.to("cpu", dtype=dtype, copy=True)
        return v.to(dtype=dtype, copy=True)

    def on_step(self, record: StepRecord, tensors: dict[str, torch.Tensor | None]) -> None:
        if self.capped_at is not None or (record.index % self.every and record.index != self._last):
            return
        chosen = {k: v for k in self.keys if (v := tensors.get(k)) is not None}
        size = sum(v.numel() * (self.dtype or v.dtype).itemsize for v in chosen.values())
        if self.max_bytes is not None and self.nbytes + size > self.max_bytes:
            self.capped_at = record.index
            import warnings

            warnings.warn(
                f"Recorder: keeping the tensors of step {record.index} would pass max_bytes={self.max_bytes:,} "
                f"(held: {self.nbytes:,} bytes); from this step on only scalars are recorded. To fit, record "
                "fewer keys (Recorder(keys=('x_next',))), every k-th step (every=5), store float16 "
                "(dtype=torch.float16) or raise max_bytes.", RecordingCapWarning, stacklevel=2)
            return
        for k, v in chosen.items():
            setattr(record, k, self._copy(v))
        self.nbytes += size

    def on_interrupt(self, partial: "Trajectory") -> None:
        self.partial = partial


class RecordingCapWarning(UserWarning):
    """A Recorder reached its ``max_bytes`` cap and stopped keeping tensors."""


class ConvergenceWarning(UserWarning):
    """An implicit solve (exact inversion) stopped before reaching its tolerance at some steps."""


class Intervention:
    """Base class of steering hooks.

    Subclasses set ``stage`` ("eps" or "step"), declare ``keys`` (a subset of
    ``INTERVENTION_KEYS[stage]``) and implement ``__call__(index, tensors) -> dict | None``.
    A returned dict maps declared keys to replacement tensors (same shape); the optional key
    ``"extras"`` adds entries to the step's record.
    """

    stage: str = "step"
    keys: frozenset[str] = frozenset()

    def __call__(self, index: int, tensors: dict[str, torch.Tensor | None]) -> dict[str, Any] | None:
        raise NotImplementedError


class FunctionIntervention(Intervention):
    """Wrap a function ``fn(index, tensors) -> dict | None`` as an intervention."""

    def __init__(self, fn, keys: Iterable[str] | str, stage: str = "step"):
        if not callable(fn):
            raise TypeError(f"fn must be a function (index, tensors) -> dict | None (got {type(fn).__name__})")
        self.fn, self.keys, self.stage = fn, frozenset((keys,) if isinstance(keys, str) else keys), stage

    def __call__(self, index, tensors):
        return self.fn(index, tensors)


def split_hooks(hooks: Iterable[Any] | None, default_recorder: bool = True):
    """Sort hooks into observers and interventions (validated); add a default Recorder.

    ``hooks``: None, one hook, or a list of hooks (Observers, Interventions, callables(record))."""
    from .checks import as_hook_list, suggest

    observers: list[Observer] = []
    interventions: list[Intervention] = []
    for h in as_hook_list(hooks):
        if isinstance(h, Intervention):
            if h.stage not in INTERVENTION_KEYS:
                raise ValueError(f"intervention stage must be one of {sorted(INTERVENTION_KEYS)}, got "
                                 f"{h.stage!r}{suggest(h.stage, INTERVENTION_KEYS)}")
            bad = set(h.keys) - INTERVENTION_KEYS[h.stage]
            if bad or not h.keys:
                split = all(isinstance(k, str) and len(k) == 1 for k in h.keys) and h.keys
                first = sorted(INTERVENTION_KEYS[h.stage])[0]
                hint = (f" (keys were a string split into letters: pass keys={{'{first}'}}, a set of names, "
                        "not a bare string)") if split else ""
                raise ValueError(
                    f"{type(h).__name__} declares keys {sorted(h.keys)}; at stage {h.stage!r} an intervention may "
                    f"replace {sorted(INTERVENTION_KEYS[h.stage])}{hint}"
                )
            if isinstance(h, FunctionIntervention) and not callable(h.fn):
                raise TypeError(f"FunctionIntervention needs a function fn(index, tensors) -> dict | None; "
                                f"got {type(h.fn).__name__}")
            interventions.append(h)
        elif isinstance(h, Observer):
            observers.append(h)
        elif callable(h):
            observers.append(_CallableObserver(h))
        else:
            raise TypeError(f"a hook must be an Observer, an Intervention or a callable(record); got {h!r}")
    if default_recorder and not any(isinstance(o, Recorder) for o in observers):
        observers.insert(0, Recorder())
    return observers, interventions


class _CallableObserver(Observer):
    def __init__(self, fn):
        self.fn = fn

    def on_step(self, record, tensors):
        self.fn(record)


@dataclass(repr=False)
class Trajectory:
    """A run: per-step records, the final state, the levels visited (loop order) and the config.

    ``levels[k]`` is the level of the state before step k; ``levels[-1]`` that of ``final``.
    Its repr is a one-line summary (see :meth:`summary`); ``records`` hold the details.
    A run stopped by an exception (Ctrl-C, a hook that raises, a non-finite value) leaves a
    *partial* trajectory of the finished steps on the exception (``exc.partial_trajectory``) and
    in every Recorder (``recorder.partial``); ``config["interrupted"]`` is then True.
    ``cond`` is the condition the run used, as validated by the model (a reference, not a
    copy; ``None``: unconditional); ``invlab.reconstruct`` defaults to it.
    ``companion`` is the second latent of the exact-by-construction solvers ("edict": y of the
    pair (x, y), ``final`` being x; "bdia"/"belm": the state one level before ``final``), None
    for every other run; pass it back as ``companion=`` to continue exactly (``invlab.reversible``).
    """

    records: list[StepRecord]
    final: torch.Tensor
    levels: list[Level]
    config: dict[str, Any]
    start: torch.Tensor | None = None
    cond: Any = None
    companion: torch.Tensor | None = None

    def __len__(self) -> int:
        return len(self.records)

    @property
    def nfe(self) -> int:
        return sum(r.nfe for r in self.records)

    @property
    def seconds(self) -> float:
        return sum(r.seconds for r in self.records)

    def latents(self) -> torch.Tensor:
        """All states in loop order, stacked: ``(steps + 1, B, ...)`` (needs x_next recorded)."""
        missing = [r.index for r in self.records if r.x_next is None]
        if missing or self.start is None:
            raise ValueError(
                f"x_next was not recorded at steps {missing[:5]}...; run with the default Recorder() "
                "or Recorder(keys=('x_next',), every=1)"
            )
        return torch.stack([self.start] + [r.x_next for r in self.records])

    def stack(self, key: str) -> torch.Tensor:
        """A recorded per-step tensor field stacked over steps, e.g. ``stack("eps")``."""
        vals = [getattr(r, key) for r in self.records]
        if any(v is None for v in vals):
            raise ValueError(f"{key!r} was not recorded at every step; add Recorder(keys=(..., {key!r}))")
        return torch.stack(vals)

    def aligned(self, reference: "Trajectory") -> torch.Tensor:
        """The reference's states at this trajectory's levels, in this trajectory's order."""
        ref = reference.latents()
        mine = [(lv.alpha, lv.sigma) for lv in self.levels]
        theirs = [(lv.alpha, lv.sigma) for lv in reference.levels]

        def same(a, b):
            return len(a) == len(b) and all(abs(p[0] - q[0]) < 1e-9 and abs(p[1] - q[1]) < 1e-9 for p, q in zip(a, b))

        if same(mine, theirs):
            return ref
        if same(mine, theirs[::-1]):
            return ref.flip(0)
        raise ValueError(
            "the two trajectories visit different noise levels; compare runs made on the same grid "
            "(same model schedule, steps and solver)"
        )

    def errors_to(self, reference: "Trajectory", metric: str = "nmse") -> torch.Tensor:
        """Per-step error of this run's states against a reference run on the same grid.

        Entry k compares the state after step k with the reference's state at that level (for
        an inversion of a sampled image the reference is the sampling trajectory: ground truth).
        ``metric``: "nmse" (||a - b||^2 / ||b||^2, batch mean) or "rmse".
        """
        from .metrics import nmse, rmse

        fn = {"nmse": nmse, "rmse": rmse}.get(metric)
        if fn is None:
            from .checks import suggest

            raise ValueError(f"metric must be 'nmse' or 'rmse', got {metric!r}{suggest(metric, ('nmse', 'rmse'))}")
        ref = self.aligned(reference)
        mine = self.latents()
        return torch.stack([fn(mine[k + 1], ref[k + 1]) for k in range(len(self.records))])

    def convergence(self) -> dict[str, Any] | None:
        """For methods that solve an equation per step (exact inversion): how many steps reached
        their tolerance, which did not, and the worst accepted residual. None for other methods."""
        flags = [(r.index, r.extras["converged"]) for r in self.records if "converged" in r.extras]
        if not flags:
            return None
        failed = [i for i, ok in flags if not ok]
        residuals = [r.residual for r in self.records if r.residual is not None]
        return {"converged": len(flags) - len(failed), "solved": len(flags), "failed_steps": failed,
                "max_residual": max(residuals) if residuals else None}

    def summary(self) -> dict[str, Any]:
        """The run in a few numbers: what ran, steps, NFE, time, convergence (if any), interruption."""
        out = {k: self.config[k] for k in ("direction", "method", "solver", "model", "guidance", "dtype")
               if k in self.config}
        out.update(steps=len(self.records), planned_steps=self.config.get("steps", len(self.records)),
                   batch=int(self.final.shape[0]), nfe=self.nfe, seconds=self.seconds)
        conv = self.convergence()
        if conv is not None:
            out.update(converged_steps=conv["converged"], failed_steps=conv["failed_steps"],
                       max_residual=conv["max_residual"])
        if self.config.get("interrupted"):
            out["interrupted"] = self.config.get("error", True)
        return out

    def __repr__(self) -> str:
        s = self.summary()
        what = " ".join(str(s[k]) for k in ("direction", "method") if k in s)
        if s.get("solver") and s.get("solver") != s.get("method"):
            what += f" ({s['solver']} grid)"
        steps = f"{s['steps']} steps" if s["steps"] == s["planned_steps"] else f"{s['steps']} of {s['planned_steps']} steps"
        parts = [what, steps]
        if "model" in s:
            parts.append(f"model {s['model']}")
        if "guidance" in s:
            parts.append(f"guidance {s['guidance']:g}")
        parts += [f"batch {s['batch']}", s.get("dtype", ""), f"NFE {s['nfe']}", f"{s['seconds']:.3g} s"]
        if "converged_steps" in s:
            conv = f"converged {s['converged_steps']}/{s['converged_steps'] + len(s['failed_steps'])}"
            if s["failed_steps"]:
                shown = ", ".join(map(str, s["failed_steps"][:8])) + (", ..." if len(s["failed_steps"]) > 8 else "")
                conv += f" (not at steps {shown}; max residual {s['max_residual']:.2g})"
            parts.append(conv)
        if self.records:
            kept = [k for k in TENSOR_KEYS if getattr(self.records[-1], k) is not None]
            parts.append("recorded " + (",".join(kept) if kept else "scalars only"))
        if "interrupted" in s:
            parts.append(f"INTERRUPTED by {s['interrupted']}")
        return "Trajectory(" + ", ".join(p for p in parts if p) + ")"
