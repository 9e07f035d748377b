"""``recommend`` on users' own files (table, image folder, text, series) and on bundled datasets."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from archlab.advise import recommend, train_recipe
from archlab.advise.recipe import MAX_STEPS, MIN_STEPS, default_batch_size

BUDGET = 30_000


def _check(rec, modality: str, task: str, budget: int | None = None) -> None:
    assert (rec.facts.modality, rec.facts.task) == (modality, task)
    assert rec.candidates and [c.rank for c in rec.candidates] == list(range(1, len(rec.candidates) + 1))
    assert all(c.reasons and c.params for c in rec.candidates)
    if budget is not None:
        assert all(c.fits_budget and c.params <= budget for c in rec.candidates)


def _table(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(120, 4))
    df = pd.DataFrame(x, columns=["a", "b", "c", "d"])
    df["label"] = np.where(x[:, 0] + x[:, 1] > 0, "yes", "no")
    path = tmp_path / "table.csv"
    df.to_csv(path, index=False)
    return path


def _series(tmp_path):
    t = np.arange(150)
    df = pd.DataFrame(
        {"date": pd.date_range("2022-01-01", periods=150, freq="D").strftime("%Y-%m-%d"), "units": np.sin(t)}
    )
    path = tmp_path / "sales.csv"
    df.to_csv(path, index=False)
    return path


def test_user_table(tmp_path):
    rec = recommend(_table(tmp_path), params_max=BUDGET, top=3)
    _check(rec, "tabular", "classification", BUDGET)
    # a small table: FT-Transformer first (Gorishniy et al. 2021), the trees' baseline beside it
    assert rec.top.family in ("ft_transformer", "mlp") and rec.facts.in_features == 4 and rec.facts.num_classes == 2
    assert "tabular-small-trees" in rec.rules_fired and "tabular-small-ft-transformer" in rec.rules_fired


def test_user_image_folder(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(0)
    for cls in ("cat", "dog"):
        (tmp_path / "imgs" / cls).mkdir(parents=True)
        for i in range(6):
            pixels = rng.integers(0, 255, size=(12, 12), dtype=np.uint8)
            Image.fromarray(pixels, mode="L").save(tmp_path / "imgs" / cls / f"{i}.png")
    rec = recommend(tmp_path / "imgs", top=3)
    _check(rec, "image", "classification")
    assert rec.facts.image_size == [12, 12] and rec.facts.num_classes == 2
    assert rec.top.family in ("resnet", "cnn") and "image-small-no-vit" in rec.rules_fired


def test_user_text_file(tmp_path):
    path = tmp_path / "story.txt"
    path.write_text("the quick brown fox jumps over the lazy dog. " * 40, encoding="utf-8")
    rec = recommend(path, top=3, data_options={"block_size": 32})
    _check(rec, "text", "language_modeling")
    assert rec.facts.vocab_size and rec.facts.vocab_size < 40
    assert "text-generation-decoder" in rec.rules_fired


def test_user_series_csv(tmp_path):
    rec = recommend(_series(tmp_path), task="forecasting", params_max=BUDGET, top=3)
    _check(rec, "time_series", "forecasting", BUDGET)
    assert rec.facts.season == 7 and rec.facts.seq_len == 14
    # 150 daily points, season 7: N-BEATS / DLinear before the recurrent and convolutional nets
    # (DLinear has no scaling knob, so under a parameter budget autosize leaves it unsized)
    assert rec.top.family in ("nbeats", "linear_forecaster") and "series-seasonal-linear" in rec.rules_fired


def test_cli_series_csv_with_loader_options(tmp_path):
    import typer

    from archlab.cli.recommend import register

    app = typer.Typer()
    register(app)
    res = CliRunner().invoke(
        app,
        ["recommend", str(_series(tmp_path)), "--set", "data.time=date", "-s", "target=units", "-f", "json", "-k", "2"],
    )
    assert res.exit_code == 0, res.output
    d = json.loads(res.output)
    assert d["facts"]["task"] == "forecasting" and len(d["candidates"]) == 2


@pytest.mark.parametrize(
    "name, options, modality, task",
    [
        ("co2", {"fill": "interpolate"}, "time_series", "forecasting"),
        ("lynx", None, "time_series", "forecasting"),
        ("wine", None, "tabular", "classification"),
        ("moons", None, "points", "classification"),
        ("sbm", None, "graph", "node_classification"),
        ("graph_motifs", None, "graph", "graph_classification"),
        ("affairs", None, "tabular", "ctr"),
        ("ucr:ItalyPowerDemand", None, "time_series", "classification"),
        ("ucr:UnitTest", None, "time_series", "classification"),  # its .ts file has % comments
    ],
)
def test_bundled_datasets(name, options, modality, task):
    rec = recommend(name, data_options=options, top=2)
    _check(rec, modality, task)


def test_signal_candidates_carry_the_layout_they_read():
    from archlab.data import load
    from archlab.registry import create

    rec = recommend("ucr:ItalyPowerDemand", top=6)
    layouts = {c.family: c.data_options.get("layout", "channels") for c in rec.candidates}
    assert layouts.get("rnn") == "sequence" and layouts.get("cnn") == "channels"
    # the TCN classifier reads the whole series (mean pooling), not only its last causal step
    assert [c.overrides.get("pooling") for c in rec.candidates if c.family == "tcn"] == ["mean"]
    for c in rec.candidates:  # each preset, loaded as the advisor says, reads the data
        bundle = load("ucr:ItalyPowerDemand", **c.data_options)
        create(c.name, **c.overrides).eval()(bundle.train.inputs[0][:2])


def test_image_candidates_read_the_images():
    """An MLP preset built for flat (B, 784) vectors does not read (B, 1, 8, 8) digits: the
    advisor leaves out what cannot take the data, and every row it offers reads two samples."""
    from archlab.data import load
    from archlab.registry import create

    bundle = load("digits")
    rec = recommend(bundle, top=5)
    assert rec.candidates and "mlp_784_128_10" not in [c.name for c in rec.candidates]
    for c in rec.candidates:
        out = create(c.name, **c.overrides).eval()(bundle.train.inputs[0][:2])
        assert out.shape == (2, 10)


def test_train_recipe_scales_with_the_data():
    assert default_batch_size(100) == 16 and default_batch_size(100_000) == 64 and default_batch_size(10) == 8
    small, why = train_recipe(100)
    assert small == {"batch_size": 16, "max_steps": MIN_STEPS} and "epochs" in why
    assert train_recipe(1_000_000)[0]["max_steps"] == MAX_STEPS
    capped, why = train_recipe(10_000, flops_per_sample=1e7, flops_budget=1e12)
    assert capped["max_steps"] == int(1e12 / (3 * 1e7 * 64)) < MAX_STEPS and "compute cap" in why
