"""What a task is to the trainer: the contract of hooks the engine calls, and task options.

The engine (:mod:`archlab.train.loop`, :mod:`archlab.train.evaluate`) knows nothing about any
task; it calls exactly the hooks :class:`Task` declares here, each with a default, and never
probes with ``hasattr``. In the order a run meets them::

    setup(data, cfg, device)                        once, before training
    model_overrides(info, data)                     model sizes read from the data (runs/adapt)
    configure_optimizers(model, cfg, total_steps)   -> (optimizers, schedulers)
    training_step(model, batch, optimizers, ctx)    per micro-batch -> {name: detached loss}
    make_metrics(device)                            per evaluation pass
      forward(model, batch) -> output               per evaluation batch, then
      batch_loss(output, batch), update_metrics(metrics, output, batch), eval_extras(output, batch)
    finish_extras(sums)                             end of the pass -> {name: float}
    on_evaluate(model, step)                        after each evaluation -> {name: Picture}
    on_fit_end(model, data)                         after the final evaluation -> {name: Picture}
    predict(model, inputs)                          what a prediction is (runs/predict)
    options()                                       what rebuilds the task (saved in config.yaml)

The default step does one forward, one loss and one optimizer; a task with several optimizers
(a GAN's discriminator and generator) overrides ``configure_optimizers`` and ``training_step``
and uses the same :class:`~archlab.train.step.StepContext` helpers for each of them, so
precision, gradient accumulation and clipping stay the engine's business. Picture hooks return
data (:mod:`archlab.tasks.pictures`); the runs layer draws them with :mod:`archlab.report.plots`.

Each task's options are a pydantic model (:class:`TaskOptions`, ``extra="forbid"``) named by its
``Options`` attribute; ``Task(**options)`` validates them into ``self.opts``, so a misspelt
option is a :class:`~archlab.errors.ConfigError` naming the closest one.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn

from archlab.config import ArchConfig
from archlab.data.base import DataBundle, Split, is_streamed
from archlab.errors import ConfigError, ShapeError, require
from archlab.tasks.pictures import Picture
from archlab.train.config import TrainConfig
from archlab.train.optim import build_optimizer, build_scheduler
from archlab.train.step import StepContext
from archlab.train.task_protocol import LOSS, Selection


class TaskOptions(ArchConfig):
    """Options of a task that takes none; each task's ``Options`` derives from this."""


class Task:
    """Base task: supervised ``model(*inputs) -> output`` with ``loss(output, target)``.

    Subclasses set ``name`` (a task word of :mod:`archlab.capabilities`) and ``Options``, and
    implement :meth:`loss` (or :meth:`batch_loss`), :meth:`make_metrics` and
    :meth:`update_metrics`; most keep the default step and optimizer logic.
    """

    name: ClassVar[str] = "task"
    Options: ClassVar[type[TaskOptions]] = TaskOptions
    #: whether the train split must carry targets (False for the generative tasks)
    needs_target: ClassVar[bool] = True
    #: the metric runs of this task are judged on (early stopping, best checkpoint, CV, design);
    #: a task whose models are compared on something other than the validation loss says so
    selection: ClassVar[Selection] = LOSS

    def __init__(self, **options: Any):
        if options and not self.Options.model_fields:
            raise ConfigError(f"task {self.name!r} takes no options; got {sorted(options)}")
        try:
            self.opts = self.Options.build(options)
        except ConfigError as exc:  # "unknown key 'los'; did you mean 'loss'? ..." under the task's name
            raise ConfigError(f"task {self.name!r}: {str(exc).removeprefix(self.Options.__name__ + ': ')}") from None
        self.cfg: TrainConfig | None = None
        self.info: dict[str, Any] = {}

    def options(self) -> dict[str, Any]:
        """Options that rebuild this task as set up (``type(task)(**task.options())``); saved in
        config.yaml. Values a task resolved from the data in :meth:`setup` (a detected
        classification kind, a season) are included, so a rebuilt task needs no re-detection."""
        return self.opts.to_dict()

    # -- setup -----------------------------------------------------------------------------------
    def setup(self, data: DataBundle, cfg: TrainConfig, device: torch.device) -> None:
        """Look at the data once before training (class counts, seasons, value ranges, ...)."""
        self.cfg, self.info = cfg, dict(data.info)
        train = data.train
        target = train.take(slice(0, 1)).target if is_streamed(train) else train.target  # streamed: one sample
        if self.needs_target and target is None:
            raise ShapeError(f"task {self.name!r} needs targets; dataset {data.name!r} has none in its train split")

    def model_overrides(self, info: dict[str, Any], data: DataBundle) -> dict[str, Any]:
        """Model config values this task derives from the data (output sizes); see runs/adapt."""
        return {}

    # -- optimisation ----------------------------------------------------------------------------
    def configure_optimizers(self, model: nn.Module, cfg: TrainConfig, total_steps: int) -> tuple[list, list]:
        """Optimizers and their schedulers (lists of equal length; a scheduler may be None)."""
        opt = build_optimizer(model, cfg)
        return [opt], [build_scheduler(opt, cfg, total_steps)]

    def training_step(
        self, model: nn.Module, batch: Split, optimizers: list, ctx: StepContext
    ) -> dict[str, torch.Tensor]:
        """One micro-batch: forward, loss, backward; step the optimizer when ``ctx.sync``.

        Returns:
            Detached scalar tensors by name (``loss`` first); the engine averages and logs them.
        """
        with ctx.autocast():
            out = self.forward(model, batch)
            loss = self.batch_loss(out, batch)
        ctx.backward(loss)
        if ctx.sync:
            ctx.step(optimizers[0])
        return {"loss": loss.detach()}

    # -- loss, metrics, prediction ---------------------------------------------------------------
    def forward(self, model: nn.Module, batch: Split) -> Any:
        """The model's output for a batch, in whatever form :meth:`batch_loss` reads."""
        return model(*batch.inputs)

    def loss(self, output: Any, target: torch.Tensor) -> torch.Tensor:
        """The scalar loss of an output against its target (supervised tasks)."""
        raise NotImplementedError(f"task {self.name!r} defines no loss(output, target)")

    def batch_loss(self, output: Any, batch: Split) -> torch.Tensor:
        """The loss of a batch (default: ``loss(output, batch.target)``); used in training and eval."""
        return self.loss(output, batch.target)

    def make_metrics(self, device: torch.device) -> dict[str, Any]:
        """Fresh torchmetrics objects by name (on ``device``), one set per evaluation pass."""
        return {}

    def update_metrics(self, metrics: dict[str, Any], output: Any, batch: Split) -> None:
        """Feed one evaluation batch to the objects of :meth:`make_metrics`."""
        return

    def eval_extras(self, output: Any, batch: Split) -> dict[str, torch.Tensor]:
        """Extra quantities summed over an evaluation pass (e.g. a baseline's error sum and count),
        as device tensors by name; :meth:`finish_extras` turns the sums into metrics."""
        return {}

    def finish_extras(self, sums: dict[str, torch.Tensor]) -> dict[str, float]:
        """Metrics from the summed :meth:`eval_extras` of a pass (called only when there are some)."""
        return {}

    def predict(self, model: nn.Module, inputs: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """What a prediction is for this task (class ids, values, scores, ...)."""
        return model(*inputs)

    # -- pictures ----------------------------------------------------------------------------------
    def on_evaluate(self, model: nn.Module, step: int) -> dict[str, Picture]:
        """Pictures after the evaluation at ``step`` (e.g. a GAN's fixed-noise grid), by file stem.

        Must not draw from the global RNG (an interrupted and resumed run stays bitwise equal).
        """
        return {}

    def on_fit_end(self, model: nn.Module, data: DataBundle) -> dict[str, Picture]:
        """Pictures of the finished model (e.g. forecasts against the held-out data), by file stem."""
        return {}


def torchmetrics():
    """The torchmetrics module, or MissingExtraError naming archlab[train]."""
    return require("torchmetrics", "train", "task metrics")


def output_tensor(output: Any) -> torch.Tensor:
    """Models may return (logits, extra); metrics use the first tensor."""
    if isinstance(output, (tuple, list)):
        return output[0]
    return output
