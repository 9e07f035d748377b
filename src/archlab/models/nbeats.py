"""N-BEATS: stacks of fully connected blocks that explain the window away, block by block.

When to use: univariate forecasting from a fixed window with no covariates, when a linear map
underfits (non-linear dynamics, several seasons); the interpretable stacks split the forecast
into a polynomial trend and a Fourier season. N-BEATS won the M4 competition's neural entries
without any time-series-specific component besides the residual stacking.
Paper: Oreshkin, Carpov, Chapados & Bengio 2020, "N-BEATS: Neural basis expansion analysis for
interpretable time series forecasting" (ICLR).

Each block reads what is left of the window, ``r`` (B, L), and through ``layers`` ReLU linear
layers computes the expansion coefficients ``theta_b``, ``theta_f``; a basis turns them into a
backcast (B, L) and a forecast (B, H)::

    r_{k+1} = r_k - backcast_k            (doubly residual stacking)
    y       = sum_k forecast_k

Bases (``stack_types``, one per stack):
- ``generic``: a learned linear basis (a Linear layer from theta to L / H steps).
- ``trend``: polynomials ``t**p`` for ``p = 0..degree`` on ``t = i / n`` (theta has degree+1 values).
- ``seasonality``: ``cos(2 pi k t)``, ``sin(2 pi k t)`` for ``k = 0..floor(H/2 - 1)``, with
  ``t = i / H`` continuing backwards over the window (the paper's Fourier basis).

With ``share_weights`` the blocks of one stack share their parameters (the paper's
interpretable configuration). Layout: inputs ``(B, L, 1)`` like the other forecasters; N-BEATS
is univariate. Output ``(B, H)``.

Presets: ``nbeats_generic`` (2 stacks x 3 blocks of 4 layers, width 128) and
``nbeats_interpretable`` (a trend stack and a seasonality stack, 3 shared blocks each).
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from pydantic import Field, model_validator
from torch import nn

from archlab.config import MAX_DEPTH, ArchConfig, Depth, Extent, Size, Width
from archlab.errors import ConfigError
from archlab.layers.checks import check_tensor
from archlab.layers.params import ParamCount
from archlab.registry import register

StackType = Literal["generic", "trend", "seasonality"]


class NBeatsConfig(ArchConfig):
    """Config of an N-BEATS forecaster (Oreshkin et al. 2020)."""

    seq_len: Extent = Field(24, ge=2, description="Window length L (the backcast's length).")
    horizon: Size = Field(1, ge=1, description="Future steps predicted (the forecast's length).")
    in_features: Literal[1] = Field(1, description="Channels per step: N-BEATS is univariate (1).")
    out_features: Literal[1] = Field(1, description="Target channels: 1 (univariate).")
    stack_types: list[StackType] = Field(
        default_factory=lambda: ["generic", "generic"],
        min_length=1,
        max_length=MAX_DEPTH,
        description="One basis per stack: generic, trend or seasonality.",
    )
    blocks_per_stack: Depth = Field(3, ge=1, description="Blocks in each stack.")
    layers: Depth = Field(4, ge=1, description="Fully connected ReLU layers in each block.")
    width: Width = Field(128, ge=1, description="Width of the fully connected layers (512 in the paper).")
    theta_size: Width = Field(32, ge=1, description="generic: size of theta before the learned basis.")
    degree: Depth = Field(3, ge=0, description="trend: degree of the polynomial basis.")
    share_weights: bool = Field(False, description="Blocks of one stack share their parameters.")

    @model_validator(mode="after")
    def _check(self) -> NBeatsConfig:
        if "seasonality" in self.stack_types and self.horizon < 2:
            raise ConfigError(
                f"nbeats: a seasonality stack needs horizon >= 2 (one Fourier harmonic); got horizon={self.horizon}"
            )
        return self


def _time(n: int, scale: int, start: int = 0) -> torch.Tensor:
    return torch.arange(start, start + n, dtype=torch.float32) / scale


def polynomial_basis(degree: int, steps: torch.Tensor) -> torch.Tensor:
    """(degree+1, n): rows ``t**p``."""
    return torch.stack([steps**p for p in range(degree + 1)])


def fourier_basis(harmonics: int, steps: torch.Tensor) -> torch.Tensor:
    """(2*harmonics, n): rows ``cos(2 pi k t)`` then ``sin(2 pi k t)``, k = 0..harmonics-1."""
    k = torch.arange(harmonics, dtype=torch.float32)[:, None]
    angle = 2 * math.pi * k * steps[None, :]
    return torch.cat([torch.cos(angle), torch.sin(angle)])


class NBeatsBlock(nn.Module):
    """FC stack -> theta_b, theta_f -> backcast (B, L) and forecast (B, H) through a basis."""

    def __init__(self, c: NBeatsConfig, kind: StackType, backcast: bool = True):
        super().__init__()
        self.has_backcast = backcast
        layers: list[nn.Module] = []
        width = c.seq_len
        for _ in range(c.layers):
            layers += [nn.Linear(width, c.width), nn.ReLU()]
            width = c.width
        self.fc = nn.Sequential(*layers)
        self.kind = kind
        if kind == "generic":
            self.theta_f = nn.Linear(c.width, c.theta_size, bias=False)
            if backcast:
                self.theta_b = nn.Linear(c.width, c.theta_size, bias=False)
                self.basis_b = nn.Linear(c.theta_size, c.seq_len)
            self.basis_f = nn.Linear(c.theta_size, c.horizon)
            return
        if kind == "trend":
            back = polynomial_basis(c.degree, _time(c.seq_len, c.seq_len, -c.seq_len))
            fore = polynomial_basis(c.degree, _time(c.horizon, c.horizon))
        else:  # seasonality: harmonics up to the horizon's Nyquist frequency
            harmonics = c.horizon // 2  # k = 0 .. H/2 - 1
            back = fourier_basis(harmonics, _time(c.seq_len, c.horizon, -c.seq_len))
            fore = fourier_basis(harmonics, _time(c.horizon, c.horizon))
        # Fixed bases follow from the config: rebuilt on load, so not saved.
        self.register_buffer("back", back, persistent=False)  # (P, L)
        self.register_buffer("fore", fore, persistent=False)  # (P, H)
        if backcast:
            self.theta_b = nn.Linear(c.width, back.shape[0], bias=False)
        self.theta_f = nn.Linear(c.width, fore.shape[0], bias=False)

    def forward(self, r: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor]:
        """(B, L) -> backcast (B, L) (None for the last block), forecast (B, H)."""
        h = self.fc(r)  # (B, width)
        if self.kind == "generic":
            forecast = self.basis_f(self.theta_f(h))
            return (self.basis_b(self.theta_b(h)) if self.has_backcast else None), forecast
        forecast = self.theta_f(h) @ self.fore  # (B, P) @ (P, H) -> (B, H)
        return (self.theta_b(h) @ self.back if self.has_backcast else None), forecast


class NBeats(ParamCount, nn.Module):
    """Doubly residual stacks of N-BEATS blocks."""

    def __init__(self, config: NBeatsConfig):
        super().__init__()
        self.config = config
        blocks: list[NBeatsBlock] = []
        repeats: list[int] = []
        for kind in config.stack_types:
            if config.share_weights:  # one block applied blocks_per_stack times (one copy saved)
                blocks.append(NBeatsBlock(config, kind))
                repeats.append(config.blocks_per_stack)
            else:
                blocks += [NBeatsBlock(config, kind) for _ in range(config.blocks_per_stack)]
                repeats += [1] * config.blocks_per_stack
        if not config.share_weights:  # nothing reads the last block's backcast: it has none
            blocks[-1] = NBeatsBlock(config, config.stack_types[-1], backcast=False)
        self.blocks = nn.ModuleList(blocks)
        self.repeats = tuple(repeats)

    def example_input(self, batch_size: int = 2) -> tuple[torch.Tensor]:
        return (torch.randn(batch_size, self.config.seq_len, 1),)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Forecast the next ``horizon`` steps.

        Args:
            x: (B, seq_len, 1) float window.

        Returns:
            (B, horizon) forecast.
        """
        c = self.config
        x = check_tensor(self, x, "B L C", L=c.seq_len, C=1)
        r = x[:, :, 0]  # (B, L, 1) -> (B, L)
        y = x.new_zeros(x.shape[0], c.horizon)
        for block, times in zip(self.blocks, self.repeats):
            for _ in range(times):
                backcast, forecast = block(r)
                if backcast is not None:
                    r = r - backcast  # the next block sees what this one did not explain
                y = y + forecast
        return y


_FAMILY = dict(family="nbeats", model=NBeats, config=NBeatsConfig)
_WHEN = "Univariate forecasting from a window when a linear map underfits; interpretable trend + season stacks"

register(
    "nbeats_generic",
    **_FAMILY,
    defaults=dict(stack_types=["generic", "generic"], blocks_per_stack=3, layers=4, width=128),
    modalities=("time_series",),
    tasks=("forecasting",),
    description="N-BEATS generic (Oreshkin et al. 2020): 2 stacks x 3 blocks of 4 FC layers (128), learned bases",
    when_to_use=_WHEN,
    knobs={"width": "width", "blocks_per_stack": "depth"},
)
register(
    "nbeats_interpretable",
    **_FAMILY,
    defaults=dict(
        stack_types=["trend", "seasonality"], blocks_per_stack=3, layers=4, width=128, horizon=2, share_weights=True
    ),
    modalities=("time_series",),
    tasks=("forecasting",),
    description="N-BEATS interpretable (Oreshkin et al. 2020): polynomial trend + Fourier season stacks, shared blocks",
    when_to_use=_WHEN,
    knobs={"width": "width"},
)
