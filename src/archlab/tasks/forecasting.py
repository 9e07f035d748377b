"""Forecasting: windows of the past in, the next ``horizon`` values out (multi-step).

Inputs: a window (B, L) or (B, L, C); target (B, H) or (B, H, C). The loss is MSE on the whole
horizon; metrics are MAE and RMSE, reported beside the same errors of a seasonal-naive forecast
on the same windows (``naive_mae``, ``naive_rmse``), and the ratio ``mase_like`` = MAE / naive MAE
(below 1 means the model beats the baseline). Seasonal naive repeats the last ``season`` values
of each window (``DataBundle.info["season"]``); without a season it repeats the last value.
With multivariate inputs and a univariate target, ``info["target_index"]`` (default 0) names the
input channel the target is.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from archlab.data.base import DataBundle, Split
from archlab.errors import ShapeError
from archlab.tasks.base import Task, TaskOptions, torchmetrics
from archlab.tasks.pictures import ForecastPlot, Picture
from archlab.tasks.regression import match_target
from archlab.train.evaluate import predict_split
from archlab.train.task_protocol import Selection


def seasonal_naive(
    window: torch.Tensor, horizon: int, season: int | None, target_index: int = 0, target_ndim: int = 2
) -> torch.Tensor:
    """Seasonal-naive forecast of ``horizon`` steps from ``window`` (B, L) or (B, L, C).

    Step ``h`` (0-based) is ``window[L - season + (h % season)]``; ``season=None`` (or 1) repeats
    the last value.
    """
    x = window
    if x.ndim == 3 and target_ndim == 2:
        x = x[:, :, target_index]  # (B, L, C) -> (B, L)
    L = x.shape[1]
    s = season if season and season > 1 else 1
    if s > L:
        raise ShapeError(f"seasonal naive needs windows of at least season={s} steps; got length {L}")
    idx = torch.tensor([L - s + (h % s) for h in range(horizon)], device=x.device)
    return x.index_select(1, idx)  # (B, H) or (B, H, C)


class ForecastingOptions(TaskOptions):
    """Options of :class:`ForecastingTask`."""

    season: int | None = Field(
        None,
        ge=1,
        description="period of the seasonal-naive baseline (default: the "
        "data's info['season']; None repeats the last value)",
    )


class ForecastingTask(Task):
    """Multi-step forecasting with a seasonal-naive baseline reported beside the model."""

    selection: ClassVar[Selection] = Selection("mae", "min")

    name = "forecasting"
    Options = ForecastingOptions

    def __init__(self, **options: Any):
        super().__init__(**options)
        self.target_index = 0

    @property
    def season(self) -> int | None:
        return self.opts.season

    def model_overrides(self, info, data: DataBundle) -> dict[str, Any]:
        y = data.train.target
        return {
            "out": int(torch.tensor(y.shape[1:]).prod()) if y.ndim > 1 else 1,
            "horizon": int(y.shape[1]) if y.ndim > 1 else 1,
        }

    def setup(self, data: DataBundle, cfg, device) -> None:
        super().setup(data, cfg, device)
        if self.opts.season is None and data.info.get("season"):
            self.opts.season = int(data.info["season"])  # saved with the run's options
        self.target_index = int(data.info.get("target_index", 0))

    def loss(self, output, target):
        return F.mse_loss(match_target(output, target, self.name).float(), target.float())

    def make_metrics(self, device):
        tm = torchmetrics().regression
        return {"mae": tm.MeanAbsoluteError().to(device), "rmse": tm.MeanSquaredError(squared=False).to(device)}

    def update_metrics(self, metrics, output, batch: Split) -> None:
        pred = match_target(output, batch.target, self.name).float()
        for metric in metrics.values():
            metric.update(pred.reshape(-1), batch.target.float().reshape(-1))

    def eval_extras(self, output, batch: Split) -> dict[str, torch.Tensor]:
        t = batch.target.float()
        t2 = t if t.ndim > 1 else t.unsqueeze(1)
        naive = seasonal_naive(batch.inputs[0].float(), t2.shape[1], self.season, self.target_index, t2.ndim)
        err = naive.reshape(t2.shape) - t2
        return {
            "naive_abs": err.abs().sum(),
            "naive_sq": err.pow(2).sum(),
            "n": torch.tensor(float(t.numel()), device=t.device),
        }

    def finish_extras(self, sums: dict[str, torch.Tensor]) -> dict[str, float]:
        n = float(sums["n"])
        return {"naive_mae": float(sums["naive_abs"]) / n, "naive_rmse": (float(sums["naive_sq"]) / n) ** 0.5}

    def on_fit_end(self, model: nn.Module, data: DataBundle) -> dict[str, Picture]:
        """``forecast``: the held-out split's actual values, the model's one-step-ahead forecasts
        and the seasonal-naive ones, in the data's own units (the test split, else validation)."""
        split = data.test if data.test is not None else data.val
        if split is None or split.target is None or len(split) == 0:
            return {}
        device = next(model.parameters()).device
        pred = predict_split(model, self, split.inputs, batch_size=512, device=device)
        target = split.target.float().cpu()
        t2 = target if target.ndim > 1 else target.unsqueeze(1)
        pred = pred.reshape(t2.shape)
        naive = seasonal_naive(split.inputs[0].float().cpu(), t2.shape[1], self.season, self.target_index, t2.ndim)

        def first_step(t: torch.Tensor) -> torch.Tensor:  # (N, H[, C]) -> (N,): step 1 of the horizon, channel 0
            return data.denormalize_target(t.reshape(t2.shape))[:, 0].reshape(len(t2), -1)[:, 0]

        return {
            "forecast": ForecastPlot(
                first_step(target),
                first_step(pred),
                first_step(naive),
                title=f"{data.name}: one-step-ahead forecasts on the held-out split",
            )
        }
