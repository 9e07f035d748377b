"""Spread and comparison statistics (archlab.runs.stats) on inputs with known answers."""

import math

import numpy as np
import pytest

from archlab.errors import ConfigError
from archlab.runs.stats import paired_bootstrap, seed_difference, summarize, summarize_metrics, t_quantile_975


def test_t_quantiles():
    assert t_quantile_975(1) == 12.706 and t_quantile_975(4) == 2.776
    assert t_quantile_975(60) == pytest.approx(2.000, abs=1e-3)
    assert t_quantile_975(1000) == pytest.approx(1.962, abs=1e-3)
    assert 2.776 > t_quantile_975(4.5) > 2.571


def test_summarize_known_values():
    s = summarize([1.0, 2.0, 3.0, 4.0, 5.0])
    assert s["mean"] == 3.0 and s["n"] == 5
    assert s["std"] == pytest.approx(math.sqrt(2.5))  # sample std, ddof=1
    half = 2.776 * math.sqrt(2.5) / math.sqrt(5)
    assert (s["ci95_low"], s["ci95_high"]) == pytest.approx((3 - half, 3 + half))
    one = summarize([0.9])
    assert one == {"mean": 0.9, "std": 0.0, "ci95_low": 0.9, "ci95_high": 0.9, "n": 1}
    with pytest.raises(ConfigError):
        summarize([])


def test_summarize_metrics_keeps_numeric_keys_present_everywhere():
    out = summarize_metrics(
        [{"acc": 0.8, "best": None, "w": "last", "ok": True}, {"acc": 0.9, "best": 1.0, "w": "last", "ok": True}]
    )
    assert list(out) == ["acc"] and out["acc"]["mean"] == pytest.approx(0.85)


def test_identical_vectors_give_zero_and_not_significant():
    a = np.random.default_rng(0).integers(0, 2, 200)
    r = paired_bootstrap(a, a, n_boot=1000, seed=0)
    assert r["diff"] == 0 and r["ci95_low"] == 0 and r["ci95_high"] == 0 and not r["significant"]


def test_clearly_better_is_significant_and_small_gap_is_not():
    rng = np.random.default_rng(1)
    b = (rng.random(300) < 0.7).astype(float)
    a = np.maximum(b, (rng.random(300) < 0.5))  # a is right wherever b is, and on about half of the rest
    r = paired_bootstrap(a, b, n_boot=2000, seed=0)
    assert r["diff"] > 0.1 and r["ci95_low"] > 0 and r["significant"]
    flipped = paired_bootstrap(b, a, n_boot=2000, seed=0)
    assert flipped["ci95_high"] < 0 and flipped["significant"]
    c = b.copy()
    c[np.flatnonzero(c == 0)[:1]] = 1  # one sample better out of 300
    assert not paired_bootstrap(c, b, n_boot=2000, seed=0)["significant"]


def test_bootstrap_is_seeded_and_checks_pairing():
    a, b = [1, 0, 1, 1, 0] * 10, [1, 1, 0, 0, 0] * 10
    assert paired_bootstrap(a, b, seed=3) == paired_bootstrap(a, b, seed=3)
    with pytest.raises(ConfigError, match="same test samples"):
        paired_bootstrap([1, 0], [1, 0, 1])


def test_seed_difference_welch_and_paired():
    a, b = [0.90, 0.91, 0.92, 0.93], [0.80, 0.81, 0.82, 0.83]
    w = seed_difference(a, b)
    assert w["diff"] == pytest.approx(0.10) and w["significant"] and w["method"] == "welch t"
    noisy = seed_difference([0.90, 0.70, 0.95], [0.85, 0.92, 0.75])
    assert not noisy["significant"] and noisy["ci95_low"] < 0 < noisy["ci95_high"]
    p = seed_difference(a, b, paired=True)
    assert p["diff"] == pytest.approx(0.10) and p["ci95_low"] == pytest.approx(0.10) and p["significant"]
    same = seed_difference(a, a, paired=True)
    assert same["diff"] == 0 and not same["significant"]
    with pytest.raises(ConfigError):
        seed_difference([0.9], [0.8, 0.7])
