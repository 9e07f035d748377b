"""Regression: real-valued targets (B,) or (B, D); MSE loss; MAE, RMSE and R2 (torchmetrics).

The model's output is reshaped to the target's shape, so an ``out_features=1`` model fits a
(B,) target. A prediction is the output itself (in the target's units as the data gives them).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F

from archlab.data.base import DataBundle, Split
from archlab.errors import ShapeError
from archlab.tasks.base import Task, output_tensor, torchmetrics
from archlab.train.task_protocol import Selection


def match_target(output: Any, target: torch.Tensor, task: str) -> torch.Tensor:
    """Reshape a model output to ``target``'s shape (same number of elements), else ShapeError."""
    out = output_tensor(output)
    if out.shape == target.shape:
        return out
    if out.numel() != target.numel():
        raise ShapeError(f"{task}: model output {tuple(out.shape)} does not fit target {tuple(target.shape)}")
    return out.reshape(target.shape)


class RegressionTask(Task):
    """Mean-squared-error regression."""

    selection: ClassVar[Selection] = Selection("mae", "min")

    name = "regression"

    def model_overrides(self, info: dict[str, Any], data: DataBundle) -> dict[str, Any]:
        y = data.train.target
        return {"out": 1 if y.ndim == 1 else int(torch.tensor(y.shape[1:]).prod())}

    def setup(self, data: DataBundle, cfg, device) -> None:
        super().setup(data, cfg, device)
        if not data.train.target.is_floating_point():
            raise ShapeError(
                f"regression expects float targets; got {data.train.target.dtype} (use task 'classification' for class ids)"
            )

    def loss(self, output: Any, target: torch.Tensor) -> torch.Tensor:
        return F.mse_loss(match_target(output, target, self.name).float(), target.float())

    def make_metrics(self, device):
        tm = torchmetrics().regression
        return {
            "mae": tm.MeanAbsoluteError().to(device),
            "rmse": tm.MeanSquaredError(squared=False).to(device),
            "r2": tm.R2Score().to(device),
        }

    def update_metrics(self, metrics, output, batch: Split) -> None:
        pred = match_target(output, batch.target, self.name).float().reshape(-1)
        target = batch.target.float().reshape(-1)
        for metric in metrics.values():
            metric.update(pred, target)
