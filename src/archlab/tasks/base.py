"""What a task is to the trainer: loss, metrics, prediction and how one training step is taken.

The trainer loop (``archlab.train.loop.fit``) knows nothing about any task. Per micro-batch it
calls ``task.training_step(model, batch, optimizers, ctx)``, which returns a dict of detached
loss tensors. The default step does one forward, one loss and one optimizer; a task with several
optimizers (a GAN's discriminator and generator) overrides ``configure_optimizers`` and
``training_step`` and uses the same :class:`StepContext` helpers for each of them, so precision,
gradient accumulation and clipping stay the trainer's business.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from archlab.data.base import DataBundle, Split
from archlab.errors import ShapeError, require
from archlab.train.config import TrainConfig
from archlab.train.precision import autocast


class StepContext:
    """Precision, accumulation and clipping for a task's training step.

    Attributes:
        device: where the batch and model live.
        precision: ``fp32`` / ``bf16`` / ``fp16``.
        accum: micro-batches per optimizer step.
        sync: True on the micro-batch that ends an accumulation window (step the optimizers).
    """

    def __init__(self, device: torch.device, precision: str, grad_clip: float | None, accum: int):
        self.device, self.precision, self.grad_clip, self.accum = device, precision, grad_clip, accum
        self.scaler = torch.amp.GradScaler(device.type, enabled=(precision == "fp16"))
        self.sync = True

    def autocast(self):
        """Autocast for the forward pass (no-op in fp32)."""
        return autocast(self.device, self.precision)

    def backward(self, loss: torch.Tensor) -> None:
        """Backward of ``loss`` averaged over the accumulation window (scaled in fp16)."""
        if self.accum > 1:
            loss = loss / self.accum
        self.scaler.scale(loss).backward()

    def step(self, optimizer: torch.optim.Optimizer) -> None:
        """Unscale, clip, step and zero one optimizer (call only when ``self.sync``)."""
        if self.grad_clip is not None:
            self.scaler.unscale_(optimizer)
            params = [p for g in optimizer.param_groups for p in g["params"] if p.grad is not None]
            torch.nn.utils.clip_grad_norm_(params, self.grad_clip)
        self.scaler.step(optimizer)
        optimizer.zero_grad(set_to_none=True)

    def end_step(self) -> None:
        """After every optimizer of this step has stepped (updates the fp16 loss scale)."""
        if self.scaler.is_enabled():
            self.scaler.update()


class Task:
    """Base task: supervised ``model(*inputs) -> output`` with ``loss(output, target)``.

    Subclasses set ``name`` and implement :meth:`loss`, :meth:`make_metrics` and
    :meth:`update_metrics`; most keep the default step and optimizer logic.
    """

    name = "task"
    #: model config fields filled from DataBundle.info when the user did not set them
    #: (see archlab.train.adapt).
    needs_target = True

    def __init__(self, **options: Any):
        if options:
            raise_unknown(self, options)
        self.cfg: TrainConfig | None = None
        self.info: dict[str, Any] = {}

    # -- setup -----------------------------------------------------------------------------------
    def setup(self, data: DataBundle, cfg: TrainConfig, device: torch.device) -> None:
        """Look at the data once before training (class counts, seasons, ...)."""
        self.cfg, self.info = cfg, dict(data.info)
        if self.needs_target and data.train.target is None:
            raise ShapeError(f"task {self.name!r} needs targets; dataset {data.name!r} has none in its train split")

    def model_overrides(self, info: dict[str, Any], data: DataBundle) -> dict[str, Any]:
        """Model config values this task derives from the data (output sizes)."""
        return {}

    # -- optimisation ----------------------------------------------------------------------------
    def configure_optimizers(self, model: nn.Module, cfg: TrainConfig, total_steps: int):
        """Optimizers and their schedulers (lists of equal length; a scheduler may be None)."""
        from archlab.train.optim import build_optimizer, build_scheduler

        opt = build_optimizer(model, cfg)
        return [opt], [build_scheduler(opt, cfg, total_steps)]

    def forward(self, model: nn.Module, batch: Split) -> Any:
        return model(*batch.inputs)

    def training_step(self, model: nn.Module, batch: Split, optimizers: list, ctx: StepContext) -> dict[str, torch.Tensor]:
        """One micro-batch: forward, loss, backward; step the optimizer when ``ctx.sync``."""
        with ctx.autocast():
            out = self.forward(model, batch)
            loss = self.batch_loss(out, batch)
        ctx.backward(loss)
        if ctx.sync:
            ctx.step(optimizers[0])
        return {"loss": loss.detach()}

    # -- loss, metrics, prediction ---------------------------------------------------------------
    def loss(self, output: Any, target: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def batch_loss(self, output: Any, batch: Split) -> torch.Tensor:
        """The loss of a batch (default: ``loss(output, batch.target)``); used in training and eval."""
        return self.loss(output, batch.target)

    def options(self) -> dict[str, Any]:
        """Constructor options that rebuild this task as set up (saved in config.yaml)."""
        return {}

    def make_metrics(self, device: torch.device) -> dict[str, Any]:
        """torchmetrics objects by name (on ``device``)."""
        return {}

    def update_metrics(self, metrics: dict[str, Any], output: Any, batch: Split) -> None:
        raise NotImplementedError

    def eval_extras(self, output: Any, batch: Split) -> dict[str, torch.Tensor]:
        """Extra summed quantities (e.g. a baseline's error) as ``{name: (sum, count)}`` tensors."""
        return {}

    def finish_extras(self, sums: dict[str, torch.Tensor]) -> dict[str, float]:
        return {}

    def predict(self, model: nn.Module, inputs: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """What a prediction is for this task (class ids, values, ...)."""
        return model(*inputs)


def raise_unknown(task: Task, options: dict[str, Any]) -> None:
    from archlab.errors import ConfigError

    raise ConfigError(f"task {task.name!r} takes no options {sorted(options)}")


def torchmetrics():
    """The torchmetrics module, or MissingExtraError naming archlab[train]."""
    return require("torchmetrics", "train", "task metrics")


def output_tensor(output: Any) -> torch.Tensor:
    """Models may return (logits, extra); metrics use the first tensor."""
    if isinstance(output, (tuple, list)):
        return output[0]
    return output
