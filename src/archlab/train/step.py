"""One training step's mechanics, shared by every task: precision, accumulation, clipping.

The trainer (:mod:`archlab.train.loop`) knows nothing about any task. Per micro-batch it calls
``task.training_step(model, batch, optimizers, ctx)`` with a :class:`StepContext`; a task with
several optimizers (a GAN's discriminator and generator) uses the same helpers for each of them,
so precision, gradient accumulation and clipping stay the trainer's business.
"""

from __future__ import annotations

import torch

from archlab.train.distributed import Dist
from archlab.train.precision import autocast


class StepContext:
    """Precision, accumulation and clipping for a task's training step.

    Attributes:
        device: where the batch and model live.
        precision: ``fp32`` / ``bf16`` / ``fp16``.
        accum: micro-batches per optimizer step.
        sync: True on the micro-batch that ends an accumulation window (step the optimizers).
        dist: the data-parallel group; gradients are averaged over it before each step.
    """

    def __init__(
        self, device: torch.device, precision: str, grad_clip: float | None, accum: int, dist: Dist | None = None
    ):
        self.device, self.precision, self.grad_clip, self.accum = device, precision, grad_clip, accum
        self.scaler = torch.amp.GradScaler(device.type, enabled=(precision == "fp16"))
        self.sync = True
        self.dist = dist or Dist()

    def autocast(self):
        """Autocast for the forward pass (no-op in fp32)."""
        return autocast(self.device, self.precision)

    def backward(self, loss: torch.Tensor) -> None:
        """Backward of ``loss`` averaged over the accumulation window (scaled in fp16)."""
        if self.accum > 1:
            loss = loss / self.accum
        self.scaler.scale(loss).backward()

    def step(self, optimizer: torch.optim.Optimizer) -> None:
        """Average gradients over the data-parallel group, unscale, clip, step and zero one optimizer
        (call only when ``self.sync``)."""
        params = [p for g in optimizer.param_groups for p in g["params"] if p.grad is not None]
        self.dist.average_gradients(params)
        if self.grad_clip is not None:
            self.scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(params, self.grad_clip)
        self.scaler.step(optimizer)
        optimizer.zero_grad(set_to_none=True)

    def end_step(self) -> None:
        """After every optimizer of this step has stepped (updates the fp16 loss scale)."""
        if self.scaler.is_enabled():
            self.scaler.update()
