"""Contrastive / metric-learning objectives for Siamese encoders, as plain functions.

- :func:`info_nce` - InfoNCE (van den Oord et al. 2018, CPC) / NT-Xent (Chen et al. 2020,
  SimCLR): row ``i`` of ``z1`` must pick row ``i`` of ``z2`` out of the batch. With logits
  ``S = z1 @ z2.T / tau`` (cosine similarities over a temperature), the loss is
  ``CE(S, arange(B))``; the symmetric form averages it with ``CE(S.T, arange(B))`` (as CLIP
  does, Radford et al. 2021).
- :func:`triplet_loss` - FaceNet's triplet loss (Schroff et al. 2015):
  ``max(0, d(a, p) - d(a, n) + margin)``, zero once every negative is ``margin`` farther than
  its positive.
- :func:`recall_at_k` - retrieval metric: how often the matching row is among the k nearest.

:class:`ContrastiveTask` trains a Siamese encoder self-supervised in ``archlab.fit``: each
training batch is augmented twice (:func:`augment`); the shared encoder embeds both views and
InfoNCE asks view 1 of sample i to pick view 2 of sample i among the batch. Labels are never
used for training.

Augmentations (batch composition matters; SimCLR: augmentation is the signal):

- images (B, C, H, W): random translation by up to ``shift`` pixels (zero padding), random
  erasing of one ``erase`` x ``erase`` patch, Gaussian noise of std ``noise``;
- vectors / signals: Gaussian noise of std ``noise`` and feature dropout with probability ``drop``.

Evaluation on held-out data (labels used only here):

- ``recall_at_1`` / ``recall_at_5``: for each sample, is a sample of its class among its k
  nearest neighbours (cosine) in the split - the retrieval recall@k of metric learning
  (Song et al. 2016, as reported on CUB / SOP), :func:`class_recall_at_k`;
- ``pair_recall_at_1``: view 1 retrieves its own view 2 (the InfoNCE objective itself).
"""

from __future__ import annotations

from typing import Any, Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from archlab.data.base import Split
from archlab.errors import ConfigError, ShapeError
from archlab.tasks.base import Task, TaskOptions
from archlab.tasks.generative_base import data_shape_of, fit_shape


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
        temperature: tau > 0; smaller sharpens the softmax over similarities (0.1 is common).
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


# ------------------------------------------------------------------------------------ the task
def augment(
    x: torch.Tensor, *, shift: int, erase: int, noise: float, drop: float, generator: torch.Generator | None = None
) -> torch.Tensor:
    """One random view of a batch (see module docs); x is (B, C, H, W) images or (B, ...) other."""
    b = x.shape[0]
    dev = x.device
    if x.ndim == 4:
        h, w = x.shape[-2:]
        if shift > 0:  # translate each image by (dy, dx) in [-shift, shift] with zero padding
            padded = F.pad(x, (shift, shift, shift, shift))
            dy = torch.randint(0, 2 * shift + 1, (b,), device=dev, generator=generator)
            dx = torch.randint(0, 2 * shift + 1, (b,), device=dev, generator=generator)
            rows = dy[:, None] + torch.arange(h, device=dev)[None]  # (B, H)
            cols = dx[:, None] + torch.arange(w, device=dev)[None]  # (B, W)
            idx_r = rows[:, None, :, None].expand(b, x.shape[1], h, padded.shape[-1])
            x = padded.gather(2, idx_r)  # (B, C, H, W + 2s)
            idx_c = cols[:, None, None, :].expand(b, x.shape[1], h, w)
            x = x.gather(3, idx_c)  # (B, C, H, W)
        if erase > 0:
            y0 = torch.randint(0, max(1, h - erase + 1), (b,), device=dev, generator=generator)
            x0 = torch.randint(0, max(1, w - erase + 1), (b,), device=dev, generator=generator)
            ry = torch.arange(h, device=dev)[None]
            rx = torch.arange(w, device=dev)[None]
            m = ((ry >= y0[:, None]) & (ry < y0[:, None] + erase))[:, :, None] & (
                (rx >= x0[:, None]) & (rx < x0[:, None] + erase)
            )[:, None, :]  # (B, H, W)
            x = x.masked_fill(m[:, None], 0.0)
    elif drop > 0:
        keep = torch.rand(x.shape, device=dev, generator=generator) >= drop
        x = x * keep
    if noise > 0:
        x = x + noise * torch.randn(x.shape, device=dev, generator=generator)
    return x


class ContrastiveOptions(TaskOptions):
    """Options of :class:`ContrastiveTask` (augmentation sizes in the data's standardised units)."""

    temperature: float = Field(0.1, gt=0, description="InfoNCE temperature tau")
    shift: int = Field(1, ge=0, description="images: random translation by up to this many pixels")
    erase: int = Field(3, ge=0, description="images: side of the randomly erased square patch")
    noise: float = Field(0.1, ge=0, description="std of the Gaussian noise added to every view")
    drop: float = Field(0.1, ge=0, lt=1, description="vectors: feature dropout probability")


class ContrastiveTask(Task):
    """InfoNCE on two augmented views; retrieval recall@k on held-out data.

    Options: see :class:`ContrastiveOptions`.
    """

    name = "contrastive"
    Options = ContrastiveOptions
    needs_target = False

    def __init__(self, **options: Any):
        super().__init__(**options)
        self._eval_gen: torch.Generator | None = None
        self._emb: list[torch.Tensor] = []
        self._lab: list[torch.Tensor] = []

    def views(self, x: torch.Tensor, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        o = self.opts
        kw = {"shift": o.shift, "erase": o.erase, "noise": o.noise, "drop": o.drop, "generator": generator}
        return augment(x, **kw), augment(x, **kw)

    def forward(self, model: nn.Module, batch: Split):
        x = batch.inputs[0].float()
        gen = None if model.training else self._eval_gen
        v1, v2 = self.views(x, gen)
        shape = data_shape_of(model)
        z1 = model(fit_shape(v1, shape, type(model).__name__))
        z2 = model(fit_shape(v2, shape, type(model).__name__))
        if model.training:
            return z1, z2, None
        return z1, z2, model(fit_shape(x, shape, type(model).__name__))  # clean embedding for retrieval

    def batch_loss(self, output, batch: Split) -> torch.Tensor:
        z1, z2, _ = output
        return info_nce(z1.float(), z2.float(), temperature=self.opts.temperature)

    def make_metrics(self, device: torch.device) -> dict[str, Any]:
        self._eval_gen = torch.Generator(device=device).manual_seed(1234)
        self._emb, self._lab = [], []
        return {}

    def update_metrics(self, metrics, output, batch: Split) -> None:
        self._emb.append(output[2].detach().float())
        if batch.target is not None:
            self._lab.append(batch.target)

    def eval_extras(self, output, batch: Split) -> dict[str, torch.Tensor]:
        z1, z2, _ = output
        sim = F.normalize(z1.float(), dim=-1) @ F.normalize(z2.float(), dim=-1).T
        hits = (sim.argmax(1) == torch.arange(z1.shape[0], device=z1.device)).float().sum()
        return {"pair_hits": hits, "n": torch.tensor(float(z1.shape[0]), device=z1.device)}

    def finish_extras(self, sums) -> dict[str, float]:
        out = {"pair_recall_at_1": float(sums["pair_hits"]) / max(1.0, float(sums["n"]))}
        if self._emb and self._lab and len(self._lab) == len(self._emb):
            emb, lab = torch.cat(self._emb), torch.cat(self._lab)
            for k in (1, 5):
                out[f"recall_at_{k}"] = class_recall_at_k(emb, lab, k)
        return out

    def predict(self, model: nn.Module, inputs: tuple[torch.Tensor, ...]) -> torch.Tensor:
        """Embeddings (B, D)."""
        return model(fit_shape(inputs[0].float(), data_shape_of(model), type(model).__name__))


@torch.no_grad()
def class_recall_at_k(emb: torch.Tensor, labels: torch.Tensor, k: int) -> float:
    """Fraction of samples with a same-class sample among their k nearest others (cosine)."""
    z = F.normalize(emb.float(), dim=-1)
    sim = z @ z.T
    sim.fill_diagonal_(float("-inf"))  # a sample is not its own neighbour
    k = min(k, z.shape[0] - 1)
    if k < 1:
        return float("nan")
    nn_idx = sim.topk(k, dim=1).indices  # (N, k)
    return float((labels[nn_idx] == labels[:, None]).any(dim=1).float().mean())
