"""ResNet: residual conv nets for images, and the 1-D ResNet for time-series classification.

When to use: images (classification) - ResNet is the usual first pick with ViT, for its strong
transfer; very deep networks for image tasks. Residual (skip) connections let
gradients reach early layers, so depth stops hurting optimisation. Common practice: transfer from
ResNet-50, augment (mixup, CutMix), cosine LR with warmup. For 1-D signals the Fawaz et al. ResNet
is a strong time-series-classification baseline.

Papers: He et al. 2015, "Deep Residual Learning for Image Recognition" (BasicBlock, Bottleneck,
ImageNet and CIFAR layouts); Goyal et al. 2017 (zero-init of each branch's last BN gamma);
Wang, Yan & Oates 2017 / Fawaz et al. 2019, "Deep learning for time series classification: a
review" (the 1-D ResNet: 3 blocks of 64/128/128 channels, kernels 8/5/3, global average pool).

Layout: stem (``imagenet``: conv7x7/2 -> BN -> ReLU -> maxpool3/2; ``cifar``: conv3x3/1 -> BN ->
ReLU) -> stages of blocks (the first block of every stage after the first halves the size) ->
global average pool -> Linear. Strides sit on the 3x3 conv of a Bottleneck (torchvision's
"v1.5"); projection shortcuts (1x1 conv + BN, "option B") wherever the shape changes.

Presets:
- ``resnet18`` / ``resnet34`` / ``resnet50`` - He et al.'s ImageNet nets (1000 classes;
  resnet50 has 25,557,032 parameters). example_input is 64x64 to keep checks fast.
- ``tiny_resnet`` - a TinyResNet: ImageNet stem (64) and four 64-wide BasicBlocks.
- ``resnet34_seed004`` - a ResNet-34 layout (``ResNetPyTorch``): BasicBlocks [3, 4, 6, 3], convs
  with bias, 10 classes, with He et al.'s ReLU after the stem's BN.
- ``resnet20_cifar`` - He et al.'s CIFAR ResNet-20: 3x3 stem, stages 16/32/64 x 3 blocks
  (projection shortcuts instead of the paper's zero-padding ones: 272,474 parameters).
- ``resnet18_cifar`` - ResNet-18 with the CIFAR stem, for 32x32 inputs.
- ``resnet1d`` - Fawaz et al.'s 1-D ResNet for GunPoint-like series (B, 1, 150), 2 classes.
- ``resnet1d_mnist1d`` - the same for MNIST-1D (B, 1, 40), 10 classes.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field, model_validator
from torch import nn

from archlab.config import MAX_DEPTH, MAX_EXTENT, ArchConfig, Extent, PositiveInts, Size, Width, int_list
from archlab.layers.checks import check_tensor
from archlab.layers.conv import conv, conv_norm, global_pool, init_conv_fan_out
from archlab.layers.params import ParamCount
from archlab.registry import register

# -- config ------------------------------------------------------------------------------------


class ResNetConfig(ArchConfig):
    """Config of a 2-D ResNet (He et al. 2015)."""

    block: Literal["basic", "bottleneck"] = Field(
        "basic", description="BasicBlock (two 3x3) or Bottleneck (1x1-3x3-1x1, 4x wider out)."
    )
    layers: int_list(MAX_DEPTH) = Field(
        default_factory=lambda: [2, 2, 2, 2],
        description="Blocks per stage ([2,2,2,2] ResNet-18, [3,4,6,3] ResNet-34/50).",
    )
    widths: PositiveInts = Field(
        default_factory=lambda: [64, 128, 256, 512],
        description="Base width of each stage (Bottleneck outputs 4x this).",
    )
    stem: Literal["imagenet", "cifar"] = Field(
        "imagenet", description="imagenet: conv7x7/2 + maxpool (1/4 size); cifar: conv3x3/1 for small images."
    )
    stem_width: Width | None = Field(None, ge=1, description="Stem output channels; null: widths[0].")
    in_channels: Width = Field(3, ge=1, description="Input channels (3 RGB, 1 grey).")
    num_classes: Size = Field(1000, ge=1, description="Outputs of the classifier (logits).")
    norm: Literal["batch", "group"] = Field(
        "batch", description="Norm layer: batch, or group for tiny batches (where BatchNorm is unreliable)."
    )
    conv_bias: bool = Field(False, description="Bias in the convs (He et al. have none; some ports add them).")
    zero_init_residual: bool = Field(
        False, description="Start each block's last norm gamma at 0 so blocks begin as identity."
    )
    example_size: Extent = Field(64, ge=1, description="H = W of example_input; the net takes any size.")

    @model_validator(mode="after")
    def _same_length(self) -> ResNetConfig:
        if sum(self.layers) > 4 * MAX_DEPTH:
            raise ValueError(f"layers={self.layers} has {sum(self.layers)} blocks; at most {4 * MAX_DEPTH} are allowed")
        if len(self.layers) != len(self.widths):
            raise ValueError(
                f"layers={self.layers} and widths={self.widths} must have one entry per stage (same length)"
            )
        return self


# -- blocks ------------------------------------------------------------------------------------


def _last_norm(kind: str, channels: int) -> nn.Module:
    norm = conv_norm(kind, 2, channels)
    norm.is_last_bn = True  # target of zero_init_residual
    return norm


def _shortcut(c_in: int, c_out: int, stride: int, norm: str, bias: bool) -> nn.Module:
    if stride == 1 and c_in == c_out:
        return nn.Identity()
    return nn.Sequential(conv(2, c_in, c_out, 1, stride=stride, bias=bias), conv_norm(norm, 2, c_out))


class BasicBlock(nn.Module):
    """conv3x3(stride) -> norm -> ReLU -> conv3x3 -> norm, plus shortcut, then ReLU."""

    expansion = 1

    def __init__(self, c_in: int, width: int, stride: int = 1, *, norm: str = "batch", bias: bool = False):
        super().__init__()
        self.conv1 = conv(2, c_in, width, 3, stride=stride, padding=1, bias=bias)
        self.norm1 = conv_norm(norm, 2, width)
        self.conv2 = conv(2, width, width, 3, padding=1, bias=bias)
        self.norm2 = _last_norm(norm, width)
        self.shortcut = _shortcut(c_in, width, stride, norm, bias)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.norm1(self.conv1(x)))
        out = self.norm2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class Bottleneck(nn.Module):
    """1x1 reduce -> 3x3(stride) -> 1x1 expand (x4), norms and ReLUs, plus shortcut, then ReLU."""

    expansion = 4

    def __init__(self, c_in: int, width: int, stride: int = 1, *, norm: str = "batch", bias: bool = False):
        super().__init__()
        out = width * self.expansion
        self.conv1 = conv(2, c_in, width, 1, bias=bias)
        self.norm1 = conv_norm(norm, 2, width)
        self.conv2 = conv(2, width, width, 3, stride=stride, padding=1, bias=bias)
        self.norm2 = conv_norm(norm, 2, width)
        self.conv3 = conv(2, width, out, 1, bias=bias)
        self.norm3 = _last_norm(norm, out)
        self.shortcut = _shortcut(c_in, out, stride, norm, bias)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.norm1(self.conv1(x)))
        out = self.relu(self.norm2(self.conv2(out)))
        out = self.norm3(self.conv3(out))
        return self.relu(out + self.shortcut(x))


# -- model -------------------------------------------------------------------------------------


class ResNet(ParamCount, nn.Module):
    """Stem -> residual stages -> global average pool -> Linear."""

    def __init__(self, config: ResNetConfig):
        super().__init__()
        self.config = config
        c = config
        block = BasicBlock if c.block == "basic" else Bottleneck
        stem_w = c.stem_width or c.widths[0]
        if c.stem == "imagenet":
            self.stem = nn.Sequential(
                conv(2, c.in_channels, stem_w, 7, stride=2, padding=3, bias=c.conv_bias),
                conv_norm(c.norm, 2, stem_w),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(3, stride=2, padding=1),
            )
        else:
            self.stem = nn.Sequential(
                conv(2, c.in_channels, stem_w, 3, padding=1, bias=c.conv_bias),
                conv_norm(c.norm, 2, stem_w),
                nn.ReLU(inplace=True),
            )
        stages = []
        width_in = stem_w
        for i, (n_blocks, width) in enumerate(zip(c.layers, c.widths)):
            blocks = []
            for j in range(n_blocks):
                stride = 2 if (i > 0 and j == 0) else 1
                blocks.append(block(width_in, width, stride, norm=c.norm, bias=c.conv_bias))
                width_in = width * block.expansion
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.pool = nn.Sequential(global_pool("avg", 2), nn.Flatten())
        self.fc = nn.Linear(width_in, c.num_classes)
        self.num_features = width_in
        init_conv_fan_out(self, zero_init_last_bn=c.zero_init_residual)

    def example_input(self, batch_size: int = 2) -> tuple[torch.Tensor]:
        s = self.config.example_size
        return (torch.randn(batch_size, self.config.in_channels, s, s),)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_channels, H, W) -> pooled features (B, num_features)."""
        check_tensor(self, x, "B C H W", C=self.config.in_channels)
        x = self.stem(x)  # (B, C, H, W) -> (B, stem_w, H/4, W/4) imagenet, (B, stem_w, H, W) cifar
        x = self.stages(x)  # -> (B, num_features, H/32, W/32) for 4 stages, imagenet stem
        return self.pool(x)  # -> (B, num_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Classify images.

        Args:
            x: (B, in_channels, H, W) float, any H and W.

        Returns:
            (B, num_classes) logits.
        """
        return self.fc(self.forward_features(x))


# -- 1-D ResNet for time series ----------------------------------------------------------------


class ResNet1DConfig(ArchConfig):
    """Config of the Fawaz et al. 2019 1-D ResNet for time-series classification."""

    in_channels: Width = Field(1, ge=1, description="Channels (variables) of the series.")
    widths: PositiveInts = Field(default_factory=lambda: [64, 128, 128], description="Channels of each residual block.")
    kernel_sizes: int_list(MAX_EXTENT) = Field(
        default_factory=lambda: [8, 5, 3],
        description="Kernel of each of the three convs inside a block ('same' padding).",
    )
    num_classes: Size = Field(2, ge=1, description="Outputs of the classifier (logits).")
    norm: Literal["batch", "group"] = Field("batch", description="Norm after each conv.")
    length: Extent = Field(150, ge=1, description="Series length of example_input; the net takes any length.")


class ResidualBlock1D(nn.Module):
    """conv(k1)-norm-ReLU -> conv(k2)-norm-ReLU -> conv(k3)-norm, plus a norm'd shortcut, ReLU."""

    def __init__(self, c_in: int, c_out: int, kernel_sizes: list[int], norm: str):
        super().__init__()
        layers: list[nn.Module] = []
        width = c_in
        for i, k in enumerate(kernel_sizes):
            last = i == len(kernel_sizes) - 1
            layers += [conv(1, width, c_out, k, padding="same", bias=False), conv_norm(norm, 1, c_out)]
            if last:
                layers[-1].is_last_bn = True
            else:
                layers.append(nn.ReLU(inplace=True))
            width = c_out
        self.body = nn.Sequential(*layers)
        # Fawaz et al.: 1x1 conv + BN when the width changes, else BN alone on the shortcut.
        self.shortcut = (
            nn.Sequential(conv(1, c_in, c_out, 1, bias=False), conv_norm(norm, 1, c_out))
            if c_in != c_out
            else conv_norm(norm, 1, c_out)
        )
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.body(x) + self.shortcut(x))


class ResNet1D(ParamCount, nn.Module):
    """Residual blocks (no downsampling) -> global average pool over time -> Linear."""

    def __init__(self, config: ResNet1DConfig):
        super().__init__()
        self.config = config
        c = config
        blocks = []
        width = c.in_channels
        for w in c.widths:
            blocks.append(ResidualBlock1D(width, w, c.kernel_sizes, c.norm))
            width = w
        self.blocks = nn.Sequential(*blocks)
        self.pool = nn.Sequential(global_pool("avg", 1), nn.Flatten())
        self.fc = nn.Linear(width, c.num_classes)
        init_conv_fan_out(self)

    def example_input(self, batch_size: int = 2) -> tuple[torch.Tensor]:
        return (torch.randn(batch_size, self.config.in_channels, self.config.length),)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Classify series.

        Args:
            x: (B, in_channels, L) float, channels first, any length L.

        Returns:
            (B, num_classes) logits.
        """
        check_tensor(self, x, "B C L", C=self.config.in_channels)
        x = self.blocks(x)  # (B, C, L) -> (B, widths[-1], L)
        return self.fc(self.pool(x))  # -> (B, widths[-1]) -> (B, num_classes)


# -- presets -----------------------------------------------------------------------------------

_WHEN = "Images (classification): first pick with ViT, strong transfer; very deep nets"
_WHEN_SMALL = "Small images (CIFAR-size, 32x32): residual net with a 3x3 stem that keeps resolution"
_WHEN_1D = "Time series / 1-D signal classification: strong deep baseline (Fawaz et al. 2019)"


def _resnet(name: str, description: str, when: str = _WHEN, **defaults) -> None:
    register(
        name,
        family="resnet",
        model=ResNet,
        config=ResNetConfig,
        defaults=defaults,
        modalities=("image",),
        tasks=("classification",),
        description=description,
        when_to_use=when,
    )


_resnet(
    "resnet18",
    "ResNet-18 (He et al. 2015): BasicBlocks [2, 2, 2, 2], ImageNet stem",
    block="basic",
    layers=[2, 2, 2, 2],
)
_resnet(
    "resnet34",
    "ResNet-34 (He et al. 2015): BasicBlocks [3, 4, 6, 3], ImageNet stem",
    block="basic",
    layers=[3, 4, 6, 3],
)
_resnet(
    "resnet50",
    "ResNet-50 (He et al. 2015): Bottlenecks [3, 4, 6, 3], ImageNet stem, 25.6M params",
    block="bottleneck",
    layers=[3, 4, 6, 3],
)
_resnet(
    "tiny_resnet",
    "TinyResNet: conv7x7/2-BN-ReLU-maxpool stem, four 64-wide BasicBlocks, GAP",
    block="basic",
    layers=[4],
    widths=[64],
    num_classes=10,
)
_resnet(
    "resnet34_seed004",
    "ResNet-34 layout (ResNetPyTorch): BasicBlocks [3, 4, 6, 3] with conv bias, 10 classes",
    block="basic",
    layers=[3, 4, 6, 3],
    conv_bias=True,
    num_classes=10,
)
_resnet(
    "resnet20_cifar",
    "ResNet-20 for CIFAR (He et al. 2015): 3x3 stem, 16/32/64 x 3 BasicBlocks",
    when=_WHEN_SMALL,
    block="basic",
    layers=[3, 3, 3],
    widths=[16, 32, 64],
    stem="cifar",
    num_classes=10,
    example_size=32,
)
_resnet(
    "resnet18_cifar",
    "ResNet-18 with the CIFAR stem (3x3 conv, no maxpool) for 32x32 images",
    when=_WHEN_SMALL,
    block="basic",
    layers=[2, 2, 2, 2],
    stem="cifar",
    num_classes=10,
    example_size=32,
)
register(
    "resnet1d",
    family="resnet",
    model=ResNet1D,
    config=ResNet1DConfig,
    defaults=dict(in_channels=1, num_classes=2, length=150),
    modalities=("time_series",),
    tasks=("classification",),
    description="Fawaz et al. 2019 TSC ResNet: 3 blocks 64/128/128, kernels 8/5/3, GAP (GunPoint: L=150, 2 classes)",
    when_to_use=_WHEN_1D,
)
register(
    "resnet1d_mnist1d",
    family="resnet",
    model=ResNet1D,
    config=ResNet1DConfig,
    defaults=dict(in_channels=1, num_classes=10, length=40),
    modalities=("time_series",),
    tasks=("classification",),
    description="Fawaz et al. 2019 TSC ResNet sized for MNIST-1D: (B, 1, 40), 10 classes",
    when_to_use=_WHEN_1D,
)
