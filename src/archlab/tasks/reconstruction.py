"""Reconstruction: the autoencoder task, and anomaly detection by reconstruction error.

Anomaly detection is the autoencoder's classic use: train on normal data only;
a sample the model reconstructs badly is unusual. The recipe::

    model = archlab.create("autoencoder_digits")
    ...  # train with reconstruction_loss(model(x), x, kind="bce") on normal data
    threshold = choose_threshold(anomaly_scores(model, x_val_normal), quantile=0.99)
    is_anomaly = anomaly_scores(model, x_new) > threshold

``anomaly_scores`` works with any model whose forward returns the reconstruction, or a tuple
whose first item is it (a VAE's ``(x_hat, mu, logvar)``; in eval mode a VAE decodes z = mu).
:class:`ReconstructionTask` trains by the same loss in ``archlab.fit`` and, given an
``anomaly_class``, reports the detector's AUROC, threshold, recall and false-alarm rate.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from archlab.data.base import DataBundle, Split
from archlab.errors import ConfigError, ShapeError
from archlab.tasks.base import torchmetrics
from archlab.tasks.generative_base import GenerativeOptions, GenerativeTask

ReconKind = Literal["mse", "bce"]


def check_pair(x_hat: torch.Tensor, x: torch.Tensor, kind: str, where: str) -> None:
    """x_hat and x: same-shape (B, ...) tensors; x_hat in [0, 1] for ``kind="bce"`` (else ShapeError)."""
    if kind not in ("mse", "bce"):
        raise ConfigError(f"{where}: kind must be 'mse' or 'bce'; got kind={kind!r}")
    if not isinstance(x_hat, torch.Tensor) or not isinstance(x, torch.Tensor):
        raise ShapeError(f"{where} expects tensors x_hat and x; got {type(x_hat).__name__}, {type(x).__name__}")
    if x_hat.shape != x.shape:
        raise ShapeError(
            f"{where} expects x_hat and x of the same shape; got x_hat {tuple(x_hat.shape)} and x {tuple(x.shape)}"
        )
    if x.dim() < 2:
        raise ShapeError(f"{where} expects x (B, ...) with a batch dimension; got {tuple(x.shape)}")
    if kind == "bce" and x_hat.device.type != "meta" and x_hat.numel():
        lo, hi = float(x_hat.detach().min()), float(x_hat.detach().max())
        if lo < 0.0 or hi > 1.0:
            raise ShapeError(
                f"{where} kind='bce' expects x_hat in [0, 1] (a sigmoid output); got values in [{lo:.3g}, {hi:.3g}]"
            )


def per_sample_error(x_hat: torch.Tensor, x: torch.Tensor, kind: ReconKind = "mse") -> torch.Tensor:
    """Mean reconstruction error of each sample over its features: (B, ...) -> (B,)."""
    check_pair(x_hat, x, kind, "per_sample_error")
    if kind == "mse":
        err = (x_hat - x).pow(2)
    else:
        err = F.binary_cross_entropy(x_hat, x, reduction="none")
    return err.flatten(1).mean(dim=1)  # (B, ...) -> (B, D) -> (B,)


def reconstruction_loss(x_hat: torch.Tensor, x: torch.Tensor, kind: ReconKind = "mse") -> torch.Tensor:
    """Scalar training loss: mean over samples and features.

    Args:
        x_hat: (B, ...) reconstruction; in [0, 1] for ``kind="bce"``.
        x: (B, ...) target, same shape; in [0, 1] for ``kind="bce"``.
        kind: ``"mse"`` (squared error) or ``"bce"`` (binary cross-entropy, for sigmoid outputs
            and data in [0, 1], e.g. pixel intensities).
    """
    return per_sample_error(x_hat, x, kind).mean()


def _reconstruction(out) -> torch.Tensor:
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, (tuple, list)) and out and isinstance(out[0], torch.Tensor):
        return out[0]
    raise ShapeError(f"anomaly_scores expects the model to return x_hat or (x_hat, ...); got {type(out).__name__}")


@torch.no_grad()
def anomaly_scores(model: nn.Module, x: torch.Tensor, kind: ReconKind = "mse") -> torch.Tensor:
    """Per-sample reconstruction error, higher = more anomalous.

    The model is run in eval mode (dropout off, BatchNorm running stats, VAE z = mu) and put back
    in the mode it was in.

    Args:
        model: an autoencoder (forward returns x_hat) or a VAE (forward returns (x_hat, ...)).
        x: (B, ...) a batch of the model's inputs.
        kind: error per feature, ``"mse"`` or ``"bce"``.

    Returns:
        (B,) float scores on x's device.
    """
    was_training = model.training
    model.eval()
    try:
        x_hat = _reconstruction(model(x))
    finally:
        model.train(was_training)
    return per_sample_error(x_hat, x, kind)


def choose_threshold(scores_val: torch.Tensor, quantile: float = 0.99) -> float:
    """Threshold = the ``quantile`` of scores on held-out *normal* data.

    With ``quantile=0.99`` about 1% of normal samples are flagged (the false-positive rate you
    accept); lower it to catch more anomalies at the cost of more false alarms.

    Args:
        scores_val: (N,) anomaly scores of normal validation samples, N >= 1.
        quantile: in (0, 1].

    Returns:
        The threshold as a float; flag ``scores > threshold``.
    """
    if not isinstance(quantile, (int, float)) or isinstance(quantile, bool) or not 0.0 < quantile <= 1.0:
        raise ConfigError(f"choose_threshold: quantile must be in (0, 1]; got quantile={quantile!r}")
    if not isinstance(scores_val, torch.Tensor):
        scores_val = torch.as_tensor(scores_val, dtype=torch.float32)
    if scores_val.dim() != 1 or scores_val.numel() == 0:
        raise ShapeError(f"choose_threshold expects scores_val (N,) with N >= 1; got {tuple(scores_val.shape)}")
    if not torch.isfinite(scores_val).all():
        raise ShapeError("choose_threshold expects finite scores_val; got NaN or inf values")
    return float(torch.quantile(scores_val.detach().double().cpu(), quantile))


# ------------------------------------------------------------------------------------ the task
class ReconstructionOptions(GenerativeOptions):
    """Options of :class:`ReconstructionTask`."""

    loss: ReconKind = Field("mse", description="bce for sigmoid outputs and data in [0, 1]")
    anomaly_class: int | None = Field(None, ge=0, description="class id held out of training as the anomaly")
    quantile: float = Field(0.99, gt=0, le=1, description="normal-score quantile used as the threshold")


class ReconstructionTask(GenerativeTask):
    """Autoencoder training by reconstruction error, with anomaly scores.

    Options:
        loss: ``mse`` or ``bce`` (for sigmoid outputs and data in [0, 1]).
        anomaly_class: a class id of a labelled dataset held out as the anomaly: it is removed
            from the training split (on the bundle passed to ``fit``), and every evaluation
            reports ``auroc`` (anomaly score vs "is that class"), the mean scores of normal and
            anomalous samples, and ``threshold``: the ``quantile`` of the normal samples' scores.
            The threshold of the latest validation pass is kept in ``self.threshold``; a test
            pass after it reports ``recall`` / ``false_alarm_rate`` at that threshold.
        quantile: the normal-score quantile used as threshold (0.99 flags ~1% of normal data).
    """

    name = "reconstruction"
    Options = ReconstructionOptions
    image_range = "unit"

    def __init__(self, **options: Any):
        super().__init__(**options)
        self.threshold: float | None = None
        self._scores: list[torch.Tensor] = []
        self._labels: list[torch.Tensor] = []

    def setup(self, data: DataBundle, cfg, device: torch.device) -> None:
        super().setup(data, cfg, device)
        k = self.opts.anomaly_class
        if k is None:
            return
        if data.train.target is None:
            raise ConfigError(f"anomaly_class={k} needs class labels; dataset {data.name!r} has none")
        y = data.train.target
        if not bool((y == k).any()):
            raise ConfigError(f"anomaly_class={k} does not occur in {data.name!r}'s labels")
        keep = y != k
        data.train = Split(inputs=tuple(t[keep] for t in data.train.inputs), target=y[keep])  # normal data only

    def forward(self, model: nn.Module, batch: Split) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.prepare(model, batch.inputs[0])
        out = model(x)
        return (out[0] if isinstance(out, (tuple, list)) else out), x

    def batch_loss(self, output, batch: Split) -> torch.Tensor:
        x_hat, x = output
        return reconstruction_loss(x_hat.float(), x.float(), self.opts.loss)

    def scores(self, output) -> torch.Tensor:
        x_hat, x = output
        return per_sample_error(x_hat.float(), x.float(), self.opts.loss)

    def make_metrics(self, device: torch.device) -> dict[str, Any]:
        self._scores, self._labels = [], []
        if self.opts.anomaly_class is None:
            return {}
        return {"auroc": torchmetrics().classification.BinaryAUROC().to(device)}

    def update_metrics(self, metrics, output, batch: Split) -> None:
        if self.opts.anomaly_class is None or batch.target is None:
            return
        s = self.scores(output)
        is_anomaly = (batch.target == self.opts.anomaly_class).long()
        metrics["auroc"].update(s, is_anomaly)
        self._scores.append(s.detach())
        self._labels.append(is_anomaly)

    def eval_extras(self, output, batch: Split) -> dict[str, torch.Tensor]:
        s = self.scores(output)
        return {"score_sum": s.sum(), "n": torch.tensor(float(s.numel()), device=s.device)}

    def finish_extras(self, sums) -> dict[str, float]:
        out = {"mean_score": float(sums["score_sum"]) / max(1.0, float(sums["n"]))}
        if self.opts.anomaly_class is None or not self._scores:
            return out
        s, lab = torch.cat(self._scores).float().cpu(), torch.cat(self._labels).cpu()
        normal, anomalous = s[lab == 0], s[lab == 1]
        if len(normal):
            out["mean_score_normal"] = float(normal.mean())
            if self.threshold is not None:  # the threshold of the previous (validation) pass
                out["false_alarm_rate"] = float((normal > self.threshold).float().mean())
            thr = float(torch.quantile(normal.double(), self.opts.quantile))
        if len(anomalous):
            out["mean_score_anomaly"] = float(anomalous.mean())
            if self.threshold is not None:
                out["recall"] = float((anomalous > self.threshold).float().mean())
        if len(normal):
            out["threshold"] = thr
            self.threshold = thr
        return out

    def predict(self, model: nn.Module, inputs: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """Per-sample anomaly scores (B,) - higher is more unusual."""
        return self.scores(self.forward(model, Split(inputs=inputs)))
