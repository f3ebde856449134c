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


@dataclass
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


class Observer:
    """Base class of read-only hooks. ``on_step`` sees the record and the live tensors."""

    def on_start(self, config: dict[str, Any]) -> None:  # noqa: B027 - optional
        pass

    def on_step(self, record: StepRecord, tensors: dict[str, torch.Tensor | None]) -> None:  # noqa: B027
        pass


class Recorder(Observer):
    """Copies the named tensors into each ``StepRecord`` (detached CPU copies), every k-th step.

    ``Recorder()`` keeps x_cur, x_next, eps and x0_hat at every step; ``Recorder(keys=())``
    keeps none (scalars only); ``Recorder(every=5)`` keeps every 5th step plus the last.
    """

    def __init__(self, keys: Sequence[str] = ("x_cur", "x_next", "eps", "x0_hat"), every: int = 1,
                 to_cpu: bool = True):
        bad = set(keys) - set(TENSOR_KEYS)
        if bad:
            raise ValueError(f"Recorder cannot record {sorted(bad)}; choose from {TENSOR_KEYS}")
        if int(every) < 1:
            raise ValueError(f"every must be >= 1 (got {every})")
        self.keys, self.every, self.to_cpu = tuple(keys), int(every), to_cpu
        self._last = -1

    def on_start(self, config: dict[str, Any]) -> None:
        self._last = int(config["steps"]) - 1

    def on_step(self, record: StepRecord, tensors: dict[str, torch.Tensor | None]) -> None:
        if record.index % self.every and record.index != self._last:
            return
        for k in self.keys:
            v = tensors.get(k)
            if v is not None:
                v = v.detach()
                setattr(record, k, v.to("cpu", copy=True) if self.to_cpu else v.clone())


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

    def __init__(self, fn, keys: Iterable[str], stage: str = "step"):
        self.fn, self.keys, self.stage = fn, frozenset(keys), stage

    def __call__(self, index, tensors):
        return self.fn(index, tensors)


def split_hooks(hooks: Iterable[Any] | None, default_recorder: bool = True):
    """Sort hooks into observers and interventions (validated); add a default Recorder."""
    observers: list[Observer] = []
    interventions: list[Intervention] = []
    for h in hooks or ():
        if isinstance(h, Intervention):
            if h.stage not in INTERVENTION_KEYS:
                raise ValueError(f"intervention stage must be one of {sorted(INTERVENTION_KEYS)}, got {h.stage!r}")
            bad = set(h.keys) - INTERVENTION_KEYS[h.stage]
            if bad or not h.keys:
                raise ValueError(
                    f"{type(h).__name__} declares keys {sorted(h.keys)}; at stage {h.stage!r} an intervention may "
                    f"replace {sorted(INTERVENTION_KEYS[h.stage])}"
                )
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


@dataclass
class Trajectory:
    """A run: per-step records, the final state, the levels visited (loop order) and the config.

    ``levels[k]`` is the level of the state before step k; ``levels[-1]`` that of ``final``.
    """

    records: list[StepRecord]
    final: torch.Tensor
    levels: list[Level]
    config: dict[str, Any]
    start: torch.Tensor | None = None

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
            raise ValueError(f"metric must be 'nmse' or 'rmse', got {metric!r}")
        ref = self.aligned(reference)
        mine = self.latents()
        return torch.stack([fn(mine[k + 1], ref[k + 1]) for k in range(len(self.records))])

    def summary(self) -> dict[str, Any]:
        return {"steps": len(self.records), "nfe": self.nfe, "seconds": self.seconds,
                **{k: self.config[k] for k in ("direction", "solver", "method", "guidance") if k in self.config}}
