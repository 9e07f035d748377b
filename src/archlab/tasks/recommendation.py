"""Recommendation / click-through-rate prediction: binary cross-entropy on a CTR logit.

Models (Wide & Deep, DLRM in :mod:`archlab.models.recsys`) take ``(dense (B, F), sparse (B,
n_fields[, bag]))`` and return one logit per row. The loss is BCE-with-logits; metrics are
``auroc`` (ranking quality), ``log_loss`` (calibrated probability quality, the CTR literature's
headline number), ``accuracy`` at 0.5, calibration error ``ece``, and ``normalized_entropy``:
log loss divided by the log loss of always predicting the training positive rate (He et al.
2014, "Practical lessons from predicting clicks on ads at Facebook"; < 1 means the model beats
the base rate).

Sizes: ``dense_features`` and ``field_sizes`` of the model are taken from ``info`` when the user
did not set them (the bundle of :mod:`archlab.data.ctr` carries both).
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from archlab.data.base import DataBundle, Split
from archlab.errors import ShapeError
from archlab.tasks.base import Task, output_tensor, torchmetrics
from archlab.train.task_protocol import Selection


class CTRTask(Task):
    """Binary CTR prediction with BCE; AUROC, log loss, normalised entropy."""

    selection: ClassVar[Selection] = Selection("auroc", "max")

    name = "ctr"

    def __init__(self, **options: Any):
        super().__init__(**options)
        self.base_rate = 0.5  # training positive rate, set in setup

    def model_overrides(self, info: dict[str, Any], data: DataBundle) -> dict[str, Any]:
        fields = {k: info[k] for k in ("dense_features", "field_sizes") if info.get(k)}
        return {"fields": fields} if fields else {}

    def setup(self, data: DataBundle, cfg, device: torch.device) -> None:
        super().setup(data, cfg, device)
        y = data.train.target
        if y.ndim != 1 or not bool(((y == 0) | (y == 1)).all()):
            raise ShapeError(
                f"ctr expects targets (N,) of 0/1 clicks; got {tuple(y.shape)} with values "
                f"{sorted(set(y.unique().tolist()))[:5]}"
            )
        self.base_rate = float(y.float().mean().clamp(1e-6, 1 - 1e-6))

    def _logits(self, output: Any, target: torch.Tensor) -> torch.Tensor:
        logits = output_tensor(output).float()
        if logits.numel() != target.numel():
            raise ShapeError(
                f"ctr expects one logit per row (B,) for {target.numel()} targets; got {tuple(logits.shape)}"
            )
        return logits.reshape(target.shape)

    def loss(self, output: Any, target: torch.Tensor) -> torch.Tensor:
        return F.binary_cross_entropy_with_logits(self._logits(output, target), target.float())

    def make_metrics(self, device: torch.device) -> dict[str, Any]:
        tm = torchmetrics().classification
        return {
            "auroc": tm.BinaryAUROC().to(device),
            "accuracy": tm.BinaryAccuracy().to(device),
            "ece": tm.BinaryCalibrationError().to(device),
        }

    def update_metrics(self, metrics: dict[str, Any], output: Any, batch: Split) -> None:
        p = torch.sigmoid(self._logits(output, batch.target))
        for m in metrics.values():
            m.update(p, batch.target.long())

    def eval_extras(self, output: Any, batch: Split) -> dict[str, torch.Tensor]:
        t = batch.target.float()
        ll = F.binary_cross_entropy_with_logits(self._logits(output, batch.target), t, reduction="sum")
        base = -(t * math.log(self.base_rate) + (1 - t) * math.log(1 - self.base_rate)).sum()
        return {"ll": ll, "base": base, "n": torch.tensor(float(t.numel()), device=t.device)}

    def finish_extras(self, sums) -> dict[str, float]:
        n = max(1.0, float(sums["n"]))
        ll, base = float(sums["ll"]) / n, float(sums["base"]) / n
        return {
            "log_loss": ll,
            "base_rate_log_loss": base,
            "normalized_entropy": ll / base if base > 0 else float("nan"),
        }

    def predict(self, model: nn.Module, inputs: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """Click probabilities (B,)."""
        return torch.sigmoid(output_tensor(model(*inputs)).float().reshape(-1))
