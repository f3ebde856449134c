"""The step loop's bookkeeping, shared by every sampler and inversion method.

A method owns its mathematics; the :class:`Runner` owns everything around it: input checks,
timing, NFE accounting, interventions, the non-finite guard, observers and the trajectory.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any, Sequence

import torch

from .checks import check_image_range, unknown
from .models.base import Denoiser, EpsOutput, check_guidance
from .schedules import SOLVERS, Grid, Level, check_steps
from .trace import NonFiniteError, StepRecord, Trajectory, split_hooks


class Setup:
    """Validated inputs of a run (model, state, condition, guidance, grid)."""

    def __init__(self, model: Denoiser, x: torch.Tensor, steps: int, solver: str, guidance: float, cond: Any,
                 what: str, grid_overrides: dict | None = None, uncond: Any = None,
                 uncond_steps: Sequence[Any] | None = None):
        if not isinstance(model, Denoiser):
            raise TypeError(f"model must be an invlab Denoiser (from invlab.load_model); got {type(model).__name__}")
        self.model = model
        self.x = model.check_input(x, what)
        if what == "x0" and not model.is_latent and model.image_range is not None:  # a pixel model inverts images
            check_image_range(self.x, "images", *model.image_range, stacklevel=4)
        self.steps = check_steps(steps, model.schedule.num_train_timesteps)
        if getattr(model.schedule, "is_flow", False):
            if solver not in ("euler", "ddim"):
                raise ValueError(f"solver {solver!r} is not available on the flow-matching model {model.name!r}; use "
                                 "solver='euler' (diffusers' FlowMatchEulerDiscreteScheduler step; 'ddim' is the same "
                                 "step in (alpha, sigma) = (1 - sigma, sigma) form)")
            solver = "ddim"
        elif solver == "euler":
            raise ValueError(f"solver='euler' is the flow-matching Euler step; {model.name!r} is a VP model, whose "
                             "Euler step (in x / alpha against sigma / alpha) is DDIM: use solver='ddim'")
        if solver not in SOLVERS:
            raise unknown("solver", solver, SOLVERS)
        if grid_overrides is not None and not isinstance(grid_overrides, dict):
            raise TypeError("grid_overrides must be a dict of scheduler options (got "
                            f"{type(grid_overrides).__name__}); e.g. grid_overrides={{'timestep_spacing': 'trailing'}}")
        self.solver = solver
        self.guidance = check_guidance(guidance)
        if cond is None and self.guidance != 1.0:
            raise ValueError(
                f"guidance={guidance} needs a condition to guide towards; pass cond=... "
                "(a class index for class-conditional models) or use guidance=1"
            )
        self.cond = model.check_cond(cond, x.shape[0], x)
        # a negative condition: the unconditional branch of CFG (None: the model's null input)
        self.uncond = None if uncond is None else model.check_cond(uncond, x.shape[0], x)
        # one unconditional input per step (null-text inversion's optimised embeddings)
        self.uncond_steps = None
        if uncond_steps is not None:
            if uncond is not None:
                raise ValueError("pass uncond (one negative condition) or uncond_steps (one per step), not both")
            if not isinstance(uncond_steps, (list, tuple)) or len(uncond_steps) != self.steps:
                got = len(uncond_steps) if isinstance(uncond_steps, (list, tuple)) else type(uncond_steps).__name__
                raise ValueError(f"uncond_steps must be a list of {self.steps} conditions, one per step (got {got})")
            self.uncond_steps = [None if u is None else model.check_cond(u, x.shape[0], x) for u in uncond_steps]
        self.grid: Grid = model.schedule.grid(self.steps, solver, **(grid_overrides or {}))

    def eps(self, x: torch.Tensor, label: float, index: int | None = None) -> EpsOutput:
        """The guided eps of this run at ``(x, label)``; ``index`` (the step) picks the step's
        unconditional input when the run has one per step."""
        uncond = self.uncond if self.uncond_steps is None or index is None else self.uncond_steps[index]
        return self.model.eps(x, label, self.cond, self.guidance, uncond)


class Runner:
    """Per-step bookkeeping. Use::

        run = Runner(setup, hooks, config, levels)
        for i in range(n):
            st = run.begin(i, t_model)
            ... st["eps"] = ...; run.after_eps(st) ...
            run.finish(st, x_next, residual=..., extras=...)
        return run.trajectory(final)
    """

    def __init__(self, setup: Setup, hooks: Any, config: dict[str, Any], levels: Sequence[Level],
                 check_finite: bool = True):
        self.setup = setup
        self.model = setup.model
        self.levels = list(levels)
        self.observers, self.interventions = split_hooks(hooks)
        self.check_finite = check_finite
        self.config = {
            "model": self.model.name, "steps": setup.steps, "solver": setup.solver, "guidance": setup.guidance,
            "dtype": str(setup.x.dtype).replace("torch.", ""), "device": str(setup.x.device),
            "timesteps": setup.grid.labels, "orders": list(setup.grid.orders),
            "spacing": setup.grid.spacing, **config,
        }
        self.records: list[StepRecord] = []
        self.start = setup.x.detach().to("cpu", copy=True)
        for o in self.observers:
            o.on_start(self.config)

    # --------------------------------------------------------------- per step
    def begin(self, index: int, t_model: float, order: int = 1) -> dict[str, Any]:
        cur, nxt = self.levels[index], self.levels[index + 1]
        return {"index": index, "t_cur": cur.label, "t_next": nxt.label, "t_model": t_model, "order": order,
                "_nfe0": self.model.nfe, "_t0": time.perf_counter(), "extras": {}}

    def set_eps(self, st: dict[str, Any], out: EpsOutput) -> None:
        st["eps"], st["eps_cond"], st["eps_uncond"] = out.eps, out.eps_cond, out.eps_uncond
        self._guard(st, "eps", out.eps)
        self._intervene(st, "eps")
        # a flow model's own x0 (needed at alpha = 0); stale once an intervention replaced eps
        st["x0_model"] = out.x0 if st["eps"] is out.eps else None

    def finish(self, st: dict[str, Any], x_next: torch.Tensor, residual: float | None = None,
               extras: dict[str, Any] | None = None) -> torch.Tensor:
        st["x_next"] = x_next
        if extras:
            st["extras"].update(extras)
        self._intervene(st, "step")
        self._guard(st, "x_next", st["x_next"])
        if st["x_next"].is_cuda:
            torch.cuda.synchronize(st["x_next"].device)
        rec = StepRecord(
            index=st["index"], t_cur=st["t_cur"], t_next=st["t_next"], t_model=st["t_model"],
            guidance=self.setup.guidance, order=st["order"], nfe=self.model.nfe - st["_nfe0"],
            seconds=time.perf_counter() - st["_t0"], residual=residual, extras=st["extras"],
        )
        tensors = {k: st.get(k) for k in ("x_cur", "x_next", "eps", "x0_hat", "eps_cond", "eps_uncond")}
        for o in self.observers:
            o.on_step(rec, tensors)
        self.records.append(rec)
        self._last_state = st["x_next"].detach()  # a reference (no copy): the partial run's final state
        return st["x_next"]

    def trajectory(self, final: torch.Tensor) -> Trajectory:
        return Trajectory(self.records, final, self.levels, self.config, start=self.start, cond=self.setup.cond)

    # --------------------------------------------------------------- interruption
    @contextlib.contextmanager
    def guard(self):
        """Wrap a method's step loop: if anything stops it (Ctrl-C, a hook or the network raising,
        a non-finite value), the finished steps survive as a partial :class:`Trajectory`, attached
        to the exception (``exc.partial_trajectory``) and handed to every observer
        (``Recorder.partial``); the model's NFE counter keeps counting what was evaluated
        (``config["nfe_unfinished"]``: NFE spent in the step that did not finish)."""
        nfe0 = self.model.nfe
        try:
            yield self
        except BaseException as exc:
            partial = self.partial(exc, self.model.nfe - nfe0)
            try:
                exc.partial_trajectory = partial
                note = (f"invlab: {len(partial.records)} of {self.setup.steps} steps finished before this; "
                        "the partial run is in exc.partial_trajectory (and in your Recorder's .partial)")
                if hasattr(exc, "add_note"):
                    exc.add_note(note)
            except AttributeError:  # an exception type without __dict__: the Recorders still hold it
                pass
            for o in self.observers:
                try:
                    o.on_interrupt(partial)
                except Exception:  # noqa: BLE001 - never mask the original exception
                    pass
            raise

    def partial(self, exc: BaseException | None = None, nfe_total: int | None = None) -> Trajectory:
        """The finished steps so far as a Trajectory (``final`` = the last finished state)."""
        records = list(self.records)
        final = self._last_state if records else self.start
        config = dict(self.config, interrupted=True,
                      error=type(exc).__name__ if exc is not None else "unknown")
        if nfe_total is not None:
            config["nfe_unfinished"] = nfe_total - sum(r.nfe for r in records)
        return Trajectory(records, final, self.levels[: len(records) + 1], config, start=self.start,
                          cond=self.setup.cond)

    # --------------------------------------------------------------- helpers
    def _intervene(self, st: dict[str, Any], stage: str) -> None:
        for h in self.interventions:
            if h.stage != stage:
                continue
            out = h(st["index"], {k: st.get(k) for k in ("x_cur", "x_next", "eps", "x0_hat", "eps_cond", "eps_uncond")})
            if out is None:
                continue
            if not isinstance(out, dict):
                example = ", ".join(f"{k!r}: tensor" for k in sorted(h.keys)) or "'x_next': tensor"
                raise TypeError(f"{type(h).__name__} at stage {stage!r} must return a dict like {{{example}}} or None "
                                f"(got {type(out).__name__} at step {st['index']})")
            if not out:
                continue
            extras = out.pop("extras", None)
            bad = set(out) - set(h.keys)
            if bad:
                raise ValueError(f"{type(h).__name__} returned {sorted(bad)} but declared only {sorted(h.keys)}")
            for k, v in out.items():
                ref = st[k]
                if not isinstance(v, torch.Tensor) or v.shape != ref.shape:
                    raise ValueError(f"{type(h).__name__} must return {k} as a tensor of shape {tuple(ref.shape)}")
                st[k] = v.to(dtype=ref.dtype, device=ref.device)
            if extras:
                st["extras"].update(extras)
            if stage == "eps" and "x_cur" in out:
                st["x0_hat"] = None  # recomputed by the method from the replaced state

    def _guard(self, st: dict[str, Any], what: str, value: torch.Tensor) -> None:
        if self.check_finite and not torch.isfinite(value).all():
            raise NonFiniteError(
                f"non-finite values in {what} at step {st['index']} (level {st['t_cur']:g} -> {st['t_next']:g}, "
                f"network label {st['t_model']:g}); the run was stopped there. Try float64, fewer/larger "
                "guidance, or inspect the records of the steps before it with a Recorder."
            )


def progress(iterable, enabled: bool, desc: str):
    if not enabled:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, desc=desc, leave=False)
