"""The generated ``digits_seg`` segmentation set: shapes, masks consistent with the digits, splits."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import archlab.data as D
from archlab.data.digits_seg import make_digits_seg
from archlab.errors import DataError


@pytest.fixture(scope="module")
def bundle():
    return D.load("digits_seg", normalize=False)


def test_shapes_dtypes_and_info(bundle):
    assert (bundle.modality, bundle.task) == ("image", "segmentation")
    json.dumps(bundle.info, allow_nan=False)
    assert bundle.info["num_classes"] == 11 and bundle.info["class_names"][:2] == ["background", "0"]
    total = 0
    for split in bundle.splits().values():
        x, y = split.inputs[0], split.target
        assert x.dtype == torch.float32 and x.shape[1:] == (1, 32, 32)
        assert y.dtype == torch.int64 and y.shape == (x.shape[0], 32, 32)
        assert 0.0 <= float(x.min()) and float(x.max()) <= 1.0  # unnormalised: noisy pixels clipped to [0, 1]
        assert int(y.min()) >= 0 and int(y.max()) < 11
        total += len(split)
    assert total == 2 * 1797  # two copies of every sklearn digit
    assert sum(bundle.info["class_pixel_fraction"]) == pytest.approx(1.0, abs=1e-3)


def test_each_mask_holds_one_digit_class_matching_its_source(bundle):
    from sklearn.datasets import load_digits

    digits = load_digits().target
    x, mask, src, clean = make_digits_seg(load_digits().images / 16.0, digits, seed=0)
    fg = mask.reshape(len(mask), -1)
    for i in range(0, len(mask), 97):
        classes = set(np.unique(fg[i]).tolist()) - {0}
        assert classes == {int(digits[src[i]]) + 1}  # background plus exactly the source digit's class
    # mask = ink of the clean canvas above the threshold; the noisy input is what the net sees
    assert np.array_equal(mask > 0, clean > 0.5)
    assert not np.allclose(x[:, 0], clean)
    # the loaded train split holds exactly these masks (splits are made over source digits)
    assert set(np.unique(bundle.train.target.numpy()).tolist()) == set(range(11))


def test_splits_do_not_share_source_digits_and_are_seeded():
    a = D.load("digits_seg", seed=1, normalize=False)
    b = D.load("digits_seg", seed=1, normalize=False)
    assert torch.equal(a.test.inputs[0], b.test.inputs[0]) and torch.equal(a.test.target, b.test.target)
    c = D.load("digits_seg", seed=2, normalize=False)
    assert not torch.equal(a.test.target, c.test.target)
    # both copies of a source digit land in the same split, next to each other (same digit class)
    for split in a.splits().values():
        assert len(split) % 2 == 0
        pairs = split.target.amax((1, 2)).reshape(-1, 2)
        assert torch.equal(pairs[:, 0], pairs[:, 1])


def test_binary_labels_and_normalisation():
    b = D.load("digits_seg", labels="binary", copies=1)
    assert b.info["num_classes"] == 2 and set(b.train.target.unique().tolist()) == {0, 1}
    x = b.train.inputs[0]
    assert abs(float(x.mean())) < 1e-4 and float(x.std()) == pytest.approx(1.0, abs=1e-3)  # train stats
    assert b.info["normalization"]["over"] == "channel"


@pytest.mark.parametrize(
    "opts,match",
    [
        ({"labels": "rgb"}, "labels"),
        ({"digit_size": [4, 40]}, "digit_size"),
        ({"copies": 0}, "copies"),
        ({"threshold": 1.5}, "threshold"),
    ],
)
def test_bad_options_are_named(opts, match):
    with pytest.raises(DataError, match=match):
        D.load("digits_seg", **opts)


def test_segmentation_task_trains_on_it(tmp_path):
    from archlab.runs import fit

    data = D.load("digits_seg", copies=1)
    r = fit("unet_small", data, "segmentation", max_steps=3, batch_size=16, out_dir=str(tmp_path))
    assert {"test_iou", "test_dice", "test_pixel_accuracy"} <= set(r.metrics)
    assert r.model.config.out_channels == 11 and np.isfinite(r.metrics["test_loss"])
