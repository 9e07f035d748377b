"""Fold construction (archlab.data.folds): stratified, grouped, no leakage, deterministic."""

import numpy as np
import pytest
import torch

from archlab.data import load
from archlab.data.base import DataBundle, Split
from archlab.data.folds import fold_indices, kfold
from archlab.errors import DataError


@pytest.fixture(scope="module")
def wine():
    return load("wine")


def _raw(x, stats):
    return x.double() * torch.tensor(stats["std"], dtype=torch.float64) + torch.tensor(
        stats["mean"], dtype=torch.float64
    )


@pytest.mark.parametrize("k", [3, 5])
def test_val_parts_partition_the_training_split(wine, k):
    folds = kfold(wine, k, seed=0)
    parts = [np.asarray(f.info["fold"]["val_indices"]) for f in folds]
    joined = np.concatenate(parts)
    assert len(joined) == len(set(joined.tolist())) == len(wine.train)  # disjoint, and cover all
    for f, part in zip(folds, parts):
        assert len(f.train) + len(f.val) == len(wine.train)
        assert torch.equal(f.val.target, wine.train.target[torch.from_numpy(part)])


def test_stratified_within_one_sample_of_ideal(wine):
    k = 5
    counts = torch.bincount(wine.train.target).tolist()
    for f in kfold(wine, k, seed=3):
        val_counts = torch.bincount(f.val.target, minlength=len(counts)).tolist()
        for c, total in enumerate(counts):
            assert abs(val_counts[c] - total / k) < 1
    sizes = [len(f.val) for f in kfold(wine, k, seed=3)]
    assert max(sizes) - min(sizes) <= 1


def test_grouped_folds_keep_each_group_on_one_side():
    rng = np.random.default_rng(0)
    groups = rng.integers(0, 12, size=60)
    parts = fold_indices(60, 4, seed=1, groups=groups)
    seen = {}
    for i, part in enumerate(parts):
        for g in set(groups[part].tolist()):
            assert seen.setdefault(g, i) == i  # a group's samples all in one fold's val part
    assert sorted(np.concatenate(parts).tolist()) == list(range(60))


def test_grouped_kfold_on_a_bundle(wine):
    groups = np.arange(len(wine.train)) // 7  # e.g. 7 rows per subject
    for f in kfold(wine, 3, seed=0, groups=groups):
        val_groups = set(groups[f.info["fold"]["val_indices"]].tolist())
        train_idx = np.setdiff1d(np.arange(len(wine.train)), f.info["fold"]["val_indices"])
        assert not val_groups & set(groups[train_idx].tolist())
        assert f.info["fold"]["grouped"] and not f.info["fold"]["stratified"]


def test_same_seed_same_folds_other_seed_other_folds(wine):
    a = [f.info["fold"]["val_indices"] for f in kfold(wine, 4, seed=7)]
    b = [f.info["fold"]["val_indices"] for f in kfold(wine, 4, seed=7)]
    c = [f.info["fold"]["val_indices"] for f in kfold(wine, 4, seed=8)]
    assert a == b and a != c


def test_test_split_same_samples_and_refit_normalisation(wine):
    stats = wine.info["normalization"]
    for f in kfold(wine, 3, seed=0):
        assert torch.equal(f.test.target, wine.test.target)
        # Refit: the fold's training part is standardised with its own statistics...
        assert torch.allclose(f.train.inputs[0].mean(0), torch.zeros(f.train.inputs[0].shape[1]), atol=1e-5)
        assert f.info["fold"]["normalization"].startswith("refit")
        # ...and every split still maps back to the same raw values (nothing but the affine map changed).
        for new, old in ((f.test, wine.test), (f.val, wine.train.take(torch.tensor(f.info["fold"]["val_indices"])))):
            assert torch.allclose(_raw(new.inputs[0], f.info["normalization"]), _raw(old.inputs[0], stats), atol=1e-4)
    kept = kfold(wine, 3, seed=0, normalize="keep")[0]
    assert torch.equal(kept.test.inputs[0], wine.test.inputs[0]) and "include" in kept.info["fold"]["normalization"]


def test_unstratified_and_regression_targets():
    x = torch.randn(20, 3)
    bundle = DataBundle("toy", "tabular", "regression", train=Split((x,), torch.randn(20, 1)))
    folds = kfold(bundle, 4, seed=0)
    assert [len(f.val) for f in folds] == [5, 5, 5, 5] and folds[0].test is None
    assert not folds[0].info["fold"]["stratified"]


def test_bad_requests_raise(wine):
    with pytest.raises(DataError, match="k must be"):
        kfold(wine, 1, seed=0)
    with pytest.raises(DataError, match="groups"):
        kfold(wine, 3, seed=0, groups=[0, 1, 2])
    with pytest.raises(DataError, match="at least 5 groups"):
        fold_indices(10, 5, groups=[0, 1] * 5)
    with pytest.raises(DataError, match="normalize"):
        kfold(wine, 3, seed=0, normalize="bogus")
    graph = DataBundle(
        "g",
        "graph",
        "node_classification",
        train=Split((torch.randn(5, 2),), torch.zeros(5, dtype=torch.long), mask=torch.ones(5, dtype=torch.bool)),
    )
    with pytest.raises(DataError, match="whole-graph"):
        kfold(graph, 2, seed=0)
