"""Splits are reproducible by seed and normalisation statistics come from train only."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import archlab.data as D
from archlab.data.splits import sliding_windows, split_indices
from archlab.errors import DataError


def _ids(split):
    # identify rows by their content: the splits of two loads are compared as sets
    return {tuple(np.round(r, 5)) for r in split.inputs[0].reshape(len(split), -1).numpy()}


@pytest.mark.parametrize("name", ["wine", "digits", "moons"])
def test_same_seed_same_split_different_seed_different(name):
    a, b, c = D.load(name, seed=1), D.load(name, seed=1), D.load(name, seed=2)
    for s in ("train", "val", "test"):
        assert torch.equal(getattr(a, s).inputs[0], getattr(b, s).inputs[0])
        assert torch.equal(getattr(a, s).target, getattr(b, s).target)
    assert torch.equal(a.train.target, b.train.target)
    assert not torch.equal(a.test.target, c.test.target) or not torch.equal(a.test.inputs[0], c.test.inputs[0])


def test_graph_split_depends_on_seed():
    a, b, c = D.load("sbm", seed=0), D.load("sbm", seed=0), D.load("sbm", seed=5)
    assert torch.equal(a.train.mask, b.train.mask) and torch.equal(a.train.inputs[1], b.train.inputs[1])
    assert not torch.equal(a.train.mask, c.train.mask)


def test_split_indices_partition_and_stratify():
    labels = np.repeat([0, 1, 2], [50, 30, 20])
    tr, va, te = split_indices(100, 0.1, 0.2, seed=0, labels=labels)
    assert sorted(np.concatenate([tr, va, te]).tolist()) == list(range(100))
    assert np.bincount(labels[te]).tolist() == [10, 6, 4]  # 20% of each class
    with pytest.raises(DataError, match="val_fraction"):
        split_indices(10, 1.5, 0.0)
    with pytest.raises(DataError, match="must be < 1"):
        split_indices(10, 0.5, 0.5)


def test_normalisation_fitted_on_train_only():
    b = D.load("breast_cancer", seed=0)
    x_tr, x_te = b.train.inputs[0].double(), b.test.inputs[0].double()
    assert x_tr.mean(0).abs().max() < 1e-5
    assert (x_tr.std(0, unbiased=False) - 1).abs().max() < 1e-4
    assert x_te.mean(0).abs().max() > 1e-3  # test data is transformed with train's statistics
    raw = D.load("breast_cancer", seed=0, normalize=False)
    mean = torch.tensor(b.info["normalization"]["mean"], dtype=torch.float64)
    assert torch.allclose(raw.train.inputs[0].double().mean(0), mean, atol=1e-3)
    assert not torch.allclose(raw.test.inputs[0].double().mean(0), mean, atol=1e-3)


def test_image_normalisation_is_per_channel():
    b = D.load("digits")
    assert len(b.info["normalization"]["mean"]) == 1 and b.info["normalization"]["over"] == "channel"
    assert abs(float(b.train.inputs[0].double().mean())) < 1e-5
    raw = D.load("digits", normalize=False)
    assert float(raw.train.inputs[0].min()) == 0.0 and float(raw.train.inputs[0].max()) == 1.0


def test_regression_target_normalisation_round_trips():
    raw = D.load("diabetes")
    b = D.load("diabetes", normalize_target=True)
    assert abs(float(b.train.target.mean())) < 1e-5
    assert torch.allclose(b.denormalize_target(b.test.target), raw.test.target, atol=1e-3)
    assert torch.equal(raw.denormalize_target(raw.test.target), raw.test.target)


def test_sliding_windows_values():
    s = np.arange(10, dtype=np.float32)
    x, y = sliding_windows(s, window=3, horizon=2, starts=[3, 5, 8])
    assert x.shape == (3, 3, 1) and y.shape == (3, 2)
    assert x[1, :, 0].tolist() == [2, 3, 4] and y[1].tolist() == [5, 6] and y[2].tolist() == [8, 9]
    with pytest.raises(DataError):
        sliding_windows(s, window=3, horizon=2, starts=[9])


def test_window_too_large_raises():
    with pytest.raises(DataError, match="window=400"):
        D.load("sunspots", window=400)


@pytest.mark.parametrize("name", ["breast_cancer", "digits", "ucr:BasicMotions", "sunspots"])
def test_saved_statistics_reproduce_the_normalised_inputs(name):
    raw = D.load(name, normalize=False)
    b = D.load(name)
    assert torch.allclose(b.normalize_inputs(raw.test.inputs[0]), b.test.inputs[0], atol=1e-4)
    assert torch.equal(raw.normalize_inputs(raw.test.inputs[0]), raw.test.inputs[0])


def test_common_options_are_accepted_everywhere():
    b = D.load("shakespeare", max_chars=5000, block_size=16, seed=3, normalize=True)
    assert b.info["ignored_options"] == ["normalize", "seed"]
    g = D.load("karate", seed=1, normalize=False)
    assert g.info["ignored_options"] == ["normalize"]
    u = D.load("ucr:GunPoint", test_fraction=0.5)  # fixed test split: test_fraction does not apply
    assert len(u.test) == 150 and u.info["ignored_options"] == ["test_fraction"]


def test_signal_layouts_reshape_every_split():
    from archlab.data import load

    base = load("ucr:GunPoint")
    seq = load("ucr:GunPoint", layout="sequence")
    flat = load("ucr:GunPoint", layout="flat")
    for name, split in base.splits().items():
        x = split.inputs[0]  # (N, 1, 150)
        assert torch.equal(seq.splits()[name].inputs[0], x.transpose(1, 2))
        assert torch.equal(flat.splits()[name].inputs[0], x.reshape(x.shape[0], -1))
    assert seq.info["in_features"] == 1 and flat.info["in_features"] == 150
    assert flat.info["layout"] == "flat"


def test_layout_rejects_non_signal_and_unknown():
    from archlab.data import load
    from archlab.errors import DataError

    with pytest.raises(DataError, match="signal datasets"):
        load("wine", layout="flat")
    with pytest.raises(DataError, match="layout='rows'"):
        load("ucr:GunPoint", layout="rows")
