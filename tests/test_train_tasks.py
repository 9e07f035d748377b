"""Smoke runs of each task on real data (seconds each, via max_steps): they train, write a
complete run directory, and their metrics are those the task promises."""

from __future__ import annotations

import json

import pytest
import torch

import archlab
from archlab.data.base import DataBundle, Split
from archlab.tasks import get_task
from archlab.tasks.forecasting import seasonal_naive
from test_train_support import diabetes_bundle, digits_bundle, sunspots_bundle

FAST = dict(precision="fp32", log_every=10)


def test_classification_digits_learns_and_writes_run_dir(tmp_path):
    r = archlab.fit(
        "mlp_tabular",
        digits_bundle(),
        max_steps=80,
        lr=3e-3,
        batch_size=64,
        eval_every=40,
        out_dir=str(tmp_path),
        **FAST,
    )
    assert r.metrics["test_accuracy"] > 0.85
    assert {"test_f1", "test_auroc", "test_ece", "val_accuracy"} <= set(r.metrics)
    d = r.run_dir
    for f in (
        "config.yaml",
        "metrics.jsonl",
        "final_metrics.json",
        "curves.png",
        "data_info.json",
        "last/COMPLETE",
        "last/model.safetensors",
        "last/state.safetensors",
        "best/COMPLETE",
    ):
        assert (d / f).is_file(), f
    kinds = [json.loads(line)["kind"] for line in (d / "metrics.jsonl").read_text().splitlines()]
    assert kinds.count("eval") == 2 and kinds.count("train") == 8 and kinds[-1] == "final"
    assert (d / "curves.png").read_bytes()[:4] == b"\x89PNG"
    # the model config was adapted to the data: 64 features in, 10 classes out
    assert r.model.config.in_features == 64 and r.model.config.out_features == 10


def test_binary_classification_with_balanced_focal_loss(tmp_path):
    from sklearn.datasets import load_breast_cancer

    d = load_breast_cancer()
    x = torch.tensor(d.data, dtype=torch.float32)
    x = (x - x[:400].mean(0)) / x[:400].std(0)
    y = torch.tensor(d.target)
    b = DataBundle(
        "breast_cancer",
        "tabular",
        "classification",
        Split((x[:400],), y[:400]),
        Split((x[400:480],), y[400:480]),
        Split((x[480:],), y[480:]),
        info={"num_classes": 2},
    )
    model = archlab.create("mlp_tabular", in_features=30, out_features=1)
    r = archlab.fit(
        model,
        b,
        "classification",
        task_options={"kind": "binary"},
        max_steps=60,
        lr=1e-3,
        class_weights="balanced",
        focal_gamma=2.0,
        out_dir=str(tmp_path),
        **FAST,
    )
    assert r.metrics["test_auroc"] > 0.9 and r.metrics["test_accuracy"] > 0.8


def test_multilabel_classification(tmp_path):
    b = digits_bundle()

    def ml(s):  # labels: "digit is even", "digit >= 5" (both from the real labels)
        return Split(s.inputs, torch.stack([(s.target % 2 == 0), (s.target >= 5)], 1).float())

    mb = DataBundle("digits-ml", "tabular", "classification", ml(b.train), ml(b.val), ml(b.test))
    r = archlab.fit("mlp_tabular", mb, max_steps=80, lr=3e-3, out_dir=str(tmp_path), **FAST)
    assert r.model.config.out_features == 2
    assert r.metrics["test_accuracy"] > 0.75 and "test_auroc" in r.metrics


def test_regression_diabetes(tmp_path):
    r = archlab.fit(
        "mlp_regressor",
        diabetes_bundle(),
        max_steps=150,
        lr=1e-3,
        batch_size=32,
        weight_decay=0.1,
        out_dir=str(tmp_path),
        **FAST,
    )
    assert {"test_mae", "test_rmse", "test_r2"} <= set(r.metrics)
    assert r.metrics["test_r2"] > 0.2 and r.metrics["test_rmse"] < 1.0  # target is standardised


def test_forecasting_reports_seasonal_naive_beside(tmp_path):
    b = sunspots_bundle(window=22, horizon=3)
    r = archlab.fit(
        "lstm_sine_forecaster", b, max_steps=120, lr=3e-3, batch_size=32, grad_clip=1.0, out_dir=str(tmp_path), **FAST
    )
    # the baseline the run reports equals a direct computation of seasonal naive (season 11)
    x, y = b.test.inputs[0][:, :, 0], b.test.target
    naive = torch.stack([x[:, 22 - 11 + h] for h in range(3)], 1)
    assert r.metrics["test_naive_mae"] == pytest.approx(float((naive - y).abs().mean()), rel=1e-5)
    assert r.metrics["test_mae"] < r.metrics["test_naive_mae"] * 1.5  # learned something comparable
    # the prediction-vs-actual plot beside seasonal naive is written with the run
    png = (r.run_dir / "forecast.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000


def test_seasonal_naive_without_season_repeats_last_value():
    w = torch.arange(10.0).reshape(2, 5)
    assert seasonal_naive(w, 3, None).tolist() == [[4, 4, 4], [9, 9, 9]]
    assert seasonal_naive(w, 3, 2).tolist() == [[3, 4, 3], [8, 9, 8]]


def _descr_tagging_bundle() -> DataBundle:
    """Real text (scikit-learn's dataset descriptions), one tag per character, padded lines."""
    from sklearn import datasets

    text = datasets.load_digits().DESCR + datasets.load_iris().DESCR + datasets.load_wine().DESCR
    lines = [ln[:40] for ln in text.splitlines() if len(ln.strip()) > 5]
    vocab = sorted(set("".join(lines))) + ["<pad>"]
    stoi = {c: i for i, c in enumerate(vocab)}

    def tag(c):
        return 0 if c.isupper() else 1 if c.islower() else 2 if c.isdigit() else 3 if c.isspace() else 4

    T = 40
    x = torch.full((len(lines), T), stoi["<pad>"])
    y = torch.full((len(lines), T), -100)
    for i, ln in enumerate(lines):
        x[i, : len(ln)] = torch.tensor([stoi[c] for c in ln])
        y[i, : len(ln)] = torch.tensor([tag(c) for c in ln])
    n = len(lines)
    a, b = int(0.7 * n), int(0.85 * n)
    return DataBundle(
        "descr-tags",
        "text",
        "tagging",
        Split((x[:a],), y[:a]),
        Split((x[a:b],), y[a:b]),
        Split((x[b:],), y[b:]),
        info={"vocab": vocab, "num_classes": 5, "seq_len": T},
    )


def test_tagging_ignores_padding(tmp_path):
    b = _descr_tagging_bundle()
    r = archlab.fit("bilstm_tagger", b, "tagging", max_steps=60, lr=1e-2, batch_size=32, out_dir=str(tmp_path), **FAST)
    assert r.model.config.out_features == 5 and r.model.config.vocab_size == len(b.info["vocab"])
    assert r.metrics["test_accuracy"] > 0.8
    # padded positions do not count: changing the model's output there changes neither loss nor metrics
    task = get_task("tagging")
    task.setup(b, archlab.TrainConfig(), torch.device("cpu"))
    logits = torch.randn(*b.test.target.shape, 5)
    pad = b.test.target == -100
    logits2 = logits.clone()
    logits2[pad] = 100.0
    assert torch.equal(task.loss(logits, b.test.target), task.loss(logits2, b.test.target))


def test_language_model_shakespeare(tmp_path):
    from archlab.data import load

    b = load("shakespeare", block_size=32, max_chars=40_000)
    r = archlab.fit(
        "gpt_nano",
        b,
        max_steps=40,
        lr=3e-3,
        batch_size=16,
        out_dir=str(tmp_path),
        model_overrides={"d_model": 64, "n_heads": 4, "n_layers": 2},
        eval_batch_size=64,
        **FAST,
    )
    m = r.metrics
    assert m["test_perplexity"] == pytest.approx(2.718281828 ** m["test_nats_per_token"], rel=1e-6)
    assert m["test_bits_per_token"] == pytest.approx(m["test_nats_per_token"] / 0.6931471805599453, rel=1e-6)
    assert m["test_nats_per_token"] < 3.5  # below uniform over the vocabulary (ln 60+ ~ 4.1)
    from archlab.tasks.language_model import sample_text

    text = sample_text(r.model, b.info["vocab"], prompt="\n", n=50, seed=1)
    assert len(text) == 50 and set(text) <= set(b.info["vocab"])


def test_segmentation_unet_digits(tmp_path):
    from test_train_support import digits_images_bundle

    b = digits_images_bundle()

    def seg(s):  # 16x16 images; mask: 0 background, 1 faint stroke, 2 bright stroke (from the pixels)
        img = torch.nn.functional.interpolate(s.inputs[0], size=(16, 16), mode="nearest")
        mask = (img[:, 0] > 0.25).long() + (img[:, 0] > 0.7).long()
        return Split((img,), mask)

    sb = DataBundle(
        "digits-seg",
        "image",
        "segmentation",
        seg(b.train),
        seg(b.val),
        seg(b.test),
        info={"num_classes": 3, "in_channels": 1},
    )
    r = archlab.fit(
        "unet_small",
        sb,
        max_steps=25,
        lr=3e-3,
        batch_size=32,
        out_dir=str(tmp_path),
        model_overrides={"depth": 2, "base_width": 8},
        **FAST,
    )
    assert r.model.config.out_channels == 3
    assert {"test_dice", "test_iou", "test_pixel_accuracy"} <= set(r.metrics)
    assert r.metrics["test_pixel_accuracy"] > 0.7
