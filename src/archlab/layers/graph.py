"""Sparse message passing without PyTorch Geometric: scatter ops and GCN / GAT / SAGE layers.

A graph is node features ``x`` (N, F) and ``edge_index`` (2, E) long, row 0 the source and
row 1 the target of each edge; messages flow source -> target and are aggregated at the target.
An undirected graph lists each edge in both directions. Nothing builds a dense N x N matrix:
aggregation is ``index_add_`` / ``scatter_reduce`` over the E edges.
"""

from __future__ import annotations

import torch
from torch import nn

# -- scatter helpers ----------------------------------------------------------------------------


def scatter_sum(src: torch.Tensor, index: torch.Tensor, num_nodes: int) -> torch.Tensor:
    """Sum rows of ``src`` (E, ...) into ``num_nodes`` buckets by ``index`` (E,)."""
    out = src.new_zeros((num_nodes,) + tuple(src.shape[1:]))
    return out.index_add_(0, index, src)


def scatter_mean(src: torch.Tensor, index: torch.Tensor, num_nodes: int) -> torch.Tensor:
    """Mean of rows of ``src`` per bucket; empty buckets are 0."""
    total = scatter_sum(src, index, num_nodes)
    count = scatter_sum(torch.ones_like(index, dtype=src.dtype), index, num_nodes).clamp(min=1)
    return total / count.view((-1,) + (1,) * (src.dim() - 1))


def scatter_max(src: torch.Tensor, index: torch.Tensor, num_nodes: int) -> torch.Tensor:
    """Max of rows of ``src`` per bucket; empty buckets are 0."""
    shape = (num_nodes,) + tuple(src.shape[1:])
    idx = index.view((-1,) + (1,) * (src.dim() - 1)).expand_as(src)
    out = src.new_zeros(shape).scatter_reduce(0, idx, src, reduce="amax", include_self=False)
    return out


def segment_softmax(scores: torch.Tensor, index: torch.Tensor, num_nodes: int) -> torch.Tensor:
    """Softmax of ``scores`` (E, H) over the edges sharing the same target ``index`` (E,)."""
    # Subtract each group's max for stability; softmax is invariant to it.
    peak = scatter_max(scores.detach(), index, num_nodes)  # (N, H)
    ex = (scores - peak[index]).exp()
    denom = scatter_sum(ex, index, num_nodes)  # (N, H)
    return ex / denom[index].clamp(min=1e-16)


def add_self_loops(edge_index: torch.Tensor, num_nodes: int) -> torch.Tensor:
    """Drop any existing self-loops, then add exactly one loop per node: (2, E') long."""
    keep = edge_index[0] != edge_index[1]
    loops = torch.arange(num_nodes, device=edge_index.device).unsqueeze(0).expand(2, -1)
    return torch.cat([edge_index[:, keep], loops], dim=1)


def gcn_norm(
    edge_index: torch.Tensor, num_nodes: int, dtype: torch.dtype = torch.float32
) -> tuple[torch.Tensor, torch.Tensor]:
    """Edges of A + I and their weights 1/sqrt(deg(src) * deg(dst)), deg counted on A + I.

    This is Kipf & Welling's D^-1/2 (A + I) D^-1/2 as an edge list. Degrees are in-degrees
    (edges per target), which equal the degree for an undirected (symmetric) edge list.
    """
    ei = add_self_loops(edge_index, num_nodes)
    deg = scatter_sum(torch.ones(ei.shape[1], dtype=dtype, device=ei.device), ei[1], num_nodes)
    inv_sqrt = deg.pow(-0.5)  # every node has its loop, so deg >= 1
    return ei, inv_sqrt[ei[0]] * inv_sqrt[ei[1]]


def global_pool(x: torch.Tensor, batch: torch.Tensor, num_graphs: int, reduce: str = "mean") -> torch.Tensor:
    """Readout: node rows (N, F) -> one row per graph (G, F) by ``batch`` (N,) graph ids."""
    if reduce == "mean":
        return scatter_mean(x, batch, num_graphs)
    if reduce == "sum":
        return scatter_sum(x, batch, num_graphs)
    if reduce == "max":
        return scatter_max(x, batch, num_graphs)
    raise ValueError(f"unknown readout {reduce!r}; choose mean, sum or max")


# -- layers -------------------------------------------------------------------------------------


class GCNConv(nn.Module):
    """Kipf & Welling 2017: H' = D^-1/2 (A + I) D^-1/2 H W + b."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True):
        super().__init__()
        self.lin = nn.Linear(in_features, out_features, bias=False)
        self.bias = nn.Parameter(torch.zeros(out_features)) if bias else None

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
        """x (N, F_in), edge_index (2, E) -> (N, F_out)."""
        n = x.shape[0]
        ei, w = gcn_norm(edge_index, n, x.dtype)
        h = self.lin(x)  # (N, F_out)
        out = scatter_sum(h[ei[0]] * w.unsqueeze(-1), ei[1], n)  # messages src -> dst
        return out + self.bias if self.bias is not None else out


class GATConv(nn.Module):
    """Velickovic et al. 2018: multi-head attention over each node's incoming edges (+ self-loop).

    e_ij = LeakyReLU(a_dst . W h_i + a_src . W h_j) for edge j -> i, softmax over j, then
    h_i' = sum_j alpha_ij W h_j; heads are concatenated (``concat=True``) or averaged.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        heads: int = 1,
        concat: bool = True,
        negative_slope: float = 0.2,
        attn_dropout: float = 0.0,
        bias: bool = True,
    ):
        super().__init__()
        self.heads, self.out_features, self.concat = heads, out_features, concat
        self.lin = nn.Linear(in_features, heads * out_features, bias=False)
        self.att_src = nn.Parameter(torch.empty(1, heads, out_features))
        self.att_dst = nn.Parameter(torch.empty(1, heads, out_features))
        nn.init.xavier_uniform_(self.att_src)
        nn.init.xavier_uniform_(self.att_dst)
        self.leaky = nn.LeakyReLU(negative_slope)
        self.attn_drop = nn.Dropout(attn_dropout)
        width = heads * out_features if concat else out_features
        self.bias = nn.Parameter(torch.zeros(width)) if bias else None

    @property
    def output_width(self) -> int:
        return self.heads * self.out_features if self.concat else self.out_features

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
        """x (N, F_in), edge_index (2, E) -> (N, heads*F_out) if concat else (N, F_out)."""
        n = x.shape[0]
        ei = add_self_loops(edge_index, n)
        src, dst = ei[0], ei[1]
        h = self.lin(x).view(n, self.heads, self.out_features)  # (N, F) -> (N, H, C)
        a_src = (h * self.att_src).sum(-1)  # (N, H)
        a_dst = (h * self.att_dst).sum(-1)  # (N, H)
        alpha = segment_softmax(self.leaky(a_src[src] + a_dst[dst]), dst, n)  # (E, H)
        alpha = self.attn_drop(alpha)
        out = scatter_sum(h[src] * alpha.unsqueeze(-1), dst, n)  # (N, H, C)
        out = out.reshape(n, -1) if self.concat else out.mean(dim=1)
        return out + self.bias if self.bias is not None else out


class SAGEConv(nn.Module):
    """Hamilton et al. 2017, mean aggregator: h_i' = W_root h_i + W_neigh mean_{j->i} h_j.

    The root term stands in for a self-loop; a node with no in-edges aggregates zeros.
    ``normalize=True`` L2-normalises each output row, as in the paper.
    """

    def __init__(self, in_features: int, out_features: int, normalize: bool = False):
        super().__init__()
        self.lin_root = nn.Linear(in_features, out_features)
        self.lin_neigh = nn.Linear(in_features, out_features, bias=False)
        self.normalize = normalize

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
        """x (N, F_in), edge_index (2, E) -> (N, F_out)."""
        neigh = scatter_mean(x[edge_index[0]], edge_index[1], x.shape[0])  # (N, F_in)
        out = self.lin_root(x) + self.lin_neigh(neigh)
        return nn.functional.normalize(out, dim=-1) if self.normalize else out
