"""Classification: binary, multiclass and multilabel.

- multiclass: logits (B, C), targets (B,) integer class ids; cross-entropy with optional class
  weights and label smoothing, or focal loss (Lin et al. 2017) for imbalance. Training
  batches mixed by mixup / CutMix (:mod:`archlab.train.augment`) carry soft targets instead:
  class probabilities (B, C), read by :func:`soft_target_loss` (binary: (B, 2), column 1 is the
  positive class; multilabel targets are mixed in place and BCE takes them as they are).
- binary: one logit (B,) or (B, 1), targets {0, 1}; BCE-with-logits (positive weight from the
  class weights) or focal.
- multilabel: logits (B, L), targets (B, L) in {0, 1}; BCE-with-logits.

Metrics (torchmetrics): accuracy, macro F1, AUROC and expected calibration error (ECE).
A prediction is the class id (multiclass / binary) or a 0/1 vector (multilabel).
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from pydantic import Field

from archlab.data.base import DataBundle, Split
from archlab.errors import ConfigError, ShapeError
from archlab.tasks.base import Task, TaskOptions, output_tensor, torchmetrics
from archlab.train.task_protocol import Selection

Kind = Literal["auto", "binary", "multiclass", "multilabel"]


def focal_loss(
    logits: torch.Tensor, target: torch.Tensor, gamma: float, weight: torch.Tensor | None = None
) -> torch.Tensor:
    """Multiclass focal loss: mean of (1 - p_t)^gamma * CE (Lin et al. 2017)."""
    logp = F.log_softmax(logits.float(), dim=-1)
    logp_t = logp.gather(-1, target.unsqueeze(-1)).squeeze(-1)
    loss = -((1 - logp_t.exp()) ** gamma) * logp_t
    if weight is not None:
        w = weight[target]
        return (loss * w).sum() / w.sum()
    return loss.mean()


def soft_target_loss(
    logits: torch.Tensor,
    probs: torch.Tensor,
    *,
    weight: torch.Tensor | None = None,
    label_smoothing: float = 0.0,
    gamma: float | None = None,
) -> torch.Tensor:
    """Cross-entropy (or focal loss) against class probabilities (B, C), e.g. mixup's targets.

    Per sample, ``-sum_c w_c t_c (1 - p_c)^gamma log p_c`` with ``t`` smoothed as
    ``(1 - eps) t + eps / C``, normalised by ``sum_i sum_c w_c t_ic`` (the batch size without
    weights). On one-hot targets it equals :func:`torch.nn.functional.cross_entropy` with the same
    weight and label smoothing (or :func:`focal_loss`); it is linear in ``t``, so a mixed target
    ``lam a + (1 - lam) b`` gives ``lam loss(a) + (1 - lam) loss(b)`` (up to the weight normaliser).
    """
    logp = F.log_softmax(logits.float(), dim=-1)  # (B, C)
    t = probs.float()
    w = torch.ones(t.shape[-1], device=t.device) if weight is None else weight.float()
    smoothed = t * (1 - label_smoothing) + label_smoothing / t.shape[-1] if label_smoothing else t
    term = -logp if gamma is None else -((1 - logp.exp()) ** gamma) * logp
    return (smoothed * w * term).sum() / (t * w).sum()


def binary_focal_loss(
    logits: torch.Tensor, target: torch.Tensor, gamma: float, pos_weight: torch.Tensor | None = None
) -> torch.Tensor:
    bce = F.binary_cross_entropy_with_logits(logits.float(), target, reduction="none", pos_weight=pos_weight)
    p = torch.sigmoid(logits.float())
    p_t = p * target + (1 - p) * (1 - target)
    return ((1 - p_t) ** gamma * bce).mean()


class ClassificationOptions(TaskOptions):
    """Options of :class:`ClassificationTask`."""

    kind: Kind = Field("auto", description="auto detects it from the targets in setup (and saves what it found)")
    threshold: float = Field(
        0.5, gt=0, lt=1, description="probability above which binary / multilabel predictions are positive"
    )


class ClassificationTask(Task):
    """Classification (binary / multiclass / multilabel, detected from the data unless given)."""

    selection: ClassVar[Selection] = Selection("accuracy", "max")

    name = "classification"
    Options = ClassificationOptions

    def __init__(self, **options: Any):
        super().__init__(**options)
        self.num_classes = 0
        self.weight: torch.Tensor | None = None

    @property
    def kind(self) -> str:
        """binary, multiclass or multilabel once set up (``auto`` before)."""
        return self.opts.kind

    # -- data --------------------------------------------------------------------------------------
    def _detect(self, data: DataBundle) -> None:
        y = data.train.target
        if self.opts.kind == "auto":
            self.opts.kind = "multilabel" if y.ndim == 2 and y.shape[1] > 1 else "multiclass"
        if self.kind == "multilabel":
            self.num_classes = int(y.shape[1])
        else:
            self.num_classes = int(data.info.get("num_classes") or (int(y.max()) + 1))
            if self.kind == "multiclass" and self.num_classes < 2:
                self.num_classes = 2

    def model_overrides(self, info: dict[str, Any], data: DataBundle) -> dict[str, Any]:
        self._detect(data)
        return {"out": 1 if self.kind == "binary" else self.num_classes}

    def setup(self, data: DataBundle, cfg, device: torch.device) -> None:
        super().setup(data, cfg, device)
        if not self.num_classes:
            self._detect(data)
        y = data.train.target
        if self.kind != "multilabel":
            if y.is_floating_point():
                raise ShapeError(f"{self.kind} classification expects integer class ids; got {y.dtype} targets")
            lo, hi = int(y.min()), int(y.max())
            if lo < 0 or hi >= self.num_classes:
                raise ShapeError(f"class ids must be in [0, {self.num_classes - 1}]; got [{lo}, {hi}]")
        if cfg.class_weights is not None:
            if cfg.class_weights == "balanced":
                counts = (
                    torch.bincount(y.reshape(-1).long().cpu(), minlength=self.num_classes).float()
                    if self.kind != "multilabel"
                    else y.float().sum(0).cpu()
                )
                w = counts.sum() / (self.num_classes * counts.clamp(min=1))
            else:
                w = torch.tensor(cfg.class_weights, dtype=torch.float32)
                if len(w) != self.num_classes:
                    raise ConfigError(f"class_weights has {len(w)} entries; the data has {self.num_classes} classes")
            self.weight = w.to(device)
        if cfg.label_smoothing and self.kind != "multiclass":
            raise ConfigError(
                f"label_smoothing={cfg.label_smoothing} applies to multiclass only; this task is {self.kind}"
            )

    # -- loss --------------------------------------------------------------------------------------
    def loss(self, output: Any, target: torch.Tensor) -> torch.Tensor:
        logits = output_tensor(output)
        cfg = self.cfg
        if self.kind == "multiclass":
            if logits.ndim != 2 or logits.shape[1] != self.num_classes:
                raise ShapeError(f"multiclass loss expects logits (B, {self.num_classes}); got {tuple(logits.shape)}")
            if target.is_floating_point():  # soft targets (B, C) of a mixed batch
                return soft_target_loss(
                    logits, target, weight=self.weight, label_smoothing=cfg.label_smoothing, gamma=cfg.focal_gamma
                )
            if cfg.focal_gamma is not None:
                return focal_loss(logits, target, cfg.focal_gamma, self.weight)
            return F.cross_entropy(logits.float(), target, weight=self.weight, label_smoothing=cfg.label_smoothing)
        if self.kind == "binary" and target.is_floating_point() and target.ndim == 2:
            target = target[:, 1]  # soft targets (B, 2) of a mixed batch: P(positive class)
        logits = logits.reshape(target.shape).float()
        t = target.float()
        pos_weight = None
        if self.weight is not None:
            pos_weight = self.weight[1] / self.weight[0] if self.kind == "binary" else self.weight
        if cfg.focal_gamma is not None:
            return binary_focal_loss(logits, t, cfg.focal_gamma, pos_weight)
        return F.binary_cross_entropy_with_logits(logits, t, pos_weight=pos_weight)

    # -- metrics -----------------------------------------------------------------------------------
    def make_metrics(self, device: torch.device) -> dict[str, Any]:
        tm = torchmetrics().classification
        k = self.num_classes
        if self.kind == "multiclass":
            m = {
                "accuracy": tm.MulticlassAccuracy(num_classes=k, average="micro"),
                "f1": tm.MulticlassF1Score(num_classes=k, average="macro"),
                "auroc": tm.MulticlassAUROC(num_classes=k),
                "ece": tm.MulticlassCalibrationError(num_classes=k),
            }
        elif self.kind == "binary":
            m = {
                "accuracy": tm.BinaryAccuracy(threshold=self.opts.threshold),
                "f1": tm.BinaryF1Score(threshold=self.opts.threshold),
                "auroc": tm.BinaryAUROC(),
                "ece": tm.BinaryCalibrationError(),
            }
        else:
            m = {
                "accuracy": tm.MultilabelAccuracy(num_labels=k, threshold=self.opts.threshold),
                "f1": tm.MultilabelF1Score(num_labels=k, threshold=self.opts.threshold),
                "auroc": tm.MultilabelAUROC(num_labels=k),
            }
        return {name: metric.to(device) for name, metric in m.items()}

    def probabilities(self, output: Any) -> torch.Tensor:
        logits = output_tensor(output).float()
        if self.kind == "multiclass":
            return logits.softmax(-1)
        return torch.sigmoid(logits)

    def update_metrics(self, metrics: dict[str, Any], output: Any, batch: Split) -> None:
        probs = self.probabilities(output)
        target = batch.target
        if self.kind == "binary":
            probs = probs.reshape(target.shape)
        target = target.long()
        for metric in metrics.values():
            metric.update(probs, target)

    def predict(self, model, inputs):
        probs = self.probabilities(model(*inputs))
        if self.kind == "multiclass":
            return probs.argmax(-1)
        return (
            (probs >= self.opts.threshold).long().reshape(probs.shape[0], -1).squeeze(-1)
            if self.kind == "binary"
            else (probs >= self.opts.threshold).long()
        )
