"""FT-Transformer: every feature a token, a [CLS] token, a Transformer over the features.

When to use: tabular classification or regression where a network is wanted (fine-tuning, joint
training with other inputs, a differentiable model) and the features interact; with fewer than
~10,000 rows compare it against gradient-boosted trees, which often still win on small tables.
Paper: Gorishniy, Rubachev, Khrulkov & Babenko 2021, "Revisiting Deep Learning Models for
Tabular Data" (NeurIPS): FT-Transformer was the most universally strong network of their study,
the ResNet-like model (:mod:`archlab.models.tabular_resnet`) the strong simple baseline.

Feature tokenizer: numerical feature ``j`` becomes the token ``x_j * W_j + b_j`` (a d_token
vector per feature); categorical column ``j`` its embedding ``E_j[x_j] + b_j``. A learned [CLS]
token is prepended (the paper appends it; the position does not matter without positions)::

    x_num (B, F), x_cat (B, K) -> tokens (B, 1 + F + K, d_token)
        -> n_blocks pre-norm Transformer blocks -> [CLS] (B, d_token) -> LayerNorm -> ReLU -> Linear

Deviations from the paper, for brevity: the feed-forward uses GELU (the paper ReGLU) and one
dropout rate serves attention and feed-forward; the first block keeps its attention LayerNorm.

Layout: ``x`` (B, in_features) float, standardised like every archlab table; ``x_cat`` (B, K)
int64 category ids when ``cat_cardinalities`` is set (the ids of column k in
``[0, cat_cardinalities[k])``).

Presets: ``ft_transformer`` (the paper's default: d_token 192, 3 blocks, 8 heads) and
``ft_transformer_small`` (d_token 64, 2 blocks, 4 heads: tables of a few hundred rows).
"""

from __future__ import annotations

import torch
from pydantic import Field, model_validator
from torch import nn

from archlab.config import ArchConfig, Depth, Size, Width, int_list
from archlab.errors import ConfigError
from archlab.layers.attention import TransformerBlock
from archlab.layers.checks import check_tensor
from archlab.layers.params import ParamCount
from archlab.registry import register


class FTTransformerConfig(ArchConfig):
    """Config of an FT-Transformer (Gorishniy et al. 2021)."""

    in_features: Size = Field(30, ge=0, description="Numerical features.")
    cat_cardinalities: int_list(2**24, min_length=0, max_length=4096) = Field(
        default_factory=list, description="Categories of each categorical column (empty: none)."
    )
    out_features: Size = Field(2, ge=1, description="Classes, or regression outputs.")
    n_heads: Width = Field(8, ge=1, description="Attention heads.")
    d_head: Width = Field(24, ge=1, description="Width per head; a token has d_token = n_heads * d_head values.")
    n_blocks: Depth = Field(3, ge=1, description="Transformer blocks.")
    ffn_factor: float = Field(4 / 3, gt=0, le=16, description="Feed-forward width as a multiple of d_token.")
    dropout: float = Field(0.1, ge=0.0, lt=1.0, description="Dropout in attention and feed-forward.")

    @model_validator(mode="after")
    def _check(self) -> FTTransformerConfig:
        if self.in_features == 0 and not self.cat_cardinalities:
            raise ConfigError("ft_transformer: needs numerical features (in_features >= 1) or cat_cardinalities")
        return self

    @property
    def d_token(self) -> int:
        """Width of each token: ``n_heads * d_head`` (heads always divide it)."""
        return self.n_heads * self.d_head


class CategoricalEmbeddings(nn.Module):
    """One embedding table per categorical column, all in one table with per-column offsets."""

    def __init__(self, cardinalities: list[int], dim: int):
        super().__init__()
        offsets = torch.tensor([0, *cardinalities[:-1]]).cumsum(0) if cardinalities else torch.zeros(0)
        self.register_buffer("offsets", offsets.long(), persistent=False)
        self.table = nn.Embedding(sum(cardinalities), dim)
        self.bias = nn.Parameter(torch.zeros(len(cardinalities), dim))
        nn.init.uniform_(self.table.weight, -(dim**-0.5), dim**-0.5)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        """(B, K) int64 -> (B, K, dim)."""
        return self.table(ids + self.offsets) + self.bias


class FeatureTokenizer(nn.Module):
    """Numerical ``x_j * W_j + b_j`` and categorical ``E_j[x_j] + b_j`` tokens (B, F + K, d)."""

    def __init__(self, n_num: int, cardinalities: list[int], dim: int):
        super().__init__()
        bound = dim**-0.5  # the paper's uniform init of the tokenizer
        self.weight = nn.Parameter(torch.empty(n_num, dim).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(n_num, dim).uniform_(-bound, bound))
        self.cat = CategoricalEmbeddings(cardinalities, dim) if cardinalities else None

    def forward(self, x: torch.Tensor, x_cat: torch.Tensor | None) -> torch.Tensor:
        tokens = x[:, :, None] * self.weight + self.bias  # (B, F, 1) * (F, d) -> (B, F, d)
        if self.cat is not None:
            tokens = torch.cat([tokens, self.cat(x_cat)], dim=1)  # (B, F + K, d)
        return tokens


class FTTransformer(ParamCount, nn.Module):
    """Feature tokenizer -> [CLS] + tokens -> Transformer blocks -> head on [CLS]."""

    def __init__(self, config: FTTransformerConfig):
        super().__init__()
        self.config = config
        c = config
        self.tokenizer = FeatureTokenizer(c.in_features, list(c.cat_cardinalities), c.d_token)
        self.cls = nn.Parameter(torch.empty(1, 1, c.d_token).uniform_(-(c.d_token**-0.5), c.d_token**-0.5))
        d_ff = max(1, int(c.d_token * c.ffn_factor))
        self.blocks = nn.ModuleList(
            TransformerBlock(c.d_token, c.n_heads, d_ff, dropout=c.dropout, norm_first=True) for _ in range(c.n_blocks)
        )
        self.head = nn.Sequential(nn.LayerNorm(c.d_token), nn.ReLU(), nn.Linear(c.d_token, c.out_features))

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
        tokens = self.tokenizer(x, x_cat)  # (B, F + K, d)
        h = torch.cat([self.cls.expand(tokens.shape[0], -1, -1), tokens], dim=1)  # (B, 1 + F + K, d)
        for block in self.blocks:
            h = block(h)
        return self.head(h[:, 0])  # [CLS]: (B, d) -> (B, out)


def tabular_example(c, batch_size: int) -> tuple[torch.Tensor, ...]:
    """``(x,)`` or ``(x, x_cat)`` for a config with ``in_features`` and ``cat_cardinalities``."""
    x = torch.randn(batch_size, c.in_features)
    if not c.cat_cardinalities:
        return (x,)
    ids = torch.stack([torch.randint(0, n, (batch_size,)) for n in c.cat_cardinalities], dim=1)
    return (x, ids)


def check_table(
    model: nn.Module, x: torch.Tensor, x_cat: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Check ``x`` (B, F) float and ``x_cat`` (B, K) integer against the model's config."""
    c = model.config
    x = check_tensor(model, x, "B F", F=c.in_features)
    k = len(c.cat_cardinalities)
    if k:
        x_cat = check_tensor(model, x_cat, "B K", name="x_cat", dtype="long", B=x.shape[0], K=k)
    return x, None if not k else x_cat


_WHEN = "Tabular data where a network is wanted; on small tables check the gradient-boosting baseline"

register(
    "ft_transformer",
    family="ft_transformer",
    model=FTTransformer,
    config=FTTransformerConfig,
    defaults=dict(in_features=30, out_features=2, n_heads=8, d_head=24, n_blocks=3),
    modalities=("tabular",),
    tasks=("classification", "regression"),
    description="FT-Transformer (Gorishniy et al. 2021): feature tokens + [CLS], 3 pre-norm blocks of width 192",
    when_to_use=_WHEN,
    knobs={"d_head": "width", "n_blocks": "depth"},
)
register(
    "ft_transformer_small",
    family="ft_transformer",
    model=FTTransformer,
    config=FTTransformerConfig,
    defaults=dict(in_features=30, out_features=2, n_heads=4, d_head=16, n_blocks=2),
    modalities=("tabular",),
    tasks=("classification", "regression"),
    description="FT-Transformer (Gorishniy et al. 2021), small: d_token 64, 2 blocks, 4 heads (tables of hundreds of rows)",
    when_to_use=_WHEN,
    knobs={"d_head": "width", "n_blocks": "depth"},
)
