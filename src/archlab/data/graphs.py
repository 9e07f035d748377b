"""Graphs for node classification: networkx's ``karate``, ``les_miserables``, ``sbm``, and edge lists.

Shapes (one whole graph, transductive): every split has the same inputs ``(x, edge_index)`` —
``x`` (num_nodes, F) float32 node features, ``edge_index`` (2, E) int64, undirected with both
directions listed, no duplicates or self-loops — and the same target (num_nodes,) int64; each split
selects its nodes with a (num_nodes,) bool ``mask``. Nodes without a label carry target -1 and
sit in no mask. Features default to one-hot node identity (``features="identity"``, F =
num_nodes, as in Kipf & Welling's karate club experiment); ``features="degree"`` gives (N, 1) the
standardised degree.

Splits are drawn per class by ``seed`` (``val_fraction``, ``test_fraction``); with
``train_per_class=k`` exactly k labelled nodes per class train (the semi-supervised setting: GCN
on karate with a handful of labels) and the rest are split between val and test.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from archlab.data.base import DataBundle, Split
from archlab.data.splits import check_fraction, split_indices
from archlab.errors import DataError, require


def edge_index_from_pairs(pairs: Sequence[tuple[int, int]] | np.ndarray, num_nodes: int) -> torch.Tensor:
    """(2, E) int64 of an undirected graph: both directions, sorted, no duplicates or self-loops."""
    e = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    e = e[e[:, 0] != e[:, 1]]
    both = np.concatenate([e, e[:, ::-1]])
    both = np.unique(both, axis=0) if len(both) else both.reshape(0, 2)
    if len(both) and (both.min() < 0 or both.max() >= num_nodes):
        raise DataError(f"edge endpoints must be in 0..{num_nodes - 1}; got {both.min()}..{both.max()}")
    return torch.from_numpy(np.ascontiguousarray(both.T))


def node_features(kind: str, num_nodes: int, edge_index: torch.Tensor) -> np.ndarray:
    if kind == "identity":
        return np.eye(num_nodes, dtype=np.float32)
    if kind == "degree":
        deg = np.bincount(edge_index[0].numpy(), minlength=num_nodes).astype(np.float64)
        std = deg.std() if deg.std() > 0 else 1.0
        return ((deg - deg.mean()) / std).astype(np.float32)[:, None]
    raise DataError(f"features must be 'identity' or 'degree'; got {kind!r}")


def graph_masks(
    labels: np.ndarray, *, seed: int, val_fraction: float, test_fraction: float, train_per_class: int | None
) -> dict[str, np.ndarray]:
    """Bool masks over the nodes; unlabelled nodes (label -1) are in none."""
    n = len(labels)
    labelled = np.flatnonzero(labels >= 0)
    lab = labels[labelled]
    masks = {k: np.zeros(n, dtype=bool) for k in ("train", "val", "test")}
    if train_per_class is None:
        tr, va, te = split_indices(len(labelled), val_fraction, test_fraction, seed, lab)
    else:
        k = int(train_per_class)
        rng = np.random.default_rng(seed)
        tr_parts = []
        for c in np.unique(lab):
            idx = np.flatnonzero(lab == c)
            if len(idx) <= k:
                raise DataError(f"train_per_class={k} but class {int(c)} has only {len(idx)} labelled nodes")
            tr_parts.append(rng.choice(idx, size=k, replace=False))
        tr = np.sort(np.concatenate(tr_parts))
        rest = np.setdiff1d(np.arange(len(labelled)), tr)
        vf = check_fraction("val_fraction", val_fraction)
        tf = check_fraction("test_fraction", test_fraction)
        share = vf / (vf + tf) if (vf + tf) > 0 else 0.0
        rest = rest[rng.permutation(len(rest))]
        n_val = int(round(share * len(rest)))
        va, te = np.sort(rest[:n_val]), np.sort(rest[n_val:])
    masks["train"][labelled[tr]] = True
    masks["val"][labelled[va]] = True
    masks["test"][labelled[te]] = True
    return masks


def graph_bundle(
    name: str,
    num_nodes: int,
    pairs,
    labels: np.ndarray | None,
    *,
    seed: int = 0,
    val_fraction: float = 0.2,
    test_fraction: float = 0.4,
    train_per_class: int | None = None,
    features: str = "identity",
    class_names: list[str] | None = None,
    info: dict[str, Any] | None = None,
) -> DataBundle:
    """Pack a graph (edge pairs over nodes 0..num_nodes-1) and node labels into a bundle."""
    edge_index = edge_index_from_pairs(pairs, num_nodes)
    x = torch.from_numpy(node_features(features, num_nodes, edge_index))
    info = dict(info or {})
    info.update(
        num_nodes=int(num_nodes),
        num_edges=int(edge_index.shape[1] // 2),
        in_features=int(x.shape[1]),
        features=features,
        input_shape=[int(num_nodes), int(x.shape[1])],
    )
    if labels is None:
        split = Split(inputs=(x, edge_index), target=None, mask=torch.ones(num_nodes, dtype=torch.bool))
        info["split_sizes"] = {"train": num_nodes, "val": 0, "test": 0}
        return DataBundle(name=name, modality="graph", task="node_embedding", train=split, info=info)
    labels = np.asarray(labels, dtype=np.int64)
    masks = graph_masks(
        labels, seed=seed, val_fraction=val_fraction, test_fraction=test_fraction, train_per_class=train_per_class
    )
    target = torch.from_numpy(labels)
    k = int(labels.max()) + 1
    info.update(
        num_classes=k,
        class_names=class_names or [str(i) for i in range(k)],
        seed=seed,
        unlabelled=int((labels < 0).sum()),
        split_sizes={s: int(m.sum()) for s, m in masks.items()},
    )
    splits = {
        s: (Split(inputs=(x, edge_index), target=target, mask=torch.from_numpy(m)) if m.any() else None)
        for s, m in masks.items()
    }
    return DataBundle(
        name=name,
        modality="graph",
        task="node_classification",
        train=splits["train"],
        val=splits["val"],
        test=splits["test"],
        info=info,
    )


def _nx():
    return require("networkx", "data", "the graph datasets")


def load_karate(
    *,
    seed: int = 0,
    val_fraction: float = 0.2,
    test_fraction: float = 0.4,
    train_per_class: int | None = None,
    features: str = "identity",
) -> DataBundle:
    """Zachary's karate club (34 members, 78 ties); label = the club each member joined
    (0 ``Mr. Hi``, 1 ``Officer``).

    Returns inputs (x (34, F) float32, edge_index (2, 156) int64), target (34,) int64, masks.
    """
    g = _nx().karate_club_graph()
    names = ["Mr. Hi", "Officer"]
    labels = np.array([names.index(g.nodes[v]["club"]) for v in range(g.number_of_nodes())])
    return graph_bundle(
        "karate",
        g.number_of_nodes(),
        list(g.edges()),
        labels,
        seed=seed,
        val_fraction=val_fraction,
        test_fraction=test_fraction,
        train_per_class=train_per_class,
        features=features,
        class_names=names,
        info={"source": "networkx.karate_club_graph"},
    )


def load_les_miserables(
    *,
    seed: int = 0,
    val_fraction: float = 0.2,
    test_fraction: float = 0.4,
    train_per_class: int | None = None,
    features: str = "identity",
) -> DataBundle:
    """Co-appearance of the 77 characters of Les Misérables (254 ties; weights ignored).

    The graph has no ground-truth classes; the label of a node is its community from networkx's
    greedy modularity maximisation (deterministic; 5 communities), so the task is recovering
    community structure from a few labelled nodes.

    Returns inputs (x (77, F) float32, edge_index (2, 508) int64), target (77,) int64, masks.
    """
    nx = _nx()
    g = nx.les_miserables_graph()
    nodes = list(g.nodes())
    index = {v: i for i, v in enumerate(nodes)}
    comms = nx.algorithms.community.greedy_modularity_communities(g)
    labels = np.empty(len(nodes), dtype=np.int64)
    for c, members in enumerate(comms):
        for v in members:
            labels[index[v]] = c
    pairs = [(index[u], index[v]) for u, v in g.edges()]
    return graph_bundle(
        "les_miserables",
        len(nodes),
        pairs,
        labels,
        seed=seed,
        val_fraction=val_fraction,
        test_fraction=test_fraction,
        train_per_class=train_per_class,
        features=features,
        info={
            "source": "networkx.les_miserables_graph",
            "node_names": nodes,
            "label_source": "greedy_modularity_communities",
        },
    )


def load_sbm(
    *,
    sizes: Sequence[int] = (40, 40, 40),
    p_in: float = 0.25,
    p_out: float = 0.02,
    seed: int = 0,
    val_fraction: float = 0.2,
    test_fraction: float = 0.4,
    train_per_class: int | None = None,
    features: str = "identity",
) -> DataBundle:
    """A stochastic block model graph (networkx), generated by ``seed``; label = the node's block.

    Args:
        sizes: nodes per block; p_in / p_out: edge probability within / between blocks.

    Returns inputs (x (N, F) float32, edge_index (2, E) int64), target (N,) int64, masks.
    """
    sizes = [int(s) for s in sizes]
    if len(sizes) < 2 or min(sizes) < 2:
        raise DataError(f"sbm: sizes must list at least two blocks of >= 2 nodes; got {sizes}")
    for key, p in (("p_in", p_in), ("p_out", p_out)):
        if not 0 <= float(p) <= 1:
            raise DataError(f"sbm: {key} must be in [0, 1]; got {p!r}")
    k = len(sizes)
    probs = [[float(p_in) if i == j else float(p_out) for j in range(k)] for i in range(k)]
    g = _nx().stochastic_block_model(sizes, probs, seed=seed)
    labels = np.repeat(np.arange(k), sizes)
    return graph_bundle(
        "sbm",
        sum(sizes),
        list(g.edges()),
        labels,
        seed=seed,
        val_fraction=val_fraction,
        test_fraction=test_fraction,
        train_per_class=train_per_class,
        features=features,
        info={"source": "networkx.stochastic_block_model", "sizes": sizes, "p_in": float(p_in), "p_out": float(p_out)},
    )


def _int_pairs(path: Path, what: str) -> list[tuple[int, int, int]]:
    """(line, a, b) for each line of two integers; '#' and '%' start comments."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc})") from None
    out = []
    for line_no, line in enumerate(lines, start=1):
        s = line.split("#")[0].split("%")[0].strip()
        if not s:
            continue
        parts = s.replace(",", " ").split()
        if len(parts) != 2:
            raise DataError(f"{path}, line {line_no}: expected two integers ({what}); got {line.strip()!r}")
        try:
            out.append((line_no, int(parts[0]), int(parts[1])))
        except ValueError:
            raise DataError(f"{path}, line {line_no}: expected two integers ({what}); got {line.strip()!r}") from None
    if not out:
        raise DataError(f"{path}: {'file is empty' if not any(ln.strip() for ln in lines) else 'no edges'}")
    return out


def load_edge_list(
    path: str | Path,
    *,
    labels: str | Path | None = None,
    seed: int = 0,
    val_fraction: float = 0.2,
    test_fraction: float = 0.4,
    train_per_class: int | None = None,
    features: str = "identity",
) -> DataBundle:
    """An edge list: two integer node ids per line (``u v``; ``#``/``%`` comments), undirected.

    Args:
        labels: optional file of ``node label`` lines (integer labels 0..K-1) for node
            classification; nodes it does not list get target -1 and sit in no mask
            (``info["unlabelled"]``). Without it the bundle has no target (task ``node_embedding``).

    Node ids are mapped to 0..N-1 in sorted order (``info["node_ids"]`` holds the originals).

    Returns inputs (x (N, F) float32, edge_index (2, E) int64), target (N,) int64 or None, masks.
    """
    path = Path(path)
    rows = _int_pairs(path, "source and target node")
    ids = sorted({a for _, a, _ in rows} | {b for _, _, b in rows})
    index = {v: i for i, v in enumerate(ids)}
    pairs = [(index[a], index[b]) for _, a, b in rows]
    y = None
    if labels is not None:
        lpath = Path(labels)
        y = np.full(len(ids), -1, dtype=np.int64)
        for line_no, node, lab in _int_pairs(lpath, "node and label"):
            if node not in index:
                raise DataError(f"{lpath}, line {line_no}: node {node} is not in the edge list {path.name}")
            if lab < 0:
                raise DataError(f"{lpath}, line {line_no}: label {lab} is negative; labels must be 0..K-1")
            y[index[node]] = lab
        if (y < 0).all():
            raise DataError(f"{lpath}: no labels")
    return graph_bundle(
        str(path),
        len(ids),
        pairs,
        y,
        seed=seed,
        val_fraction=val_fraction,
        test_fraction=test_fraction,
        train_per_class=train_per_class,
        features=features,
        info={"source": "edge list", "node_ids": ids},
    )
