"""``predict`` on the files a user has gives what the run gives on its own preprocessed data (issue 15).

A run records every preprocessing step with its fitted statistics
(:class:`archlab.data.preprocess.Preprocessing`); these tests write raw files (digits' pixel
values 0..16 as .npy, CSV rows, PNG images, text) from a dataset's test split and check that the
predictions on them equal the predictions on the preprocessed test split, bitwise.
"""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import torch

from archlab.cli.main import main
from archlab.data import load
from archlab.data.preprocess import Preprocessing
from archlab.data.splits import split_indices
from archlab.deploy.preprocessing import preprocessing as export_preprocessing
from archlab.errors import DataError, ShapeError
from archlab.runs import evaluate, fit, predict
from archlab.runs.use import run_preprocessing

FAST = dict(max_steps=4, precision="fp32", eval_every=4)


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    return fit("cnn_digits", "digits", out_dir=tmp_path_factory.mktemp("runs"), run_name="digits", **FAST).run_dir


def _digits_test_pixels() -> tuple[np.ndarray, np.ndarray]:
    """The raw 0..16 pixel values (N, 8, 8) of digits' test split, as scikit-learn gives them."""
    from sklearn.datasets import load_digits

    raw = load_digits()
    _, _, test = split_indices(len(raw.target), 0.1, 0.2, 0, raw.target)
    return raw.images[test], raw.target[test]


def test_raw_digits_npy_predicts_like_the_test_split(digits_run, tmp_path):
    """The reported bug: raw pixels 0..16 were fed unscaled; the run now records the /16."""
    pixels, _ = _digits_test_pixels()
    np.save(tmp_path / "raw.npy", pixels)  # (N, 8, 8), values 0..16
    np.save(tmp_path / "flat.npy", pixels.reshape(len(pixels), -1))  # (N, 64), like load_digits().data
    expected = predict(digits_run, "test")
    assert torch.equal(predict(digits_run, tmp_path / "raw.npy"), expected)
    assert torch.equal(predict(digits_run, tmp_path / "flat.npy"), expected)
    steps = json.loads((digits_run / "data_info.json").read_text())["preprocessing"]["steps"]
    assert {"op": "scale", "divide_by": 16.0} in steps


def test_model_inputs_from_raw_equal_the_split_bitwise():
    bundle = load("digits")
    pixels, _ = _digits_test_pixels()
    x = Preprocessing.from_bundle(bundle).apply(pixels)
    assert x.dtype == np.float32 and np.array_equal(x, bundle.test.inputs[0].numpy())


def test_wrong_shape_names_expected_and_received(digits_run, tmp_path):
    np.save(tmp_path / "bad.npy", np.zeros((3, 65)))
    with pytest.raises(ShapeError, match=r"expects samples of shape \(1, 8, 8\).*got an array of shape \(3, 65\)"):
        predict(digits_run, tmp_path / "bad.npy")


# ------------------------------------------------------------------------------------ CSV
def _write_table(path, rng, n=120):
    import pandas as pd

    colour = rng.choice(["red", "green", "blue"], size=n)
    size = rng.normal(10, 3, size=n).round(3)
    weight = rng.uniform(0, 100, size=n).round(2)
    label = np.where(size + (colour == "red") * 4 > 11, "big", "small")
    df = pd.DataFrame({"size": size, "colour": colour, "weight": weight, "label": label})
    df.to_csv(path, index=False)
    return df


@pytest.fixture(scope="module")
def csv_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("csv")
    df = _write_table(root / "table.csv", np.random.default_rng(0))
    run = fit("mlp_tabular", str(root / "table.csv"), out_dir=root, run_name="csv", **FAST).run_dir
    return run, df


def test_csv_rows_predict_like_the_test_split(csv_run, tmp_path):
    run, df = csv_run
    labels = np.unique(df["label"], return_inverse=True)[1]
    _, _, test = split_indices(len(df), 0.1, 0.2, 0, labels)
    rows = df.iloc[test]
    rows.to_csv(tmp_path / "with_target.csv", index=False)
    rows[["weight", "colour", "size"]].to_csv(tmp_path / "no_target.csv", index=False)  # any column order
    expected = predict(run, "test")
    assert torch.equal(predict(run, tmp_path / "with_target.csv"), expected)
    assert torch.equal(predict(run, tmp_path / "no_target.csv"), expected)
    # evaluate on the file uses the run's statistics, so it scores exactly like the test split
    assert (
        evaluate(run, tmp_path / "with_target.csv")["file_accuracy"] == evaluate(run, splits=["test"])["test_accuracy"]
    )


def test_csv_with_other_columns_or_categories_is_refused(csv_run, tmp_path):
    run, df = csv_run
    df.drop(columns=["weight"]).to_csv(tmp_path / "missing.csv", index=False)
    with pytest.raises(DataError, match=r"expected the training columns .*missing \['weight'\]"):
        predict(run, tmp_path / "missing.csv")
    df.assign(colour="purple").to_csv(tmp_path / "new_category.csv", index=False)
    with pytest.raises(DataError, match=r"column 'colour' has value\(s\) \['purple'\] not seen in training"):
        predict(run, tmp_path / "new_category.csv")


def test_data_block_lists_the_inferred_choices(csv_run, tmp_path, caplog):
    _, df = csv_run
    df.to_csv(tmp_path / "t.csv", index=False)
    with caplog.at_level(logging.INFO, logger="archlab"):
        run = fit("mlp_tabular", str(tmp_path / "t.csv"), out_dir=tmp_path, run_name="r", max_steps=1).run_dir
    block = next(r.getMessage() for r in caplog.records if r.getMessage().startswith("data\n"))
    for said in ("target column: label", "task: classification", "categorical: ['colour'] as ids", "(x - mean) / std"):
        assert said in block, block
    recorded = json.loads((run / "data_info.json").read_text())["preprocessing"]
    assert recorded["choices"]["target column"] == "label"
    assert Preprocessing.from_json(recorded).to_json() == recorded


def test_cli_predict_prints_class_names_and_writes_csv(csv_run, tmp_path, capsys):
    run, df = csv_run
    df.head(5).to_csv(tmp_path / "rows.csv", index=False)
    assert main(["predict", str(run), str(tmp_path / "rows.csv"), "-o", str(tmp_path / "out.csv")]) == 0
    out = capsys.readouterr().out
    assert "5 predictions" in out and ("big" in out or "small" in out)
    lines = (tmp_path / "out.csv").read_text().splitlines()
    assert lines[0] == "row,prediction" and len(lines) == 6
    assert {ln.split(",")[1] for ln in lines[1:]} <= {"big", "small"}


# --------------------------------------------------------------------------------- images
@pytest.fixture(scope="module")
def image_run(tmp_path_factory):
    from PIL import Image

    root = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    for part, n in (("train", 12), ("test", 4)):
        for c, name in enumerate(["cat", "dog"]):
            (root / part / name).mkdir(parents=True)
            for i in range(n):
                pixels = rng.integers(0, 128, size=(8, 8)) + 100 * c  # the classes differ in brightness
                Image.fromarray(pixels.astype(np.uint8), mode="L").save(root / part / name / f"{i}.png")
    run = fit("cnn_digits", str(root), out_dir=root, run_name="img", **FAST).run_dir
    return run, root


def test_image_folder_and_file_predict_like_the_test_split(image_run):
    run, root = image_run
    expected = predict(run, "test")
    assert torch.equal(predict(run, root / "test"), expected)  # class subfolders, sorted as the loader reads
    assert torch.equal(predict(run, root / "test" / "cat"), expected[:4])  # a flat folder of images
    assert torch.equal(predict(run, root / "test" / "cat" / "0.png"), expected[:1])
    assert evaluate(run, root / "test")["file_accuracy"] == evaluate(run, splits=["test"])["test_accuracy"]


def test_image_of_another_size_is_refused(image_run, tmp_path):
    from PIL import Image

    run, _ = image_run
    Image.new("L", (10, 12)).save(tmp_path / "big.png")
    with pytest.raises(ShapeError, match="expects 8x8 images .* got 12x10"):
        predict(run, tmp_path / "big.png")


# ----------------------------------------------------------------------------------- text
def test_text_file_predicts_like_the_split(tmp_path):
    text = "the quick brown fox jumps over the lazy dog. " * 12
    (tmp_path / "corpus.txt").write_text(text)
    opts = {"block_size": 16, "val_fraction": 0.25}
    run = fit(
        "rnn_char_lm", str(tmp_path / "corpus.txt"), data_spec={"name": str(tmp_path / "corpus.txt"), "options": opts},
        out_dir=tmp_path, run_name="lm", **FAST,
    ).run_dir  # fmt: skip
    bundle = load(tmp_path / "corpus.txt", **opts)
    train_end = len(text) - round(len(text) * 0.25)
    (tmp_path / "val.txt").write_text(text[train_end:])
    assert torch.equal(predict(run, tmp_path / "val.txt"), predict(run, "val"))
    assert len(predict(run, "val")) == len(bundle.val)
    readable = run_preprocessing(run).readable(predict(run, tmp_path / "val.txt").numpy())
    assert isinstance(readable[0], str) and len(readable[0]) == 16


# ---------------------------------------------------------------------------------- export
def test_export_preprocessing_json_carries_the_same_object(digits_run):
    info = json.loads((digits_run / "data_info.json").read_text())
    doc = export_preprocessing(info, [], "cnn_digits")
    prep = Preprocessing.from_json(doc["preprocessing"])
    pixels, _ = _digits_test_pixels()
    assert np.array_equal(prep.apply(pixels), run_preprocessing(digits_run).apply(pixels))
    assert any("/ 16" in s for s in doc["steps"])
