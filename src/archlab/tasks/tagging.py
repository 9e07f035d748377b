"""Sequence tagging: one label per position, with padding.

Model output (B, T, C) logits; target (B, T) class ids where padded positions hold
``ignore_index`` (default -100). A padding mask can also come as the split's last input if
``mask_input=True`` (bool (B, T), True = real token); masked positions are set to
``ignore_index`` before the loss. Metrics: token accuracy and macro F1 over real positions.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from pydantic import Field

from archlab.data.base import DataBundle, Split
from archlab.errors import ShapeError
from archlab.tasks.base import Task, TaskOptions, output_tensor, torchmetrics
from archlab.train.task_protocol import Selection


class TaggingOptions(TaskOptions):
    """Options of :class:`TaggingTask`."""

    ignore_index: int = Field(-100, description="target value of padded positions")
    mask_input: bool = Field(False, description="the split's last input is a (B, T) bool mask, True = real token")


class TaggingTask(Task):
    """Per-position cross-entropy that ignores padding; token accuracy and macro F1."""

    selection: ClassVar[Selection] = Selection("accuracy", "max")

    name = "tagging"
    Options = TaggingOptions

    def __init__(self, **options: Any):
        super().__init__(**options)
        self.ignore_index, self.mask_input = self.opts.ignore_index, self.opts.mask_input
        self.num_classes = 0

    def model_overrides(self, info, data: DataBundle) -> dict[str, Any]:
        y = data.train.target
        valid = y[y != self.ignore_index]
        self.num_classes = int(info.get("num_classes") or int(valid.max()) + 1)
        return {"out": self.num_classes}

    def setup(self, data, cfg, device) -> None:
        super().setup(data, cfg, device)
        if not self.num_classes:
            self.model_overrides(data.info, data)
        if data.train.target.ndim != 2:
            raise ShapeError(f"tagging expects targets (N, T); got {tuple(data.train.target.shape)}")

    def _target(self, batch: Split) -> torch.Tensor:
        t = batch.target
        if self.mask_input:
            t = t.masked_fill(~batch.inputs[-1].bool(), self.ignore_index)
        return t

    def forward(self, model, batch: Split):
        inputs = batch.inputs[:-1] if self.mask_input else batch.inputs
        return model(*inputs)

    def batch_loss(self, output, batch: Split) -> torch.Tensor:
        logits = output_tensor(output).float()
        t = self._target(batch)
        if logits.shape[:2] != t.shape:
            raise ShapeError(
                f"tagging expects logits (B, T, C) matching target {tuple(t.shape)}; got {tuple(logits.shape)}"
            )
        return F.cross_entropy(
            logits.reshape(-1, logits.shape[-1]),
            t.reshape(-1),
            ignore_index=self.ignore_index,
            label_smoothing=self.cfg.label_smoothing if self.cfg else 0.0,
        )

    def loss(self, output, target):
        return self.batch_loss(output, Split(inputs=(), target=target))

    def make_metrics(self, device):
        tm = torchmetrics().classification
        k = self.num_classes
        return {
            "accuracy": tm.MulticlassAccuracy(num_classes=k, average="micro", ignore_index=self.ignore_index).to(
                device
            ),
            "f1": tm.MulticlassF1Score(num_classes=k, average="macro", ignore_index=self.ignore_index).to(device),
        }

    def update_metrics(self, metrics, output, batch: Split) -> None:
        logits = output_tensor(output).float()
        t = self._target(batch)
        for m in metrics.values():
            m.update(logits.reshape(-1, logits.shape[-1]), t.reshape(-1))

    def predict(self, model, inputs):
        inputs = inputs[:-1] if self.mask_input else inputs
        return output_tensor(model(*inputs)).argmax(-1)
