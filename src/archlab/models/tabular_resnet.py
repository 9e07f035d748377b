"""Tabular ResNet: an MLP with residual blocks and BatchNorm, the simple strong baseline for tables.

When to use: tabular classification or regression as a first network, before an FT-Transformer;
as cheap as an MLP and, in Gorishniy et al.'s study, a stronger baseline than the MLP on most
tables. With fewer than ~10,000 rows compare it against gradient-boosted trees.
Paper: Gorishniy, Rubachev, Khrulkov & Babenko 2021, "Revisiting Deep Learning Models for
Tabular Data" (NeurIPS), section 3.2 ("ResNet").

Layout::

    x (B, F) [+ embedded categories (B, K*d_cat)] -> Linear -> (B, width)
    block: h + Dropout(Linear(Dropout(ReLU(Linear(Norm(h))))))    width -> hidden -> width
    head:  ReLU(Norm(h)) -> Linear -> (B, out_features)

``x`` is (B, in_features) float; ``x_cat`` (B, K) int64 category ids when ``cat_cardinalities``
is set, each column embedded in ``d_cat`` values (the paper's categorical embeddings).

Presets: ``tabular_resnet`` (width 128, 3 blocks, hidden 256, BatchNorm).
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import Field
from torch import nn

from archlab.config import ArchConfig, Depth, Size, Width, int_list
from archlab.layers.params import ParamCount
from archlab.layers.registry import norm_layer
from archlab.models.ft_transformer import CategoricalEmbeddings, check_table, tabular_example
from archlab.registry import register


class TabularResNetConfig(ArchConfig):
    """Config of the tabular ResNet (Gorishniy et al. 2021)."""

    in_features: Size = Field(30, ge=1, description="Numerical features.")
    cat_cardinalities: int_list(2**24, min_length=0, max_length=4096) = Field(
        default_factory=list, description="Categories of each categorical column (empty: none)."
    )
    d_cat: Width = Field(8, ge=1, description="Embedding width of each categorical column.")
    out_features: Size = Field(2, ge=1, description="Classes, or regression outputs.")
    width: Width = Field(128, ge=1, description="Width of the residual stream.")
    n_blocks: Depth = Field(3, ge=1, description="Residual blocks.")
    hidden_factor: float = Field(2.0, gt=0, le=16, description="Hidden width of a block as a multiple of width.")
    norm: Literal["batch", "layer"] = Field("batch", description="Normalisation at the start of each block.")
    dropout: float = Field(0.1, ge=0.0, lt=1.0, description="Dropout of the hidden layer.")
    residual_dropout: float = Field(0.0, ge=0.0, lt=1.0, description="Dropout on each block's output.")


class ResidualBlock(nn.Module):
    """``h + Dropout(Linear(Dropout(ReLU(Linear(Norm(h))))))``."""

    def __init__(self, c: TabularResNetConfig):
        super().__init__()
        hidden = max(1, int(c.width * c.hidden_factor))
        self.branch = nn.Sequential(
            norm_layer(c.norm)(c.width),
            nn.Linear(c.width, hidden),
            nn.ReLU(),
            nn.Dropout(c.dropout),
            nn.Linear(hidden, c.width),
            nn.Dropout(c.residual_dropout),
        )

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        """(B, width) -> (B, width)."""
        return h + self.branch(h)


class TabularResNet(ParamCount, nn.Module):
    """Linear stem -> residual MLP blocks -> Norm -> ReLU -> Linear."""

    def __init__(self, config: TabularResNetConfig):
        super().__init__()
        self.config = config
        c = config
        cards = list(c.cat_cardinalities)
        self.cat = CategoricalEmbeddings(cards, c.d_cat) if cards else None
        self.stem = nn.Linear(c.in_features + len(cards) * c.d_cat, c.width)
        self.blocks = nn.Sequential(*(ResidualBlock(c) for _ in range(c.n_blocks)))
        self.head = nn.Sequential(norm_layer(c.norm)(c.width), nn.ReLU(), nn.Linear(c.width, c.out_features))

    def example_input(self, batch_size: int = 2) -> tuple[torch.Tensor, ...]:
        return tabular_example(self.config, batch_size)

    def forward(self, x: torch.Tensor, x_cat: torch.Tensor | None = None) -> torch.Tensor:
        """Map a table's rows to outputs.

        Args:
            x: (B, in_features) float numerical features.
            x_cat: (B, len(cat_cardinalities)) int64 category ids, when the config has them.

        Returns:
            (B, out_features) logits or regression outputs.
        """
        x, x_cat = check_table(self, x, x_cat)
        if self.cat is not None:
            x = torch.cat([x, self.cat(x_cat).flatten(1)], dim=1)  # (B, F) + (B, K*d_cat) -> (B, F + K*d_cat)
        return self.head(self.blocks(self.stem(x)))


register(
    "tabular_resnet",
    family="tabular_resnet",
    model=TabularResNet,
    config=TabularResNetConfig,
    defaults=dict(in_features=30, out_features=2, width=128, n_blocks=3),
    modalities=("tabular",),
    tasks=("classification", "regression"),
    description="Tabular ResNet (Gorishniy et al. 2021): Linear stem, 3 residual MLP blocks (128 -> 256 -> 128), BatchNorm",
    when_to_use="Tabular data: the simple strong network baseline (before FT-Transformer); compare with gradient boosting",
    knobs={"width": "width", "n_blocks": "depth"},
)
