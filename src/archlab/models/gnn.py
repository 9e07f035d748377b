"""Graph neural networks: GCN, GAT and GraphSAGE over a sparse edge list (no PyTorch Geometric).

When to use: data with nodes and edges - molecules, social
networks, knowledge graphs, citation graphs. GCN is the simple baseline; GAT learns per-edge
weights; GraphSAGE (mean aggregator) scales to large graphs with neighbour sampling.
Papers: Kipf & Welling 2017 (GCN); Velickovic et al. 2018 (GAT); Hamilton et al. 2017 (SAGE).

Inputs: ``x`` (N, in_features) float node features, ``edge_index`` (2, E) long with row 0 the
source and row 1 the target (list both directions for an undirected graph), and for graph-level
tasks ``batch`` (N,) long giving each node's graph id in [0, G) (a mini-batch of graphs is their
disjoint union). Self-loops and the symmetric normalisation of GCN are added inside the layers;
aggregation is a scatter over the E edges, never a dense N x N matrix.

Heads (``task``):
- ``node``: conv layers then a final conv to ``out_features`` -> (N, out_features).
- ``graph``: conv layers, mean/sum/max readout over ``batch``, Linear -> (G, out_features).

Presets:
- ``gcn_karate`` - 2-layer GCN for Zachary's karate club: 34 nodes, one-hot features (34), 2 clubs.
- ``gat`` - GAT for Cora-sized citation graphs: 8 heads x 8 hidden, 7 classes, dropout 0.6.
- ``graphsage`` - 2-layer GraphSAGE-mean node classifier.
- ``gcn_graph_classifier`` - GCN + mean readout for small-molecule graph classification (MUTAG-sized).
"""

from __future__ import annotations

from typing import Literal, Optional

import torch
from pydantic import Field
from torch import nn

from archlab.config import (
    Activation,
    ArchConfig,
    Extent,
    InitScheme,
    Size,
    Width,
    Widths,
)
from archlab.errors import ShapeError
from archlab.layers.checks import check_index_range, check_tensor, model_name
from archlab.layers.graph import GATConv, GCNConv, SAGEConv, global_pool
from archlab.layers.init import init_weights
from archlab.layers.mlp import activation
from archlab.layers.params import ParamCount
from archlab.registry import register


class GNNConfig(ArchConfig):
    """Config of a GCN / GAT / GraphSAGE network."""

    conv: Literal["gcn", "gat", "sage"] = Field("gcn", description="Message-passing layer type.")
    task: Literal["node", "graph"] = Field(
        "node", description="Node-level outputs, or one output per graph via readout."
    )
    in_features: Size = Field(16, ge=1, description="Node feature size.")
    hidden_sizes: Widths = Field(
        default_factory=lambda: [16], description="Width of each hidden conv layer (per head for GAT)."
    )
    out_features: Size = Field(2, ge=1, description="Classes or targets per node (node) or per graph (graph).")
    heads: Width = Field(1, ge=1, description="GAT: attention heads of the hidden layers (concatenated).")
    out_heads: Width = Field(1, ge=1, description="GAT: heads of the output layer (averaged), node task only.")
    readout: Literal["mean", "sum", "max"] = Field(
        "mean", description="Graph task: how node rows become one row per graph."
    )
    activation: Activation = Field(
        "relu", description="Activation between conv layers (GAT paper: ELU-like; relu here)."
    )
    dropout: float = Field(
        0.5, ge=0.0, lt=1.0, description="Dropout on features before each conv (and on GAT attention)."
    )
    sage_normalize: bool = Field(False, description="SAGE: L2-normalise each layer's output rows.")
    example_nodes: Extent = Field(
        8, ge=1, description="Nodes per graph in example_input (analysis only; any graph is accepted)."
    )
    init: InitScheme = Field("xavier", description="Weight init of the linear maps (Glorot, as in the GCN/GAT papers).")


def _make_conv(kind: str, c_in: int, c_out: int, config: GNNConfig, *, last: bool) -> nn.Module:
    if kind == "gcn":
        return GCNConv(c_in, c_out)
    if kind == "sage":
        return SAGEConv(c_in, c_out, normalize=config.sage_normalize and not last)
    heads = config.out_heads if last else config.heads
    return GATConv(c_in, c_out, heads=heads, concat=not last, attn_dropout=config.dropout)


class GNN(ParamCount, nn.Module):
    """Stack of message-passing layers with a node-level or graph-level head."""

    def __init__(self, config: GNNConfig):
        super().__init__()
        self.config = config
        c = config
        convs, width = [], c.in_features
        for h in c.hidden_sizes:
            conv = _make_conv(c.conv, width, h, c, last=False)
            convs.append(conv)
            width = conv.output_width if isinstance(conv, GATConv) else h
        if c.task == "node":
            convs.append(_make_conv(c.conv, width, c.out_features, c, last=True))
            self.head = None
        else:
            self.head = nn.Linear(width, c.out_features)
        self.convs = nn.ModuleList(convs)
        self.act = activation(c.activation)
        self.drop = nn.Dropout(c.dropout)
        init_weights(self, c.init, nonlinearity=c.activation)

    def example_input(self, batch_size: int = 2) -> tuple[torch.Tensor, ...]:
        """``batch_size`` random undirected graphs of ``example_nodes`` nodes, as one disjoint union.

        Returns (x, edge_index) for the node task, (x, edge_index, batch) for the graph task.
        """
        n, g = self.config.example_nodes, batch_size
        edges = []
        for k in range(g):
            off = k * n
            ring = torch.arange(n)
            # a ring plus a few random chords keeps every graph connected
            src = torch.cat([ring, torch.randint(0, n, (n // 2,))])
            dst = torch.cat([(ring + 1) % n, torch.randint(0, n, (n // 2,))])
            edges.append(torch.stack([src, dst]) + off)
        ei = torch.cat(edges, dim=1)
        ei = torch.cat([ei, ei.flip(0)], dim=1)  # both directions: (2, E)
        x = torch.randn(n * g, self.config.in_features)
        if self.config.task == "node":
            return (x, ei)
        return (x, ei, torch.arange(g).repeat_interleave(n))

    def _check(self, x, edge_index, batch):
        check_tensor(self, x, "N F", F=self.config.in_features)
        n = x.shape[0]
        check_tensor(self, edge_index, "two E", name="edge_index", dtype="long", two=2)
        check_index_range(self, edge_index, n, name="edge_index node")
        if batch is not None:
            check_tensor(self, batch, "N", name="batch", dtype="long", N=n)
            check_index_range(self, batch, max(n, 1), name="batch graph")

    def node_embeddings(self, x: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
        """Run the hidden conv layers: (N, F) -> (N, hidden)."""
        n_hidden = len(self.config.hidden_sizes)
        for conv in self.convs[:n_hidden]:
            x = self.act(conv(self.drop(x), edge_index))
        return x

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor, batch: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Message passing and the head.

        Args:
            x: (N, in_features) float node features.
            edge_index: (2, E) long, [source; target] node ids in [0, N).
            batch: (N,) long graph id of each node (graph task); None means one graph.

        Returns:
            node task (N, out_features); graph task (G, out_features), G = batch.max() + 1.
        """
        self._check(x, edge_index, batch)
        h = self.node_embeddings(x, edge_index)
        if self.config.task == "node":
            return self.convs[-1](self.drop(h), edge_index)  # (N, out)
        if batch is None:
            batch = torch.zeros(x.shape[0], dtype=torch.long, device=x.device)
        if x.shape[0] == 0:
            raise ShapeError(f"{model_name(self)} expects at least one node for a graph readout; got N=0")
        num_graphs = int(batch.max()) + 1
        pooled = global_pool(h, batch, num_graphs, self.config.readout)  # (G, hidden)
        return self.head(self.drop(pooled))  # (G, out)


_FAMILY = dict(family="gnn", model=GNN, config=GNNConfig)
_WHEN = "Data with nodes + edges: molecules, social nets, citation graphs, KGs"

register(
    "gcn_karate",
    **_FAMILY,
    defaults=dict(
        conv="gcn", task="node", in_features=34, hidden_sizes=[16], out_features=2, dropout=0.5, example_nodes=34
    ),
    modalities=("graph",),
    tasks=("node_classification",),
    description="2-layer GCN (Kipf & Welling 2017) for Zachary's karate club: 34 one-hot features -> 16 -> 2 clubs",
    when_to_use=_WHEN,
)
register(
    "gat",
    **_FAMILY,
    defaults=dict(
        conv="gat",
        task="node",
        in_features=1433,
        hidden_sizes=[8],
        heads=8,
        out_heads=1,
        out_features=7,
        dropout=0.6,
        example_nodes=16,
    ),
    modalities=("graph",),
    tasks=("node_classification",),
    description="GAT (Velickovic et al. 2018), Cora sizes: 1433 features -> 8 heads x 8 -> 7 classes",
    when_to_use=_WHEN,
)
register(
    "graphsage",
    **_FAMILY,
    defaults=dict(
        conv="sage", task="node", in_features=64, hidden_sizes=[64], out_features=7, dropout=0.5, example_nodes=16
    ),
    modalities=("graph",),
    tasks=("node_classification",),
    description="GraphSAGE-mean (Hamilton et al. 2017): 64 features -> 64 -> 7 classes",
    when_to_use=_WHEN,
)
register(
    "gcn_graph_classifier",
    **_FAMILY,
    defaults=dict(
        conv="gcn",
        task="graph",
        in_features=7,
        hidden_sizes=[64, 64],
        out_features=2,
        readout="mean",
        dropout=0.1,
        example_nodes=12,
    ),
    modalities=("graph",),
    tasks=("graph_classification",),
    description="GCN (64, 64) + mean readout + Linear for graph classification (MUTAG-sized: 7 atom types, 2 classes)",
    when_to_use=_WHEN,
)
