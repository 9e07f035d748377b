"""Building blocks of the diffusion denoisers (see :mod:`archlab.models.diffusion`).

The time embedding is :class:`archlab.layers.embeddings.SinusoidalTimeEmbedding` (the
Transformer's position encoding applied to the diffusion step ``t``).

- :class:`TimeResBlock` - GroupNorm -> SiLU -> conv, with the time (+ class) embedding added
  between the two convolutions, plus a residual path (Ho et al. 2020, Appendix B; labml's
  ``ResidualBlock``).
- :class:`SelfAttention2d` - multi-head self-attention over the H*W positions of a feature map,
  used at low resolution only because its cost grows with (H*W)^2.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class TimeResBlock(nn.Module):
    """Residual block conditioned on an embedding vector (time, plus class for CFG models).

    h = conv(SiLU(GN(x))); h += Linear(SiLU(emb)) broadcast over H, W;
    h = conv(dropout(SiLU(GN(h)))); out = h + skip(x).
    """

    def __init__(self, in_ch: int, out_ch: int, emb_dim: int, groups: int, dropout: float = 0.0):
        super().__init__()
        self.norm1 = nn.GroupNorm(groups, in_ch)
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.emb = nn.Linear(emb_dim, out_ch)
        self.norm2 = nn.GroupNorm(groups, out_ch)
        self.drop = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1)
        self.skip = nn.Conv2d(in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.emb(F.silu(emb))[:, :, None, None]  # (B, C) -> (B, C, 1, 1)
        h = self.conv2(self.drop(F.silu(self.norm2(h))))
        return h + self.skip(x)


class SelfAttention2d(nn.Module):
    """Pre-norm multi-head self-attention over the spatial positions, with a residual."""

    def __init__(self, channels: int, groups: int, heads: int = 1):
        super().__init__()
        if channels % heads:
            raise ValueError(f"attention channels={channels} must divide by heads={heads}")
        self.heads = heads
        self.norm = nn.GroupNorm(groups, channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        qkv = self.qkv(self.norm(x))  # (B, 3C, H, W)
        # (B, 3C, H, W) -> (3, B, heads, H*W, C/heads)
        qkv = qkv.reshape(b, 3, self.heads, c // self.heads, h * w).permute(1, 0, 2, 4, 3)
        out = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2])  # (B, heads, HW, C/heads)
        out = out.permute(0, 1, 3, 2).reshape(b, c, h, w)  # -> (B, C, H, W)
        return x + self.proj(out)


class Downsample(nn.Module):
    """Halve H and W with a stride-2 3x3 convolution."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class Upsample(nn.Module):
    """Double H and W: nearest-neighbour upsampling then a 3x3 convolution (no checkerboard)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class UNetLevel(nn.Module):
    """One resolution of the U-Net: residual blocks, each optionally followed by attention."""

    def __init__(self, blocks: list[TimeResBlock], attns: list[nn.Module]):
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        self.attns = nn.ModuleList(attns)
