"""Properties on random inputs: archlab's folds against scikit-learn's splitters, its intervals against
scipy / statsmodels, and no forecasting fold whose validation windows share a point with its training windows."""

import math
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as hs
from scipy import stats as st
from sklearn import model_selection as ms
from statsmodels.stats.weightstats import CompareMeans, DescrStatsW

from archlab.data.folds import fold_indices, forward_chaining_indices, kfold, window_gap
from archlab.data.text import lm_bundle
from archlab.data.timeseries import forecast_bundle
from archlab.errors import DataError
from archlab.runs.stats import corrected_t, mcnemar, paired_t, summarize, welch_t

SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@hs.composite
def fold_problems(draw):
    k = draw(hs.integers(2, 5))
    n_groups = draw(hs.integers(k, 12))
    n = draw(hs.integers(max(k, n_groups), 60))
    seed = draw(hs.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, draw(hs.integers(2, 3)), n) if draw(hs.booleans()) else None
    groups = None
    if draw(hs.booleans()):
        groups = np.r_[np.arange(n_groups), rng.integers(0, n_groups, n - n_groups)]  # every group present
    return n, k, seed, labels, groups


@SETTINGS
@given(fold_problems())
def test_fold_indices_are_scikit_learns_splits_and_partition_the_samples(problem):
    n, k, seed, labels, groups = problem
    if groups is not None and labels is not None:
        ref = ms.StratifiedGroupKFold(k, shuffle=True, random_state=seed)
    elif groups is not None:
        ref = ms.GroupKFold(k, shuffle=True, random_state=seed)
    elif labels is not None:
        ref = ms.StratifiedKFold(k, shuffle=True, random_state=seed)
    else:
        ref = ms.KFold(k, shuffle=True, random_state=seed)
    try:
        with warnings.catch_warnings():  # a class with fewer members than folds: sklearn warns, archlab logs
            warnings.simplefilter("ignore")
            expected = [np.sort(v) for _, v in ref.split(np.zeros(n), labels, groups)]
    except ValueError as exc:  # what scikit-learn refuses, archlab refuses in one line naming the fix
        with pytest.raises(DataError, match="use fewer folds") as err:
            fold_indices(n, k, seed=seed, labels=labels, groups=groups)
        assert str(exc) in str(err.value)
        return
    parts = fold_indices(n, k, seed=seed, labels=labels, groups=groups)
    assert [p.tolist() for p in parts] == [e.tolist() for e in expected]
    assert sorted(np.concatenate(parts).tolist()) == list(range(n))  # a partition
    if groups is not None:  # no group on both sides of a fold
        owner = {}
        for i, part in enumerate(parts):
            for g in np.unique(groups[part]).tolist():
                assert owner.setdefault(g, i) == i
    elif labels is not None:  # each class spread evenly: fold counts differ by at most one
        for c in np.unique(labels):
            counts = [int(np.sum(labels[p] == c)) for p in parts]
            assert max(counts) - min(counts) <= 1


@SETTINGS
@given(hs.integers(2, 6), hs.integers(0, 12), hs.integers(0, 200))
def test_forward_chaining_trains_only_on_the_past_beyond_the_gap(k, gap, extra):
    n = (k + 1) * (gap + 1) + extra  # the fewest samples that leave every fold something to train on, and more
    pairs = forward_chaining_indices(n, k, gap=gap)
    expected = list(ms.TimeSeriesSplit(n_splits=k, gap=gap).split(np.zeros(n)))
    assert [(t.tolist(), v.tolist()) for t, v in pairs] == [(t.tolist(), v.tolist()) for t, v in expected]
    for train, val in pairs:
        assert len(train) >= 1 and train.tolist() == list(range(len(train)))  # a prefix: the past
        assert val.tolist() == list(range(val[0], val[-1] + 1))  # one contiguous block
        assert val[0] - train[-1] == gap + 1
    vals = np.concatenate([v for _, v in pairs])
    assert len(vals) == len(set(vals.tolist()))  # each sample validated at most once


@SETTINGS
@given(hs.lists(hs.floats(-5, 5, allow_nan=False, allow_subnormal=False), min_size=2, max_size=12))
def test_summarize_is_scipys_t_interval(values):
    # spreads below 1e-9 are left out: scipy's own standard error underflows to nan there
    s = summarize(values)
    if np.ptp(values) < 1e-9:
        return
    low, high = st.t.interval(0.95, len(values) - 1, loc=np.mean(values), scale=st.sem(values))
    assert (s["ci95_low"], s["ci95_high"]) == pytest.approx((low, high), rel=1e-9, abs=1e-12)


def _pairs(min_size=2):
    return hs.lists(
        hs.tuples(hs.floats(0, 1, allow_nan=False), hs.floats(0, 1, allow_nan=False)), min_size=min_size, max_size=10
    )


@SETTINGS
@given(_pairs(3), hs.floats(0.05, 1.0))
def test_t_intervals_match_statsmodels_and_the_correction_only_widens(pairs, ratio):
    a, b = np.array(pairs).T
    d = a - b
    if np.ptp(d) < 1e-6 or np.ptp(a) < 1e-6 or np.ptp(b) < 1e-6:
        return  # no spread: the tests return the difference itself (checked in test_stats)
    p = paired_t(a, b)
    assert (p.ci95_low, p.ci95_high) == pytest.approx(DescrStatsW(d).tconfint_mean(0.05), rel=1e-7, abs=1e-9)
    assert p.p_value == pytest.approx(DescrStatsW(d).ttest_mean(0)[1], rel=1e-7, abs=1e-12)
    w = welch_t(a, b)
    cm = CompareMeans(DescrStatsW(a), DescrStatsW(b))
    assert (w.ci95_low, w.ci95_high) == pytest.approx(cm.tconfint_diff(0.05, usevar="unequal"), rel=1e-7, abs=1e-9)
    assert w.p_value == pytest.approx(cm.ttest_ind(usevar="unequal")[1], rel=1e-7, abs=1e-12)
    c = corrected_t(a, b, test_train_ratio=ratio)
    assert c.ci95_low <= p.ci95_low + 1e-12 and c.ci95_high >= p.ci95_high - 1e-12 and c.p_value >= p.p_value - 1e-12
    # Nadeau-Bengio's variance is the paired one scaled by (1/J + ratio) / (1/J).
    j = len(d)
    scale = math.sqrt((1 / j + ratio) * j)
    assert c.ci95_high - c.estimate == pytest.approx((p.ci95_high - p.estimate) * scale, rel=1e-7)


@settings(max_examples=15, deadline=None)
@given(hs.lists(hs.tuples(hs.booleans(), hs.booleans()), min_size=5, max_size=60))
def test_mcnemar_is_the_binomial_test_of_the_discordant_samples(pairs):
    a, b = np.array(pairs, dtype=float).T
    r = mcnemar(a, b, n_boot=200, seed=0)
    n01, n10 = int(np.sum((a == 1) & (b == 0))), int(np.sum((a == 0) & (b == 1)))
    assert r.estimate == pytest.approx((n01 - n10) / len(a))
    assert r.ci95_low - 1e-12 <= r.estimate <= r.ci95_high + 1e-12 or r.ci95_low == r.ci95_high
    if n01 + n10 == 0:
        assert r.p_value == 1
    elif n01 + n10 < 25:
        assert r.test == "McNemar exact" and r.p_value == pytest.approx(st.binomtest(n01, n01 + n10, 0.5).pvalue)


# ------------------------------------------------------------------------------------- leak test
def _positions(split, stats) -> list[set[int]]:
    """The series positions each sample reads: the series is 0, 1, 2, ... so a value is its position."""

    def raw(t):
        return np.rint(t.double().reshape(len(t), -1).numpy() * stats["std"][0] + stats["mean"][0]).astype(np.int64)

    return [set(row.tolist()) for row in np.concatenate([raw(split.inputs[0]), raw(split.target)], axis=1)]


@settings(max_examples=15, deadline=None)
@given(hs.integers(2, 12), hs.integers(1, 4), hs.integers(2, 4), hs.integers(0, 80))
def test_no_forecasting_validation_window_shares_a_point_with_a_training_window(window, horizon, k, extra):
    n = int(((k + 1) * (window + horizon) + window + horizon + extra) / 0.7) + 2
    bundle = forecast_bundle("line", np.arange(n, dtype=np.float64), window=window, horizon=horizon, season=1)
    folds = kfold(bundle, k, seed=0)  # auto: time-ordered, so forward chaining
    for f in folds:
        stats = f.info["normalization"]  # refitted on the fold's training part
        train, val = _positions(f.train, stats), _positions(f.val, stats)
        seen = set().union(*train)
        assert all(not (v & seen) for v in val), f"fold {f.info['fold']['index']} leaks"
        assert max(seen) < min(min(v) for v in val)  # trained on the past only
        assert min(min(v) for v in val) == max(seen) + 1  # and the gap drops no more than it must
        assert all(len(s) == window + horizon for s in train + val)


def test_language_model_windows_get_the_gap_their_stride_needs():
    ids = np.arange(400) % 7
    b = lm_bundle("toy", ids, [str(i) for i in range(7)], block_size=8, stride=3)
    assert window_gap(b) == math.ceil(9 / 3) - 1
    for f in kfold(b, 3, seed=0):
        fold = f.info["fold"]
        first_val, last_train = min(fold["val_indices"]), fold["train_end"] - 1
        # window i reads tokens [3i, 3i + 9): the last training window ends before the first validation one starts
        assert 3 * last_train + 9 <= 3 * first_val
