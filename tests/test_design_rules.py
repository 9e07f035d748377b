"""The advisor's rule table: each rule fires on data that calls for it and not on data that doesn't."""

from __future__ import annotations

import re

import pytest

from archlab.advise import rules as R
from archlab.advise.facts import DataFacts
from archlab.advise.recommend import (
    Context,
    _candidate_checks,
    capacity_check,
    deepen_tcn,
    recommend,
    tcn_pooling,
    tcn_receptive_field,
)
from archlab.errors import ConfigError


def ctx(modality="tabular", task="classification", *, batch=None, streaming=False, pretrained_ok=True, **facts):
    return Context(
        DataFacts(modality=modality, task=task, **facts),
        batch=batch or 1,
        batch_given=batch is not None,
        streaming=streaming,
        pretrained_ok=pretrained_ok,
    )


# rule id -> (context that calls for it, context that does not)
CASES = {
    "streaming": (ctx("time_series", "forecasting", streaming=True), ctx("time_series", "forecasting")),
    "class-imbalance": (ctx(class_counts=[900, 100]), ctx(class_counts=[500, 480])),
    "tiny-batch-batchnorm": (ctx("image", batch=2, n_samples=5000), ctx("image", batch=64, n_samples=5000)),
    "generative-diffusion": (ctx("image", "diffusion"), ctx("image", "classification")),
    "contrastive-siamese": (ctx("image", "contrastive"), ctx("image", "classification")),
    "tabular-mlp": (ctx("tabular", "regression"), ctx("tabular", "ctr")),
    "tabular-small-trees": (ctx(n_samples=500), ctx(n_samples=200_000)),
    "tabular-sparse-ids": (ctx("tabular", "ctr"), ctx("tabular", "classification")),
    "image-cnn": (ctx("image", "classification"), ctx("image", "segmentation")),
    "image-small-no-vit": (ctx("image", n_samples=2000), ctx("image", n_samples=1_000_000)),
    "image-segmentation-unet": (ctx("image", "segmentation"), ctx("image", "classification")),
    "deep-needs-skips": (ctx("image", n_samples=60_000), ctx("image", n_samples=2000)),
    "series-tcn-first": (ctx("time_series", "forecasting"), ctx("time_series", "reconstruction")),
    "series-long-for-rnn": (ctx("time_series", seq_len=1000), ctx("time_series", seq_len=40)),
    "series-seasonal-linear": (
        ctx("time_series", "forecasting", season=12, n_samples=100),
        ctx("time_series", "forecasting", season=52, n_samples=60),  # not two full seasons
    ),
    "series-classify-multiscale": (ctx("time_series", "classification"), ctx("time_series", "forecasting")),
    "series-few-rocket": (
        ctx("time_series", "classification", n_samples=36, seq_len=251),
        ctx("time_series", "classification", n_samples=50_000, seq_len=251),
    ),
    "tabular-small-ft-transformer": (ctx("tabular", n_samples=178), ctx("tabular", n_samples=200_000)),
    "text-generation-decoder": (ctx("text", "language_modeling"), ctx("text", "classification")),
    "text-understanding-encoder": (ctx("text", "classification"), ctx("text", "language_modeling")),
    "graph-gnn": (ctx("graph", "node_classification"), ctx("tabular", "classification")),
    "points-mlp": (ctx("points", "classification"), ctx("image", "classification")),
}
CANDIDATE_RULES = {"receptive-field-short", "positions-too-short", "capacity-vs-data", "tcn-classify-pool"}


def test_every_rule_has_a_case_and_a_source():
    assert set(CASES) | CANDIDATE_RULES == set(R.RULES_BY_ID)
    for rule in R.RULES:  # a named practice, or a paper with its year
        assert (rule.source.startswith("practice: ") or re.search(r"et al\. \d{4}", rule.source)) and rule.advice


@pytest.mark.parametrize("rule_id", sorted(CASES))
def test_rule_fires_only_when_called_for(rule_id):
    yes, no = CASES[rule_id]
    assert rule_id in {r.id for r in R.fired(yes)}
    assert rule_id not in {r.id for r in R.fired(no)}


def test_receptive_field_rule():
    from archlab.registry import get_entry

    entry = get_entry("tcn_forecaster")
    cfg = entry.config.build(entry.defaults).model_dump()
    rf = tcn_receptive_field(cfg["channels"], cfg["kernel_size"])
    assert rf == 1 + 2 * 2 * (1 + 2 + 4 + 8)
    long_season = DataFacts(modality="time_series", task="forecasting", seq_len=24, season=rf + 50)
    short = DataFacts(modality="time_series", task="forecasting", seq_len=24, season=12)
    assert "receptive-field-short" in {c[0] for c in _candidate_checks(entry, cfg, long_season, set())}
    assert "receptive-field-short" not in {c[0] for c in _candidate_checks(entry, cfg, short, set())}
    # the fix: levels added until the receptive field covers the season; then the check is quiet
    deeper = deepen_tcn(cfg, long_season)
    assert deeper and len(deeper) > len(cfg["channels"]) and deepen_tcn(cfg, short) is None
    assert tcn_receptive_field(deeper, cfg["kernel_size"]) >= rf + 50
    fixed = {**cfg, "channels": deeper}
    assert "receptive-field-short" not in {c[0] for c in _candidate_checks(entry, fixed, long_season, set())}
    rec = recommend(modality="time_series", task="classification", seq_len=300, num_classes=2, top=10)
    tcn = next(c for c in rec.candidates if c.family == "tcn")
    assert len(tcn.overrides["channels"]) > len(cfg["channels"]) and "receptive-field-short" in rec.rules_fired


def test_tcn_classify_pool_rule():
    """A causal TCN classifier reading only its last step scored 40% on mnist1d (mean pooling 82%):
    the advisor switches it to mean pooling for whole-sequence classification, not for streaming."""
    from archlab.registry import get_entry

    entry = get_entry("tcn_classifier")
    cfg = entry.config.build(entry.defaults).model_dump()
    assert cfg["pooling"] == "last"
    series = DataFacts(modality="time_series", task="classification", seq_len=40, num_classes=10)
    assert tcn_pooling(cfg, series, streaming=False) == "mean"
    assert tcn_pooling(cfg, series, streaming=True) is None
    assert tcn_pooling({**cfg, "pooling": "mean"}, series, streaming=False) is None
    forecaster = get_entry("tcn_forecaster")
    fcfg = forecaster.config.build(forecaster.defaults).model_dump()
    assert tcn_pooling(fcfg, DataFacts(modality="time_series", task="forecasting"), streaming=False) is None

    rec = recommend(modality="time_series", task="classification", seq_len=40, num_classes=10, top=10)
    tcn = next(c for c in rec.candidates if c.name == "tcn_classifier")
    assert tcn.overrides["pooling"] == "mean" and any(n.startswith("[tcn-classify-pool]") for n in tcn.notes)
    assert "tcn-classify-pool" in {w.rule for w in rec.warnings}


def test_positions_rule():
    from archlab.registry import get_entry

    entry = get_entry("transformer_encoder_512")
    cfg = entry.config.build(entry.defaults).model_dump()
    long = DataFacts(modality="text", task="classification", seq_len=2048)
    short = DataFacts(modality="text", task="classification", seq_len=128)
    assert "positions-too-short" in {c[0] for c in _candidate_checks(entry, cfg, long, set())}
    assert "positions-too-short" not in {c[0] for c in _candidate_checks(entry, cfg, short, set())}
    rec = recommend(modality="text", task="classification", seq_len=1024, num_classes=2, top=3)
    assert "positions-too-short" in rec.rules_fired


def test_capacity_rule():
    # 1,000 samples: a moderate size is 10,000 parameters; 5 M is 500 times that (oversized)
    big, note_big = capacity_check(5_000_000, 1_000)
    fair, note_fair = capacity_check(12_000, 1_000)
    small, _ = capacity_check(500, 1_000)
    assert note_big and "5,000 per sample" in note_big and note_fair is None
    assert big < -1 < small < fair <= 0
    assert capacity_check(5_000_000, 1_000_000)[1] is None  # the same model on plenty of data is fine
    assert capacity_check(None, 100) == (0.0, None)
    # tiny data: the floor (10,000) sets the scale, so a 35,000-parameter TCN on 33 series is fine
    assert capacity_check(35_000, 33)[1] is None and capacity_check(2_000_000, 33)[1]


def test_capacity_rule_reorders_presets_the_rules_rate_alike():
    # text classification on 200 samples: the rules give both encoders the same score, and the
    # 19 M-parameter transformer_encoder_512 is ~100,000 parameters per sample
    rec = recommend(modality="text", task="classification", seq_len=64, num_classes=2, n_samples=200, top=10)
    by_name = {c.name: c for c in rec.candidates}
    small, large = by_name["transformer_encoder_256"], by_name["transformer_encoder_512"]
    assert small.params < large.params and small.rank < large.rank
    assert any(n.startswith("[capacity-vs-data]") for n in large.notes)
    assert "capacity-vs-data" in rec.rules_fired and "capacity-vs-data" in {w.rule for w in rec.warnings}


def test_recommend_small_tabular_warns_and_reports_trees():
    rec = recommend("iris")
    assert rec.top.family == "ft_transformer" and "tabular-small-ft-transformer" in rec.rules_fired
    assert "tabular-small-trees" in {w.rule for w in rec.warnings}
    assert rec.baseline is None or rec.baseline["metric"] == "accuracy"
    d = rec.to_dict()
    assert d["schema_version"] == 1 and d["candidates"][0]["reasons"]


def test_recommend_streaming_series_ranks_recurrent_first():
    rec = recommend(modality="time_series", task="forecasting", seq_len=48, streaming=True)
    assert rec.top.family in ("rnn", "tcn", "ssm")
    assert any(r.startswith("[streaming]") for r in rec.top.reasons)


def test_recommend_sizes_every_row_to_the_budget():
    rec = recommend("breast_cancer", params_max=20_000)
    assert rec.candidates and all(c.fits_budget and c.params <= 20_000 for c in rec.candidates)


def test_recommend_graph_and_bad_input():
    rec = recommend("karate")
    assert rec.top.family == "gnn" and "tiny-batch-batchnorm" in rec.rules_fired
    with pytest.raises(ConfigError):
        recommend(modality="nonsense")
    with pytest.raises(Exception, match="modality"):
        recommend()


def test_contender_rules_rank_their_families():
    """Few short series -> MiniRocket first; a seasonal series -> DLinear/NLinear then N-BEATS
    above the recurrent and convolutional nets; a long series with many samples keeps rocket off the top."""
    few = recommend(modality="time_series", task="classification", seq_len=251, n_samples=36, num_classes=3, top=10)
    assert few.top.family == "rocket" and "series-few-rocket" in few.rules_fired
    many = recommend(modality="time_series", task="classification", seq_len=251, n_samples=50_000, num_classes=3)
    assert many.top.family != "rocket" and "series-few-rocket" not in many.rules_fired

    facts = DataFacts(modality="time_series", task="forecasting", seq_len=24, season=12, n_samples=100)
    fired = {r.id for r in R.fired(Context(facts, batch=1, batch_given=False, streaming=False, pretrained_ok=True))}
    assert "series-seasonal-linear" in fired
    score = {
        fam: sum(r.prefer.get(fam, 0) for r in R.RULES if r.id in fired)
        for fam in ("linear_forecaster", "nbeats", "tcn", "rnn")
    }
    assert score["linear_forecaster"] > score["nbeats"] > score["tcn"] > score["rnn"]
