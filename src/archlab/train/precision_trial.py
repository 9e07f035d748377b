"""The engine's own step as a precision trial: what :func:`archlab.train.precision.choose_precision`
times for a run. Kept apart from :mod:`archlab.train.precision`, which the step itself imports
(for ``autocast``), so that neither imports the other."""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable
from typing import Any

import torch

from archlab.train.precision import Trial
from archlab.train.step import StepContext
from archlab.train.transfer import apply_transfer


def task_trial(
    model: torch.nn.Module,
    task: Any,
    cfg: Any,
    train: Any,
    device: torch.device,
    total_steps: int,
    *,
    transfer: Any = None,
) -> Trial:
    """The engine's step (``task.training_step`` with a :class:`~archlab.train.step.StepContext`)
    on a deep copy of ``model`` with its own optimizers and the first training batch, for
    :func:`choose_precision`. Nothing is copied or read until a precision is measured.

    Args:
        model: the model to train.
        task: a task after ``setup``.
        cfg: the run's TrainConfig (batch size, optimizer, clipping).
        train: the training split; its first ``batch_size`` rows are the measured batch.
        device: where training runs (each copy is moved there).
        total_steps: the run's optimizer steps (for the optimizers' schedules).
        transfer: a TransferConfig to apply to each copy (freezing, LoRA), when ``model`` does
            not have it applied yet.
    """

    @functools.cache
    def batch() -> Any:
        if not train.indexable:  # a whole-graph split is every step's batch
            return train.to(device)
        return train.take(torch.arange(min(cfg.batch_size, len(train)))).to(device)

    def make(precision: str) -> Callable[[], Any]:
        private = copy.deepcopy(model).train()
        if transfer is not None:
            apply_transfer(private, transfer)
        private.to(device)
        optimizers, _ = task.configure_optimizers(private, cfg, total_steps)
        ctx = StepContext(device, precision, cfg.grad_clip, 1)
        data = batch()

        def step() -> None:
            task.training_step(private, data, optimizers, ctx)
            ctx.end_step()

        return step

    return make
