"""U-Net: encoder-decoder with skip connections, for per-pixel outputs (segmentation).

When to use: images (segmentation) - U-Net is the usual first pick, multi-scale with skips;
also denoising and image-to-image. Common practice: Dice / focal loss for
class imbalance; deep supervision helps.

Paper: Ronneberger, Fischer & Brox 2015, "U-Net: Convolutional Networks for Biomedical Image
Segmentation".

Layout (``depth`` = number of 2x downsamplings, width ``w_i = base_width * 2**i``)::

    enc_0 (w_0) -pool-> enc_1 (w_1) ... -pool-> bottleneck (w_depth)
       |skip              |skip                     | up (transpose conv 2x2/2, or bilinear + 1x1)
    dec_0 (w_0) <-cat- ... dec_{depth-1} <-cat-------+
    -> 1x1 conv -> out_channels logits per pixel

Each encoder / decoder block is (conv3x3 -> [norm] -> ReLU) x 2. Unlike the paper's unpadded
convs (which shrink the map and need cropped skips), the convs are padded so the output has the
input's size.

Input sizes not divisible by ``2**depth`` (the rule): the input is padded on the bottom and right
up to the next multiple of ``2**depth`` (``pad_mode`` reflect or zero; reflect needs each pad
smaller than that side), run through the net, and the output is cropped back to (H, W).

Presets:
- ``unet`` - the classic layout: depth 4, base 64 (64..1024 channels), transposed convs, no
  norm (31.0M parameters); example_input 32x32.
- ``unet_small`` - depth 3, base 16, BatchNorm, for quick experiments and small images.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from torch import nn

from archlab.config import ArchConfig, Extent, Width
from archlab.errors import ShapeError
from archlab.layers.checks import check_tensor, model_name
from archlab.layers.conv import ConvNorm, conv, conv_norm_act, conv_transpose, init_conv_fan_out
from archlab.layers.params import ParamCount
from archlab.registry import register


class UNetConfig(ArchConfig):
    """Config of a 2-D U-Net."""

    in_channels: Width = Field(1, ge=1, description="Input channels (1 grey, 3 RGB).")
    out_channels: Width = Field(2, ge=1, description="Segmentation classes (logits per pixel), or output channels.")
    depth: int = Field(4, ge=1, le=8, description="Number of 2x downsamplings (the paper uses 4).")
    base_width: Width = Field(64, ge=1, description="Channels of the first level; level i has base_width * 2**i.")
    upsample: Literal["transpose", "bilinear"] = Field(
        "transpose", description="Decoder upsampling: transposed conv 2x2/2, or bilinear x2 then 1x1 conv."
    )
    norm: ConvNorm = Field("batch", description="Norm after each 3x3 conv: batch, group or none (the paper has none).")
    pad_mode: Literal["reflect", "zero"] = Field(
        "reflect", description="How inputs not divisible by 2**depth are padded (then the output is cropped back)."
    )
    example_size: Extent = Field(32, ge=1, description="H = W of example_input; the net takes any size.")

    @model_validator(mode="after")
    def _example_fits(self) -> UNetConfig:
        m = 2**self.depth
        pad = (-self.example_size) % m
        if self.pad_mode == "reflect" and pad >= self.example_size:
            raise ValueError(
                f"example_size={self.example_size} is too small to reflect-pad up to a multiple of "
                f"2**depth={m} (the pad, {pad}, must be smaller than the size); use pad_mode='zero' "
                f"or example_size >= {m // 2 + 1}"
            )
        return self


class DoubleConv(nn.Sequential):
    """(conv3x3 -> norm -> ReLU) x 2, keeping the spatial size."""

    def __init__(self, c_in: int, c_out: int, norm: str):
        super().__init__(conv_norm_act(2, c_in, c_out, 3, norm=norm), conv_norm_act(2, c_out, c_out, 3, norm=norm))


class Up(nn.Module):
    """Upsample x2 to half the channels, concatenate the skip, DoubleConv."""

    def __init__(self, c_in: int, c_out: int, mode: str, norm: str):
        super().__init__()
        if mode == "transpose":
            self.up = conv_transpose(2, c_in, c_out, 2, stride=2)
        else:
            self.up = nn.Sequential(
                nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False), conv(2, c_in, c_out, 1)
            )
        self.conv = DoubleConv(2 * c_out, c_out, norm)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        x = self.up(x)  # (B, c_in, h, w) -> (B, c_out, 2h, 2w)
        return self.conv(torch.cat([x, skip], dim=1))  # (B, 2 c_out, 2h, 2w) -> (B, c_out, 2h, 2w)


class UNet(ParamCount, nn.Module):
    """Encoder -> bottleneck -> decoder with skips -> 1x1 conv to per-pixel logits."""

    def __init__(self, config: UNetConfig):
        super().__init__()
        self.config = config
        c = config
        widths = [c.base_width * 2**i for i in range(c.depth + 1)]
        self.encoders = nn.ModuleList()
        width = c.in_channels
        for w in widths[:-1]:
            self.encoders.append(DoubleConv(width, w, c.norm))
            width = w
        self.pool = nn.MaxPool2d(2)
        self.bottleneck = DoubleConv(widths[-2], widths[-1], c.norm)
        # decoders[i] takes level i+1 up to level i; run from the deepest level up
        self.decoders = nn.ModuleList(Up(widths[i + 1], widths[i], c.upsample, c.norm) for i in range(c.depth))
        self.head = conv(2, widths[0], c.out_channels, 1)
        init_conv_fan_out(self)

    def example_input(self, batch_size: int = 2) -> tuple[torch.Tensor]:
        s = self.config.example_size
        return (torch.randn(batch_size, self.config.in_channels, s, s),)

    def _pad(self, x: torch.Tensor) -> torch.Tensor:
        """Pad bottom/right so H and W are multiples of 2**depth."""
        m = 2**self.config.depth
        h, w = x.shape[-2:]
        ph, pw = (-h) % m, (-w) % m
        if ph == 0 and pw == 0:
            return x
        if self.config.pad_mode == "reflect":
            if ph >= h or pw >= w:
                raise ShapeError(
                    f"{model_name(self)} expects x with H > {ph} and W > {pw} to reflect-pad "
                    f"({h}, {w}) up to multiples of {m}; got ({h}, {w}) (use pad_mode='zero')"
                )
            return F.pad(x, (0, pw, 0, ph), mode="reflect")
        return F.pad(x, (0, pw, 0, ph))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Segment images.

        Args:
            x: (B, in_channels, H, W) float, any H and W (padded internally, see the module doc).

        Returns:
            (B, out_channels, H, W) per-pixel logits.
        """
        check_tensor(self, x, "B C H W", C=self.config.in_channels)
        h, w = x.shape[-2:]
        x = self._pad(x)  # (B, C, H, W) -> (B, C, H', W'), multiples of 2**depth
        skips = []
        for enc in self.encoders:
            x = enc(x)
            skips.append(x)  # level i: (B, w_i, H'/2**i, W'/2**i)
            x = self.pool(x)
        x = self.bottleneck(x)  # (B, w_depth, H'/2**depth, W'/2**depth)
        for dec, skip in zip(reversed(self.decoders), reversed(skips)):
            x = dec(x, skip)
        return self.head(x)[..., :h, :w]  # (B, out_channels, H', W') -> crop to (H, W)


_WHEN = "Images (segmentation), denoising, image-to-image: multi-scale + skips (Ronneberger et al. 2015)"
register(
    "unet",
    family="unet",
    model=UNet,
    config=UNetConfig,
    defaults=dict(in_channels=1, out_channels=2, depth=4, base_width=64, upsample="transpose", norm="none"),
    modalities=("image",),
    tasks=("segmentation",),
    description="Classic U-Net (Ronneberger et al. 2015): depth 4, 64..1024 channels, transposed convs",
    when_to_use=_WHEN,
)
register(
    "unet_small",
    family="unet",
    model=UNet,
    config=UNetConfig,
    defaults=dict(in_channels=1, out_channels=2, depth=3, base_width=16, norm="batch"),
    modalities=("image",),
    tasks=("segmentation",),
    description="Small U-Net: depth 3, base width 16, BatchNorm (quick segmentation experiments)",
    when_to_use=_WHEN,
)
