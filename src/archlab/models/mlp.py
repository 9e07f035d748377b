"""MLP: fully connected layers for tabular data, dense features, and heads on encoders.

When to use: tabular data and small dense features; a baseline for everything else.
Standardise features, use weight decay and early stopping.

Presets:
- ``mlp_784_128_10`` - the textbook MNIST MLP: 784 -> 128 -> ReLU -> 10.
- ``mlp_bn_dropout`` - a regularised MLP: [512, 256, 128] hidden, BatchNorm + ReLU + Dropout(0.3).
- ``mlp_tabular`` - a small [256, 256] ReLU + dropout MLP for tabular classification.
- ``mlp_regressor`` - the same shape with one output, for regression.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field
from torch import nn

from archlab.config import Activation, ArchConfig, InitScheme, Size, Widths
from archlab.layers.checks import check_tensor
from archlab.layers.init import init_weights
from archlab.layers.mlp import dense_stack
from archlab.layers.params import ParamCount
from archlab.layers.registry import act_layer, norm_layer
from archlab.registry import register


class MLPConfig(ArchConfig):
    """Config of a multi-layer perceptron."""

    in_features: Size = Field(784, ge=1, description="Size of each input vector.")
    hidden_sizes: Widths = Field(default_factory=lambda: [128], description="Width of each hidden layer, in order.")
    out_features: Size = Field(10, ge=1, description="Outputs (classes, or regression targets).")
    activation: Activation = Field("relu", description="Hidden-layer activation.")
    norm: Literal["none", "batch", "layer"] = Field("none", description="Normalisation after each hidden Linear.")
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="Dropout probability after each hidden layer.")
    init: InitScheme = Field("kaiming", description="Weight init: kaiming for ReLU nets, xavier for tanh.")


class MLP(ParamCount, nn.Module):
    """Linear -> [norm] -> activation -> [dropout] per hidden layer, then a Linear output."""

    def __init__(self, config: MLPConfig):
        super().__init__()
        self.config = config
        self.body = dense_stack(
            config.in_features,
            config.hidden_sizes,
            act_layer=act_layer(config.activation),
            norm_layer=norm_layer(config.norm),
            dropout=config.dropout,
        )
        last = config.hidden_sizes[-1] if config.hidden_sizes else config.in_features
        self.head = nn.Linear(last, config.out_features)
        init_weights(self, config.init, nonlinearity=config.activation)

    def example_input(self, batch_size: int = 2) -> tuple[torch.Tensor]:
        return (torch.randn(batch_size, self.config.in_features),)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map features to outputs.

        Args:
            x: (B, in_features) float.

        Returns:
            (B, out_features) logits or regression outputs.
        """
        x = check_tensor(self, x, "B F", F=self.config.in_features)
        return self.head(self.body(x))


_WHEN = "Tabular data, small dense features, heads on encoders (first pick after gradient-boosted trees)"
register(
    "mlp_784_128_10",
    family="mlp",
    model=MLP,
    config=MLPConfig,
    defaults=dict(in_features=784, hidden_sizes=[128], out_features=10),
    modalities=("tabular", "image"),
    tasks=("classification",),
    description="MNIST MLP: 784-128-10 with ReLU (flattened 28x28 images)",
    when_to_use=_WHEN,
)
register(
    "mlp_bn_dropout",
    family="mlp",
    model=MLP,
    config=MLPConfig,
    defaults=dict(in_features=784, hidden_sizes=[512, 256, 128], out_features=10, norm="batch", dropout=0.3),
    modalities=("tabular", "image"),
    tasks=("classification",),
    description="Regularised MLP: [512, 256, 128] hidden with BatchNorm, ReLU and Dropout(0.3)",
    when_to_use=_WHEN,
)
register(
    "mlp_tabular",
    family="mlp",
    model=MLP,
    config=MLPConfig,
    defaults=dict(in_features=30, hidden_sizes=[256, 256], out_features=2, dropout=0.1),
    modalities=("tabular", "time_series", "points"),
    tasks=("classification",),
    description="Tabular MLP: two 256-wide ReLU layers with dropout 0.1",
    when_to_use=_WHEN,
)
register(
    "mlp_regressor",
    family="mlp",
    model=MLP,
    config=MLPConfig,
    defaults=dict(in_features=10, hidden_sizes=[256, 256], out_features=1, dropout=0.1),
    modalities=("tabular",),
    tasks=("regression",),
    description="Two-layer MLP with one output for regression",
    when_to_use=_WHEN,
)
