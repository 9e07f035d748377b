"""Contrastive / metric-learning objectives for Siamese encoders, as plain functions.

- :func:`info_nce` - InfoNCE (van den Oord et al. 2018, CPC) / NT-Xent (Chen et al. 2020,
  SimCLR): row ``i`` of ``z1`` must pick row ``i`` of ``z2`` out of the batch. With logits
  ``S = z1 @ z2.T / tau`` (cosine similarities over a temperature), the loss is
  ``CE(S, arange(B))``; the symmetric form averages it with ``CE(S.T, arange(B))`` (seed 001:
  "InfoNCE (a->b); often add b->a").
- :func:`triplet_loss` - FaceNet's triplet loss (Schroff et al. 2015):
  ``max(0, d(a, p) - d(a, n) + margin)``, zero once every negative is ``margin`` farther than
  its positive.
- :func:`recall_at_k` - retrieval metric: how often the matching row is among the k nearest.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

from archlab.errors import ConfigError, ShapeError


def _check_embeddings(fn: str, **tensors: torch.Tensor) -> None:
    """All tensors (B, D) float with the same shape."""
    first_name, first = None, None
    for name, t in tensors.items():
        if not isinstance(t, torch.Tensor):
            raise ShapeError(f"{fn} expects {name} (B, D) float; got {type(t).__name__}")
        if t.dim() != 2 or not t.is_floating_point():
            raise ShapeError(
                f"{fn} expects {name} (B, D) float; got {tuple(t.shape)} {str(t.dtype).removeprefix('torch.')}"
            )
        if t.shape[0] < 1:
            raise ShapeError(f"{fn} expects {name} with at least one row; got {tuple(t.shape)}")
        if first is None:
            first_name, first = name, t
        elif t.shape != first.shape:
            raise ShapeError(
                f"{fn} expects {name} with the shape of {first_name} {tuple(first.shape)}; got {tuple(t.shape)}"
            )


def info_nce(
    z1: torch.Tensor,
    z2: torch.Tensor,
    temperature: float = 0.1,
    symmetric: bool = True,
    normalize: bool = True,
) -> torch.Tensor:
    """InfoNCE loss of paired embeddings: row i of ``z1`` is the positive of row i of ``z2``,
    every other row of the batch is a negative.

    Args:
        z1: (B, D) float embeddings of the first view.
        z2: (B, D) float embeddings of the second view.
        temperature: tau > 0; smaller sharpens the softmax over similarities (seed 001: 0.1).
        symmetric: average the z1->z2 and z2->z1 directions (SimCLR / CLIP).
        normalize: L2-normalise first, so logits are cosine similarities (a no-op on the
            already-normalised output of a Siamese net).

    Returns:
        Scalar loss; ``log(B)`` for uninformative embeddings, towards 0 as pairs separate.
    """
    _check_embeddings("info_nce", z1=z1, z2=z2)
    if not temperature > 0:
        raise ConfigError(f"info_nce: temperature must be > 0; got {temperature!r}")
    if normalize:
        z1, z2 = F.normalize(z1, dim=-1), F.normalize(z2, dim=-1)
    logits = z1 @ z2.T / temperature  # (B, B): logits[i, j] = sim(z1_i, z2_j) / tau
    target = torch.arange(z1.shape[0], device=z1.device)
    loss = F.cross_entropy(logits, target)
    if symmetric:
        loss = 0.5 * (loss + F.cross_entropy(logits.T, target))
    return loss


def _distance(a: torch.Tensor, b: torch.Tensor, kind: str) -> torch.Tensor:
    if kind == "euclidean":
        return (a - b).pow(2).sum(-1).clamp_min(1e-12).sqrt()  # clamp: finite grad at a == b
    if kind == "squared":
        return (a - b).pow(2).sum(-1)
    if kind == "cosine":
        return 1.0 - F.cosine_similarity(a, b, dim=-1)
    raise ConfigError(f"triplet_loss: distance must be euclidean, squared or cosine; got {kind!r}")


def triplet_loss(
    anchor: torch.Tensor,
    positive: torch.Tensor,
    negative: torch.Tensor,
    margin: float = 0.2,
    distance: Literal["euclidean", "squared", "cosine"] = "euclidean",
    reduction: Literal["mean", "sum", "none"] = "mean",
) -> torch.Tensor:
    """Triplet margin loss ``max(0, d(a, p) - d(a, n) + margin)`` per row.

    Args:
        anchor: (B, D) float.
        positive: (B, D) float, same identity / class as ``anchor``.
        negative: (B, D) float, a different identity / class.
        margin: how much farther the negative must be than the positive (>= 0).
        distance: ``euclidean`` (FaceNet uses its square, ``squared``) or ``cosine`` (1 - cos).
        reduction: ``mean`` / ``sum`` over rows, or ``none`` for (B,) per-triplet losses.

    Returns:
        Scalar loss (or (B,) with reduction ``none``).
    """
    _check_embeddings("triplet_loss", anchor=anchor, positive=positive, negative=negative)
    if margin < 0:
        raise ConfigError(f"triplet_loss: margin must be >= 0; got {margin!r}")
    losses = F.relu(_distance(anchor, positive, distance) - _distance(anchor, negative, distance) + margin)
    if reduction == "mean":
        return losses.mean()
    if reduction == "sum":
        return losses.sum()
    if reduction == "none":
        return losses
    raise ConfigError(f"triplet_loss: reduction must be mean, sum or none; got {reduction!r}")


@torch.no_grad()
def recall_at_k(queries: torch.Tensor, keys: torch.Tensor, k: int = 1) -> float:
    """Fraction of rows i whose key i is among the ``k`` most cosine-similar keys of query i.

    Args:
        queries: (B, D) float.
        keys: (B, D) float, row i pairs with query i.
        k: neighbours considered, 1 <= k <= B.
    """
    _check_embeddings("recall_at_k", queries=queries, keys=keys)
    if not 1 <= k <= keys.shape[0]:
        raise ConfigError(f"recall_at_k: k must be in [1, {keys.shape[0]}]; got {k!r}")
    sim = F.normalize(queries, dim=-1) @ F.normalize(keys, dim=-1).T  # (B, B)
    topk = sim.topk(k, dim=1).indices  # (B, k)
    hit = (topk == torch.arange(queries.shape[0], device=queries.device)[:, None]).any(dim=1)
    return hit.float().mean().item()
