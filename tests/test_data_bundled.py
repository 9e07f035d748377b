"""Every bundled dataset loads offline with the documented shapes, dtypes and finite values."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import archlab.data as D
from archlab.cli.main import main
from archlab.errors import DataError

# name, options, modality, task, per-sample input shape (None = graph), target kind
CASES = [
    ("digits", {}, "image", "classification", (1, 8, 8), "class"),
    ("breast_cancer", {}, "tabular", "classification", (30,), "class"),
    ("wine", {}, "tabular", "classification", (13,), "class"),
    ("iris", {}, "tabular", "classification", (4,), "class"),
    ("diabetes", {}, "tabular", "regression", (10,), "float"),
    ("moons", {"n_samples": 300}, "points", "classification", (2,), "class"),
    ("circles", {"n_samples": 300}, "points", "classification", (2,), "class"),
    ("mnist1d", {}, "time_series", "classification", (1, 40), "class"),
    ("ucr:GunPoint", {}, "time_series", "classification", (1, 150), "class"),
    ("ucr:ItalyPowerDemand", {}, "time_series", "classification", (1, 24), "class"),
    ("ucr:BasicMotions", {}, "time_series", "classification", (6, 100), "class"),
    ("sunspots", {}, "time_series", "forecasting", (24, 1), "float"),
    ("co2", {"fill": "interpolate"}, "time_series", "forecasting", (104, 1), "float"),
    ("macrodata", {}, "time_series", "forecasting", (16, 1), "float"),
    ("airline", {}, "time_series", "forecasting", (24, 1), "float"),
    ("lynx", {}, "time_series", "forecasting", (20, 1), "float"),
    ("shakespeare", {"max_chars": 50_000, "block_size": 64}, "text", "language_modeling", (64,), "long"),
    ("karate", {}, "graph", "node_classification", None, "class"),
    ("les_miserables", {}, "graph", "node_classification", None, "class"),
    ("sbm", {}, "graph", "node_classification", None, "class"),
]


@pytest.mark.parametrize("name,opts,modality,task,shape,target_kind", CASES, ids=[c[0] for c in CASES])
def test_bundled_dataset_loads(name, opts, modality, task, shape, target_kind):
    b = D.load(name, **opts)
    assert (b.modality, b.task) == (modality, task)
    assert b.train is not None and len(b.train) > 0 and b.test is not None and b.val is not None
    json.dumps(b.info, allow_nan=False)  # info is saved with the run: plain, finite JSON
    for split_name, split in b.splits().items():
        for t in split.inputs:
            if t.is_floating_point():
                assert t.dtype == torch.float32 and torch.isfinite(t).all(), split_name
        if shape is not None:
            x = split.inputs[0]
            assert tuple(x.shape[1:]) == shape
            assert split.target.shape[0] == x.shape[0]
        if target_kind == "class":
            assert split.target.dtype == torch.int64
            k = b.info["num_classes"]
            labelled = split.target if split.mask is None else split.target[split.mask]
            assert labelled.min() >= 0 and labelled.max() < k
        elif target_kind == "float":
            assert split.target.dtype == torch.float32 and split.target.ndim == 2
            assert torch.isfinite(split.target).all()
        else:
            assert split.target.dtype == torch.int64 and split.target.shape == split.inputs[0].shape


def test_mnist1d_keeps_fixed_split_and_global_rng():
    np.random.seed(123)
    before = np.random.get_state()[1].copy()
    b = D.load("mnist1d", val_fraction=0.1)
    assert np.array_equal(np.random.get_state()[1], before)  # generation must not reseed the caller
    assert len(b.train) + len(b.val) == 4000 and len(b.test) == 1000
    assert b.info["seq_len"] == 40 and b.info["num_classes"] == 10


def test_ucr_labels_remapped_and_fixed_split():
    b = D.load("ucr:GunPoint")
    assert len(b.train) + len(b.val) == 50 and len(b.test) == 150
    assert b.info["class_names"] == ["1", "2"]
    assert set(b.test.target.tolist()) == {0, 1}


def test_co2_missing_values_need_a_choice():
    with pytest.raises(DataError, match="59 missing"):
        D.load("co2")
    assert D.load("co2", fill="interpolate").info["filled"] == 59
    dropped = D.load("co2", dropna=True)
    assert dropped.info["dropped"] == 59 and len(dropped.info["series"]) == 2284 - 59


def test_forecast_windows_target_is_next_values():
    b = D.load("sunspots", window=10, horizon=3)
    mean, std = b.info["normalization"]["mean"][0], b.info["normalization"]["std"][0]
    z = (torch.tensor(b.info["series"], dtype=torch.float64) - mean) / std
    for split in (b.train, b.val, b.test):
        x, y = split.inputs[0][:, :, 0].double(), split.target.double()
        # locate each window in the series and check the target is what follows it
        for i in (0, len(x) // 2, len(x) - 1):
            starts = [s for s in range(len(z) - 12) if torch.allclose(z[s : s + 10], x[i], atol=1e-5)]
            assert starts, "window not found in the series"
            assert torch.allclose(z[starts[0] + 10 : starts[0] + 13], y[i], atol=1e-5)
    # the last train target ends at the train boundary; test targets start after val's
    te = b.info["split_index"]["train_end"]
    assert torch.allclose(b.train.target[-1, -1].double(), z[te - 1], atol=1e-5)
    assert torch.allclose(
        b.denormalize_target(b.test.target[-1:]).double()[0, -1],
        torch.tensor(b.info["series"][-1], dtype=torch.float64),
        atol=1e-3,
    )


def test_forecast_normalization_fitted_on_train_part_only():
    b = D.load("co2", fill="interpolate")
    te = b.info["split_index"]["train_end"]
    series = np.array(b.info["series"])
    assert b.info["normalization"]["mean"][0] == pytest.approx(series[:te].mean())
    assert b.info["normalization"]["mean"][0] != pytest.approx(series.mean())


def test_shakespeare_lm_target_shifted_and_vocab():
    b = D.load("shakespeare", max_chars=20_000, block_size=32, stride=16)
    x, y = b.train.inputs[0], b.train.target
    assert torch.equal(x[:, 1:], y[:, :-1])
    assert torch.equal(x[1, :16], x[0, 16:])  # stride 16 windows overlap by half
    assert b.info["vocab_size"] == len(b.info["vocab"]) and int(x.max()) < b.info["vocab_size"]
    text = "".join(b.info["vocab"][i] for i in x[0].tolist())
    assert "**" not in text and text.startswith("A Midsummer")


def test_graph_masks_disjoint_and_edges_symmetric():
    b = D.load("karate", seed=3)
    masks = [b.train.mask, b.val.mask, b.test.mask]
    assert sum(int(m.sum()) for m in masks) == 34
    assert not (masks[0] & masks[1]).any() and not (masks[0] & masks[2]).any()
    ei = b.train.inputs[1]
    pairs = set(map(tuple, ei.T.tolist()))
    assert all((v, u) in pairs for u, v in pairs) and len(pairs) == 156
    assert b.info["class_names"] == ["Mr. Hi", "Officer"] and b.train.target[0] == 0
    semi = D.load("karate", train_per_class=2)
    assert int(semi.train.mask.sum()) == 4
    assert torch.bincount(semi.train.target[semi.train.mask]).tolist() == [2, 2]


def test_list_datasets_and_unknown_name():
    rows = D.list_datasets()
    names = {r["name"] for r in rows}
    assert {"digits", "mnist1d", "shakespeare", "karate", "co2", "ucr:GunPoint"} <= names
    assert all({"name", "modality", "size", "tasks", "source", "description"} <= set(r) for r in rows)
    assert {r["name"] for r in D.list_datasets(task="forecasting")} >= {"sunspots", "co2", "macrodata"}
    with pytest.raises(DataError, match="did you mean 'digits'"):
        D.load("digit")
    with pytest.raises(DataError, match="ucr:GunPoint"):
        D.load("ucr:Gunpoint")
    with pytest.raises(DataError, match="does not take option"):
        D.load("wine", window=3)


def test_datasets_cli_lists(capsys):
    assert main(["datasets", "--modality", "graph"]) == 0
    out = capsys.readouterr().out
    assert "karate" in out and "networkx" in out and "digits" not in out
