"""Figures with their spread, and comparisons that only claim a winner when the interval says so.

- :func:`summarize`: mean, sample standard deviation and a 95% Student-t interval of the mean of a
  few runs (folds or seeds). With n runs the interval is ``mean ± t_{0.975, n-1} · s / sqrt(n)``;
  t rather than 1.96 because n is 3-10, where the normal quantile understates the width by 10-60%.
- :func:`paired_bootstrap`: difference of a per-sample score (1/0 correctness) between two models
  evaluated on the same test samples, with a percentile bootstrap interval (Efron & Tibshirani
  1993, ch. 13); resampling the samples jointly keeps the pairing, which is what makes small
  differences on a shared test set detectable.
- :func:`seed_difference`: difference of the mean metric of two groups of runs (seeds, folds);
  Welch's t-interval, or a paired t-interval when the runs are matched (same seeds / same folds).

"Significant" means the 95% interval excludes zero; nothing more is claimed.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from archlab.errors import ConfigError

# t_{0.975, df} for df = 1..30 (two-sided 95%); beyond 30 the Cornish-Fisher expansion below is
# within 1e-3 of the exact quantile.
# fmt: off
_T975 = (
    12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
    2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042,
)
# fmt: on
_Z975 = 1.959964


def t_quantile_975(df: float) -> float:
    """Two-sided 95% Student-t critical value for ``df`` degrees of freedom (df >= 1)."""
    if df < 1:
        raise ConfigError(f"a t-interval needs at least 1 degree of freedom; got {df}")
    if df <= 30 and float(df).is_integer():
        return _T975[int(df) - 1]
    if df < 30:  # Welch's fractional df: interpolate the table
        lo = int(math.floor(df))
        return _T975[lo - 1] + (df - lo) * (_T975[lo] - _T975[lo - 1])
    z = _Z975
    return z + (z**3 + z) / (4 * df) + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)


def _values(values: Sequence[float], what: str) -> np.ndarray:
    arr = np.asarray([float(v) for v in values], dtype=np.float64)
    if arr.ndim != 1 or len(arr) == 0:
        raise ConfigError(f"{what} needs at least one value; got {len(arr)}")
    if not np.isfinite(arr).all():
        raise ConfigError(f"{what} holds non-finite values: {arr.tolist()}")
    return arr


def summarize(values: Sequence[float]) -> dict[str, Any]:
    """Mean, sample std (ddof=1) and 95% t-interval of the mean of ``values``.

    One value gives std 0 and an interval of the value itself, with ``n = 1`` saying that no
    spread was measured.
    """
    arr = _values(values, "summarize")
    n, mean = len(arr), float(arr.mean())
    if n == 1:
        return {"mean": mean, "std": 0.0, "ci95_low": mean, "ci95_high": mean, "n": 1}
    std = float(arr.std(ddof=1))
    half = t_quantile_975(n - 1) * std / math.sqrt(n)
    return {"mean": mean, "std": std, "ci95_low": mean - half, "ci95_high": mean + half, "n": n}


def summarize_metrics(records: Sequence[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """:func:`summarize` of every numeric key present in all ``records`` (e.g. final_metrics of folds)."""
    if not records:
        return {}
    keys = [k for k, v in records[0].items() if _is_number(v)]
    return {
        k: summarize([r[k] for r in records])
        for k in keys
        if all(_is_number(r.get(k)) and math.isfinite(r[k]) for r in records)
    }


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def paired_bootstrap(
    correct_a: Sequence[float], correct_b: Sequence[float], *, n_boot: int = 10_000, seed: int = 0
) -> dict[str, Any]:
    """Difference ``mean(a) - mean(b)`` over the same test samples, with a 95% bootstrap interval.

    Args:
        correct_a, correct_b: per test sample, 1/0 correctness (or any per-sample score) of
            models A and B, in the same sample order.
        n_boot: bootstrap resamples of the test samples.
        seed: the resampling generator's seed.

    Returns:
        ``diff``, ``ci95_low``, ``ci95_high`` (2.5th / 97.5th percentiles), ``significant``
        (the interval excludes 0), ``n`` samples, ``n_boot``.
    """
    a, b = _values(correct_a, "correct_a"), _values(correct_b, "correct_b")
    if len(a) != len(b):
        raise ConfigError(f"paired comparison needs the same test samples; got {len(a)} and {len(b)} values")
    if n_boot < 100:
        raise ConfigError(f"n_boot must be >= 100 for a 95% interval; got {n_boot}")
    d = a - b
    rng = np.random.default_rng(seed)
    means = np.empty(n_boot)
    for start in range(0, n_boot, 1000):  # chunks keep memory at 1000 x n
        stop = min(start + 1000, n_boot)
        idx = rng.integers(0, len(d), size=(stop - start, len(d)))
        means[start:stop] = d[idx].mean(axis=1)
    low, high = (float(v) for v in np.percentile(means, [2.5, 97.5]))
    return {
        "diff": float(d.mean()),
        "ci95_low": low,
        "ci95_high": high,
        "significant": bool(low > 0 or high < 0),
        "n": len(d),
        "n_boot": n_boot,
    }


def seed_difference(values_a: Sequence[float], values_b: Sequence[float], *, paired: bool = False) -> dict[str, Any]:
    """Difference of mean metric between two groups of runs, with a 95% t-interval.

    Args:
        values_a, values_b: one metric value per run (seed or fold) of each group.
        paired: runs are matched one to one (same seeds, same folds): a paired t-interval on the
            differences; otherwise Welch's interval with Welch-Satterthwaite degrees of freedom.

    Returns:
        ``diff``, ``ci95_low``, ``ci95_high``, ``significant``, ``n_a``, ``n_b``, ``method``.
    """
    a, b = _values(values_a, "values_a"), _values(values_b, "values_b")
    if paired:
        if len(a) != len(b):
            raise ConfigError(f"a paired comparison needs matched runs; got {len(a)} and {len(b)}")
        if len(a) < 2:
            raise ConfigError("a paired comparison needs at least 2 matched runs")
        s = summarize(a - b)
        low, high, diff = s["ci95_low"], s["ci95_high"], s["mean"]
        method = "paired t"
    else:
        if len(a) < 2 or len(b) < 2:
            raise ConfigError(f"comparing groups needs at least 2 runs in each; got {len(a)} and {len(b)}")
        va, vb = a.var(ddof=1) / len(a), b.var(ddof=1) / len(b)
        diff = float(a.mean() - b.mean())
        se = math.sqrt(va + vb)
        if se == 0:
            low = high = diff
        else:
            df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
            half = t_quantile_975(max(df, 1.0)) * se
            low, high = diff - half, diff + half
        method = "welch t"
    return {
        "diff": diff,
        "ci95_low": low,
        "ci95_high": high,
        "significant": bool(low > 0 or high < 0),
        "n_a": len(a),
        "n_b": len(b),
        "method": method,
    }
