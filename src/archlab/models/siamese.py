"""Siamese encoder: one shared network mapping inputs to L2-normalised embeddings (metric space).

When to use: retrieval / verification / deduplication (faces,
voices), CLIP-style pairing - a Siamese/contrastive encoder learns a metric space; alternatives Triplet,
ArcFace. Batch composition matters (hard negatives); tune the temperature.

The network here is only the encoder ``f_theta``; a pair ``(x_a, x_b)`` goes through the same
weights (hence "Siamese"). The training objectives, InfoNCE and the triplet loss, are plain
functions in :mod:`archlab.tasks.contrastive` (system vs model). ``forward`` takes one batch, so
the generic model contract applies; :meth:`SiameseNet.embed_pair` embeds two.

Papers: Bromley et al. 1993 (Siamese networks); Schroff et al. 2015, FaceNet (triplet loss);
van den Oord et al. 2018, CPC (InfoNCE); Chen et al. 2020, SimCLR (symmetric NT-Xent).

Presets:
- ``siamese_mlp_digits`` - an MLP encoder: Linear(64, 256) -> ReLU -> Linear(256, 128), then
  L2 normalisation, for flattened 8x8 digits (B, 64).
- ``siamese_cnn_digits`` - a Conv-BN encoder (16/32 channels, global average pool, Linear to 64)
  for digit images (B, 1, 8, 8).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from torch import nn

from archlab.config import (
    MAX_INT,
    Activation,
    ArchConfig,
    Extent,
    InitScheme,
    Width,
    Widths,
    int_list,
)
from archlab.layers.checks import check_tensor
from archlab.layers.init import init_weights
from archlab.layers.mlp import dense_stack
from archlab.layers.params import ParamCount
from archlab.layers.registry import act_layer, norm_layer
from archlab.models.cnn import CNN, CNNConfig
from archlab.registry import register


class SiameseConfig(ArchConfig):
    """Config of a shared encoder producing (optionally L2-normalised) embeddings."""

    encoder: Literal["mlp", "cnn"] = Field(
        "mlp", description="Encoder kind: mlp for vectors, cnn for images / signals."
    )
    input_shape: int_list(MAX_INT, max_length=3) = Field(
        default_factory=lambda: [64],
        description="Shape of one input without the batch: [F] (mlp), [C, L] or [C, H, W] (cnn).",
    )
    hidden_sizes: Widths = Field(default_factory=lambda: [256], description="Hidden widths of the mlp encoder.")
    channels: Widths = Field(
        default_factory=lambda: [32, 64],
        description="Stage widths of the cnn encoder (conv -> norm -> act -> maxpool 2).",
    )
    kernel_size: Extent = Field(3, ge=1, description="Kernel size of the cnn encoder's convs ('same' padding).")
    norm: Literal["batch", "none"] = Field("none", description="BatchNorm after each hidden Linear / conv, or none.")
    activation: Activation = Field("relu", description="Hidden activation.")
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="Dropout after each hidden layer / stage.")
    embed_dim: Width = Field(128, ge=1, description="Size of the embedding.")
    normalize: bool = Field(True, description="L2-normalise embeddings (cosine geometry, as InfoNCE expects).")
    init: InitScheme = Field("kaiming", description="Weight init.")

    @model_validator(mode="after")
    def _consistent(self) -> SiameseConfig:
        if self.encoder == "mlp" and len(self.input_shape) != 1:
            raise ValueError(f"input_shape={self.input_shape} must be [F] for encoder='mlp'")
        if self.encoder == "cnn":
            if len(self.input_shape) not in (2, 3):
                raise ValueError(f"input_shape={self.input_shape} must be [C, L] or [C, H, W] for encoder='cnn'")
            if not self.channels:
                raise ValueError("channels must list at least one stage width for encoder='cnn'; got []")
        return self


class SiameseNet(ParamCount, nn.Module):
    """Shared encoder -> Linear to embed_dim -> L2 normalisation."""

    def __init__(self, config: SiameseConfig):
        super().__init__()
        self.config = config
        c = config
        if c.encoder == "mlp":
            self.encoder = nn.Sequential(
                dense_stack(
                    c.input_shape[0],
                    c.hidden_sizes,
                    act_layer=act_layer(c.activation),
                    norm_layer=norm_layer(c.norm),
                    dropout=c.dropout,
                ),
                nn.Linear(c.hidden_sizes[-1] if c.hidden_sizes else c.input_shape[0], c.embed_dim),
            )
        else:
            # A CNN whose "classifier" is the embedding projection: conv stages -> GAP -> Linear.
            self.encoder = CNN(
                CNNConfig.build(
                    dims=len(c.input_shape) - 1,
                    in_channels=c.input_shape[0],
                    channels=c.channels,
                    kernel_sizes=[c.kernel_size],
                    norm=c.norm,
                    activation=c.activation,
                    dropout=c.dropout,
                    head="global_avg",
                    num_classes=c.embed_dim,
                    init=c.init,
                )
            )
        init_weights(self, c.init, nonlinearity=c.activation)

    def example_input(self, batch_size: int = 2) -> tuple[torch.Tensor]:
        return (torch.randn(batch_size, *self.config.input_shape),)

    def _check(self, x: torch.Tensor, name: str = "x") -> None:
        c = self.config
        if c.encoder == "mlp":
            check_tensor(self, x, "B F", name=name, F=c.input_shape[0])
        elif len(c.input_shape) == 3:
            check_tensor(self, x, "B C H W", name=name, C=c.input_shape[0])
        else:
            check_tensor(self, x, "B C L", name=name, C=c.input_shape[0])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Embed one batch.

        Args:
            x: (B, F) float for the mlp encoder; (B, C, H, W) or (B, C, L) for the cnn encoder
                (C from input_shape, any spatial size).

        Returns:
            (B, embed_dim) embeddings, unit L2 norm when ``normalize``.
        """
        self._check(x)
        z = self.encoder(x)  # (B, ...) -> (B, embed_dim)
        return F.normalize(z, dim=-1) if self.config.normalize else z

    def embed_pair(self, a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Embed two batches with the shared weights: (B, ...), (B', ...) -> (B, D), (B', D).

        Same-shaped batches go through in one forward (one set of BatchNorm statistics for both
        views, as SimCLR does); otherwise each is embedded on its own.
        """
        self._check(a, "a")
        self._check(b, "b")
        if a.shape[1:] == b.shape[1:]:
            z = self(torch.cat([a, b], dim=0))  # (B + B', D)
            return z[: a.shape[0]], z[a.shape[0] :]
        return self(a), self(b)

    def similarity(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """Cosine similarity of each pair: (B, ...), (B, ...) -> (B,) in [-1, 1]."""
        za, zb = self.embed_pair(a, b)
        return F.cosine_similarity(za, zb, dim=-1)


_WHEN = "Retrieval / verification / deduplication: Siamese/contrastive, metric space; alt. triplet, ArcFace"
register(
    "siamese_mlp_digits",
    family="siamese",
    model=SiameseNet,
    config=SiameseConfig,
    defaults=dict(encoder="mlp", input_shape=[64], hidden_sizes=[256], embed_dim=128),
    modalities=("tabular", "image"),
    tasks=("contrastive",),
    description="Siamese MLP encoder: Linear(64, 256)-ReLU-Linear(256, 128), L2-normalised (flattened 8x8 digits)",
    when_to_use=_WHEN,
)
register(
    "siamese_cnn_digits",
    family="siamese",
    model=SiameseNet,
    config=SiameseConfig,
    defaults=dict(encoder="cnn", input_shape=[1, 8, 8], channels=[16, 32], norm="batch", embed_dim=64),
    modalities=("image",),
    tasks=("contrastive",),
    description="Conv-BN Siamese encoder (16/32 channels, GAP, Linear to 64), L2-normalised, for (B, 1, 8, 8) digits",
    when_to_use=_WHEN,
)
