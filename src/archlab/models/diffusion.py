"""Diffusion denoisers: the networks eps_theta(x_t, t[, y]) of DDPM / DDIM.

When to use: generative modelling of images (and audio) when fidelity and
training stability matter more than sampling speed; GANs and autoregressive models are the
alternatives. Common practice: sinusoidal time embeddings, U-Net backbones, cosine noise schedules,
classifier-free guidance for conditional tasks.

Papers: Ho, Jain & Abbeel 2020 "Denoising Diffusion Probabilistic Models" (DDPM, the eps
objective and the U-Net denoiser); Song, Meng & Ermon 2020 "Denoising Diffusion Implicit Models"
(DDIM sampling); Nichol & Dhariwal 2021 "Improved DDPM" (cosine schedule); Ho & Salimans 2022
"Classifier-Free Diffusion Guidance" (CFG: one network, a null class dropped in during training).

The network only predicts the noise. The process around it - noise schedule, q(x_t | x_0),
training loss, DDPM/DDIM samplers, guidance - lives in :mod:`archlab.tasks.diffusion`
(the "system vs model" split of DESIGN.md).

Presets:
- ``ddpm_unet_digits`` - unconditional U-Net on 1x8x8 images (sklearn's 8x8 digits scaled to
  [-1, 1]): channels 32/64, attention at 4x4.
- ``ddpm_unet_cond`` - the same U-Net with 10 classes + a null class for classifier-free guidance.
- ``ddpm_points`` - an MLP denoiser for 2-D toy densities (moons, rings), a tiny 1-D U-Net
  sketch made time-aware.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import Field, field_validator, model_validator
from torch import nn

from archlab.config import (
    MAX_EXTENT,
    ArchConfig,
    Depth,
    Extent,
    Size,
    Width,
    int_list,
)
from archlab.errors import ConfigError
from archlab.layers.checks import check_range, check_tensor, model_name
from archlab.layers.embeddings import SinusoidalTimeEmbedding
from archlab.layers.params import ParamCount
from archlab.models.diffusion_unet import (
    Downsample,
    SelfAttention2d,
    TimeResBlock,
    UNetLevel,
    Upsample,
)
from archlab.registry import register

# -- configs ------------------------------------------------------------------------------------


class _DenoiserFields(ArchConfig):
    num_timesteps: Size = Field(1000, ge=1, description="T: timesteps t lie in [0, T).")
    num_classes: Size = Field(
        0,
        ge=0,
        description="Classes for conditioning; 0 = unconditional. Index num_classes is the null class of classifier-free guidance.",
    )


class DiffusionUNetConfig(_DenoiserFields):
    """Config of the image U-Net denoiser."""

    in_channels: Width = Field(1, ge=1, description="Image channels (also the output channels: eps has x's shape).")
    image_size: Extent = Field(8, ge=4, description="Height = width of the images.")
    base_channels: Width = Field(
        32, ge=4, description="Channels at full resolution; level i has base * channel_mults[i]."
    )
    channel_mults: int_list(64, max_length=8) = Field(
        default_factory=lambda: [1, 2],
        description="Channel multiplier per resolution level; each extra level halves H and W.",
    )
    num_res_blocks: Depth = Field(
        1, ge=1, description="Residual blocks per level on the way down (one more on the way up)."
    )
    attention_resolutions: int_list(MAX_EXTENT, min_length=0) = Field(
        default_factory=lambda: [4],
        description="Feature-map sizes that get self-attention after their residual blocks (low resolution only: cost is (H*W)^2).",
    )
    attention_heads: Width = Field(1, ge=1, description="Heads of each self-attention block.")
    groups: Width = Field(8, ge=1, description="GroupNorm groups; must divide every level's channels.")
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="Dropout inside residual blocks.")

    @model_validator(mode="after")
    def _fits(self):
        factor = 2 ** (len(self.channel_mults) - 1)
        if self.image_size % factor:
            raise ValueError(
                f"image_size={self.image_size} must divide by 2**(len(channel_mults)-1)={factor} "
                f"(channel_mults={self.channel_mults})"
            )
        for m in (1, *self.channel_mults):  # conv_in's output (the base width) is normed too
            ch = self.base_channels * m
            if ch % self.groups:
                raise ValueError(
                    f"groups={self.groups} must divide every level's channels; {ch} (base_channels={self.base_channels} x {m}) does not"
                )
            if ch % self.attention_heads:
                raise ValueError(f"attention_heads={self.attention_heads} must divide every level's channels; got {ch}")
        if self.base_channels % 2:
            raise ValueError(f"base_channels={self.base_channels} must be even (it is the sinusoidal embedding size)")
        return self


class PointDenoiserConfig(_DenoiserFields):
    """Config of the MLP denoiser on (B, D) points."""

    dim: Size = Field(2, ge=1, description="D: size of each point.")
    hidden: Width = Field(128, ge=1, description="Width of the hidden layers.")
    n_layers: Depth = Field(3, ge=1, description="Hidden layers, each with its own time-embedding projection.")
    time_dim: Width = Field(64, ge=2, description="Size of the sinusoidal time embedding (even).")

    @field_validator("time_dim")
    @classmethod
    def _even(cls, v: int) -> int:
        if v % 2:
            raise ValueError(f"time_dim={v} must be even (half sin, half cos)")
        return v


# -- shared input checks -------------------------------------------------------------------------


def _check_t(model: nn.Module, t, batch: int, num_timesteps: int) -> torch.Tensor:
    t = check_tensor(model, t, "B", name="t", dtype="long", B=batch)
    return check_range(model, t, 0, num_timesteps, name="timesteps t", inclusive=False)


def _class_index(model: nn.Module, y, batch: int, num_classes: int, device) -> torch.Tensor | None:
    """Class ids (B,) with None -> the null class; None for an unconditional model."""
    if num_classes == 0:
        if y is not None:
            raise ConfigError(
                f"{model_name(model)} is unconditional (num_classes=0); got class labels y. "
                "Build it with num_classes > 0 to condition on classes."
            )
        return None
    if y is None:
        return torch.full((batch,), num_classes, dtype=torch.long, device=device)
    y = check_tensor(model, y, "B", name="y", dtype="long", B=batch)
    return check_range(model, y, 0, num_classes, name="y", note=f" ({num_classes} = null class)")


# -- models -------------------------------------------------------------------------------------


class DiffusionUNet(ParamCount, nn.Module):
    """U-Net eps-predictor for images (Ho et al. 2020), time- and optionally class-conditioned.

    Down path: conv_in, then per level ``num_res_blocks`` residual blocks (+ attention at the
    configured resolutions) and a stride-2 downsample; a middle block res -> attention -> res;
    the up path mirrors it, concatenating the skip saved after each down-path block.
    """

    def __init__(self, config: DiffusionUNetConfig):
        super().__init__()
        self.config = config
        c = config
        base, emb_dim = c.base_channels, 4 * c.base_channels
        self.time_embed = nn.Sequential(
            SinusoidalTimeEmbedding(base),
            nn.Linear(base, emb_dim),
            nn.SiLU(),
            nn.Linear(emb_dim, emb_dim),
        )
        # one extra row: the null class used for unconditional eps in classifier-free guidance
        self.class_embed = nn.Embedding(c.num_classes + 1, emb_dim) if c.num_classes else None
        self.conv_in = nn.Conv2d(c.in_channels, base, 3, padding=1)

        def attn(ch: int, res: int) -> nn.Module:
            if res in c.attention_resolutions:
                return SelfAttention2d(ch, c.groups, c.attention_heads)
            return nn.Identity()

        chans = [base * m for m in c.channel_mults]
        skips = [base]
        ch, res = base, c.image_size
        self.down = nn.ModuleList()
        self.downsample = nn.ModuleList()
        for i, out_ch in enumerate(chans):
            blocks, attns = [], []
            for _ in range(c.num_res_blocks):
                blocks.append(TimeResBlock(ch, out_ch, emb_dim, c.groups, c.dropout))
                attns.append(attn(out_ch, res))
                ch = out_ch
                skips.append(ch)
            self.down.append(UNetLevel(blocks, attns))
            if i < len(chans) - 1:
                self.downsample.append(Downsample(ch))
                skips.append(ch)
                res //= 2
        self.mid1 = TimeResBlock(ch, ch, emb_dim, c.groups, c.dropout)
        self.mid_attn = SelfAttention2d(ch, c.groups, c.attention_heads)
        self.mid2 = TimeResBlock(ch, ch, emb_dim, c.groups, c.dropout)
        self.up = nn.ModuleList()
        self.upsample = nn.ModuleList()
        for i, out_ch in reversed(list(enumerate(chans))):
            blocks, attns = [], []
            for _ in range(c.num_res_blocks + 1):
                blocks.append(TimeResBlock(ch + skips.pop(), out_ch, emb_dim, c.groups, c.dropout))
                attns.append(attn(out_ch, res))
                ch = out_ch
            self.up.append(UNetLevel(blocks, attns))
            if i > 0:
                self.upsample.append(Upsample(ch))
                res *= 2
        self.norm_out = nn.GroupNorm(c.groups, ch)
        self.conv_out = nn.Conv2d(ch, c.in_channels, 3, padding=1)

    @property
    def data_shape(self) -> tuple[int, ...]:
        """Shape of one sample, (C, H, W): what the samplers generate."""
        return (self.config.in_channels, self.config.image_size, self.config.image_size)

    def example_input(self, batch_size: int = 2) -> tuple[torch.Tensor, ...]:
        x = torch.randn(batch_size, *self.data_shape)
        t = torch.randint(0, self.config.num_timesteps, (batch_size,))
        if self.config.num_classes:
            return x, t, torch.randint(0, self.config.num_classes, (batch_size,))
        return x, t

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Predict the noise added to ``x``.

        Args:
            x: (B, C, H, W) float noisy images x_t.
            t: (B,) long timesteps in [0, num_timesteps).
            y: (B,) long class ids in [0, num_classes] (num_classes = null class), or None
                (the null class) - only for a model built with num_classes > 0.

        Returns:
            (B, C, H, W) eps prediction, same shape as ``x``.
        """
        c = self.config
        x = check_tensor(self, x, "B C H W", C=c.in_channels, H=c.image_size, W=c.image_size)
        t = _check_t(self, t, x.shape[0], c.num_timesteps)
        y = _class_index(self, y, x.shape[0], c.num_classes, x.device)
        emb = self.time_embed(t)  # (B, 4*base)
        if self.class_embed is not None:
            emb = emb + self.class_embed(y)
        h = self.conv_in(x)
        skips = [h]
        for i, level in enumerate(self.down):
            for block, attn in zip(level.blocks, level.attns):
                h = attn(block(h, emb))
                skips.append(h)
            if i < len(self.downsample):
                h = self.downsample[i](h)
                skips.append(h)
        h = self.mid2(self.mid_attn(self.mid1(h, emb)), emb)
        for i, level in enumerate(self.up):
            for block, attn in zip(level.blocks, level.attns):
                h = attn(block(torch.cat([h, skips.pop()], dim=1), emb))  # (B, ch + skip_ch, H, W)
            if i < len(self.upsample):
                h = self.upsample[i](h)
        return self.conv_out(F.silu(self.norm_out(h)))


class PointDenoiser(ParamCount, nn.Module):
    """MLP eps-predictor for (B, D) points: h = SiLU(W_k h + U_k emb(t)) per layer, then Linear."""

    def __init__(self, config: PointDenoiserConfig):
        super().__init__()
        self.config = config
        c = config
        self.time_embed = nn.Sequential(SinusoidalTimeEmbedding(c.time_dim), nn.Linear(c.time_dim, c.hidden), nn.SiLU())
        self.class_embed = nn.Embedding(c.num_classes + 1, c.hidden) if c.num_classes else None
        widths = [c.dim] + [c.hidden] * c.n_layers
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:]))
        self.emb_proj = nn.ModuleList(nn.Linear(c.hidden, c.hidden) for _ in range(c.n_layers))
        self.out = nn.Linear(c.hidden, c.dim)

    @property
    def data_shape(self) -> tuple[int, ...]:
        """Shape of one sample, (D,)."""
        return (self.config.dim,)

    def example_input(self, batch_size: int = 2) -> tuple[torch.Tensor, ...]:
        x = torch.randn(batch_size, self.config.dim)
        t = torch.randint(0, self.config.num_timesteps, (batch_size,))
        if self.config.num_classes:
            return x, t, torch.randint(0, self.config.num_classes, (batch_size,))
        return x, t

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """Predict the noise added to points ``x``.

        Args:
            x: (B, D) float noisy points x_t.
            t: (B,) long timesteps in [0, num_timesteps).
            y: (B,) long class ids, or None (only with num_classes > 0).

        Returns:
            (B, D) eps prediction.
        """
        c = self.config
        x = check_tensor(self, x, "B D", D=c.dim)
        t = _check_t(self, t, x.shape[0], c.num_timesteps)
        y = _class_index(self, y, x.shape[0], c.num_classes, x.device)
        emb = self.time_embed(t)  # (B, hidden)
        if self.class_embed is not None:
            emb = emb + self.class_embed(y)
        h = x
        for layer, proj in zip(self.layers, self.emb_proj):
            h = F.silu(layer(h) + proj(emb))
        return self.out(h)


# -- presets ------------------------------------------------------------------------------------

_WHEN = "Generative (images): diffusion for fidelity + stability (Dhariwal & Nichol 2021); GANs are faster to sample"
register(
    "ddpm_unet_digits",
    family="diffusion",
    model=DiffusionUNet,
    config=DiffusionUNetConfig,
    defaults=dict(in_channels=1, image_size=8, base_channels=32, channel_mults=[1, 2], attention_resolutions=[4]),
    modalities=("image",),
    tasks=("diffusion",),
    description="DDPM U-Net (Ho et al. 2020) for 1x8x8 digits: 32/64 channels, GroupNorm res blocks, attention at 4x4",
    when_to_use=_WHEN,
)
register(
    "ddpm_unet_cond",
    family="diffusion",
    model=DiffusionUNet,
    config=DiffusionUNetConfig,
    defaults=dict(
        in_channels=1, image_size=8, base_channels=32, channel_mults=[1, 2], attention_resolutions=[4], num_classes=10
    ),
    modalities=("image",),
    tasks=("diffusion",),
    description="Class-conditional DDPM U-Net with a null class for classifier-free guidance (Ho & Salimans 2022)",
    when_to_use="Generative (images) with labels: classifier-free guidance trades diversity for fidelity",
)
register(
    "ddpm_points",
    family="diffusion",
    model=PointDenoiser,
    config=PointDenoiserConfig,
    defaults=dict(dim=2, hidden=128, n_layers=3, time_dim=64),
    modalities=("tabular", "points"),
    tasks=("diffusion",),
    description="MLP denoiser on 2-D points with a sinusoidal time embedding (a toy DDPM)",
    when_to_use="Learning and teaching diffusion on 2-D toy densities; low-dimensional tabular generation",
)
