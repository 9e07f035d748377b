"""GNN and recommender families: GCN maths, permutation symmetry, scatter softmax, DLRM, ids."""

from __future__ import annotations

import pytest
import torch

import archlab
from archlab.errors import ConfigError, ShapeError
from archlab.layers.graph import GCNConv, add_self_loops, gcn_norm, segment_softmax

# -- GNN ----------------------------------------------------------------------------------------

# A 5-node undirected graph (both directions listed) with one isolated node (4).
_EDGES = [(0, 1), (1, 2), (2, 0), (2, 3)]


def _edge_index(edges=_EDGES) -> torch.Tensor:
    src = [a for a, b in edges] + [b for a, b in edges]
    dst = [b for a, b in edges] + [a for a, b in edges]
    return torch.tensor([src, dst])


def test_gcn_conv_matches_dense_reference():
    n, f_in, f_out = 5, 3, 4
    x = torch.randn(n, f_in)
    conv = GCNConv(f_in, f_out)
    with torch.no_grad():
        conv.bias.copy_(torch.randn(f_out))
    # by hand: A + I, degrees, D^-1/2 (A + I) D^-1/2 X W + b
    a = torch.zeros(n, n)
    for i, j in _EDGES:
        a[i, j] = a[j, i] = 1.0
    a_hat = a + torch.eye(n)
    d_inv_sqrt = torch.diag(a_hat.sum(1).pow(-0.5))
    w = conv.lin.weight.detach().T  # (F_in, F_out)
    expected = d_inv_sqrt @ a_hat @ d_inv_sqrt @ x @ w + conv.bias.detach()
    with torch.no_grad():
        got = conv(x, _edge_index())
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=1e-5)


def test_self_loops_are_not_doubled():
    ei = torch.cat([_edge_index(), torch.tensor([[1], [1]])], dim=1)  # an explicit self-loop on 1
    looped = add_self_loops(ei, 5)
    assert int(((looped[0] == looped[1]) & (looped[0] == 1)).sum()) == 1
    assert looped.shape[1] == _edge_index().shape[1] + 5
    _, w = gcn_norm(ei, 5)
    _, w_plain = gcn_norm(_edge_index(), 5)
    torch.testing.assert_close(w, w_plain)


def test_segment_softmax_sums_to_one_per_target():
    index = torch.tensor([0, 0, 1, 2, 2, 2])
    scores = torch.randn(6, 3) * 50  # large scores: the max-shift keeps it finite
    alpha = segment_softmax(scores, index, 4)
    sums = torch.zeros(4, 3).index_add_(0, index, alpha)
    torch.testing.assert_close(sums[:3], torch.ones(3, 3))
    assert torch.isfinite(alpha).all()
    torch.testing.assert_close(alpha[:2], torch.softmax(scores[:2], dim=0))


def _random_graph(n: int, e: int, f: int):
    src, dst = torch.randint(0, n, (e,)), torch.randint(0, n, (e,))
    ei = torch.cat([torch.stack([src, dst]), torch.stack([dst, src])], dim=1)
    return torch.randn(n, f), ei


@pytest.mark.parametrize("conv", ["gcn", "gat", "sage"])
def test_node_outputs_are_permutation_equivariant(conv):
    model = archlab.create("graphsage", conv=conv, in_features=6, hidden_sizes=[8, 8], heads=2, out_features=3).eval()
    x, ei = _random_graph(12, 20, 6)
    perm = torch.randperm(12)
    inv = torch.empty_like(perm)
    inv[perm] = torch.arange(12)  # new id of old node perm[i] is i
    with torch.no_grad():
        out = model(x, ei)
        out_p = model(x[perm], inv[ei])
    torch.testing.assert_close(out_p, out[perm], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("conv", ["gcn", "gat", "sage"])
@pytest.mark.parametrize("readout", ["mean", "sum"])
def test_graph_outputs_are_permutation_invariant(conv, readout):
    model = archlab.create(
        "gcn_graph_classifier", conv=conv, in_features=5, hidden_sizes=[8], heads=2, readout=readout
    ).eval()
    # two graphs of 6 and 4 nodes in one batch
    x1, e1 = _random_graph(6, 8, 5)
    x2, e2 = _random_graph(4, 5, 5)
    x = torch.cat([x1, x2])
    ei = torch.cat([e1, e2 + 6], dim=1)
    batch = torch.tensor([0] * 6 + [1] * 4)
    perm = torch.randperm(10)
    inv = torch.empty_like(perm)
    inv[perm] = torch.arange(10)
    with torch.no_grad():
        out = model(x, ei, batch)
        out_p = model(x[perm], inv[ei], batch[perm])
        alone = model(x2, e2)  # graph 1 on its own gives the same row
    assert out.shape == (2, 2)
    torch.testing.assert_close(out_p, out, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(alone[0], out[1], atol=1e-5, rtol=1e-5)


def test_gnn_input_checks():
    model = archlab.create("gcn_karate").eval()
    x, ei = model.example_input(1)
    assert x.shape == (34, 34)
    assert model(x, ei).shape == (34, 2)
    with pytest.raises(ShapeError, match="edge_index"):
        model(x, torch.tensor([[0, 34], [1, 2]]))
    with pytest.raises(ShapeError, match="edge_index"):
        model(x, ei.T.contiguous())
    with pytest.raises(ShapeError, match="gcn_karate"):
        model(x[:, :10], ei)


def test_gat_heads_concat_then_average():
    model = archlab.create("gat").eval()
    assert model.convs[0].output_width == 64  # 8 heads x 8, concatenated
    assert model.convs[1].lin.in_features == 64 and model.convs[1].output_width == 7  # 1 head, averaged
    x, ei = model.example_input(2)
    assert model(x, ei).shape == (32, 7)


# -- recsys -------------------------------------------------------------------------------------


def test_dlrm_interaction_shape_and_values():
    model = archlab.create("dlrm").eval()
    n, d = len(model.config.field_sizes), model.config.embed_dim
    dense_vec, embs = torch.randn(3, d), torch.randn(3, n, d)
    z = model.interact(dense_vec, embs)
    pairs = (n + 1) * n // 2
    assert z.shape == (3, d + pairs) == (3, model.interaction_width)
    vecs = torch.cat([dense_vec.unsqueeze(1), embs], dim=1)
    expected = [vecs[:, i] @ vecs[:, j].T for i in range(n + 1) for j in range(i)]
    torch.testing.assert_close(z[:, :d], dense_vec)
    torch.testing.assert_close(z[:, d:], torch.stack([e.diagonal() for e in expected], dim=1))
    model_self = archlab.create("dlrm", self_interaction=True)
    assert model_self.interaction_width == d + pairs + n + 1


@pytest.mark.parametrize("name", ["wide_deep", "dlrm"])
def test_out_of_range_ids_raise(name):
    model = archlab.create(name).eval()
    dense, sparse = model.example_input(2)
    assert model(dense, sparse).shape == (2,)
    last = len(model.config.field_sizes) - 1
    bad = sparse.clone()
    bad[0, last, 0] = model.config.field_sizes[last]  # valid in field 0's table, not in the last one's
    with pytest.raises(ShapeError, match=f"sparse field {last}"):
        model(dense, bad)
    bad = sparse.clone()
    bad[1, 0, 0] = -2
    with pytest.raises(ShapeError, match="-1 for padding"):
        model(dense, bad)
    with pytest.raises(ShapeError, match="sparse"):
        model(dense, sparse[:, :-1])  # a field missing


@pytest.mark.parametrize("name", ["wide_deep", "dlrm"])
def test_padding_slots_do_not_change_scores(name):
    model = archlab.create(name).eval()
    dense, sparse = model.example_input(4)
    padded = torch.cat([sparse, torch.full_like(sparse[:, :, :1], -1)], dim=2)  # one more empty slot
    with torch.no_grad():
        torch.testing.assert_close(model(dense, padded), model(dense, sparse))
        changed = sparse.clone()
        changed[:, 0, 0] = (changed[:, 0, 0] + 1) % model.config.field_sizes[0]
        assert not torch.allclose(model(dense, changed), model(dense, sparse))


def test_one_id_per_field_layout():
    model = archlab.create("dlrm").eval()
    dense = torch.randn(3, 13)
    ids = torch.stack([torch.randint(0, n, (3,)) for n in model.config.field_sizes], dim=1)  # (B, n_fields)
    with torch.no_grad():
        torch.testing.assert_close(model(dense, ids), model(dense, ids.unsqueeze(-1)))


def test_wide_cross_ids_hash_into_buckets_and_mask_padding():
    model = archlab.create("wide_deep", cross_fields=[[0, 1]], cross_buckets=97).eval()
    sparse = torch.tensor([[[3, 4, -1], [5, -1, -1]] + [[0, -1, -1]] * 6])  # (1, 8, 3)
    ids, valid = model.cross_ids(sparse)
    assert ids.shape == (1, 9) and int(ids.min()) >= 0 and int(ids.max()) < 97
    # valid combos: (3,5) and (4,5); everything touching padding is masked
    assert valid.sum().item() == 2
    again, _ = model.cross_ids(sparse.clone())
    assert torch.equal(ids, again)
    # a wide weight on the (3, 5) cross moves the score; on a padded combo it does not
    with torch.no_grad():
        dense = torch.randn(1, 13)
        base = model(dense, sparse)
        model.wide_cross.weight[ids[0, 0]] += 1.0  # combo (3, 5)
        torch.testing.assert_close(model(dense, sparse), base + 1.0)


def test_dlrm_bottom_must_meet_embed_dim():
    with pytest.raises(ConfigError, match="embed_dim"):
        archlab.create("dlrm", bottom_mlp=[64, 8], embed_dim=16)
    with pytest.raises(ConfigError, match="cross_fields"):
        archlab.create("wide_deep", cross_fields=[[0, 99]])
