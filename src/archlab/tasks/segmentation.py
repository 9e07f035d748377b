"""Semantic segmentation: a class per pixel.

Model output (B, C, H, W) logits (C >= 2); target (B, H, W) class ids. The loss is cross-entropy
plus soft Dice (1 - mean per-class Dice on softmax probabilities), the pairing commonly
recommended under class imbalance (Milletari et al. 2016). Metrics: pixel accuracy, mean Dice (macro F1 over pixels) and
mean IoU (Jaccard). A prediction is the per-pixel class map.
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


def soft_dice_loss(logits: torch.Tensor, target: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    """1 - mean over classes of 2|P∩T| / (|P| + |T|) with P the softmax probabilities."""
    probs = logits.float().softmax(1)  # (B, C, H, W)
    onehot = F.one_hot(target, probs.shape[1]).movedim(-1, 1).float()  # (B, H, W) -> (B, C, H, W)
    dims = (0,) + tuple(range(2, probs.ndim))
    inter = (probs * onehot).sum(dims)
    denom = probs.sum(dims) + onehot.sum(dims)
    return 1 - ((2 * inter + eps) / (denom + eps)).mean()


class SegmentationOptions(TaskOptions):
    """Options of :class:`SegmentationTask`."""

    dice_weight: float = Field(1.0, ge=0, description="weight of the soft Dice term beside cross-entropy")


class SegmentationTask(Task):
    """Per-pixel cross-entropy plus soft Dice; pixel accuracy, Dice and IoU."""

    selection: ClassVar[Selection] = Selection("iou", "max")

    name = "segmentation"
    Options = SegmentationOptions

    def __init__(self, **options: Any):
        super().__init__(**options)
        self.num_classes = 0

    def model_overrides(self, info, data: DataBundle) -> dict[str, Any]:
        self.num_classes = int(info.get("num_classes") or int(data.train.target.max()) + 1)
        return {"out": max(2, self.num_classes)}

    def setup(self, data, cfg, device) -> None:
        super().setup(data, cfg, device)
        if not self.num_classes:
            self.model_overrides(data.info, data)
        self.num_classes = max(2, self.num_classes)

    def loss(self, output, target):
        logits = output_tensor(output)
        if logits.ndim != target.ndim + 1 or logits.shape[2:] != target.shape[1:]:
            raise ShapeError(
                f"segmentation expects logits (B, C, *spatial) matching target {tuple(target.shape)}; "
                f"got {tuple(logits.shape)}"
            )
        ce = F.cross_entropy(logits.float(), target, label_smoothing=self.cfg.label_smoothing if self.cfg else 0.0)
        return ce + self.opts.dice_weight * soft_dice_loss(logits, target)

    def make_metrics(self, device):
        tm = torchmetrics().classification
        k = self.num_classes
        return {
            "pixel_accuracy": tm.MulticlassAccuracy(num_classes=k, average="micro").to(device),
            "dice": tm.MulticlassF1Score(num_classes=k, average="macro").to(device),
            "iou": tm.MulticlassJaccardIndex(num_classes=k, average="macro").to(device),
        }

    def update_metrics(self, metrics, output, batch: Split) -> None:
        pred = output_tensor(output).argmax(1)
        for m in metrics.values():
            m.update(pred.reshape(-1), batch.target.reshape(-1))

    def predict(self, model, inputs):
        return output_tensor(model(*inputs)).argmax(1)
