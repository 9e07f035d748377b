"""Graph tasks: node classification on one masked graph, graph classification on batched graphs.

- :class:`NodeClassificationTask` - transductive (Kipf & Welling 2017): every split holds the
  whole graph ``(x, edge_index)`` and a bool ``mask`` of its nodes; the model runs on the whole
  graph and the loss and metrics use the masked nodes only. Nodes labelled -1 are in no mask.
- :class:`GraphClassificationTask` - a split holds G graphs in the padded layout of
  :mod:`archlab.data.graph_sets` (``x`` (G, n_max, F), ``edges`` (G, e_max, 2) padded with -1,
  ``num_nodes`` (G,)), so the trainer batches graphs by indexing; each batch becomes the
  disjoint union ``(x (N, F), edge_index (2, E), batch (N,))`` a GNN with ``task="graph"`` reads.

Both reuse :class:`~archlab.tasks.classification.ClassificationTask`'s losses and metrics
(cross-entropy, accuracy, macro F1, AUROC, ECE).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import torch
from torch import nn

from archlab.data.base import DataBundle, Split
from archlab.errors import ShapeError
from archlab.tasks.base import output_tensor
from archlab.tasks.classification import ClassificationTask


def _masked_bundle(data: DataBundle) -> DataBundle:
    """The bundle with the train target restricted to the train mask (for label checks)."""
    tr = data.train
    if tr.mask is None or tr.target is None:
        return data
    return replace(data, train=Split(inputs=tr.inputs, target=tr.target[tr.mask]))


class NodeClassificationTask(ClassificationTask):
    """Classify the nodes of one graph; loss and metrics on the split's masked nodes."""

    name = "node_classification"

    def model_overrides(self, info: dict[str, Any], data: DataBundle) -> dict[str, Any]:
        return super().model_overrides(info, _masked_bundle(data))

    def setup(self, data: DataBundle, cfg, device: torch.device) -> None:
        if data.train.mask is None:
            raise ShapeError(
                f"node classification expects a whole-graph split with a node mask; dataset "
                f"{data.name!r} has an indexable train split (use graph_classification or classification)"
            )
        super().setup(_masked_bundle(data), cfg, device)

    def _select(self, output: Any, batch: Split) -> tuple[torch.Tensor, torch.Tensor]:
        logits = output_tensor(output)
        if batch.mask is None:
            return logits, batch.target
        return logits[batch.mask], batch.target[batch.mask]

    def batch_loss(self, output: Any, batch: Split) -> torch.Tensor:
        logits, target = self._select(output, batch)
        return self.loss(logits, target)

    def update_metrics(self, metrics: dict[str, Any], output: Any, batch: Split) -> None:
        logits, target = self._select(output, batch)
        super().update_metrics(metrics, logits, Split(inputs=(), target=target))


def union_batch(x: torch.Tensor, edges: torch.Tensor, num_nodes: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Padded graphs -> disjoint union.

    Args:
        x: (G, n_max, F) node features; edges: (G, e_max, 2) local endpoints, -1 padded;
        num_nodes: (G,) nodes of each graph.

    Returns:
        ``(x (N, F), edge_index (2, E), batch (N,))`` with N = num_nodes.sum().
    """
    if x.ndim != 3 or edges.ndim != 3 or edges.shape[-1] != 2 or num_nodes.shape != (x.shape[0],):
        raise ShapeError(
            f"graph batches expect x (G, n_max, F), edges (G, e_max, 2), num_nodes (G,); got "
            f"{tuple(x.shape)}, {tuple(edges.shape)}, {tuple(num_nodes.shape)}"
        )
    g, n_max = x.shape[:2]
    dev = x.device
    node_mask = torch.arange(n_max, device=dev)[None, :] < num_nodes[:, None]  # (G, n_max)
    offsets = torch.cumsum(num_nodes, 0) - num_nodes  # first node id of each graph in the union
    valid = edges[..., 0] >= 0  # (G, e_max)
    glob = edges + offsets[:, None, None]  # (G, e_max, 2) local -> union ids
    edge_index = glob[valid].T.contiguous()  # (E, 2) -> (2, E)
    batch = torch.repeat_interleave(torch.arange(g, device=dev), num_nodes)
    return x[node_mask], edge_index, batch


class GraphClassificationTask(ClassificationTask):
    """One label per graph, over mini-batches of padded graphs (see module docs)."""

    name = "graph_classification"

    def forward(self, model: nn.Module, batch: Split) -> Any:
        return model(*union_batch(*batch.inputs))

    def predict(self, model: nn.Module, inputs: tuple[torch.Tensor, ...]) -> torch.Tensor:
        return super().predict(lambda *a: model(*union_batch(*a)), inputs)
