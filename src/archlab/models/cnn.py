"""CNN: plain convolutional stacks for images (2-D) and signals (1-D), with a classifier head.

When to use: images and 2-D / 1-D signals, where translation
equivariance and local filters fit the data. A plain conv stack is the small, fast baseline;
for deeper image nets prefer ResNet (``archlab.models.resnet``). BatchNorm is unreliable with tiny
batches: use ``norm: group`` (GroupNorm, Wu & He 2018) there.

Paper: LeCun et al. 1998, "Gradient-based learning applied to document recognition" (LeNet).

Layout: ``stages`` of ``convs_per_stage`` x (conv -> norm -> activation), then pooling and
dropout; a head that global-pools (any input size) or flattens (fixed input size, given in
``input_size``), then Linear -> activation -> dropout per ``hidden_sizes``, then the classifier.

Presets:
- ``cnn_simple_mnist`` - a SimpleCNN for MNIST: conv 1->32 k3 p1, ReLU, maxpool, flatten,
  fc 128, fc 10 on (B, 1, 28, 28).
- ``cnn_lenet_cifar`` - the LeNet-style CIFAR-10 CNN of PyTorch's classifier tutorial: conv 3->6
  k5, pool, conv 6->16 k5, pool, fc 120, 84, 10 on (B, 3, 32, 32) (62,006 parameters).
- ``cnn_bn_cifar`` - a Conv-BN CIFAR CNN (``CNNPyTorch``): three Conv(k3, p1, bias)-BN-ReLU-MaxPool
  blocks 32/64/128, flatten, fc 256, Dropout(0.5), fc 10 on (B, 3, 32, 32) (620,810 parameters).
- ``cnn1d_mnist1d`` - a 1-D Conv-BN stack for MNIST-1D signals (B, 1, 40), 10 classes.
- ``cnn_digits`` - a small Conv-BN CNN for scikit-learn's 8x8 digits (B, 1, 8, 8), 10 classes.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from pydantic import Field, model_validator
from torch import nn

from archlab.config import (
    MAX_EXTENT,
    Activation,
    ArchConfig,
    Depth,
    Extent,
    InitScheme,
    PositiveInts,
    Size,
    Width,
    Widths,
    int_list,
)
from archlab.layers.checks import check_tensor
from archlab.layers.conv import ConvNorm, PoolKind, conv, conv_norm, global_pool, pool, same_padding
from archlab.layers.init import init_weights
from archlab.layers.mlp import activation, dense_stack
from archlab.layers.params import ParamCount
from archlab.layers.registry import act_layer
from archlab.registry import register


class CNNConfig(ArchConfig):
    """Config of a plain convolutional classifier (1-D or 2-D)."""

    dims: Literal[1, 2] = Field(2, description="1 for signals (B, C, L), 2 for images (B, C, H, W).")
    in_channels: Width = Field(1, ge=1, description="Channels of the input (1 grey, 3 RGB, sensors).")
    channels: PositiveInts = Field(
        default_factory=lambda: [32, 64], description="Output channels of each stage, in order."
    )
    kernel_sizes: int_list(MAX_EXTENT) = Field(
        default_factory=lambda: [3], description="Kernel size per stage; one value applies to every stage."
    )
    padding: Literal["same", "valid"] = Field(
        "same", description="'same' keeps the size at each conv; 'valid' pads nothing (LeNet)."
    )
    convs_per_stage: Depth = Field(
        1, ge=1, description="Convolutions per stage before its pooling (2 gives VGG-style stages)."
    )
    pool: PoolKind = Field("max", description="Pooling after each stage: max, avg or none.")
    pool_size: Extent = Field(2, ge=1, description="Pooling window and stride.")
    norm: ConvNorm = Field(
        "none", description="Norm after each conv: batch (BatchNorm), group (small batches) or none."
    )
    conv_bias: bool | None = Field(
        None, description="Bias in the convs; null: only when norm is none (a norm's shift replaces it)."
    )
    activation: Activation = Field("relu", description="Activation after each conv and hidden Linear.")
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="Dropout after each stage.")
    head: Literal["global_avg", "global_max", "flatten"] = Field(
        "global_avg", description="Global pooling (any input size) or flatten (needs input_size)."
    )
    input_size: int_list(MAX_EXTENT, max_length=2) | None = Field(
        None, description="Spatial size, [L] or [H, W]; required by head 'flatten', also sets example_input."
    )
    hidden_sizes: Widths = Field(
        default_factory=list, description="Hidden Linear widths of the head, before the classifier."
    )
    head_dropout: float = Field(0.0, ge=0.0, lt=1.0, description="Dropout after each hidden Linear of the head.")
    num_classes: Size = Field(10, ge=1, description="Outputs of the classifier (logits).")
    init: InitScheme = Field("kaiming", description="Weight init: kaiming for ReLU nets.")

    @model_validator(mode="after")
    def _consistent(self) -> CNNConfig:
        if len(self.kernel_sizes) not in (1, len(self.channels)):
            raise ValueError(
                f"kernel_sizes={self.kernel_sizes} must have 1 entry or one per stage "
                f"({len(self.channels)}, the length of channels)"
            )
        if self.head == "flatten" and self.input_size is None:
            raise ValueError(
                "input_size is required when head='flatten' (the Linear after flatten needs the "
                f"feature count); give [L] or [H, W], e.g. input_size={[28] * self.dims}"
            )
        if self.input_size is not None:
            if len(self.input_size) != self.dims or any(s < 1 for s in self.input_size):
                raise ValueError(
                    f"input_size={self.input_size} must be {self.dims} positive size(s) for dims={self.dims}"
                )
            self.feature_size()  # raises if the stack shrinks the input to nothing
        return self

    def stage_kernels(self) -> list[int]:
        """One kernel size per stage."""
        return self.kernel_sizes * len(self.channels) if len(self.kernel_sizes) == 1 else list(self.kernel_sizes)

    def feature_size(self) -> list[int]:
        """Spatial size after the conv stack for ``input_size`` (raises ValueError if it vanishes)."""
        if self.input_size is None:
            raise ValueError("input_size is not set")
        sizes = list(self.input_size)
        for i, k in enumerate(self.stage_kernels()):
            for _ in range(self.convs_per_stage):
                if self.padding == "valid":
                    sizes = [s - k + 1 for s in sizes]
            if self.pool != "none":
                sizes = [s // self.pool_size for s in sizes]
            if any(s < 1 for s in sizes):
                raise ValueError(
                    f"input_size={self.input_size} is too small: stage {i} (kernel {k}, "
                    f"padding {self.padding!r}, pool {self.pool} {self.pool_size}) leaves size {sizes}"
                )
        return sizes


class CNN(ParamCount, nn.Module):
    """Conv stages -> global pool or flatten -> MLP head -> logits."""

    def __init__(self, config: CNNConfig):
        super().__init__()
        self.config = config
        c = config
        bias = c.conv_bias if c.conv_bias is not None else c.norm == "none"
        stages: list[nn.Module] = []
        width = c.in_channels
        for out, k in zip(c.channels, c.stage_kernels()):
            layers: list[nn.Module] = []
            for _ in range(c.convs_per_stage):
                pad = same_padding(k) if c.padding == "same" else 0
                layers += [
                    conv(c.dims, width, out, k, padding=pad, bias=bias),
                    conv_norm(c.norm, c.dims, out),
                    activation(c.activation),
                ]
                width = out
            layers.append(pool(c.pool, c.dims, c.pool_size))
            if c.dropout > 0:
                layers.append(nn.Dropout(c.dropout))
            stages.append(nn.Sequential(*layers))
        self.features = nn.Sequential(*stages)
        if c.head == "flatten":
            flat = width * math.prod(c.feature_size())
            self.reduce = nn.Flatten()  # (B, C, *S) -> (B, C * prod(S))
        else:
            flat = width
            self.reduce = nn.Sequential(global_pool(c.head.removeprefix("global_"), c.dims), nn.Flatten())
        self.mlp = dense_stack(flat, c.hidden_sizes, act_layer=act_layer(c.activation), dropout=c.head_dropout)
        self.classifier = nn.Linear(c.hidden_sizes[-1] if c.hidden_sizes else flat, c.num_classes)
        init_weights(self, c.init, nonlinearity=c.activation)

    def example_input(self, batch_size: int = 2) -> tuple[torch.Tensor]:
        c = self.config
        size = c.input_size or [32] * c.dims
        return (torch.randn(batch_size, c.in_channels, *size),)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Classify images or signals.

        Args:
            x: (B, in_channels, H, W) float for dims 2, (B, in_channels, L) for dims 1; with
                head 'flatten' the spatial size must equal ``input_size``.

        Returns:
            (B, num_classes) logits.
        """
        c = self.config
        fixed = c.input_size if c.head == "flatten" else None
        if c.dims == 2:
            h, w = fixed or (None, None)
            check_tensor(self, x, "B C H W", C=c.in_channels, H=h, W=w)
        else:
            check_tensor(self, x, "B C L", C=c.in_channels, L=fixed[0] if fixed else None)
        x = self.features(x)  # (B, C_in, *S) -> (B, channels[-1], *S')
        x = self.reduce(x)  # -> (B, F)
        return self.classifier(self.mlp(x))


_WHEN = "Images and 2-D/1-D signals: local filters, translation equivariance; small fast baseline"
_WHEN_1D = "1-D signals / time series classification with local patterns (1-D convolutions)"
register(
    "cnn_simple_mnist",
    family="cnn",
    model=CNN,
    config=CNNConfig,
    defaults=dict(
        dims=2,
        in_channels=1,
        channels=[32],
        kernel_sizes=[3],
        head="flatten",
        input_size=[28, 28],
        hidden_sizes=[128],
        num_classes=10,
    ),
    modalities=("image",),
    tasks=("classification",),
    description="SimpleCNN: conv 1->32 k3 p1, ReLU, maxpool, flatten, fc 128, fc 10 (28x28)",
    when_to_use=_WHEN,
)
register(
    "cnn_lenet_cifar",
    family="cnn",
    model=CNN,
    config=CNNConfig,
    defaults=dict(
        dims=2,
        in_channels=3,
        channels=[6, 16],
        kernel_sizes=[5],
        padding="valid",
        head="flatten",
        input_size=[32, 32],
        hidden_sizes=[120, 84],
        num_classes=10,
    ),
    modalities=("image",),
    tasks=("classification",),
    description="LeNet-style CIFAR-10 CNN (PyTorch tutorial): 3->6 conv5, pool, 6->16 conv5, pool, fc 120, 84, 10",
    when_to_use=_WHEN,
)
register(
    "cnn_bn_cifar",
    family="cnn",
    model=CNN,
    config=CNNConfig,
    defaults=dict(
        dims=2,
        in_channels=3,
        channels=[32, 64, 128],
        kernel_sizes=[3],
        norm="batch",
        conv_bias=True,
        head="flatten",
        input_size=[32, 32],
        hidden_sizes=[256],
        head_dropout=0.5,
        num_classes=10,
    ),
    modalities=("image",),
    tasks=("classification",),
    description="CNNPyTorch: 3 x Conv3-BN-ReLU-MaxPool (32/64/128), fc 256, Dropout 0.5, fc 10",
    when_to_use=_WHEN,
)
register(
    "cnn1d_mnist1d",
    family="cnn",
    model=CNN,
    config=CNNConfig,
    defaults=dict(
        dims=1,
        in_channels=1,
        channels=[32, 64, 64],
        kernel_sizes=[5, 5, 3],
        norm="batch",
        head="global_avg",
        input_size=[40],
        num_classes=10,
    ),
    modalities=("time_series",),
    tasks=("classification",),
    description="1-D Conv-BN-ReLU-MaxPool stack (32/64/64) with global average pool for MNIST-1D (B, 1, 40)",
    when_to_use=_WHEN_1D,
)
register(
    "cnn_digits",
    family="cnn",
    model=CNN,
    config=CNNConfig,
    defaults=dict(
        dims=2,
        in_channels=1,
        channels=[16, 32],
        kernel_sizes=[3],
        norm="batch",
        head="flatten",
        input_size=[8, 8],
        hidden_sizes=[64],
        head_dropout=0.2,
        num_classes=10,
    ),
    modalities=("image",),
    tasks=("classification",),
    description="Small Conv-BN CNN for 8x8 digits (B, 1, 8, 8): 16/32 channels, flatten, fc 64, fc 10",
    when_to_use=_WHEN,
)
