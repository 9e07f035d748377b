"""Fold construction (archlab.data.folds): stratified, grouped, forward in time, no leakage, deterministic."""

import numpy as np
import pytest
import torch

from archlab.data import load
from archlab.data.base import DataBundle, Split
from archlab.data.folds import fold_indices, kfold, series_folds, window_gap
from archlab.errors import ConfigError, DataError


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


def test_grouped_kfold_on_a_bundle_is_stratified_too(wine):
    # Subjects of 2 rows each, every subject one class (wine's rows are not sorted by class: group by class).
    y = wine.train.target.numpy()
    order = np.argsort(y, kind="stable")
    groups = np.empty(len(y), dtype=np.int64)
    groups[order] = np.arange(len(y)) // 2
    k = 3
    sizes = np.bincount(y) / k
    for f in kfold(wine, k, seed=0, groups=groups):
        val_groups = set(groups[f.info["fold"]["val_indices"]].tolist())
        train_idx = np.setdiff1d(np.arange(len(wine.train)), f.info["fold"]["val_indices"])
        assert not val_groups & set(groups[train_idx].tolist())
        assert f.info["fold"]["grouped"] and f.info["fold"]["stratified"]
        # StratifiedGroupKFold: whole subjects move, so each class is within one subject (2 rows) of ideal.
        counts = np.bincount(f.val.target.numpy(), minlength=len(sizes))
        assert np.all(np.abs(counts - sizes) <= 2)


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


def test_time_ordered_data_gets_forward_folds_and_shuffling_is_refused():
    sunspots = load("sunspots", window=10, horizon=3)
    folds = kfold(sunspots, 3, seed=0)  # auto
    gap = window_gap(sunspots)
    assert gap == 10 + 3 - 1
    for f in folds:
        fold = f.info["fold"]
        assert fold["split"] == "forward" and fold["gap"] == gap and not fold["stratified"]
        assert fold["train_end"] + gap == min(fold["val_indices"])  # the past, then the gap, then the block
        assert len(f.train) == fold["train_end"]
        # The target shares the inputs' refitted scale: the fold's statistics map both back to the series.
        raw_y = f.train.target.double() * f.info["target_normalization"]["std"][0]
        raw_y += f.info["target_normalization"]["mean"][0]
        orig = sunspots.train.target[: fold["train_end"]].double() * sunspots.info["target_normalization"]["std"][0]
        orig += sunspots.info["target_normalization"]["mean"][0]
        assert torch.allclose(raw_y, orig, atol=1e-3)
    assert [len(f.train) for f in folds] == sorted(len(f.train) for f in folds)  # the past grows
    with pytest.raises(ConfigError, match="time-ordered.*--cv-split forward") as err:
        kfold(sunspots, 3, seed=0, split="shuffled")
    assert "\n" not in str(err.value)
    with pytest.raises(ConfigError, match="groups"):
        kfold(sunspots, 3, seed=0, split="forward", groups=np.arange(len(sunspots.train)))
    with pytest.raises(DataError, match="fewer folds"):
        kfold(sunspots, 40, seed=0)
    assert series_folds(sunspots, 3)[1].info["fold"] == folds[1].info["fold"]


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
