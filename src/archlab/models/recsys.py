"""Recommenders / CTR models: Wide & Deep and DLRM.

When to use: tabular click-through-rate and ranking data made
of sparse categorical IDs plus dense numerical features. Embedding tables dominate memory, so
consider quantising or sharding them; calibrate the output probabilities (Platt scaling or a temperature).
Papers: Cheng et al. 2016 (Wide & Deep); Naumov et al. 2019 (DLRM).

Inputs (both models):
- ``dense`` (B, dense_features) float.
- ``sparse`` (B, n_fields, bag) long - a *padded bag layout*: row ``sparse[b, f]`` holds the ids
  of field ``f`` for sample ``b`` (ids in ``[0, field_sizes[f])``), padded with ``-1``.
  A one-id-per-field tensor (B, n_fields) is accepted as bag 1. Each field has its own table
  (an ``nn.EmbeddingBag``); a bag is reduced by mean (Wide & Deep) or sum (DLRM) over its valid
  ids, and an all-padding bag gives a zero vector.

Output: a CTR logit (B,) - apply a sigmoid (or BCEWithLogitsLoss) outside the model.

Presets: ``wide_deep`` and ``dlrm``, both with small tables (8 fields, 13 dense features, the
Criteo layout scaled down).
"""

from __future__ import annotations

from typing import Annotated, Literal

import torch
from pydantic import Field, model_validator
from torch import nn

from archlab.config import (
    MAX_INT,
    MAX_STAGES,
    ArchConfig,
    InitScheme,
    Size,
    Width,
    Widths,
    int_list,
)
from archlab.errors import ShapeError
from archlab.layers.checks import check_range, check_tensor, model_name
from archlab.layers.init import init_weights
from archlab.layers.mlp import dense_stack
from archlab.layers.params import ParamCount
from archlab.registry import register

_HASH_PRIME = 1_000_003


class FieldEmbeddings(nn.Module):
    """One ``nn.EmbeddingBag`` per categorical field over the padded (B, n_fields, bag) layout."""

    def __init__(self, field_sizes: list[int], dim: int, mode: Literal["sum", "mean"]):
        super().__init__()
        # mode="sum" with 0/1 per-sample weights masks the -1 padding; "mean" divides afterwards.
        self.tables = nn.ModuleList(nn.EmbeddingBag(n, dim, mode="sum") for n in field_sizes)
        self.mode = mode

    def forward(self, sparse: torch.Tensor) -> torch.Tensor:
        """(B, n_fields, bag) long, -1 = padding -> (B, n_fields, dim)."""
        valid = sparse >= 0
        weights = valid.to(self.tables[0].weight.dtype)
        outs = []
        for f, table in enumerate(self.tables):
            e = table(sparse[:, f].clamp(min=0), per_sample_weights=weights[:, f])  # (B, dim)
            if self.mode == "mean":
                e = e / weights[:, f].sum(-1, keepdim=True).clamp(min=1.0)
            outs.append(e)
        return torch.stack(outs, dim=1)  # (B, n_fields, dim)


def _check_sparse(model: nn.Module, sparse: torch.Tensor, field_sizes: list[int]) -> torch.Tensor:
    """Check the padded bag layout and each field's id range; returns (B, n_fields, bag)."""
    if isinstance(sparse, torch.Tensor) and sparse.dim() == 2:
        sparse = sparse.unsqueeze(-1)  # one id per field -> bag of 1
    check_tensor(model, sparse, "B fields bag", name="sparse", dtype="long", fields=len(field_sizes))
    if sparse.device.type == "meta":
        return sparse
    for f, size in enumerate(field_sizes):
        check_range(
            model, sparse[:, f], -1, size, name=f"sparse field {f} ids", inclusive=False, note=" (-1 for padding)"
        )
    return sparse


def _check_inputs(model: nn.Module, dense: torch.Tensor, sparse: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Check both inputs of a CTR model against its config and each other's batch size."""
    c = model.config
    dense = _check_dense(model, dense, c.dense_features)
    sparse = _check_sparse(model, sparse, c.field_sizes)
    if sparse.shape[0] != dense.shape[0]:
        raise ShapeError(
            f"{model_name(model)} expects sparse with batch {dense.shape[0]} (as dense); got {sparse.shape[0]}"
        )
    return dense, sparse


def _check_dense(model: nn.Module, dense: torch.Tensor, features: int) -> torch.Tensor:
    return check_tensor(model, dense, "B F", name="dense", F=features)


def _example_sparse(field_sizes: list[int], batch: int, bag: int) -> torch.Tensor:
    cols = [torch.randint(0, n, (batch, 1, bag)) for n in field_sizes]
    sparse = torch.cat(cols, dim=1)  # (B, n_fields, bag)
    if bag > 1:
        sparse[:, :, -1] = -1  # show the padding: the last slot is empty
    return sparse


# -- Wide & Deep --------------------------------------------------------------------------------


class WideDeepConfig(ArchConfig):
    """Config of a Wide & Deep CTR model."""

    dense_features: Size = Field(13, ge=1, description="Dense numerical features per sample.")
    field_sizes: int_list(MAX_INT) = Field(
        default_factory=lambda: [100, 50, 20], description="Vocabulary size of each categorical field."
    )
    embed_dim: Width = Field(16, ge=1, description="Embedding width of every field (deep part).")
    hidden_sizes: Widths = Field(default_factory=lambda: [256, 256], description="Deep MLP widths.")
    cross_fields: Annotated[
        list[int_list(MAX_STAGES, low=0, min_length=2, max_length=4)], Field(max_length=MAX_STAGES)
    ] = Field(default_factory=lambda: [[0, 1]], description="Field groups crossed for the wide part, e.g. [[0, 1]].")
    cross_buckets: Size = Field(1000, ge=1, description="Hash buckets of the crossed ids (wide weights).")
    dropout: float = Field(0.0, ge=0.0, lt=1.0, description="Dropout in the deep MLP.")
    example_bag: int = Field(2, ge=1, le=16, description="Ids per field in example_input (any bag length is accepted).")
    init: InitScheme = Field("kaiming", description="Weight init of the deep MLP.")

    @model_validator(mode="after")
    def _crosses(self) -> WideDeepConfig:
        n = len(self.field_sizes)
        for group in self.cross_fields:
            if len(group) < 2 or len(set(group)) != len(group) or any(not 0 <= f < n for f in group):
                raise ValueError(
                    f"cross_fields entry {group} must name >= 2 distinct fields in [0, {n}) (there are {n} fields)"
                )
        return self


class WideDeep(ParamCount, nn.Module):
    """logit = wide(dense, ids, hashed crosses) + deep(MLP over [bag embeddings, dense])."""

    def __init__(self, config: WideDeepConfig):
        super().__init__()
        self.config = config
        c = config
        self.embed = FieldEmbeddings(c.field_sizes, c.embed_dim, mode="mean")
        self.deep = dense_stack(len(c.field_sizes) * c.embed_dim + c.dense_features, c.hidden_sizes, dropout=c.dropout)
        self.deep_out = nn.Linear(
            c.hidden_sizes[-1] if c.hidden_sizes else len(c.field_sizes) * c.embed_dim + c.dense_features, 1
        )
        # Wide part: a linear model over dense features, one weight per raw id, one per crossed id.
        self.wide_dense = nn.Linear(c.dense_features, 1)
        self.wide_ids = FieldEmbeddings(c.field_sizes, 1, mode="sum")
        self.wide_cross = nn.EmbeddingBag(c.cross_buckets, 1, mode="sum") if c.cross_fields else None
        init_weights(self, c.init)
        for table in self.wide_ids.tables:
            nn.init.zeros_(table.weight)
        if self.wide_cross is not None:
            nn.init.zeros_(self.wide_cross.weight)

    def example_input(self, batch_size: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
        c = self.config
        return (torch.randn(batch_size, c.dense_features), _example_sparse(c.field_sizes, batch_size, c.example_bag))

    def cross_ids(self, sparse: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Hashed ids of every configured field cross.

        For a group (f, g, ...), every combination of one id per field's bag is hashed:
        ``h = ((group * P + id_f) * P + id_g) ... mod cross_buckets``.

        Args:
            sparse: (B, n_fields, bag) long, -1 padded.

        Returns:
            ((B, n_cross) long bucket ids, (B, n_cross) float 1/0 validity weights).
        """
        ids_all, valid_all = [], []
        buckets = self.config.cross_buckets
        b = sparse.shape[0]
        for gi, group in enumerate(self.config.cross_fields):
            h = torch.full((b, 1), gi, dtype=torch.long, device=sparse.device)
            ok = torch.ones((b, 1), dtype=torch.bool, device=sparse.device)
            for f in group:
                ids = sparse[:, f]  # (B, bag)
                # outer product of the running combos with this field's bag: (B, m) x (B, bag) -> (B, m*bag)
                h = ((h.unsqueeze(-1) * _HASH_PRIME + ids.clamp(min=0).unsqueeze(1)) % buckets).reshape(b, -1)
                ok = (ok.unsqueeze(-1) & (ids >= 0).unsqueeze(1)).reshape(b, -1)
            ids_all.append(h)
            valid_all.append(ok)
        return torch.cat(ids_all, dim=1), torch.cat(valid_all, dim=1).to(self.wide_dense.weight.dtype)

    def forward(self, dense: torch.Tensor, sparse: torch.Tensor) -> torch.Tensor:
        """Score samples.

        Args:
            dense: (B, dense_features) float.
            sparse: (B, n_fields, bag) long ids per field, -1 = padding; or (B, n_fields).

        Returns:
            (B,) CTR logits.
        """
        dense, sparse = _check_inputs(self, dense, sparse)
        emb = self.embed(sparse).flatten(1)  # (B, n_fields, D) -> (B, n_fields*D)
        deep = self.deep_out(self.deep(torch.cat([emb, dense], dim=-1)))  # (B, 1)
        wide = self.wide_dense(dense) + self.wide_ids(sparse).sum(dim=1)  # (B, 1)
        if self.wide_cross is not None:
            ids, valid = self.cross_ids(sparse)
            wide = wide + self.wide_cross(ids, per_sample_weights=valid)  # (B, 1)
        return (wide + deep).squeeze(-1)  # (B,)


# -- DLRM ---------------------------------------------------------------------------------------


class DLRMConfig(ArchConfig):
    """Config of a DLRM (deep learning recommendation model)."""

    dense_features: Size = Field(13, ge=1, description="Dense numerical features per sample.")
    field_sizes: int_list(MAX_INT) = Field(
        default_factory=lambda: [100, 50, 20], description="Vocabulary size of each categorical field (one table each)."
    )
    embed_dim: Width = Field(16, ge=1, description="Embedding width; the bottom MLP's last width must equal it.")
    bottom_mlp: Widths = Field(
        default_factory=lambda: [64, 16], description="Bottom MLP widths over dense features; last = embed_dim."
    )
    top_mlp: Widths = Field(
        default_factory=lambda: [64, 32],
        description="Top MLP widths over [dense vector, interactions], before the logit.",
    )
    self_interaction: bool = Field(False, description="Include each vector's dot with itself in the interactions.")
    example_bag: int = Field(1, ge=1, le=16, description="Ids per field in example_input (any bag length is accepted).")
    init: InitScheme = Field("kaiming", description="Weight init of the MLPs.")

    @model_validator(mode="after")
    def _bottom_matches(self) -> DLRMConfig:
        last = self.bottom_mlp[-1] if self.bottom_mlp else self.dense_features
        if last != self.embed_dim:
            raise ValueError(
                f"the bottom MLP must end at embed_dim={self.embed_dim} to meet the embeddings; "
                f"got bottom_mlp={self.bottom_mlp} (dense_features={self.dense_features})"
            )
        return self


class DLRM(ParamCount, nn.Module):
    """bottom MLP(dense) + per-field embeddings -> pairwise dot interactions -> top MLP -> logit."""

    def __init__(self, config: DLRMConfig):
        super().__init__()
        self.config = config
        c = config
        self.bottom = dense_stack(c.dense_features, c.bottom_mlp)
        self.embed = FieldEmbeddings(c.field_sizes, c.embed_dim, mode="sum")
        n = len(c.field_sizes) + 1
        offset = 0 if c.self_interaction else -1
        rows, cols = torch.tril_indices(n, n, offset=offset)
        self.register_buffer("_rows", rows, persistent=False)
        self.register_buffer("_cols", cols, persistent=False)
        self.top = dense_stack(c.embed_dim + rows.numel(), c.top_mlp)
        self.out = nn.Linear(c.top_mlp[-1] if c.top_mlp else c.embed_dim + rows.numel(), 1)
        init_weights(self, c.init)

    @property
    def interaction_width(self) -> int:
        """Width of the top MLP's input: embed_dim + number of pairwise dots."""
        return self.config.embed_dim + self._rows.numel()

    def example_input(self, batch_size: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
        c = self.config
        return (torch.randn(batch_size, c.dense_features), _example_sparse(c.field_sizes, batch_size, c.example_bag))

    def interact(self, dense_vec: torch.Tensor, embs: torch.Tensor) -> torch.Tensor:
        """Pairwise dot interaction.

        Args:
            dense_vec: (B, D) bottom-MLP output.
            embs: (B, n_fields, D) field embeddings.

        Returns:
            (B, D + P), the dense vector followed by the P = (n+1)n/2 dots between distinct
            vectors among the n_fields + 1 (plus n+1 self-dots with ``self_interaction``).
        """
        t = torch.cat([dense_vec.unsqueeze(1), embs], dim=1)  # (B, n+1, D)
        z = torch.bmm(t, t.transpose(1, 2))  # (B, n+1, n+1)
        dots = z[:, self._rows, self._cols]  # (B, P) strictly lower triangle
        return torch.cat([dense_vec, dots], dim=1)

    def forward(self, dense: torch.Tensor, sparse: torch.Tensor) -> torch.Tensor:
        """Score samples.

        Args:
            dense: (B, dense_features) float.
            sparse: (B, n_fields, bag) long ids per field, -1 = padding; or (B, n_fields).

        Returns:
            (B,) CTR logits.
        """
        dense, sparse = _check_inputs(self, dense, sparse)
        z = self.interact(self.bottom(dense), self.embed(sparse))  # (B, D + P)
        return self.out(self.top(z)).squeeze(-1)  # (B,)


_WHEN = "Tabular CTR / ranking with sparse categorical IDs + dense features"
_SIZES = [1000, 500, 200, 100, 50, 20, 10, 5]  # Criteo-like field layout, scaled down
register(
    "wide_deep",
    family="recsys",
    model=WideDeep,
    config=WideDeepConfig,
    defaults=dict(
        dense_features=13,
        field_sizes=_SIZES,
        embed_dim=16,
        hidden_sizes=[256, 256],
        cross_fields=[[0, 1], [2, 3]],
        cross_buckets=10_000,
        example_bag=3,
    ),
    modalities=("tabular",),
    tasks=("ctr",),
    description="Wide & Deep (Cheng et al. 2016): bagged ids (8 fields) + 13 dense -> MLP 256-256, wide over ids and hashed crosses",
    when_to_use=_WHEN,
)
register(
    "dlrm",
    family="recsys",
    model=DLRM,
    config=DLRMConfig,
    defaults=dict(dense_features=13, field_sizes=_SIZES, embed_dim=16, bottom_mlp=[64, 32, 16], top_mlp=[128, 64]),
    modalities=("tabular",),
    tasks=("ctr",),
    description="DLRM (Naumov et al. 2019): bottom MLP 64-32-16, 8 tables of 16-d, dot interactions, top MLP 128-64",
    when_to_use=_WHEN,
)
