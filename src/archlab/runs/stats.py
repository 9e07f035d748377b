"""Figures with their spread, and comparisons that pick the test the design calls for.

Every quantile, test and bootstrap interval here comes from :mod:`scipy.stats` (McNemar's test
from statsmodels); this module only chooses which one fits and words the result.

- :func:`summarize`: mean, sample standard deviation and a 95% Student-t interval of the mean of a
  few runs (folds or seeds), ``mean ± t_{0.975, n-1} · s / sqrt(n)``; t rather than 1.96 because n
  is 3-10. With ``test_train_ratio`` (cross-validation) the variance gets the Nadeau-Bengio
  correction described below.
- Comparisons, each returning a :class:`TestResult` (test name, estimate, 95% interval, p-value):

  ================================================  ==================================================
  design                                            test
  ================================================  ==================================================
  same test samples, one run each, classification   :func:`mcnemar` (exact binomial on the discordant
                                                    pairs; interval: paired BCa bootstrap)
  same test samples, one run each, any metric       :func:`paired_bootstrap` (BCa interval, paired
                                                    sign-flip permutation p-value)
  repeated seeds on the same split                  :func:`paired_t` (``scipy.stats.ttest_rel``)
  cross-validation folds, paired fold by fold       :func:`corrected_t` (Nadeau & Bengio 2003)
  independent groups of runs on the same data       :func:`welch_t` (``ttest_ind(equal_var=False)``)
  ================================================  ==================================================

  Folds share most of their training samples, so their scores are correlated and a plain paired t
  over folds understates the variance; Nadeau & Bengio (2003, "Inference for the generalization
  error") inflate it to ``(1/J + n_test/n_train) · s²``, as scikit-learn's "Statistical comparison
  of models using grid search" example does.

"Significant" means p < 0.05 (for the t-tests the same as the 95% interval excluding 0); nothing
more is claimed.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from archlab.errors import ConfigError, require

#: two-sided level of every interval and test here
ALPHA = 0.05


def _scipy_stats():
    return require("scipy.stats", "data", "confidence intervals and significance tests")


@dataclass
class TestResult:
    """One comparison ``A - B``: the test used, the estimate, its 95% interval and the p-value.

    Attributes:
        test: the test's name (``"paired t"``, ``"Nadeau-Bengio corrected t"``, ``"McNemar exact"``...).
        estimate: the difference A - B (of means, or of per-sample means).
        ci95_low, ci95_high: the 95% interval of the estimate.
        p_value: two-sided p-value of "no difference".
        interval: how the interval was obtained (it differs from the test for McNemar).
        n_a, n_b: values on each side (samples, seeds or folds).
        details: what the test needed or found (degrees of freedom, the train/test ratio,
            discordant counts, resamples).
    """

    __test__ = False  # not a pytest class, despite the name

    test: str
    estimate: float
    ci95_low: float
    ci95_high: float
    p_value: float
    interval: str
    n_a: int
    n_b: int
    details: dict[str, Any] = field(default_factory=dict)
    schema_version: int = 1

    @property
    def significant(self) -> bool:
        """p < 0.05."""
        return bool(self.p_value < ALPHA)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "significant": self.significant}


# ------------------------------------------------------------------------------------- inputs
def _values(values: Sequence[float] | np.ndarray, what: str) -> np.ndarray:
    arr = np.asarray([float(v) for v in values], dtype=np.float64)
    if arr.ndim != 1 or len(arr) == 0:
        raise ConfigError(f"{what} needs at least one value; got {len(arr)}")
    if not np.isfinite(arr).all():
        raise ConfigError(f"{what} holds non-finite values: {arr.tolist()}")
    return arr


def _pair(
    values_a: Sequence[float] | np.ndarray, values_b: Sequence[float] | np.ndarray, what: str, least: int
) -> tuple[np.ndarray, np.ndarray]:
    a, b = _values(values_a, f"{what} (A)"), _values(values_b, f"{what} (B)")
    if len(a) != len(b):
        raise ConfigError(f"{what} needs matched values; got {len(a)} and {len(b)}")
    if len(a) < least:
        raise ConfigError(f"{what} needs at least {least} matched values; got {len(a)}")
    return a, b


def _no_spread(x: np.ndarray) -> bool:
    """All values equal up to rounding (0.91 - 0.81 and 0.90 - 0.80 differ in the 17th digit)."""
    return bool(np.ptp(x) <= 1e-12 * max(1.0, float(np.abs(x).max())))


def t_quantile_975(df: float) -> float:
    """Two-sided 95% Student-t critical value for ``df`` (> 0) degrees of freedom (``scipy.stats.t.ppf``)."""
    if not df > 0:
        raise ConfigError(f"a t-interval needs positive degrees of freedom; got {df}")
    return float(_scipy_stats().t.ppf(1 - ALPHA / 2, df))


# ------------------------------------------------------------------------------------- spread
def summarize(values: Sequence[float], *, test_train_ratio: float | None = None) -> dict[str, Any]:
    """Mean, sample std (ddof=1) and 95% t-interval of the mean of ``values``.

    Args:
        values: one figure per run.
        test_train_ratio: for cross-validation folds, ``n_test / n_train`` of a fold: the
            variance of the mean is ``(1/n + ratio) · s²`` (Nadeau-Bengio) instead of ``s²/n``.

    One value gives std 0 and an interval of the value itself, with ``n = 1`` saying that no
    spread was measured.
    """
    arr = _values(values, "summarize")
    n, mean = len(arr), float(arr.mean())
    if n == 1:
        return {"mean": mean, "std": 0.0, "ci95_low": mean, "ci95_high": mean, "n": 1}
    std = float(arr.std(ddof=1))
    factor = 1 / n + (test_train_ratio or 0.0)
    half = t_quantile_975(n - 1) * std * math.sqrt(factor)
    out: dict[str, Any] = {"mean": mean, "std": std, "ci95_low": mean - half, "ci95_high": mean + half, "n": n}
    if test_train_ratio:
        out["interval"] = f"Nadeau-Bengio corrected t (n_test/n_train = {test_train_ratio:.3g})"
    return out


def summarize_metrics(
    records: Sequence[dict[str, Any]], *, test_train_ratio: dict[str, float] | None = None
) -> dict[str, dict[str, Any]]:
    """:func:`summarize` of every numeric key present in all ``records`` (e.g. final_metrics of folds).

    Args:
        test_train_ratio: metric name -> the folds' ``n_test / n_train`` for that metric
            (cross-validation); metrics not in it get the plain interval.
    """
    if not records:
        return {}
    ratios = test_train_ratio or {}
    keys = [k for k, v in records[0].items() if _is_number(v)]
    return {
        k: summarize([r[k] for r in records], test_train_ratio=ratios.get(k))
        for k in keys
        if all(_is_number(r.get(k)) and math.isfinite(r[k]) for r in records)
    }


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


# -------------------------------------------------------------------------------- t-tests
def _interval(ci: Any) -> tuple[float, float]:
    return float(ci.low), float(ci.high)


def paired_t(values_a: Sequence[float], values_b: Sequence[float]) -> TestResult:
    """Paired t-test of matched runs (same seeds on the same split): ``scipy.stats.ttest_rel``."""
    a, b = _pair(values_a, values_b, "a paired t-test", 2)
    d = a - b
    if _no_spread(d):  # every pair differs by the same amount: no spread, scipy would give nan
        return _constant_difference("paired t", float(d.mean()), len(a), {"df": len(a) - 1})
    res = _scipy_stats().ttest_rel(a, b)
    low, high = _interval(res.confidence_interval(1 - ALPHA))
    return TestResult(
        "paired t", float(d.mean()), low, high, float(res.pvalue), "Student t on the paired differences",
        len(a), len(b), {"df": int(res.df), "t": float(res.statistic)},
    )  # fmt: skip


def welch_t(values_a: Sequence[float], values_b: Sequence[float]) -> TestResult:
    """Welch's unequal-variance t-test of two independent groups: ``ttest_ind(equal_var=False)``."""
    a, b = _values(values_a, "values_a"), _values(values_b, "values_b")
    if len(a) < 2 or len(b) < 2:
        raise ConfigError(f"comparing groups needs at least 2 runs in each; got {len(a)} and {len(b)}")
    diff = float(a.mean() - b.mean())
    if _no_spread(a) and _no_spread(b):
        return _constant_difference("Welch t", diff, len(a), {}, n_b=len(b))
    with warnings.catch_warnings():
        # one group without spread (two seeds with the same accuracy) is fine for Welch: its variance is 0
        warnings.filterwarnings("ignore", "Precision loss occurred", RuntimeWarning)
        res = _scipy_stats().ttest_ind(a, b, equal_var=False)
    low, high = _interval(res.confidence_interval(1 - ALPHA))
    return TestResult(
        "Welch t", diff, low, high, float(res.pvalue), "Welch t, Welch-Satterthwaite degrees of freedom",
        len(a), len(b), {"df": float(res.df), "t": float(res.statistic)},
    )  # fmt: skip


def corrected_t(values_a: Sequence[float], values_b: Sequence[float], *, test_train_ratio: float) -> TestResult:
    """Nadeau-Bengio corrected resampled t-test of two models scored on the same folds.

    Args:
        values_a, values_b: one score per fold, fold j of A with fold j of B.
        test_train_ratio: ``n_test / n_train`` of a fold (the mean over folds when they differ).

    The variance of the mean difference is ``(1/J + n_test/n_train) · s²`` over ``J`` folds, with
    ``J - 1`` degrees of freedom (Nadeau & Bengio 2003; Bouckaert & Frank 2004).
    """
    a, b = _pair(values_a, values_b, "a corrected t-test over folds", 2)
    if not (test_train_ratio > 0 and math.isfinite(test_train_ratio)):
        raise ConfigError(f"the corrected t-test needs n_test/n_train > 0; got {test_train_ratio}")
    d = a - b
    j = len(d)
    details = {"df": j - 1, "test_train_ratio": float(test_train_ratio)}
    if _no_spread(d):
        return _constant_difference("Nadeau-Bengio corrected t", float(d.mean()), j, details)
    st = _scipy_stats()
    se = math.sqrt((1 / j + test_train_ratio) * d.var(ddof=1))
    t = float(d.mean()) / se
    half = float(st.t.ppf(1 - ALPHA / 2, j - 1)) * se
    p = float(2 * st.t.sf(abs(t), j - 1))
    return TestResult(
        "Nadeau-Bengio corrected t", float(d.mean()), float(d.mean()) - half, float(d.mean()) + half, p,
        "corrected resampled t", j, j, {**details, "t": t},
    )  # fmt: skip


def _constant_difference(test: str, diff: float, n: int, details: dict[str, Any], n_b: int | None = None) -> TestResult:
    """No spread at all: the interval is the difference itself; p is 1 when it is 0, else 0."""
    return TestResult(
        test, diff, diff, diff, 1.0 if abs(diff) <= 1e-12 else 0.0, "no spread: every value equal", n,
        n if n_b is None else n_b, {**details, "note": "zero variance"},
    )  # fmt: skip


# ------------------------------------------------------------------------ same test samples
def paired_bootstrap(
    scores_a: Sequence[float] | np.ndarray,
    scores_b: Sequence[float] | np.ndarray,
    *,
    n_boot: int = 10_000,
    seed: int = 0,
) -> TestResult:
    """Difference ``mean(a) - mean(b)`` over the same test samples: BCa interval and a permutation p-value.

    Args:
        scores_a, scores_b: per test sample, any score (1/0 correctness, squared error) of
            models A and B, in the same sample order.
        n_boot: bootstrap resamples (and permutations) of the test samples.
        seed: the generator's seed.

    The interval is ``scipy.stats.bootstrap(paired=True, method="BCa")`` (Efron 1987), which
    corrects the percentile interval's bias and skew; the p-value is a paired sign-flip
    permutation test (``scipy.stats.permutation_test(permutation_type="samples")``): under "no
    difference" swapping A and B on a sample changes nothing.
    """
    a, b = _pair(scores_a, scores_b, "a paired comparison of the same test samples", 2)
    if n_boot < 100:
        raise ConfigError(f"n_boot must be >= 100 for a 95% interval; got {n_boot}")
    d = a - b
    details = {"n_boot": n_boot}
    if _no_spread(d):
        return _constant_difference("paired bootstrap", float(d.mean()), len(d), details)
    st = _scipy_stats()
    rng = np.random.default_rng(seed)

    def mean_diff(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
        return np.mean(x, axis=axis) - np.mean(y, axis=axis)

    boot = st.bootstrap(
        (a, b), mean_diff, paired=True, vectorized=True, n_resamples=n_boot, method="BCa",
        confidence_level=1 - ALPHA, random_state=rng,
    )  # fmt: skip
    low, high = _interval(boot.confidence_interval)
    perm = st.permutation_test(
        (a, b), mean_diff, permutation_type="samples", vectorized=True, n_resamples=n_boot, random_state=rng
    )
    return TestResult(
        "paired bootstrap", float(d.mean()), low, high, float(perm.pvalue),
        f"paired BCa bootstrap, {n_boot} resamples", len(a), len(b),
        {**details, "p_value": "paired sign-flip permutation test"},
    )  # fmt: skip


def mcnemar(
    correct_a: Sequence[float], correct_b: Sequence[float], *, n_boot: int = 10_000, seed: int = 0
) -> TestResult:
    """McNemar's test of two classifiers on the same test samples (statsmodels), with a BCa interval.

    Args:
        correct_a, correct_b: per test sample, 1 when the model is right, 0 when wrong.
        n_boot, seed: the interval's bootstrap (see :func:`paired_bootstrap`).

    Only the discordant samples (one right, the other wrong) carry information: b = A right and B
    wrong, c = the reverse. The exact binomial test of b against b + c (McNemar 1947; Dietterich
    1998 recommends it for comparing classifiers) is used when b + c < 25, the continuity-corrected
    chi-square otherwise. McNemar's test has no interval of its own; the accuracy difference's
    interval is the paired BCa bootstrap's.
    """
    a, b = _pair(correct_a, correct_b, "McNemar's test", 2)
    if not (np.isin(a, (0.0, 1.0)).all() and np.isin(b, (0.0, 1.0)).all()):
        raise ConfigError("McNemar's test needs 1/0 correctness per sample; got other values")
    contingency = require("statsmodels.stats.contingency_tables", "data", "McNemar's test")
    table = np.array([[np.sum((a == 1) & (b == 1)), np.sum((a == 1) & (b == 0))],
                      [np.sum((a == 0) & (b == 1)), np.sum((a == 0) & (b == 0))]])  # fmt: skip
    discordant = int(table[0, 1] + table[1, 0])
    exact = discordant < 25
    name = "McNemar exact" if exact else "McNemar chi-square"
    boot = paired_bootstrap(a, b, n_boot=n_boot, seed=seed)
    details = {
        "both_right": int(table[0, 0]),
        "a_right_b_wrong": int(table[0, 1]),
        "a_wrong_b_right": int(table[1, 0]),
        "both_wrong": int(table[1, 1]),
        "n_boot": n_boot,
    }
    p = 1.0 if discordant == 0 else float(contingency.mcnemar(table, exact=exact, correction=True).pvalue)
    return TestResult(name, boot.estimate, boot.ci95_low, boot.ci95_high, p, boot.interval, len(a), len(b), details)


# ----------------------------------------------------------------------------- compatibility
def seed_difference(values_a: Sequence[float], values_b: Sequence[float], *, paired: bool = False) -> dict[str, Any]:
    """:func:`paired_t` (``paired``) or :func:`welch_t` as a dict with the older keys kept.

    Returns:
        ``diff``, ``ci95_low``, ``ci95_high``, ``p_value``, ``significant``, ``n_a``, ``n_b``, ``method``.
    """
    r = paired_t(values_a, values_b) if paired else welch_t(values_a, values_b)
    return {**r.to_dict(), "diff": r.estimate, "method": r.test}
