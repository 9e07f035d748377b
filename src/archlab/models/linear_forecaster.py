"""Linear forecasters: DLinear and NLinear, one linear map from the window to the horizon.

When to use: forecasting a series with trend and season from a fixed window, especially when the
series is short (hundreds of points): a linear map of the window already contains seasonal naive
(a weight of 1 on the lag ``season``) and exponential smoothing's weighted average, and has
``L x H`` parameters to fit instead of tens of thousands. Zeng et al. showed these one-layer models
beating Transformer forecasters on the long-horizon benchmarks.
Paper: Zeng, Chen, Zhang & Xu 2023, "Are Transformers Effective for Time Series Forecasting?"
(AAAI; the LTSF-Linear family).

Layout: inputs ``(B, L, C)`` - batch, window, channels - like the TCN and RNN families.

- ``dlinear``: the window is split into a trend (a moving average of ``kernel_size`` steps, the
  ends padded by repeating the first / last value) and the remainder (season); one linear map
  ``L -> H`` for each, summed.
- ``nlinear``: the window's last value is subtracted, one linear map ``L -> H``, the last value
  added back - it helps when the test split sits at another level than the training split
  (distribution shift).
- ``linear``: one linear map ``L -> H``.

The maps are shared by every channel (channel-independent, as in the paper) unless
``individual`` gives each channel its own. When the target has other channels than the input
(``out_features != in_features``), a last linear layer mixes the channels at every step.

Output: ``(B, H)`` when ``out_features == 1``, else ``(B, H, out_features)``.

Presets: ``dlinear``, ``nlinear`` (window 24, horizon 1; ``archlab.fit`` sets both from the data).
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field
from torch import nn

from archlab.config import ArchConfig, Extent, Size
from archlab.layers.checks import check_tensor
from archlab.layers.params import ParamCount
from archlab.registry import register


class LinearForecasterConfig(ArchConfig):
    """Config of a DLinear / NLinear forecaster (Zeng et al. 2023)."""

    variant: Literal["dlinear", "nlinear", "linear"] = Field(
        "dlinear", description="dlinear: trend + season maps; nlinear: last value removed; linear: one map."
    )
    seq_len: Extent = Field(24, ge=1, description="Window length L (the maps are L -> horizon).")
    horizon: Size = Field(1, ge=1, description="Future steps predicted.")
    in_features: Size = Field(1, ge=1, description="Channels per time step.")
    out_features: Size = Field(1, ge=1, description="Target channels (1: the output is (B, horizon)).")
    kernel_size: Extent = Field(25, ge=1, description="dlinear: moving-average length of the trend (odd).")
    individual: bool = Field(False, description="One map per channel instead of one shared map.")


class MovingAverage(nn.Module):
    """Trend of a series: the mean of ``kernel_size`` steps around each step, ends repeated."""

    def __init__(self, kernel_size: int):
        super().__init__()
        self.front = (kernel_size - 1) // 2
        self.back = kernel_size - 1 - self.front
        self.pool = nn.AvgPool1d(kernel_size, stride=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, L) -> (B, C, L)."""
        # Repeat the end values (DLinear's series_decomp) so the trend keeps the window's length.
        first, last = x[:, :, :1], x[:, :, -1:]
        padded = torch.cat([first.expand(-1, -1, self.front), x, last.expand(-1, -1, self.back)], dim=2)
        return self.pool(padded)


class TimeMap(nn.Module):
    """A linear map over time ``L -> H``, shared by all channels or one per channel."""

    def __init__(self, seq_len: int, horizon: int, channels: int, individual: bool):
        super().__init__()
        n = channels if individual else 1
        self.maps = nn.ModuleList(nn.Linear(seq_len, horizon) for _ in range(n))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, L) -> (B, C, H)."""
        if len(self.maps) == 1:
            return self.maps[0](x)
        return torch.stack([m(x[:, i]) for i, m in enumerate(self.maps)], dim=1)


class LinearForecaster(ParamCount, nn.Module):
    """DLinear / NLinear / Linear: window ``(B, L, C)`` -> forecast ``(B, H[, out])``."""

    def __init__(self, config: LinearForecasterConfig):
        super().__init__()
        self.config = config
        c = config
        self.decompose = MovingAverage(c.kernel_size) if c.variant == "dlinear" else None
        self.season = TimeMap(c.seq_len, c.horizon, c.in_features, c.individual)
        self.trend = TimeMap(c.seq_len, c.horizon, c.in_features, c.individual) if c.variant == "dlinear" else None
        self.mix = nn.Linear(c.in_features, c.out_features) if c.out_features != c.in_features else None

    def example_input(self, batch_size: int = 2) -> tuple[torch.Tensor]:
        return (torch.randn(batch_size, self.config.seq_len, self.config.in_features),)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Forecast the next ``horizon`` steps.

        Args:
            x: (B, seq_len, in_features) float window.

        Returns:
            (B, horizon) when out_features is 1, else (B, horizon, out_features).
        """
        c = self.config
        x = check_tensor(self, x, "B L C", L=c.seq_len, C=c.in_features)
        x = x.transpose(1, 2)  # (B, L, C) -> (B, C, L)
        if c.variant == "nlinear":
            last = x[:, :, -1:]  # (B, C, 1)
            y = self.season(x - last) + last  # (B, C, H)
        elif c.variant == "dlinear":
            trend = self.decompose(x)
            y = self.season(x - trend) + self.trend(trend)  # (B, C, H)
        else:
            y = self.season(x)
        y = y.transpose(1, 2)  # (B, C, H) -> (B, H, C)
        if self.mix is not None:
            y = self.mix(y)  # (B, H, C) -> (B, H, out)
        return y.squeeze(-1) if c.out_features == 1 else y


_FAMILY = dict(family="linear_forecaster", model=LinearForecaster, config=LinearForecasterConfig)
_WHEN = "Forecasting short or seasonal series from a fixed window: a strong, cheap baseline network (Zeng et al. 2023)"

register(
    "dlinear",
    **_FAMILY,
    defaults=dict(variant="dlinear", seq_len=24, horizon=1, kernel_size=25),
    modalities=("time_series",),
    tasks=("forecasting",),
    description="DLinear (Zeng et al. 2023): moving-average trend + remainder, one linear map each, window -> horizon",
    when_to_use=_WHEN,
)
register(
    "nlinear",
    **_FAMILY,
    defaults=dict(variant="nlinear", seq_len=24, horizon=1),
    modalities=("time_series",),
    tasks=("forecasting",),
    description="NLinear (Zeng et al. 2023): last value removed, one linear map window -> horizon, added back",
    when_to_use=_WHEN,
)
