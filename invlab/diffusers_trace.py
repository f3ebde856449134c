"""Your diffusers loop, traced: record a hand-written sampling or inversion loop (or a pipeline)
into an invlab :class:`~invlab.trace.Trajectory` and compare it with invlab's, step by step.

    from invlab.diffusers_trace import LoopTracer, compare
    with LoopTracer(pipe.unet) as tracer:               # records every UNet call
        latents = my_inversion_loop(pipe, image, prompt)  # your code, unchanged
    mine = tracer.trajectory(model, final=latents, direction="invert")
    ref = invlab.invert(model, model.encode(image), steps=N, guidance=w, cond=prompt)
    print(compare(mine, ref))                           # the first step where they disagree, and why

A pipeline: ``pipe(prompt, latents=z, callback_on_step_end=tracer.callback, output_type="latent")``
inside the ``with`` block (the callback marks the end of each step with its latents); a loop that
calls ``scheduler.step`` can pass ``scheduler=`` instead, whose ``step`` is wrapped for the block.
Without marks, each UNet call is one step and ``final=`` is the loop's last latent.

What is recorded and inferred per step (nothing about your loop is assumed but its UNet calls):

* the label the network saw (the UNet's ``timestep`` argument) and the condition embeddings;
* guidance and the noise levels the update used, inferred from the transition: a DDIM-form
  update (sampling or inversion, any guidance) is ``x_next = A x + B eps_u + C (eps_c - eps_u)``;
  least squares on the recorded tensors gives A, B, C, so ``w = C / B`` and, from
  ``A = alpha_next / alpha_cur`` and ``B = sigma_next - A sigma_cur``, the two levels' alpha_bar
  (shown as the nearest ``alphas_cumprod`` index). A step that is not of that form (DPM-Solver++
  multistep, an exact-inversion solve) is flagged by the fit's residual and compared on its
  states and labels only.
* For CFG batches (2B rows) the halves are told apart by matching the model's unconditional
  embedding (diffusers' order, unconditional first, when none matches).

:func:`compare` then checks, step by step, the start latent (VAE scaling), the label, the levels,
the guidance, the condition and the state, and names the first step where they disagree.
"""

from __future__ import annotations

import math
import types
from dataclasses import dataclass, field
from typing import Any

import torch

from .schedules import Level
from .trace import StepRecord, Trajectory

__all__ = ["Comparison", "LoopTracer", "compare", "infer_update"]

FIT_TOL = 1e-3          # relative residual below which a transition counts as a DDIM-form update


def _f64(x: torch.Tensor) -> torch.Tensor:
    return x.detach().to("cpu", torch.float64)


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = _f64(a), _f64(b)
    return float((a - b).norm() / b.norm().clamp_min(1e-300))


class LoopTracer:
    """Record a user's diffusers loop (see the module docstring). ``unet``: the network the loop
    calls (a forward hook is attached for the ``with`` block); ``scheduler``: optional, its
    ``step`` marks the end of each step with the returned ``prev_sample``."""

    def __init__(self, unet: torch.nn.Module, scheduler: Any = None):
        if not isinstance(unet, torch.nn.Module):
            raise TypeError(f"unet must be the torch module your loop calls (e.g. pipe.unet); got {type(unet).__name__}")
        self.unet, self.scheduler = unet, scheduler
        self.calls: list[dict[str, Any]] = []
        self.marks: list[tuple[int, torch.Tensor]] = []     # (number of calls so far, latents after the step)
        self._handle = None
        self._orig_step = None

    # ------------------------------------------------------------------ recording
    def __enter__(self) -> "LoopTracer":
        self.calls.clear()
        self.marks.clear()
        self._handle = self.unet.register_forward_hook(self._hook, with_kwargs=True)
        if self.scheduler is not None:
            orig = self.scheduler.step
            self._orig_step = orig
            tracer = self

            def step(sched_self, *args, **kwargs):
                out = orig(*args, **kwargs)
                prev = out.prev_sample if hasattr(out, "prev_sample") else out[0]
                tracer.mark(prev)
                return out

            self.scheduler.step = types.MethodType(step, self.scheduler)
        return self

    def __exit__(self, *exc) -> None:
        if self._handle is not None:
            self._handle.remove()
            self._handle = None
        if self._orig_step is not None:
            del self.scheduler.step                     # the instance attribute: back to the class's method
            self._orig_step = None

    def _hook(self, module, args, kwargs, output) -> None:
        names = ("sample", "timestep", "encoder_hidden_states")
        got = dict(zip(names, args))
        got.update({k: kwargs[k] for k in names if k in kwargs})
        t = got.get("timestep")
        t = float(t.flatten()[0]) if isinstance(t, torch.Tensor) else float(t)
        out = output.sample if hasattr(output, "sample") else output[0]
        emb = got.get("encoder_hidden_states")
        self.calls.append({"x": got["sample"].detach().clone(), "t": t, "out": out.detach().clone(),
                           "emb": None if emb is None else emb.detach().clone()})

    def mark(self, latents: torch.Tensor) -> None:
        """End of a step: ``latents`` is the state after it (hand loops may call this)."""
        self.marks.append((len(self.calls), latents.detach().clone()))

    def callback(self, pipe: Any, step: int, timestep: Any, callback_kwargs: dict) -> dict:
        """For ``callback_on_step_end=`` of a diffusers pipeline (needs "latents", the default)."""
        self.mark(callback_kwargs["latents"])
        return callback_kwargs

    # ------------------------------------------------------------------ the trajectory
    def trajectory(self, model: Any, final: torch.Tensor | None = None, direction: str = "invert") -> Trajectory:
        """The recorded loop as a Trajectory on ``model``'s schedule (an invlab Denoiser: its
        prediction type converts the UNet's output to eps, its unconditional embedding tells
        the CFG halves apart). ``final``: the loop's result (needed without step marks)."""
        if direction not in ("invert", "sample"):
            raise ValueError(f"direction must be 'invert' or 'sample' (got {direction!r})")
        if not self.calls:
            raise ValueError("no UNet call was recorded: run your loop inside `with LoopTracer(pipe.unet) as tracer:`")
        if self.marks:
            bounds = [0] + [m[0] for m in self.marks]
            nexts = [m[1] for m in self.marks]
            steps = [(bounds[i], bounds[i + 1]) for i in range(len(self.marks)) if bounds[i + 1] > bounds[i]]
            nexts = [nexts[i] for i in range(len(self.marks)) if bounds[i + 1] > bounds[i]]
        else:
            if final is None:
                raise ValueError("the loop marked no step ends, so pass final= (the latents your loop returned): "
                                 "each UNet call is taken as one step, its next state the next call's input")
            steps = [(i, i + 1) for i in range(len(self.calls))]
            nexts = [self._state(self.calls[i + 1])[0] for i in range(len(self.calls) - 1)] + [final]
        records, levels = [], []
        start = self._state(self.calls[0])[0]
        for k, ((a, _b), x_next) in enumerate(zip(steps, nexts)):
            call = self.calls[a]
            x, cfg = self._state(call)
            e_c, e_u, emb_c = self._branches(model, call, x, cfg)
            fit = infer_update(x, x_next, e_u if e_c is None else e_u, None if e_c is None else e_c - e_u)
            w = fit["w"] if e_c is not None else 1.0
            eps = e_u if e_c is None else e_u + w * (e_c - e_u)
            cur, nxt = _level(model, fit.get("ab_cur")), _level(model, fit.get("ab_next"))
            if k == 0:
                levels.append(cur)
            levels.append(nxt)
            extras = {"fit_residual": fit["residual"], "ddim_form": fit["residual"] < FIT_TOL,
                      "alpha_bar_cur": fit.get("ab_cur"), "alpha_bar_next": fit.get("ab_next"),
                      "unet_calls": _b - a, "cond_embedding": emb_c}
            records.append(StepRecord(index=k, t_cur=cur.label, t_next=nxt.label, t_model=call["t"], guidance=w,
                                      nfe=_b - a, x_cur=_f64(x), x_next=_f64(x_next), eps=_f64(eps),
                                      eps_cond=None if e_c is None else _f64(e_c), eps_uncond=_f64(e_u),
                                      extras=extras))
        final_state = _f64(nexts[-1])
        config = {"direction": direction, "method": "traced", "model": getattr(model, "name", "?"),
                  "steps": len(records), "timesteps": [r.t_model for r in records],
                  "guidance": records[0].guidance, "dtype": str(start.dtype).replace("torch.", "")}
        return Trajectory(records, final_state, levels, config, start=_f64(start))

    @staticmethod
    def _state(call: dict) -> tuple[torch.Tensor, bool]:
        x = call["x"]
        emb = call["emb"]
        if emb is not None and emb.shape[0] == x.shape[0] and x.shape[0] % 2 == 0 and x.shape[0] >= 2:
            h = x.shape[0] // 2
            if torch.equal(x[:h], x[h:]) and not torch.equal(emb[:h], emb[h:]):
                return x[:h], True                              # a CFG batch: the state twice
        return x, False

    @staticmethod
    def _branches(model, call, x, cfg):
        """(eps_cond, eps_uncond, cond embedding): eps_cond None without CFG (then eps_uncond is the eps)."""
        out, emb = call["out"], call["emb"]
        label = call["t"]

        def to_eps(o, xx):
            return model.to_eps(o.to(torch.float64), xx.to(torch.float64), label) if hasattr(model, "to_eps") else o

        if not cfg:
            return None, to_eps(out, x), None if emb is None else emb.detach()
        h = x.shape[0]
        first_uncond = True
        if hasattr(model, "null_cond") and emb is not None:
            try:
                null = model.null_cond(h, x).to(emb.device, emb.dtype)
                if null.shape == emb[h:].shape and torch.allclose(emb[h:], null) and not torch.allclose(emb[:h], null):
                    first_uncond = False
            except (NotImplementedError, TypeError, RuntimeError):
                pass
        (u, c) = (slice(0, h), slice(h, None)) if first_uncond else (slice(h, None), slice(0, h))
        return to_eps(out[c], x), to_eps(out[u], x), emb[c].detach()


def _solve_levels(A: float, B: float) -> tuple[float, float] | None:
    """alpha_bar of the two levels from A = a_n / a_c and B = s_n - A s_c (a = sqrt(alpha_bar))."""
    if not (A > 0 and math.isfinite(A) and math.isfinite(B)):
        return None
    hi = min(1.0, 1.0 / A)

    def f(a):
        return math.sqrt(max(0.0, 1 - (A * a) ** 2)) - A * math.sqrt(max(0.0, 1 - a * a)) - B

    lo_v, hi_v = f(1e-12), f(hi)
    if lo_v * hi_v > 0:
        return None
    lo = 1e-12
    for _ in range(200):                 # f is monotone in a_c (increasing for A < 1, decreasing for A > 1)
        mid = 0.5 * (lo + hi)
        if (f(mid) > 0) == (lo_v > 0):
            lo = mid
        else:
            hi = mid
    a_c = 0.5 * (lo + hi)
    return a_c * a_c, (A * a_c) ** 2


def infer_update(x: torch.Tensor, x_next: torch.Tensor, eps_u: torch.Tensor,
                 delta: torch.Tensor | None = None) -> dict[str, Any]:
    """Fit ``x_next = A x + B eps_u (+ C delta)`` by least squares (float64). Returns A, B, C,
    ``w = C / B``, the relative residual, and the two levels' alpha_bar when (A, B) determine them."""
    cols = [_f64(x).flatten(), _f64(eps_u).flatten()] + ([] if delta is None else [_f64(delta).flatten()])
    M = torch.stack(cols, 1)
    y = _f64(x_next).flatten()
    coef = torch.linalg.lstsq(M, y[:, None]).solution.flatten()
    res = float((M @ coef - y).norm() / y.norm().clamp_min(1e-300))
    A, B = float(coef[0]), float(coef[1])
    out = {"A": A, "B": B, "residual": res}
    if delta is not None:
        out["C"] = float(coef[2])
        out["w"] = float(coef[2] / coef[1]) if coef[1] != 0 else float("nan")
    lv = _solve_levels(A, B) if res < FIT_TOL else None
    if lv is not None:
        out["ab_cur"], out["ab_next"] = lv
    return out


def _half_log_snr(ab: float) -> float:
    """lambda = log(alpha / sigma) from alpha_bar (one train timestep moves it by >= ~0.006 on SD's schedule)."""
    ab = min(max(ab, 1e-300), 1 - 1e-16)
    return 0.5 * (math.log(ab) - math.log1p(-ab))


def _nearest_index(model, ab: float) -> tuple[int, float]:
    ac = model.schedule.alphas_cumprod.double()
    d = (ac.log() - math.log(ab)).abs()
    j = int(d.argmin())
    return j, float(d[j])


def _level(model, ab: float | None) -> Level:
    if ab is None or not (0 < ab <= 1):
        return Level(float("nan"), float("nan"), float("nan"))
    j, _ = _nearest_index(model, ab)
    return Level(float(j), math.sqrt(ab), math.sqrt(max(0.0, 1 - ab)))


# ---------------------------------------------------------------------------------------- compare
@dataclass
class Comparison:
    """Per-step checks of a traced loop against invlab's run; ``first_index`` is the first
    disagreeing step (0-based; -1: the starting latent; None: they agree)."""

    first_index: int | None
    causes: list[str]
    rows: list[dict[str, Any]]
    notes: list[str] = field(default_factory=list)

    @property
    def first_step(self) -> str:
        if self.first_index is None:
            return "none"
        return "the starting latent" if self.first_index < 0 else f"step {self.first_index + 1}"

    def __str__(self) -> str:
        if self.first_index is None:
            head = f"your loop agrees with invlab's at every step ({len(self.rows)} steps)"
        else:
            head = f"first disagreement: {self.first_step} (index {self.first_index})\n  " + "\n  ".join(self.causes)
        other = [f"step {r['index'] + 1}: {', '.join(r['kinds'])}" for r in self.rows
                 if r["kinds"] and r["index"] != self.first_index]
        tail = ("\nother steps that disagree: " + "; ".join(other[:8]) + (" ..." if len(other) > 8 else "")) if other else ""
        notes = ("\n" + "\n".join(self.notes)) if self.notes else ""
        return head + tail + notes


def compare(mine: Trajectory, ref: Trajectory, model: Any = None, tol: float = 1e-4,
            level_tol: float = 1e-3, guidance_tol: float = 1e-3) -> Comparison:
    """Compare a traced loop (``LoopTracer.trajectory``) with invlab's run of the same image/noise.

    Per step: the network's label (|difference| > 0.5), the levels the update used (see below),
    the guidance (> ``guidance_tol`` relative), the condition embedding and the state after the step (relative difference > ``tol``); before
    the first step, the starting latent (a pure scale factor is named: VAE scaling). Levels are
    compared by their half log-SNR lambda = log(alpha / sigma): ``level_tol`` is a difference
    in lambda (one train timestep of SD's schedule moves lambda by 0.006 or more).
    """
    notes = []
    if len(mine.records) != len(ref.records):
        notes.append(f"step counts differ: your loop ran {len(mine.records)} steps, invlab's {len(ref.records)} "
                     "(a skipped first/last step, or another num_inference_steps)")
    ref_states = ref.latents()
    first, causes = None, []
    d0 = _rel(mine.start, ref_states[0])
    if d0 > tol:
        u, r = _f64(mine.start).flatten(), _f64(ref_states[0]).flatten()
        c = float(u @ r / (r @ r))
        scaled = float((u - c * r).norm() / u.norm())
        sf = getattr(model, "scaling_factor", None)
        if scaled < tol:
            hint = f" (1/scaling_factor = {1 / sf:.5g}: the VAE scaling factor is missing)" if sf and abs(c * sf - 1) < 1e-2 else ""
            causes.append(f"VAE scaling: your starting latent is {c:.5g} x invlab's{hint}")
        else:
            causes.append(f"starting latent: differs from invlab's by {d0:.3g} (relative) and is not a rescaling of it "
                          "(a VAE posterior sample instead of its mean? other preprocessing?)")
        first = -1
    rows = []
    n = min(len(mine.records), len(ref.records))
    ref_cond = ref.cond if isinstance(ref.cond, torch.Tensor) and ref.cond.is_floating_point() else None
    for k in range(n):
        a, b = mine.records[k], ref.records[k]
        kinds, why = [], []
        if abs(a.t_model - b.t_model) > 0.5:
            kinds.append("label")
            hint = ""
            if abs(a.t_model - b.t_cur) <= 0.5 and abs(b.t_cur - b.t_next) > 0.5:
                hint = " (the current level's label, not the target's)"
            why.append(f"time label: your network saw t = {a.t_model:g}, invlab feeds t = {b.t_model:g}{hint}")
        ab_c, ab_n = a.extras.get("alpha_bar_cur"), a.extras.get("alpha_bar_next")
        lv_c, lv_n = ref.levels[k], ref.levels[k + 1]
        if ab_c is not None and ab_n is not None:
            want_c, want_n = lv_c.alpha ** 2, lv_n.alpha ** 2
            bad = [(nm, got, want) for nm, got, want in (("from", ab_c, want_c), ("to", ab_n, want_n))
                   if abs(_half_log_snr(got) - _half_log_snr(want)) > level_tol]
            if bad:
                kinds.append("levels")
                parts = []
                for nm, got, want in bad:
                    j, _ = _nearest_index(model, got) if model is not None else (None, 0)
                    parts.append(f"{nm} alpha_bar {got:.5g}" + (f" (alphas_cumprod[{j}])" if j is not None else "")
                                 + f" where invlab uses {want:.5g}")
                wrap = ""
                noisier = (ab_c < ab_n) if mine.config.get("direction") == "invert" else (ab_c > ab_n)
                if noisier:
                    wrap = ("; the step starts from a noisier level than it ends at: a negative index that wrapped "
                            "around (t - T // N < 0 without the guard)?")
                why.append("noise levels of the update: " + "; ".join(parts) + wrap)
        elif not a.extras.get("ddim_form", True):
            notes.append(f"step {k + 1}: not a DDIM-form update (fit residual {a.extras.get('fit_residual'):.2g}); "
                         "compared on labels and states only")
        if abs(a.guidance - b.guidance) > guidance_tol * max(1.0, abs(b.guidance)):
            kinds.append("guidance")
            why.append(f"guidance: your update used w = {a.guidance:.4g}, invlab w = {b.guidance:g}")
        emb = a.extras.get("cond_embedding")
        if emb is not None and ref_cond is not None and emb.shape == ref_cond.shape:
            de = _rel(emb, ref_cond)
            if de > tol:
                kinds.append("condition")
                why.append(f"condition: your prompt embedding differs from invlab's by {de:.3g} (relative)")
        ds = _rel(a.x_next, ref_states[k + 1])
        if ds > tol and not kinds and first is None:
            kinds.append("state")
            why.append(f"state: after this step your latent differs from invlab's by {ds:.3g} (relative), with the "
                       "same label, levels and guidance (another update rule? dtype?)")
        rows.append({"index": k, "kinds": kinds, "why": why, "state_rel_diff": ds, "t_model": a.t_model,
                     "t_model_invlab": b.t_model, "guidance": a.guidance, "alpha_bar_cur": ab_c, "alpha_bar_next": ab_n})
        if first is None and kinds:
            first, causes = k, why
    return Comparison(first, causes, rows, notes)
