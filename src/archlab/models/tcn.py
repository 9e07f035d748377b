"""Temporal Convolutional Network: causal dilated residual 1-D convolutions.

When to use: time series forecasting and classification that
need a long receptive field, with parallel training (no recurrence) and a fixed, known context.
Paper: Bai, Kolter & Koltun 2018, "An Empirical Evaluation of Generic Convolutional and Recurrent
Networks for Sequence Modeling".

Layout: inputs are ``(B, L, F)`` - batch, time, features - like the RNN family and
the usual TinyTCN sketch; the model transposes to ``(B, F, L)`` for the convolutions.

Each level ``i`` is a residual block of two dilated convolutions (dilation ``2**i``), each
followed by ReLU and dropout, with an optional weight norm, plus a 1x1 convolution on the skip
path when the width changes. A causal convolution pads only on the left by ``(k-1)*d``, so the
output at step t sees inputs at steps <= t only. With two convolutions per block the receptive
field is::

    receptive_field = 1 + 2 * (kernel_size - 1) * sum(2**i for i in range(levels))

``causal=False`` pads both sides (the TinyTCN sketch); the field then has the same size but is
centred on t.

Heads (``head``):
- ``forecaster``: ``(B, horizon)`` from the features at the last step.
- ``classifier``: ``(B, out_features)`` from the last step or the mean over steps (``pooling``).
- ``sequence``: ``(B, L, out_features)``, one output per step (the TinyTCN sketch).

Presets: ``tcn_forecaster``, ``tcn_classifier`` (MNIST-1D-sized ``(B, 40, 1)``), ``tcn_tiny``
(a TinyTCN: dilations 1, 2, 4, per-step output).
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field
from torch import nn
from torch.nn.utils.parametrizations import weight_norm as _weight_norm

from archlab.config import (
    MAX_WIDTH,
    ArchConfig,
    Extent,
    InitScheme,
    Size,
    int_list,
)
from archlab.layers.checks import check_tensor
from archlab.layers.init import init_weights
from archlab.layers.params import ParamCount
from archlab.registry import register


class TCNConfig(ArchConfig):
    """Config of a temporal convolutional network."""

    head: Literal["forecaster", "classifier", "sequence"] = Field(
        "forecaster", description="Output head: multi-step forecast, sequence classifier, or per-step outputs."
    )
    in_features: Size = Field(1, ge=1, description="Features per time step.")
    channels: int_list(MAX_WIDTH, max_length=24) = Field(
        default_factory=lambda: [32, 32, 32, 32], description="Width of each residual level; level i has dilation 2**i."
    )
    kernel_size: Extent = Field(3, ge=2, description="Convolution kernel size.")
    dropout: float = Field(0.1, ge=0.0, lt=1.0, description="Dropout after each convolution.")
    weight_norm: bool = Field(True, description="Weight-normalise the dilated convolutions (as in Bai et al.).")
    causal: bool = Field(True, description="Left padding only (output at t sees steps <= t); False pads both sides.")
    pooling: Literal["last", "mean"] = Field("last", description="classifier: last step's features or mean over steps.")
    out_features: Size = Field(2, ge=1, description="Classes (classifier) or outputs per step (sequence).")
    horizon: Size = Field(1, ge=1, description="Future steps predicted by the forecaster head.")
    seq_len: Extent = Field(
        64, ge=1, description="Typical input length, for example_input and analysis; any length is accepted."
    )
    init: InitScheme = Field("kaiming", description="Weight init of the convolutions and head.")


class TemporalBlock(nn.Module):
    """Two dilated convolutions (pad -> conv -> ReLU -> dropout, twice) + residual, then ReLU."""

    def __init__(self, c_in: int, c_out: int, kernel_size: int, dilation: int, dropout: float, causal: bool):
        super().__init__()
        total = (kernel_size - 1) * dilation
        # Causal: all padding on the left; otherwise split it around t (odd totals lean left).
        self.pad = (total, 0) if causal else (total - total // 2, total // 2)
        self.conv1 = nn.Conv1d(c_in, c_out, kernel_size, dilation=dilation)
        self.conv2 = nn.Conv1d(c_out, c_out, kernel_size, dilation=dilation)
        self.act = nn.ReLU()
        self.drop = nn.Dropout(dropout)
        self.skip = nn.Conv1d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C_in, L) -> (B, C_out, L)."""
        h = self.drop(self.act(self.conv1(nn.functional.pad(x, self.pad))))
        h = self.drop(self.act(self.conv2(nn.functional.pad(h, self.pad))))
        return self.act(h + self.skip(x))


class TCN(ParamCount, nn.Module):
    """Stack of TemporalBlocks with exponential dilations and a forecast/class/per-step head."""

    def __init__(self, config: TCNConfig):
        super().__init__()
        self.config = config
        c = config
        blocks, width = [], c.in_features
        for i, ch in enumerate(c.channels):
            blocks.append(TemporalBlock(width, ch, c.kernel_size, 2**i, c.dropout, c.causal))
            width = ch
        self.blocks = nn.Sequential(*blocks)
        out = c.horizon if c.head == "forecaster" else c.out_features
        self.head = nn.Linear(width, out)
        init_weights(self, c.init, nonlinearity="relu")
        if c.weight_norm:  # after init: the norm is taken from the initialised weight
            for block in self.blocks:
                block.conv1 = _weight_norm(block.conv1)
                block.conv2 = _weight_norm(block.conv2)

    @property
    def dilations(self) -> list[int]:
        return [2**i for i in range(len(self.config.channels))]

    @property
    def receptive_field(self) -> int:
        """Input steps that can reach one output step: 1 + 2*(k-1)*sum(dilations)."""
        return 1 + 2 * (self.config.kernel_size - 1) * sum(self.dilations)

    def example_input(self, batch_size: int = 2) -> tuple[torch.Tensor]:
        return (torch.randn(batch_size, self.config.seq_len, self.config.in_features),)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, L, F) -> (B, L, channels[-1]) per-step features."""
        x = check_tensor(self, x, "B L F", F=self.config.in_features)
        h = self.blocks(x.transpose(1, 2))  # (B, L, F) -> (B, F, L) -> (B, C, L)
        return h.transpose(1, 2)  # (B, L, C)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the TCN and its head.

        Args:
            x: (B, L, in_features) float.

        Returns:
            forecaster (B, horizon); classifier (B, out_features); sequence (B, L, out_features).
        """
        h = self.features(x)
        c = self.config
        if c.head == "sequence":
            return self.head(h)  # (B, L, out)
        pooled = h.mean(dim=1) if (c.head == "classifier" and c.pooling == "mean") else h[:, -1]
        return self.head(pooled)  # (B, out)


_FAMILY = dict(family="tcn", model=TCN, config=TCNConfig)
_WHEN = "Time series forecasting/classification with long receptive fields (Bai et al. 2018)"

register(
    "tcn_forecaster",
    **_FAMILY,
    defaults=dict(head="forecaster", in_features=1, channels=[32, 32, 32, 32], kernel_size=3, horizon=12, seq_len=64),
    modalities=("time_series",),
    tasks=("forecasting", "regression"),
    description="Causal TCN (Bai et al. 2018): 4 levels of 32 channels, k=3, receptive field 61 -> 12-step forecast",
    when_to_use=_WHEN,
)
register(
    "tcn_classifier",
    **_FAMILY,
    defaults=dict(
        head="classifier", in_features=1, channels=[32, 32, 32, 32], kernel_size=3, out_features=10, seq_len=40
    ),
    modalities=("time_series",),
    tasks=("classification",),
    description="Causal TCN classifier for (B, 40, 1) signals (e.g. MNIST-1D): 4 levels, receptive field 61 covers all 40 steps",
    when_to_use=_WHEN,
)
register(
    "tcn_tiny",
    **_FAMILY,
    defaults=dict(
        head="sequence",
        in_features=8,
        channels=[64, 64, 64],
        kernel_size=3,
        weight_norm=False,
        out_features=1,
        seq_len=64,
    ),
    modalities=("time_series",),
    tasks=("forecasting", "regression"),
    description="TinyTCN shape: dilations 1, 2, 4, 64 channels, one output per step",
    when_to_use=_WHEN,
)
