"""What a run will cost, said before its first step, and how often a tiny dataset is evaluated.

The estimate is FLOPs per optimizer step (forward + backward, counted by
:func:`archlab.analysis.summary` on the meta device, so nothing is computed) times the run's
steps, divided by this machine's measured matmul speed (the fastest of the 512x512 float32
matmuls timed for about a tenth of a second, once per process and device type). Training rarely reaches matmul speed, so
the figure is a lower bound; a run whose lower bound passes :data:`WARN_SECONDS` gets a warning.

With ``precision="auto"`` the run's precision is chosen first (:func:`choose_run_precision`, the
engine's own :func:`archlab.train.precision.choose_precision` on the run's model, task and first
batch); where it measured, the line adds the measured time per step and what the run takes at it.

Evaluation defaults to once per epoch, which on a tiny dataset means every few steps (a 500-step
run on 80 samples would evaluate 250 times at batch size 64). :func:`eval_floor` spaces
evaluations at least ``min(EVAL_MIN_STEPS, steps // EVAL_MIN_COUNT)`` steps apart when the user
did not choose ``eval_every``: a 500-step run then evaluates 10 times, a 20-step run 10 times,
and a dataset whose epoch is longer than that keeps evaluating once per epoch.
"""

from __future__ import annotations

import functools
import logging
import math
import time
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from archlab.train.precision import PrecisionChoice, choose_precision
from archlab.train.precision_trial import task_trial

log = logging.getLogger("archlab.runs")

#: a run whose estimated lower bound is longer than this many seconds is warned about
WARN_SECONDS = 120.0
#: evaluations of a tiny dataset are at least this many steps apart (fewer on short runs) ...
EVAL_MIN_STEPS = 50
#: ... and a run that is not given ``eval_every`` evaluates at least this many times
EVAL_MIN_COUNT = 10
#: a dataset is tiny when an epoch is shorter than this many steps; larger ones keep once per
#: epoch (digits' 20-step epochs over 800 steps: 40 evaluations, and the best-checkpoint choice
#: the learning table was measured with)
TINY_EPOCH_STEPS = 10

_SPEED: dict[str, float] = {}  # device type -> measured FLOP/s, for this process


@dataclass(frozen=True)
class CostEstimate:
    """FLOPs of one optimizer step and of the run, and the time they take at this machine's
    measured matmul speed (a lower bound)."""

    flops_per_step: int
    steps: int
    flops_per_s: float
    device: str
    precision: PrecisionChoice | None = None

    @property
    def seconds(self) -> float:
        return self.flops_per_step * self.steps / self.flops_per_s

    @property
    def too_long(self) -> bool:
        return self.seconds > WARN_SECONDS

    def line(self) -> str:
        text = (
            f"cost: {_si(self.flops_per_step)}FLOP/step x {self.steps} steps = {_si(self.flops_per_step * self.steps)}FLOP;"
            f" at least {_duration(self.seconds)} at this {self.device}'s measured {_si(self.flops_per_s)}FLOP/s"
        )
        return text + _precision_clause(self.precision, self.steps)


def _precision_clause(choice: PrecisionChoice | None, steps: int) -> str:
    """``; in bf16 (step fp32 3 ms, bf16 2 ms): ~N s of steps`` where the precision was measured."""
    if choice is None:
        return ""
    if not choice.step_ms:
        return f"; {choice.precision} ({choice.reason})"
    ms = choice.step_ms[choice.precision]
    return f"; in {choice.precision} (step {choice.timings()}): ~{_duration(ms * steps / 1e3)} of steps"


def _si(x: float) -> str:
    for unit, scale in (("P", 1e15), ("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if x >= scale:
            return f"{x / scale:.3g} {unit}"
    return f"{x:.3g} "


def _duration(s: float) -> str:
    if s < 120:
        return f"{s:.2g} s" if s < 10 else f"{s:.0f} s"
    return f"{s / 60:.1f} min" if s < 7200 else f"{s / 3600:.1f} h"


def machine_flops(device: torch.device) -> float:
    """Float32 matmul FLOP/s of ``device``, measured once per process (about 0.1 s)."""
    if device.type in _SPEED:
        return _SPEED[device.type]
    n = 1024 if device.type == "cuda" else 512
    a = torch.randn(n, n, device=device)
    b = torch.randn(n, n, device=device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    a @ b  # warm-up: the first call pays for allocation and kernel selection
    sync()
    # The fastest call, not the mean: on a shared machine other jobs slow some calls, and the
    # estimate is a lower bound on time, so it takes the best speed this machine showed.
    fastest, start = math.inf, time.perf_counter()
    while time.perf_counter() - start < 0.1:
        t0 = time.perf_counter()
        a @ b
        sync()
        fastest = min(fastest, time.perf_counter() - t0)
    _SPEED[device.type] = 2 * n**3 / fastest
    return _SPEED[device.type]


def step_flops(model: nn.Module, inputs: tuple[torch.Tensor, ...]) -> int:
    """Forward + backward FLOPs of one call ``model(*inputs)``, counted on the meta device."""
    from archlab.analysis import summary

    s = summary(model, inputs, depth=0, device="meta")
    return int(s.flops + (s.backward_flops or 2 * s.flops))  # backward ~ 2x forward when not counted


def estimate(
    model: nn.Module,
    inputs: tuple[torch.Tensor, ...],
    steps: int,
    device: torch.device,
    precision: PrecisionChoice | None = None,
) -> CostEstimate:
    """The cost of ``steps`` optimizer steps, each one call on ``inputs`` (one batch)."""
    return CostEstimate(step_flops(model, inputs), steps, machine_flops(device), device.type.upper(), precision)


def choose_run_precision(model: nn.Module, task: Any, data: Any, cfg: Any, steps: int) -> PrecisionChoice:
    """The run's precision, chosen as the engine would: ``precision="auto"`` times a few steps of
    the task on a copy of ``model`` (with the run's transfer settings) and the first batch of
    ``data.train``; the RNG streams are left as they were."""
    from archlab.train.precision import resolve_device

    device = resolve_device(cfg.device)
    if cfg.precision != "auto":
        return choose_precision(cfg.precision, device)
    steps_of = task_trial(model, task, cfg, data.train, device, steps, transfer=cfg.transfer)
    setup = functools.cache(lambda: task.setup(data, cfg, device))  # only where something is measured

    def trial(precision: str):
        setup()  # the task's loss reads what setup finds (class weights, noise schedules)
        return steps_of(precision)

    return choose_precision(cfg.precision, device, trial, total_steps=steps)


def log_estimate(
    model: nn.Module,
    inputs: tuple[torch.Tensor, ...],
    steps: int,
    device: torch.device,
    precision: PrecisionChoice | None = None,
) -> Any:
    """Log the one-line estimate (a warning past :data:`WARN_SECONDS`); None when the model's
    FLOPs cannot be counted on the meta device (data-dependent control flow): training goes on."""
    try:
        cost = estimate(model, inputs, steps, device, precision)
    except Exception as exc:  # a user's module may not run on meta tensors: the estimate is optional
        log.info(
            "cost: not estimated (%s: %s)%s",
            type(exc).__name__,
            " ".join(str(exc).split())[:200],
            _precision_clause(precision, steps),
        )
        return None
    if cost.too_long:
        log.warning(
            "%s: longer than %.0f s; fewer steps (max_steps), a smaller model or a faster device cut it",
            cost.line(),
            WARN_SECONDS,
        )
    else:
        log.info("%s", cost.line())
    return cost


def eval_floor(steps_per_epoch: int, total_steps: int) -> int | None:
    """``eval_every`` for a run whose user did not choose one, or None to keep once per epoch.

    On a tiny dataset (an epoch shorter than ``TINY_EPOCH_STEPS``), evaluations are at least
    ``min(EVAL_MIN_STEPS, ceil(total_steps / EVAL_MIN_COUNT))`` steps apart; None when the
    dataset is not tiny or an epoch is already that long.
    """
    if steps_per_epoch >= TINY_EPOCH_STEPS:
        return None
    floor = min(EVAL_MIN_STEPS, math.ceil(total_steps / EVAL_MIN_COUNT))
    return floor if floor > steps_per_epoch else None
