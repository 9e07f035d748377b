"""InceptionTime: Inception modules for time-series classification.

When to use: classifying whole series (UCR/UEA-style problems) when a few hundred to a few
thousand labelled series are available; the parallel kernels of 10, 20 and 40 steps see patterns
of several lengths at once, and the residual every three modules keeps six of them trainable.
On the UCR archive it matched HIVE-COTE at a fraction of the cost.
Paper: Ismail Fawaz, Lucas, Forestier, Pelletier, Schmidt, Weber, Webb, Idoumghar, Muller &
Petitjean 2020, "InceptionTime: Finding AlexNet for Time Series Classification" (DMKD). The paper
ensembles five such networks; one network is built here (train several seeds to ensemble).

One Inception module (``filters`` = 32 in the paper)::

    x (B, C, L) -> bottleneck 1x1 conv to 32 channels (when C > 1)
                -> three convs of kernels 10, 20, 40 ("same" padding), 32 filters each
    x           -> max-pool 3 (stride 1) -> 1x1 conv, 32 filters
    concat (B, 4*32, L) -> BatchNorm -> ReLU

Every third module's output is added to a shortcut (1x1 conv + BatchNorm of the input of those
three modules), then ReLU. Global average pooling over time, then a Linear classifier.

Layout: inputs ``(B, C, L)``, channels first, like ``resnet1d`` and the UCR datasets.

Presets: ``inception_time`` (6 modules, 32 filters, kernels 10/20/40: GunPoint-sized
(B, 1, 150), 2 classes).
"""

from __future__ import annotations

import torch
from pydantic import Field
from torch import nn

from archlab.config import MAX_EXTENT, ArchConfig, Depth, Extent, Size, Width, int_list
from archlab.layers.checks import check_tensor
from archlab.layers.conv import conv
from archlab.layers.params import ParamCount
from archlab.registry import register


class InceptionTimeConfig(ArchConfig):
    """Config of an InceptionTime network (Ismail Fawaz et al. 2020)."""

    in_channels: Size = Field(1, ge=1, description="Channels of the series (1: univariate).")
    num_classes: Size = Field(2, ge=1, description="Classes (or regression outputs).")
    length: Extent = Field(150, ge=1, description="Series length, for example_input; any length is accepted.")
    depth: Depth = Field(6, ge=1, description="Inception modules (a residual connection every third).")
    filters: Width = Field(32, ge=1, description="Filters per branch; a module outputs 4 x filters channels.")
    bottleneck: Width = Field(32, ge=1, description="Channels of the 1x1 bottleneck before the long kernels.")
    kernel_sizes: int_list(MAX_EXTENT, max_length=8) = Field(
        default_factory=lambda: [10, 20, 40], description="Kernel of each parallel convolution branch."
    )
    residual: bool = Field(True, description="Shortcut around every three modules.")


class InceptionModule(nn.Module):
    """Bottleneck -> parallel convs of several kernels + max-pool branch -> concat -> BN -> ReLU."""

    def __init__(self, c_in: int, c: InceptionTimeConfig):
        super().__init__()
        # The paper skips the bottleneck on a univariate input: 1 channel has nothing to compress.
        self.bottleneck = conv(1, c_in, c.bottleneck, 1, bias=False) if c_in > 1 else nn.Identity()
        width = c.bottleneck if c_in > 1 else c_in
        self.branches = nn.ModuleList(conv(1, width, c.filters, k, padding="same", bias=False) for k in c.kernel_sizes)
        self.pool_branch = nn.Sequential(nn.MaxPool1d(3, stride=1, padding=1), conv(1, c_in, c.filters, 1, bias=False))
        self.out_channels = c.filters * (len(c.kernel_sizes) + 1)
        self.norm = nn.BatchNorm1d(self.out_channels)
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C_in, L) -> (B, filters * (branches + 1), L)."""
        z = self.bottleneck(x)
        outs = [branch(z) for branch in self.branches] + [self.pool_branch(x)]
        return self.act(self.norm(torch.cat(outs, dim=1)))


class Shortcut(nn.Module):
    """1x1 conv + BatchNorm matching the residual's width."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.proj = conv(1, c_in, c_out, 1, bias=False)
        self.norm = nn.BatchNorm1d(c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C_in, L) -> (B, C_out, L)."""
        return self.norm(self.proj(x))


class InceptionTime(ParamCount, nn.Module):
    """Inception modules with a shortcut every three, global average pooling, Linear head."""

    def __init__(self, config: InceptionTimeConfig):
        super().__init__()
        self.config = config
        c = config
        modules, shortcuts = [], []
        width = residual_in = c.in_channels
        for i in range(c.depth):
            module = InceptionModule(width, c)
            modules.append(module)
            width = module.out_channels
            if c.residual and i % 3 == 2:
                shortcuts.append(Shortcut(residual_in, width))
                residual_in = width
        self.modules_ = nn.ModuleList(modules)
        self.shortcuts = nn.ModuleList(shortcuts)
        self.act = nn.ReLU()
        self.head = nn.Linear(width, c.num_classes)

    def example_input(self, batch_size: int = 2) -> tuple[torch.Tensor]:
        return (torch.randn(batch_size, self.config.in_channels, self.config.length),)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, L) -> (B, 4*filters) pooled features."""
        x = check_tensor(self, x, "B C L", C=self.config.in_channels)
        res, shortcut = x, iter(self.shortcuts)
        for i, module in enumerate(self.modules_):
            x = module(x)
            if self.config.residual and i % 3 == 2:
                x = self.act(x + next(shortcut)(res))
                res = x
        return x.mean(dim=2)  # global average pooling over time: (B, C', L) -> (B, C')

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Classify series.

        Args:
            x: (B, in_channels, L) float.

        Returns:
            (B, num_classes) logits.
        """
        return self.head(self.features(x))


register(
    "inception_time",
    family="inception_time",
    model=InceptionTime,
    config=InceptionTimeConfig,
    defaults=dict(in_channels=1, num_classes=2, length=150, depth=6, filters=32, kernel_sizes=[10, 20, 40]),
    modalities=("time_series",),
    tasks=("classification", "regression"),
    description="InceptionTime (Ismail Fawaz et al. 2020): 6 Inception modules (kernels 10/20/40, 32 filters), "
    "residual every 3, GAP",
    when_to_use="Series classification (UCR/UEA problems): multi-scale kernels, a strong deep baseline",
    knobs={"filters": "width", "depth": "depth"},
)
