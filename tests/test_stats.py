"""Spread and comparison statistics (archlab.runs.stats) on inputs with known answers."""

import math

import numpy as np
import pytest
from scipy import stats as st

from archlab.errors import ConfigError
from archlab.runs.stats import (
    TestResult,
    corrected_t,
    mcnemar,
    paired_bootstrap,
    paired_t,
    seed_difference,
    summarize,
    summarize_metrics,
    t_quantile_975,
    welch_t,
)


def test_t_quantiles_match_the_tables_and_fractional_df():
    assert t_quantile_975(1) == pytest.approx(12.706, abs=1e-3) and t_quantile_975(4) == pytest.approx(2.776, abs=1e-3)
    assert t_quantile_975(60) == pytest.approx(2.000, abs=1e-3)
    # Welch's fractional df: the linear table interpolation this replaces gave 8.5 at df 1.5 (exact 6.02).
    assert t_quantile_975(1.5) == pytest.approx(6.0167, abs=1e-3)
    assert t_quantile_975(1.2) == pytest.approx(st.t.ppf(0.975, 1.2))
    with pytest.raises(ConfigError, match="degrees of freedom"):
        t_quantile_975(0)


def test_summarize_known_values():
    s = summarize([1.0, 2.0, 3.0, 4.0, 5.0])
    assert s["mean"] == 3.0 and s["n"] == 5
    assert s["std"] == pytest.approx(math.sqrt(2.5))  # sample std, ddof=1
    half = 2.7764451 * math.sqrt(2.5) / math.sqrt(5)
    assert (s["ci95_low"], s["ci95_high"]) == pytest.approx((3 - half, 3 + half))
    one = summarize([0.9])
    assert one == {"mean": 0.9, "std": 0.0, "ci95_low": 0.9, "ci95_high": 0.9, "n": 1}
    with pytest.raises(ConfigError):
        summarize([])


def test_summarize_with_fold_correction_is_wider_by_the_nadeau_bengio_factor():
    values = [0.8, 0.85, 0.9, 0.82, 0.88]
    plain, corrected = summarize(values), summarize(values, test_train_ratio=0.25)
    ratio = (corrected["ci95_high"] - corrected["mean"]) / (plain["ci95_high"] - plain["mean"])
    assert ratio == pytest.approx(math.sqrt((1 / 5 + 0.25) / (1 / 5)))
    assert "Nadeau-Bengio" in corrected["interval"] and "interval" not in plain


def test_summarize_metrics_keeps_numeric_keys_present_everywhere():
    out = summarize_metrics(
        [{"acc": 0.8, "best": None, "w": "last", "ok": True}, {"acc": 0.9, "best": 1.0, "w": "last", "ok": True}]
    )
    assert list(out) == ["acc"] and out["acc"]["mean"] == pytest.approx(0.85)
    corrected = summarize_metrics([{"acc": 0.8}, {"acc": 0.9}], test_train_ratio={"acc": 0.5})
    assert corrected["acc"]["ci95_high"] > out["acc"]["ci95_high"]


def test_identical_vectors_give_zero_and_not_significant():
    a = np.random.default_rng(0).integers(0, 2, 200)
    for r in (paired_bootstrap(a, a, n_boot=1000, seed=0), mcnemar(a, a, n_boot=1000)):
        assert (r.estimate, r.ci95_low, r.ci95_high) == (0, 0, 0) and r.p_value == 1 and not r.significant


def test_clearly_better_is_significant_and_small_gap_is_not():
    rng = np.random.default_rng(1)
    b = (rng.random(300) < 0.7).astype(float)
    a = np.maximum(b, (rng.random(300) < 0.5))  # a is right wherever b is, and on about half of the rest
    r = paired_bootstrap(a, b, n_boot=2000, seed=0)
    assert r.test == "paired bootstrap" and "BCa" in r.interval
    assert r.estimate > 0.1 and r.ci95_low > 0 and r.significant and r.p_value < 0.01
    flipped = paired_bootstrap(b, a, n_boot=2000, seed=0)
    assert flipped.ci95_high < 0 and flipped.significant
    c = b.copy()
    c[np.flatnonzero(c == 0)[:1]] = 1  # one sample better out of 300
    assert not paired_bootstrap(c, b, n_boot=2000, seed=0).significant
    assert not mcnemar(c, b, n_boot=500).significant


def test_mcnemar_counts_the_discordant_samples_and_uses_the_exact_test_when_few():
    # 10 samples A right / B wrong, 2 the reverse, 88 agreeing: the exact binomial test on 12 trials.
    a = np.array([1] * 10 + [0] * 2 + [1] * 60 + [0] * 28, dtype=float)
    b = np.array([0] * 10 + [1] * 2 + [1] * 60 + [0] * 28, dtype=float)
    r = mcnemar(a, b, n_boot=1000, seed=0)
    assert r.test == "McNemar exact" and r.details["a_right_b_wrong"] == 10 and r.details["a_wrong_b_right"] == 2
    assert r.p_value == pytest.approx(st.binomtest(10, 12, 0.5).pvalue)
    assert r.estimate == pytest.approx(0.08) and r.ci95_low <= 0.08 <= r.ci95_high
    # Many discordant samples: the continuity-corrected chi-square, (|b - c| - 1)^2 / (b + c) on 1 df.
    a2, b2 = np.r_[np.ones(30), np.zeros(20)], np.r_[np.zeros(30), np.ones(20)]
    r2 = mcnemar(a2, b2, n_boot=500)
    assert r2.test == "McNemar chi-square" and r2.p_value == pytest.approx(st.chi2.sf((10 - 1) ** 2 / 50, 1))
    with pytest.raises(ConfigError, match="1/0 correctness"):
        mcnemar([0.5, 1.0], [1.0, 0.0])


def test_bootstrap_is_seeded_and_checks_pairing():
    a, b = [1, 0, 1, 1, 0] * 10, [1, 1, 0, 0, 0] * 10
    assert paired_bootstrap(a, b, seed=3) == paired_bootstrap(a, b, seed=3)
    with pytest.raises(ConfigError, match="same test samples"):
        paired_bootstrap([1, 0], [1, 0, 1])


def test_corrected_t_against_the_formula_and_the_plain_paired_t():
    a = np.array([0.91, 0.88, 0.93, 0.90, 0.89])
    b = np.array([0.87, 0.88, 0.89, 0.86, 0.88])
    r = corrected_t(a, b, test_train_ratio=0.25)
    d = a - b
    se = math.sqrt((1 / 5 + 0.25) * d.var(ddof=1))
    assert r.test == "Nadeau-Bengio corrected t" and r.details["df"] == 4
    assert r.p_value == pytest.approx(2 * st.t.sf(d.mean() / se, 4))
    assert r.ci95_high - r.estimate == pytest.approx(st.t.ppf(0.975, 4) * se)
    plain = paired_t(a, b)
    assert plain.p_value < r.p_value and plain.ci95_high - plain.estimate < r.ci95_high - r.estimate
    with pytest.raises(ConfigError, match="n_test/n_train"):
        corrected_t(a, b, test_train_ratio=0)


def test_seed_difference_welch_and_paired():
    a, b = [0.90, 0.91, 0.92, 0.93], [0.80, 0.81, 0.82, 0.83]
    w = seed_difference(a, b)
    assert w["diff"] == pytest.approx(0.10) and w["significant"] and w["method"] == "Welch t"
    noisy = seed_difference([0.90, 0.70, 0.95], [0.85, 0.92, 0.75])
    assert not noisy["significant"] and noisy["ci95_low"] < 0 < noisy["ci95_high"] and noisy["p_value"] > 0.05
    p = seed_difference(a, b, paired=True)
    assert p["diff"] == pytest.approx(0.10) and p["ci95_low"] == pytest.approx(0.10) and p["significant"]
    same = seed_difference(a, a, paired=True)
    assert same["diff"] == 0 and not same["significant"]
    with pytest.raises(ConfigError):
        seed_difference([0.9], [0.8, 0.7])
    assert isinstance(welch_t(a, b), TestResult) and welch_t(a, b).to_dict()["significant"]
