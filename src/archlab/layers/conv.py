"""Convolution building blocks shared by the conv families (cnn, resnet, unet, siamese).

Every helper takes ``dims`` (1 for signals ``(B, C, L)``, 2 for images ``(B, C, H, W)``) so one
block definition serves both, as torchtune composes blocks from layer classes.
"""

from __future__ import annotations

import math
from typing import Literal

from torch import nn

from archlab.layers.mlp import activation

ConvNorm = Literal["batch", "group", "none"]
PoolKind = Literal["max", "avg", "none"]

_CONV = {1: nn.Conv1d, 2: nn.Conv2d}
_CONV_T = {1: nn.ConvTranspose1d, 2: nn.ConvTranspose2d}
_BN = {1: nn.BatchNorm1d, 2: nn.BatchNorm2d}
_MAXPOOL = {1: nn.MaxPool1d, 2: nn.MaxPool2d}
_AVGPOOL = {1: nn.AvgPool1d, 2: nn.AvgPool2d}
_GLOBAL_AVG = {1: nn.AdaptiveAvgPool1d, 2: nn.AdaptiveAvgPool2d}
_GLOBAL_MAX = {1: nn.AdaptiveMaxPool1d, 2: nn.AdaptiveMaxPool2d}


def _dims(dims: int) -> int:
    if dims not in (1, 2):
        raise ValueError(f"dims must be 1 or 2; got {dims!r}")
    return dims


def conv(
    dims: int, c_in: int, c_out: int, kernel_size: int, *, stride: int = 1, padding: int | str = 0, bias: bool = True
) -> nn.Module:
    """``nn.Conv1d`` or ``nn.Conv2d`` by ``dims``.

    ``padding="same"`` with an even kernel becomes an explicit zero pad (one more element on the
    right/bottom, as PyTorch and Keras do) followed by an unpadded conv, which avoids PyTorch's
    copy warning for even kernels.
    """
    if padding == "same":
        if kernel_size % 2:
            padding = kernel_size // 2
        else:
            left, right = (kernel_size - 1) // 2, kernel_size // 2
            pad = (nn.ConstantPad1d if dims == 1 else nn.ConstantPad2d)((left, right) * dims, 0.0)
            return nn.Sequential(pad, _CONV[_dims(dims)](c_in, c_out, kernel_size, stride=stride, bias=bias))
    return _CONV[_dims(dims)](c_in, c_out, kernel_size, stride=stride, padding=padding, bias=bias)


def conv_transpose(dims: int, c_in: int, c_out: int, kernel_size: int, *, stride: int) -> nn.Module:
    """``nn.ConvTranspose1d`` or ``nn.ConvTranspose2d`` by ``dims``."""
    return _CONV_T[_dims(dims)](c_in, c_out, kernel_size, stride=stride)


def conv_norm(kind: str, dims: int, channels: int) -> nn.Module:
    """BatchNorm, GroupNorm (for tiny batches, where BatchNorm's statistics are noisy) or Identity.

    GroupNorm uses ``gcd(32, channels)`` groups so any width is accepted.
    """
    if kind == "none":
        return nn.Identity()
    if kind == "batch":
        return _BN[_dims(dims)](channels)
    if kind == "group":
        return nn.GroupNorm(math.gcd(32, channels), channels)
    raise ValueError(f"unknown conv norm {kind!r}; choose from batch, group, none")


def pool(kind: str, dims: int, size: int) -> nn.Module:
    """Max / average pooling with kernel = stride = ``size``, or Identity for ``none``."""
    if kind == "none" or size == 1:
        return nn.Identity()
    if kind == "max":
        return _MAXPOOL[_dims(dims)](size, size)
    if kind == "avg":
        return _AVGPOOL[_dims(dims)](size, size)
    raise ValueError(f"unknown pool {kind!r}; choose from max, avg, none")


def global_pool(kind: Literal["avg", "max"], dims: int) -> nn.Module:
    """Adaptive pooling to one position per channel: ``(B, C, *S) -> (B, C, 1[, 1])``."""
    table = _GLOBAL_AVG if kind == "avg" else _GLOBAL_MAX
    return table[_dims(dims)](1)


def same_padding(kernel_size: int) -> int | str:
    """Padding that keeps the size at stride 1: ``k // 2`` for odd kernels, ``"same"`` for even
    ones (handled by :func:`conv`)."""
    return kernel_size // 2 if kernel_size % 2 else "same"


def conv_norm_act(
    dims: int,
    c_in: int,
    c_out: int,
    kernel_size: int,
    *,
    stride: int = 1,
    padding: int | str | None = None,
    norm: str = "batch",
    act: str = "relu",
    bias: bool | None = None,
) -> nn.Sequential:
    """Conv -> norm -> activation, the unit of most conv nets.

    Args:
        padding: ``None`` keeps the size at stride 1 (see :func:`same_padding`).
        bias: ``None`` drops the conv bias when a norm follows (the norm's shift replaces it).
    """
    if padding is None:
        padding = same_padding(kernel_size) if stride == 1 else kernel_size // 2
    if bias is None:
        bias = norm == "none"
    return nn.Sequential(
        conv(dims, c_in, c_out, kernel_size, stride=stride, padding=padding, bias=bias),
        conv_norm(norm, dims, c_out),
        activation(act),
    )


def init_conv_fan_out(model: nn.Module, *, zero_init_last_bn: bool = False) -> nn.Module:
    """He init as in ResNet (He et al. 2015): conv weights ~ N(0, 2 / fan_out), norms 1 / 0.

    With ``zero_init_last_bn`` the norm layers tagged ``is_last_bn = True`` (the last norm of
    each residual branch) start at gamma 0, so every block starts as the identity (Goyal et
    al. 2017, "Accurate, Large Minibatch SGD").
    """
    for m in model.modules():
        if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.ConvTranspose1d, nn.ConvTranspose2d)):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d, nn.GroupNorm)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    if zero_init_last_bn:
        for m in model.modules():
            if getattr(m, "is_last_bn", False) and getattr(m, "weight", None) is not None:
                nn.init.zeros_(m.weight)
    return model
